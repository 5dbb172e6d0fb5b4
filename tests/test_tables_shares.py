"""Specs added for paper coverage (issue 13): the parameter shares the papers print beside their
scores (survey Table 3's ratio row, the tunable-parameters rows of Tables 5-7, the decomposition
paper's ‰Params column of Tables II-IV) and the survey's Figure 10 (sequential combinations)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from deltaspace.tables import compile_table, load_specs

SPECS = load_specs()
SHARE_SPECS = ["survey-table3-ratio", "survey-table5-params", "survey-table6-params", "survey-table7-params",
               "decomposition-table2-params", "decomposition-table3-params", "decomposition-table4-params"]


def run(**columns) -> dict:
    return {"stage": "stage0", "task": "glue-sst2", "lr": 1e-3, "seed": 42, "dev_metric": 1.0, "test_metric": 1.0,
            **columns}


@pytest.mark.parametrize("table_id", SHARE_SPECS)
def test_share_specs_read_sizes_with_the_mean_and_carry_every_printed_number(table_id):
    spec = SPECS[table_id]
    assert spec.statistic == "mean" and spec.kind == "absolute"
    empty = pd.DataFrame(columns=["experiment", "stage", "task", "method", "dev_metric", "test_metric"])
    table = compile_table(spec, empty)
    assert table.ours.isna().all().all()  # nothing run: every share missing, never 0
    printed = sum(v is not None for cols in spec.published.values() for v in cols.values())
    assert printed == table.paper.notna().sum().sum() == len(table.rows) * len(table.columns)  # every cell printed


def test_table3_ratio_row_reads_the_plm_alone_and_leaves_out_combination_runs():
    rows = [run(experiment="survey", method="prompt", backbone="t5-lm-base", size=76_800, backbone_parameters=247_577_856),
            run(experiment="survey", method="prompt", backbone="t5-lm-base", size=76_800, backbone_parameters=247_577_856,
                task="glue-rte"),
            run(experiment="survey", method="prompt", backbone="t5-lm-large", size=102_400,
                backbone_parameters=783_150_080),
            run(experiment="survey", method="finetune", backbone="t5-lm-base", size=247_577_856,
                backbone_parameters=247_577_856),
            # a run labelled with a template is a combination run, not Table 3's
            run(experiment="survey", method="adapter", backbone="t5-lm-base", size=1, backbone_parameters=10,
                template="manual")]
    table = compile_table(SPECS["survey-table3-ratio"], pd.DataFrame(rows))
    assert table.ours.loc["ratio", "pt-base"] == pytest.approx(100 * 76_800 / 247_577_856)
    assert round(table.ours.loc["ratio", "pt-base"], 2) == table.paper.loc["ratio", "pt-base"] == 0.03
    assert round(table.ours.loc["ratio", "pt-large"], 2) == 0.01
    assert table.ours.loc["ratio", "finetune"] == 100
    assert math.isnan(table.ours.loc["ratio", "adapter"])


def test_combination_share_rows_select_full_data_without_templates():
    base = {"experiment": "survey-combination-full", "backbone": "roberta-large", "regime": "full",
            "backbone_parameters": 355_000_000}
    rows = [run(**base, method="zero-shot", size=0, template="none"),
            run(**base, method="adapter", size=6_343_680, template="none"),
            run(**{**base, "regime": "16-shot"}, method="bitfit", size=1, template="none"),
            run(**base, method="bitfit", size=1, template="manual")]
    for table_id in ("survey-table5-params", "survey-table7-params"):
        table = compile_table(SPECS[table_id], pd.DataFrame(rows))
        assert table.ours.loc["params", "a"] == pytest.approx(100 * 6_343_680 / 355_000_000)
        assert math.isnan(table.ours.loc["params", "b"])  # 16-shot and templated runs are other tables'
    five = compile_table(SPECS["survey-table5-params"], pd.DataFrame(rows))
    assert five.ours.loc["params", "none"] == 0 == five.paper.loc["params", "none"]
    assert SPECS["survey-table6-params"].published["params"]["pba"] == 0.983


def test_permille_column_leaves_the_classifier_head_out():
    base = {"experiment": "decomposition", "backbone": "roberta-base", "backbone_parameters": 124_645_632}
    head = 768 * 768 + 768 + 768 * 2 + 2
    rows = [run(**base, method="lora", rank=2, size=331_776 + head, head_size=head, seed=s) for s in range(5)]
    rows += [run(**base, method="finetune", size=124_645_632 + head, head_size=head),
             run(**base, method="bitfit", size=102_000)]  # an old run without head_size: missing, not guessed
    table = compile_table(SPECS["decomposition-table2-params"], pd.DataFrame(rows))
    assert table.ours.loc["lora-r2", "params"] == pytest.approx(1000 * 331_776 / 124_645_632)
    assert abs(table.diff.loc["lora-r2", "params"]) < 0.02  # printed 2.65‰ (of ≈125.0M)
    assert table.ours.loc["fullft", "params"] == 1000 == table.paper.loc["fullft", "params"]
    assert math.isnan(table.ours.loc["bitfit", "params"])
    assert table.paper.loc["lora-r16", "params"] == 21.24 and table.paper.loc["dora-r2", "params"] == 3.32


def test_head_size_is_the_classifier_part_of_theta():
    from deltaspace.backbones import load_backbone
    from deltaspace.deltas import build_delta
    from deltaspace.train.stage0 import classifier_method, head_size

    method, options = classifier_method("lora", {"r": 2}, 3)
    with_head = build_delta(method, load_backbone("tiny-bert"), **options)
    plain = build_delta("lora", load_backbone("tiny-bert"), r=2)
    assert head_size(plain) == 0
    assert head_size(with_head) == with_head.size - plain.size > 0


def test_figure10_reads_each_order_without_and_with_templates():
    from deltaspace.tables import load_specs as _load

    spec = _load()["survey-figure10"]
    assert len(spec.rows) == 15 and [r.label for r in spec.rows][:4] == ["PT", "BF", "AP", "PT → BF"]
    base = {"experiment": "survey-combination-full", "backbone": "roberta-large", "regime": "full", "task": "glue-sst2"}
    rows = [run(**base, method="seq-p-b", sequence="p-b", template="none", seed=s, test_metric=90.0 + s) for s in (0, 2)]
    rows += [run(**base, method="manual-seq-p-b", sequence="p-b", template="manual", seed=0, test_metric=93.0),
             run(**{**base, "task": "glue-rte"}, method="seq-p-b", sequence="p-b", template="none", test_metric=1.0)]
    table = compile_table(spec, pd.DataFrame(rows))
    assert table.ours.loc["p-b", "none"] == 91.0 and table.spread.loc["p-b", "none"] == pytest.approx(2 ** 0.5)
    assert table.ours.loc["p-b", "manual"] == 93.0
    assert math.isnan(table.ours.loc["p-b-a", "none"])


def test_figure13_prints_milliseconds_per_step_by_input_length():
    spec = SPECS["survey-figure13"]
    rows = [{"experiment": "survey-time", "stage": "efficiency", "backbone": "t5-lm-base", "method": m, "batch_size": 8,
             "input_length": n, "status": "ok", "step_seconds": s, "task": None, "dev_metric": None, "test_metric": None}
            for m, n, s in (("finetune", 64, 0.2), ("bitfit", 64, 0.1), ("bitfit", 512, None))]
    rows.append({**rows[0], "batch_size": 1, "step_seconds": 9.0})  # another batch size: not Figure 13's
    table = compile_table(spec, pd.DataFrame(rows))
    assert table.ours.loc["base-finetune", "64"] == pytest.approx(200.0)
    assert table.ours.loc["base-bitfit", "64"] == pytest.approx(100.0)
    assert math.isnan(table.ours.loc["base-bitfit", "512"]) and math.isnan(table.ours.loc["large-prompt", "64"])
