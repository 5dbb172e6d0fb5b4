"""The subspace stages end to end on a tiny encoder: stage 0 → fit → optimize/transfer → landscape."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import write_prepared
from deltaspace.cli import main
from deltaspace.subspace.store import load_subspace

METHODS = ["adapter", "prefix", "lora"]
SETS = {"adapter": ["r=4"], "prefix": ["m=4", "hidden=8"], "lora": ["r=4"]}
LOOP = ["--batch-size", "4", "--eval-batch-size", "8", "--checkpoint-every", "5", "--seed", "3", "--no-progress"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    train = [write_prepared(root / f"data/t{i}", "tiny-bert", task=f"toy-{i}", shift=i) for i in range(2)]
    unseen = write_prepared(root / "data/unseen", "tiny-bert", task="toy-unseen", shift=3)
    stage0 = []
    for data in [*train, unseen]:
        for m in METHODS:
            out = root / "stage0" / data.name / m
            sets = [x for s in SETS[m] for x in ("--set", s)]
            assert main(["train", "--data", str(data), "--method", m, "--backbone", "tiny-bert", "--lr", "0.05",
                         "--steps", "10", "--eval-every", "5", "--out", str(out), *sets, *LOOP]) == 0
            stage0.append(out)
    sub = root / "subspace"
    assert main(["fit-subspace", "--mode", "joint", "--backbone", "tiny-bert", "--methods", ",".join(METHODS),
                 "--y", "4", "--train-data", *map(str, train), "--stage0", *map(str, stage0),
                 "--recon-weight", "0.01", "--lr", "0.01", "--steps", "20", "--eval-every", "10",
                 "--optimizer", "adamw", "--out", str(sub), *LOOP,
                 "--task-mix", "round-robin"]) == 0  # the toy's stage-2 checks were tuned on it (the blend: test_paper_deviations)
    optimized = []
    for m in METHODS:
        out = root / "optimize" / m
        assert main(["optimize-subspace", "--subspace", str(sub), "--method", m, "--data", str(unseen),
                     "--lr", "0.5", "--steps", "10", "--eval-every", "5", "--optimizer", "adamw",
                     "--out", str(out), *LOOP]) == 0
        optimized.append(out)
    return {"root": root, "train": train, "unseen": unseen, "stage0": stage0, "sub": sub, "opt": optimized}


def test_fit_writes_decoders_for_every_method_and_the_loss_falls(pipeline):
    decoders, meta = load_subspace(pipeline["sub"])
    assert sorted(decoders) == sorted(METHODS) and meta["y"] == 4 and meta["mode"] == "joint"
    sizes = {m: pd.read_parquet(pipeline["root"] / "stage0/t0" / m / "result.parquet").iloc[0]["size"]
             for m in METHODS}
    assert {m: d.weight.shape for m, d in decoders.items()} == {m: (sizes[m], 4) for m in METHODS}
    curve = pd.read_parquet(pipeline["sub"] / "curve.parquet")
    assert curve.loss.iloc[-1] < curve.loss.iloc[0]
    result = pd.read_parquet(pipeline["sub"] / "result.parquet")
    assert set(result.stage) == {"fit"} and len(result) == 2 * 3


def test_optimize_reports_own_method_and_all_transfers(pipeline):
    rows = pd.concat(pd.read_parquet(p / "result.parquet") for p in pipeline["opt"])
    pairs = set(zip(rows.source_method, rows.target_method))
    assert pairs == {(s, t) for s in METHODS for t in METHODS}
    assert set(rows[rows.source_method == rows.target_method].stage) == {"optimize"}
    assert set(rows[rows.source_method != rows.target_method].stage) == {"transfer"}
    assert rows.test_metric.between(0, 100).all()


def test_transferred_theta_is_the_target_decoders_decode(pipeline):
    """A→L scores exactly what LoRA's Proj↑ applied to the stored vector scores."""
    from deltaspace.subspace.runtime import build_runtimes
    from deltaspace.train.batching import load_task_data, split_rows

    decoders, meta = load_subspace(pipeline["sub"])
    folder = pipeline["opt"][0]  # adapter as source
    vector = load_file(str(folder / "intrinsic.safetensors"))["lora"]
    theta = decoders["lora"](vector)
    assert theta.shape == (decoders["lora"].size,)
    assert torch.allclose(theta, decoders["lora"].weight @ vector)
    rt = build_runtimes("tiny-bert", ["lora"], meta["options"], 3)["lora"]
    task = load_task_data(pipeline["unseen"])
    score = rt.score(theta, rt.head(task), split_rows(task, "test"), task.metric, 8)
    row = pd.read_parquet(folder / "result.parquet").query("target_method == 'lora'").iloc[0]
    assert row.test_metric == pytest.approx(score)


