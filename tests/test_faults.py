"""Fault injection: kills, a full disk, a NaN loss, stale Snakemake locks, and bad input.

Every probe is listed in PROBES (id, what is done, what must happen) and has a test of its own
that carries the id in its name or parameters; docs/reliability.md shows the same list, with the
counts, and `test_docs_table_lists_exactly_these_probes` keeps the two in step
(`python tests/test_faults.py` prints the table to paste).

Kills happen at a random step (the seed is in every failure message; FAULT_SEED=N repeats one):
a wrapper around the CLI prints a line per optimizer step and pauses at the chosen one, and the
test signals the subprocess when it sees that step's line. The rerun happens in this process, so
the subprocess gets this process's thread count (OMP_NUM_THREADS): θ and the result rows must
equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import write_prepared
from deltaspace.cli import main

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("FAULT_SEED", time.time_ns() % 100_000))
STEPS = 24  # every killed run: 24 steps, a checkpoint every 3, dev every 6

KILLS = [
    ("train-sigterm", "SIGTERM to `deltaspace train` at a random step, rerun", "exit 143 with a checkpoint; rerun equals an uninterrupted run (θ, result and curve rows)"),
    ("train-sigkill", "SIGKILL to `deltaspace train` at a random step, rerun", "rerun resumes from the last checkpoint and equals an uninterrupted run"),
    ("fit-sigterm", "SIGTERM to `deltaspace fit-subspace` (joint) at a random step, rerun", "exit 143; rerun equals an uninterrupted run (decoders, rows)"),
    ("fit-sigkill", "SIGKILL to `deltaspace fit-subspace` at a random step, rerun", "rerun equals an uninterrupted run"),
    ("optimize-sigterm", "SIGTERM to `deltaspace optimize-subspace` at a random step, rerun", "exit 143; rerun equals an uninterrupted run (intrinsic vector, rows)"),
    ("optimize-sigkill", "SIGKILL to `deltaspace optimize-subspace` at a random step, rerun", "rerun equals an uninterrupted run"),
    ("write-sigkill", "SIGKILL (3 times) while a process rewrites a 300k-row Parquet file in a loop", "the file is always one whole version, never truncated"),
    ("writers-atomic", "grep the package for file writers that bypass deltaspace.io.atomic_write", "none (each exception is listed with its reason)"),
    ("nan-loss", "parameters turn NaN after step 5 of `deltaspace train`", "one line: the step, the lr, the checkpoint kept (step 4); no result file"),
    ("disk-full-train", "every Parquet write of `deltaspace train` fails with ENOSPC after writing some bytes", "one line naming the file; no partial or temporary file; a rerun succeeds"),
    ("disk-full-keeps-old", "a rewrite of an existing file fails with ENOSPC", "DiskFull naming the file; the old content is intact"),
    ("stale-lock", "Snakemake locks whose recorded owner (same host) is dead", "removed, with one line naming the dead PID"),
    ("live-lock", "Snakemake locks whose recorded owner still runs", "left alone, reported with the owner's PID"),
    ("workflow-sigkill", "SIGKILL to a whole Snakemake run (process group) of a tiny config at a random moment, rerun with the same command", "the rerun removes the stale lock, redoes no finished job, and writes the tables an uninterrupted run writes"),
]

BAD_INPUTS = [
    ("tsv-encoding", "a local TSV file with a Latin-1 byte, no `encoding:`", "FILE:LINE, the byte, expected utf-8, the `encoding:` hint"),
    ("tsv-encoding-option", "the same file with `encoding: latin-1` on the tsv source", "prepared, text decoded (was: TypeError)"),
    ("jsonl-encoding", "a JSONL file with a Latin-1 byte", "FILE:LINE and the byte"),
    ("csv-encoding", "a CSV file with a Latin-1 byte", "FILE:LINE and the byte"),
    ("crossfit-encoding", "a CrossFit TSV with a Latin-1 byte; then `encoding: latin-1` on the crossfit_tsv source", "FILE:LINE; then prepared"),
    ("tsv-columns", "a TSV line with one field", "FILE:LINE, expected input<TAB>output, got 1 field"),
    ("csv-columns", "a CSV row with 3 fields under a 2-field header", "FILE:LINE, expected 2 fields, got 3"),
    ("jsonl-invalid", "a JSONL line that is not JSON", "FILE:LINE: invalid JSON"),
    ("missing-column", "a CSV without the column the template reads", "FILE:LINE, the task and the missing field"),
    ("parquet-source-truncated", "a truncated Parquet data file", "FILE: cannot read Parquet"),
    ("test-overlap", "a test row equal (input and target) to a train row", "the task, the test row and the train row it repeats"),
    ("cli-lr", "deltaspace train --lr -1", "argument --lr: must be >= 0"),
    ("cli-steps", "deltaspace train --steps -5", "argument --steps: must be >= 0"),
    ("cli-batch-size", "deltaspace train --batch-size 0", "argument --batch-size: must be > 0"),
    ("cli-y", "deltaspace fit-subspace --y 0", "argument --y: must be > 0"),
    ("cli-step", "deltaspace landscape --step 0", "argument --step: must be > 0"),
    ("cli-k", "deltaspace prepare --k 0", "argument --k: must be > 0"),
    ("prepared-missing", "deltaspace train --data on a folder that does not exist", "the folder, run `deltaspace prepare`"),
    ("prepared-truncated", "a prepared folder with a truncated train.parquet", "the file, cannot read Parquet"),
    ("results-missing", "deltaspace tables / report on a results folder that does not exist", "the pattern / the folder"),
    ("results-truncated", "deltaspace tables / report on a truncated result.parquet", "tables: the file, cannot read; report: a warning naming the file it skipped"),
    ("checkpoint-truncated", "a truncated checkpoint.pt in a run folder", "the file, cannot read the checkpoint"),
    ("config-lr", "a negative learning rate in a stage0 grid (number and string forms)", "the key path stage0.grid.lr[i], found vs minimum"),
    ("config-landscape-step", "landscape step 0", "the key path landscape[0].step"),
    ("config-positive", "epochs 0, lr_vector 0, weight_decay -1, y 0, batch_size 0", "each key path"),
]

PROBES = [("fault", *p) for p in KILLS] + [("bad input", *p) for p in BAD_INPUTS]


def probe_table() -> str:
    lines = ["| kind | probe | what is done | what must happen |", "|---|---|---|---|"]
    lines += [f"| {kind} | `{pid}` | {what} | {outcome} |" for kind, pid, what, outcome in PROBES]
    counts = (f"Faults tried: {len(KILLS)}, survived: {len(KILLS)}. "
              f"Bad inputs tried: {len(BAD_INPUTS)}, clear one-line errors: {len(BAD_INPUTS)}.")
    return "\n".join([counts, "", *lines])


def test_docs_table_lists_exactly_these_probes():
    text = (REPO / "docs/reliability.md").read_text(encoding="utf-8")
    start, end = "<!-- probes: generated by tests/test_faults.py -->", "<!-- end probes -->"
    assert start in text and end in text
    body = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert body == probe_table(), "docs/reliability.md is out of date: paste `python tests/test_faults.py`"
    ids = [pid for _, pid, _, _ in PROBES]
    assert len(ids) == len(set(ids))
    names = " ".join(name for name in globals() if name.startswith("test_"))
    params = (REPO / "tests/test_faults.py").read_text(encoding="utf-8")
    for pid in ids:  # every probe has its test: its id (dashes as underscores) in a test name or parameter
        assert pid.replace("-", "_") in names or f'"{pid}"' in params.split("PROBES = ", 1)[1], pid


# ================================================================ kills of the training commands

# Prints a line per optimizer step, and pauses at step FAULT_PAUSE_AT (the signal's step) long
# enough for the signal to land there even on a loaded machine.
WRAPPER = textwrap.dedent("""\
    import os, sys, time
    import deltaspace.train.loop as loop

    PAUSE_AT, seen = int(os.environ["FAULT_PAUSE_AT"]), [0]

    class Bar(loop.tqdm):
        def update(self, n=1):
            out = super().update(n)
            seen[0] += 1
            print("STEP", flush=True)
            time.sleep(1.0 if seen[0] == PAUSE_AT else 0.01)
            return out

    loop.tqdm = Bar
    from deltaspace.cli import main
    sys.exit(main(sys.argv[1:]))
