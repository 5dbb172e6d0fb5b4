"""Tables of the survey and decomposition studies: values other than the test score, seed spreads,
footer rows, auto columns and row groups, task transfer, memory, convergence, the synthetic study."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deltaspace.tables import AVG, TableSpecError, compile_table, load_results, load_specs, write_table
from deltaspace.tables.commands import register
from deltaspace.tables.render import latex, markdown, vs_paper_frame
from deltaspace.tables.select import filter_rows

from conftest import DEMO_SPEC

SPECS = load_specs()
NEW_IDS = {"quickstart-methods", "quickstart-convergence", "quickstart-combination", "quickstart-task-transfer",
           "quickstart-efficiency", "quickstart-efficiency-ratio", "quickstart-synthetic-mpc",
           "quickstart-synthetic-mpc-rank-free", "decomposition-synthetic-mpc", "survey-convergence",
           "survey-transfer", "survey-efficiency", "survey-efficiency-ratio", "survey-table9", "survey-figure11",
           *(f"survey-table5{x}" for x in "abcd"), "survey-table6a", "survey-table6b", "survey-table7a", "survey-table7b"}


def run(task, method, dev, test, **extra):
    """A quickstart stage-0 row."""
    return {"experiment": "quickstart", "stage": "stage0", "task": task, "method": method, "backbone": "minilm",
            "lr": 1e-3, "seed": 42, "dev_metric": dev, "test_metric": test, **extra}


def frame(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def _write(folder: Path, rows: list[dict], curve: pd.DataFrame | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "result.parquet", index=False)
    if curve is not None:
        curve.to_parquet(folder / "curve.parquet", index=False)


def test_the_new_specs_are_installed():
    assert NEW_IDS <= set(SPECS)


@pytest.mark.parametrize("table_id", sorted(NEW_IDS))
def test_every_new_spec_compiles_on_an_empty_results_folder(tmp_path, table_id):
    results = load_results(str(tmp_path / "**" / "result.parquet"), allow_empty=True)
    table = compile_table(SPECS[table_id], results)
    assert table.ours.isna().all().all()  # every cell a dash, never 0
    text = markdown(table)
    assert " 0.0 " not in text and (table.ours.size == 0 or "| –" in text)


def test_cli_compiles_every_table_on_nothing_only_when_asked(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="deltaspace")
    register(parser.add_subparsers(dest="command"))
    argv = ["tables", "--results", str(tmp_path / "none" / "*.parquet"), "--paper", "survey", "--out", str(tmp_path / "t")]
    args = parser.parse_args(argv)
    assert args.func(args) == 2 and "no result files match" in capsys.readouterr().err
    args = parser.parse_args(argv + ["--allow-empty"])
    assert args.func(args) == 0
    assert (tmp_path / "t" / "survey-transfer.vs_paper.csv").exists() and (tmp_path / "t" / "survey-table9.tex").exists()


# ---------------------------------------------------------------- quickstart method comparison


def test_method_comparison_picks_on_dev_and_shows_theta_size_outside_the_average():
    results = frame(run("t1", "lora", 70, 60, size=500), run("t1", "lora", 80, 55, size=500, lr=1e-2),
                    run("t2", "lora", 50, 40, size=500), run("t1", "finetune", 1, 90, size=20000),
                    run("t2", "finetune", 1, 70, size=20000),
                    run("t1", "prefix+lora", 99, 99, size=7))  # a composite: not a column, and no row of its own
    table = compile_table(SPECS["quickstart-methods"], results)
    assert table.ours.loc["t1", "lora"] == 55  # the lr best on dev, not the best test
    assert table.ours.loc[AVG, "lora"] == pytest.approx((55 + 40) / 2)
    assert table.ours.loc[AVG, "finetune"] == pytest.approx(80)  # the |θ| row is not averaged in
    assert table.ours.loc["size", "lora"] == 500 and table.ours.loc["size", "finetune"] == 20000
    assert math.isnan(table.ours.loc["size", "bitfit"])
    assert list(table.ours.index) == ["t1", "t2", AVG, "size"] and table.missing == 8  # 2 tasks x 4 methods not run
    text = markdown(table)
    assert text.index("| Avg.") < text.index("| \\|θ\\| (parameters) | – | 500 |")  # integers, after Avg
    versus = vs_paper_frame(table)
    assert set(versus.loc[versus.row == "size", "part"]) == {"footer"} and set(versus.loc[versus.row == AVG, "part"]) == {"avg"}
    assert versus.loc[versus.row == "size", "decimals"].eq(0).all()


# ---------------------------------------------------------------- combinations: seed mean ± sd


def test_combination_cells_are_seed_means_with_spread():
    rows = [run("qs-tweet-sentiment", "prompt+adapter", 70 + s, v, seed=s) for s, v in enumerate([60.0, 64.0, 62.0])]
    rows += [run("qs-tweet-sentiment", "prompt+adapter", 10, 99, seed=s, lr=1e-2) for s in range(3)]  # worse on dev: not chosen
    rows += [run("qs-bbc-topic", "prompt+adapter", 50, 50.0, seed=0)]  # one seed: a mean, no spread
    rows += [run("qs-tweet-sentiment", "adapter", 1, 80.0, seed=s) for s in range(2)] + [run("qs-bbc-topic", "adapter", 1, 70.0)]
    rows += [run("qs-tweet-polarity", "adapter", 1, 10.0)]  # not a combination task (config/config.yaml): no row
    table = compile_table(SPECS["quickstart-combination"], frame(*rows))
    assert "qs-tweet-polarity" not in table.ours.index
    assert table.ours.loc["qs-tweet-sentiment", "pa"] == pytest.approx(62.0)
    assert table.spread.loc["qs-tweet-sentiment", "pa"] == pytest.approx(2.0)  # sample sd of 60, 64, 62
    assert math.isnan(table.spread.loc["qs-bbc-topic", "pa"]) and table.ours.loc["qs-bbc-topic", "pa"] == 50
    assert table.ours.loc[AVG, "pa"] == pytest.approx(56.0)
    assert math.isnan(table.spread.loc[AVG, "pa"])  # the Avg's ± is the mean of the ±: missing with one missing
    assert table.spread.loc["qs-tweet-sentiment", "a"] == 0.0
    text = markdown(table)
    assert "| qs-tweet-sentiment | – | 80.0 ± 0.0 | – | – | – | 62.0 ± 2.0 |" in text
    assert "| qs-bbc-topic | – | 70.0 | – | – | – | 50.0 |" in text
    assert r"62.0 $\pm$ 2.0" in latex(table)


def test_survey_combination_tables_select_setting_and_template():
    base = {"backbone": "roberta-large", "task": "glue-rte", "method": "bitfit"}
    experiment = {"full": "survey-combination-full", "16-shot": "survey-combination-fewshot"}
    results = frame(*[run(**base, dev=1, test=t, experiment=experiment[st], regime=st, template=tp, seed=s)
                      for st, tp, t in [("full", "none", 80.0), ("full", "manual", 70.0), ("16-shot", "none", 50.0)]
                      for s in range(2)],
                    run(**{**base, "method": "zero-shot"}, dev=1, test=47.7, experiment=experiment["full"],
                        regime="full", template="none"))
    a, b, c = (compile_table(SPECS[f"survey-table5{x}"], results) for x in "abc")
    assert (a.ours.loc["glue-rte", "b"], b.ours.loc["glue-rte", "b"], c.ours.loc["glue-rte", "b"]) == (80, 70, 50)
    assert a.ours.loc["glue-rte", "none"] == pytest.approx(47.7) and a.diff.loc["glue-rte", "none"] == pytest.approx(0)
    assert a.paper.loc["glue-rte", "b"] == 86.2 and a.paper_spread.loc["glue-rte", "b"] == 1.0
    # Table 3 reads only unlabelled runs: the combination runs must not leak into it
    table3 = compile_table(SPECS["survey-table3"], results.assign(backbone="t5-lm-base", experiment="survey"))
    assert table3.ours.isna().all().all()
    plain = frame(run("glue-rte", "adapter", 1, 77.0, experiment="survey", backbone="t5-lm-base"))
    assert compile_table(SPECS["survey-table3"], plain).ours.loc["glue-rte", "adapter"] == 77


def test_known_inconsistent_survey_averages_are_flagged():
    assert SPECS["survey-table5a"].published_avg_inconsistent == {(AVG, "p")}
    assert SPECS["survey-table5c"].published_avg_inconsistent == {(AVG, "pa")}
    assert not SPECS["survey-table6a"].published_avg_inconsistent and not SPECS["survey-table7b"].published_avg_inconsistent
    assert SPECS["survey-table5d"].published["glue-mrpc"]["pba"] == 81.2  # the collapsed runs the notes point out
    assert SPECS["survey-table7a"].published_spread["glue-cola"]["pa"] == 6.8
    assert SPECS["survey-table9"].published["last-layer"] == {"small": 6.3, "base": 4.2, "xxl": 2.1}


def test_generalization_gap_and_parameter_share_read_their_own_values():
    gap = [run("glue-cola", m, 1, test, experiment="survey-combination-full", backbone="roberta-large", regime="full",
               template="manual", seed=s, train_metric=train)
           for m, test, train, s in [("adapter", 60.0, 80.0, 0), ("adapter", 62.0, 84.0, 1), ("finetune", 50.0, 90.0, 0)]]
    table = compile_table(SPECS["survey-table7b"], frame(*gap))
    assert table.ours.loc["glue-cola", "a"] == pytest.approx(21.0) and table.spread.loc["glue-cola", "a"] == pytest.approx(
        math.sqrt(2))
    assert table.ours.loc["glue-cola", "ft"] == pytest.approx(40.0)
    no_train = frame(*[{k: v for k, v in r.items() if k != "train_metric"} for r in gap])
    assert compile_table(SPECS["survey-table7b"], no_train).ours.isna().all().all()  # no column: missing, not 0
    share = frame(run("glue-sst2", "adapter", 1, 1, experiment="survey-scale", backbone="t5-lm-base",
                      size=2_969_088, backbone_parameters=247_577_856),
                  run("glue-sst2", "prompt", 1, 1, experiment="survey-scale", backbone="t5-small", size=51_200))
    table = compile_table(SPECS["survey-table9"], share)
    assert table.ours.loc["adapter", "base"] == pytest.approx(100 * 2_969_088 / 247_577_856)  # the PLM alone
    assert abs(table.diff.loc["adapter", "base"]) < 0.05  # bottleneck 32 at 60 positions: Table 9's 1.20%
    assert math.isnan(table.ours.loc["prompt", "small"])  # no backbone_parameters recorded


# ---------------------------------------------------------------- convergence from curve.parquet


def test_convergence_reads_the_curve_of_the_run_selected_on_dev(tmp_path):
    steps = np.arange(10, 110, 10)

    def curve(dev):
        return pd.DataFrame({"step": steps, "loss": 1.0, "dev_metric": dev, "tokens_per_second": 1.0,
                             "wall_seconds": 1.0})

    fast = 80 * np.minimum(1, steps / 30)  # reaches 72 = 90% of 80 at step 30
    slow = 90 * np.minimum(1, steps / 90)  # reaches 81 = 90% of 90 at step 90; the better run on dev
    _write(tmp_path / "a", [run("t1", "lora", 80, 70)], curve(fast))
    _write(tmp_path / "b", [run("t1", "lora", 90, 75, lr=1e-2)], curve(slow))
    _write(tmp_path / "c", [run("t1", "adapter", 50, 40)])  # no curve beside it
    results = load_results(str(tmp_path / "**" / "result.parquet"))
    table = compile_table(SPECS["quickstart-convergence"], results)
    assert table.ours.loc["t1", "lora-steps"] == 90 and table.ours.loc["t1", "lora-best"] == 90
    assert math.isnan(table.ours.loc["t1", "adapter-steps"]) and table.ours.loc["t1", "adapter-best"] == 50
    assert "| t1 | – | 90 |" in markdown(table)  # steps print as integers


# ---------------------------------------------------------------- task transfer (survey Figure 12)


def test_task_transfer_is_relative_to_the_targets_own_score_with_the_same_method():
    def transfer(method, source, target, test):
        return {"experiment": "quickstart", "stage": "task-transfer", "method": method, "source_task": source,
                "task": target, "backbone": "minilm", "test_metric": test}  # no dev_metric column at all

    results = frame(run("a", "lora", 60, 80.0), run("a", "lora", 70, 50.0, lr=1e-2),  # a's own lora score: 50
                    run("b", "lora", 1, 40.0), run("a", "prompt", 1, 20.0), run("b", "prompt", 1, 10.0),
                    transfer("lora", "b", "a", 25.0), transfer("lora", "a", "b", 30.0),
                    transfer("prompt", "b", "a", 30.0))
    table = compile_table(SPECS["quickstart-task-transfer"], results)
    assert [r.key for r in table.rows] == ["lora/a", "lora/b", "prompt/b"]  # blocks per method, sources found
    assert [r.group for r in table.rows] == ["lora", "lora", "prompt"] and [c.key for c in table.columns] == ["a", "b"]
    assert table.ours.loc["lora/b", "a"] == pytest.approx(50.0)  # 25 / the best-on-dev 50, not the best test 80
    assert table.ours.loc["lora/a", "b"] == pytest.approx(75.0)
    assert table.ours.loc["prompt/b", "a"] == pytest.approx(150.0)  # above 100 is kept
    assert table.ours.loc["lora/a", "a"] == pytest.approx(100.0)  # the diagonal: the target's own run
    assert table.ours.loc["prompt/b", "b"] == pytest.approx(100.0)
    assert "| lora | a | 100.0 | 75.0 |" in markdown(table)


def test_survey_transfer_divides_by_the_same_backbone():
    rows = [run("sick", "prompt", 1, 80.0, experiment="survey-transfer", backbone="t5-lm-base"),
            run("sick", "prompt", 9, 20.0, experiment="survey-transfer", backbone="t5-lm-large"),  # better dev, other backbone
            run("sick", "prompt", 99, 10.0, experiment="survey", backbone="t5-lm-base"),  # Table 3's run: sick by F1
            {"experiment": "survey-transfer", "stage": "task-transfer", "method": "prompt", "source_task": "glue-mnli",
             "task": "sick", "backbone": "t5-lm-base", "test_metric": 60.0}]
    table = compile_table(SPECS["survey-transfer"], frame(*rows))
    assert table.ours.loc["prompt/glue-mnli", "sick"] == pytest.approx(75.0)
    assert table.ours.loc["prompt/sick", "sick"] == pytest.approx(100.0)
    assert table.ours.shape == (48, 12) and SPECS["survey-transfer"].figure == "heatmap"


# ---------------------------------------------------------------- memory (survey Figure 9)


def _memory(method, batch, mib, backbone="minilm", status="ok", experiment="quickstart", **extra):
    return {"experiment": experiment, "stage": "efficiency", "backbone": backbone, "method": method,
            "batch_size": batch, "peak_bytes": mib * 2 ** 20, "measure": "cpu_peak_rss", "status": status, **extra}


def test_memory_tables_order_batch_sizes_and_divide_by_finetuning(tmp_path):
    rows = [_memory(m, b, base + 10 * b) for m, base in (("finetune", 800), ("lora", 200)) for b in (64, 8, 0)]
    rows += [_memory("lora", 128, math.nan, status="oom"), _memory("finetune", 8, 100, backbone="tiny-bert"),
             _memory("lora", 8, 25, backbone="tiny-bert")]
    for i, row in enumerate(rows):  # through files, as the workflow writes them: no task or metric columns
        _write(tmp_path / str(i), [row])
    results = load_results(str(tmp_path / "**" / "result.parquet"))
    table = compile_table(SPECS["quickstart-efficiency"], results)
    assert [c.key for c in table.columns] == ["0", "8", "64"]  # numeric order; the oom batch size has no column
    assert [r.key for r in table.rows] == ["minilm/finetune", "minilm/lora", "tiny-bert/finetune", "tiny-bert/lora"]
    assert table.ours.loc["minilm/lora", "64"] == pytest.approx(840)
    ratio = compile_table(SPECS["quickstart-efficiency-ratio"], results)
    assert ratio.ours.loc["minilm/lora", "0"] == pytest.approx(25.0)
    assert ratio.ours.loc["tiny-bert/lora", "8"] == pytest.approx(25.0)  # the fine-tuning of its own backbone
    assert ratio.ours.loc["minilm/finetune", "64"] == pytest.approx(100.0)
    assert math.isnan(ratio.ours.loc["tiny-bert/lora", "0"])
    cuda = [_memory(m, 1, mib, backbone="t5-lm-base", experiment="survey-efficiency",
                    measure="cuda_max_memory_allocated")
            for m, mib in (("finetune", 4096), ("adapter", 1024))]
    survey = compile_table(SPECS["survey-efficiency-ratio"], frame(*cuda))
    assert survey.ours.loc["base-adapter", "1"] == pytest.approx(25.0)
    assert compile_table(SPECS["survey-efficiency"], frame(*cuda)).ours.loc["base-finetune", "1"] == pytest.approx(4.0)


# ---------------------------------------------------------------- the synthetic MPC study


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from deltaspace.decomposition.synthetic import StudyConfig, run_and_write

    out = tmp_path_factory.mktemp("synthetic")
    cfg = StudyConfig(ranks=(2, 4), seeds=2, n=12, m=12, steps=150, target_rank=6, decay=0.7, lrs=(3e-2,),
                      methods=("lora", "lora-mpco", "flora-mpco", "ssb"))
    run_and_write(cfg, out, experiment="quickstart")
    return load_results(str(out / "result.parquet"))


def test_synthetic_study_tables(synthetic):
    table = compile_table(SPECS["quickstart-synthetic-mpc"], synthetic)
    assert [c.key for c in table.columns] == ["2", "4"]
    lora = synthetic[(synthetic.method == "lora") & (synthetic["rank"] == 4)]
    assert table.ours.loc["lora", "4"] == pytest.approx(100 * lora.error.mean())
    bound = table.ours.loc["bound"]
    assert (table.ours.loc[["lora", "lora-mpco", "flora-mpco"]] >= bound - 1e-3).all().all()  # nothing beats it
    assert table.ours.loc["lora", "2"] == pytest.approx(bound["2"], abs=0.1)  # unconstrained LoRA reaches it
    assert table.ours.loc["lora-mpco", "2"] > table.ours.loc["flora-mpco", "2"]  # MPCo needs the middle matrix
    assert table.missing == 2 * 5  # forms not in this run: missing
    free = compile_table(SPECS["quickstart-synthetic-mpc-rank-free"], synthetic)
    assert free.ours.loc["ssb", "size"] == 24 and 0 < free.ours.loc["ssb", "error"] <= 100
    assert compile_table(SPECS["decomposition-synthetic-mpc"], synthetic).ours.isna().all().all()  # other experiment


# ---------------------------------------------------------------- the spec language


@pytest.mark.parametrize("change, message", [
    (("kind: absolute", "kind: absolute\n    value: __import__('os')"), "Call is not allowed"),
    (("kind: absolute", "kind: absolute\n    value: size.real"), "Attribute is not allowed"),
    (("kind: absolute", "kind: absolute\n    value: 'size +'"), "not an expression"),
    (("kind: absolute", "kind: absolute\n    value: '3 * 4'"), "reads no result column"),
    (("select: {experiment: demo}", "select: {experiment: demo, method: [lora, prefix]}"), "disagree on 'method'"),
    (("kind: absolute", "kind: absolute\n    spread: seed_std\n    statistic: mean\n    footer_rows: "
                        "[{key: s, match: {}, statistic: mean}]"), "one statistic for the whole table"),
    (("rows: [{key: t1}]", "rows: auto\n    row_groups: method\n    row_axis: task"), None),
    (("rows: [{key: t1}]", "rows: [{key: t1}]\n    row_groups: method"), "row_groups only applies to rows: auto"),
    (("columns: [{key: adapter}]", "columns: [{key: adapter}]\n    column_axis: rank"), "column_axis only applies"),
    (("columns: [{key: adapter}]", "columns: auto"), None),
    (("kind: absolute", "kind: series"), "required"),
])
def test_spec_language_errors(tmp_path, change, message):
    path = tmp_path / "demo.yaml"
    path.write_text(DEMO_SPEC.replace(*change))
    if message is None:
        assert load_specs([path])
    else:
        with pytest.raises(TableSpecError, match=message):
            load_specs([path])


def test_selector_lists_narrow_and_null_matches_an_absent_column():
    df = frame(run("a", "lora", 1, 1), run("b", "prefix", 1, 1))
    assert len(filter_rows(df, {"template": None})) == 2  # nobody recorded a template: all unlabelled
    assert filter_rows(df, {"template": "manual"}).empty
    assert list(filter_rows(df, {"template": [None, "x"], "method": "lora"})["task"]) == ["a"]


def test_written_files_carry_spreads_groups_and_parts(tmp_path):
    rows = [run("qs-tweet-sentiment", "adapter", 1, v, seed=s) for s, v in enumerate([70.0, 74.0])]
    table = compile_table(SPECS["quickstart-combination"], frame(*rows))
    write_table(table, tmp_path)
    display = pd.read_csv(tmp_path / "quickstart-combination.csv")
    assert display.loc[display.key == "qs-tweet-sentiment", "A"].item() == pytest.approx(72.0)
    assert display.loc[display.key == "qs-tweet-sentiment", "A (sd)"].item() == pytest.approx(math.sqrt(8))
    versus = pd.read_csv(tmp_path / "quickstart-combination.vs_paper.csv")
    assert {"row_group", "part", "decimals", "ours_spread", "paper_spread"} <= set(versus.columns)


def test_figure11_groups_convergence_by_backbone(tmp_path):
    """survey-figure11: one block of task rows per T5 size, steps to 90% read from each run's curve."""
    base = tmp_path / "results" / "survey-scale" / "stage0"
    for backbone, best in (("t5-lm-small", 60.0), ("t5-lm-base", 80.0)):
        folder = base / backbone / "glue-sst2" / "adapter" / "lr0.0005_seed42"
        folder.mkdir(parents=True)
        pd.DataFrame([{"experiment": "survey-scale", "stage": "stage0", "task": "glue-sst2", "method": "adapter",
                       "backbone": backbone, "seed": 42, "lr": 5e-4, "dev_metric": best, "test_metric": best - 1,
                       "metric": "accuracy", "size": 10}]).to_parquet(folder / "result.parquet")
        steps_to_reach = 300 if backbone == "t5-lm-small" else 100  # the bigger model converges sooner
        curve = [best * (0.95 if step >= steps_to_reach else 0.5) for step in (100, 200, 300)]
        curve[-1] = best
        pd.DataFrame({"step": [100, 200, 300], "loss": [1.0] * 3, "dev_metric": curve, "tokens_per_second": [1.0] * 3,
                      "wall_seconds": [1.0] * 3}).to_parquet(folder / "curve.parquet")
    from deltaspace.cli import main

    assert main(["tables", "--spec", "survey-figure11", "--results", str(tmp_path / "results" / "**" / "result.parquet"),
                 "--out", str(tmp_path / "t")]) == 0
    table = pd.read_parquet(tmp_path / "t" / "survey-figure11.parquet")
    steps = {(r["Backbone"], r["Task"]): r["AP: steps"] for _, r in table.iterrows() if r["Task"] == "glue-sst2"}
    assert steps == {("t5-lm-small", "glue-sst2"): 300, ("t5-lm-base", "glue-sst2"): 100}
