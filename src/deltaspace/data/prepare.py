"""Preparation: a registry task -> text-to-text examples -> sampled, tokenized Parquet splits.

``prepare_task`` writes one folder per (task, setting, K, seed, backbone) holding
``train.parquet``, ``dev.parquet``, ``test.parquet`` and ``manifest.json`` exactly as
``docs/contracts.md`` specifies; training reads it back with :func:`load_prepared`. Every check
that can fail on the data (a malformed row, a label outside the verbalizers, an empty split)
fails here, naming the task, split and row, before any training job is scheduled.

Same inputs and seed give the same bytes: sampling is seeded, rows are written in a fixed order
with a fixed schema, and the manifest carries no timestamps. Files are written to a temporary
name in the same folder and moved into place with ``os.replace`` (:func:`deltaspace.io.atomic_write`),
manifest last, so a folder with a manifest is always complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from deltaspace.data import sampling
from deltaspace.data.loaders import DataError, LoadedSource, Record, load_source
from deltaspace.data.registry import (CLASSIFICATION, GENERATION, MASK, PER_CLASS, SHUFFLED, SHUFFLED_GOLD,
                                      Registry, TaskSpec, Template, is_text_to_text, prompt_manifest)
from deltaspace.io import atomic_write

SPLITS = ("train", "dev", "test")
SETTINGS = ("fewshot", "full")
DEFAULT_MAX_INPUT_LENGTH = 512  # unified-dt / IPT code: inputs up to 512 tokens
DEFAULT_MAX_TARGET_LENGTH = 64  # and outputs up to 64
TEST_SUBSAMPLE_SEED = 42  # --max-test subsamples with a fixed seed: the test set never varies with --seed
HOLDOUT_SEED = 42  # CrossFit shuffles with np.random.seed(42) before its 80/20 train/test carve
FORMAT_VERSION = 2  # 2: the `prompt` column and manifest key

SCHEMA = pa.schema([
    ("idx", pa.int64()),
    ("input", pa.string()),
    ("target", pa.string()),
    ("references", pa.list_(pa.string())),
    ("label", pa.int64()),
    ("input_ids", pa.list_(pa.int32())),
    ("target_ids", pa.list_(pa.int32())),
    ("prompt", pa.string()),  # the task's prompt template rendered, {mask} kept; "" without a prompt
])
MANIFEST = "manifest.json"


class PrepareError(ValueError):
    """A task cannot be prepared: an empty split, a bad label, a bad option."""


class LabelError(PrepareError, DataError):
    """A gold label that is not one of the task's verbalizers."""


@dataclass(frozen=True)
class Example:
    """One text-to-text example; ``label`` indexes the verbalizers (-1 for generation/regression)."""

    idx: int
    input: str
    target: str
    references: tuple[str, ...]
    label: int
    prompt: str = ""


@dataclass(frozen=True)
class PrepareOptions:
    """What to sample and how to tokenize; ``None`` means the task's (or the paper's) default."""

    setting: str = "fewshot"
    k: int | None = None
    max_train: int = sampling.FULL_MAX_TRAIN
    max_dev: int = sampling.FULL_MAX_DEV
    max_test: int | None = None
    max_input_length: int | None = None
    max_target_length: int | None = None
    source: str | None = None
    data_dir: str | None = None
    task_prefix: bool = False
    paper: str | None = None


# --------------------------------------------------------------------------- templates


def _join(value: Any) -> str:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"`:join` needs a list, got {type(value).__name__}")
    return " ".join(str(v) for v in value)


# Format specs that transform a field (chained left to right with `|`: `{example:nospace|lower}`).
def _concat(value: Any) -> Any:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"`:concat` needs a list, got {type(value).__name__}")
    if all(isinstance(v, (list, tuple)) for v in value):
        return ["".join(str(x) for x in v) for v in value]
    return "".join(str(v) for v in value)


TEXT_FILTERS = {
    "join": _join,  # a list joined with spaces (CrossFit's " ".join(tokens))
    "concat": _concat,  # each inner list joined without a separator (hotpot_qa's "".join(sentences))
    "lower": lambda v: str(v).lower(),
    "nospace": lambda v: str(v).replace(" ", ""),  # CrossFit's .replace(" ", "")
}