""")
LOOP = ["--steps", str(STEPS), "--eval-every", "6", "--checkpoint-every", "3", "--batch-size", "4",
        "--no-progress"]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    train = [write_prepared(root / f"data/t{i}", "tiny-bert", task=f"toy-{i}", shift=i) for i in range(2)]
    unseen = write_prepared(root / "data/unseen", "tiny-bert", task="toy-unseen", shift=3)
    stage0 = []
    for data in train:
        out = root / "stage0" / data.name
        assert main(["train", "--data", str(data), "--method", "lora", "--set", "r=4", "--backbone", "tiny-bert",
                     "--lr", "0.05", "--steps", "6", "--eval-every", "3", "--out", str(out), "--no-progress"]) == 0
        stage0.append(out)
    sub = root / "subspace"
    assert main(["fit-subspace", "--mode", "joint", "--backbone", "tiny-bert", "--methods", "lora", "--y", "4",
                 "--train-data", *map(str, train), "--stage0", *map(str, stage0), "--recon-weight", "0.01",
                 "--lr", "0.01", "--steps", "6", "--eval-every", "3", "--optimizer", "adamw", "--out", str(sub),
                 "--no-progress"]) == 0
    wrapper = root / "steps.py"
    wrapper.write_text(WRAPPER)
    return {"root": root, "train": train, "unseen": unseen, "stage0": stage0, "sub": sub, "wrapper": wrapper,
            "baselines": {}}


def command(name: str, pipe, out: Path) -> list[str]:
    if name == "train":
        return ["train", "--data", str(pipe["train"][0]), "--method", "lora", "--set", "r=4", "--backbone",
                "tiny-bert", "--lr", "0.05", "--seed", "7", *LOOP, "--out", str(out)]
    if name == "fit":
        return ["fit-subspace", "--mode", "joint", "--backbone", "tiny-bert", "--methods", "lora", "--y", "4",
                "--train-data", *map(str, pipe["train"]), "--stage0", *map(str, pipe["stage0"]),
                "--recon-weight", "0.01", "--lr", "0.01", "--optimizer", "adamw", "--seed", "3", *LOOP,
                "--out", str(out)]
    return ["optimize-subspace", "--subspace", str(pipe["sub"]), "--method", "lora", "--data", str(pipe["unseen"]),
            "--lr", "0.5", "--optimizer", "adamw", "--seed", "3", *LOOP, "--out", str(out)]


VOLATILE = re.compile(r"second|time|host|created|date|tokens_per|memory|_source|duration|started|finished")


def outputs(folder: Path) -> dict:
    """What a run leaves that must not depend on whether it was killed: tensors, rows, curves."""
    from safetensors.torch import load_file

    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".safetensors":
            found[path.name] = load_file(str(path))
        elif path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            found[path.name] = frame[[c for c in frame.columns if not VOLATILE.search(c)]]
    return found


def assert_same_outputs(a: dict, b: dict, context: str) -> None:
    assert sorted(a) == sorted(b), context
    for name in a:
        if isinstance(a[name], dict):
            assert sorted(a[name]) == sorted(b[name]), (name, context)
            for key in a[name]:
                assert torch.equal(a[name][key], b[name][key]), f"{name}[{key}] differs ({context})"
        else:
            pd.testing.assert_frame_equal(a[name], b[name], obj=f"{name} ({context})")


def baseline(name: str, pipe) -> dict:
    if name not in pipe["baselines"]:
        out = pipe["root"] / f"whole-{name}"
        assert main(command(name, pipe, out)) == 0
        pipe["baselines"][name] = outputs(out)
    return pipe["baselines"][name]


def kill_at_random_step(argv: list[str], sig: int, wrapper: Path, rng: random.Random) -> tuple[int, int, str]:
    """Run the CLI in a subprocess and send ``sig`` after a random number of optimizer steps."""
    target = rng.randint(1, STEPS - 4)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "FAULT_PAUSE_AT": str(target)}
    proc = subprocess.Popen([sys.executable, str(wrapper), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    seen, log = 0, []
    for line in proc.stdout:
        log.append(line.decode(errors="replace"))
        if line.startswith(b"STEP"):
            seen += 1
            if seen == target:
                proc.send_signal(sig)
                break
    rest, _ = proc.communicate(timeout=300)
    return proc.returncode, target, "".join(log) + rest.decode(errors="replace")


@pytest.mark.parametrize("probe", ["train-sigterm", "train-sigkill", "fit-sigterm", "fit-sigkill",
                                   "optimize-sigterm", "optimize-sigkill"])
def test_kill_at_a_random_step_then_rerun_equals_an_uninterrupted_run(pipe, probe):
    name, sig = probe.split("-")
    rng = random.Random(f"{SEED}-{name}-{sig}")
    out = pipe["root"] / f"killed-{name}-{sig}"
    code, step, log = kill_at_random_step(command(name, pipe, out), getattr(signal, sig.upper()), pipe["wrapper"], rng)
    context = f"{name}, {sig.upper()} after step {step}, FAULT_SEED={SEED}"
    assert not (out / "result.parquet").exists(), f"the run finished before the signal ({context})"
    if sig == "sigterm":
        assert code == 143 and (out / "checkpoint.pt").exists(), f"{context}: exit {code}\n{log[-2000:]}"
    else:
        assert code == -signal.SIGKILL, f"{context}: exit {code}\n{log[-2000:]}"
    assert not list(out.glob(".*.tmp")) or sig == "sigkill"  # SIGKILL may leave a temporary file, never a final one
    assert main(command(name, pipe, out)) == 0, context
    assert not (out / "checkpoint.pt").exists()
    assert_same_outputs(baseline(name, pipe), outputs(out), context)


# ================================================================ writes

WRITE_LOOP = textwrap.dedent("""\
    import sys
    import numpy as np, pandas as pd
    from deltaspace.io import write_parquet

    n = 300_000
    for version in range(10_000):
        write_parquet(pd.DataFrame({"version": np.full(n, version), "x": np.arange(n) * version}), sys.argv[1])
        print(version, flush=True)
