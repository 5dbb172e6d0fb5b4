"""Recorded Hugging Face hub schemas, and the checks of registry tasks against them.

Nothing here reaches the hub. ``hub_schemas.yaml`` (next to this module) records, for every
(id, config) pair that a registry task names in a ``hub`` source, the dataset's split names and
sizes and its features, taken from the dataset card's ``dataset_info`` (or, where a card has
none, the dataset's loading script or CrossFit's builder; each entry says where in ``from``).
Pairs whose schema could not be established are listed under ``not_covered`` with the reason.

:func:`schema_problems` checks one task against its recorded schema: every field the template
names (or the source's row builder reads) exists, the source's split names exist, the label field exists and every ClassLabel value
maps to a verbalizer. :func:`synthetic_rows` and :func:`synthetic_dataset` make rows (and a
``datasets.Dataset``) that obey a schema, so a test can prepare every hub task through the real
loading code with ``datasets.load_dataset`` patched.

Importing this module imports neither torch nor ``datasets`` (preflight imports it while planning
thousands of jobs); ``datasets`` is imported only by :func:`to_features`/:func:`synthetic_dataset`.

Feature notation in the YAML: a dtype string (``string``, ``int8``..``int64``, ``float32``,
``float64``, ``bool``); ``{class_label: [names in index order]}``; ``{sequence: F}`` (datasets'
``Sequence``: a sequence of a struct reads as a dict of lists); ``{list: F}`` (a plain list of F);
``{struct: {name: F, ...}}``.
"""

from __future__ import annotations

import functools
import os
import random
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deltaspace.data.registry import CLASSIFICATION, SourceSpec, TaskSpec

SCHEMA_FILE = Path(__file__).with_name("hub_schemas.yaml")
ENTRY_KEYS = ("id", "config", "card_config", "from", "splits", "features")
NOT_COVERED_KEYS = ("id", "config", "reason")
DTYPES = ("string", "large_string", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "float16", "float32", "float64")
KINDS = ("class_label", "sequence", "list", "struct")
DEFAULT_TRAIN, DEFAULT_TEST = "train", "validation"  # loaders._load_hub's defaults


class SchemaError(ValueError):
    """hub_schemas.yaml is malformed; the message names the entry."""


# --------------------------------------------------------------------------- the feature tree


@dataclass(frozen=True)
class Feature:
    """One node of a schema's features: ``kind`` is ``value`` (``dtype`` set), ``class_label``
    (``names``), ``sequence`` or ``list`` (``item``), or ``struct`` (``fields``)."""

    kind: str
    dtype: str | None = None
    names: tuple[str, ...] = ()
    item: Feature | None = None
    fields: Mapping[str, Feature] | None = None

    def describe(self) -> str:
        if self.kind == "value":
            return str(self.dtype)
        if self.kind == "class_label":
            return f"class_label[{', '.join(self.names)}]"
        if self.kind in ("sequence", "list"):
            return f"{self.kind}<{self.item.describe()}>"
        return "struct{" + ", ".join(f"{k}: {v.describe()}" for k, v in self.fields.items()) + "}"


def parse_feature(node: Any, where: str) -> Feature:
    """A feature in the YAML notation (see the module docstring) as a :class:`Feature`."""
    if isinstance(node, str):
        if node not in DTYPES:
            raise SchemaError(f"{where}: unknown dtype {node!r}; known: {', '.join(DTYPES)}")
        return Feature("value", dtype=node)
    if isinstance(node, Mapping) and len(node) == 1 and next(iter(node)) in KINDS:
        (kind, inner), = node.items()
        if kind == "class_label":
            if not isinstance(inner, list) or not inner or not all(isinstance(n, str) for n in inner):
                raise SchemaError(f"{where}: class_label needs a list of names, got {inner!r}")
            return Feature("class_label", names=tuple(inner))
        if kind in ("sequence", "list"):
            return Feature(kind, item=parse_feature(inner, f"{where}.{kind}"))
        node = inner
    if isinstance(node, Mapping) and node:  # a struct, written {struct: {...}} or as a plain mapping
        return Feature("struct", fields={str(k): parse_feature(v, f"{where}.{k}") for k, v in node.items()})
    raise SchemaError(f"{where}: cannot read feature {node!r}; use a dtype, class_label, sequence, list or struct")


