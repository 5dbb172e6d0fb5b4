"""The decomposition paper's synthetic study: what the mathematics guarantees, asserted on a small run."""

import argparse

import pandas as pd
import pytest

from deltaspace.decomposition import commands
from deltaspace.decomposition.synthetic import StudyConfig, make_target, ordering, run_study, summary

SMALL = dict(ranks=(2, 4), seeds=2, n=16, m=16, steps=200, target_rank=8, decay=0.7, lrs=(3e-2,))


@pytest.fixture(scope="module")
def study():
    return run_study(StudyConfig(**SMALL))


def _wide(frame, value="error"):
    chosen = frame[frame.selected & (frame.family == "extension")]
    return chosen.pivot_table(index=["rank", "seed"], columns="method", values=value)


def test_no_form_beats_the_eckart_young_bound(study):
    ext = study[study.family == "extension"]
    assert (ext.error >= ext.bound - 1e-4).all(), ext[ext.error < ext.bound - 1e-4]
    # The nonlinear form (the parallel adapter, = LoRA + MPCn) is still rank r on its outputs.
    assert (ext[ext.method == "parallel-adapter"].gap > 1e-3).all()


def test_unconstrained_forms_share_the_optimum(study):
    gaps = _wide(study, "gap")
    # AB and ADB reach the bound (Eq. 22: the same set of rank-r matrices); MPCd is satisfiable at it.
    assert (gaps["lora"] < 1e-3).all() and (gaps["trilora"] < 1e-3).all()
    assert (gaps["lora-mpcd"] < 1e-2).all()


def test_under_mpco_the_middle_matrix_carries_the_spectrum(study):
    """Proposition 1's ordering where its coupling argument bites: with semi-orthogonal factors,
    only G can hold σ, so FLoRA ≤ TriLoRA < LoRA at the same rank (target spectrum not flat)."""
    errors = _wide(study)
    assert (errors["flora-mpco"] <= errors["trilora-mpco"] + 5e-3).all()
    assert (errors["trilora-mpco"] + 2e-2 < errors["lora-mpco"]).all()
    assert len(ordering(study, "-mpco")) == 2  # the printed summary: one share per rank


def test_mpco_is_harmless_when_the_target_fits_its_pattern():
    # A flat spectrum (all σ = 1) is exactly what A B with semi-orthogonal factors can express.
    frame = run_study(StudyConfig(**{**SMALL, "decay": 1.0, "seeds": 1, "methods": ("lora-mpco",)}))
    assert (frame.gap < 1e-3).all(), frame


def test_ssb_contains_ssl_and_ia3(study):
    rec = study[study.selected & (study.family == "reconstruction")].pivot_table(
        index="seed", columns="method", values="error")
    assert (rec["ssb"] <= rec[["ssl", "ia3"]].min(axis=1) + 1e-4).all()
    assert (rec < 1.0 + 1e-6).all().all()  # starting at W itself, no form ends worse than it began


def test_parameter_counts_are_reported_at_matched_rank(study):
    params = _wide(study, "params")
    r = params.index.get_level_values("rank").to_numpy()
    assert (params["lora"].to_numpy() == r * 32).all()
    assert (params["trilora"].to_numpy() == r * 32 + r).all()
    assert (params["flora"].to_numpy() == r * 32 + r * r).all()
    assert (params["lora-mpco"] == params["lora"]).all() and (params["parallel-adapter"] == params["lora"]).all()


def test_deterministic_per_seed():
    methods = ("flora", "lora-mpcd", "parallel-adapter", "ssb")
    cfg = StudyConfig(**{**SMALL, "steps": 40, "seeds": 1, "methods": methods})
    a, b = run_study(cfg), run_study(cfg)
    pd.testing.assert_frame_equal(a, b)
    assert make_target(cfg, 0).delta.equal(make_target(cfg, 0).delta)
    assert not make_target(cfg, 0).delta.equal(make_target(cfg, 1).delta)


def test_cli_writes_a_result_with_provenance_table_and_plot(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["synthetic-mpc", "--out", str(tmp_path), "--ranks", "2,4", "--seeds", "2", "--n", "8",
                              "--m", "8", "--steps", "20", "--lrs", "0.01,0.03", "--methods", "lora,trilora,ssl",
                              "--experiment", "quickstart"])
    assert args.func(args) == 0
    result = pd.read_parquet(tmp_path / "result.parquet")
    # a proper result: the contract's columns, one row per form x rank x seed at the kept lr
    assert {"experiment", "stage", "task", "method", "backbone", "seed", "lr", "dev_metric", "test_metric", "metric",
            "size", "config_hash", "git_commit", "versions", "created_at", "wall_seconds", "device", "rank", "error",
            "bound", "params"} <= set(result.columns)
    assert set(result.experiment) == {"quickstart"} and set(result.stage) == {"synthetic-mpc"}
    assert len(result) == 2 * (2 * 2 + 1)  # seeds x (2 extension forms x 2 ranks + ssl, rank-free)
    assert not result.duplicated(["method", "rank", "seed"]).any()
    assert result.test_metric.tolist() == pytest.approx((100 * result.error).tolist())
    assert result.dev_metric.isna().all() and (result["size"] == result.params).all()
    grid = pd.read_parquet(tmp_path / "grid.parquet")
    assert len(grid) == 2 * len(result) and grid.selected.sum() == len(result)  # both lrs tried, one kept
    kept = grid[grid.selected].sort_values(["method", "rank", "seed"]).error.to_numpy()
    assert kept == pytest.approx(result.sort_values(["method", "rank", "seed"]).error.to_numpy())
    assert (tmp_path / "synthetic-mpc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Eckart-Young bound" in (tmp_path / "summary.csv").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic writes leave no temp file
    out = capsys.readouterr().out
    assert "r=2" in out and "experiment quickstart" in out
    table = summary(grid)
    assert table.loc["lora", "r=2"] == pytest.approx(grid[(grid.method == "lora") & grid.selected & (grid["rank"] == 2)]
                                                     .error.mean())


def test_help_recommends_a_fast_quickstart_call(capsys):
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["synthetic-mpc", "--help"])
    text = capsys.readouterr().out
    assert "--experiment" in text and "quickstart" in text and "--seeds 2" in text


def test_bad_configurations_fail_early():
    with pytest.raises(ValueError, match="unknown study methods"):
        run_study(StudyConfig(methods=("lora", "vera")))
    with pytest.raises(ValueError, match="target rank"):
        run_study(StudyConfig(n=8, m=8, target_rank=9))
