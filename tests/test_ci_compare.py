"""CI's table comparison (.ci/compare_tables.py): deterministic tables must agree to 1e-6, tables
of measured peak memory (spec `measured: true`) only to 5%."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "compare_tables.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(root: Path, name: str, value: float) -> Path:
    tables = root / "results" / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    (tables / name).write_text(f"Method,0\nlora,{value}\n")
    return root


def test_measured_tables_are_the_memory_specs(compare):
    measured = compare.measured_table_ids()
    assert {"quickstart-efficiency", "quickstart-efficiency-ratio", "survey-efficiency"} <= measured
    assert "quickstart-methods" not in measured


@pytest.mark.parametrize("name, other, agree", [
    ("quickstart-efficiency.csv", 561.109375, True),          # 0.006% apart: allocator noise
    ("quickstart-efficiency.vs_paper.csv", 561.109375, True),
    ("quickstart-efficiency.csv", 620.0, False),              # 10% apart: a real change
    ("quickstart-methods.csv", 561.109375, False),            # a score: must be reproducible
])
def test_tolerance_follows_the_spec(compare, tmp_path, name, other, agree):
    a = write_run(tmp_path / "a", name, 561.14453125)
    b = write_run(tmp_path / "b", name, other)
    assert (compare.main([str(a), str(b)]) == 0) is agree


def test_atol_accepts_runs_apart_by_noise_and_reports_how_far(compare, tmp_path, capsys):
    """A fused config against its unfused twin differs by dropout noise: --atol X accepts numbers X
    apart, rejects more, and each table that is not identical says how far apart its numbers are."""
    a = write_run(tmp_path / "a", "quickstart-methods.csv", 87.5)
    b = write_run(tmp_path / "b", "quickstart-methods.csv", 86.0)
    assert compare.main([str(a), str(b)]) == 1
    assert compare.main(["--atol", "2", str(a), str(b)]) == 0
    assert "1 of 1 numeric cells differ, mean |diff| 1.5, max 1.5" in capsys.readouterr().out
    assert compare.main(["--atol", "1", str(a), str(b)]) == 1