def _elements(feature: Feature) -> Feature:
    """What a path sees inside a sequence: datasets turns a Sequence of a struct into a struct of
    sequences (a dict of lists); any other sequence or list maps the path over its items."""
    if feature.kind == "sequence" and feature.item.kind == "struct":
        return Feature("struct", fields={k: Feature("sequence", item=v) for k, v in feature.item.fields.items()})
    return feature


def feature_at(features: Mapping[str, Feature], path: str) -> Feature | None:
    """The feature a dotted path reaches (through structs, and mapped over sequences and lists, as
    ``prepare.resolve`` walks a row), or None when a step is missing."""
    node: Feature = Feature("struct", fields=features)
    for part in path.split("."):
        node = _elements(node)
        while node.kind in ("sequence", "list"):
            node = _elements(node.item)
        if node.kind != "struct" or part not in node.fields:
            return None
        node = node.fields[part]
    return node


def _leaf(feature: Feature) -> Feature:
    """Below any sequences/lists: a label read from a list field is its first element."""
    while feature.kind in ("sequence", "list"):
        feature = feature.item
    return feature


def field_paths(features: Mapping[str, Feature], prefix: str = "") -> list[str]:
    """Every dotted path a template can name (into structs, through sequences and lists)."""
    paths = []
    for name, feature in features.items():
        paths.append(prefix + name)
        inner = _elements(feature)
        while inner.kind in ("sequence", "list"):
            inner = _elements(inner.item)
        if inner.kind == "struct":
            paths += field_paths(inner.fields, f"{prefix}{name}.")
    return paths


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class HubSchema:
    """The recorded schema of one hub (id, config): splits with sizes and features."""

    id: str
    config: str | None
    card_config: str
    origin: str  # the entry's `from`
    splits: Mapping[str, int]
    features: Mapping[str, Feature]
    where: str = ""

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.id, self.config)

    @property
    def label(self) -> str:
        return self.id + (f" [{self.config}]" if self.config else "")

    def describe_fields(self) -> str:
        return ", ".join(f"{k} ({v.describe()})" for k, v in self.features.items())


@dataclass(frozen=True)
class SchemaFile:
    schemas: Mapping[tuple[str, str | None], HubSchema]
    not_covered: Mapping[tuple[str, str | None], str]
    path: Path


def _line_loader() -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        value = loader.construct_mapping(node, deep=True)
        value["__line__"] = node.start_mark.line + 1
        return value

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def _strip_lines(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_lines(v) for k, v in node.items() if k != "__line__"}
    if isinstance(node, list):
        return [_strip_lines(v) for v in node]
    return node


def parse_schema_file(text: str, path: str = str(SCHEMA_FILE)) -> SchemaFile:
    """Read and validate the text of a schema file (``datasets:`` and ``not_covered:`` lists)."""
    data = yaml.load(text, Loader=_line_loader()) or {}  # noqa: S506 (a SafeLoader subclass)
    extra = sorted(set(data) - {"datasets", "not_covered", "__line__"})
    if extra:
        raise SchemaError(f"{path}: unknown top-level key(s) {extra}; expected datasets, not_covered")
    schemas: dict[tuple[str, str | None], HubSchema] = {}
    for entry in data.get("datasets") or []:
        where = f"{path}:{entry.get('__line__', '?')}"
        entry = {k: v for k, v in entry.items() if k != "__line__"}
        if tuple(k for k in ENTRY_KEYS if k in entry) != ENTRY_KEYS or set(entry) - set(ENTRY_KEYS):
            raise SchemaError(f"{where}: an entry has exactly the keys {', '.join(ENTRY_KEYS)}; got {', '.join(entry)}")
        key = (str(entry["id"]), None if entry["config"] is None else str(entry["config"]))
        if key in schemas:
            raise SchemaError(f"{where}: {key} is recorded twice (also at {schemas[key].where})")
        splits = _strip_lines(entry["splits"])
        if not isinstance(splits, Mapping) or not splits or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in splits.values()):
            raise SchemaError(f"{where}: splits must map split names to row counts, got {splits!r}")
        features = _strip_lines(entry["features"])
        if not isinstance(features, Mapping) or not features:
            raise SchemaError(f"{where}: features must map field names to features")
        schemas[key] = HubSchema(key[0], key[1], str(entry["card_config"]), str(entry["from"]),
                                 {str(k): v for k, v in splits.items()},
                                 {str(k): parse_feature(v, f"{where}: {k}") for k, v in features.items()}, where)
    not_covered: dict[tuple[str, str | None], str] = {}
    for entry in data.get("not_covered") or []:
        where = f"{path}:{entry.get('__line__', '?')}"
        entry = {k: v for k, v in entry.items() if k != "__line__"}
        if set(entry) != set(NOT_COVERED_KEYS) or not str(entry["reason"]).strip():
            raise SchemaError(f"{where}: a not_covered entry has exactly the keys {', '.join(NOT_COVERED_KEYS)} "
                              f"and a non-empty reason")
        key = (str(entry["id"]), None if entry["config"] is None else str(entry["config"]))
        if key in schemas or key in not_covered:
            raise SchemaError(f"{where}: {key} is listed twice (recorded or not_covered)")
        not_covered[key] = " ".join(str(entry["reason"]).split())
    return SchemaFile(schemas, not_covered, Path(path))


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> SchemaFile:
    return parse_schema_file(Path(path).read_text(encoding="utf-8"), path)


