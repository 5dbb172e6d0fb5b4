"""Shared fixtures: tiny random backbones, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The suite computes in fp32: its tests hold fused runs to separate runs, and resumed runs to
# uninterrupted ones, within fp32 tolerances that bf16 rounding exceeds. test_precision.py runs bf16.
os.environ.setdefault("DELTASPACE_PRECISION", "fp32")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# Under pytest-xdist, each worker gets its share of the cores: torch's default of one thread per
# core in every worker oversubscribes the machine and slows the whole suite. Subprocesses (the CLI
# run killed by SIGTERM) get the same count through OMP_NUM_THREADS: a run resumed in-process must
# repeat the summation order of the part that ran in the subprocess, bit for bit.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)

# Small options so every method trains in a handful of steps on a tiny backbone.
TINY_OPTIONS = {"adapter": {"r": 4}, "prefix": {"m": 4, "hidden": 8}, "lora": {"r": 4}, "prompt": {"n": 20},
                "bitfit": {}, "finetune": {}}


def toy_batch(backbone):
    """Two examples; seq2seq gets target ids, encoders get class indices."""
    tok = backbone.tokenizer
    enc = tok(["the movie was great", "awful, boring film"], padding=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if backbone.kind == "seq2seq":
        labels = tok(["yes", "no"], padding=True, return_tensors="pt")["input_ids"]
        labels[labels == tok.pad_token_id] = -100
        batch["labels"] = labels
    else:
        batch["label"] = torch.tensor([0, 1])
    return batch


@pytest.fixture
def no_dropout(monkeypatch):
    """Dropout draws masks for the fused batch at once, so equality with separate runs needs it off."""
    monkeypatch.setattr(torch.nn.functional, "dropout", lambda x, p=0.5, training=True, inplace=False: x)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def no_attention_dropout(*args, dropout_p=0.0, **kwargs):
        return sdpa(*args, dropout_p=0.0, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_attention_dropout)


@pytest.fixture
def tiny_options():
    return TINY_OPTIONS


WORDS = {"positive": ["great", "lovely", "superb", "fine", "good"], "negative": ["awful", "bad", "dull", "poor", "ugly"]}


def write_prepared(folder: Path, backbone: str, n_train: int = 16, task: str = "toy-sentiment", shift: int = 0,
                   filler: int = 0) -> Path:
    """A prepared toy sentiment task in the documented folder format (docs/contracts.md); ``filler``
    words after each review make its rows that much longer."""
    from deltaspace.backbones import load_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(backbone)
    seq2seq = backbone != "tiny-bert"
    verbalizers = ["negative", "positive"]
    for split, n in (("train", n_train), ("dev", 8), ("test", 8)):
        rows = []
        for i in range(n):
            label = i % 2
            word = WORDS[verbalizers[label]][(i // 2 + shift) % 5]
            text = f"the film was {word}" + " and then" * filler
            rows.append({"idx": i, "input": text, "target": verbalizers[label], "references": [verbalizers[label]],
                         "label": label, "input_ids": tok(text)["input_ids"],
                         "target_ids": tok(verbalizers[label])["input_ids"] if seq2seq else []})
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet", index=False)
    manifest = {"task": task, "category": "sentiment", "metric": "accuracy", "kind": "classification",
                "verbalizers": verbalizers, "backbone": backbone, "content_sha256": "toy", "max_input_length": 64}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


# A minimal valid table spec; tests break it one key at a time.
DEMO_SPEC = """
paper: demo
title: demo
tables:
  - id: demo-table
    title: demo
    kind: absolute
    select: {experiment: demo}
    rows: [{key: t1}]
    columns: [{key: adapter}]
"""


class ConstantStream:
    """A batch stream for loop tests whose objective ignores the batch."""

    def __next__(self):
        import torch

        return {"x": torch.zeros(1)}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def adam_losses(delta, head, batch, theta, lr: float, steps: int) -> list[float]:
    """Train θ alone with Adam on one batch; the loss after each step (the backbone stays frozen)."""
    import torch

    optimizer = torch.optim.Adam([theta], lr=lr)
    losses = []
    for _ in range(steps):
        with delta.bound(theta):
            loss = head.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def run_theta(out: Path) -> torch.Tensor:
    """The θ a run folder holds (the θ half of :func:`deltaspace.train.stage0.load_theta`)."""
    from deltaspace.train.stage0 import load_theta

    return load_theta(out)[0]
