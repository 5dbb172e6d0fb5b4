"""The decomposition paper's methods: ‰Params parity, the flat-vector contract, MPC, the formulas."""

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import toy_batch
from deltaspace.backbones import load_backbone
from deltaspace.decomposition import paper
from deltaspace.deltas import DeltaOptionError, build_delta
from deltaspace.deltas.mpc import factor_pairs, gram_deviations, mpc_penalty
from deltaspace.heads import make_head

DOCS = Path(__file__).resolve().parents[1] / "docs" / "methods.md"

# (registry name, options) per variant the paper runs, at tiny sizes; s = α/r = 2 as the paper's config.
_R = {"r": 4, "alpha": 8.0}
VARIANTS = {
    "lora-mpco": ("lora-mpco", _R), "lora-mpcd": ("lora-mpcd", _R),
    "lora-mpcn": ("lora-mpcn", {"r": 4}), "parallel-adapter": ("parallel-adapter", {"r": 4}),
    "trilora": ("trilora", _R), "trilora+mpco": ("trilora", {**_R, "mpc": "o"}),
    "flora": ("flora", _R), "adalora": ("adalora", _R),
    "adalora-mpco": ("adalora", {**_R, "orth_weight": 0.0}), "dora": ("dora", _R),
    "ssl": ("ssl", {}), "ssb": ("ssb", {}), "ia3": ("ia3", {}), "sam-parser": ("sam-parser", {}),
    "hadapter": ("adapter", {"r": 4, "bias": True}),
    "padapter": ("adapter", {"r": 4, "bias": True, "activation": "relu", "placement": "ffn"}),
    "lora-all": ("lora", {**_R, "targets": "all"}),
}
RECONSTRUCTION = ("ssl", "ssb", "ia3", "sam-parser")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronization, which costs seconds on a
    loaded shared machine. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build(backbone, variant, seed=0):
    bb = load_backbone(backbone, seed=seed)
    method, options = VARIANTS[variant]
    return bb, build_delta(method, bb, **options)


def _head(bb, delta):
    return make_head(bb, delta, ["yes", "no"] if bb.kind == "encoder" else None)


# --- ‰Params parity with Tables II-IV, from configs alone --------------------------------------------


@pytest.fixture(scope="module")
def docs_text():
    return DOCS.read_text()


@pytest.mark.parametrize("backbone", paper.BACKBONES)
def test_permille_column_matches_the_paper(backbone, docs_text):
    table = paper.parity_table((backbone,))
    expected_cells = 5 + 13 * 4
    assert len(table) == expected_cells
    for _, cell in table.iterrows():
        if cell.known_deviation:  # listed deviations must really deviate, so the list cannot go stale
            assert not cell.agrees, f"{backbone} {cell.row} r={cell['rank']} now agrees: drop it from KNOWN_DEVIATIONS"
        else:
            assert cell.agrees, (f"{backbone} {cell.row} r={cell['rank']}: paper {cell.paper_permille}‰, "
                                 f"ours {cell.ours_permille}‰ ({cell['size']} / {cell.nominal:.0f})")
    known = {(backbone, c.row, None if pd.isna(c.group) else int(c.group)) for _, c in table.iterrows()
             if c.known_deviation}
    assert known == {k for k in paper.KNOWN_DEVIATIONS if k[0] == backbone}
    # docs/methods.md shows exactly this table.
    for line in paper.parity_markdown(table).splitlines()[2:]:
        assert line in docs_text, ("docs/methods.md is stale; regenerate its table with "
                                   f"python -m deltaspace.decomposition.paper:\n{line}")


def test_permille_convention():
    # The paper's backbone sizes are the config counts to 3 significant digits.
    assert paper.nominal_size(124_645_632) == 125e6 and paper.nominal_size(183_831_552) == 184e6
    assert paper.nominal_size(355_359_744) == 355e6
    # 18·h·r per block (Q, K, V, O, FFN up and down) on RoBERTa-base at r=2: 331,776 → 2.65‰.
    assert paper.agreement(331_776, 124_645_632, 2.65) == "exact"
    assert not paper.agrees(331_776, 124_645_632, 2.70)


# --- the flat-vector contract -----------------------------------------------------------------------