class _RecordFormatter(string.Formatter):
    """``str.format`` over a record: dotted paths into nested fields, ``:options`` for choices,
    ``:join``/``:lower``/``:nospace`` (chained with ``|``) for text filters."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        return resolve(kwargs, field_name), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "options":
            return format_options(value)
        filters = format_spec.split("|") if format_spec else []
        if filters and all(f in TEXT_FILTERS for f in filters):
            for name in filters:
                value = TEXT_FILTERS[name](value)
            return str(value)
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        return super().format_field(value, format_spec)


_FORMATTER = _RecordFormatter()


class _MissingField(KeyError):
    pass


def resolve(data: Any, path: str) -> Any:
    """A dotted path into nested dicts; a list on the way maps the rest of the path over it, or,
    where the part is a number, is indexed by it (``shuffled.0``)."""
    value = data
    for i, part in enumerate(path.split(".")):
        if isinstance(value, (list, tuple)) and part.isdigit():
            if int(part) >= len(value):
                raise _MissingField(path)
            value = value[int(part)]
            continue
        if isinstance(value, (list, tuple)):
            return [resolve(item, ".".join(path.split(".")[i:])) for item in value]
        if not isinstance(value, Mapping) or part not in value:
            raise _MissingField(path)
        value = value[part]
    return value


def format_options(options: Any) -> str:
    """``(A) first (B) second ...``, CrossFit's rendering of answer choices."""
    if not isinstance(options, (list, tuple)):
        raise TypeError(f"`:options` needs a list, got {type(options).__name__}")
    return " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))


def _render(fmt: str, record: Record, task: str) -> str:
    try:
        return _FORMATTER.format(fmt, **record.data)
    except _MissingField as exc:
        raise DataError(f"{record.where}: task {task!r}: template field {exc.args[0]!r} is missing; "
                        f"the row has fields {', '.join(record.data)}") from None
    except (TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{record.where}: task {task!r}: cannot render {fmt!r}: {exc}") from None


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        return [value]
    return [x for v in value for x in _flatten(v)]


def _keys(value: Any) -> list[Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"`:keys` needs a mapping, got {type(value).__name__}")
    return list(value)


# Format specs of a target that is one list field: they transform the list of references.
LIST_FILTERS = {
    "flatten": _flatten,  # nested lists -> one flat list
    "sorted_set": lambda v: sorted(set(_flatten(v)), key=str),  # CrossFit's sorted(list(set(answers)))
    "keys": lambda v: _keys(v),  # a mapping's keys, in order (proto_qa's answers.raw)
}


def _single_field(fmt: str, filters: bool = False) -> str | tuple[str, list[str]] | None:
    """The field name when a format string is exactly one ``{field}`` (list targets expand); with
    ``filters``, ``(field, list filters)`` when its spec is a chain of :data:`LIST_FILTERS`."""
    parts = list(string.Formatter().parse(fmt))
    if len(parts) == 1 and parts[0][0] == "" and parts[0][1] and not parts[0][3]:
        spec = parts[0][2]
        if not filters:
            return parts[0][1] if not spec else None
        chain = spec.split("|") if spec else []
        if all(f in LIST_FILTERS for f in chain):
            return parts[0][1], chain
    return None


def _answer_index(value: Any, options: list[str], tpl: Template, where: str) -> int:
    if isinstance(value, bool) or value is None:
        raise DataError(f"{where}: answer {value!r} is not an index, a letter or a digit string")
    if isinstance(value, int):
        index = value - tpl.answer_offset
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value) - tpl.answer_offset
    elif isinstance(value, str) and len(value.strip()) == 1 and value.strip().isalpha():
        index = ord(value.strip().upper()) - 65
    elif isinstance(value, str) and value in options:
        index = options.index(value)
    else:
        raise DataError(f"{where}: answer {value!r} is not an index, a letter or one of the choices")
    if not 0 <= index < len(options):
        raise DataError(f"{where}: answer {value!r} points outside the {len(options)} choices")
    return index