""")


def test_write_sigkill_leaves_the_old_file_or_the_new_one(tmp_path):
    script, target = tmp_path / "writer.py", tmp_path / "out" / "result.parquet"
    script.write_text(WRITE_LOOP)
    rng = random.Random(SEED)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE)
        proc.stdout.readline()  # one whole version exists
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        frame = pd.read_parquet(target)  # never truncated
        version = int(frame.version.iloc[0])
        assert len(frame) == 300_000 and (frame.version == version).all(), f"attempt {attempt}, FAULT_SEED={SEED}"
        assert (frame.x == frame.index * version).all()


# Writers that may bypass atomic_write, and why. Everything else that writes a file under a result
# path must go through deltaspace.io.atomic_write (or write_parquet/write_json).
NOT_ATOMIC = {
    "efficiency.py": "the measuring child's spec and answer live in a private temporary folder",
    "locks.py": "its owner record is written to a temporary name and renamed (os.replace) itself",
    "report/plots.py": "savefig into an in-memory buffer (the figure is inlined into the page)",
    "data/hub_schemas.py": "a maintainer command rewriting the packaged schema file in the source tree, no job output",
}
WRITER = re.compile(r"\.write_text\(|\.write_bytes\(|\.to_parquet\(|\.to_csv\(|save_file\(|pq\.write_table\("
                    r"|torch\.save\(|\.savefig\(|open\([^)]*[\"'][wa]b?[\"']")


def test_writers_atomic_every_writer_goes_through_atomic_write():
    package = REPO / "src/deltaspace"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel == "io.py" or rel in NOT_ATOMIC:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            if WRITER.search(line) and not line.lstrip().startswith("#"):
                nearby = " ".join(lines[max(0, n - 3):n])
                if "lambda" not in line and "atomic_write" not in nearby:
                    offenders.append(f"src/deltaspace/{rel}:{n}: {line.strip()}")
    assert not offenders, "write through deltaspace.io.atomic_write:\n" + "\n".join(offenders)


@pytest.mark.filterwarnings(r"ignore:Seems like `optimizer.step\(\)` has been overridden:UserWarning")
def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(pipe, tmp_path, monkeypatch, capsys):
    import deltaspace.train.loop as loop

    original = loop.make_optimizer

    def poisoned(groups, cfg):
        optimizer, scheduler = original(groups, cfg)
        step, calls = optimizer.step, []

        def nan_after_five(*args, **kwargs):
            result = step(*args, **kwargs)
            calls.append(1)
            if len(calls) == 5:
                with torch.no_grad():
                    for group in optimizer.param_groups:
                        for p in group["params"]:
                            p.fill_(float("nan"))
            return result

        optimizer.step = nan_after_five
        return optimizer, scheduler

    monkeypatch.setattr(loop, "make_optimizer", poisoned)
    out = tmp_path / "run"
    argv = command("train", pipe, out)
    argv[argv.index("--checkpoint-every") + 1] = "2"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the loss is nan at step 6 (lr 0.05)" in err[0], err
    assert f"the last good checkpoint (step 4) is kept in {out / 'checkpoint.pt'}" in err[0]
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["objective"].values()
                                      if isinstance(v, torch.Tensor))
    assert not (out / "result.parquet").exists()


def _enospc_to_parquet(self, path, *args, **kwargs):
    Path(path).write_bytes(b"PAR1 half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_train_fails_with_one_line_and_leaves_no_partial_file(pipe, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(pd.DataFrame, "to_parquet", _enospc_to_parquet)
        assert main(command("train", pipe, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(out) in err[0], err
    assert re.search(r"cannot write \S+\.parquet", err[0])
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    for path in out.glob("*.parquet"):  # whatever exists is whole
        pd.read_parquet(path)
    assert not (out / "result.parquet").exists()
    assert main(command("train", pipe, out)) == 0  # space freed: the same command finishes
    assert_same_outputs(baseline("train", pipe), outputs(out), "after ENOSPC")


def test_disk_full_keeps_old_file(tmp_path):
    from deltaspace.io import DiskFull, atomic_write, write_json

    target = write_json({"version": 1}, tmp_path / "result.json")

    def full(tmp):
        tmp.write_text('{"version": ')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match=r"cannot write .*result.json: No space left on device.*previous result.json is kept"):
        atomic_write(target, full)
    assert json.loads(target.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


# ================================================================ Snakemake locks

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _lockdir(tmp_path: Path, owner_pid: int | None) -> Path:
    from deltaspace import locks

    lockdir = tmp_path / ".snakemake" / "locks"
    lockdir.mkdir(parents=True)
    (lockdir / "0.input.lock").write_text("results/a\n")
    (lockdir / "0.output.lock").write_text("results/b\n")
    if owner_pid is not None:
        record = locks.owner_record(owner_pid)
        (lockdir / f"owner.{record['host']}.{owner_pid}.json").write_text(json.dumps(record))
    return lockdir


def test_stale_lock_of_a_dead_owner_is_removed(tmp_path, monkeypatch):
    from deltaspace import locks

    monkeypatch.chdir(tmp_path)
    pid = _dead_pid()
    lockdir = _lockdir(tmp_path, pid)
    record = json.loads(next(lockdir.glob("owner.*.json")).read_text())
    record["start_ticks"] = None  # the dead process's start time cannot be read back: the PID alone decides
    next(lockdir.glob("owner.*.json")).write_text(json.dumps(record))
    said = []
    assert locks.recover(lockdir, log=said.append) == "removed"
    assert len(said) == 1 and f"left by PID {pid}" in said[0] and "no longer runs" in said[0]
    assert not list(lockdir.glob("*.lock"))
    assert [p.name for p in lockdir.glob("owner.*.json")] == [f"owner.{record['host']}.{os.getpid()}.json"]


def test_stale_lock_of_a_reused_pid_is_removed(tmp_path, monkeypatch):
    """The recorded PID runs again, but as a process that started later: the owner is dead."""
    from deltaspace import locks

    monkeypatch.chdir(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lockdir = _lockdir(tmp_path, sleeper.pid)
        path = next(lockdir.glob("owner.*.json"))
        record = json.loads(path.read_text())
        if record["start_ticks"] is None:
            pytest.skip("no /proc here: a reused PID cannot be told apart")
        record["start_ticks"] -= 1
        path.write_text(json.dumps(record))
        assert locks.recover(lockdir, log=lambda line: None, record=False) == "removed"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_live_lock_is_left_alone_and_names_its_pid(tmp_path, monkeypatch):
    from deltaspace import locks

    monkeypatch.chdir(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lockdir = _lockdir(tmp_path, sleeper.pid)
        said = []
        assert locks.recover(lockdir, log=said.append, record=False) == "held"
        assert len(said) == 1 and f"PID {sleeper.pid}" in said[0] and "left alone" in said[0]
        assert sorted(p.name for p in lockdir.glob("*.lock")) == ["0.input.lock", "0.output.lock"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_live_lock_whose_records_all_came_later_is_left_alone(tmp_path, monkeypatch):
    """A dead run that started after the locks were written (e.g. it failed at parse time) is not their owner."""
    from deltaspace import locks

    monkeypatch.chdir(tmp_path)
    lockdir = _lockdir(tmp_path, _dead_pid())
    path = next(lockdir.glob("owner.*.json"))
    record = json.loads(path.read_text())
    old = time.time() - 3600
    for lock in lockdir.glob("*.lock"):
        os.utime(lock, (old, old))
    path.write_text(json.dumps(record))
    assert locks.recover(lockdir, log=lambda line: None, record=False) == "unknown"
    assert len(list(lockdir.glob("*.lock"))) == 2


def test_live_lock_without_a_record_is_left_alone(tmp_path, monkeypatch):
    from deltaspace import locks

    monkeypatch.chdir(tmp_path)
    lockdir = _lockdir(tmp_path, None)
    said = []
    assert locks.recover(lockdir, log=said.append, record=False) == "unknown"
    assert "no owner record" in said[0] and "--unlock" in said[0]
    assert len(list(lockdir.glob("*.lock"))) == 2


def test_lock_hook_runs_only_in_the_main_process_of_a_real_run():
    from deltaspace import locks

    assert locks._dry_run(["-n", "--cores", "2"]) and locks._dry_run(["-np"]) and locks._dry_run(["--dry-run"])
    assert not locks._dry_run(["--cores", "2", "--configfile", "config/smoke.yaml"])

    class Job:
        is_main_process = False

    assert locks.recover_for(Job()) is None  # a Slurm or --mode subprocess job never touches the locks


# ================================================================ bad input: one line naming file:line

LATIN1 = "café".encode("latin-1")  # b"caf\xe9": not UTF-8


def _tsv(rows: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{i}\t{o}\n".encode() for i, o in rows)


def _prepare(tmp_path: Path, source: str, files: dict[str, bytes], capsys, task: str = "toy-file",
             template: str = "", k: int = 2) -> tuple[int, list[str], Path]:
    data, tasks, out = tmp_path / "data", tmp_path / "tasks", tmp_path / "out"
    for name, content in files.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(content)
    tasks.mkdir(exist_ok=True)
    (tasks / "toys.yaml").write_text(textwrap.dedent(f"""\
        tasks:
          {task}:
            ontology: cls/sentiment analysis
            kind: classification
            metric: accuracy
            verbalizers: [negative, positive]
            source: {source}
        """) + (f"    template: {template}\n" if template else ""), encoding="utf-8")
    capsys.readouterr()
    code = main(["prepare", "--task", task, "--seed", "1", "--backbone", "tiny-t5", "--k", str(k), "--out", str(out),
                 "--tasks-dir", str(tasks), "--data-dir", str(data)])
    return code, capsys.readouterr().err.strip().splitlines(), out


def _sentiment(n: int, word: bytes = b"text", start: int = 0) -> bytes:
    return b"".join(word + f" {i}\t{['negative', 'positive'][i % 2]}\n".encode() for i in range(start, start + n))


def test_tsv_encoding_names_file_line_byte_and_the_option(tmp_path, capsys):
    train = _sentiment(2) + LATIN1 + b" 2\tnegative\n" + _sentiment(17, start=3)
    code, err, out = _prepare(tmp_path, "{type: tsv, train: train.tsv, test: test.tsv}",
                              {"train.tsv": train, "test.tsv": _sentiment(6, b"test")}, capsys)
    assert code == 2 and len(err) == 1, err
    assert f"{tmp_path / 'data' / 'train.tsv'}:3: not valid utf-8: byte 0xe9" in err[0]
    assert "set `encoding:` on the task's source" in err[0]
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_tsv_encoding_option_is_honoured(tmp_path, capsys):
    code, err, out = _prepare(tmp_path, "{type: tsv, train: train.tsv, test: test.tsv, encoding: latin-1}",
                              {"train.tsv": _sentiment(20, LATIN1), "test.tsv": _sentiment(6, b"test")}, capsys)
    assert code == 0, err
    from deltaspace.data.prepare import load_prepared

    assert load_prepared(out).rows("train")[0]["input"].startswith("café")


@pytest.mark.parametrize("probe", ["jsonl-encoding", "csv-encoding"])
def test_encoding_of_jsonl_and_csv_names_file_and_line(tmp_path, probe):
    from deltaspace.data.loaders import DataError, read_records

    if probe == "jsonl-encoding":
        path = tmp_path / "rows.jsonl"
        path.write_bytes(b'{"text": "fine"}\n\n{"text": "' + LATIN1 + b'"}\n')
        line = 3
    else:
        path = tmp_path / "rows.csv"
        path.write_bytes(b"text,label\nfine,0\n" + LATIN1 + b",1\n")
        line = 3
    with pytest.raises(DataError) as info:
        read_records(path)
    assert f"{path}:{line}: not valid utf-8: byte 0xe9" in str(info.value)
    assert read_records(path, encoding="latin-1")[-1].data["text"] == "café"


def test_crossfit_encoding_names_the_line_then_honours_the_option(tmp_path, capsys):
    files = {f"toy-cf/toy-cf_2_1_{split}.tsv": _sentiment(4, b"x" + split.encode()) for split in ("train", "dev")}
    files["toy-cf/toy-cf_2_1_test.tsv"] = _sentiment(1, b"t") + LATIN1 + b"\tpositive\n"
    code, err, _ = _prepare(tmp_path, "{type: crossfit_tsv}", files, capsys, task="toy-cf")
    assert code == 2 and f"toy-cf_2_1_test.tsv:2: not valid utf-8: byte 0xe9" in err[0], err
    code, err, _ = _prepare(tmp_path / "again", "{type: crossfit_tsv, encoding: latin-1}", files, capsys, task="toy-cf")
    assert code == 0, err


@pytest.mark.parametrize("probe, name, content, message", [
    ("tsv-columns", "rows.tsv", b"good\tpositive\none field only\n",
     r"rows.tsv:2: expected 'input<TAB>output\[<TAB>output...\]' with a non-empty input and output, got 1 field"),
    ("csv-columns", "rows.csv", b"question,answer\nwho?,Ann\na,b,c\n", r"rows.csv:3: expected 2 fields \(question, answer\), got 3"),
    ("jsonl-invalid", "rows.jsonl", b'{"text": "a"}\n{"text": oops}\n', r"rows.jsonl:2: invalid JSON: Expecting value"),
    ("parquet-source-truncated", "rows.parquet", None, r"rows.parquet: cannot read Parquet"),
])
def test_malformed_data_file_names_file_and_line(tmp_path, probe, name, content, message):
    from deltaspace.data.loaders import DataError, read_records

    path = tmp_path / name
    if content is None:
        pd.DataFrame({"text": [f"row {i}" for i in range(1000)]}).to_parquet(path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_records(path)


def test_missing_column_names_file_line_task_and_field(tmp_path, capsys):
    rows = b"body,label\n" + b"".join(f"text {i},{i % 2}\n".encode() for i in range(20))
    code, err, _ = _prepare(tmp_path, "{type: csv, train: train.csv, holdout: 0.25}", {"train.csv": rows}, capsys,
                            task="toy-csv", template="{input: '{text}', label: label}")
    assert code == 2 and len(err) == 1, err
    assert f"train.csv:2: task 'toy-csv': template field 'text' is missing" in err[0]


def test_test_overlap_names_the_task_and_the_row(tmp_path, capsys):
    train = _sentiment(4)  # K=1 per class: every row is sampled (train 2, dev 2)
    code, err, out = _prepare(tmp_path, "{type: tsv, train: train.tsv, test: test.tsv}",
                              {"train.tsv": train, "test.tsv": _sentiment(3, b"test") + b"text 2\tnegative\n"},
                              capsys, k=1)
    assert code == 2 and len(err) == 1, err
    assert "task 'toy-file': test example 3 ('text 2' -> 'negative') is also" in err[0]
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("probe, argv, message", [
    ("cli-lr", ["train", "--lr", "-1"], "argument --lr: must be >= 0, got -1"),
    ("cli-steps", ["train", "--lr", "0.1", "--steps", "-5"], "argument --steps: must be >= 0, got -5"),
    ("cli-batch-size", ["train", "--lr", "0.1", "--batch-size", "0"], "argument --batch-size: must be > 0, got 0"),
    ("cli-y", ["fit-subspace", "--y", "0"], "argument --y: must be > 0, got 0"),
    ("cli-step", ["landscape", "--step", "0"], "argument --step: must be > 0, got 0"),
    ("cli-k", ["prepare", "--k", "0"], "argument --k: must be > 0, got 0"),
])
def test_cli_option_out_of_range_is_a_usage_error(probe, argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"deltaspace {argv[0]}: error: {message}" in err


def test_prepared_missing_and_prepared_truncated_name_the_path(tmp_path, capsys):
    missing = tmp_path / "nope"
    argv = lambda data: ["train", "--data", str(data), "--method", "lora", "--backbone", "tiny-bert", "--lr", "0.1",  # noqa: E731
                         "--steps", "2", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv(missing)) == 2
    assert str(missing) in capsys.readouterr().err
    data = write_prepared(tmp_path / "data", "tiny-bert")
    train = data / "train.parquet"
    train.write_bytes(train.read_bytes()[:200])
    assert main(argv(data)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{train}: cannot read Parquet" in err[0], err
    assert not (tmp_path / "run" / "result.parquet").exists()


def test_results_missing_and_results_truncated_name_the_path(tmp_path, capsys):
    assert main(["tables", "--results", f"{tmp_path}/nope/**/result.parquet", "--paper", "quickstart",
                 "--out", str(tmp_path / "tables")]) == 2
    assert f"no result files match {tmp_path}/nope/**/result.parquet" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path / "nope"), "--tables", str(tmp_path / "tables"),
                 "--out", str(tmp_path / "r.html")]) == 2
    assert f"{tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    result = tmp_path / "results" / "run" / "result.parquet"
    result.parent.mkdir(parents=True)
    pd.DataFrame({"task": ["t"] * 500, "dev_metric": 1.0, "test_metric": 2.0}).to_parquet(result)
    result.write_bytes(result.read_bytes()[:120])
    assert main(["tables", "--results", f"{tmp_path}/results/**/result.parquet", "--paper", "quickstart",
                 "--out", str(tmp_path / "tables")]) == 2
    err = capsys.readouterr().err
    assert f"cannot read result file {result}" in err
    assert not (tmp_path / "tables").exists() or not list((tmp_path / "tables").iterdir())
    (tmp_path / "tables").mkdir(exist_ok=True)  # the report skips a damaged result, and says which
    code = main(["report", "--results", str(tmp_path / "results"), "--tables", str(tmp_path / "tables"),
                 "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert f"deltaspace report: warning: skipped unreadable {result}" in err, (code, err)


def test_checkpoint_truncated_names_the_file(pipe, tmp_path, capsys):
    out = tmp_path / "run"
    argv = command("train", pipe, out)
    assert main([*argv, "--stop-after-step", "6"]) == 143
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{checkpoint}: cannot read the checkpoint" in err[0] and "delete it" in err[0], err


def _config_errors(config: dict) -> list[str]:
    """The Snakefile's check (workflow/rules/schema.smk): every violation, one line each, with its key path."""
    from deltaspace.plan import schema_errors

    return schema_errors(config, REPO / "workflow/schemas/config.schema.yaml")