def _reference_outputs(backbone, delta=None, theta=None, bb=None):
    bb = bb or load_backbone(backbone, seed=1)
    batch = toy_batch(bb)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    if bb.kind == "seq2seq":
        kwargs["labels"] = batch["labels"]
    with torch.no_grad():
        if delta is None:
            out = bb.model(**kwargs)
        else:
            with delta.bound(theta):
                out = bb.model(**kwargs)
    return out.last_hidden_state if bb.kind == "encoder" else out.logits


# One variant per kind of installed module (peft LoRA, peft AdaLoRA, our low-rank hook, DoRA,
# the scaling hooks, SAM-PARSER's SVD, the serial adapter): every family takes each of them.
_KINDS = ("lora-mpco", "adalora", "trilora", "flora", "dora", "ssb", "sam-parser", "padapter", "lora-mpcn")


@pytest.mark.parametrize("backbone", ["tiny-t5", "tiny-bart"])
@pytest.mark.parametrize("variant", _KINDS)
def test_fresh_theta_leaves_seq2seq_backbones_unchanged(backbone, variant):
    reference = _reference_outputs(backbone)
    bb, delta = _build(backbone, variant, seed=1)
    assert torch.allclose(_reference_outputs(backbone, delta, delta.init(3), bb), reference, atol=1e-6)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_flat_vector_contract_identity_init_and_upstream_gradient(variant):
    reference = _reference_outputs("tiny-bert")
    bb, delta = _build("tiny-bert", variant, seed=1)
    theta = delta.init(0)
    # A fresh θ leaves the backbone unchanged (every method here has an identity init).
    assert torch.allclose(_reference_outputs("tiny-bert", delta, theta, bb), reference, atol=1e-6)
    assert theta.shape == (delta.size,) and torch.equal(theta, delta.init(0))
    other = theta + torch.randn(delta.size) * 0.01
    delta.load(other)
    assert torch.equal(delta.extract(), other)
    names = [s.name for s in delta.manifest]
    assert names == sorted(names) and delta.manifest[-1].offset + delta.manifest[-1].numel == delta.size
    # A projector upstream of θ gets a gradient through the backbone and through the penalty.
    code = torch.zeros(3, requires_grad=True)
    up = torch.randn(delta.size, 3) * 0.01
    theta = delta.init(0) + up @ code
    with delta.bound(theta):
        loss = _head(bb, delta).loss(toy_batch(bb))
    penalty = delta.penalty(theta)
    (loss if penalty is None else loss + penalty).backward()
    assert code.grad is not None and code.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.model.parameters())


# Every new method once (LoRA + MPCn is the parallel adapter, tested equal below; "AdaLoRA − MPCo"
# is AdaLoRA without its penalty; HAdapter is the unified-dt adapter with biases).
@pytest.mark.parametrize("variant", ["lora-mpco", "lora-mpcd", "parallel-adapter", "trilora+mpco", "flora",
                                     "adalora", "dora", "ssl", "ssb", "ia3", "sam-parser", "padapter"])
def test_each_method_trains_on_tiny_bert(variant):
    bb, delta = _build("tiny-bert", variant)
    batch, head = toy_batch(bb), _head(bb, delta)
    theta = delta.init(0).requires_grad_(True)
    # Scaling vectors start at 1 and move slowly; the low-rank forms get a gentler rate.
    lr = 1e-1 if variant in RECONSTRUCTION else 1e-2
    optimizer = torch.optim.Adam([theta], lr=lr)
    losses = []
    for _ in range(25):
        with delta.bound(theta):
            task = head.loss(batch)
        penalty = delta.penalty(theta)
        loss = task if penalty is None else task + penalty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(task.item())
    assert min(losses[-5:]) < 0.8 * losses[0], losses  # the task loss itself, not just the penalty


# --- MPC ----------------------------------------------------------------------------------------------


def _constrained_factors(r=3, n=7, m=5, dtype=torch.float64):
    """Exactly representable factors: lora_A with orthonormal rows, lora_B with orthonormal columns,
    and lora_B_d with orthogonal columns of unequal norms."""
    lora_a = torch.zeros(r, n, dtype=dtype)
    lora_b = torch.zeros(m, r, dtype=dtype)
    for i, (j, sign) in enumerate([(4, 1.0), (0, -1.0), (6, 1.0)][:r]):
        lora_a[i, j] = sign
    for i, j in enumerate([2, 4, 0][:r]):
        lora_b[j, i] = 1.0
    lora_b_d = lora_b * torch.tensor([3.0, 0.5, 2.0][:r], dtype=dtype)
    return lora_a, lora_b, lora_b_d


