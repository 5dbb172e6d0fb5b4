"""The coverage page: every numbered table and figure of the four papers, the config that produces
it (derived from the configs' plans) and its status; docs/tables.md holds the generated section."""

from __future__ import annotations

from pathlib import Path

import pytest

from deltaspace.plan import Plan
from deltaspace.tables import load_specs
from deltaspace.tables import coverage as cov

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def items():
    return cov.load_items()


@pytest.fixture(scope="module")
def specs():
    return load_specs()


@pytest.fixture(scope="module")
def configs():
    return cov.load_configs(REPO)


@pytest.fixture(scope="module")
def entries(items, configs, specs):
    return cov.coverage(REPO, items, configs, specs)


def test_docs_section_is_current(entries, items):
    doc = (REPO / cov.DOC).read_text(encoding="utf-8")
    assert cov.render(entries, items) in doc, (
        "docs/tables.md's coverage section is stale: run `deltaspace tables coverage --write`")


def test_every_printed_result_is_produced_or_a_listed_gap(entries):
    todo = [f"{cov.gap_key(e.paper, e.id, e.part)}: {e.status}" for e in entries if e.needs_work and not e.gap]
    assert not todo, "printed results that no config produces (give them runs and a spec, or list them "\
                     "in paper_items.yaml's gaps with the reason):\n" + "\n".join(todo)


def test_gap_list_is_not_stale(entries, items):
    keys = {cov.gap_key(e.paper, e.id, e.part): e for e in entries}
    unknown = sorted(set(items.get("gaps") or {}) - set(keys))
    assert not unknown, f"gaps name entries that do not exist: {unknown}"
    fixed = sorted(k for k in items.get("gaps") or {} if not keys[k].needs_work)
    assert not fixed, f"gaps lists entries that are covered now; remove them: {fixed}"


def test_items_name_existing_specs_and_every_paper_spec_has_an_item(items, specs):
    named = [s for block in items["papers"].values() for item in block["items"] for s in item.get("specs") or ()]
    assert sorted(set(named) - set(specs)) == []
    assert cov.unreferenced_specs(items, specs) == []
    assert set(items.get("extra_specs") or {}) <= set(specs)


def test_items_are_unique_and_enumerate_each_paper(items):
    for paper, block in items["papers"].items():
        keys = [(str(i["id"]), i.get("part")) for i in block["items"]]
        assert len(keys) == len(set(keys)), paper
        assert (REPO.parent / "shared" / "papers" / "seeds" / block["seed"]).name == block["seed"]
    tables = {p: {str(i["id"]) for i in b["items"] if str(i["id"]).startswith(("Table", "TABLE"))}
              for p, b in items["papers"].items()}
    assert tables["udt"] == {f"Table {n}" for n in range(1, 14)}
    assert tables["ipt"] == {f"Table {n}" for n in range(1, 9)}
    assert tables["survey"] == {f"Table {n}" for n in range(1, 11)}
    assert tables["decomposition"] == {f"Table {n}" for n in ("I", "II", "III", "IV", "V", "VI")}


def test_planned_rows_mirror_the_jobs():
    import yaml

    plan = Plan(yaml.safe_load((REPO / "config/paper/udt-single.yaml").read_text()), REPO)
    rows = cov.planned_rows(plan)
    stage0 = rows[rows.stage == "stage0"]
    assert len(stage0) == len(plan.stage0_wildcards())  # one lr per grid: no duplicates to drop
    optimize = rows[rows.stage.isin(["optimize", "transfer"])]
    # each optimize job writes its method's row and one transfer row per other decoder (lrs collapsed)
    assert len(optimize) == len(plan.optimize_wildcards()) // 2 * 3
    assert set(rows[rows.stage == "transfer"].target_method) == {"adapter", "lora", "prefix"}


def test_a_column_no_config_trains_is_reported_partial(specs):
    import pandas as pd

    spec = specs["udt-table10"]
    rows = pd.DataFrame([{"experiment": "udt", "stage": "stage0", "task": t, "method": m, "dev_metric": 1.0,
                          "test_metric": 1.0} for t in ("rotten_tomatoes", "scitail") for m in ("adapter", "lora")])
    filled = cov.filled_cells(spec, rows)
    assert filled == {(t, m) for t in ("rotten_tomatoes", "scitail") for m in ("adapter", "lora")}
    planned = [cov.Planned("config/paper/x.yaml", ["udt-table10"], rows)]
    items = {"papers": {"udt": {"title": "t", "seed": "s", "items": [
        {"id": "Table 10", "numbers": "results", "specs": ["udt-table10"], "caption": "c"}]}}}
    entry, = cov.coverage(REPO, items, planned, specs)
    assert entry.status == "partial" and entry.needs_work
    assert entry.configs == ["config/paper/x.yaml"]
    none = cov.coverage(REPO, items, [cov.Planned("config/paper/x.yaml", [], rows)], specs)[0]
    assert none.status == "no config"


def test_replace_section_keeps_the_rest():
    text = f"head\n{cov.BEGIN}\nold\n{cov.END}\ntail\n"
    assert cov.replace_section(text, f"{cov.BEGIN}\nnew\n{cov.END}") == f"head\n{cov.BEGIN}\nnew\n{cov.END}\ntail\n"
    assert cov.replace_section("head\n", "S").endswith("head\n\nS\n")
