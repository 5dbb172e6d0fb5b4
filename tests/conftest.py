"""Shared fixtures: tiny random backbones, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

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
def tiny_options():
    return TINY_OPTIONS