@pytest.mark.parametrize("form", ["paper", "adalora"])
def test_mpc_is_exactly_zero_at_its_constraint_and_positive_off_it(form):
    a, b, b_d = _constrained_factors()
    assert mpc_penalty([(a, b)], "o", form).item() == 0.0
    assert mpc_penalty([(a, b)], "d", form).item() == 0.0
    assert mpc_penalty([(a, b_d)], "d", form).item() == 0.0  # MPCd: B's rows need only be orthogonal
    assert mpc_penalty([(a, b_d)], "o", form).item() > 0.0  # MPCo also fixes their norms
    bent = a.clone()
    bent[0, 1] = 0.25
    assert mpc_penalty([(bent, b)], "o", form).item() > 0 and mpc_penalty([(bent, b)], "d", form).item() > 0
    skew = b.clone()
    skew[2, 1] = 0.5  # two of B's rows (in the paper's notation) no longer orthogonal
    assert mpc_penalty([(a, skew)], "d", form).item() > 0


def test_mpc_matches_the_paper_formulas():
    torch.manual_seed(0)
    a, b = torch.randn(3, 7, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    A, B = a.T, b.T  # the paper's A (n×r) and B (r×m)
    eye = torch.eye(3, dtype=torch.float64)
    bbt = B @ B.T
    o = (A.T @ A - eye).square().sum() + (bbt - eye).square().sum()  # Eq. 25
    d = (A.T @ A - eye).square().sum() + (bbt - torch.diag(torch.diag(bbt))).square().sum()  # Eq. 26
    assert torch.allclose(mpc_penalty([(a, b)], "o"), o) and torch.allclose(mpc_penalty([(a, b)], "d"), d)
    # Averaged over matrices (paper form) and over factors (AdaLoRA's non-squared form).
    pairs = [(a, b), (a * 2, b)]
    assert torch.allclose(mpc_penalty(pairs, "o"), (o + mpc_penalty([(a * 2, b)], "o")) / 2)
    norms = [torch.linalg.matrix_norm(x) for p in pairs for x in gram_deviations(*p, "o")]
    assert torch.allclose(mpc_penalty(pairs, "o", "adalora"), sum(norms) / 4)


@pytest.mark.parametrize("kind", ["o", "d"])
@pytest.mark.parametrize("form", ["paper", "adalora"])
def test_mpc_gradients_match_finite_differences(kind, form):
    torch.manual_seed(1)
    a = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: mpc_penalty([(x, y)], kind, form), (a, b))


def test_delta_penalty_gradient_matches_a_directional_finite_difference():
    bb, delta = _build("tiny-bert", "lora-mpcd")
    theta = (delta.init(0) + 0.05 * torch.randn(delta.size)).double().requires_grad_(True)
    value = delta.penalty(theta)
    (grad,) = torch.autograd.grad(value, theta)
    direction = torch.randn(delta.size, dtype=torch.float64)
    eps = 1e-6
    with torch.no_grad():
        numeric = (delta.penalty(theta + eps * direction) - delta.penalty(theta - eps * direction)) / (2 * eps)
    assert torch.allclose(grad @ direction, numeric, rtol=1e-6, atol=1e-8)


def test_mpc_on_a_delta_is_zero_at_the_constraint_and_weighted():
    bb, delta = _build("tiny-bert", "lora-mpco")
    theta = delta.init(0)
    views = dict((s.name, v) for s, v in delta.views(theta))
    pairs = factor_pairs(views)
    assert len(pairs) == 12  # 6 linear maps × 2 layers (targets="all")
    for lora_a, lora_b in pairs:  # orthonormal rows / columns: the constraint holds exactly
        lora_a.copy_(torch.eye(*lora_a.shape))
        lora_b.copy_(torch.eye(*lora_b.shape))
    assert delta.penalty(theta).item() == 0.0
    lora_b = pairs[0][1]
    lora_b[0, 0] = 2.0
    expected = 0.1 * ((4.0 - 1.0) ** 2) / 12  # λ · (one squared deviation) averaged over 12 matrices
    assert delta.penalty(theta).item() == pytest.approx(expected)
    weightless = build_delta("lora-mpco", load_backbone("tiny-bert"), r=4, mpc_weight=0.0)
    assert weightless.penalty(weightless.init(0)) is None