def load_schemas(path: str | os.PathLike | None = None) -> SchemaFile:
    """The schema file (default: the packaged ``hub_schemas.yaml``), parsed once per version."""
    path = Path(path or SCHEMA_FILE)
    return _load(str(path), path.stat().st_mtime)


def source_key(source: SourceSpec) -> tuple[str, str | None]:
    config = source.get("config")
    return (str(source.get("id")), None if config is None else str(config))


def schema_for(source: SourceSpec, schemas: SchemaFile | None = None) -> HubSchema | None:
    """The recorded schema of a hub source, or None."""
    schemas = schemas or load_schemas()
    return schemas.schemas.get(source_key(source))


def hub_sources(task: TaskSpec) -> list[SourceSpec]:
    """The task's hub sources (primary and alternatives) without a local ``data_files`` override."""
    return [s for s in task.sources if s.type == "hub" and not s.get("data_files")]


def not_covered_reason(task: TaskSpec, schemas: SchemaFile | None = None) -> str | None:
    """Why a task's hub dataset has no recorded schema (the file's ``not_covered``), or None."""
    schemas = schemas or load_schemas()
    reasons = [schemas.not_covered[source_key(s)] for s in hub_sources(task) if source_key(s) in schemas.not_covered]
    return "; ".join(reasons) or None


# --------------------------------------------------------------------------- checks


def _short(where: str) -> str:
    """``config/tasks/x.yaml:12`` rather than an absolute path, where it lies below the cwd."""
    path, sep, line = where.rpartition(":")
    if not sep or not line.isdigit():
        return where
    try:
        path = os.path.relpath(path)
    except ValueError:
        return where
    return f"{path}:{line}" if not path.startswith("..") else where


def template_fields(task: TaskSpec) -> list[tuple[str, str]]:
    """(template key, field path) for every field the task's template and prompt name: the format
    strings' fields (parsed as prepare's formatter parses them), the label, choices and answer."""
    tpl = task.template
    if tpl is None:
        return []
    formats = [("input", tpl.input)] + ([("target", tpl.target)] if tpl.target else [])
    if task.prompt is not None:
        formats.append(("prompt", task.prompt.template))
    out = []
    for key, fmt in formats:
        for _, name, _, _ in string.Formatter().parse(fmt):
            if name and not (key == "prompt" and name == "mask"):
                out.append((key, name))
    if tpl.label:
        out.append(("label", tpl.label))
    if tpl.choices:
        out += [("choices", c) for c in (tpl.choices if isinstance(tpl.choices, tuple) else (tpl.choices,))]
    if tpl.answer:
        out.append(("answer", tpl.answer))
    if tpl.shuffle:  # the fields it orders are the dataset's; the ones it adds are not
        out += [("shuffle", f) for f in tpl.shuffle["fields"]]
    out += [("extract", ex["field"]) for ex in tpl.extract]
    out += [("select", sel[k]) for sel in tpl.select for k in ("field", "where", "in")]
    out += [("spans", span[k]) for span in tpl.spans for k in ("tokens", "tags")]
    derived = set(tpl.derived_fields)
    out = [(k, p) for k, p in out if p.split(".")[0] not in derived]
    return list(dict.fromkeys(out))


