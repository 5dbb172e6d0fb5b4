"""The HTML report: a synthetic results tree and compiled tables in, one self-contained page out."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deltaspace.report import ReportError, build_report, gather, render
from deltaspace.report.build import MISSING, d_intrinsic_frame, read_table, stage_times
from deltaspace.report.commands import register
from deltaspace.tables import compile_table, load_results, load_specs, select_specs, write_table

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VERSIONS = json.dumps({"deltaspace": "0.1.0", "torch": "2.13.0", "pandas": "3.1.1"}, sort_keys=True)
QS_TASKS = ("qs-tweet-sentiment", "qs-tweet-polarity", "qs-bbc-topic")
IPT_TASKS = {"qs-tweet-sentiment": "train-same", "qs-tweet-polarity": "train-same",
             "qs-tweet-subjectivity": "train-same", "qs-bbc-topic": "train-same", "qs-bbc-business": "test",
             "qs-bbc-sport": "test"}


def _row(experiment, stage, task, method, dev, test, *, device="cpu", wall=30.0, **extra):
    row = {"experiment": experiment, "stage": stage, "task": task, "method": method, "source_method": method,
           "target_method": method, "backbone": "minilm", "seed": 42, "lr": 1e-3, "best_step": 10,
           "dev_metric": dev, "test_metric": test, "metric": "accuracy", "size": 1000,
           "config_hash": f"{experiment}-{stage}-{task}-{method}", "config": "{}", "git_commit": COMMIT,
           "versions": VERSIONS, "created_at": "2026-01-01T00:00:00+00:00", "wall_seconds": wall, "device": device}
    row.update(extra)
    return row


def _job(folder: Path, rows: list[dict], curve: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "result.parquet", index=False)
    if curve:
        steps = np.arange(10, 110, 10)
        final = rows[0]["dev_metric"]
        tau = {"adapter": 15, "lora": 25, "prefix": 35, "prompt": 45}.get(rows[0]["source_method"], 25)
        pd.DataFrame({"step": steps, "loss": 2.0 * np.exp(-steps / (tau + 10)) + 0.05,
                      "dev_metric": final * (1 - np.exp(-steps / tau)), "tokens_per_second": 1000.0,
                      "wall_seconds": 3.0}).to_parquet(folder / "curve.parquet", index=False)
    return folder


def _landscape_png(path: Path) -> None:
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(3, 2.5))
    ax = fig.add_subplot()
    grid = np.linspace(-4, 4, 21)
    ax.pcolormesh(grid, grid, np.exp(-(grid[None, :] ** 2 + grid[:, None] ** 2) / 8))
    ax.set_title("toy landscape")
    fig.savefig(path, format="png")


def make_results(root: Path) -> Path:
    """A small results tree: quickstart stage 0 / optimize / transfer / IPT runs, and a few unified-dt
    runs so that udt-table1 has cells to compare against the paper's numbers."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    results = root / "results"
    # quickstart stage 0: every method on every task, two learning rates (best dev is also best test);
    # prefix is missing on qs-bbc-topic, so that cell is empty
    for task in QS_TASKS:
        for method in ("adapter", "lora", "prefix", "prompt"):
            if task == "qs-bbc-topic" and method == "prefix":
                continue
            for lr, shift in ((1e-3, 0.0), (1e-2, -5.0)):
                base = 60.0 + 5 * QS_TASKS.index(task) + shift
                _job(results / "quickstart/stage0" / task / method / f"lr{lr}",
                     [_row("quickstart", "stage0", task, method, base + 1, base, lr=lr)], curve=True)
    # quickstart single-task subspace: optimize (target = source) and transfer rows from one job
    for task in QS_TASKS:
        for source in ("adapter", "lora", "prefix"):
            rows = []
            for target in ("adapter", "lora", "prefix"):
                stage = "optimize" if target == source else "transfer"
                rows.append(_row("quickstart", stage, task, target, 50.0 + 3 * len(source), 52.0 + rng.uniform(-3, 3),
                                 source_method=source, target_method=target, setting="single", wall=120.0))
            folder = _job(results / "quickstart/single" / task / source, rows, curve=True)
            save_file({"intrinsic": rng.normal(size=4).astype(np.float32)}, str(folder / "intrinsic.safetensors"))
    # quickstart IPT: MSF and IST rows over d_I, IST intrinsic vectors for the PCA
    for task, subset in IPT_TASKS.items():
        _job(results / "quickstart/stage0" / task / "prompt-ipt",
             [_row("quickstart", "stage0", task, "prompt", 71.0, 70.0)])
        centre = 3.0 if "tweet" in task else -3.0
        for d in (5, 10, 50):
            _job(results / "quickstart/ipt" / task / f"msf-d{d}",
                 [_row("quickstart", "msf", task, "prompt", 68.0, 60.0 + d / 10, setting="random", subset="train",
                       d_intrinsic=d)])
            folder = _job(results / "quickstart/ipt" / task / f"ist-d{d}",
                          [_row("quickstart", "ist", task, "prompt", 60.0, 50.0 + d / 5 - 8 * (subset == "test"),
                                setting="random",
                                subset=subset, d_intrinsic=d)])
            save_file({"intrinsic": (centre + rng.normal(size=d)).astype(np.float32)},
                      str(folder / "intrinsic.safetensors"))
    # a landscape folder: grid.parquet and landscape.png, no result.parquet
    landscape = results / "quickstart/landscape/qs-tweet-sentiment"
    _landscape_png(landscape / "landscape.png")
    pd.DataFrame({"alpha": [0.0], "beta": [0.0], "relative": [100.0]}).to_parquet(landscape / "grid.parquet")
    # unified-dt: stage 0 = 80 everywhere; optimize chosen so the differences are green, amber and red
    # (published rotten_tomatoes: adapter 101.8, lora 100.1, prefix 99.3)
    for task, tests in {"rotten_tomatoes": (81.44, 77.0, 70.0), "amazon_polarity": (78.4, 77.5, 78.5)}.items():
        for method, test in zip(("adapter", "lora", "prefix"), tests):
            _job(results / "udt/stage0" / task / method,
                 [_row("udt", "stage0", task, method, 81.0, 80.0, device="NVIDIA H100 80GB HBM3", wall=3600.0)])
            _job(results / "udt/single" / task / method,
                 [_row("udt", "optimize", task, method, 79.0, test, setting="single",
                       device="NVIDIA H100 80GB HBM3", wall=1800.0)])
    return results