def test_stage0_objective_adds_the_penalty():
    from deltaspace.train.stage0 import ThetaObjective

    bb, delta = _build("tiny-bert", "trilora+mpco")
    head = _head(bb, delta)
    objective = ThetaObjective(delta, head, delta.init(0), [], "accuracy", 2)
    batch = toy_batch(bb)
    with torch.no_grad():
        torch.manual_seed(0)  # the objective trains in train mode: same dropout masks for both
        total = objective.loss(batch)
        torch.manual_seed(0)
        with delta.bound(objective.theta):
            task = head.loss(batch)
        assert torch.allclose(total, task + delta.penalty(objective.theta))
        assert delta.penalty(objective.theta) > 0


def test_lora_mpcn_is_the_parallel_adapter():
    bb, mpcn = _build("tiny-bert", "lora-mpcn", seed=2)
    bb2, pa = _build("tiny-bert", "parallel-adapter", seed=2)
    assert mpcn.size == pa.size and mpcn.manifest == pa.manifest
    assert mpcn.size == build_delta("lora", load_backbone("tiny-bert"), r=4, targets="all").size
    theta = torch.randn(pa.size) * 0.3  # B ≠ 0: the adapters act
    batch = toy_batch(bb)
    with torch.no_grad():
        with mpcn.bound(theta):
            a = _head(bb, mpcn).loss(batch)
        with pa.bound(theta):
            b = _head(bb2, pa).loss(batch)
    assert torch.equal(a, b)
    with torch.no_grad(), pa.bound(pa.init(0)):
        fresh = _head(bb2, pa).loss(batch)
    assert not torch.allclose(a, fresh)


def test_lora_with_mpc_keeps_loras_theta_layout():
    lora = build_delta("lora", load_backbone("tiny-bert"), r=4, targets="all")
    for name in ("lora-mpco", "lora-mpcd"):
        mpc = build_delta(name, load_backbone("tiny-bert"), r=4)
        assert mpc.manifest == lora.manifest and torch.equal(mpc.init(5), lora.init(5))


def test_adalora_orthogonality_is_adaloras_form_and_switches_off():
    bb, delta = _build("tiny-bert", "adalora")
    theta = delta.init(0)
    views = dict((s.name, v) for s, v in delta.views(theta))
    assert any(".lora_E." in n for n in views) and len(factor_pairs(views)) == 12
    assert torch.allclose(delta.penalty(theta), 0.1 * mpc_penalty(factor_pairs(views), "o", "adalora"))
    bb, off = _build("tiny-bert", "adalora-mpco")
    assert off.penalty(off.init(0)) is None


# --- the formulas, checked against the merged weight of one Linear -----------------------------------


def _linear_io(bb, delta, theta, name):
    """The module ``name``, its own input (before any pre-hook) and its final output, under θ."""
    module = dict(bb.model.named_modules())[name]
    seen = {}
    handles = [module.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]), prepend=True),
               module.register_forward_hook(lambda m, args, out: seen.setdefault("y", out))]
    with torch.no_grad(), delta.bound(theta):
        bb.model(input_ids=toy_batch(bb)["input_ids"])
    for handle in handles:
        handle.remove()
    return module, seen["x"], seen["y"]


