"""Memory efficiency (survey Figure 9): peak memory of one training step, one child per batch size.

Each measurement starts a fresh Python process (a few seconds each), so these tests keep to a
handful of measurements and force the CPU measure (cpu_peak_rss) for predictable column values.
"""

import pandas as pd
import pytest

from deltaspace.cli import main
from deltaspace.deltas import delta_size
from deltaspace.efficiency import parse_batch_sizes


def run(tmp_path, name, *args):
    out = tmp_path / name
    assert main(["efficiency", "--device", "cpu", "--out", str(out), "--no-progress", *args]) == 0
    return pd.read_parquet(out / "result.parquet")


@pytest.mark.slow  # two measuring child processes
def test_peak_memory_grows_with_batch_size(tmp_path):
    rows = run(tmp_path, "lora", "--backbone", "tiny-t5", "--method", "lora", "--set", "r=4", "--batch-sizes",
               "4,32", "--input-length", "128", "--target-length", "16", "--record", "method=lora-r4",
               "--experiment", "fig9")
    assert list(rows.batch_size) == [4, 32]
    assert set(rows.status) == {"ok"} and set(rows.measure) == {"cpu_peak_rss"} and set(rows.stage) == {"efficiency"}
    assert set(rows.method) == {"lora-r4"}, "--record overrides a column"
    assert (rows.trainable == delta_size("lora", "tiny-t5", r=4)).all()
    assert (rows.input_length == 128).all() and (rows.target_length == 16).all() and (rows.experiment == "fig9").all()
    peaks = list(rows.peak_bytes)
    # Batch 32 of 128 tokens holds tens of MiB of activations; 4 holds an eighth of that.
    assert peaks[1] - peaks[0] > 8 * 2**20, peaks
    assert (rows.baseline_bytes < rows.peak_bytes).all()
    assert rows.config_hash.nunique() == 1 and rows.git_commit.iloc[0]


@pytest.mark.slow  # two measuring child processes
def test_finetune_static_memory_exceeds_lora_by_its_training_state(tmp_path):
    # minilm: 22.7M weights (91 MB), enough to stand well clear of the process's own footprint.
    ft = run(tmp_path, "ft", "--backbone", "minilm", "--method", "finetune", "--batch-sizes", "0")
    lora = run(tmp_path, "lora", "--backbone", "minilm", "--method", "lora", "--batch-sizes", "0")
    weights = 4 * int(ft.trainable.iloc[0])
    gap = int(ft.peak_bytes.iloc[0]) - int(lora.peak_bytes.iloc[0])
    # Fine-tuning's static state is 4 copies of the weights (θ, gradient, two AdamW moments); LoRA's
    # is one frozen copy plus a small θ. Were the replaced backbone tensors kept, the gap would be 5x.
    assert 2.4 * weights < gap < 3.6 * weights, (gap / weights, ft.peak_bytes.iloc[0], lora.peak_bytes.iloc[0])


def test_out_of_memory_is_a_result(tmp_path):
    # T5's relative position bias alone is an L x L int64 table: 128 GiB at L = 2^17, refused at once.
    rows = run(tmp_path, "oom", "--backbone", "tiny-t5", "--method", "bitfit", "--batch-sizes", "1",
               "--input-length", str(2**17), "--target-length", "1")
    row = rows.iloc[0]
    assert row.status == "oom" and pd.isna(row.peak_bytes) and row.trainable == delta_size("bitfit", "tiny-t5")


def test_bad_arguments_fail_before_measuring(tmp_path, capsys):
    assert parse_batch_sizes("0, 1,8") == [0, 1, 8]
    for bad in ("", "1,x", "-1"):
        with pytest.raises(ValueError, match="--batch-sizes expects"):
            parse_batch_sizes(bad)
    assert main(["efficiency", "--backbone", "tiny-t5", "--method", "finetune", "--set", "r=4",
                 "--out", str(tmp_path / "o")]) == 2
    assert "takes no option 'r'" in capsys.readouterr().err
    assert main(["efficiency", "--backbone", "tiny-t5", "--method", "lorra", "--out", str(tmp_path / "o")]) == 2
    assert "Valid methods" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # two measuring child processes
def test_step_time_per_input_length(tmp_path):
    """Survey Figure 13 (A28): the median time of a training step, measured at each input length."""
    rows = run(tmp_path, "time", "--backbone", "tiny-t5", "--method", "bitfit", "--batch-sizes", "2",
               "--input-lengths", "8,64", "--target-length", "4", "--time-steps", "3")
    assert list(rows.input_length) == [8, 64] and list(rows.batch_size) == [2, 2]
    assert (rows.step_seconds > 0).all() and set(rows.status) == {"ok"}
    plain = run(tmp_path, "plain", "--backbone", "tiny-t5", "--method", "bitfit", "--batch-sizes", "0")
    assert plain.step_seconds.isna().all()  # not asked to time (and batch 0 has no step to time)
    assert plain.config_hash.iloc[0] != rows.config_hash.iloc[0]


def test_input_lengths_must_be_positive(tmp_path, capsys):
    assert main(["efficiency", "--backbone", "tiny-t5", "--method", "bitfit", "--input-lengths", "8,0",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--input-lengths expects" in capsys.readouterr().err