def _references(task: TaskSpec, record: Record) -> list[str]:
    tpl = task.template
    assert tpl is not None
    if tpl.target:
        single = _single_field(tpl.target, filters=True)
        value = None
        if single is not None:
            field, chain = single
            try:
                value = resolve(record.data, field)
            except _MissingField:
                if chain:
                    raise DataError(f"{record.where}: task {task.name!r}: template field {field!r} is missing; "
                                    f"the row has fields {', '.join(record.data)}") from None
                value = None
            for name in chain:
                try:
                    value = LIST_FILTERS[name](value)
                except TypeError as exc:
                    raise DataError(f"{record.where}: task {task.name!r}: target {tpl.target!r}: {exc}") from None
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        return [_render(tpl.target, record, task.name).strip()]
    paths = tpl.choices if isinstance(tpl.choices, tuple) else (tpl.choices,)
    try:
        options = [resolve(record.data, p) for p in paths]
        if len(paths) == 1:
            options = options[0]
        answer = resolve(record.data, tpl.answer)
    except _MissingField as exc:
        raise DataError(f"{record.where}: task {task.name!r}: template field {exc.args[0]!r} is missing; "
                        f"the row has fields {', '.join(record.data)}") from None
    options = [str(o) for o in options]
    return [options[_answer_index(answer, options, tpl, record.where)].strip()]


def majority(votes: Sequence[Any]) -> Any:
    """The most common vote; None for no votes or a tie for first (CrossFit's ``utils.get_majority``)."""
    rank = Counter(votes).most_common()
    if not rank or (len(rank) > 1 and rank[0][1] == rank[1][1]):
        return None
    return rank[0][0]


@dataclass(frozen=True)
class _LabelRules:
    task: str
    split: str
    verbalizers: tuple[str, ...]
    label_map: Mapping[str, Any]
    skip: frozenset[str]
    vote: str | None = None  # "majority": a list of votes gives its most common value, a tie skips the row
    bins: tuple[Mapping[str, Any], ...] = ()  # {below: x, label: L} / {above: x, label: L}; in no bin: skipped

    def index(self, raw: Any, where: str) -> int | None:
        """Verbalizer index of a raw label; None when the label is configured to be skipped."""
        if self.vote == "majority" and isinstance(raw, (list, tuple)):
            raw = majority(raw)
            if raw is None:
                return None
        if isinstance(raw, (list, tuple)) and raw:  # e.g. KILT's list of gold outputs: the first is the label
            raw = raw[0]
        if self.bins:
            raw = self._bin(raw, where)
            if raw is None:
                return None
        if str(raw) in self.skip:
            return None
        value = self.label_map.get(str(raw), raw) if self.label_map else raw
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and 0 <= value < len(self.verbalizers):
            return value
        if isinstance(value, str) and value in self.verbalizers:
            return self.verbalizers.index(value)
        raise LabelError(f"task {self.task!r}, split {self.split!r}, {where}: label {raw!r} is not one of its "
                         f"verbalizers {list(self.verbalizers)}"
                         + (f" (after label_map: {value!r})" if self.label_map and value != raw else ""))

    def _bin(self, raw: Any, where: str) -> Any:
        """The label of the first bin a number falls in (strict ``<``/``>`` on the value as read)."""
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise LabelError(f"task {self.task!r}, split {self.split!r}, {where}: label {raw!r} is not a number; "
                             f"`label_bins` needs a numeric label field")
        for b in self.bins:
            if ("below" in b and raw < b["below"]) or ("above" in b and raw > b["above"]):
                return b["label"]
        return None


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, Mapping)) and len(value) == 0)


def _shuffled(shuffle: Mapping[str, Any], rng: Any, record: Record, task: str) -> Record:
    """The record with ``shuffled`` (the shuffle's fields in this row's drawn order) and
    ``shuffled_gold`` (the position of the first field). ``rng`` runs across a split's rows in
    order, as CrossFit's ``np.random.seed(seed)`` before its loop: ``coin`` keeps the order when
    ``random() > 0.5`` (one draw per row), ``permute`` is ``np.random.shuffle`` of the values."""
    values = []
    for path in shuffle["fields"]:
        try:
            values.append(resolve(record.data, path))
        except _MissingField:
            raise DataError(f"{record.where}: task {task!r}: shuffle field {path!r} is missing; "
                            f"the row has fields {', '.join(record.data)}") from None
    order = list(range(len(values)))
    if shuffle["draw"] == "coin":
        if not rng.random_sample() > 0.5:
            order.reverse()
    else:
        rng.shuffle(order)
    data = {**record.data, SHUFFLED: [values[i] for i in order], SHUFFLED_GOLD: order.index(0)}
    return Record(record.where, record.idx, data)