@pytest.mark.parametrize("variant,name", [
    ("ssl", "encoder.layer.0.attention.self.key"), ("ia3", "encoder.layer.1.intermediate.dense"),
    ("ssb", "encoder.layer.0.attention.self.value"), ("sam-parser", "encoder.layer.1.output.dense"),
    ("trilora", "encoder.layer.0.attention.self.query"), ("flora", "encoder.layer.0.attention.output.dense"),
    ("dora", "encoder.layer.1.intermediate.dense"), ("adalora", "encoder.layer.0.attention.self.key"),
])
def test_each_form_equals_its_merged_weight(variant, name):
    """x ↦ x φ(W) + b with φ(W) built from the θ views by the paper's formula (torch layout: out×in)."""
    bb, delta = _build("tiny-bert", variant)
    theta = delta.init(0) + 0.2 * torch.randn(delta.size, generator=torch.Generator().manual_seed(0))
    module, x, y = _linear_io(bb, delta, theta, name)
    v = {s.name[len(name) + 1:]: t for s, t in delta.views(theta) if s.name.startswith(name + ".")}
    base = module.base_layer if variant == "adalora" else module  # peft wraps the Linear
    w, b = base.weight, base.bias
    s = delta.options.get("alpha", 0.0) / delta.options.get("r", 1)
    if variant == "ssl":
        merged = w * v["deltaspace_scale.d_in"][None, :]  # D1 W (the paper's x W notation)
    elif variant == "ia3":
        merged = v["deltaspace_scale.d_out"][:, None] * w  # W D2
    elif variant == "ssb":
        merged = v["deltaspace_scale.d_out"][:, None] * w * v["deltaspace_scale.d_in"][None, :]  # D1 W D2
    elif variant == "sam-parser":
        u, _, vh = torch.linalg.svd(w, full_matrices=False)
        merged = u @ torch.diag(v["deltaspace_svd.sigma"]) @ vh  # U Σ' Vᵀ
    elif variant == "trilora":
        a, up, d = (v[f"deltaspace_lowrank.lora_{k}"] for k in "ABD")
        merged = w + s * (a.T @ torch.diag(d) @ up.T).T  # W + s·A D B
    elif variant == "flora":
        a, up, core = (v[f"deltaspace_lowrank.lora_{k}"] for k in "ABM")
        merged = w + s * (a.T @ core @ up.T).T  # W + s·A M B
    elif variant == "dora":
        a, up = v["deltaspace_lowrank.lora_A"], v["deltaspace_lowrank.lora_B"]
        direction = w + s * up @ a
        merged = v["deltaspace_lowrank.magnitude"][:, None] * direction / direction.norm(dim=1, keepdim=True)
    else:  # AdaLoRA: W + s·P Λ Q
        a, e, up = (v[f"lora_{k}.default"] for k in "AEB")
        merged = w + s * up @ (a * e)
    expected = torch.nn.functional.linear(x, merged, b)
    assert torch.allclose(y, expected, atol=1e-5), (y - expected).abs().max()


# --- options -------------------------------------------------------------------------------------------


def test_placement_and_target_options():
    count = lambda d, pattern: len({re.sub(r"\.(deltaspace|lora).*", "", s.name) for s in d.manifest  # noqa: E731
                                   if re.search(pattern, s.name)})
    qv = build_delta("lora", load_backbone("tiny-bert"), r=4)
    every = build_delta("lora", load_backbone("tiny-bert"), r=4, targets="all")
    assert count(qv, "lora_A") == 4 and count(every, "lora_A") == 12
    houlsby = build_delta("adapter", load_backbone("tiny-bert"), r=4, bias=True)
    pfeiffer = build_delta("adapter", load_backbone("tiny-bert"), r=4, bias=True, placement="ffn")
    h, d = 64, 4
    assert houlsby.size == 2 * 2 * (2 * h * d + d + h) and pfeiffer.size == 2 * (2 * h * d + d + h)
    assert build_delta("adapter", load_backbone("tiny-bert"), r=4).size == 2 * 2 * 2 * h * d
    scaled = {m: build_delta(m, load_backbone("tiny-bert")).size for m in ("ssl", "ia3", "ssb", "sam-parser")}
    assert scaled == {"ssl": 2 * 3 * h, "ia3": 2 * (2 * h + 128), "ssb": 2 * (5 * h + 128), "sam-parser": 2 * 6 * h}
    for method, options in [("lora", {"targets": "kv"}), ("adapter", {"placement": "inside"}),
                            ("trilora", {"mpc": "x"}), ("lora-mpco", {"mpc_form": "cubic"}),
                            ("parallel-adapter", {"activation": "softmax"})]:
        with pytest.raises(DeltaOptionError):
            build_delta(method, load_backbone("tiny-bert"), **options)