def _close(name: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    return f" (closest: {', '.join(close)})" if close else ""


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def _label_problems(task: TaskSpec, source: SourceSpec, schema: HubSchema, say) -> None:
    from deltaspace.data.loaders import DataError
    from deltaspace.data.prepare import _LabelRules

    field = task.template.label
    feature = feature_at(schema.features, field) if field else None
    if feature is None:
        return  # reported as a missing field
    leaf = _leaf(feature)
    if task.verbalizers_from_hub:
        if leaf.kind != "class_label":
            say(f"`verbalizers: hub` but label field {field!r} is {feature.describe()}, not a ClassLabel",
                "give the verbalizers explicitly (and a label_map if the raw labels are not indices)")
        return
    if leaf.kind != "class_label":
        return  # raw ints or strings: their values are not recorded, prepare checks them per row
    verbalizers = task.verbalizers or ()
    rules = _LabelRules(task.name, "schema", verbalizers,
                        {str(k): v for k, v in (source.get("label_map") or {}).items()},
                        frozenset(str(s) for s in source.get("skip_labels") or ()))
    unmapped = []
    for index, name in enumerate(leaf.names):
        try:
            rules.index(index, f"{schema.label} {field}={index}")
        except DataError:
            unmapped.append(f"{index} ({name})")
    if unmapped:
        say(f"ClassLabel value(s) {', '.join(unmapped)} of {field!r} map to no verbalizer of {list(verbalizers)}",
            f"the field's names are {list(leaf.names)}: give a verbalizer per index, a label_map to the verbalizers, "
            f"or skip_labels")
    elif not source.get("label_map"):
        names, verbs = [_norm(n) for n in leaf.names], [_norm(v) for v in verbalizers]
        if sorted(names) == sorted(verbs) and names != verbs:
            say(f"label field {field!r} names its classes {list(leaf.names)} (index order) but the verbalizers are "
                f"{list(verbalizers)}: index i would be verbalized as the wrong class",
                f"order the verbalizers as the ClassLabel names, or give a label_map")


def schema_problems(task: TaskSpec, schemas: SchemaFile | None = None) -> list[str]:
    """Every way the task's hub sources disagree with their recorded schemas, one line each:
    ``<registry file:line>: task 'x': <what is wrong>; <what was expected>; fix: <what fixes it>``.
    A hub source whose (id, config) is not recorded is a problem (with the file's reason if it is
    listed under ``not_covered``). Sources with local ``data_files`` are not hub schemas and are
    skipped; template checks apply to the sources the template is used with (all but text-to-text
    ones), split checks to sources the task can prepare from."""
    from deltaspace.data.prepare import resolve

    schemas = schemas or load_schemas()
    where = _short(task.defined_in) if task.defined_in else "?"
    problems: list[str] = []
    for source in hub_sources(task):
        key = source_key(source)
        pair = key[0] + (f" [{key[1]}]" if key[1] else "")
        schema = schemas.schemas.get(key)

        def say(what: str, fix: str, schema: HubSchema | None = schema, pair: str = pair) -> None:
            head = f"{where}: task {task.name!r}: hub {pair}: {what}"
            expected = f"; the dataset has fields {schema.describe_fields()}" if schema else ""
            problems.append(f"{head}{expected}; fix: {fix}")

        if schema is None:
            reason = schemas.not_covered.get(key)
            if reason:
                say(f"no recorded schema (not_covered in {schemas.path.name}: {reason})",
                    "establish the schema and record it, or prepare from another source")
            else:
                configs = [str(c) for i, c in schemas.schemas if i == key[0]]
                ids = _close(key[0], sorted({i for i, _ in schemas.schemas} - {key[0]}))
                say(f"no recorded schema in {schemas.path.name}",
                    f"record (id, config) = ({key[0]}, {key[1]}) from its dataset card's dataset_info, "
                    f"or fix the id/config (recorded configs of {key[0]}: {', '.join(configs) or 'none'}{ids})")
            continue
        if not task.usable(source):
            continue  # template: null; the task prepares from a text-to-text source
        builder = source.get("builder")
        wanted = [("train", source.get("train", DEFAULT_TRAIN))]
        if not source.get("holdout"):
            wanted.append(("test", source.get("test", DEFAULT_TEST)))
        for role, split in wanted:
            if split not in schema.splits:
                hint = (" or `holdout: 0.2` (CrossFit's 80/20 carve of train)" if role == "test" else "")
                say(f"{role} split {split!r} does not exist; splits: "
                    + ", ".join(f"{s} ({n})" for s, n in schema.splits.items()),
                    f"set the source's `{role}:` to one of {list(schema.splits)}{hint}")
        row = synthetic_rows(schema, next(iter(schema.splits)), 1, 0)[0]
        paths = field_paths(schema.features)
        if builder:  # a row builder replaces the template for this source: check the fields it reads
            from deltaspace.data.builders import get_builder

            for path in get_builder(builder).reads:
                try:
                    resolve(row, path)
                except KeyError:
                    say(f"builder {builder!r} reads field {path!r}, which does not exist{_close(path, paths)}",
                        f"point the source at the dataset the builder was written for, or fix the builder's fields "
                        f"in src/deltaspace/data/builders.py")
            continue
        for key_name, path in template_fields(task):
            try:
                resolve(row, path)
            except KeyError:
                say(f"template {key_name} names field {path!r}, which does not exist{_close(path, paths)}",
                    f"name one of the dataset's fields in the template's {key_name}")
        if task.kind == CLASSIFICATION and task.template.label:
            _label_problems(task, source, schema, say)
    return problems


# --------------------------------------------------------------------------- synthetic data


_WORDS = ("alpha", "bravo", "delta", "echo", "golf", "hotel", "kilo", "lima", "oscar", "papa", "tango", "zulu")
_INT_RANGES = {"int8": 127, "int16": 1000, "int32": 1000, "int64": 1000, "uint8": 255, "uint16": 1000,
               "uint32": 1000, "uint64": 1000}


def _value(feature: Feature, rng: random.Random, row: int, width: int, uid: str) -> Any:
    if feature.kind == "class_label":
        return row % len(feature.names)  # every class seen once len(names) rows are made
    if feature.kind == "value":
        dtype = feature.dtype
        if dtype in ("string", "large_string"):
            return " ".join([rng.choice(_WORDS) for _ in range(rng.randint(1, 5))] + [uid])  # uid: no row repeats
        if dtype == "bool":
            return bool(row % 2)
        if dtype in _INT_RANGES:
            return rng.randint(0, _INT_RANGES[dtype])
        return round(rng.uniform(0.0, 5.0), 3)
    if feature.kind == "struct":
        return {k: _value(v, rng, row, width, uid) for k, v in feature.fields.items()}
    if feature.kind == "sequence" and feature.item.kind == "struct":  # datasets: a dict of lists
        return {k: _value(Feature("sequence", item=v), rng, row, width, uid) for k, v in feature.item.fields.items()}
    return [_value(feature.item, rng, row + i, width, f"{uid}.{i}") for i in range(width)]


def synthetic_rows(schema: HubSchema, split: str, n: int, seed: int = 0, width: int = 2) -> list[dict[str, Any]]:
    """``n`` rows that obey the schema's features, as ``datasets`` returns them: strings of a few
    words ending in a token unique to the split, seed and row (so no two rows repeat), ints in range, every ClassLabel value seen (row i has value i mod the class count),
    sequences and lists of ``width`` items (a sequence of a struct as a dict of lists)."""
    if split not in schema.splits:
        raise KeyError(f"{schema.label}: no split {split!r}; splits: {', '.join(schema.splits)}")
    rng = random.Random(f"{schema.id}/{schema.config}/{split}/{seed}")
    return [{k: _value(f, rng, i, width, f"{split}{seed}n{i}") for k, f in schema.features.items()} for i in range(n)]


def to_features(schema: HubSchema):
    """The schema's features as ``datasets.Features`` (imports ``datasets``)."""
    import datasets

    def build(feature: Feature):
        if feature.kind == "value":
            return datasets.Value(feature.dtype)
        if feature.kind == "class_label":
            return datasets.ClassLabel(names=list(feature.names))
        if feature.kind == "sequence":
            return datasets.Sequence(build(feature.item))
        if feature.kind == "list":
            return [build(feature.item)]
        return {k: build(v) for k, v in feature.fields.items()}

    return datasets.Features({k: build(v) for k, v in schema.features.items()})


def synthetic_dataset(schema: HubSchema, split: str, n: int, seed: int = 0):
    """A ``datasets.Dataset`` of :func:`synthetic_rows` with the schema's ``datasets.Features``."""
    import datasets

    return datasets.Dataset.from_list(synthetic_rows(schema, split, n, seed), features=to_features(schema),
                                      split=datasets.NamedSplit(split))


# --------------------------------------------------------------------------- merging files


class _Flow(dict):
    pass


class _FlowList(list):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _flow(value: Any) -> Any:
    if isinstance(value, dict):
        return _Flow({k: _flow(v) for k, v in value.items()})
    if isinstance(value, list):
        return _FlowList(_flow(v) for v in value)
    return value


def _raw(text: str) -> dict[str, Any]:
    return _strip_lines(yaml.load(text, Loader=_line_loader()) or {})  # noqa: S506 (a SafeLoader subclass)


def merge_schema_texts(base: str, *others: str) -> tuple[str, list[str]]:
    """``base`` with the entries of ``others`` added, deduplicated by (id, config); and one line per
    conflict (a pair recorded in both with other splits or features: the base entry is kept). A
    pair recorded anywhere leaves ``not_covered``. The text before ``datasets:`` (the header) is kept."""
    for i, text in enumerate((base, *others)):
        parse_schema_file(text, f"file {i}")  # every input is valid on its own
    data = _raw(base)
    entries = list(data.get("datasets") or [])
    keys = {(e["id"], e["config"]): e for e in entries}
    not_covered = {(e["id"], e["config"]): e for e in data.get("not_covered") or []}
    conflicts = []
    for text in others:
        other = _raw(text)
        for entry in other.get("datasets") or []:
            key = (entry["id"], entry["config"])
            if key not in keys:
                keys[key] = entry
                entries.append(entry)
            elif (keys[key]["splits"], keys[key]["features"]) != (entry["splits"], entry["features"]):
                conflicts.append(f"{key}: recorded twice with different splits or features; kept the first "
                                 f"({keys[key]['from']}), not ({entry['from']})")
        for entry in other.get("not_covered") or []:
            not_covered.setdefault((entry["id"], entry["config"]), entry)
    not_covered = [e for k, e in not_covered.items() if k not in keys]
    header = base[:base.index("datasets:")] if "datasets:" in base else ""
    body = yaml.dump({"datasets": [{**e, "splits": _flow(e["splits"]), "features": {
        k: _flow(v) for k, v in e["features"].items()}} for e in entries]},
        Dumper=_Dumper, sort_keys=False, width=115, allow_unicode=True)
    body += "\n" + yaml.dump({"not_covered": not_covered}, Dumper=_Dumper, sort_keys=False, width=115,
                             allow_unicode=True)
    merged = header + body
    parse_schema_file(merged, "merged")
    return merged, conflicts


def main(argv: list[str] | None = None) -> int:
    """``python -m deltaspace.data.hub_schemas merge FILE...``: merge schema files into the packaged one."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "merge":
        print("usage: python -m deltaspace.data.hub_schemas merge FILE [FILE...]", file=sys.stderr)
        return 2
    merged, conflicts = merge_schema_texts(SCHEMA_FILE.read_text(encoding="utf-8"),
                                           *(Path(p).read_text(encoding="utf-8") for p in args[1:]))
    SCHEMA_FILE.write_text(merged, encoding="utf-8")
    for line in conflicts:
        print(f"conflict: {line}", file=sys.stderr)
    print(f"{SCHEMA_FILE}: {len(parse_schema_file(merged).schemas)} recorded pairs")
    return 1 if conflicts else 0


if __name__ == "__main__":
    raise SystemExit(main())
