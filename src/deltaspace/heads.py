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

Batches come from :mod:`deltaspace.train.batching`: ``input_ids``, ``attention_mask``, and
``labels`` (target ids, -100 on padding) for seq2seq or ``label`` (class index) for encoders,
plus ``score`` (float target) for regression tasks on encoders.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import ENCODER, Backbone
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


class ClassifierHead:
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

    def logits(self, batch: dict) -> torch.Tensor:
        input_ids = batch["input_ids"]
        inputs = self.delta.prepare_inputs({"input_ids": input_ids, "attention_mask": batch["attention_mask"]})
        hidden = self.backbone.model(**inputs).last_hidden_state
        return self.module(hidden[:, -input_ids.shape[1]])  # the first real token: [CLS] / <s>

    def loss(self, batch: dict) -> torch.Tensor:
        logits = self.logits(batch).float()
        if self.regression:
            return nn.functional.mse_loss(logits.squeeze(-1), batch["score"].float())
        return nn.functional.cross_entropy(logits, batch["label"])

    @torch.no_grad()
    def predict(self, batch: dict) -> list[str]:
        logits = self.logits(batch).float()
        if self.regression:
            return [f"{v:.6g}" for v in logits.squeeze(-1).tolist()]
        return [self.verbalizers[i] for i in logits.argmax(-1).tolist()]


def training_loss(delta: Delta, head, theta: torch.Tensor, batch: dict) -> torch.Tensor:
    """The loss every stage trains: the task loss of the backbone driven by θ (dropout on),
    plus the method's regularizer at θ (MPC, AdaLoRA's orthogonality) where it has one."""
    delta.backbone.model.train()
    with delta.bound(theta):
        loss = head.loss(batch)
    penalty = delta.penalty(theta)
    return loss if penalty is None else loss + penalty


#: ``--head`` values: the parameter-free default of the backbone's kind, or the trainable classifier.
HEADS = ("label", "classifier")


def make_head(backbone: Backbone, delta: Delta, verbalizers: list[str] | None = None, *, head: str = "label",
              regression: bool = False, **kwargs):
    """The task head. ``head="label"``: generation on seq2seq backbones, the parameter-free label
    head on encoders (which need the task's verbalizers). ``head="classifier"``: the trainable
    head of the ``classifier`` component (encoders only; the only encoder head for regression)."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    if head == "classifier":
        if backbone.kind != ENCODER:
            raise ValueError(f"--head classifier is for encoder backbones; {backbone.name!r} is {backbone.kind} and "
                             "generates its labels as text (use the default --head label)")
        return ClassifierHead(backbone, delta, verbalizers, regression, **kwargs)
    from .deltas.classifier import MODULE

    if hasattr(backbone.model, MODULE):
        raise ValueError(f"method {delta.name!r} has a 'classifier' component, which only --head classifier reads; "
                         "with the default head it would never train")
    if backbone.kind == ENCODER:
        if regression:
            raise ValueError(f"a regression task on encoder backbone {backbone.name!r} needs a trainable output: "
                             "use --head classifier")
        return LabelHead(backbone, delta, verbalizers or [], **kwargs)
    return Seq2SeqHead(backbone, delta, **kwargs)
