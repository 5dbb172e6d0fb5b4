"""The backbone-free math of the subspace pipeline: Fastfood, projectors, landscape, memory."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from deltaspace.subspace import (
    DownProjection,
    FastfoodProjection,
    IntrinsicVector,
    JointDecomposition,
    PromptAutoEncoder,
    PromptDecoder,
    RandomPromptSubspace,
    SharedVectorSubspace,
    UpProjection,
    fwht,
    grid,
    grid_points,
    interpolate,
    interpolation_weights,
    landscape_axes,
    padded_length,
    plot_landscape,
    relative_landscape,
    up_projections,
)
from deltaspace.subspace.memory import (
    memory_markdown,
    optimizer_state_floats,
    projector_parameter_count,
    stage_memory_estimates,
    t5_base_tensor_shapes,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "subspace.md"
SIZES = {"adapter": 50, "prefix": 80, "lora": 120}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronization, which costs
    seconds on a loaded shared machine. Restored afterwards for the rest of the session."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sylvester(n: int) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


# ---------------------------------------------------------------- Fastfood


@pytest.mark.parametrize("n", [1, 2, 8, 64, 256])
def test_fwht_equals_dense_sylvester_product(n):
    x = torch.randn(3, n, dtype=torch.float64, generator=seeded(n))
    torch.testing.assert_close(fwht(x), x @ sylvester(n).T)


def test_fwht_backward_is_the_transform_of_the_gradient():
    x = torch.randn(2, 16, dtype=torch.float64, generator=seeded(0), requires_grad=True)
    assert torch.autograd.gradcheck(fwht, (x,))
    assert torch.autograd.gradgradcheck(fwht, (x,))


def test_fwht_leaves_its_input_untouched_and_handles_strided_batches():
    x = torch.randn(4, 3, 8, dtype=torch.float64, generator=seeded(1)).transpose(0, 1)
    before = x.clone()
    torch.testing.assert_close(fwht(x), x @ sylvester(8))
    assert torch.equal(x, before)


def test_fwht_rejects_lengths_that_are_not_powers_of_two():
    with pytest.raises(ValueError):
        fwht(torch.zeros(6))


def dense_fastfood(block) -> torch.Tensor:
    """M = H G Π H B of one block as a dense (size, d) matrix: rows truncated, columns padded."""
    length = block.length
    h = sylvester(length)
    permutation = torch.zeros(length, length, dtype=torch.float64)
    permutation[torch.arange(length), block.perm.long()] = 1.0
    m = h @ torch.diag(block.G.double()) @ permutation @ h @ torch.diag(block.sign.double())
    return m[: block.size, : block.d] * float(block.scale)


def test_fastfood_equals_dense_reference_with_padding_truncation_and_normalization():
    # sizes 6 and 5 pad to L=8; a size-1 tensor pads to L=4 so that all d=3 entries of I are used
    projection = FastfoodProjection(3, [(2, 3), 5, (1,)], seed=7).double()
    assert [b.length for b in projection.blocks] == [8, 8, 4]
    assert projection.size == 12
    intrinsic = torch.randn(2, 3, dtype=torch.float64, generator=seeded(0))
    expected = torch.cat([intrinsic @ dense_fastfood(b).T for b in projection.blocks], dim=-1)
    torch.testing.assert_close(projection(intrinsic), expected)
    torch.testing.assert_close(projection(intrinsic[0]), expected[0])
    for b in projection.blocks:
        divisor = math.sqrt(b.length * float(b.G.detach().square().sum())) * math.sqrt(b.size / b.length)
        assert float(b.scale) == pytest.approx(1 / divisor, rel=1e-6)


def test_fastfood_normalization_preserves_norm_on_average():
    # E||offset||² = ||I||²; without the sqrt(D/L) factor the ratio would be D/L = 0.61
    intrinsic = torch.randn(5, generator=seeded(1))
    with torch.no_grad():
        ratios = [
            float(FastfoodProjection(5, 2500, seed=s)(intrinsic).square().sum() / intrinsic.square().sum())
            for s in range(8)
        ]
    assert 0.85 < sum(ratios) / len(ratios) < 1.15


def test_fastfood_gradients_reach_G_and_I_unless_G_is_frozen():
    projection = FastfoodProjection(4, [(3, 5), 7], seed=0)
    intrinsic = torch.randn(4, generator=seeded(2), requires_grad=True)
    projection(intrinsic).square().sum().backward()
    assert intrinsic.grad is not None and intrinsic.grad.abs().sum() > 0
    assert all(b.G.grad is not None and b.G.grad.abs().sum() > 0 for b in projection.blocks)

    for frozen in (FastfoodProjection(4, [(3, 5), 7], seed=0, trainable_G=False), projection):
        frozen.freeze_G()
        for b in frozen.blocks:
            b.G.grad = None
        intrinsic.grad = None
        frozen(intrinsic).square().sum().backward()
        assert intrinsic.grad.abs().sum() > 0
        assert not any(p.requires_grad for p in frozen.parameters())
        assert all(b.G.grad is None for b in frozen.blocks)


def test_fastfood_is_deterministic_for_a_seed_and_checkpoints_only_G():
    shapes = [(3, 5), 7]
    intrinsic = torch.randn(4, generator=seeded(3))
    a, b = FastfoodProjection(4, shapes, seed=11), FastfoodProjection(4, shapes, seed=11)
    assert torch.equal(a(intrinsic), b(intrinsic))
    assert not torch.equal(a(intrinsic), FastfoodProjection(4, shapes, seed=12)(intrinsic))
    assert sorted(a.state_dict()) == ["blocks.0.G", "blocks.1.G"]
    assert sum(p.numel() for p in a.parameters()) == padded_length(15, 4) + padded_length(7, 4)
    with torch.no_grad():
        a.blocks[0].G.mul_(2.0)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(intrinsic), b(intrinsic))


def test_fastfood_adds_theta0_when_given():
    theta0 = torch.arange(12.0)
    with_base = FastfoodProjection(3, [(2, 3), 6], seed=5, theta0=theta0)
    offset_only = FastfoodProjection(3, [(2, 3), 6], seed=5)
    intrinsic = torch.randn(3, generator=seeded(4))
    torch.testing.assert_close(with_base(intrinsic), theta0 + offset_only(intrinsic))
    assert "theta0" not in with_base.state_dict()


# ---------------------------------------------------------------- projectors


def test_projection_shapes_and_no_biases():
    down, up = DownProjection(10, 3), UpProjection(10, 3)
    assert down(torch.randn(10)).shape == (3,) and down(torch.randn(4, 10)).shape == (4, 3)
    assert up(torch.randn(3)).shape == (10,) and up(torch.randn(4, 3)).shape == (4, 10)
    assert [tuple(p.shape) for p in up.parameters()] == [(10, 3)]
    joint = JointDecomposition(SIZES, y=4)
    assert all(p.ndim == 2 and "bias" not in name for name, p in joint.named_parameters())
    assert sum(p.numel() for p in joint.parameters()) == sum(
        projector_parameter_count(size, 4) for size in SIZES.values()
    )


def test_up_projection_decode_streams_rows_without_autograd():
    up = UpProjection(10, 3)
    codes = torch.randn(5, 3, generator=seeded(5))
    rows = list(up.decode(codes))
    assert len(rows) == 5 and not any(r.requires_grad for r in rows)
    torch.testing.assert_close(torch.stack(rows), up(codes).detach())


def test_interpolation_weights_lie_in_the_simplex_with_the_papers_means():
    single = interpolation_weights(seeded(0))
    assert single.shape == (3,) and float(single.sum()) == pytest.approx(1.0)
    weights = interpolation_weights(seeded(0), batch=4000)
    assert weights.shape == (4000, 3)
    assert bool((weights >= 0).all()) and bool((weights <= 1).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(4000))
    torch.testing.assert_close(weights.mean(0), torch.tensor([0.5, 0.25, 0.25]), atol=0.02, rtol=0)
    assert torch.equal(weights, interpolation_weights(seeded(0), batch=4000))


def test_interpolate_follows_the_order_of_the_codes():
    codes = {"adapter": torch.tensor([1.0, 0.0]), "prefix": torch.tensor([0.0, 1.0]),
             "lora": torch.tensor([1.0, 1.0])}
    mixed = interpolate(codes, torch.tensor([0.5, 0.3, 0.2]))
    torch.testing.assert_close(mixed, torch.tensor([0.7, 0.5]))
    with pytest.raises(ValueError):
        interpolate(codes, torch.tensor([0.5, 0.5]))


def test_joint_decomposition_loss_options_match_their_formulas():
    thetas = {m: torch.randn(2, s, generator=seeded(s)) for m, s in SIZES.items()}
    for squared in (True, False):
        for target in ("interpolated", "own"):
            joint = JointDecomposition(SIZES, y=4, seed=1, squared=squared, target=target)
            decoded, loss = joint(thetas, seeded(9))
            weights = interpolation_weights(seeded(9), batch=2)
            codes = {m: joint.down[m](t) for m, t in thetas.items()}
            mixed = interpolate(codes, weights)
            expected = 0.0
            for m, theta in thetas.items():
                torch.testing.assert_close(decoded[m], joint.up[m](mixed))
                rebuilt = joint.up[m](mixed if target == "interpolated" else codes[m])
                dist = (rebuilt - theta).norm(dim=-1)
                expected = expected + (dist.square() if squared else dist)
            assert decoded["lora"].shape == (2, 120) and loss.shape == ()
            torch.testing.assert_close(loss, expected.mean())


def test_joint_decomposition_reconstruction_falls_when_optimized():
    thetas = {m: torch.randn(s, generator=seeded(s)) for m, s in SIZES.items()}
    joint = JointDecomposition(SIZES, y=4, seed=0)
    optimizer = torch.optim.Adam(joint.parameters(), lr=1e-2)
    generator = seeded(0)

    def evaluate() -> float:
        with torch.no_grad():
            return float(sum(joint(thetas, seeded(100 + i))[1] for i in range(8)) / 8)

    before = evaluate()
    for _ in range(300):
        optimizer.zero_grad()
        joint(thetas, generator)[1].backward()
        optimizer.step()
    assert evaluate() < before / 100


def test_shared_vector_subspace_decodes_every_method_and_splits_param_groups():
    projections = up_projections(SIZES, y=4, seed=1)
    projections["finetune"] = FastfoodProjection(4, [(3, 5), 7], seed=2)
    subspace = SharedVectorSubspace(n_tasks=3, y=4, projections=projections, seed=0)
    one = subspace(1)
    assert {m: tuple(t.shape) for m, t in one.items()} == {
        "adapter": (50,), "prefix": (80,), "lora": (120,), "finetune": (22,)}
    batch = subspace(torch.tensor([0, 2]))
    assert batch["lora"].shape == (2, 120)
    torch.testing.assert_close(batch["lora"][1], subspace(2)["lora"])

    groups = subspace.param_groups(lr_vector=5e-5, lr_projection=1e-4)
    assert [(g["name"], g["lr"]) for g in groups] == [("vectors", 5e-5), ("projections", 1e-4)]
    ids = [[id(p) for p in g["params"]] for g in groups]
    assert not set(ids[0]) & set(ids[1])
    assert sorted(ids[0] + ids[1]) == sorted(id(p) for p in subspace.parameters())
    torch.optim.Adafactor(groups)  # the groups are valid optimizer input


def test_intrinsic_vector_trains_only_its_y_numbers():
    up = UpProjection(10, 3)
    vector = IntrinsicVector(3, seed=4, projection=up)
    assert torch.equal(vector.vector, IntrinsicVector(3, seed=4, projection=up).vector)
    assert [name for name, p in vector.named_parameters() if p.requires_grad] == ["vector"]
    vector().square().sum().backward()
    assert vector.vector.grad.abs().sum() > 0 and up.weight.grad is None
    spread = IntrinsicVector(4000, seed=0, projection=torch.nn.Identity()).vector
    assert spread.detach().std().item() == pytest.approx(0.02, rel=0.05)


def test_prompt_autoencoder_reconstructs_a_toy_prompt_set_after_training():
    n, d = 4, 6
    codes = torch.randn(8, 3, generator=seeded(0))
    prompts = codes @ torch.randn(3, n * d, generator=seeded(1))
    autoencoder = PromptAutoEncoder(n, d, d_intrinsic=4, hidden=32, seed=0)
    with torch.no_grad():
        rebuilt, before = autoencoder(prompts)
    assert rebuilt.shape == prompts.shape
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        autoencoder(prompts)[1].backward()
        optimizer.step()
    with torch.no_grad():
        after = autoencoder(prompts)[1]
    assert after.item() < before.item() / 100


def test_random_prompt_subspace_is_a_frozen_untrained_decoder():
    baseline = RandomPromptSubspace(4, 6, d_intrinsic=3, hidden=8, seed=5)
    reference = PromptDecoder(4, 6, d_intrinsic=3, hidden=8, seed=5)
    assert not any(p.requires_grad for p in baseline.parameters())
    code = torch.randn(3, generator=seeded(6))
    torch.testing.assert_close(baseline(code), reference(code).detach())
    assert baseline(code).shape == (24,)


# ---------------------------------------------------------------- landscape


def test_landscape_axes_are_orthonormal_and_place_the_solutions():
    g = seeded(7)
    I_A, I_P, I_L = (torch.randn(10, generator=g) for _ in range(3))
    origin, u, v, coords = landscape_axes(I_A, I_P, I_L)
    assert torch.equal(origin, I_A)
    assert float(u @ u) == pytest.approx(1.0, abs=1e-6)
    assert float(v @ v) == pytest.approx(1.0, abs=1e-6)
    assert float(u @ v) == pytest.approx(0.0, abs=1e-6)
    v_raw = (I_L - I_A).double()
    u64 = u.double()
    along = float(v_raw @ u64)
    assert coords["adapter"] == (0.0, 0.0)
    assert coords["prefix"] == pytest.approx((float((I_P - I_A).norm()), 0.0), abs=1e-5)
    assert coords["lora"] == pytest.approx((along, float((v_raw - along * u64).norm())), abs=1e-5)
    for method, solution in zip(("adapter", "prefix", "lora"), (I_A, I_P, I_L)):
        alpha, beta = coords[method]
        torch.testing.assert_close(origin + alpha * u + beta * v, solution, atol=1e-5, rtol=0)


def test_landscape_axes_reject_degenerate_solutions():
    I_A, I_P = torch.zeros(4), torch.tensor([1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        landscape_axes(I_A, I_A, I_P)
    with pytest.raises(ValueError):
        landscape_axes(I_A, I_P, 3 * I_P)


def test_grid_has_21_exact_values():
    values = grid()
    assert len(values) == 21
    assert values[0].item() == -4.0 and values[-1].item() == 4.0 and values[10].item() == 0.0
    assert [float(f"{x:.1f}") for x in values.tolist()] == values.tolist()
    with pytest.raises(ValueError):
        grid(-4, 4, 0.3)


def test_grid_points_decode_back_to_their_coordinates():
    g = seeded(8)
    origin, u, v, _ = landscape_axes(*(torch.randn(6, generator=g, dtype=torch.float64) for _ in range(3)))
    alphas, betas = grid(-1, 1, 0.5), grid(0, 2, 0.4)
    points = grid_points(origin, u, v, alphas, betas)
    assert points.shape == (5, 6, 6)
    offsets = points - origin
    torch.testing.assert_close(offsets @ u, alphas[:, None].expand(5, 6))
    torch.testing.assert_close(offsets @ v, betas[None, :].expand(5, 6))


def toy_scores() -> pd.DataFrame:
    rows = []
    for alpha in (-0.4, 0.0, 0.4):
        for beta in (0.0, 0.4):
            for i, method in enumerate(("adapter", "prefix", "lora")):
                rows.append({"alpha": alpha, "beta": beta, "method": method,
                             "score": 60.0 + 10 * i - 20 * abs(alpha) - 10 * beta})
    return pd.DataFrame(rows)


def test_relative_landscape_is_the_method_mean_over_e_pet():
    relative = relative_landscape(toy_scores(), e_pet=80.0)
    assert list(relative.columns) == ["alpha", "beta", "relative"]
    assert len(relative) == 6
    at_origin = relative.query("alpha == 0.0 and beta == 0.0")["relative"].item()
    assert at_origin == pytest.approx(70.0 / 80.0)
    corner = relative.query("alpha == 0.4 and beta == 0.4")["relative"].item()
    assert corner == pytest.approx((70.0 - 8.0 - 4.0) / 80.0)
    with pytest.raises(ValueError):
        relative_landscape(toy_scores().iloc[1:], e_pet=80.0)
    with pytest.raises(ValueError):
        relative_landscape(toy_scores(), e_pet=0.0)


def test_plot_landscape_writes_a_png(tmp_path):
    relative = relative_landscape(toy_scores(), e_pet=80.0)
    coords = {"adapter": (0.0, 0.0), "prefix": (0.3, 0.0), "lora": (-0.2, 0.3)}
    path = plot_landscape(relative, coords, tmp_path / "figs" / "landscape.png", title="toy")
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- memory


def test_projector_parameter_counts_at_paper_scale():
    assert projector_parameter_count(1_105_920, 4) == 8_847_376
    assert projector_parameter_count(1_105_920, 100) == 221_194_000
    assert 3 * projector_parameter_count(1_105_920, 100) == 663_582_000
    assert projector_parameter_count(1_105_920, 100, down=False) == 110_592_000
    with torch.device("meta"):
        paper = JointDecomposition({m: 1_105_920 for m in SIZES}, y=100)
        autoencoder = PromptAutoEncoder(100, 768, d_intrinsic=250)
    rows = {(r.stage, r.setting): r for r in stage_memory_estimates()}
    assert sum(p.numel() for p in paper.parameters()) == 663_582_000
    assert rows["1 joint decomposition", "multi-task, y=100, 60 tasks"].trainable == 663_582_000
    assert rows["1 joint decomposition", "single-task, y=4, A+P+L"].trainable == 26_542_128
    msf = rows["IPT MSF", "BART-base, n=100, d_I=250, 100 tasks"]
    assert msf.trainable == sum(p.numel() for p in autoencoder.parameters())


def test_optimizer_state_estimate_matches_torch_optimizers():
    shapes = [(5, 7), (4,), (2, 3, 4)]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    for name, cls in (("adafactor", torch.optim.Adafactor), ("adam", torch.optim.Adam)):
        optimizer = cls(params, lr=1e-3)
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
        held = sum(t.numel() for p in params for k, t in optimizer.state[p].items() if k != "step")
        assert optimizer_state_floats(shapes, name) == held


def test_t5_base_shapes_add_up_to_the_model_size():
    assert sum(math.prod(s) for s in t5_base_tensor_shapes()) == 222_903_552


def test_doc_memory_tables_are_generated_from_the_function():
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- memory-tables:begin -->\n(.*?)<!-- memory-tables:end -->", text, re.S)
    assert match, "docs/subspace.md lacks the generated memory tables"
    assert match.group(1) == memory_markdown()
    for number in ("8,847,376", "221,194,000", "663,582,000"):
        assert number in match.group(1)
