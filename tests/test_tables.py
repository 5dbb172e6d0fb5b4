"""Tables layer: spec files, the selection and relative-performance rules, Avg handling, writers, CLI."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import pytest

from deltaspace.tables import (AVG, ResultsError, TableSpecError, compile_table, load_results, load_specs,
                               select_specs, write_table)
from deltaspace.tables.commands import register
from deltaspace.tables.spec import SPEC_DIR, column_keys

from conftest import DEMO_SPEC

SPECS = load_specs()


def run(task, method, dev, test, **extra):
    """One result row; defaults make it a unified-dt stage-0 run."""
    return {"experiment": "udt", "stage": "stage0", "task": task, "method": method, "lr": 1e-3, "seed": 42,
            "dev_metric": dev, "test_metric": test, **extra}


def frame(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


# ---------------------------------------------------------------- spec files


def test_every_spec_file_loads_and_validates():
    files = sorted(p.name for p in SPEC_DIR.glob("*.yaml"))
    assert files == ["decomposition.yaml", "ipt.yaml", "llm.yaml", "quickstart.yaml", "survey.yaml", "udt.yaml"]
    expected = ({f"udt-table{n}" for n in range(1, 12)} | {f"ipt-table{n}" for n in range(2, 7)}
                | {f"ipt-figure3{p}" for p in "abcd"} | {"survey-table3"}
                | {f"decomposition-table{n}" for n in (2, 3, 4)})
    assert expected <= set(SPECS)
    for path in SPEC_DIR.glob("*.yaml"):
        assert load_specs([path]), path


def test_published_numbers_are_transcribed():
    """Spot checks against the paper notes, including the outliers a careless transcription drops."""
    pub = {s.id: s.published for s in SPECS.values()}
    assert pub["udt-table1"]["superglue-copa"] == {"adapter": 98.3, "lora": 71.6, "prefix": 92.5, "avg": 87.5}
    assert pub["udt-table8"]["glue-mrpc"]["p-l"] == 5.6
    assert pub["udt-table9"]["ethos-gender"]["a-p"] == 0.0
    assert pub["udt-table5"]["finetune"] == {"adapter": 101.1, "prefix": 99.7, "lora": 97.1, "finetune": 96.1}
    assert pub["udt-table11"]["ai2_arc"]["lora"] == 32.4
    assert len(pub["survey-table3"]) == 105 and pub["survey-table3"]["wiqa"]["lora"] == 77.99
    assert pub["decomposition-table3"]["fullft"]["glue-cola"] == 69.19
    assert pub["decomposition-table4"]["lora-mpcn-r4"] == pub["decomposition-table4"]["pa-r4"]
    assert pub["ipt-table4"]["ist-test"]["250"] == 33.7
    assert pub["ipt-table3"]["random"]["pt-test-out"] is None
    assert pub["ipt-figure3a"] == {"ist-train-diff": {"250": 97}, "ist-test": {"250": 83}}


def _recomputed_avg_disagreements(spec) -> set[tuple[str, str]]:
    """Avg cells whose printed value differs from the mean of the printed cells by more than rounding."""
    tol = 0.5 * 10 ** -spec.decimals + 1e-9
    pub, rows, cols = spec.published, [r.key for r in spec.rows], column_keys(spec)
    disagree = set()

    def check(cell, printed, values):
        if printed is not None and None not in values and abs(sum(values) / len(values) - printed) > tol:
            disagree.add(cell)

    if spec.avg_column:
        for row in rows:
            check((row, AVG), pub.get(row, {}).get(AVG), [pub.get(row, {}).get(c) for c in cols])
    if spec.avg_row:
        for col in cols:
            check((AVG, col), pub.get(AVG, {}).get(col), [pub.get(r, {}).get(col) for r in rows])
        if spec.avg_column:  # the corner: mean of every body cell
            check((AVG, AVG), pub.get(AVG, {}).get(AVG), [pub.get(r, {}).get(c) for r in rows for c in cols])
    return disagree


@pytest.mark.parametrize("spec", [s for s in SPECS.values() if s.published], ids=lambda s: s.id)
def test_inconsistent_published_averages_are_flagged_exactly(spec):
    assert _recomputed_avg_disagreements(spec) == set(spec.published_avg_inconsistent)


def test_known_inconsistent_averages_are_flagged():
    methods = ("adapter", "lora", "prefix", "finetune")
    assert SPECS["udt-table10"].published_avg_inconsistent == {(AVG, m) for m in methods}
    assert len(SPECS["survey-table3"].published_avg_inconsistent) == 6
    assert SPECS["decomposition-table2"].published_avg_inconsistent == {("ia3", AVG), ("flora-r16", AVG)}
    assert not SPECS["udt-table1"].published_avg_inconsistent


def _write_spec(tmp_path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_spec_with_unknown_key_names_file_and_key(tmp_path):
    path = _write_spec(tmp_path, DEMO_SPEC.replace("    columns:", "    colums:"))
    with pytest.raises(TableSpecError, match=r"bad\.yaml.*tables\[0\].*demo-table.*'colums'"):
        load_specs([path])


@pytest.mark.parametrize("change, message", [
    (("kind: absolute", "kind: relative_optimization"), "'reference' is a required property"),
    (("kind: absolute", "kind: sideways"), "sideways"),
    (("columns: [{key: adapter}]", "columns: [{key: adapter}]\n    published: {t9: {adapter: 1.0}}"),
     "published row 't9' is not a row"),
    (("rows: [{key: t1}]", "rows: [{key: t1, match: {experiment: other}}]"), "disagree on 'experiment'"),
    (("rows: [{key: t1}]", "rows: [{key: t1}, {key: t1}]"), "duplicate rows keys: t1"),
    (("columns: [{key: adapter}]", "columns: [{key: adapter}]\n    published: {t1: {adapter: 1.0}}\n"
                                   "    published_avg_inconsistent: [[t1, adapter]]"), "not an Avg cell"),
    (("kind: absolute", "kind: absolute\n    figure: lines\n    figure_panels: {a: [t1]}"),
     "figure_panels only applies to figure: group_lines"),
    (("kind: absolute", "kind: absolute\n    figure: group_lines"), "needs avg_column: true and explicit rows with a group"),
    (("rows: [{key: t1}]", "rows: [{key: t1, group: r2}]\n    avg_column: true\n    figure: group_lines\n"
                           "    figure_panels: {a: [t1, LoRA]}"), r"figure_panels\.a: \['LoRA'\] are not row labels"),
])
def test_spec_semantic_errors_are_reported(tmp_path, change, message):
    path = _write_spec(tmp_path, DEMO_SPEC.replace(*change))
    with pytest.raises(TableSpecError, match=message):
        load_specs([path])


def test_duplicate_table_id_across_files_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(DEMO_SPEC)
    (tmp_path / "b.yaml").write_text(DEMO_SPEC)
    with pytest.raises(TableSpecError, match="demo-table.*also defined in a.yaml"):
        load_specs(sorted(tmp_path.glob("*.yaml")))


def test_unknown_table_id_lists_valid_ids():
    with pytest.raises(TableSpecError, match=r"udt-tabel1.*Did you mean udt-table1.*Valid ids:.*survey-table3"):
        select_specs(SPECS, ids=["udt-tabel1"])
    assert {s.id for s in select_specs(SPECS, papers=["ipt"])} == {s.id for s in SPECS.values() if s.paper == "ipt"}


# ---------------------------------------------------------------- compiling


def test_relative_optimization_by_hand():
    """udt Table 1: best-on-dev over the lr grid, divided by stage-0 best-on-dev of the same task and method."""
    results = frame(
        run("rotten_tomatoes", "adapter", 80, 90, lr=1e-3), run("rotten_tomatoes", "adapter", 85, 80, lr=1e-2),
        run("rotten_tomatoes", "lora", 70, 50), run("rotten_tomatoes", "prefix", 70, 40),
        *[run("rotten_tomatoes", m, dev, test, stage="optimize", setting="single", lr=lr)
          for m, dev, test, lr in [("adapter", 60, 72, 1e-2), ("adapter", 55, 79, 5e-2),
                                   ("lora", 10, 50, 1e-2), ("prefix", 10, 30, 1e-2)]],
        # another setting's run must not leak into the single-task table
        run("rotten_tomatoes", "lora", 99, 99, stage="optimize", setting="multi"),
    )
    table = compile_table(SPECS["udt-table1"], results)
    row = table.ours.loc["rotten_tomatoes"]
    assert row["adapter"] == pytest.approx(100 * 72 / 80)  # dev picks lr 1e-2 in both stages
    assert row["lora"] == pytest.approx(100.0)
    assert row["prefix"] == pytest.approx(75.0)
    assert row[AVG] == pytest.approx((90 + 100 + 75) / 3)
    # no runs for any other task: missing, never 0, and so is every average that would include them
    assert table.ours.loc["scitail"].isna().all()
    assert table.ours.loc[AVG].isna().all()
    assert (table.ours.fillna(-1) != 0).all().all()
    assert table.diff.loc["rotten_tomatoes", "adapter"] == pytest.approx(90 - 101.8)
    assert table.missing == 30


def test_avg_row_and_column_are_plain_means_when_complete():
    spec = SPECS["udt-table11"]
    tasks = [r.key for r in spec.rows]
    results = frame(*[run(t, m, 1, 10 * i + j) for i, t in enumerate(tasks)
                      for j, m in enumerate(["adapter", "lora", "prefix", "finetune"])])
    table = compile_table(spec, results)
    assert table.ours.loc[AVG, "lora"] == pytest.approx(sum(10 * i + 1 for i in range(len(tasks))) / len(tasks))
    assert table.missing == 0 and not table.notes


def test_relative_transfer_selects_by_target_dev_and_divides_by_target_reference():
    results = frame(
        run("scitail", "adapter", 50, 80), run("scitail", "lora", 50, 60),
        # the transfer grid: dev_metric is the target's dev score, and it decides
        run("scitail", "lora", 40, 30, stage="transfer", setting="single", source_method="adapter",
            target_method="lora", lr=1e-2),
        run("scitail", "lora", 45, 45, stage="transfer", setting="single", source_method="adapter",
            target_method="lora", lr=5e-2),
        run("scitail", "adapter", 45, 40, stage="transfer", setting="single", source_method="lora",
            target_method="adapter"),
    )
    table = compile_table(SPECS["udt-table2"], results)
    assert table.ours.loc["scitail", "a-l"] == pytest.approx(100 * 45 / 60)
    assert table.ours.loc["scitail", "l-a"] == pytest.approx(100 * 40 / 80)
    assert math.isnan(table.ours.loc["scitail", "p-l"])
    assert math.isnan(table.ours.loc["scitail", AVG])


def test_transfer_matrix_diagonal_reads_optimization_runs():
    base = {"setting": "fastfood"}
    results = frame(
        run("rotten_tomatoes", "adapter", 1, 90), run("rotten_tomatoes", "finetune", 1, 80),
        run("rotten_tomatoes", "adapter", 1, 81, stage="optimize", **base),
        run("rotten_tomatoes", "finetune", 1, 76, stage="transfer", source_method="adapter",
            target_method="finetune", **base),
    )
    table = compile_table(SPECS["udt-table5"], results)
    assert table.ours.loc["adapter", "adapter"] == pytest.approx(90.0)
    assert table.ours.loc["adapter", "finetune"] == pytest.approx(95.0)
    assert math.isnan(table.ours.loc["finetune", "finetune"])


def ipt(task, stage, subset, d, test, dev=1.0, setting="random", **extra):
    return run(task, "prompt", dev, test, experiment="ipt", stage=stage, subset=subset, setting=setting,
               d_intrinsic=d, **extra)


def test_series_averages_tasks_and_goes_missing_when_one_task_is_missing():
    results = frame(
        run("t1", "prompt", 1, 40, experiment="ipt"), run("t2", "prompt", 1, 20, experiment="ipt"),
        ipt("t1", "ist", "test", 5, 30), ipt("t2", "ist", "test", 5, 20),
        ipt("t1", "ist", "test", 10, 40),  # t2 has not finished d_I = 10 yet
    )
    absolute = compile_table(SPECS["ipt-table4"], results)
    assert absolute.ours.loc["ist-test", "5"] == pytest.approx(25.0)
    assert math.isnan(absolute.ours.loc["ist-test", "10"])
    assert any("1 of 2 tasks lack" in note for note in absolute.notes)
    relative = compile_table(SPECS["ipt-figure3a"], results)
    assert relative.ours.loc["ist-test", "5"] == pytest.approx((75.0 + 100.0) / 2)  # mean of ratios
    assert math.isnan(relative.ours.loc["ist-train-diff", "250"])
    assert relative.paper.loc["ist-test", "250"] == 83


def test_series_leaves_out_tasks_with_non_positive_reference():
    results = frame(run("t1", "prompt", 1, 40, experiment="ipt"), run("cola", "prompt", 1, 0.0, experiment="ipt"),
                    ipt("t1", "ist", "test", 5, 20), ipt("cola", "ist", "test", 5, 3))
    table = compile_table(SPECS["ipt-figure3a"], results)
    assert table.ours.loc["ist-test", "5"] == pytest.approx(50.0)
    assert any("cola" in note and "not positive" in note for note in table.notes)


def test_task_mean_of_seed_std_takes_task_sets_from_the_split():
    seeds = {"t1": [10, 12, 14], "t2": [20, 20, 26]}
    stab = "ipt-stability"  # Table 2's runs: config/paper/opt-in/ipt-stability.yaml
    results = frame(
        *[run(t, "finetune", 1, v, experiment=stab, seed=s) for t, vs in seeds.items() for s, v in enumerate(vs)],
        # a worse lr for t1: its spread (huge) must not count, dev picks the other setting
        *[run("t1", "finetune", 0, v, experiment=stab, lr=1e-2, seed=s) for s, v in enumerate([0, 50, 100])],
        # a better-on-dev lr searched with one seed only has no spread: the repeated setting counts
        run("t2", "finetune", 9, 99, experiment=stab, lr=1e-1),
        {**ipt("t1", "ist", "train-same", 10, 1), "experiment": stab}, {**ipt("t2", "ist", "test", 10, 1), "experiment": stab},
    )
    table = compile_table(SPECS["ipt-table2"], results)
    assert table.ours.loc["finetune", "train"] == pytest.approx(2.0)
    assert table.ours.loc["finetune", "test"] == pytest.approx(pd.Series([20, 20, 26]).std())
    assert table.ours.loc["finetune", "all"] == pytest.approx((2.0 + pd.Series([20, 20, 26]).std()) / 2)
    assert math.isnan(table.ours.loc["ipt", "train"])  # one IST run per task: no spread, not 0


def test_task_mean_of_stage0_over_split_task_sets():
    results = frame(run("t1", "prompt", 1, 30, experiment="ipt"), run("t2", "prompt", 1, 50, experiment="ipt"),
                    run("t3", "prompt", 1, 70, experiment="ipt"),
                    ipt("t1", "ist", "train-same", 5, 1), ipt("t2", "ist", "train-same", 5, 1),
                    ipt("t3", "ist", "test", 5, 1), ipt("t3", "ist", "test-in", 5, 1, setting="cls"))
    table = compile_table(SPECS["ipt-table3"], results)
    assert table.ours.loc["random", "pt-train"] == pytest.approx(40.0)
    assert table.ours.loc["random", "pt-test-in"] == pytest.approx(70.0)
    assert table.ours.loc["cls", "pt-test-in"] == pytest.approx(70.0)
    assert math.isnan(table.ours.loc["random", "pt-test-out"])
    assert math.isnan(table.ours.loc["random", "ft-train"])


def test_seed_mean_statistic_and_rank_rows():
    results = frame(*[run("glue-rte", "lora", 80 + s, 70 + 2 * s, experiment="decomposition", backbone="roberta-base",
                          rank=2, seed=s) for s in range(5)],
                    run("glue-rte", "lora", 99, 99, experiment="decomposition", backbone="roberta-large", rank=2))
    table = compile_table(SPECS["decomposition-table2"], results)
    assert table.ours.loc["lora-r2", "glue-rte"] == pytest.approx(74.0)
    assert math.isnan(table.ours.loc["lora-r4", "glue-rte"])
    assert math.isnan(table.ours.loc["lora-r2", AVG])


def decomposition_runs(task: str, method: str, rank: int, tests: list[float], **extra) -> list[dict]:
    return [run(task, method, 80, test, experiment="decomposition", backbone="roberta-base", rank=rank, seed=s,
                **extra) for s, test in enumerate(tests)]


def test_seed_sem_is_the_standard_error_and_adds_in_quadrature_in_all_avg():
    """Decomposition Figures 4-5: the SEM over the 5 seeds of the setting best on mean dev; the All
    Avg.'s SEM is that of a mean of independent task means, sqrt(sum SEM^2) / n, not the mean SEM."""
    tasks = {t: [70.0 + i, 72.0 + 2 * i, 71.0, 75.0 - i, 73.0 + 3 * i]
             for i, t in enumerate(c.key for c in SPECS["decomposition-table2"].columns)}
    results = frame(*[r for t, tests in tasks.items() for r in decomposition_runs(t, "lora", 2, tests)],
                    # a worse-on-dev learning rate: its wide spread must not count
                    *[{**r, "dev_metric": 10.0} for r in decomposition_runs("glue-rte", "lora", 2, [0, 100, 0, 100, 0],
                                                                            lr=1e-2)])
    table = compile_table(SPECS["decomposition-table2"], results)
    sems = {t: pd.Series(v).std(ddof=1) / math.sqrt(5) for t, v in tasks.items()}
    assert table.spread.loc["lora-r2", "glue-rte"] == pytest.approx(sems["glue-rte"])
    assert table.ours.loc["lora-r2", "glue-rte"] == pytest.approx(pd.Series(tasks["glue-rte"]).mean())
    assert table.spread.loc["lora-r2", AVG] == pytest.approx(math.sqrt(sum(s * s for s in sems.values())) / len(sems))
    assert table.spread.loc["lora-r2", AVG] < sum(sems.values()) / len(sems)
    assert math.isnan(table.spread.loc["lora-r4", AVG])
    one_seed = compile_table(SPECS["decomposition-table2"], frame(*decomposition_runs("glue-rte", "lora", 2, [70.0])))
    assert one_seed.ours.loc["lora-r2", "glue-rte"] == 70.0 and math.isnan(one_seed.spread.loc["lora-r2", "glue-rte"])