def test_intrinsic_optimization_improves_dev_from_its_random_start(pipeline):
    curve = pd.read_parquet(pipeline["opt"][0] / "curve.parquet")  # adapter
    assert curve.loss.iloc[-1] < curve.loss.iloc[0]


def test_landscape_places_the_solutions_on_the_grid(pipeline):
    out = pipeline["root"] / "landscape"
    assert main(["landscape", "--subspace", str(pipeline["sub"]), "--intrinsic", *map(str, pipeline["opt"]),
                 "--data", str(pipeline["unseen"]), "--stage0", *map(str, pipeline["stage0"]), "--lo", "-2",
                 "--hi", "2", "--step", "2", "--out", str(out), "--no-progress"]) == 0
    grid = pd.read_parquet(out / "grid.parquet")
    assert len(grid) == 3 * 3 * 3 and set(grid.method) == set(METHODS)
    assert grid.adapter_alpha.iloc[0] == 0 and grid.adapter_beta.iloc[0] == 0 and grid.prefix_beta.iloc[0] == 0
    assert (out / "landscape.png").stat().st_size > 1000


def test_shared_mode_trains_vectors_and_projections(pipeline, tmp_path):
    out = tmp_path / "shared"
    assert main(["fit-subspace", "--mode", "shared", "--backbone", "tiny-bert", "--methods", "adapter,lora",
                 "--set", "adapter.r=4", "--set", "lora.r=4", "--y", "3", "--train-data",
                 *map(str, pipeline["train"]), "--lr", "0.01", "--lr-vector", "0.05", "--steps", "6",
                 "--eval-every", "3", "--optimizer", "adamw", "--out", str(out), *LOOP]) == 0
    decoders, meta = load_subspace(out)
    assert sorted(decoders) == ["adapter", "lora"] and meta["mode"] == "shared"


def test_joint_mode_without_stage0_fails_naming_what_is_missing(pipeline, tmp_path, capsys):
    assert main(["fit-subspace", "--mode", "joint", "--backbone", "tiny-bert", "--methods", "adapter",
                 "--y", "2", "--train-data", str(pipeline["train"][0]), "--lr", "0.01", "--steps", "2",
                 "--out", str(tmp_path / "x"), *LOOP]) == 2
    assert "missing: [('toy-0', 'adapter')]" in capsys.readouterr().err