def _smoke() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config/smoke.yaml").read_text(encoding="utf-8"))


def test_config_shipped_configs_pass_the_positive_checks():
    import yaml

    for path in [REPO / "config/config.yaml", REPO / "config/smoke.yaml", *sorted((REPO / "config/paper").glob("*.yaml"))]:
        if path.name == "all.yaml":  # names the experiment configs checked here (tests/test_plan_all.py)
            continue
        assert _config_errors(yaml.safe_load(path.read_text(encoding="utf-8"))) == [], path


def test_config_lr_negative_names_the_key_path():
    config = _smoke()
    config["stage0"]["grid"] = {"lr": [0.003, -0.1, "-1e-3"]}
    errors = _config_errors(config)
    assert any(e.strip().startswith("stage0.grid.lr[1]: -0.1 is less than the minimum of 0") for e in errors), errors
    assert any(e.strip().startswith("stage0.grid.lr[2]: '-1e-3' does not match") for e in errors), errors
    assert len(errors) == 2


def test_config_landscape_step_zero_names_the_key_path():
    config = _smoke()
    config["landscape"][0]["step"] = 0
    assert [e.strip() for e in _config_errors(config)] == ["landscape[0].step: 0 is less than or equal to the minimum of 0"]


def test_config_positive_values_name_their_key_paths():
    config = _smoke()
    setting = next(iter(config["settings"]))
    config["stage0"]["loop"] = {**config["stage0"].get("loop", {}), "epochs": 0, "weight_decay": -1, "batch_size": 0}
    config["settings"][setting]["lr_vector"] = 0
    config["settings"][setting]["y"] = 0
    paths = {e.strip().split(":")[0] for e in _config_errors(config)}
    assert {"stage0.loop.epochs", "stage0.loop.weight_decay", "stage0.loop.batch_size",
            f"settings.{setting}.lr_vector", f"settings.{setting}.y"} <= paths, paths


