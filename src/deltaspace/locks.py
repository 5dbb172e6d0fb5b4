"""Stale-lock recovery for Snakemake: a run killed hard (SIGKILL, a lost login shell, OOM) leaves
``.snakemake/locks/*.lock`` behind, and the next run stops with "Directory cannot be locked".

Snakemake's lock files list the locked paths but not who holds them. So the Snakefile calls
:func:`recover` at parse time in the main Snakemake process (never inside a job: Slurm jobs and
``--mode subprocess`` jobs parse the Snakefile too), which

1. looks at the lock files already there. If there are some, it reads the owner records beside
   them (``owner.<host>.<pid>.json``: host, boot id, PID and process start time of the
   Snakemake that wrote them). When every recorded owner is a process of this host that no longer
   runs (a PID that is gone, or reused by a process that started later) and no other Snakemake
   runs in this directory, the locks are stale: it removes them and says so in one line. A live
   owner is left alone and named with its PID (Snakemake then refuses to start, as it should).
   Locks without any owner record, or held from another host, are left alone with a hint.
2. writes its own owner record. Snakemake removes the whole lock folder, records included, when
   it ends normally.

A dry run (``-n``) takes no lock and is left out.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_GLOB = "*.*.lock"  # Snakemake's N.input.lock / N.output.lock
OWNER_GLOB = "owner.*.json"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_record(pid: int | None = None) -> dict:
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "host": socket.gethostname(), "boot_id": _boot_id(), "start_ticks": _start_ticks(pid),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "time": time.time(), "argv": sys.argv}


def owner_state(record: dict) -> str:
    """'alive', 'dead', or 'unknown' (another host: its processes cannot be seen from here)."""
    if record.get("host") != socket.gethostname():
        return "unknown"
    boot = _boot_id()
    if boot is not None and record.get("boot_id") not in (None, boot):
        return "dead"  # the machine rebooted since
    pid = int(record["pid"])
    if not _pid_exists(pid):
        return "dead"
    ticks = _start_ticks(pid)
    if ticks is not None and record.get("start_ticks") is not None and ticks != record["start_ticks"]:
        return "dead"  # the PID was reused by a later process
    return "alive"


def _other_snakemakes(workdir: Path) -> list[int]:
    """PIDs of other main Snakemake processes of this host whose working directory is ``workdir``."""
    me, found = os.getpid(), []
    ancestors = {me, os.getppid()}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) in ancestors:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in cmdline if w]
        if not any(Path(w).name == "snakemake" or w.endswith("snakemake/__main__.py") for w in words[:3]):
            continue
        if any(w in ("--mode", "--mode=subprocess", "--mode=remote") for w in words):
            continue  # a job of some Snakemake, not a main process
        if cwd.resolve() == workdir.resolve():
            found.append(int(entry))
    return sorted(found)


CLOCK_SLACK_S = 5.0  # file times on a shared file system may come from another host's clock


def _oldest(paths: list[Path]) -> float:
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    return min(times, default=time.time())


def recover(lockdir: str | Path = ".snakemake/locks", *, log=None, record: bool = True) -> str:
    """Remove stale locks in ``lockdir`` and record this process as their next owner.

    Returns what was found: 'none' (no locks), 'removed', 'held' (a live owner) or 'unknown'.
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    lockdir = Path(lockdir)
    locks = sorted(lockdir.glob(LOCK_GLOB)) if lockdir.is_dir() else []
    owners = []
    for path in sorted(lockdir.glob(OWNER_GLOB)) if lockdir.is_dir() else []:
        try:
            owners.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            owners.append((path, {"pid": -1, "host": socket.gethostname()}))  # unreadable: treat as dead
    states = [(path, rec, owner_state(rec) if rec.get("pid", -1) > 0 else "dead") for path, rec in owners]
    outcome = "none"
    if locks:
        alive = [rec for _, rec, state in states if state == "alive"]
        elsewhere = [rec for _, rec, state in states if state == "unknown"]
        others = _other_snakemakes(lockdir.parent.parent if lockdir.parent.name == ".snakemake" else Path.cwd())
        if alive:
            outcome = "held"
            rec = alive[0]
            log(f"deltaspace: {lockdir} is held by a running Snakemake, PID {rec['pid']} on {rec['host']} "
                f"(started {rec.get('started', '?')}); left alone. Wait for it or stop it (kill {rec['pid']}).")
        elif elsewhere:
            outcome = "unknown"
            rec = elsewhere[0]
            log(f"deltaspace: {lockdir} is held by Snakemake PID {rec['pid']} on host {rec['host']}, which "
                f"cannot be checked from {socket.gethostname()}; left alone. If it no longer runs: "
                f"snakemake --unlock (with the same options), or `make unlock`.")
        elif others:
            outcome = "held"
            log(f"deltaspace: {lockdir} may be held by another Snakemake running here, PID "
                f"{', '.join(map(str, others))}; left alone.")
        elif not any(rec.get("time", 0) <= _oldest(locks) + CLOCK_SLACK_S for _, rec, _ in states):
            # Only processes that started after the locks were written are on record (say, runs that
            # failed at parse time): the locks' owner is unknown.
            outcome = "unknown"
            log(f"deltaspace: {lockdir} holds locks with no owner record and no Snakemake runs here; left "
                f"alone. If no Snakemake uses this folder: snakemake --unlock (with the same options), "
                f"or `make unlock`.")
        else:
            outcome = "removed"
            dead = ", ".join(f"PID {rec['pid']} (started {rec.get('started', '?')})" for _, rec, _ in states)
            for path in locks:
                path.unlink(missing_ok=True)
            log(f"deltaspace: removed a stale Snakemake lock ({len(locks)} file(s) in {lockdir}) left by "
                f"{dead}, which no longer runs")
    if outcome in ("none", "removed"):
        for path, _, state in states:
            if state == "dead":
                path.unlink(missing_ok=True)
    if record:
        lockdir.mkdir(parents=True, exist_ok=True)
        rec = owner_record()
        path = lockdir / f"owner.{rec['host']}.{rec['pid']}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(rec) + "\n")  # tiny, and only this process writes this name
        os.replace(tmp, path)
    return outcome


def _dry_run(argv: list[str]) -> bool:
    """Whether a Snakemake command line asks for a dry run (-n, -np, --dry-run, --dryrun)."""
    for word in argv:
        if word == "--":
            break
        if word in ("--dry-run", "--dryrun", "--just-print") or (
                word.startswith("-") and not word.startswith("--") and "n" in word[1:] and word[1:].isalpha()):
            return True
    return False


def recover_for(workflow) -> str | None:
    """The Snakefile's hook: only the main process of a run that will lock touches the locks."""
    if not workflow.is_main_process or _dry_run(sys.argv[1:]):
        return None
    if not getattr(getattr(workflow, "execution_settings", None), "lock", True):
        return None  # --nolock
    return recover(Path(".snakemake") / "locks")
