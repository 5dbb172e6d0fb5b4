"""Provenance columns every result row carries: what ran, on which code, with which packages."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .precision import precision as forward_precision

_PACKAGES = ("deltaspace", "torch", "transformers", "peft", "datasets", "pandas", "pyarrow")


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of a job's configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@lru_cache(maxsize=1)
def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def package_versions() -> str:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return json.dumps(versions, sort_keys=True)


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def provenance(config: dict[str, Any], wall_seconds: float, precision: str | None = None) -> dict[str, Any]:
    """The provenance columns of a result row.

    ``created_at`` and ``wall_seconds`` differ between runs by nature; every other column is a
    function of the configuration and the installed code, so reruns compare equal on them.
    ``precision``: what the job's forwards computed in, where that is not the process's
    (:func:`deltaspace.precision.precision`): ``"fp32"`` for the jobs that never autocast.
    """
    return {"config_hash": config_hash(config), "config": json.dumps(config, sort_keys=True, default=str),
            "git_commit": git_commit(), "versions": package_versions(), "device": device_name(),
            "precision": precision or forward_precision(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_seconds": wall_seconds}
