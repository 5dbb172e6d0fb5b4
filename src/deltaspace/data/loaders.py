"""Loaders: every data source behind one interface, a list of :class:`Record` per source split.

A record is one raw row (a dict of fields) plus where it came from (``file:line`` or
``hub:id[config]/split#row``), so every later error can point at the offending row. Sources:

* ``hub``: a Hugging Face dataset through ``datasets.load_dataset`` (cached by ``datasets``);
  it also accepts ``data_files`` (e.g. ``id: json``), which is how the tests exercise it offline.
* ``crossfit_tsv``: CrossFit's pre-sampled few-shot files ``<data_dir>/<task>/<task>_<K>_<seed>_
  {train,dev,test}.tsv`` (the archive IPT and unified-dt were run on).
* ``tsv`` (``input<TAB>output[<TAB>output...]`` lines), ``jsonl``, ``csv`` and ``parquet`` files.
* ``url``: a public file (jsonl, csv, parquet) downloaded once into the data folder or the
  download cache (:func:`fetch_url`); proto_qa's train.jsonl, which CrossFit reads from GitHub.
* ``quickstart``: corpora built at run time from text shipped in PyPI wheels (see
  :mod:`deltaspace.data.quickstart`).

A source with a ``builder`` (:mod:`deltaspace.data.builders`) has its rows turned into CrossFit-style
input/output records (``{"input": ..., "outputs": [...]}``) per split, as a TSV file would give them.

Source splits are ``train`` (the pool train/dev are sampled from) and ``test``. A source without
a test split gives only ``train`` and a ``holdout`` fraction; preparation carves the test split off
after rendering, so rows a task skips never count (CrossFit's 80/20 rule, shuffled with seed 42).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltaspace.data.registry import SourceSpec, TaskSpec
from deltaspace.io import atomic_write

DOWNLOADS_ENV = "DELTASPACE_DOWNLOADS"  # where url sources are cached (default: under $HF_HOME)
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "DELTASPACE_OFFLINE")
DOWNLOAD_TIMEOUT_S = 120

class DataError(ValueError):
    """A data row or file is malformed; the message names the file (or hub split) and line."""


@dataclass(frozen=True)
class Record:
    """One raw row: ``where`` it came from, its ``idx`` in the source split, and its fields."""

    where: str
    idx: int
    data: Mapping[str, Any]


@dataclass
class LoadedSource:
    """The records of a task's source, split into ``train``/``test`` (``train`` only when a
    ``holdout`` fraction is to be carved off; CrossFit's already-sampled ``train``/``dev``/``test``
    when ``presampled``), with what a manifest should record."""

    splits: dict[str, list[Record]]
    description: dict[str, Any]
    presampled: bool = False
    holdout: float | None = None
    class_names: dict[str, list[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- file readers


def _lines(path: str | os.PathLike, encoding: str):
    """``(lineno, line)`` of a text file; a byte that is not valid ``encoding`` is a
    :class:`DataError` naming the file, line and column, and the ``encoding:`` option."""
    lineno = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DataError(_decode_message(path, lineno, raw, exc, encoding)) from None
            except LookupError:
                raise DataError(f"{path}: unknown encoding {encoding!r} (the source's `encoding:` option); "
                                f"give a Python codec name such as utf-8 or latin-1") from None


def _decode_message(path, lineno: int, raw: bytes, exc: UnicodeDecodeError, encoding: str) -> str:
    return (f"{path}:{lineno}: not valid {encoding}: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line "
            f"({exc.reason}); expected {encoding} text: convert the file, or set `encoding:` "
            f"on the task's source (e.g. encoding: latin-1)")


def read_tsv(path: str | os.PathLike, encoding: str = "utf-8") -> list[Record]:
    """CrossFit TSV: ``input<TAB>output[<TAB>output...]``, one example per line."""
    records = []
    for lineno, line in _lines(path, encoding):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not any(o.strip() for o in fields[1:]):
            raise DataError(f"{path}:{lineno}: expected 'input<TAB>output[<TAB>output...]' with a non-empty "
                            f"input and output, got {len(fields)} field(s): {line[:80]!r}")
        outputs = [o.strip() for o in fields[1:] if o.strip()]
        records.append(Record(f"{path}:{lineno}", len(records), {"input": fields[0].strip(), "outputs": outputs}))
    return records


def read_jsonl(path: str | os.PathLike, encoding: str = "utf-8") -> list[Record]:
    """One JSON object per line; blank lines are allowed."""
    records = []
    for lineno, line in _lines(path, encoding):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno}); expected one JSON "
                            f"object per line, got {line.strip()[:60]!r}") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(data).__name__}")
        records.append(Record(f"{path}:{lineno}", len(records), data))
    return records


def read_csv(path: str | os.PathLike, encoding: str = "utf-8", delimiter: str = ",") -> list[Record]:
    """A CSV file with a header row; a row with too many or too few fields is an error."""
    records = []
    try:
        with open(path, encoding=encoding, newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(f"{path}:1: empty file, expected a header row") from None
            start = reader.line_num + 1
            for row in reader:
                if not any(cell.strip() for cell in row):
                    start = reader.line_num + 1
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}:{start}: expected {len(header)} fields ({', '.join(header)}), "
                                    f"got {len(row)}")
                records.append(Record(f"{path}:{start}", len(records), dict(zip(header, row))))
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        # The csv module reads ahead, so find the offending line again from the raw bytes.
        for _ in _lines(path, encoding):
            pass
        raise DataError(f"{path}: not valid {encoding} ({exc.reason}); expected {encoding} text: convert the "
                        f"file, or set `encoding:` on the task's source (e.g. encoding: latin-1)") from None
    except LookupError:
        raise DataError(f"{path}: unknown encoding {encoding!r} (the source's `encoding:` option); "
                        f"give a Python codec name such as utf-8 or latin-1") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    return records


def read_parquet(path: str | os.PathLike, encoding: str | None = None) -> list[Record]:
    """A Parquet file; rows are addressed as ``file#row`` (``encoding`` is ignored: Parquet
    strings are UTF-8 by definition)."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read Parquet: {exc}") from None
    return [Record(f"{path}#{i}", i, row) for i, row in enumerate(rows)]