def _extracted(extract: Sequence[Mapping[str, Any]], record: Record, task: str) -> Record:
    """The record with the named groups of each ``extract`` pattern, matched at the start of its field."""
    import re

    data = dict(record.data)
    for ex in extract:
        try:
            value = resolve(data, ex["field"])
        except _MissingField:
            raise DataError(f"{record.where}: task {task!r}: extract field {ex['field']!r} is missing; "
                            f"the row has fields {', '.join(record.data)}") from None
        match = re.match(ex["pattern"], value, re.DOTALL) if isinstance(value, str) else None
        if match is None:
            raise DataError(f"{record.where}: task {task!r}: field {ex['field']!r} ({str(value)[:80]!r}) does not "
                            f"match the template's extract pattern {ex['pattern']!r}")
        data.update(match.groupdict(default=""))
    return Record(record.where, record.idx, data)


def _selected(select: Sequence[Mapping[str, Any]], record: Record, task: str) -> Record:
    """The record with each ``select``'s items of ``field`` whose parallel ``where`` item is ``in`` a list."""
    data = dict(record.data)
    for sel in select:
        try:
            values, keys, allowed = (resolve(data, sel[k]) for k in ("field", "where", "in"))
        except _MissingField as exc:
            raise DataError(f"{record.where}: task {task!r}: select field {exc.args[0]!r} is missing; "
                            f"the row has fields {', '.join(record.data)}") from None
        if not all(isinstance(v, (list, tuple)) for v in (values, keys, allowed)) or len(values) != len(keys):
            raise DataError(f"{record.where}: task {task!r}: select needs lists {sel['field']!r} and {sel['where']!r} "
                            f"of one length and a list {sel['in']!r}")
        allowed = set(allowed)
        data[sel["into"]] = [v for v, k in zip(values, keys) if k in allowed]
    return Record(record.where, record.idx, data)


def _with_spans(spans: Sequence[Mapping[str, Any]], record: Record, task: str) -> Record | None:
    """The record with each span's tokens (``begin`` tag, then the ``inside`` tags after it) joined
    with spaces; None (the row is dropped) when a begin tag does not occur exactly once."""
    data = dict(record.data)
    for span in spans:
        try:
            tokens, tags = resolve(data, span["tokens"]), resolve(data, span["tags"])
        except _MissingField as exc:
            raise DataError(f"{record.where}: task {task!r}: spans field {exc.args[0]!r} is missing; "
                            f"the row has fields {', '.join(record.data)}") from None
        if not isinstance(tokens, (list, tuple)) or not isinstance(tags, (list, tuple)) or len(tokens) != len(tags):
            raise DataError(f"{record.where}: task {task!r}: spans need lists {span['tokens']!r} and {span['tags']!r} "
                            f"of one length")
        tags = list(tags)
        if tags.count(span["begin"]) != 1:
            return None
        start = end = tags.index(span["begin"])
        while end + 1 < len(tags) and tags[end + 1] == span["inside"]:
            end += 1
        data[span["into"]] = " ".join(str(t) for t in tokens[start:end + 1])
    return Record(record.where, record.idx, data)