def test_ipt_msf_then_ist_and_the_random_baseline(tmp_path, capsys):
    """IPT on a tiny encoder: prompt tuning → MSF auto-encoder → IST; and IST in a random subspace."""
    train = [write_prepared(tmp_path / f"d{i}", "tiny-bert", task=f"toy-{i}", shift=i) for i in range(2)]
    unseen = write_prepared(tmp_path / "du", "tiny-bert", task="toy-unseen", shift=3)
    stage0 = []
    for data in [*train, unseen]:
        out = tmp_path / "pt" / data.name
        assert main(["train", "--data", str(data), "--method", "prompt", "--set", "n=4", "--backbone", "tiny-bert",
                     "--lr", "0.3", "--steps", "6", "--eval-every", "3", "--out", str(out), *LOOP]) == 0
        stage0.append(out)
    msf = tmp_path / "msf"
    assert main(["fit-subspace", "--mode", "msf", "--backbone", "tiny-bert", "--methods", "prompt", "--y", "3",
                 "--train-data", *map(str, train), "--stage0", *map(str, stage0), "--recon-weight", "200",
                 "--test-data", str(unseen),  # T_test (MSF): the unseen task's own prompt, reconstructed
                 "--lr", "0.01", "--steps", "6", "--eval-every", "3", "--optimizer", "adamw", "--out", str(msf),
                 *LOOP]) == 0
    fit_rows = pd.read_parquet(msf / "result.parquet")
    assert set(fit_rows.stage) == {"msf"} and fit_rows.test_metric.notna().all()
    assert sorted(fit_rows.groupby("subset").task.apply(sorted).items()) == [("test", ["toy-unseen"]),
                                                                             ("train", ["toy-0", "toy-1"])]
    assert json.loads((msf / "subspace.json").read_text())["tasks"] == ["toy-0", "toy-1"]  # unseen: not fitted
    random = tmp_path / "random"
    assert main(["fit-subspace", "--mode", "random", "--backbone", "tiny-bert", "--methods", "prompt",
                 "--set", "prompt.n=4", "--y", "3", "--lr", "0", "--out", str(random), *LOOP]) == 0
    decoders, meta = load_subspace(random)
    assert decoders["prompt"].output.out_features == 4 * 64 and meta["mode"] == "random"
    for subspace in (msf, random):
        out = tmp_path / f"ist-{subspace.name}"
        assert main(["optimize-subspace", "--subspace", str(subspace), "--method", "prompt", "--data", str(unseen),
                     "--subset", "test", "--lr", "0.1", "--steps", "4", "--eval-every", "2", "--optimizer", "adamw",
                     "--out", str(out), *LOOP]) == 0
        row = pd.read_parquet(out / "result.parquet").iloc[0]
        assert (row.stage, row.subset, row.d_intrinsic) == ("ist", "test", 3)
    # two-stage PT (ipt notes §1.4): θ starts at Proj_b(V*) of the dev-best IST run, and every entry trains
    ist = [tmp_path / "ist-msf"]
    vector = load_file(str(ist[0] / "intrinsic.safetensors"))["prompt"]
    decoded = load_subspace(msf)[0]["prompt"](vector).detach()
    for steps in (0, 4):
        out = tmp_path / f"pt-from-ist-{steps}"
        assert main(["train", "--data", str(unseen), "--method", "prompt", "--set", "n=4", "--backbone", "tiny-bert",
                     "--lr", "0.3", "--steps", str(steps), "--eval-every", "2", "--out", str(out),
                     "--init-from-ist", *map(str, ist), "--ist-subspace", str(msf), *LOOP]) == 0
        theta = load_file(str(out / "theta.safetensors"))["theta"]
        row = pd.read_parquet(out / "result.parquet").iloc[0]
        assert row.init_from == str(ist[0])
        if steps == 0:
            assert torch.allclose(theta, decoded)
        else:
            assert (theta != decoded).float().mean() > 0.5  # nothing frozen
    assert main(["train", "--data", str(unseen), "--method", "prompt", "--backbone", "tiny-bert", "--lr", "0.3",
                 "--out", str(tmp_path / "x"), "--init-from-ist", str(ist[0]), *LOOP]) == 2
    assert "--init-from-ist (the IST runs) and --ist-subspace" in capsys.readouterr().err


