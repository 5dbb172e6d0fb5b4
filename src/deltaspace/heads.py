"""Task heads: the loss and the predictions of a delta-adapted backbone on a batch.

``Seq2SeqHead`` is the papers' text-to-text setting: token-averaged LM loss on the target, and
greedy decoding for evaluation. ``LabelHead`` is the parameter-free classifier for encoders:
the input and every label's verbalizer text are encoded by the same (delta-adapted) encoder,
mean-pooled and L2-normalized; logits are cosine similarities over a temperature. No parameter
exists outside θ, so tasks with any label set share one θ space.

``ClassifierHead`` (``--head classifier``) is the decomposition paper's setting on encoders: a
RoBERTa-style head on the first token whose weights are the ``classifier`` delta component, hence
part of θ too (:mod:`deltaspace.deltas.classifier`). It also runs regression (one output, MSE on
the float target; predictions are the numbers as text, which the correlation metrics parse).

``MLMHead`` (``--head mlm`` / ``mlm-template``) is the survey's prompt-based formulation on
encoders (LM-BFF; its §5.2 and Table 4): the frozen pretrained masked-LM head scores the task's
label words at a [MASK], appended as ``[CLS] x [SEP] [MASK] [SEP]`` or placed by the task's manual
template. Regression (STS-B) reads the probability of the ``high`` word against ``low``. On T5 the
same two heads are ``SentinelHead``: the mask is the sentinel ``<extra_id_0>`` and the label words
are the decoder's first token after it (survey Table 6).

``CausalLMHead`` is the decoder-only setting (Llama, Qwen2, GPT-2): the model reads prompt +
target, the loss is the token-averaged causal LM loss on the target tokens only (prompt and
padding masked), and evaluation greedily decodes after the left-padded prompt until EOS.
``LikelihoodHead`` (``--head likelihood``, decoders) classifies by the likelihood of each
verbalizer after the prompt: cross-entropy over the verbalizers' summed log-probabilities.

Batches come from :mod:`deltaspace.train.batching`: ``input_ids``, ``attention_mask``, ``label``
(class index), ``labels`` (target ids, -100 on padding) for seq2seq, plus ``score`` (float target)
for regression tasks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from .backbones import DECODER, ENCODER, SEQ2SEQ, Backbone
from .data.registry import MASK
from .deltas import Delta


class Seq2SeqHead:
    def __init__(self, backbone: Backbone, delta: Delta, max_new_tokens: int = 64) -> None:
        self.backbone, self.delta, self.max_new_tokens = backbone, delta, max_new_tokens

    def _inputs(self, batch: dict) -> dict:
        return self.delta.prepare_inputs({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})

    def loss(self, batch: dict) -> torch.Tensor:
        return self.backbone.model(**self._inputs(batch), labels=batch["labels"]).loss

    @torch.no_grad()
    def predict(self, batch: dict) -> list[str]:
        model = self.backbone.model
        out = model.generate(**self._inputs(batch), max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                             use_cache=self.delta.method.supports_kv_cache)
        return [t.strip() for t in self.backbone.tokenizer.batch_decode(out, skip_special_tokens=True)]


class CausalLMHead:
    """Causal LM loss on the target tokens of prompt + target; greedy decoding after the prompt."""

    def __init__(self, backbone: Backbone, delta: Delta, max_new_tokens: int = 64) -> None:
        self.backbone, self.delta, self.max_new_tokens = backbone, delta, max_new_tokens

    def token_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every real position (a soft prompt's slots dropped)."""
        inputs = self.delta.prepare_inputs({"input_ids": input_ids, "attention_mask": attention_mask})
        return self.backbone.model(**inputs, use_cache=False).logits[:, -input_ids.shape[1]:]

    def loss(self, batch: dict) -> torch.Tensor:
        logits = self.token_logits(batch["input_ids"], batch["attention_mask"])
        labels = batch["labels"][:, 1:]  # position t predicts token t+1
        return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                           ignore_index=-100)

    @torch.no_grad()
    def predict(self, batch: dict) -> list[str]:
        tokenizer = self.backbone.tokenizer
        prompt = batch["prompt_ids"]
        inputs = self.delta.prepare_inputs({"input_ids": prompt, "attention_mask": batch["prompt_mask"]})
        out = self.backbone.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                           num_beams=1, use_cache=self.delta.method.supports_kv_cache,
                                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                           temperature=None, top_p=None, top_k=None)
        if "input_ids" in inputs:  # generate returns the prompt too, unless it read embeddings (soft prompt)
            out = out[:, prompt.shape[1]:]
        return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


