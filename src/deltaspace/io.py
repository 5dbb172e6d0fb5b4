"""Atomic writes: a killed job never leaves a half-written file under its final name.

Every file a job writes under its output folder goes through :func:`atomic_write` (tests/
test_faults.py greps the package for writers that do not): the content goes to a temporary file
in the same folder, is flushed to disk, and is renamed over the final name in one step. A kill at
any moment leaves the old file or the new one. A full disk (ENOSPC, or a quota: EDQUOT) fails with
one line naming the file, and leaves the old file, if any, in place.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the CLI imports this module at start-up: pandas only when a frame is written
    import pandas as pd

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(OSError):
    """No space left (or over quota) while writing ``path``; nothing was left under its name."""


def _shared_mode() -> int:
    """0666 less the umask: results are shared on a cluster, unlike mkstemp's private 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _disk_full(exc, path) from None
    os.close(fd)
    try:
        write(Path(tmp))
        _fsync(tmp)  # the data reaches the disk before the rename: a node crash leaves no empty file
        os.chmod(tmp, _shared_mode())
        os.replace(tmp, path)
    except OSError as exc:
        raise _disk_full(exc, path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _disk_full(exc: OSError, path: Path) -> OSError:
    if exc.errno not in DISK_FULL:
        return exc
    kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
    return DiskFull(exc.errno, f"cannot write {path}: {os.strerror(exc.errno)} on the file system of "
                               f"{path.parent}; {kept}. Free some space and rerun the same command")


def write_parquet(df: "pd.DataFrame", path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_lines(path: str | Path, lines) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in lines)))


def write_json(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"))
