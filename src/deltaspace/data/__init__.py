"""Tasks, data and metrics: the registry, loaders, few-shot sampling, preparation and scoring.

The stages downstream use four entry points:

* :func:`get_task` / :func:`load_registry`: what a task is (kind, metric, verbalizers, source)
  and which papers and splits it belongs to;
* :func:`prepare_task`: write a task's sampled, tokenized splits as Parquet plus a manifest;
* :func:`load_prepared`: read such a folder back for training and evaluation;
* :func:`compute`: score predictions against references with a task's metric.
"""

from deltaspace.data.loaders import DataError, Record, read_records
from deltaspace.data.metrics import compute
from deltaspace.data.prepare import (Example, PreparedTask, PrepareError, PrepareOptions, load_prepared,
                                     prepare_task)
from deltaspace.data.registry import Registry, RegistryError, TaskSpec, UnknownTaskError, get_task, load_registry

__all__ = [
    "DataError", "Example", "PrepareError", "PrepareOptions", "PreparedTask", "Record", "Registry",
    "RegistryError", "TaskSpec", "UnknownTaskError", "compute", "get_task", "load_prepared", "load_registry",
    "prepare_task", "read_records",
]