def compile_tables(results: Path, out: Path, papers=("quickstart", "udt")) -> Path:
    """Compile the tables the way `deltaspace tables` does, with the tables layer's own functions."""
    frame = load_results(str(results / "**" / "result.parquet"))
    for spec in select_specs(load_specs(), papers=list(papers)):
        write_table(compile_table(spec, frame), out)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results = make_results(root)
    tables = compile_tables(results, root / "tables")
    config = root / "config.yaml"
    config.write_text("experiment: quickstart\nseeds: [42]\nmethods: [adapter, lora, prefix]\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = root / "reports" / "index.html"
    args = parser.parse_args(["report", "--results", str(results), "--tables", str(tables), "--out", str(out),
                              "--config", str(config), "--title", "Synthetic report"])
    assert args.func(args) == 0
    return {"root": root, "results": results, "tables": tables, "out": out, "html": out.read_text(encoding="utf-8")}


def _table_block(html: str, table_id: str) -> str:
    start = html.index(f'id="table-{table_id}"')
    return html[start: html.index("</details>", start)]


def test_report_exists_and_lists_every_compiled_table(built):
    html = built["html"]
    assert built["out"].exists() and "<title>Synthetic report</title>" in html
    for table_id in ("quickstart-stage0", "quickstart-single-optimize", "quickstart-single-transfer",
                     "quickstart-ipt", "udt-table1", "udt-table2"):
        assert f'id="table-{table_id}"' in html, table_id
    assert 'id="paper-quickstart"' in html and 'id="paper-udt"' in html
    # the udt section comes first (the design's paper order), and the summary sits above both
    assert html.index('id="summary"') < html.index('id="paper-udt"') < html.index('id="paper-quickstart"')


def test_numbers_ours_and_paper_side_by_side(built):
    block = _table_block(built["html"], "udt-table1")
    # rotten_tomatoes adapter: ours 100 * 81.44 / 80 = 101.8 beside the paper's 101.8
    assert '<td class="o">101.8</td>' in block
    assert '<td class="p">101.8</td>' in block
    assert '<td class="d ok">±0.0</td>' in block
    # lora: 96.25 vs 100.1 (amber); prefix 87.5 vs 99.3 (red)
    assert '<td class="o">96.2</td>' in block or '<td class="o">96.3</td>' in block
    assert '<td class="d warn">−3.9</td>' in block or '<td class="d warn">−3.8</td>' in block
    assert '<td class="d bad">−11.8</td>' in block
    # quickstart stage 0 has no published numbers: ours only, and the note says so
    qs = _table_block(built["html"], "quickstart-stage0")
    assert "The paper has no numbers for this table" in qs and '<td class="p' not in qs
    assert '<td class="o">70.0</td>' in qs  # qs-bbc-topic, best lr


def test_missing_cells_render_as_dash_never_zero(built):
    qs = _table_block(built["html"], "quickstart-stage0")
    row = re.search(r'<td class="lbl">qs-bbc-topic</td>(.*?)</tr>', qs, re.S).group(1)
    cells = re.findall(r'<td class="o[^"]*">([^<]*)</td>', row)
    assert cells == ["70.0", "70.0", MISSING, "70.0"]  # adapter, lora, prefix (never run), prompt
    assert f'<td class="o na">{MISSING}</td>' in row
    # udt-table1 rows with no runs are dashes, and so is every Avg that would include them
    udt = _table_block(built["html"], "udt-table1")
    row = re.search(r'<td class="lbl">SciTail</td>(.*?)</tr>', udt, re.S).group(1)
    assert re.findall(r'<td class="o[^"]*">([^<]*)</td>', row) == [MISSING] * 4
    assert ">0.0<" not in row


def test_summary_counts_filled_cells(built):
    html = built["html"]
    summary = html[html.index('id="summary"'): html.index('id="paper-udt"')]
    row = re.search(r'<code>quickstart-stage0</code>.*?</tr>', summary, re.S).group(0)
    # 6 tasks (3 with every method, 3 more with only the prompt reference of the IPT runs) x 4 methods
    assert "partial" in row and ">14/24<" in row
    row = re.search(r'<code>udt-table1</code>.*?</tr>', summary, re.S).group(0)
    assert ">6/33<" in row  # 2 of 11 tasks x 3 methods


def test_images_are_inlined_and_nothing_is_external(built):
    html = built["html"]
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert len(images) >= 6  # landscape, d_I curve, PCA, training curves, Avg bars
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html


def test_figures_in_their_paper_sections(built):
    html = built["html"]
    quickstart = html[html.index('id="paper-quickstart"'): html.index('id="provenance"')]
    assert "Performance landscapes" in quickstart and "quickstart/landscape/qs-tweet-sentiment" in quickstart
    assert "PCA: quickstart / random / d = 10" in quickstart
    assert "quickstart / stage0: dev metric vs step" in quickstart
    assert "quickstart / optimize+transfer / single: training loss vs step" in quickstart
    # the series table is drawn as d_I curves
    d_group = quickstart[quickstart.index("d_I curves (IPT Figure 3)"):]
    assert "data:image/png;base64," in d_group[: d_group.index("PCA of intrinsic vectors")]
    udt = html[html.index('id="paper-udt"'): html.index('id="paper-quickstart"')]
    assert "No landscape.png under the results" in udt


def test_provenance_lists_commit_versions_stage_times_and_config(built):
    html = built["html"]
    prov = html[html.index('id="provenance"'):]
    assert f"<code>{COMMIT}</code>" in prov
    assert "<code>torch</code>" in prov and "2.13.0" in prov
    assert "seeds: [42]" in prov  # the --config file
    stage0 = re.search(r"<td>stage0</td>.*?</tr>", prov, re.S).group(0)
    # stage 0: 22 quickstart jobs (11 cells x 2 lrs) + 6 IPT references on the CPU, 6 udt jobs of 1 h on a GPU
    assert re.findall(r'<td class="n">([^<]*)</td>', stage0)[:2] == ["34", "34"]
    assert ">6.00<" in stage0 and "NVIDIA H100 80GB HBM3 (6)" in stage0
    # one optimize job writes three rows: counted once
    combined = re.search(r"<td>optimize\+transfer</td>.*?</tr>", prov, re.S).group(0)
    assert re.findall(r'<td class="n">([^<]*)</td>', combined)[:3] == ["9", "27", "18.0 min"]


def test_stage_times_count_each_job_once():
    rows = pd.DataFrame([
        {"_job": "a", "stage": "optimize", "wall_seconds": 100.0, "device": "NVIDIA A100"},
        {"_job": "a", "stage": "transfer", "wall_seconds": 100.0, "device": "NVIDIA A100"},
        {"_job": "b", "stage": "stage0", "wall_seconds": 7200.0, "device": "cpu", "precision": "bf16"},
        {"_job": "c", "stage": "stage0", "wall_seconds": 3600.0, "device": "NVIDIA A100"},
    ])
    times = {s.stage: s for s in stage_times(rows)}
    assert set(times) == {"stage0", "optimize+transfer", "total"}
    assert (times["stage0"].jobs, times["stage0"].wall, times["stage0"].gpu_hours) == (2, "3.00 h", "1.00")
    # each device with the precision its rows record; rows from before the column, the device alone
    assert times["stage0"].devices == "cpu bf16 (1), NVIDIA A100 (1)"
    assert (times["optimize+transfer"].jobs, times["optimize+transfer"].rows) == (1, 2)
    assert times["total"].gpu_hours == f"{3700 / 3600:.2f}"


def test_d_intrinsic_curves_are_relative_to_prompt_tuning():
    rows = pd.DataFrame([
        {"experiment": "x", "stage": "stage0", "task": "a", "method": "prompt", "dev_metric": 1, "test_metric": 80.0},
        {"experiment": "x", "stage": "stage0", "task": "b", "method": "prompt", "dev_metric": 1, "test_metric": 50.0},
        {"experiment": "x", "stage": "ist", "subset": "test", "setting": "random", "task": "a", "method": "prompt",
         "d_intrinsic": 10, "dev_metric": 1, "test_metric": 40.0},
        {"experiment": "x", "stage": "ist", "subset": "test", "setting": "random", "task": "b", "method": "prompt",
         "d_intrinsic": 10, "dev_metric": 1, "test_metric": 50.0},
    ])
    frame, ylabel, _ = d_intrinsic_frame(rows)
    assert "relative" in ylabel
    assert frame.to_dict("records") == [{"panel": "random", "series": "ist / test", "d_intrinsic": 10.0,
                                         "value": 75.0, "tasks": 2}]
    # without stage-0 prompt runs the curve is absolute, and the note says so
    frame, ylabel, note = d_intrinsic_frame(rows[rows["stage"] != "stage0"])
    assert ylabel == "test score" and frame["value"].tolist() == [45.0] and "absolute" in note


def test_partial_results_render_and_show_what_is_missing(tmp_path):
    """Only stage 0 has run: relative tables are empty, and the page says so instead of failing."""
    results = tmp_path / "results"
    _job(results / "stage0/qs-tweet-sentiment/lora",
         [_row("quickstart", "stage0", "qs-tweet-sentiment", "lora", 61, 60)])
    tables = compile_tables(results, tmp_path / "tables", papers=("quickstart",))
    (tables / "quickstart-ipt.vs_paper.csv").unlink()  # a table whose files are gone: "not compiled"
    (tables / "quickstart-ipt.parquet").unlink()
    out = build_report(results, tables, tmp_path / "index.html")
    html = out.read_text(encoding="utf-8")
    assert '<span class="badge empty">empty</span>' in html and "not compiled" in html
    assert "<code>quickstart-ipt</code>" in html
    assert "No intrinsic.safetensors" in html and "No landscape.png" in html
    assert "No configuration file given" in html
    block = _table_block(html, "quickstart-single-optimize")
    assert "no rows or columns" in block  # the tables layer's own note, carried over


def test_empty_inputs_still_render(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "tables").mkdir()
    html = render(gather(tmp_path / "results", tmp_path / "tables"))
    assert "No compiled tables" in html and "No result rows" in html


def test_unknown_spec_and_ours_only_parquet(tmp_path):
    """Compiled files of a table no installed spec knows (or with only the Parquet) still show."""
    tables = tmp_path / "tables"
    tables.mkdir()
    pd.DataFrame({"key": ["t1", "avg"], "Row": ["T one", "Avg."], "A": [1.25, float("nan")]}).to_parquet(
        tables / "custom-thing.parquet", index=False)
    view = read_table(tables, "custom-thing")
    assert not view.known_spec and view.paper == "custom"
    assert [c.ours for r in view.rows for c in r.cells] == ["1.2", MISSING]
    (tmp_path / "results").mkdir()
    html = render(gather(tmp_path / "results", tables))
    assert 'id="table-custom-thing"' in html and "No table spec named" in html


def test_pca_colours_by_category_map_or_says_why_not(tmp_path):
    from safetensors.numpy import save_file

    results = tmp_path / "results"
    rng = np.random.default_rng(1)
    for i in range(4):
        folder = _job(results / f"ist/task{i}", [_row("quickstart", "ist", f"task{i}", "prompt", 50, 50,
                                                      setting="random", subset="test", d_intrinsic=5)])
        save_file({"intrinsic": rng.normal(size=5).astype(np.float32),
                   "matrix": np.zeros((2, 2), np.float32)}, str(folder / "intrinsic.safetensors"))
    (tmp_path / "tables").mkdir()
    html = render(gather(results, tmp_path / "tables"))
    assert "Task categories are unknown" in html and "is not 1-D" in html
    categories = tmp_path / "categories.yaml"
    categories.write_text("task0: cls\ntask1: cls\ntask2: qa\ntask3: qa\n")
    html = render(gather(results, tmp_path / "tables", categories=categories))
    assert "Task categories are unknown" not in html and "PCA: quickstart / random / d = 5" in html


def test_cli_errors_and_atomic_overwrite(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    (tmp_path / "tables").mkdir()
    args = parser.parse_args(["report", "--results", str(tmp_path / "nope"), "--tables", str(tmp_path / "tables"),
                              "--out", str(tmp_path / "r" / "index.html")])
    assert args.func(args) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "results").mkdir()
    out = tmp_path / "r" / "index.html"
    out.parent.mkdir()
    out.write_text("old")
    args = parser.parse_args(["report", "--results", str(tmp_path / "results"), "--tables", str(tmp_path / "tables"),
                              "--out", str(out)])
    assert args.func(args) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["index.html"]  # no temporary file left
    with pytest.raises(ReportError):
        gather(tmp_path / "results", tmp_path / "tables", config=tmp_path / "missing.yaml")


def test_landscape_without_results_goes_to_its_experiment(tmp_path):
    """`deltaspace landscape` writes no result.parquet; a results root of one experiment claims it."""
    results = tmp_path / "results"
    _job(results / "stage0/qs-tweet-sentiment/lora",
         [_row("quickstart", "stage0", "qs-tweet-sentiment", "lora", 61, 60)])
    _landscape_png(results / "landscape/single/y4/qs-tweet-sentiment/landscape.png")
    tables = compile_tables(results, tmp_path / "tables", papers=("quickstart",))
    html = render(gather(results, tables))
    section = html[html.index('id="paper-quickstart"'): html.index('id="provenance"')]
    assert "landscape/single/y4/qs-tweet-sentiment" in section and 'id="paper-other"' not in html


def test_results_of_unknown_experiments_get_their_own_section(tmp_path):
    results = tmp_path / "results"
    _job(results / "a", [_row("mystery", "stage0", "<b>task</b>", "lora", 61, 60)], curve=True)
    (tmp_path / "tables").mkdir()
    html = render(gather(results, tmp_path / "tables"))
    other = html[html.index('id="paper-other"'): html.index('id="provenance"')]
    assert "<code>mystery</code>" in other and "mystery / stage0: dev metric vs step" in other
    assert "<b>task</b>" not in html  # text from the results is escaped


# ---------------------------------------------------------------- survey and decomposition studies


def _study_results(root: Path) -> Path:
    """Stage-0 runs with curves for two tasks and three methods (two seeds each), task transfer between
    the tasks, memory measurements and a small synthetic MPC study: what the new quickstart specs read."""
    from deltaspace.decomposition.synthetic import StudyConfig, run_and_write

    results = root / "results"
    tasks = ("qs-tweet-sentiment", "qs-bbc-topic")
    for t, task in enumerate(tasks):
        for m, method in enumerate(("lora", "prompt", "prompt+adapter")):
            for seed in (1, 2):
                _job(results / "stage0" / task / method / str(seed),
                     [_row("quickstart", "stage0", task, method, 60.0 + 5 * m + seed, 55.0 + 5 * m + t + seed,
                           seed=seed, size=1000 * (m + 1))], curve=True)
    for method in ("lora", "prompt"):
        for source, target in (tasks, tasks[::-1]):
            _job(results / "task-transfer" / method / source / target,
                 [{"experiment": "quickstart", "stage": "task-transfer", "method": method, "source_task": source,
                   "task": target, "backbone": "minilm", "test_metric": 30.0, "metric": "accuracy"}])
    for method, mib in (("finetune", 900), ("lora", 300)):
        _job(results / "efficiency" / "minilm" / method,
             [{"experiment": "quickstart", "stage": "efficiency", "backbone": "minilm", "method": method,
               "batch_size": b, "peak_bytes": (mib + 10 * b) * 2 ** 20, "measure": "cpu_peak_rss", "status": "ok"}
              for b in (0, 1, 8)])
    cfg = StudyConfig(ranks=(2, 4), seeds=1, n=8, m=8, steps=30, target_rank=4, lrs=(3e-2,),
                      methods=("lora", "lora-mpco", "ssl"))
    run_and_write(cfg, results / "synthetic-mpc", experiment="quickstart")
    return results


STUDY_TABLES = ("quickstart-methods", "quickstart-convergence", "quickstart-combination", "quickstart-task-transfer",
                "quickstart-efficiency", "quickstart-efficiency-ratio", "quickstart-synthetic-mpc")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    results = _study_results(root)
    frame = load_results(str(results / "**" / "result.parquet"))
    specs = load_specs()
    for table_id in STUDY_TABLES:
        write_table(compile_table(specs[table_id], frame), root / "tables")
    report = gather(results, root / "tables")
    return {"report": report, "html": render(report)}


def _section_groups(report, section_id="quickstart"):
    section = next(s for s in report.sections if s.id == section_id)
    return {g.title.split(":")[0].split(" (")[0]: g for g in section.groups}


def test_study_figures_appear_in_their_section(studies):
    groups = _section_groups(studies["report"])
    convergence = groups["Convergence"]
    assert len(convergence.figures) == 1 and not convergence.notes
    assert "2 task(s)" in convergence.figures[0].caption
    transfer = groups["Task-level transferability"]
    assert [f.title for f in transfer.figures] == ["quickstart-task-transfer: lora", "quickstart-task-transfer: prompt"]
    assert len(groups["Memory"].figures) == 1
    synthetic = groups["Synthetic MPC study"]
    assert [f.title for f in synthetic.figures] == ["synthetic-mpc"]
    assert studies["html"].count('data:image/png;base64,') >= 6
    # efficiency results have no task or score columns: read as results, not reported as unreadable
    assert not studies["report"].provenance.problems and "Problems reading the inputs" not in studies["html"]


def test_study_tables_render_spreads_footer_and_cell_digits(studies):
    html = studies["html"]
    combination = _table_block(html, "quickstart-combination")
    # P+A on qs-tweet-sentiment: seeds 1 and 2 score 66 and 67: mean 66.5, sample sd 0.7
    assert '<td class="o">66.5 ± 0.7</td>' in combination
    methods = _table_block(html, "quickstart-methods")
    footer = re.search(r'<tr class="footer">(.*?)</tr>', methods, re.S).group(1)
    assert re.findall(r'<td class="o[^"]*">([^<]*)</td>', footer)[:4] == [MISSING, "1000", MISSING, "2000"]  # adapter, lora, prefix, prompt
    view = next(t for t in studies["report"].tables if t.id == "quickstart-methods")
    assert (view.filled, view.body_cells) == (4, 12)  # 2 tasks x 6 methods; the |θ| row is not a body cell
    convergence = _table_block(html, "quickstart-convergence")
    assert re.search(r'<td class="o">\d+</td>', convergence)  # steps print without decimals
    assert "Avg row" not in convergence  # mixed units: no Avg bar chart for a table drawn as curves


def test_study_groups_only_where_their_tables_exist(tmp_path):
    results = _study_results(tmp_path)
    frame = load_results(str(results / "**" / "result.parquet"))
    write_table(compile_table(load_specs()["quickstart-methods"], frame), tmp_path / "tables")
    report = gather(results, tmp_path / "tables")
    groups = _section_groups(report)
    assert not {"Convergence", "Task-level transferability", "Memory"} & set(groups)
    assert "Synthetic MPC study" in groups  # its plot is a result file, not a table
    assert not report.provenance.problems


def test_decomposition_figures_draw_all_avg_against_rank_with_sem_bars(tmp_path):
    """Figures 4-5 come from Tables II-IV: All Avg. per method against r, the SEM over seeds as bars."""
    from deltaspace.report import plots

    spec = load_specs()["decomposition-table2"]
    results = tmp_path / "results"
    for task in (c.key for c in spec.columns):
        for method, rank, base in (("lora", 2, 80.0), ("lora", 4, 82.0), ("dora", 2, 81.0), ("finetune", None, 85.0)):
            for seed in (1, 2, 3):
                _job(results / task / method / f"r{rank}" / str(seed),
                     [_row("decomposition", "stage0", task, method, 80.0, base + seed, seed=seed,
                           backbone="roberta-base", **({"rank": rank} if rank else {}))])
    write_table(compile_table(spec, load_results(str(results / "**" / "result.parquet"))), tmp_path / "tables")
    report = gather(results, tmp_path / "tables")
    group = _section_groups(report, "decomposition")["Average score vs rank, with error bars"]
    assert [f.title for f in group.figures] == [spec.title] and not group.notes
    assert "standard error over seeds (SEM)" in group.figures[0].caption
    # 8 tasks, each seeds 81, 82, 83 for LoRA r = 2: mean 82, SEM 1/sqrt(3) per task, 1/sqrt(3)/sqrt(8) in All Avg.
    table = _table_block(render(report), "decomposition-table2")
    assert '<td class="o">82.00 ± 0.58</td>' in table
    assert '<td class="o">82.00 ± 0.20</td>' in table
    empty = pd.DataFrame({"series": ["LoRA"], "x": ["r = 2"], "value": [np.nan], "spread": [np.nan],
                          "paper": [80.0]})
    assert plots.group_lines(empty, [("p", ["LoRA"])], "t", "rank", "avg") is None