def test_random_all_param_is_ist_in_an_untrained_fastfood_subspace_of_every_weight(tmp_path, capsys):
    """IPT Figure 4's Random_all-param (Aghajanyan et al.): θ = θ0 + Fastfood(I) over every backbone
    weight, nothing fitted; IST trains I alone."""
    from deltaspace.subspace.fastfood import FastfoodProjection
    from deltaspace.subspace.runtime import build_runtimes
    from deltaspace.subspace.store import attach_theta0

    unseen = write_prepared(tmp_path / "du", "tiny-bert", task="toy-unseen", shift=3)
    fits = [tmp_path / f"random-all{i}" for i in range(2)]
    for out in fits:
        assert main(["fit-subspace", "--mode", "random", "--backbone", "tiny-bert", "--methods", "finetune",
                     "--y", "3", "--lr", "0", "--out", str(out), *LOOP]) == 0
    decoders, meta = load_subspace(fits[0])
    assert meta["mode"] == "random" and meta["decoders"]["finetune"]["kind"] == "fastfood"
    assert (fits[0] / "subspace.safetensors").read_bytes() == (fits[1] / "subspace.safetensors").read_bytes()
    runtimes = build_runtimes("tiny-bert", ["finetune"], {}, 0)
    attach_theta0(decoders, runtimes)
    decoder, theta0 = decoders["finetune"], runtimes["finetune"].delta.init(0)
    assert isinstance(decoder, FastfoodProjection) and not any(p.requires_grad for p in decoder.parameters())
    assert torch.equal(decoder(torch.zeros(3)), theta0)
    assert (decoder(torch.ones(3)) != theta0).float().mean() > 0.99  # a direction through every weight
    out = tmp_path / "ist"
    assert main(["optimize-subspace", "--subspace", str(fits[0]), "--method", "finetune", "--data", str(unseen),
                 "--subset", "test", "--lr", "0.1", "--steps", "4", "--eval-every", "2", "--optimizer", "adamw",
                 "--out", str(out), *LOOP]) == 0
    rows = pd.read_parquet(out / "result.parquet")
    assert rows[["stage", "target_method", "d_intrinsic"]].values.tolist() == [["ist", "finetune", 3]]
    # the random mode builds the prompt's or every weight's subspace, nothing else
    assert main(["fit-subspace", "--mode", "random", "--backbone", "tiny-bert", "--methods", "adapter",
                 "--y", "3", "--lr", "0", "--out", str(tmp_path / "bad"), *LOOP]) == 2
    assert "--methods prompt or finetune, not 'adapter'" in capsys.readouterr().err


def test_finetuning_joins_the_shared_subspace_through_fastfood(pipeline, tmp_path):
    """unified-dt §2.6: fine-tuning's decoder is θ0 + Fastfood(I), never a dense y × |θ| map."""
    from deltaspace.subspace.fastfood import FastfoodProjection
    from deltaspace.subspace.runtime import build_runtimes
    from deltaspace.subspace.store import attach_theta0

    out = tmp_path / "ft"
    assert main(["fit-subspace", "--mode", "shared", "--backbone", "tiny-bert", "--methods", "adapter,finetune",
                 "--set", "adapter.r=4", "--y", "3", "--train-data", *map(str, pipeline["train"]), "--lr", "0.01",
                 "--steps", "4", "--eval-every", "2", "--optimizer", "adamw", "--out", str(out), *LOOP]) == 0
    decoders, meta = load_subspace(out)
    assert isinstance(decoders["finetune"], FastfoodProjection) and meta["decoders"]["finetune"]["kind"] == "fastfood"
    runtimes = build_runtimes("tiny-bert", ["finetune"], {}, 0)
    attach_theta0(decoders, runtimes)
    assert torch.equal(decoders["finetune"](torch.zeros(3)), runtimes["finetune"].delta.init(0))
    opt = tmp_path / "opt"
    assert main(["optimize-subspace", "--subspace", str(out), "--method", "finetune", "--data",
                 str(pipeline["unseen"]), "--lr", "0.1", "--steps", "2", "--eval-every", "2", "--optimizer", "adamw",
                 "--out", str(opt), *LOOP]) == 0
    rows = pd.read_parquet(opt / "result.parquet")
    assert set(zip(rows.stage, rows.target_method)) == {("optimize", "finetune"), ("transfer", "adapter")}


def test_optimize_picks_the_best_fit_of_an_lr_grid(pipeline, tmp_path):
    """Given several fit folders (stage 1's LR grid), the best mean dev of decoded θ̄ is used."""
    import shutil

    from deltaspace.subspace.run import best_subspace

    worse = tmp_path / "worse"
    shutil.copytree(pipeline["sub"], worse)
    rows = pd.read_parquet(worse / "result.parquet")
    rows.assign(dev_metric=rows.dev_metric - 10).to_parquet(worse / "result.parquet", index=False)
    assert best_subspace([worse, pipeline["sub"]]) == pipeline["sub"]
    assert best_subspace([pipeline["sub"], worse]) == pipeline["sub"]
    out = tmp_path / "opt"
    assert main(["optimize-subspace", "--subspace", str(worse), str(pipeline["sub"]), "--method", "lora",
                 "--data", str(pipeline["unseen"]), "--lr", "0.1", "--steps", "2", "--eval-every", "2",
                 "--out", str(out), *LOOP]) == 0
    assert (out / "result.parquet").exists()