def to_examples(task: TaskSpec, records: Sequence[Record], split: str, verbalizers: tuple[str, ...] | None,
                label_map: Mapping[str, Any] | None = None, skip_labels: Sequence[Any] = (),
                task_prefix: bool = False, *, skip_empty: Sequence[str] = (), label_vote: str | None = None,
                label_bins: Sequence[Mapping[str, Any]] = (), text_to_text_source: bool = False,
                skip_empty_target: bool = False) -> list[Example]:
    """Render records into examples with the task's template (or as CrossFit TSV lines).

    The template's ``extract`` runs first; ``skip_empty`` then drops rows whose named fields are
    empty (so a dropped row takes no draw of the template's ``shuffle``), ``skip_empty_target`` rows
    whose reference output is empty (CrossFit's ``if answer:``); ``label_vote``/``label_bins`` are the source's
    label rules (see :class:`_LabelRules`). ``text_to_text_source``: the records are CrossFit-style
    input/output lines (a crossfit_tsv or tsv source, or one whose row builder made them), used as
    they are even when the task has a template for its other sources."""
    import numpy as np

    rules = None
    if task.kind == CLASSIFICATION:
        assert verbalizers is not None
        rules = _LabelRules(task.name, split, verbalizers, {str(k): v for k, v in (label_map or {}).items()},
                            frozenset(str(s) for s in skip_labels), label_vote, tuple(label_bins or ()))
    shuffle = task.template.shuffle if task.template is not None else None
    rng = np.random.RandomState(shuffle["seed"]) if shuffle else None
    examples = []
    for record in records:
        text_to_text = "outputs" in record.data and (task.template is None or text_to_text_source)
        if task.template is not None and task.template.extract and not text_to_text:
            record = _extracted(task.template.extract, record, task.name)
        if task.template is not None and task.template.select and not text_to_text:
            record = _selected(task.template.select, record, task.name)
        if task.template is not None and task.template.spans and not text_to_text:
            record = _with_spans(task.template.spans, record, task.name)
            if record is None:
                continue
        if skip_empty and not text_to_text:
            try:
                if any(_is_empty(resolve(record.data, f)) for f in skip_empty):
                    continue
            except _MissingField as exc:
                raise DataError(f"{record.where}: task {task.name!r}: skip_empty field {exc.args[0]!r} is missing; "
                                f"the row has fields {', '.join(record.data)}") from None
        if shuffle and not text_to_text:
            record = _shuffled(shuffle, rng, record, task.name)
        if text_to_text:
            text, refs = record.data["input"], list(record.data["outputs"])
        else:
            if task.template is None:
                raise DataError(f"{record.where}: task {task.name!r} has no template for this source")
            text = _render(task.template.input, record, task.name)
            refs = [] if rules else _references(task, record)
        label = -1
        if rules is not None:
            raw = refs[0] if text_to_text else _raw_label(task.template, record, task.name)
            index = rules.index(raw, record.where)
            if index is None:
                continue
            label, refs = index, [verbalizers[index]]
        if not text.strip():
            raise DataError(f"{record.where}: task {task.name!r}, split {split!r}: empty input text")
        if (not refs or not refs[0]) and skip_empty_target:
            continue
        if not refs or not refs[0]:
            raise DataError(f"{record.where}: task {task.name!r}, split {split!r}: no reference output")
        if task_prefix:
            text = f"[{task.name}] {text}"
        prompt = _render_prompt(task, record) if task.prompt and not text_to_text else ""
        examples.append(Example(record.idx, " ".join(text.split()), refs[0], tuple(refs), label, prompt))
    return examples


def _render_prompt(task: TaskSpec, record: Record) -> str:
    """The prompt template over the record's fields, with ``{mask}`` left in place for the head."""
    assert task.prompt is not None
    field = MASK.strip("{}")
    if field in record.data:
        raise DataError(f"{record.where}: task {task.name!r}: a field named {field!r} clashes with the prompt's {MASK}")
    fields = Record(record.where, record.idx, {**record.data, field: MASK})
    return " ".join(_render(task.prompt.template, fields, task.name).split())


def _raw_label(tpl: Template | None, record: Record, task: str) -> Any:
    assert tpl is not None and tpl.label is not None
    try:
        return resolve(record.data, tpl.label)
    except _MissingField:
        raise DataError(f"{record.where}: task {task!r}: label field {tpl.label!r} is missing; "
                        f"the row has fields {', '.join(record.data)}") from None


# --------------------------------------------------------------------------- splits


def _verbalizers(task: TaskSpec, loaded: LoadedSource) -> tuple[str, ...] | None:
    if task.kind != CLASSIFICATION:
        return None
    if not task.verbalizers_from_hub:
        return task.verbalizers
    field = task.template.label if task.template else None
    if field in loaded.class_names:
        return tuple(loaded.class_names[field])
    # Text-to-text files carry label strings: the verbalizers are the labels seen, sorted.
    seen = {out for recs in loaded.splits.values() for r in recs for out in r.data.get("outputs", [])[:1]}
    if not seen:
        raise PrepareError(f"task {task.name!r}: `verbalizers: hub` but the source has no class names "
                           f"for field {field!r}")
    return tuple(sorted(seen))


def _few_shot_class(task: TaskSpec):
    """What K-per-class sampling groups by: the label, or for a regression task the side of its
    ``pseudo_classes_at`` score (LM-BFF's STS-B: below 2.5 or not; survey notes A15)."""
    if task.pseudo_classes_at is None:
        return lambda ex: ex.target
    return lambda ex: float(ex.target) >= task.pseudo_classes_at


