"""Gradient accumulation (loop.micro_batch_size): a batch run a few rows at a time gives the whole
batch's gradient and loss, so a job too large for one GPU keeps its batch size (preflight suggests it)."""

from __future__ import annotations

import pytest
import torch

from deltaspace.plan import Plan
from deltaspace.train.commands import loop_config
from deltaspace.train.loop import LoopConfig, backward


class RowMeanObjective:
    """A linear model whose loss is the mean over the batch's rows (as the encoder heads' losses are)."""

    def __init__(self):
        torch.manual_seed(0)
        self.w = torch.randn(5, requires_grad=True)

    def loss(self, batch):
        return ((batch["input_ids"].float() @ self.w - batch["label"].float()) ** 2).mean()


@pytest.mark.parametrize("micro", [1, 2, 3, 8])
def test_micro_batches_give_the_batch_gradient(micro):
    batch = {"input_ids": torch.randint(0, 9, (8, 5)), "label": torch.randint(0, 3, (8,))}
    whole, chunked = RowMeanObjective(), RowMeanObjective()
    loss = backward(whole, batch, None)
    loss_chunked = backward(chunked, batch, micro)
    assert float(loss_chunked) == pytest.approx(float(loss), rel=1e-6)
    assert torch.allclose(whole.w.grad, chunked.w.grad, rtol=1e-5, atol=1e-6)


def test_non_finite_chunk_loss_is_returned_before_its_backward():
    objective = RowMeanObjective()
    batch = {"input_ids": torch.ones(4, 5), "label": torch.tensor([0.0, float("nan"), 0.0, 0.0])}
    loss = backward(objective, batch, 2)
    assert not torch.isfinite(loss)
    assert objective.w.grad is None  # the first chunk's gradient is not applied either: nothing stepped yet


def test_micro_batch_size_is_validated_and_left_out_of_the_record_when_unset():
    with pytest.raises(ValueError, match="micro_batch_size"):
        LoopConfig(micro_batch_size=0)
    assert "micro_batch_size" not in LoopConfig().record()  # old checkpoints and hashes stay valid
    assert LoopConfig(micro_batch_size=4).record()["micro_batch_size"] == 4


def test_config_micro_batch_size_reaches_the_command_line():
    import argparse

    from deltaspace.train.commands import add_loop_arguments

    config = {"experiment": "x", "backbone": "tiny-bert", "methods": {"lora": {}}, "tables": [],
              "stage0": {"tasks": ["qs-tweet-sentiment"], "grid": {"lr": [0.001]}, "methods": {"lora": None},
                         "loop": {"batch_size": 8, "micro_batch_size": 2}}}
    job = next(j for j in Plan(config).jobs() if j.rule == "train_delta")
    assert "--batch-size 8" in job.command and "--micro-batch-size 2" in job.command
    p = argparse.ArgumentParser()
    add_loop_arguments(p)
    p.add_argument("--patience", type=int, default=None)
    args = p.parse_args(["--lr", "0.1", "--steps", "3", "--micro-batch-size", "2"])
    assert loop_config(args).micro_batch_size == 2