# ================================================================ the whole workflow, killed

WORKFLOW_CONFIG = REPO / "tests/configs/faults.yaml"


def _incomplete_outputs(work: Path) -> list[str]:
    """The output paths Snakemake marked incomplete (.snakemake/incomplete holds each one's path in
    URL-safe base64, split into file-name-sized pieces)."""
    from base64 import urlsafe_b64decode

    root = work / ".snakemake" / "incomplete"
    return [urlsafe_b64decode("".join(f.relative_to(root).parts)).decode(errors="replace")
            for f in root.rglob("*") if f.is_file() and f.name != "migration_underway"]


def _snakemake(cwd: Path, results: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", "--configfile", str(WORKFLOW_CONFIG),
            "--config", f"results={results}", f"report={results}/report.html", "--directory", str(cwd)]


def _table_files(results: Path) -> dict[str, bytes]:
    tables = results / "tables"
    return {p.name: p.read_bytes() for p in sorted(tables.glob("*.csv"))}


@pytest.mark.slow
def test_workflow_sigkill_then_rerun_redoes_no_finished_job(tmp_path):
    if not WORKFLOW_CONFIG.exists():
        pytest.skip("no tests/configs/faults.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    work = tmp_path / "work"  # its own .snakemake (locks, metadata), the repository's workflow
    work.mkdir()
    for name in ("Snakefile", "workflow", "config", "src", "profiles", "tests"):
        os.symlink(REPO / name, work / name)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run = subprocess.run(_snakemake(work, whole), cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rng = random.Random(SEED)
    delay = rng.uniform(8, 25)
    proc = subprocess.Popen(_snakemake(work, killed), cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if not list((work / ".snakemake" / "locks").glob("*.lock")):
        pytest.skip(f"the run ended before the kill at {delay:.1f} s")
    # A job is finished when its result exists and Snakemake holds no "incomplete" record for it: a kill
    # between the job's last write and Snakemake's bookkeeping rightly redoes the job.
    unsure = _incomplete_outputs(work)
    finished = {p: p.stat().st_mtime_ns for p in killed.rglob("result.parquet")
                if not any(str(p.parent) in u for u in unsure)}
    rerun = subprocess.run(_snakemake(work, killed), cwd=work, env=env, capture_output=True, text=True, timeout=900)
    context = f"killed after {delay:.1f} s (FAULT_SEED={SEED}), {len(finished)} results finished before"
    assert rerun.returncode == 0, f"{context}\n{rerun.stderr[-3000:]}"
    assert "removed a stale Snakemake lock" in rerun.stderr, context
    assert {p: p.stat().st_mtime_ns for p in finished} == finished, f"a finished job was redone ({context})"
    assert _table_files(killed) == _table_files(whole), context


if __name__ == "__main__":
    print(probe_table())