READERS = {"tsv": read_tsv, "jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}
_SUFFIXES = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def read_records(path: str | os.PathLike, fmt: str | None = None, **options: Any) -> list[Record]:
    """Read a data file with the reader for ``fmt`` (default: from the file suffix)."""
    fmt = fmt or _SUFFIXES.get(Path(path).suffix.lower())
    if fmt not in READERS:
        raise DataError(f"{path}: unknown file format; give one of {', '.join(READERS)}")
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    return READERS[fmt](path, **options)


# --------------------------------------------------------------------------- the hub


# What datasets (>= 4) says of a repository that still holds a loading script, and the branch where the
# hub keeps every public dataset's automatic Parquet conversion.
SCRIPT_REFUSED = "Dataset scripts are no longer supported"
PARQUET_REVISION = "refs/convert/parquet"


def read_hub(dataset_id: str, config: str | None, split: str, *, revision: str | None = None,
             data_files: Any = None) -> tuple[list[Record], dict[str, list[str]]]:
    """Rows of one hub split, and the class names of its ClassLabel columns.

    Runs offline when the dataset is in the ``datasets`` cache (``HF_DATASETS_OFFLINE=1``).
    """
    import datasets

    prefix = f"hub:{dataset_id}" + (f"[{config}]" if config else "") + f"/{split}"
    try:
        try:
            ds = datasets.load_dataset(dataset_id, config, split=split, revision=revision, data_files=data_files)
        except RuntimeError as exc:
            if revision is not None or data_files is not None or SCRIPT_REFUSED not in str(exc):
                raise
            # datasets >= 4 no longer runs loading scripts; the hub's Parquet conversion of the same
            # repository (one branch, configs and splits kept) holds the rows without one.
            print(f"{prefix}: the repository has a loading script, which datasets {datasets.__version__} refuses; "
                  f"reading its Parquet conversion (revision {PARQUET_REVISION})", file=sys.stderr)
            ds = datasets.load_dataset(dataset_id, config, split=split, revision=PARQUET_REVISION)
    except Exception as exc:  # datasets raises many types (network, missing split, missing config)
        raise DataError(f"{prefix}: cannot load: {type(exc).__name__}: {exc}") from exc
    names = {col: feat.names for col, feat in ds.features.items() if isinstance(feat, datasets.ClassLabel)}
    return [Record(f"{prefix}#{i}", i, row) for i, row in enumerate(ds)], names


# --------------------------------------------------------------------------- sources


def _resolve(path: str, data_dir: str | os.PathLike | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or data_dir is None else Path(data_dir) / p


def _load_hub(source: SourceSpec) -> LoadedSource:
    sid, config = source.get("id"), source.get("config")
    kwargs = {"revision": source.get("revision"), "data_files": source.get("data_files")}
    train_split, test_split = source.get("train", "train"), source.get("test", "validation")
    splits, names = {}, {}
    splits["train"], names = read_hub(sid, config, train_split, **kwargs)
    if not source.get("holdout"):
        splits["test"], test_names = read_hub(sid, config, test_split, **kwargs)
        names = {**test_names, **names}
    return LoadedSource(splits, source.describe(), holdout=source.get("holdout"), class_names=names)


def _load_files(source: SourceSpec, data_dir: str | os.PathLike | None) -> LoadedSource:
    options = {k: source.get(k) for k in ("encoding", "delimiter") if source.get(k) is not None}
    if "delimiter" in options and source.type != "csv":
        raise DataError(f"{source.type} source {source.get('train')}: `delimiter` applies to csv sources only "
                        f"(a {source.type} file has a fixed format)")
    if source.type == "parquet":
        options.pop("encoding", None)
    if not source.get("test") and not source.get("holdout"):
        raise DataError(f"{source.type} source {source.get('train')}: give a `test` file or a `holdout` fraction")
    splits = {"train": read_records(_resolve(source.get("train"), data_dir), source.type, **options)}
    if source.get("test"):
        splits["test"] = read_records(_resolve(source.get("test"), data_dir), source.type, **options)
    return LoadedSource(splits, source.describe(), holdout=None if source.get("test") else source.get("holdout"))


def crossfit_tsv_paths(task: str, k: int, seed: int, data_dir: str | os.PathLike) -> dict[str, Path]:
    """CrossFit's file names for one task, K and data seed."""
    folder = Path(data_dir) / task
    return {split: folder / f"{task}_{k}_{seed}_{split}.tsv" for split in ("train", "dev", "test")}


def _load_crossfit(task: TaskSpec, source: SourceSpec, data_dir, k: int, seed: int) -> LoadedSource:
    if data_dir is None:
        raise DataError(f"task {task.name!r}: the crossfit_tsv source needs --data-dir (the CrossFit data folder)")
    paths = crossfit_tsv_paths(task.name, k, seed, data_dir)
    options = {"encoding": source.get("encoding")} if source.get("encoding") else {}
    splits = {split: read_records(path, "tsv", **options) for split, path in paths.items()}
    description = {**source.describe(), "files": {s: str(p) for s, p in paths.items()}}
    return LoadedSource(splits, description, presampled=True)


# --------------------------------------------------------------------------- url sources


def download_cache() -> Path:
    """``$DELTASPACE_DOWNLOADS``, else ``$HF_HOME/deltaspace/downloads`` (``~/.cache/huggingface``)."""
    env = os.environ.get(DOWNLOADS_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "deltaspace" / "downloads"


def offline() -> bool:
    """Whether downloading is forbidden (``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE`` or ``DELTASPACE_OFFLINE``)."""
    return any(os.environ.get(k, "").strip().upper() in ("1", "ON", "YES", "TRUE") for k in OFFLINE_ENVS)


def url_paths(file: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Where a url source's ``file`` is looked for, in order: the data folder (CrossFit's layout,
    e.g. ``<data>/proto_qa/train.jsonl``), then the download cache. The first is where it is downloaded."""
    return ([Path(data_dir) / file] if data_dir is not None else []) + [download_cache() / file]


def _download(url: str, path: Path) -> None:
    """``url`` into ``path`` through a temporary file in its folder (a killed download leaves nothing)."""
    import urllib.request

    def write(tmp: Path) -> None:  # atomic_write's writer: the bytes go to the temporary file
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:  # noqa: S310
            while chunk := response.read(1 << 20):
                out.write(chunk)

    atomic_write(path, write)


def fetch_url(url: str, file: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The local copy of a url source's file: an existing one (:func:`url_paths`), else downloaded
    once to the first of those paths. Offline, a missing copy fails saying where to put it."""
    paths = url_paths(file, data_dir)
    for path in paths:
        if path.is_file():
            return path
    looked = " or ".join(str(p) for p in paths)
    if offline():
        raise DataError(f"{url}: not downloaded yet (no {looked}) and downloads are off "
                        f"({', '.join(k for k in OFFLINE_ENVS if os.environ.get(k))} set); fix: download it to "
                        f"{paths[0]}, or run once with network access and those variables unset")
    try:
        _download(url, paths[0])
    except Exception as exc:  # urllib raises URLError, HTTPError, timeouts, OSError
        raise DataError(f"{url}: download to {paths[0]} failed: {type(exc).__name__}: {exc}; fix: check the "
                        f"network, or download the file there yourself") from exc
    return paths[0]


def _load_url(source: SourceSpec, data_dir: str | os.PathLike | None) -> LoadedSource:
    file = str(source.get("file"))
    path = fetch_url(str(source.get("url")), file, data_dir)
    fmt = source.get("format") or Path(file).suffix.lstrip(".")
    options = {"encoding": source.get("encoding")} if source.get("encoding") and fmt != "parquet" else {}
    return LoadedSource({"train": read_records(path, fmt, **options)}, source.describe(), holdout=source.get("holdout"))


# --------------------------------------------------------------------------- row builders


def apply_builder(name: str, records: list[Record], split: str) -> list[Record]:
    """One split's records through a row builder: CrossFit-style ``input``/``outputs`` records,
    each pointing at the (first) source row it was built from."""
    from deltaspace.data.builders import build_split, get_builder, missing_field

    for record in records:
        lacking = [f for f in get_builder(name).reads if missing_field(record.data, f)]
        if lacking:
            raise DataError(f"{record.where}: builder {name!r} reads field(s) {', '.join(lacking)}, which the row "
                            f"lacks; the row has fields {', '.join(record.data)}")
    try:
        lines = build_split(name, [r.data for r in records], split)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DataError(f"{records[0].where if records else split}: builder {name!r} failed on split {split!r}: "
                        f"{type(exc).__name__}: {exc}") from None
    return [Record(f"{records[line.row].where} ({name} builder)", records[line.row].idx,
                   {"input": line.input, "outputs": list(line.outputs)}) for line in lines]


def load_source(task: TaskSpec, source: SourceSpec, *, data_dir: str | os.PathLike | None = None,
                k: int | None = None, seed: int | None = None) -> LoadedSource:
    """Load the records of one of a task's sources (``k``/``seed`` pick CrossFit's TSV files);
    a source's ``builder`` then turns each split's rows into input/output records."""
    if source.type == "hub":
        loaded = _load_hub(source)
    elif source.type == "crossfit_tsv":
        return _load_crossfit(task, source, data_dir, k, seed)
    elif source.type == "quickstart":
        from deltaspace.data.quickstart import build_source

        return build_source(source)
    elif source.type == "url":
        loaded = _load_url(source, data_dir)
    else:
        loaded = _load_files(source, data_dir)
    if source.get("builder"):
        loaded.splits = {split: apply_builder(source.get("builder"), records, split)
                         for split, records in loaded.splits.items()}
        loaded.class_names = {}
    return loaded