def default_k(task: TaskSpec) -> int:
    """IPT/CrossFit K: 16 per class for classification-style tasks, 32 in total otherwise."""
    return sampling.K_PER_CLASS if task.k_rule == PER_CLASS else sampling.K_TOTAL


def build_examples(task: TaskSpec, seed: int, options: PrepareOptions = PrepareOptions()
                   ) -> tuple[dict[str, list[Example]], tuple[str, ...] | None, dict[str, Any]]:
    """Sampled train/dev/test examples (untokenized), the verbalizers, and the source description."""
    if options.setting not in SETTINGS:
        raise PrepareError(f"setting must be one of {', '.join(SETTINGS)}, got {options.setting!r}")
    k = options.k or default_k(task)
    source = task.source_of_type(options.source)
    if source.type == "crossfit_tsv" and options.setting != "fewshot":
        raise PrepareError(f"task {task.name!r}: CrossFit TSV files are few-shot samples; "
                           f"use --setting fewshot or another source")
    loaded = load_source(task, source, data_dir=options.data_dir, k=k, seed=seed)
    verbalizers = _verbalizers(task, loaded)
    render = {split: to_examples(task, records, split, verbalizers, source.get("label_map"),
                                 source.get("skip_labels") or (), options.task_prefix,
                                 skip_empty=source.get("skip_empty") or (), label_vote=source.get("label_vote"),
                                 label_bins=source.get("label_bins") or (),
                                 text_to_text_source=is_text_to_text(source),
                                 skip_empty_target=bool(source.get("skip_empty_target")))
              for split, records in loaded.splits.items()}
    if loaded.holdout:
        render["train"], render["test"] = sampling.holdout_split(render["train"], loaded.holdout, HOLDOUT_SEED)
    if loaded.presampled:
        splits = {split: render[split] for split in SPLITS}
    else:
        pool = render["train"]
        if options.setting == "full":
            train, dev = sampling.full(pool, seed, options.max_train, options.max_dev)
        elif task.k_rule == PER_CLASS:
            train, dev = sampling.fewshot_per_class(pool, k, seed, key=_few_shot_class(task))
        else:
            train, dev = sampling.fewshot_total(pool, k, seed)
        splits = {"train": train, "dev": dev, "test": render["test"]}
    splits["test"] = sampling.subsample(splits["test"], options.max_test, TEST_SUBSAMPLE_SEED)
    for split in SPLITS:
        if not splits[split]:
            raise PrepareError(f"task {task.name!r}: split {split!r} is empty "
                               f"(source {source.type}: {len(render['train'])} train-pool and {len(render['test'])} "
                               f"test examples; setting {options.setting}, K={k})")
    check_disjoint(task.name, splits)
    return splits, verbalizers, loaded.description


def example_key(example: Example) -> str:
    """The content hash that decides whether two examples are the same: input and target."""
    return hashlib.sha256(json.dumps([example.input, example.target]).encode()).hexdigest()


def check_disjoint(task: str, splits: Mapping[str, Sequence[Example]]) -> None:
    """A test example may not also be a train or dev example (same input and target): the test
    score would measure memory. One line names the task, the row and the split it repeats."""
    seen: dict[str, tuple[str, Example]] = {}
    for split in ("train", "dev"):
        for example in splits.get(split, ()):
            seen.setdefault(example_key(example), (split, example))
    for example in splits.get("test", ()):
        hit = seen.get(example_key(example))
        if hit is not None:
            raise PrepareError(f"task {task!r}: test example {example.idx} ({example.input[:60]!r} -> "
                               f"{example.target!r}) is also {hit[0]} example {hit[1].idx}: expected the test "
                               f"split to share no (input, target) with train or dev; remove the duplicate "
                               f"from the source")


# --------------------------------------------------------------------------- writing


