"""Last-layer and selective-module tuning (survey §5.3, Table 9): what θ holds and what trains."""

import json

import pytest
import torch

from conftest import adam_losses, toy_batch, write_prepared
from deltaspace.backbones import load_backbone
from deltaspace.cli import main
from deltaspace.deltas import DeltaOptionError, build_delta
from deltaspace.deltas.partial import selectable_units
from deltaspace.heads import make_head

LAST_BLOCK = {"tiny-t5": "encoder.block.1", "tiny-bart": "model.encoder.layers.1", "tiny-bert": "encoder.layer.1"}


def _total(bb):
    return sum(p.numel() for p in bb.model.parameters())


@pytest.mark.parametrize("backbone", sorted(LAST_BLOCK))
def test_last_layer_is_exactly_the_final_encoder_block(backbone):
    bb = load_backbone(backbone)
    delta = build_delta("last-layer", bb)
    block = LAST_BLOCK[backbone]
    expected = {n: p.numel() for n, p in bb.model.named_parameters() if n.startswith(block + ".")}
    assert {s.name for s in delta.manifest} == set(expected)
    assert delta.size == sum(expected.values()) > 0
    assert delta.method.touched_modules(bb, []) == [block]
    # θ0 is the pre-trained block itself.
    weights = dict(bb.model.named_parameters())
    theta = delta.init(0)
    for slot, view in delta.views(theta):
        assert torch.equal(view, weights[slot.name])


def _units_of(delta):
    """Map each manifest tensor to the chosen unit that holds it (FFN units name two modules)."""
    owners = {}
    for unit in delta.method.chosen:
        stem, _, rest = unit.partition("{")
        heads = [stem + alt + rest.split("}", 1)[1] for alt in rest.split("}")[0].split(",")] if rest else [unit]
        for slot in delta.manifest:
            if any(slot.name.startswith(h + ".") for h in heads):
                owners.setdefault(slot.name, set()).add(unit)
    return owners


@pytest.mark.parametrize("backbone", sorted(LAST_BLOCK))
def test_selective_size_is_the_sum_of_the_chosen_modules_and_reaches_the_ratio(backbone):
    bb = load_backbone(backbone)
    ratio = 0.15
    delta = build_delta("selective", bb, ratio=ratio, seed=3)
    method = delta.method
    units = selectable_units(bb.model, bb.family)
    unit_size = {u: sum(p.numel() for p in ps) for u, ps in units.items()}
    assert set(method.chosen) <= set(units) and len(set(method.chosen)) == len(method.chosen)
    assert delta.size == sum(unit_size[u] for u in method.chosen)
    # Every θ tensor lies in exactly one chosen module, and no weight outside them is in θ.
    owners = _units_of(delta)
    assert set(owners) == {s.name for s in delta.manifest} and all(len(o) == 1 for o in owners.values())
    # Reached, and only the last module drawn pushed it past the target.
    target = ratio * _total(bb)
    assert delta.size >= target
    assert delta.size - unit_size[method.taken[-1]] < target
    assert delta.method.touched_modules(bb, []) == method.chosen
    kinds = {u.rsplit(".", 1)[-1] for u in units}
    assert len(kinds) >= 4, "FFN, Q/K/V and layer-norm modules are all candidates"


def test_selective_choice_is_deterministic_per_seed_and_differs_across_seeds():
    def chosen(seed):
        return build_delta("selective", load_backbone("tiny-t5"), ratio=0.1, seed=seed).method.chosen

    assert chosen(0) == chosen(0)
    draws = {tuple(chosen(s)) for s in range(4)}
    assert len(draws) >= 3, draws
    # The choice spreads across layers and both stacks, not one block.
    everything = {u for d in draws for u in d}
    assert any(u.startswith("encoder.") for u in everything) and any(u.startswith("decoder.") for u in everything)


def test_selective_options_fail_clearly():
    bb = load_backbone("tiny-t5")
    with pytest.raises(DeltaOptionError, match=r"ratio=4\.2 must be a fraction in \(0, 1\]"):
        build_delta("selective", bb, ratio="4.2")
    with pytest.raises(DeltaOptionError, match=r"at most ratio=0\.\d+"):
        build_delta("selective", bb, ratio=0.99)  # embeddings are never candidates
    with pytest.raises(DeltaOptionError, match="valid options: ratio=0.042, seed=0"):
        build_delta("selective", bb, fraction=0.1)


@pytest.mark.parametrize("method,options", [("last-layer", {}), ("selective", {"ratio": 0.1, "seed": 1})])
def test_training_moves_only_the_chosen_weights(method, options):
    bb = load_backbone("tiny-t5", seed=2)
    pristine = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    delta = build_delta(method, bb, **options)
    head = make_head(bb, delta)
    theta = delta.init(0).requires_grad_(True)
    losses = adam_losses(delta, head, toy_batch(bb), theta, lr=1e-2, steps=15)
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in bb.model.parameters()), "the frozen backbone collected a gradient"
    delta.load(theta.detach())
    changed = {n for n, p in bb.model.named_parameters() if not torch.equal(p, pristine[n])}
    assert changed == {s.name for s in delta.manifest}


def test_selective_trains_from_the_command_line_and_records_its_modules(tmp_path):
    data = write_prepared(tmp_path / "data", "tiny-bert")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--method", "selective", "--set", "ratio=0.2", "--set", "seed=5",
                 "--backbone", "tiny-bert", "--lr", "1e-3", "--steps", "4", "--batch-size", "4", "--eval-every",
                 "2", "--checkpoint-every", "2", "--out", str(out), "--no-progress"]) == 0
    sidecar = json.loads((out / "theta.json").read_text())
    assert sidecar["method"] == "selective" and sidecar["options"] == {"ratio": 0.2, "seed": 5}
    rebuilt = build_delta("selective", load_backbone("tiny-bert"), **sidecar["options"])
    assert [s["name"] for s in sidecar["manifest"]] == [s.name for s in rebuilt.manifest]


def test_t5_base_ratios_against_table_9():
    bb = load_backbone("t5-base", config_only=True)
    total = _total(bb)
    d, dff = bb.config.d_model, bb.config.d_ff
    last = build_delta("last-layer", bb)
    # Q, K, V, O + FFN in and out + two layer norms: the original T5-base block, 3.18% (Table 9: 4.2%).
    assert last.size == 4 * d * d + 2 * d * dff + 2 * d
    assert 0.031 < last.size / total < 0.032
    selective = build_delta("selective", load_backbone("t5-base", config_only=True))
    ffn = 2 * d * dff  # the largest module: the overshoot is below one of them
    assert 0.042 <= selective.size / total < 0.042 + ffn / total
