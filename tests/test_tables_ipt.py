"""IPT tables that read runs beyond the main splits: Table 2's spread over 10 seeds."""

from __future__ import annotations

import statistics

import pandas as pd
import pytest

from deltaspace.tables import compile_table, load_specs

SPECS = load_specs()


def rows_for_table2() -> pd.DataFrame:
    rows = []
    scores = {"t1": [10, 12, 14], "t2": [20, 20, 23], "u1": [30, 31, 35]}
    for task, tests in scores.items():
        for seed, test in enumerate(tests):
            for method in ("prompt", "finetune"):
                # the chosen setting (lr 1e-4, best mean dev) and a worse one whose spread would differ
                rows.append({"experiment": "ipt-stability", "stage": "stage0", "task": task, "method": method,
                             "lr": 1e-4, "batch_size": 4, "seed": seed, "dev_metric": 0.9, "test_metric": test})
                rows.append({"experiment": "ipt-stability", "stage": "stage0", "task": task, "method": method,
                             "lr": 1e-5, "batch_size": 4, "seed": seed, "dev_metric": 0.1, "test_metric": 100 * seed})
            subset = "test" if task == "u1" else "train-same"
            for d in (10, 5):
                rows.append({"experiment": "ipt-stability", "stage": "ist", "setting": "random", "subset": subset,
                             "d_intrinsic": d, "task": task, "method": "prompt", "lr": 1e-5, "batch_size": 4,
                             "seed": seed, "dev_metric": 0.5, "test_metric": test / 2 if d == 10 else 1000 * seed})
    # the main splits' single-seed runs are another experiment's
    rows.append({"experiment": "ipt", "stage": "stage0", "task": "t1", "method": "prompt", "lr": 1e-4,
                 "batch_size": 4, "seed": 9, "dev_metric": 0.99, "test_metric": 1e6})
    return pd.DataFrame(rows)


def test_table2_is_the_task_mean_of_seed_spreads_at_the_best_setting():
    table = compile_table(SPECS["ipt-table2"], rows_for_table2())
    sd = {t: statistics.stdev(v) for t, v in {"t1": [10, 12, 14], "t2": [20, 20, 23], "u1": [30, 31, 35]}.items()}
    assert table.ours.loc["prompt", "train"] == pytest.approx((sd["t1"] + sd["t2"]) / 2)
    assert table.ours.loc["finetune", "test"] == pytest.approx(sd["u1"])
    assert table.ours.loc["prompt", "all"] == pytest.approx((sd["t1"] + sd["t2"] + sd["u1"]) / 3)
    assert table.ours.loc["ipt", "all"] == pytest.approx((sd["t1"] + sd["t2"] + sd["u1"]) / 6)  # d_I = 10 only
    assert table.paper.loc["ipt", "test"] == 0.73


def test_table2_with_one_seed_is_missing_not_zero():
    one = rows_for_table2()
    one = one[one.seed == 0]
    assert compile_table(SPECS["ipt-table2"], one).ours.isna().all().all()


def test_figure4_compares_ist_in_the_msf_and_the_random_subspace_relative_to_fine_tuning():
    rows = [{"experiment": "ipt", "stage": "stage0", "task": t, "method": "finetune", "lr": 1e-5, "seed": 42,
             "dev_metric": 1.0, "test_metric": 50.0} for t in ("u1", "u2")]
    # IPT(Adapter)'s IST is the shared mode's stage optimize; Random_all-param's method is finetune
    for setting, score, stage, method in (("random", 40.0, "ist", "prompt"), ("random-prompt", 20.0, "ist", "prompt"),
                                          ("random-adapter", 30.0, "optimize", "adapter"),
                                          ("random-all", 10.0, "ist", "finetune")):
        for t in ("u1", "u2"):
            rows.append({"experiment": "ipt", "stage": stage, "setting": setting, "subset": "test", "task": t,
                         "method": method, "d_intrinsic": 10 if setting == "random" else 2000, "lr": 1e-5,
                         "seed": 42, "dev_metric": 1.0, "test_metric": score})
    rows.append({"experiment": "ipt", "stage": "ist", "setting": "random-prompt", "subset": "train-same", "task": "t9",
                 "method": "prompt", "d_intrinsic": 2000, "lr": 1e-5, "seed": 42, "dev_metric": 1.0, "test_metric": 1.0})
    table = compile_table(SPECS["ipt-figure4"], pd.DataFrame(rows))
    assert table.ours.loc["random-prompt", "2000"] == pytest.approx(40.0)  # 100 x 20 / 50; T_train rows left out
    assert table.ours.loc["ipt-prompt", "10"] == pytest.approx(80.0)
    assert table.ours.loc["ipt-adapter", "2000"] == pytest.approx(60.0)
    assert table.ours.loc["random-all", "2000"] == pytest.approx(20.0)
    assert table.ours.loc["random-all", "10"] != table.ours.loc["random-all", "10"]  # no run at d_I 10: missing