def test_auto_rows_follow_the_results():
    results = frame(run("tweet-polarity", "lora", 1, 70, experiment="quickstart"),
                    run("bbc-sport", "adapter", 1, 90, experiment="quickstart"))
    table = compile_table(SPECS["quickstart-stage0"], results)
    assert list(table.ours.index) == ["bbc-sport", "tweet-polarity", AVG]
    assert table.ours.loc["bbc-sport", "adapter"] == 90 and math.isnan(table.ours.loc["bbc-sport", "lora"])
    assert table.paper.isna().all().all()


def test_selector_lists_nulls_and_absent_columns():
    from deltaspace.tables.select import filter_rows
    df = frame(run("a", "lora", 1, 1, setting="single"), run("b", "lora", 1, 1), run("c", "prefix", 1, 1))
    assert list(filter_rows(df, {"task": ["a", "c"]})["task"]) == ["a", "c"]
    assert list(filter_rows(df, {"setting": None})["task"]) == ["b", "c"]
    assert filter_rows(df, {"no_such_column": 1}).empty


# ---------------------------------------------------------------- files


def test_load_results_concatenates_and_rejects_non_results(tmp_path):
    (tmp_path / "a").mkdir()
    frame(run("t1", "lora", 1, 2)).to_parquet(tmp_path / "a" / "result.parquet")
    frame(run("t2", "lora", 1, 3, source_method="lora")).to_parquet(tmp_path / "result.parquet")
    results = load_results(str(tmp_path / "**" / "result.parquet"))
    assert sorted(results["task"]) == ["t1", "t2"] and "source_method" in results
    pd.DataFrame({"step": [1], "loss": [0.5]}).to_parquet(tmp_path / "a" / "curve.parquet")
    with pytest.raises(ResultsError, match="curve.parquet is not a result file.*dev_metric"):
        load_results(str(tmp_path / "**" / "*.parquet"))
    with pytest.raises(ResultsError, match="no result files match"):
        load_results(str(tmp_path / "nothing-*.parquet"))