class LikelihoodHead(CausalLMHead):
    """Classification on a decoder by the likelihood of each verbalizer after the prompt."""

    def __init__(self, backbone: Backbone, delta: Delta, verbalizers: list[str] | None) -> None:
        if not verbalizers:
            raise ValueError("--head likelihood scores a classification task's verbalizers; this task has none "
                             "(use the default head, which generates the answer)")
        super().__init__(backbone, delta)
        from .data.prepare import decoder_prompt

        tokenizer = backbone.tokenizer
        lead = decoder_prompt(tokenizer, backbone.spec.chat)[2]
        self.verbalizers = verbalizers
        self.options = [list(tokenizer(lead + v, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
                        for v in verbalizers]

    def logits(self, batch: dict) -> torch.Tensor:
        """(batch, verbalizers): the summed log-probability of each verbalizer (and EOS) after the prompt."""
        prompt, mask = batch["prompt_ids"], batch["prompt_mask"].bool()
        prompts = [prompt[i][mask[i]].tolist() for i in range(len(prompt))]
        seqs = [(p, o) for p in prompts for o in self.options]
        width = max(len(p) + len(o) for p, o in seqs)
        pad = self.backbone.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i, (p, o) in enumerate(seqs):
            ids[i, :len(p) + len(o)] = torch.tensor(p + o)
            attention[i, :len(p) + len(o)] = 1
            labels[i, len(p):len(p) + len(o)] = torch.tensor(o)
        ids, attention, labels = (t.to(prompt.device) for t in (ids, attention, labels))
        logp = self.token_logits(ids, attention)[:, :-1].float().log_softmax(-1)
        target = labels[:, 1:]
        picked = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1) * (target != -100)
        return picked.sum(-1).view(len(prompts), len(self.options))

    def loss(self, batch: dict) -> torch.Tensor:
        return nn.functional.cross_entropy(self.logits(batch), batch["label"])

    @torch.no_grad()
    def predict(self, batch: dict) -> list[str]:
        return [self.verbalizers[i] for i in self.logits(batch).argmax(-1).tolist()]


class LabelHead:
    def __init__(self, backbone: Backbone, delta: Delta, verbalizers: list[str], temperature: float = 0.05) -> None:
        if not verbalizers:
            raise ValueError(f"backbone {backbone.name!r} is an encoder: it can only run classification tasks "
                             "(tasks with verbalizers); use a seq2seq backbone (T5, BART) for generation tasks")
        self.backbone, self.delta, self.verbalizers, self.temperature = backbone, delta, verbalizers, temperature
        enc = backbone.tokenizer(verbalizers, padding=True, return_tensors="pt")
        self._verbalizer_batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def _embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        inputs = self.delta.prepare_inputs({"input_ids": input_ids, "attention_mask": attention_mask})
        hidden = self.backbone.model(**inputs).last_hidden_state[:, -input_ids.shape[1]:]  # drop soft-prompt slots
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return nn.functional.normalize(pooled, dim=-1)

    def logits(self, batch: dict) -> torch.Tensor:
        device = batch["input_ids"].device
        labels = self._embed(*(self._verbalizer_batch[k].to(device) for k in ("input_ids", "attention_mask")))
        inputs = self._embed(batch["input_ids"], batch["attention_mask"])
        return inputs @ labels.T / self.temperature

    def loss(self, batch: dict) -> torch.Tensor:
        return nn.functional.cross_entropy(self.logits(batch), batch["label"])

    @torch.no_grad()
    def predict(self, batch: dict) -> list[str]:
        return [self.verbalizers[i] for i in self.logits(batch).argmax(-1).tolist()]


class RowHead(ABC):
    """A head whose loss reads one output row per input row: the first token's logits (the
    classifier), the vocabulary at the mask (the masked-LM heads).

    Its steps are apart so that the fused trainer (:func:`deltaspace.train.fused.fused_losses`) can
    run one backbone forward over many runs' rows and hand each run its slice: ``forward_kwargs``
    (what the backbone call takes besides the inputs), ``row_outputs`` (the output, one row per
    input row) and ``loss_from`` (one run's loss from its rows).
    """

    backbone: Backbone
    delta: Delta

    def forward_kwargs(self, rows: int, device: torch.device) -> dict:
        return {}

    @abstractmethod
    def row_outputs(self, out, input_ids: torch.Tensor) -> torch.Tensor:
        """One row per input row from the backbone's output ``out`` over ``input_ids`` (a soft
        prompt's slots come before them and are skipped)."""

    @abstractmethod
    def loss_from(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        """The loss of ``batch`` from its rows of :meth:`row_outputs`."""

    def outputs(self, batch: dict) -> torch.Tensor:
        input_ids = batch["input_ids"]
        inputs = self.delta.prepare_inputs({"input_ids": input_ids, "attention_mask": batch["attention_mask"]})
        out = self.backbone.model(**inputs, **self.forward_kwargs(len(input_ids), input_ids.device))
        return self.row_outputs(out, input_ids)

    def loss(self, batch: dict) -> torch.Tensor:
        return self.loss_from(self.outputs(batch), batch)


class ClassifierHead(RowHead):
    """Logits of the ``classifier`` component on the first real token (after any soft prompt)."""

    def __init__(self, backbone: Backbone, delta: Delta, verbalizers: list[str] | None, regression: bool) -> None:
        from .deltas.classifier import MODULE

        module = getattr(backbone.model, MODULE, None)
        if module is None:
            raise ValueError(f"the classifier head needs the 'classifier' delta component, and method "
                             f"{delta.name!r} has none; train {delta.name}+classifier (what --head classifier does)")
        labels = module.out.out_features
        if regression and labels != 1:
            raise ValueError(f"a regression task needs classifier.labels=1, the classifier has {labels}")
        if not regression and len(verbalizers or []) != labels:
            raise ValueError(f"the task has {len(verbalizers or [])} verbalizers but classifier.labels={labels}; "
                             "they must agree")
        self.backbone, self.delta, self.module = backbone, delta, module
        self.verbalizers, self.regression = verbalizers, regression

    def row_outputs(self, out, input_ids: torch.Tensor) -> torch.Tensor:
        return self.module(out.last_hidden_state[:, -input_ids.shape[1]])  # the first real token: [CLS] / <s>

    def logits(self, batch: dict) -> torch.Tensor:
        return self.outputs(batch)

    def loss_from(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        logits = outputs.float()
        if self.regression:
            return nn.functional.mse_loss(logits.squeeze(-1), batch["score"].float())
        return nn.functional.cross_entropy(logits, batch["label"])

    @torch.no_grad()
    def predict(self, batch: dict) -> list[str]:
        logits = self.logits(batch).float()
        if self.regression:
            return [f"{v:.6g}" for v in logits.squeeze(-1).tolist()]
        return [self.verbalizers[i] for i in logits.argmax(-1).tolist()]


MLM_HEADS = ("mlm", "mlm-template")


def mask_token(tokenizer) -> str:
    """The [MASK] of a tokenizer; T5-style ones (the tiny test backbones' ByT5) have sentinels instead."""
    if getattr(tokenizer, "mask_token", None):
        return tokenizer.mask_token
    sentinel = "<extra_id_0>"
    if tokenizer.convert_tokens_to_ids(sentinel) not in (None, tokenizer.unk_token_id):
        return sentinel
    raise ValueError(f"{type(tokenizer).__name__} has no mask token: the masked-LM heads cannot use it")


def label_word_ids(tokenizer, words: list[str]) -> list[int]:
    """One token per label word: the word after a space (RoBERTa's "Ġgreat", as LM-BFF takes it),
    else bare, else its first token; two words may not share a token."""
    ids = []
    for word in words:
        spaced, bare = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in (" " + word, word))
        ids.append(spaced[0] if len(spaced) == 1 else bare[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"label words {words} do not map to distinct tokens of {type(tokenizer).__name__} "
                         f"(first tokens {ids}); choose words that are single tokens")
    return ids


class MLMHead(RowHead):
    """Label words at the [MASK], scored by the backbone's frozen pretrained masked-LM head.

    ``prompt`` is the prepared manifest's (the task registry's ``prompt``): its label words, and for
    ``template=True`` its template, rendered per row at preparation (``prompt`` column). Without a
    prompt the verbalizers are the label words. Rows need re-encoding for the head's input format
    (:meth:`encode_rows`); the prepared ``input_ids`` serve the other heads.
    """

    def __init__(self, backbone: Backbone, delta: Delta, verbalizers: list[str] | None, regression: bool,
                 template: bool, prompt: dict | None, max_length: int) -> None:
        if template and not prompt:
            raise ValueError("--head mlm-template needs the task's prompt template (registry key `prompt`, "
                             "carried by the prepared manifest); this task has none: use --head mlm")
        if regression:
            if not prompt or not prompt.get("range"):
                raise ValueError("a regression task on the masked-LM head needs a prompt with `low`/`high` label "
                                 "words and a `range` (registry key `prompt`)")
            words = [prompt["label_words"][w] for w in ("low", "high")]
        else:
            if not verbalizers:
                raise ValueError("the masked-LM head classifies: the task has no verbalizers")
            words = [prompt["label_words"][v] for v in verbalizers] if prompt else list(verbalizers)
        tokenizer = backbone.tokenizer
        self.backbone, self.delta, self.verbalizers, self.regression = backbone, delta, verbalizers, regression
        self.template, self.max_length = template, max_length
        self.range = tuple(prompt["range"]) if regression else None
        self.module = self._word_scorer(backbone)
        self.mask = mask_token(tokenizer)
        self.mask_id = tokenizer.convert_tokens_to_ids(self.mask)
        self.word_ids = torch.tensor(label_word_ids(tokenizer, words))
        around = tokenizer(self.mask)["input_ids"]  # the special tokens a single sequence gets, around it
        at = around.index(self.mask_id)
        self._prefix, self._suffix = around[:at], around[at + 1:]

    @staticmethod
    def _word_scorer(backbone: Backbone) -> nn.Module:
        if backbone.mlm_head is None:
            raise ValueError(f"backbone {backbone.name!r} was loaded without its masked-LM head "
                             "(load_backbone(..., mlm_head=True))")
        return backbone.mlm_head.to(next(backbone.model.parameters()).device)

    def encode_rows(self, rows: list[dict]) -> list[dict]:
        """The rows with ``input_ids`` in this head's format, truncated to ``max_length``."""
        return [{**row, "input_ids": self._encode(row)} for row in rows]

    def _encode(self, row: dict) -> list[int]:
        if not self.template:
            return self._encode_bare(row)
        prompt = row.get("prompt") or ""
        if prompt.count(MASK) != 1:
            raise ValueError(f"row idx={row.get('idx')}: prompt {prompt[:80]!r} needs one {MASK}; prepared data from "
                             "before prompts existed must be prepared again (deltaspace prepare)")
        return self._around_mask(*prompt.split(MASK))

    def _encode_bare(self, row: dict) -> list[int]:
        """Without a template: ``[CLS] x [SEP] [MASK] [SEP]``, the survey's "without manual templates"."""
        return self.backbone.tokenizer(row["input"], self.mask, truncation="only_first",
                                       max_length=self.max_length)["input_ids"]

    def _around_mask(self, before: str, after: str) -> list[int]:
        """``before [MASK] after`` between the tokenizer's special tokens, within ``max_length``."""
        tokenizer = self.backbone.tokenizer
        left = tokenizer(before.rstrip(), add_special_tokens=False)["input_ids"]
        right = tokenizer(after, add_special_tokens=False)["input_ids"]
        budget = self.max_length - len(self._prefix) - len(self._suffix) - 1
        # Over budget, the longer side loses tokens at its far end, so the words next to the mask stay.
        while len(left) + len(right) > budget:
            if len(left) >= len(right):
                left = left[1:]
            else:
                right = right[:-1]
        return self._prefix + left + [self.mask_id] + right + self._suffix

    def row_outputs(self, out, input_ids: torch.Tensor) -> torch.Tensor:
        """The vocabulary's logits at each row's mask."""
        hidden = out.last_hidden_state[:, -input_ids.shape[1]:]  # drop soft-prompt slots
        at_mask = (input_ids == self.mask_id).int()
        if not bool(at_mask.any(-1).all()):
            raise ValueError("a row has no mask token: encode rows with MLMHead.encode_rows first")
        return self.module(hidden[torch.arange(len(input_ids), device=hidden.device), at_mask.argmax(-1)])

    def _words(self, vocabulary: torch.Tensor) -> torch.Tensor:
        return vocabulary[:, self.word_ids.to(vocabulary.device)]

    def logits(self, batch: dict) -> torch.Tensor:
        """(rows, label words): the label words' logits at the mask."""
        return self._words(self.outputs(batch))

    def loss_from(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        logits = self._words(outputs).float()
        if self.regression:  # LM-BFF: the target as a distribution over (low, high)
            low, high = self.range
            share = ((batch["score"].float() - low) / (high - low)).clamp(0, 1)
            logp = nn.functional.log_softmax(logits, dim=-1)
            return -(share * logp[:, 1] + (1 - share) * logp[:, 0]).mean()
        return nn.functional.cross_entropy(logits, batch["label"])

    @torch.no_grad()
    def predict(self, batch: dict) -> list[str]:
        logits = self.logits(batch).float()
        if self.regression:
            low, high = self.range
            return [f"{low + (high - low) * p:.6g}" for p in logits.softmax(-1)[:, 1].tolist()]
        return [self.verbalizers[i] for i in logits.argmax(-1).tolist()]


class SentinelHead(MLMHead):
    """The masked-LM heads on a seq2seq backbone (T5): the mask is the sentinel ``<extra_id_0>`` in the
    encoder's input, and a label word is scored as the decoder's first token after it.

    The survey states no T5 form for Table 6's templates; this follows the notes' recommendation
    (A19): the template's [MASK] becomes ``<extra_id_0>``, the target is ``<extra_id_0> {label word}``,
    and classification compares the label words' likelihoods (rank classification) instead of
    free generation. Without a template the input is ``x <extra_id_0>``. The decoder reads
    ``<start> <extra_id_0>`` and the LM head's logits at the sentinel's position are the words'
    scores, the seq2seq counterpart of the encoder's masked-LM head at [MASK]. As there, a word of
    several tokens is scored by its first (:func:`label_word_ids`).
    """

    @staticmethod
    def _word_scorer(backbone: Backbone) -> None:
        return None  # the seq2seq model's own LM head scores the decoder's next token

    def forward_kwargs(self, rows: int, device: torch.device) -> dict:
        start = self.backbone.model.config.decoder_start_token_id
        return {"decoder_input_ids": torch.tensor([[start, self.mask_id]], device=device).expand(rows, 2)}

    def _encode_bare(self, row: dict) -> list[int]:
        return self._around_mask(row["input"], "")

    def row_outputs(self, out, input_ids: torch.Tensor) -> torch.Tensor:
        return out.logits[:, -1]


def task_head(backbone: Backbone, delta: Delta, data, head: str = "label"):
    """The head ``head`` for a prepared task (:class:`deltaspace.train.batching.TaskData`): its
    verbalizers, whether it regresses, and for the masked-LM heads its prompt and input length."""
    extra = {"prompt": data.manifest.get("prompt"), "max_length": data.manifest["max_input_length"]} \
        if head in MLM_HEADS else {}
    if delta.backbone.kind == DECODER and head == "label":
        # decoding stops at EOS; the target's token budget bounds a model that never emits it
        extra = {"max_new_tokens": int(data.manifest.get("max_target_length") or 64)}
    return make_head(backbone, delta, data.verbalizers, head=head, regression=data.regression, **extra)


def encode_rows(head, rows: list[dict]) -> list[dict]:
    """Prepared rows as the head reads them: re-encoded for the masked-LM heads, as they are otherwise."""
    return head.encode_rows(rows) if isinstance(head, MLMHead) else rows


def training_loss(delta: Delta, head, theta: torch.Tensor, batch: dict) -> torch.Tensor:
    """The loss every stage trains: the task loss of the backbone driven by θ (dropout on),
    plus the method's regularizer at θ (MPC, AdaLoRA's orthogonality) where it has one."""
    delta.backbone.model.train()
    with delta.bound(theta):
        loss = head.loss(batch)
    penalty = delta.penalty(theta)
    return loss if penalty is None else loss + penalty


#: ``--head`` values and the backbone kinds each runs on: the parameter-free default of the
#: backbone's kind, the trainable classifier, the pretrained masked-LM head over label words
#: (without or with the task's manual template; on T5 through the sentinel), or a decoder's
#: verbalizer likelihoods.
HEAD_KINDS = {"label": (ENCODER, SEQ2SEQ, DECODER), "classifier": (ENCODER,), "mlm": (ENCODER, SEQ2SEQ),
              "mlm-template": (ENCODER, SEQ2SEQ), "likelihood": (DECODER,)}
HEADS = tuple(HEAD_KINDS)


def head_kind_problem(head: str, backbone: str, kind: str) -> str | None:
    """Why ``head`` cannot run on backbone ``backbone`` of kind ``kind``, or None (preflight asks
    before any job runs; :func:`make_head` when a run starts)."""
    if head not in HEAD_KINDS:
        return f"unknown head {head!r}; valid heads: {', '.join(HEADS)}"
    if kind in HEAD_KINDS[head]:
        return None
    fits = [h for h, kinds in HEAD_KINDS.items() if kind in kinds]
    return (f"--head {head} runs on {' and '.join(HEAD_KINDS[head])} backbones; {backbone!r} is {kind} "
            f"(its heads: {', '.join(fits)})")


def make_head(backbone: Backbone, delta: Delta, verbalizers: list[str] | None = None, *, head: str = "label",
              regression: bool = False, **kwargs):
    """The task head. ``head="label"``: generation on seq2seq backbones, the parameter-free label
    head on encoders (which need the task's verbalizers). ``head="classifier"``: the trainable
    head of the ``classifier`` component (encoders only). ``mlm`` / ``mlm-template``: the
    pretrained masked-LM head over label words (encoders loaded with ``mlm_head=True``), or on
    seq2seq backbones the LM's words after the sentinel (:class:`SentinelHead`); ``kwargs`` give the
    task's ``prompt`` and ``max_length``, see :func:`task_head`."""
    problem = head_kind_problem(head, backbone.name, backbone.kind)
    if problem:
        raise ValueError(problem)
    if head == "likelihood":
        return LikelihoodHead(backbone, delta, verbalizers)
    if head in MLM_HEADS:
        kind = SentinelHead if backbone.kind == SEQ2SEQ else MLMHead
        return kind(backbone, delta, verbalizers, regression, template=head == "mlm-template", **kwargs)
    if head == "classifier":
        return ClassifierHead(backbone, delta, verbalizers, regression, **kwargs)
    from .deltas.classifier import MODULE

    if hasattr(backbone.model, MODULE):
        raise ValueError(f"method {delta.name!r} has a 'classifier' component, which only --head classifier reads; "
                         "with the default head it would never train")
    if backbone.kind == ENCODER:
        if regression:
            raise ValueError(f"a regression task on encoder backbone {backbone.name!r} needs a trainable output: "
                             "use --head classifier (or --head mlm / mlm-template, for a task with a prompt)")
        return LabelHead(backbone, delta, verbalizers or [], **kwargs)
    if backbone.kind == DECODER:
        return CausalLMHead(backbone, delta, **kwargs)
    return Seq2SeqHead(backbone, delta, **kwargs)