def test_two_stage_pt_is_the_spread_and_the_gain_of_pt_started_from_ist():
    """IPT §4.3: PT from IST's decoded solution, against vanilla PT on T_test (notes §1.4)."""
    rows = []
    scores = {"pt": {"u1": [30, 31, 35], "u2": [50, 40, 60]}, "ist": {"u1": [33, 33, 33], "u2": [52, 53, 54]}}
    for start, by_task in scores.items():
        for task, tests in by_task.items():
            for seed, test in enumerate(tests):
                rows.append({"experiment": "ipt-stability", "stage": "stage0", "task": task, "method": "prompt",
                             "lr": 1e-4, "batch_size": 4, "seed": seed, "dev_metric": 0.9, "test_metric": test,
                             **({"start": "ist"} if start == "ist" else {})})
                rows.append({"experiment": "ipt-stability", "stage": "ist", "setting": "random", "subset": "test",
                             "d_intrinsic": 10, "task": task, "method": "prompt", "lr": 1e-5, "batch_size": 4,
                             "seed": seed, "dev_metric": 0.5, "test_metric": 1.0})
    frame = pd.DataFrame(rows)
    std = compile_table(SPECS["ipt-pt-from-ist"], frame)
    sd = {k: {t: statistics.stdev(v) for t, v in by.items()} for k, by in scores.items()}
    assert std.ours.loc["pt", "test"] == pytest.approx((sd["pt"]["u1"] + sd["pt"]["u2"]) / 2)
    assert std.ours.loc["two-stage", "test"] == pytest.approx((sd["ist"]["u1"] + sd["ist"]["u2"]) / 2)
    assert std.paper.loc["two-stage", "test"] == 1.65
    rel = compile_table(SPECS["ipt-pt-from-ist-rel"], frame)
    assert rel.ours.loc["two-stage", "test"] == pytest.approx((100 * 33 / 32 + 100 * 53 / 50) / 2)
    assert rel.paper.loc["two-stage", "test"] == 103.4


@pytest.mark.parametrize("table_id,setting", [("ipt-figure8a", "non-cls"), ("ipt-figure8b", "cls")])
def test_figure8_is_figure3_relative_to_fine_tuning(table_id, setting):
    rows = [{"experiment": "ipt", "stage": "stage0", "task": "t", "method": m, "lr": 1e-5, "seed": 42, "dev_metric": 1.0,
             "test_metric": score} for m, score in (("finetune", 40.0), ("prompt", 20.0))]
    rows.append({"experiment": "ipt", "stage": "ist", "setting": setting, "subset": "test-in", "task": "t",
                 "method": "prompt", "d_intrinsic": 100, "lr": 1e-5, "seed": 42, "dev_metric": 1.0, "test_metric": 30.0})
    frame = pd.DataFrame(rows)
    assert compile_table(SPECS[table_id], frame).ours.loc["ist-test-in", "100"] == pytest.approx(75.0)  # of FT
    figure3 = {"non-cls": "ipt-figure3c", "cls": "ipt-figure3d"}[setting]
    assert compile_table(SPECS[figure3], frame).ours.loc["ist-test-in", "100"] == pytest.approx(150.0)  # of PT