def test_writers_produce_every_format_with_our_and_the_paper_numbers(tmp_path):
    results = frame(run("rotten_tomatoes", "adapter", 1, 80.0),
                    run("rotten_tomatoes", "adapter", 1, 72.0, stage="optimize", setting="single"))
    table = compile_table(SPECS["udt-table1"], results)
    paths = write_table(table, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == sorted(f"udt-table1{s}" for s in (".parquet", ".csv", ".md", ".tex", ".vs_paper.csv",
                                                      ".vs_paper.md"))
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left
    text = {p.suffix if not p.name.endswith(".vs_paper.md") else "vs.md": p.read_text() for p in paths
            if p.suffix in (".md", ".tex")}
    assert "| SST-2 | Rotten Tomatoes | 90.0 | – | – | – |" in text[".md"]
    assert r"SST-2 & Rotten Tomatoes & 90.0 & -- & -- & -- \\" in text[".tex"]
    assert r"T\_train & T\_test" in text[".tex"]
    assert "90.0 / 101.8 (-11.8)" in text["vs.md"] and "– / 100.1" in text["vs.md"]
    ours = pd.read_csv(tmp_path / "out" / "udt-table1.csv")
    assert ours.loc[ours["key"] == "rotten_tomatoes", "Adapter"].item() == pytest.approx(90.0)
    assert ours.loc[ours["key"] == "rotten_tomatoes", "LoRA"].isna().item()  # empty field, not 0
    parquet = pd.read_parquet(tmp_path / "out" / "udt-table1.parquet")
    numbers = ["Adapter", "LoRA", "Prefix", "Avg."]
    pd.testing.assert_frame_equal(parquet[numbers], ours[numbers])
    assert list(parquet.columns) == ["key", "T_train", "T_test", *numbers]
    versus = pd.read_csv(tmp_path / "out" / "udt-table1.vs_paper.csv")
    line = versus[(versus["row"] == "rotten_tomatoes") & (versus["column"] == "adapter")].iloc[0]
    assert (line["ours"], line["paper"]) == (pytest.approx(90.0), 101.8)
    assert line["diff"] == pytest.approx(-11.8)


def test_vs_paper_marks_inconsistent_published_averages(tmp_path):
    table = compile_table(SPECS["udt-table10"], frame(run("codah", "lora", 1, 40.0)))
    text = write_table(table, tmp_path)[-1].read_text()
    assert "– / 65.2 †" in text and "not the mean of its own printed cells" in text
    versus = pd.read_csv(tmp_path / "udt-table10.vs_paper.csv")
    assert versus["paper_avg_inconsistent"].sum() == 4


# ---------------------------------------------------------------- command line


def _cli(argv):
    parser = argparse.ArgumentParser(prog="deltaspace")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_lists_and_compiles(tmp_path, capsys):
    assert _cli(["tables", "list", "--paper", "udt"]) == 0
    listing = capsys.readouterr().out
    assert "udt-table1 " in listing and "survey-table3" not in listing
    frame(run("rotten_tomatoes", "adapter", 1, 80.0)).to_parquet(tmp_path / "result.parquet")
    out = tmp_path / "tables"
    assert _cli(["tables", "--results", str(tmp_path / "*.parquet"), "--spec", "udt-table10",
                 "--paper", "ipt", "--out", str(out)]) == 0
    assert (out / "udt-table10.md").exists() and (out / "ipt-table6.tex").exists()
    assert not (out / "udt-table1.md").exists()
    assert "udt-table10: 1/48 numbers" in capsys.readouterr().out


def test_cli_unknown_table_fails_with_valid_ids(tmp_path, capsys):
    frame(run("t", "lora", 1, 1)).to_parquet(tmp_path / "result.parquet")
    code = _cli(["tables", "--results", str(tmp_path / "result.parquet"), "--spec", "nope", "--out", str(tmp_path)])
    assert code == 2
    assert "unknown table id 'nope'" in capsys.readouterr().err
    assert _cli(["tables", "--spec", "udt-table1"]) == 2