def tokenize(examples: Sequence[Example], tokenizer: Any, encoder: bool, max_input_length: int,
             max_target_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids (truncated, unpadded) and, for seq2seq backbones, target ids."""
    if not examples:
        return [], []
    inputs = tokenizer([e.input for e in examples], truncation=True, max_length=max_input_length)["input_ids"]
    if encoder:
        return inputs, [[] for _ in examples]
    targets = tokenizer(text_target=[e.target for e in examples], truncation=True,
                        max_length=max_target_length)["input_ids"]
    return inputs, targets


#: Where a decoder-only prompt puts the task input; the rest of the prompt is the format's.
_SLOT = "\u0000INPUT\u0000"


def decoder_prompt(tokenizer: Any, chat: bool) -> tuple[str, str, str]:
    """(text before the input, text after it, text in front of the target) of a decoder's prompt.

    Instruction-tuned models (``chat``) get the tokenizer's chat template with the input as the
    user's message and the answer as the assistant's; base models get ``{input}\nAnswer:`` and
    `` {target}``."""
    if chat and getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False,
                                                 add_generation_prompt=True)
        before, after = rendered.split(_SLOT)
        return before, after, ""
    return "", "\nAnswer:", " "


def tokenize_decoder(examples: Sequence[Example], tokenizer: Any, chat: bool, max_input_length: int,
                     max_target_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids and target ids for a decoder-only backbone: the model reads prompt + target and
    learns the target tokens only. The input is truncated inside the prompt, so the answer cue
    stays at its end; the target ends with EOS, where greedy decoding stops. A leading special
    token the tokenizer adds (Llama 3's BOS) is kept; a trailing one (ByT5's EOS) is dropped."""
    if not examples:
        return [], []
    before, after, lead = decoder_prompt(tokenizer, chat)

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    full, bare = tokenizer("a")["input_ids"], ids("a")
    start = list(full[:len(full) - len(bare)]) if full[-len(bare):] == bare else []
    head, tail = start + ids(before), ids(after)
    budget = max(1, max_input_length - len(head) - len(tail))
    eos = tokenizer.eos_token_id
    inputs = [head + ids(e.input)[:budget] + tail for e in examples]
    targets = [ids(lead + e.target)[:max(1, max_target_length - 1)] + [eos] for e in examples]
    return inputs, targets


def _table(examples: Sequence[Example], input_ids: list[list[int]], target_ids: list[list[int]]) -> pa.Table:
    return pa.table({
        "idx": [e.idx for e in examples],
        "input": [e.input for e in examples],
        "target": [e.target for e in examples],
        "references": [list(e.references) for e in examples],
        "label": [e.label for e in examples],
        "input_ids": input_ids,
        "target_ids": target_ids,
        "prompt": [e.prompt for e in examples],
    }, schema=SCHEMA)


def content_sha256(tables: Mapping[str, pa.Table]) -> str:
    """SHA-256 of the rows of every split (canonical JSON), independent of the Parquet encoding."""
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(f"[{split}]\n".encode())
        for row in tables[split].to_pylist():
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _label_counts(examples: Sequence[Example], verbalizers: tuple[str, ...] | None) -> dict[str, int]:
    if not verbalizers:
        return {}
    counts = Counter(e.label for e in examples)
    return {v: counts.get(i, 0) for i, v in enumerate(verbalizers)}


def prepare_task(task: TaskSpec | str, out_dir: str | os.PathLike, *, seed: int, backbone: str,
                 options: PrepareOptions = PrepareOptions(), tokenizer: Any = None,
                 registry: Registry | None = None, force: bool = False) -> dict[str, Any]:
    """Prepare one task into ``out_dir`` and return its manifest.

    ``tokenizer`` defaults to ``deltaspace.backbones.load_tokenizer(backbone)``; whether targets
    are tokenized follows the backbone's kind (encoders get empty ``target_ids``). A folder that
    already holds this exact request with intact content is left untouched unless ``force``.
    """
    from deltaspace import backbones
    from deltaspace.data.registry import load_registry

    registry = registry or load_registry()
    spec = registry.get(task) if isinstance(task, str) else task
    backbone_spec = backbones.backbone_spec(backbone)
    encoder = backbone_spec.kind == backbones.ENCODER
    if encoder and spec.kind == GENERATION:
        # Regression is fine: the rows keep the number as `target` text, which the trainable
        # classifier head (`--head classifier`) or the masked-LM heads' two label words regress on.
        raise PrepareError(f"task {spec.name!r} is {spec.kind}; encoder backbone {backbone!r} has a label head "
                           f"(or a trainable classifier) and runs classification and regression tasks only")
    max_in = options.max_input_length or spec.max_input_length or DEFAULT_MAX_INPUT_LENGTH
    max_out = options.max_target_length or spec.max_target_length or DEFAULT_MAX_TARGET_LENGTH
    k = (options.k or default_k(spec)) if options.setting == "fewshot" else None
    request = {**asdict(options), "task": spec.name, "seed": seed, "backbone": backbone, "k": k,
               "max_input_length": max_in, "max_target_length": max_out}
    out = Path(out_dir)
    if not force and _is_prepared(out, request):
        return json.loads((out / MANIFEST).read_text(encoding="utf-8"))

    splits, verbalizers, source = build_examples(spec, seed, options)
    tokenizer = tokenizer if tokenizer is not None else backbones.load_tokenizer(backbone)
    if backbone_spec.kind == backbones.DECODER:
        tables = {split: _table(examples, *tokenize_decoder(examples, tokenizer, backbone_spec.chat, max_in, max_out))
                  for split, examples in splits.items()}
    else:
        tables = {split: _table(examples, *tokenize(examples, tokenizer, encoder, max_in, max_out))
                  for split, examples in splits.items()}
    manifest = {
        "format_version": FORMAT_VERSION,
        "task": spec.name,
        "category": spec.category,
        "ontology": spec.ontology,
        "metric": registry.metric_for(spec.name, options.paper) if options.paper else spec.metric,
        "kind": spec.kind,
        "verbalizers": list(verbalizers) if verbalizers else None,
        "backbone": backbone,
        "setting": options.setting,
        "k": k,
        "k_rule": spec.k_rule if options.setting == "fewshot" else None,
        "seed": seed,
        "sizes": {split: len(examples) for split, examples in splits.items()},
        "label_counts": {split: _label_counts(examples, verbalizers) for split, examples in splits.items()},
        "source": source,
        "content_sha256": content_sha256(tables),
        "max_input_length": max_in,
        "max_target_length": max_out,
        "task_prefix": options.task_prefix,
        "prompt": prompt_manifest(spec.prompt) if spec.prompt else None,
        "request": request,
    }
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    if manifest_path.exists():  # the folder is about to change: never leave a stale manifest behind
        manifest_path.unlink()
    for split, table in tables.items():
        atomic_write(out / f"{split}.parquet", lambda tmp, t=table: pq.write_table(t, tmp))
    _write_json(manifest_path, manifest)
    return manifest


def _is_prepared(out: Path, request: Mapping[str, Any]) -> bool:
    path = out / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("request") != json.loads(json.dumps(request)):
            return False
        load_prepared(out, verify=True)
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return False
    return True


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class PreparedTask:
    """A prepared task folder: its manifest and one Arrow table per split."""

    folder: Path
    manifest: dict[str, Any]
    tables: dict[str, pa.Table]

    @property
    def verbalizers(self) -> list[str] | None:
        return self.manifest["verbalizers"]

    def rows(self, split: str) -> list[dict[str, Any]]:
        """The rows of a split as dicts (``input_ids`` etc. as Python lists)."""
        return self.tables[split].to_pylist()

    def frame(self, split: str):
        """The rows of a split as a pandas DataFrame."""
        return self.tables[split].to_pandas()


def load_prepared(folder: str | os.PathLike, verify: bool = True) -> PreparedTask:
    """Read a folder written by :func:`prepare_task`; ``verify`` re-checks its content hash."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise PrepareError(f"{folder}: not a prepared task folder (no {MANIFEST}); run `deltaspace prepare`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PrepareError(f"{path}: not valid JSON ({exc}); run `deltaspace prepare` again") from None
    tables = {}
    for split in SPLITS:
        split_path = folder / f"{split}.parquet"
        if not split_path.is_file():
            raise PrepareError(f"{split_path}: missing from the prepared task folder; run `deltaspace prepare` again")
        try:
            table = pq.read_table(split_path)
        except (OSError, pa.ArrowException) as exc:
            raise PrepareError(f"{split_path}: cannot read Parquet ({exc}); run `deltaspace prepare` again") from None
        if table.schema != SCHEMA:
            raise PrepareError(f"{folder / f'{split}.parquet'}: schema differs from the data contract:\n"
                               f"{table.schema}\nexpected:\n{SCHEMA}")
        tables[split] = table
    if verify and content_sha256(tables) != manifest["content_sha256"]:
        raise PrepareError(f"{folder}: content does not match the manifest's content_sha256; prepare it again")
    return PreparedTask(folder, manifest, tables)
