"""The task registry: every task of every paper, defined once in ``config/tasks/*.yaml``.

A task entry says where the data comes from (a hub dataset, CrossFit TSV files, local files or an
offline quickstart corpus), how a record becomes a text-to-text example (the template and, for
classification, the label verbalizers), what kind of task it is and how the papers score it.
Papers and their task splits (train/test roles, groups) live in the same folder and refer to
tasks by name, so a task shared by several papers has exactly one definition.

The YAML is validated when it is loaded: a typo in a key, an unknown metric or a split naming a
task that does not exist fails at once with the file and line, before any job runs.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from deltaspace.data.metrics import canonical_metric

TASKS_DIR_ENV = "DELTASPACE_TASKS_DIR"

CLASSIFICATION, GENERATION, REGRESSION = "classification", "generation", "regression"
KINDS = (CLASSIFICATION, GENERATION, REGRESSION)
PER_CLASS, TOTAL = "per_class", "total"
K_RULES = (PER_CLASS, TOTAL)
VERBALIZERS_FROM_HUB = "hub"

# Source types and the keys each accepts (beyond `type`); required keys first in REQUIRED.
_COMMON_SOURCE_KEYS = {"label_map", "skip_labels", "skip_empty", "skip_empty_target", "label_vote", "label_bins"}
_FILE_SOURCE_KEYS = {"train", "test", "holdout", "encoding", "delimiter", "builder"}
SOURCE_KEYS: dict[str, set[str]] = {
    "hub": {"id", "config", "train", "test", "holdout", "revision", "data_files", "builder"},
    "crossfit_tsv": {"encoding"},
    "tsv": _FILE_SOURCE_KEYS - {"builder"},
    "jsonl": _FILE_SOURCE_KEYS,
    "csv": _FILE_SOURCE_KEYS,
    "parquet": _FILE_SOURCE_KEYS,
    "url": {"url", "file", "format", "holdout", "encoding", "builder"},  # a public file, downloaded once
    "quickstart": {"corpus", "pool", "pools", "test_size"},
}
TEXT_TO_TEXT_SOURCES = ("crossfit_tsv", "tsv")  # already input/output lines: no template needed
REQUIRED_SOURCE_KEYS = {"hub": ("id",), "tsv": ("train",), "jsonl": ("train",), "csv": ("train",),
                        "parquet": ("train",), "url": ("url", "file", "holdout"), "quickstart": ("corpus",)}
URL_FORMATS = ("jsonl", "csv", "parquet")  # what a url source's file may be (`format`, default: its suffix)

TASK_KEYS = {"ontology", "kind", "metric", "verbalizers", "k", "source", "template", "alternatives",
             "exact", "aliases", "papers", "max_input_length", "max_target_length", "notes", "prompt",
             "pseudo_classes_at"}
REQUIRED_TASK_KEYS = ("ontology", "kind", "metric", "source")
TEMPLATE_KEYS = {"input", "target", "label", "choices", "answer", "answer_offset", "shuffle", "extract",
                 "select", "spans"}
SPAN_KEYS = {"tokens", "tags", "begin", "inside", "into"}
EXTRACT_KEYS = {"field", "pattern", "example"}
SELECT_KEYS = {"field", "where", "in", "into"}
SHUFFLE_KEYS = {"fields", "seed", "draw"}
SHUFFLE_DRAWS = ("coin", "permute")  # coin: two fields, kept in order when random() > 0.5; permute: np shuffle
SHUFFLED, SHUFFLED_GOLD = "shuffled", "shuffled_gold"  # the record fields a `shuffle` adds
LABEL_VOTES = ("majority",)
PROMPT_KEYS = {"template", "label_words", "range"}
MASK = "{mask}"  # where a prompt template puts the masked-LM's [MASK]
REGRESSION_WORDS = ("low", "high")  # a regression prompt's two label words: the ends of its range
PAPER_KEYS = {"title", "splits", "tables", "metrics", "data_seeds", "notes"}
SPLIT_KEYS = {"roles", "groups", "metrics", "notes"}

# Short categories, from CrossFit's ontology (Ye et al. 2021), for grouping and display.
ONTOLOGY_CATEGORIES = {
    "cls/sentiment analysis": "sentiment",
    "cls/emotion": "emotion",
    "cls/hate speech detection": "hate-speech",
    "cls/NLI": "NLI",
    "cls/fact checking": "fact-checking",
    "cls/paraphrase": "paraphrase",
    "cls/topic": "topic",
    "cls/other": "cls-other",
    "qa/closed-book qa": "CB-QA",
    "qa/binary": "binary-QA",
    "qa/multiple-choice qa": "MC-QA",
    "qa/long-form qa": "LF-QA",
    "qa/MRC": "MRC",
    "cg/summarization": "summarization",
    "cg/dialogue": "dialogue",
    "cg/other": "cg-other",
    "other/linguistic phenomenon": "linguistic",
    "other/generate explanation": "explanation",
    "other/slot_filling": "slot-filling",
    "other/entity linking": "entity-linking",
    "other/other": "other",
}


class RegistryError(ValueError):
    """The task registry YAML is invalid, or a name does not resolve."""


class UnknownTaskError(RegistryError, KeyError):
    """A task name that is neither a registered task nor an alias."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


# --------------------------------------------------------------------------- YAML with lines


class _Node(dict):
    """A YAML mapping that remembers where it was written, for error messages."""

    where: str = "?"


def _yaml_loader(path: Path) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Node:
        mapping = _Node()
        mapping.where = f"{path}:{node.start_mark.line + 1}"
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in mapping:
                raise RegistryError(f"{path}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            value = loader.construct_object(value_node, deep=True)
            if isinstance(value, _Node):  # point errors at the line naming the entry
                value.where = f"{path}:{key_node.start_mark.line + 1}"
            mapping[key] = value
        return mapping

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def _read_yaml(path: Path) -> _Node:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader(path))  # noqa: S506
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return _Node()
    if not isinstance(data, _Node):
        raise RegistryError(f"{path}: top level must be a mapping with `tasks`, `defaults` or `papers`")
    return data


def _where(node: Any, fallback: str) -> str:
    return getattr(node, "where", fallback)


def _check_keys(node: Mapping, allowed: set[str], what: str, where: str) -> None:
    unknown = sorted(set(node) - allowed)
    if unknown:
        raise RegistryError(f"{where}: {what}: unknown key(s) {', '.join(map(repr, unknown))}; "
                            f"valid keys: {', '.join(sorted(allowed))}")


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class SourceSpec:
    """Where a task's records come from: a type (hub, crossfit_tsv, tsv, jsonl, csv, parquet, url,
    quickstart) and its options (see ``SOURCE_KEYS``). A ``builder`` option names a row builder
    (:mod:`deltaspace.data.builders`) that turns the source's rows into input/output lines."""

    type: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description, for manifests and `tasks show`."""
        return {"type": self.type, **{k: v for k, v in self.options.items()}}


def is_text_to_text(source: SourceSpec) -> bool:
    """Whether a source gives input/output lines itself: CrossFit TSV and TSV files, and any source
    whose row ``builder`` (:mod:`deltaspace.data.builders`) turns its rows into such lines."""
    return source.type in TEXT_TO_TEXT_SOURCES or bool(source.get("builder"))


@dataclass(frozen=True)
class Template:
    """How one record becomes (input, target text): Python format strings over record fields.

    Fields are dotted paths (``answers.text``); a path through a list maps over its elements.
    ``{field:options}`` renders a list as ``(A) x (B) y``; ``{field:join}`` joins a list with
    spaces, ``:lower`` lower-cases, ``:nospace`` removes spaces (chained: ``{f:nospace|lower}``); a
    digit path part indexes a list (``{shuffled.0}``). Classification names the ``label``
    field (mapped through the verbalizers); generation gives a ``target`` format, or ``choices``
    (a list field, or a list of fields) plus ``answer`` (the index field: an int, a letter, or a
    digit string; ``answer_offset`` is subtracted, e.g. 1 for 1-based answers).
    ``shuffle`` (``{fields: [...], seed: S, draw: coin|permute}``) puts the named fields' values in a
    seeded random order per row, as CrossFit's builders do with ``np.random.seed(S)`` once per
    split: the record gains ``shuffled`` (the values in that order) and ``shuffled_gold`` (where the
    first field's value went). ``extract`` (``{field: F, pattern: REGEX}`` or a list of them) matches
    the regular expression at the start of a string field (``.`` matches newlines too) and adds its
    named groups as record fields (a group that took no part: ""); a row it does not match fails.
    Each gives an ``example`` value of the field, which the pattern must match (checked on load; the
    schema tests build their rows from it). ``select`` (``{field: F, where: W, in: L, into: NAME}`` or a
    list) adds ``NAME``: the items of list ``F`` whose parallel item of list ``W`` is in list ``L``
    (hotpot_qa's paragraphs whose title is a supporting fact). ``{x:concat}`` joins each inner list
    of ``x`` without a separator (a flat list: the whole list). ``spans`` (``{tokens: T, tags: G,
    begin: b, inside: i, into: NAME}`` or a list) adds ``NAME``: the tokens of the span that starts at
    the one token tagged ``b`` and goes on over the tokens tagged ``i`` after it, joined with spaces;
    a row without exactly one ``b`` tag is dropped (acronym_identification's BIO tags).
    """

    input: str
    target: str | None = None
    label: str | None = None
    choices: str | tuple[str, ...] | None = None
    answer: str | None = None
    answer_offset: int = 0
    shuffle: Mapping[str, Any] | None = None
    extract: tuple[Mapping[str, Any], ...] = ()
    select: tuple[Mapping[str, Any], ...] = ()
    spans: tuple[Mapping[str, Any], ...] = ()

    @property
    def derived_fields(self) -> tuple[str, ...]:
        """Record fields the template adds itself (not the dataset's)."""
        import re

        groups = tuple(g for ex in self.extract for g in re.compile(ex["pattern"]).groupindex)
        selected = tuple(sel["into"] for sel in (*self.select, *self.spans))
        return groups + selected + ((SHUFFLED, SHUFFLED_GOLD) if self.shuffle else ())


@dataclass(frozen=True)
class Prompt:
    """A task's prompt for masked-LM classification (LM-BFF; the survey's Table 4): a format string
    over record fields with one ``{mask}``, and the label word the [MASK] should become per
    verbalizer. A regression prompt has two words, ``low`` and ``high``, for the ends of ``range``:
    the prediction interpolates between them by the probability of ``high``."""

    template: str
    label_words: Mapping[str, str]
    range: tuple[float, float] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One task of the registry. ``category`` is derived from CrossFit's ``ontology``."""

    name: str
    ontology: str
    kind: str
    metric: str
    k_rule: str
    source: SourceSpec
    template: Template | None
    verbalizers: tuple[str, ...] | None = None
    verbalizers_from_hub: bool = False
    alternatives: tuple[SourceSpec, ...] = ()
    exact: bool = False
    aliases: tuple[str, ...] = ()
    papers: tuple[str, ...] = ()
    max_input_length: int | None = None
    max_target_length: int | None = None
    notes: str = ""
    defined_in: str = ""
    prompt: Prompt | None = None
    pseudo_classes_at: float | None = None  # regression, k: per_class: targets below / at or above it

    @property
    def category(self) -> str:
        return ONTOLOGY_CATEGORIES[self.ontology]

    @property
    def sources(self) -> tuple[SourceSpec, ...]:
        return (self.source, *self.alternatives)

    def usable(self, source: SourceSpec) -> bool:
        """Whether a source can be prepared: it is text-to-text already (CrossFit TSV, or a source
        with a row ``builder``), or the task has a template."""
        return self.template is not None or is_text_to_text(source)

    def source_of_type(self, source_type: str | None) -> SourceSpec:
        """The first usable source, or the one of the given type; fails listing the available ones."""
        if source_type is None:
            return next(s for s in self.sources if self.usable(s))
        for spec in self.sources:
            if spec.type == source_type:
                if not self.usable(spec):
                    raise RegistryError(f"task {self.name!r} has no template for its {source_type} source "
                                        f"({self.notes or 'see its registry entry'}); "
                                        f"use one of: {', '.join(s.type for s in self.sources if self.usable(s))}")
                return spec
        raise RegistryError(f"task {self.name!r} has no {source_type!r} source; "
                            f"available: {', '.join(s.type for s in self.sources)}")

    def describe(self) -> dict[str, Any]:
        """A JSON-able view of the entry, for `deltaspace tasks show` and manifests."""
        return {
            "task": self.name, "category": self.category, "ontology": self.ontology, "kind": self.kind,
            "metric": self.metric, "k_rule": self.k_rule,
            "verbalizers": list(self.verbalizers) if self.verbalizers else
            (VERBALIZERS_FROM_HUB if self.verbalizers_from_hub else None),
            "sources": [s.describe() for s in self.sources],
            "template": None if self.template is None else
            {k: v for k, v in vars(self.template).items() if v not in (None, 0)},
            "exact": self.exact, "aliases": list(self.aliases), "papers": list(self.papers),
            "max_input_length": self.max_input_length, "max_target_length": self.max_target_length,
            "notes": self.notes, "defined_in": self.defined_in,
            "prompt": None if self.prompt is None else prompt_manifest(self.prompt),
            "pseudo_classes_at": self.pseudo_classes_at,
        }


def prompt_manifest(prompt: Prompt) -> dict[str, Any]:
    """A prompt as JSON (prepared manifests carry it to the masked-LM heads)."""
    return {"template": prompt.template, "label_words": dict(prompt.label_words),
            "range": list(prompt.range) if prompt.range else None}


@dataclass(frozen=True)
class SplitMember:
    task: str
    role: str
    group: str = ""


@dataclass(frozen=True)
class SplitSpec:
    """A named task split of one paper: members with roles (train/test/...) and optional groups."""

    paper: str
    name: str
    members: tuple[SplitMember, ...]
    metrics: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""

    def tasks(self, role: str | None = None) -> list[str]:
        """Task names (first occurrence order), optionally of one role."""
        seen: dict[str, None] = {}
        for m in self.members:
            if role is None or m.role == role:
                seen.setdefault(m.task)
        return list(seen)

    @property
    def roles(self) -> list[str]:
        return list(dict.fromkeys(m.role for m in self.members))


@dataclass(frozen=True)
class PaperSpec:
    """A paper: its splits, which tables draw on which split/role, and paper-level metric rules."""

    name: str
    title: str
    splits: Mapping[str, SplitSpec]
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    metrics: Mapping[str, str] = field(default_factory=dict)
    data_seeds: tuple[int, ...] = ()
    notes: str = ""


# --------------------------------------------------------------------------- parsing


def _parse_source(node: Any, where: str) -> SourceSpec:
    if not isinstance(node, Mapping) or "type" not in node:
        raise RegistryError(f"{where}: a source must be a mapping with a `type` "
                            f"(one of {', '.join(SOURCE_KEYS)})")
    where = _where(node, where)
    stype = node["type"]
    if stype not in SOURCE_KEYS:
        raise RegistryError(f"{where}: unknown source type {stype!r}; valid: {', '.join(SOURCE_KEYS)}")
    _check_keys(node, SOURCE_KEYS[stype] | _COMMON_SOURCE_KEYS | {"type"}, f"{stype} source", where)
    for key in REQUIRED_SOURCE_KEYS.get(stype, ()):
        if key not in node:
            raise RegistryError(f"{where}: {stype} source needs key {key!r}")
    builder = node.get("builder")
    if builder is not None:
        from deltaspace.data.builders import UnknownBuilderError, get_builder

        try:
            get_builder(builder)
        except UnknownBuilderError as exc:
            raise RegistryError(f"{where}: {stype} source: {exc}") from None
    if stype == "url":
        url, fmt = str(node["url"]), node.get("format", Path(str(node["file"])).suffix.lstrip("."))
        if not url.startswith(("https://", "http://")):
            raise RegistryError(f"{where}: url source: `url` must be an http(s) address, got {url!r}")
        if fmt not in URL_FORMATS:
            raise RegistryError(f"{where}: url source: format {fmt!r} (give `format:`, or a `file` ending in "
                                f"one of {', '.join('.' + f for f in URL_FORMATS)}); valid: {', '.join(URL_FORMATS)}")
        if Path(str(node["file"])).is_absolute() or ".." in Path(str(node["file"])).parts:
            raise RegistryError(f"{where}: url source: `file` is a relative path inside the download folder, "
                                f"got {node['file']!r}")
    holdout = node.get("holdout")
    if holdout is not None and not (isinstance(holdout, float) and 0 < holdout < 1):
        raise RegistryError(f"{where}: `holdout` must be a fraction in (0, 1), got {holdout!r}")
    if not isinstance(node.get("skip_empty_target", False), bool):
        raise RegistryError(f"{where}: `skip_empty_target` must be true or false")
    skip_empty = node.get("skip_empty")
    if skip_empty is not None:
        _str_list(skip_empty, "skip_empty", where)
    vote = node.get("label_vote")
    if vote is not None and vote not in LABEL_VOTES:
        raise RegistryError(f"{where}: `label_vote` must be one of {', '.join(LABEL_VOTES)}, got {vote!r}")
    bins = node.get("label_bins")
    if bins is not None:
        def is_bin(b: Any) -> bool:
            if not (isinstance(b, Mapping) and set(b) in ({"below", "label"}, {"above", "label"})):
                return False
            bound = b.get("below", b.get("above"))
            return isinstance(bound, (int, float)) and not isinstance(bound, bool)

        if not (isinstance(bins, list) and bins and all(is_bin(b) for b in bins)):
            raise RegistryError(f"{where}: `label_bins` must be a list of {{below: x, label: L}} / "
                                f"{{above: x, label: L}} (a row in no bin is skipped), got {bins!r}")
    options = {k: v for k, v in node.items() if k != "type"}
    return SourceSpec(stype, MappingProxyType(options))


def _parse_extract(node: Any, where: str) -> tuple[dict[str, Any], ...]:
    import re

    if node is None:
        return ()
    items = node if isinstance(node, list) else [node]
    out = []
    for item in items:
        if not isinstance(item, Mapping) or not all(isinstance(item.get(k), str) for k in EXTRACT_KEYS):
            raise RegistryError(f"{where}: template `extract` must be {{field: F, pattern: REGEX, example: VALUE}} "
                                f"or a list of them, got {item!r}")
        _check_keys(item, EXTRACT_KEYS, "template extract", where)
        try:
            groups = re.compile(item["pattern"]).groupindex
        except re.error as exc:
            raise RegistryError(f"{where}: template extract pattern {item['pattern']!r}: {exc}") from None
        if not groups:
            raise RegistryError(f"{where}: template extract pattern {item['pattern']!r} has no named group "
                                f"(?P<name>...): it would add no field")
        if re.match(item["pattern"], item["example"], re.DOTALL) is None:
            raise RegistryError(f"{where}: template extract pattern {item['pattern']!r} does not match its example "
                                f"{item['example']!r}")
        out.append({"field": item["field"], "pattern": item["pattern"], "example": item["example"]})
    return tuple(out)


def _parse_select(node: Any, where: str) -> tuple[dict[str, Any], ...]:
    if node is None:
        return ()
    items = node if isinstance(node, list) else [node]
    out = []
    for item in items:
        if not isinstance(item, Mapping) or not all(isinstance(item.get(k), str) and item[k] for k in SELECT_KEYS):
            raise RegistryError(f"{where}: template `select` must be {{field: F, where: W, in: L, into: NAME}} "
                                f"or a list of them, got {item!r}")
        _check_keys(item, SELECT_KEYS, "template select", where)
        out.append({k: item[k] for k in ("field", "where", "in", "into")})
    return tuple(out)


def _parse_spans(node: Any, where: str) -> tuple[dict[str, Any], ...]:
    if node is None:
        return ()
    items = node if isinstance(node, list) else [node]
    out = []
    for item in items:
        ok = isinstance(item, Mapping) and all(isinstance(item.get(k), str) and item[k] for k in ("tokens", "tags", "into")) \
            and all(isinstance(item.get(k), (int, str)) and not isinstance(item.get(k), bool) for k in ("begin", "inside"))
        if not ok:
            raise RegistryError(f"{where}: template `spans` must be {{tokens: T, tags: G, begin: TAG, inside: TAG, "
                                f"into: NAME}} or a list of them, got {item!r}")
        _check_keys(item, SPAN_KEYS, "template spans", where)
        out.append({k: item[k] for k in ("tokens", "tags", "begin", "inside", "into")})
    return tuple(out)


def _parse_shuffle(node: Any, where: str) -> dict[str, Any] | None:
    if node is None:
        return None
    if not isinstance(node, Mapping):
        raise RegistryError(f"{where}: template `shuffle` must be a mapping with keys "
                            f"{', '.join(sorted(SHUFFLE_KEYS))}")
    _check_keys(node, SHUFFLE_KEYS, "template shuffle", where)
    fields = _str_list(node.get("fields"), "shuffle.fields", where)
    seed, draw = node.get("seed"), node.get("draw", "permute")
    if len(fields) < 2:
        raise RegistryError(f"{where}: template shuffle needs at least two `fields`, got {list(fields)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise RegistryError(f"{where}: template shuffle needs an integer `seed` (the builder's np.random.seed), "
                            f"got {seed!r}")
    if draw not in SHUFFLE_DRAWS:
        raise RegistryError(f"{where}: template shuffle `draw` must be one of {', '.join(SHUFFLE_DRAWS)}, "
                            f"got {draw!r}")
    if draw == "coin" and len(fields) != 2:
        raise RegistryError(f"{where}: template shuffle `draw: coin` orders exactly two fields, got {list(fields)}")
    return {"fields": list(fields), "seed": seed, "draw": draw}


def _parse_template(node: Any, kind: str, where: str) -> Template | None:
    if node is None:
        return None
    if not isinstance(node, Mapping) or not isinstance(node.get("input"), str):
        raise RegistryError(f"{where}: template must be a mapping with an `input` format string")
    where = _where(node, where)
    _check_keys(node, TEMPLATE_KEYS, "template", where)
    choices = node.get("choices")
    if isinstance(choices, list):
        choices = tuple(choices)
    tpl = Template(input=node["input"], target=node.get("target"), label=node.get("label"), choices=choices,
                   answer=node.get("answer"), answer_offset=int(node.get("answer_offset", 0)),
                   shuffle=_parse_shuffle(node.get("shuffle"), where),
                   extract=_parse_extract(node.get("extract"), where),
                   select=_parse_select(node.get("select"), where),
                   spans=_parse_spans(node.get("spans"), where))
    if kind == CLASSIFICATION and not tpl.label:
        raise RegistryError(f"{where}: a classification template needs `label` (the gold label field)")
    if kind != CLASSIFICATION and tpl.label:
        raise RegistryError(f"{where}: `label` is for classification; a {kind} template uses `target`")
    if kind == GENERATION and not tpl.target and not (tpl.choices and tpl.answer):
        raise RegistryError(f"{where}: a generation template needs `target`, or `choices` with `answer`")
    if kind == REGRESSION and not tpl.target:
        raise RegistryError(f"{where}: a regression template needs `target`")
    return tpl


def _parse_prompt(node: Any, kind: str, verbalizers: tuple[str, ...] | None, where: str) -> Prompt | None:
    if node is None:
        return None
    if not isinstance(node, Mapping) or not isinstance(node.get("template"), str) \
            or not isinstance(node.get("label_words"), Mapping):
        raise RegistryError(f"{where}: prompt must be a mapping with a `template` string and `label_words`")
    where = _where(node, where)
    _check_keys(node, PROMPT_KEYS, "prompt", where)
    template, words = node["template"], {str(k): v for k, v in node["label_words"].items()}
    if template.count(MASK) != 1:
        raise RegistryError(f"{where}: prompt template {template!r} must contain {MASK} exactly once")
    if not all(isinstance(w, str) and w.strip() for w in words.values()):
        raise RegistryError(f"{where}: prompt label_words must map to non-empty words, got {words}")
    if len(set(words.values())) != len(words):
        raise RegistryError(f"{where}: prompt label_words repeat a word: {words}")
    if kind == REGRESSION:
        expected, rng = set(REGRESSION_WORDS), node.get("range")
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)
                and rng[0] < rng[1]):
            raise RegistryError(f"{where}: a regression prompt needs `range: [low, high]` (the target's ends), "
                                f"got {rng!r}")
        rng = (float(rng[0]), float(rng[1]))
    elif kind == CLASSIFICATION:
        if "range" in node:
            raise RegistryError(f"{where}: `range` is for regression prompts")
        expected, rng = set(verbalizers) if verbalizers else set(words), None
    else:
        raise RegistryError(f"{where}: prompts are for classification and regression tasks, kind is {kind}")
    if set(words) != expected:
        raise RegistryError(f"{where}: prompt label_words must have exactly the keys {sorted(expected)}, "
                            f"got {sorted(words)}")
    return Prompt(template=template, label_words=MappingProxyType(words), range=rng)


def _str_list(value: Any, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RegistryError(f"{where}: `{what}` must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _parse_task(name: str, node: Any, defaults: Mapping, file_where: str) -> TaskSpec:
    if not isinstance(node, Mapping):
        raise RegistryError(f"{file_where}: task {name!r} must be a mapping")
    where = _where(node, file_where)
    merged = {**defaults, **node}
    _check_keys(merged, TASK_KEYS, f"task {name!r}", where)
    for key in REQUIRED_TASK_KEYS:
        if key not in merged:
            raise RegistryError(f"{where}: task {name!r} needs key {key!r}")
    ontology, kind = merged["ontology"], merged["kind"]
    if ontology not in ONTOLOGY_CATEGORIES:
        close = difflib.get_close_matches(str(ontology), ONTOLOGY_CATEGORIES, n=3)
        raise RegistryError(f"{where}: task {name!r}: unknown ontology {ontology!r}"
                            + (f"; close: {', '.join(close)}" if close else "")
                            + f"; valid: {', '.join(ONTOLOGY_CATEGORIES)}")
    if kind not in KINDS:
        raise RegistryError(f"{where}: task {name!r}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    try:
        metric = canonical_metric(str(merged["metric"]))
    except ValueError as exc:
        raise RegistryError(f"{where}: task {name!r}: {exc}") from None
    k_rule = merged.get("k", PER_CLASS if kind == CLASSIFICATION else TOTAL)
    if k_rule not in K_RULES:
        raise RegistryError(f"{where}: task {name!r}: k must be one of {', '.join(K_RULES)}, got {k_rule!r}")
    threshold = merged.get("pseudo_classes_at")
    if threshold is not None and (kind != REGRESSION or isinstance(threshold, bool)
                                  or not isinstance(threshold, (int, float))):
        raise RegistryError(f"{where}: task {name!r}: pseudo_classes_at (a number splitting the targets into two "
                            f"few-shot classes) is for regression tasks, got {threshold!r} on a {kind} task")
    if kind == REGRESSION and k_rule == PER_CLASS and threshold is None:
        raise RegistryError(f"{where}: task {name!r}: a regression task samples K per class only with "
                            "`pseudo_classes_at` (the score that splits it into two classes, e.g. 2.5 for STS-B)")
    verbalizers, from_hub = None, False
    raw_verb = merged.get("verbalizers")
    if kind == CLASSIFICATION:
        if raw_verb == VERBALIZERS_FROM_HUB:
            from_hub = True
        else:
            verbalizers = _str_list(raw_verb, "verbalizers", where)
            if len(verbalizers) < 2:
                raise RegistryError(f"{where}: classification task {name!r} needs at least two verbalizers "
                                    f"(or `verbalizers: hub` to take the hub's class names)")
            if len(set(verbalizers)) != len(verbalizers):
                raise RegistryError(f"{where}: task {name!r}: verbalizers repeat: {list(verbalizers)}")
    elif raw_verb is not None:
        raise RegistryError(f"{where}: task {name!r}: verbalizers are for classification tasks, kind is {kind}")
    source = _parse_source(merged["source"], where)
    alternatives = tuple(_parse_source(s, where) for s in (merged.get("alternatives") or []))
    template = _parse_template(merged.get("template"), kind, where)
    if template is None and not any(is_text_to_text(s) for s in (source, *alternatives)):
        raise RegistryError(f"{where}: task {name!r} has no template and no text-to-text source "
                            f"({', '.join(TEXT_TO_TEXT_SOURCES)}, or a source with a `builder`); give one of them")
    for key in ("max_input_length", "max_target_length"):
        value = merged.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise RegistryError(f"{where}: task {name!r}: {key} must be a positive integer, got {value!r}")
    return TaskSpec(
        name=name, ontology=ontology, kind=kind, metric=metric, k_rule=k_rule, source=source,
        template=template, verbalizers=verbalizers, verbalizers_from_hub=from_hub, alternatives=alternatives,
        exact=bool(merged.get("exact", False)), aliases=_str_list(merged.get("aliases"), "aliases", where),
        papers=_str_list(merged.get("papers"), "papers", where),
        max_input_length=merged.get("max_input_length"), max_target_length=merged.get("max_target_length"),
        notes=str(merged.get("notes", "")).strip(), defined_in=where,
        prompt=_parse_prompt(merged.get("prompt"), kind, verbalizers, where),
        pseudo_classes_at=None if threshold is None else float(threshold))


def _parse_members(node: Any, where: str, group: str = "") -> list[SplitMember]:
    if not isinstance(node, Mapping) or not node:
        raise RegistryError(f"{where}: roles must map a role name to a list of task names")
    members = []
    for role, tasks in node.items():
        for task in _str_list(tasks, f"role {role}", where):
            members.append(SplitMember(task, str(role), group))
    return members


def _parse_metric_map(node: Any, where: str) -> dict[str, str]:
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise RegistryError(f"{where}: `metrics` must map task names to metric names")
    out = {}
    for task, metric in node.items():
        try:
            out[task] = canonical_metric(str(metric))
        except ValueError as exc:
            raise RegistryError(f"{_where(node, where)}: metric for {task!r}: {exc}") from None
    return out


def _parse_paper(name: str, node: Any, file_where: str) -> PaperSpec:
    if not isinstance(node, Mapping):
        raise RegistryError(f"{file_where}: paper {name!r} must be a mapping")
    where = _where(node, file_where)
    _check_keys(node, PAPER_KEYS, f"paper {name!r}", where)
    splits = {}
    for split_name, snode in (node.get("splits") or {}).items():
        swhere = _where(snode, where)
        if not isinstance(snode, Mapping):
            raise RegistryError(f"{swhere}: split {name}/{split_name} must be a mapping")
        _check_keys(snode, SPLIT_KEYS, f"split {name}/{split_name}", swhere)
        if ("roles" in snode) == ("groups" in snode):
            raise RegistryError(f"{swhere}: split {name}/{split_name} needs exactly one of `roles` or `groups`")
        if "roles" in snode:
            members = _parse_members(snode["roles"], swhere)
        else:
            members = []
            for group, roles in snode["groups"].items():
                members += _parse_members(roles, _where(roles, swhere), str(group))
        splits[split_name] = SplitSpec(name, split_name, tuple(members),
                                       MappingProxyType(_parse_metric_map(snode.get("metrics"), swhere)),
                                       str(snode.get("notes", "")).strip())
    tables = {}
    for table, selectors in (node.get("tables") or {}).items():
        tables[str(table)] = _str_list(selectors, f"tables.{table}", where)
    seeds = node.get("data_seeds") or []
    if not all(isinstance(s, int) for s in seeds):
        raise RegistryError(f"{where}: paper {name!r}: data_seeds must be integers, got {seeds!r}")
    return PaperSpec(name, str(node.get("title", name)), MappingProxyType(splits), MappingProxyType(tables),
                     MappingProxyType(_parse_metric_map(node.get("metrics"), where)), tuple(seeds),
                     str(node.get("notes", "")).strip())


# --------------------------------------------------------------------------- the registry


class Registry:
    """All tasks and papers of a tasks folder, cross-checked: every name a split uses resolves."""

    def __init__(self, tasks: dict[str, TaskSpec], papers: dict[str, PaperSpec], folder: Path):
        self.folder = folder
        self.papers = papers
        self._aliases: dict[str, str] = {}
        for spec in tasks.values():
            for alias in spec.aliases:
                if alias in tasks or alias in self._aliases:
                    raise RegistryError(f"{spec.defined_in}: alias {alias!r} of task {spec.name!r} "
                                        f"is already a task name or another task's alias")
                self._aliases[alias] = spec.name
        tagged: dict[str, set[str]] = {name: set(spec.papers) for name, spec in tasks.items()}
        for paper in papers.values():
            for split in paper.splits.values():
                for member in split.members:
                    if member.task not in tasks:
                        raise self._unknown(member.task, tasks, f"split {paper.name}/{split.name}: ")
                    tagged[member.task].add(paper.name)
                for task in split.metrics:
                    if task not in tasks:
                        raise self._unknown(task, tasks, f"metrics of split {paper.name}/{split.name}: ")
            for task in paper.metrics:
                if task not in tasks:
                    raise self._unknown(task, tasks, f"metrics of paper {paper.name}: ")
            for table, selectors in paper.tables.items():
                for selector in selectors:
                    self._resolve_selector(paper, selector, f"table {table}")
        for name, spec in tasks.items():
            unknown_papers = sorted(set(spec.papers) - set(papers))
            if unknown_papers:
                raise RegistryError(f"{spec.defined_in}: task {name!r} tags unknown paper(s) {unknown_papers}; "
                                    f"papers: {', '.join(papers)}")
        self.tasks = {name: replace(spec, papers=tuple(p for p in papers if p in tagged[name]))
                      for name, spec in tasks.items()}

    def _unknown(self, name: str, tasks: Mapping[str, Any], context: str = "") -> UnknownTaskError:
        candidates = [*tasks, *self._aliases]
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        return UnknownTaskError(f"{context}unknown task {name!r}{hint} (see `deltaspace tasks list`)")

    def get(self, name: str) -> TaskSpec:
        """A task by name or alias; an unknown name fails listing the closest registered names."""
        key = self._aliases.get(name, name)
        if key not in self.tasks:
            raise self._unknown(name, self.tasks)
        return self.tasks[key]

    def paper(self, name: str) -> PaperSpec:
        if name not in self.papers:
            raise RegistryError(f"unknown paper {name!r}; papers: {', '.join(self.papers)}")
        return self.papers[name]

    def split(self, paper: str, name: str) -> SplitSpec:
        spec = self.paper(paper)
        if name not in spec.splits:
            raise RegistryError(f"paper {paper!r} has no split {name!r}; splits: {', '.join(spec.splits) or 'none'}")
        return spec.splits[name]

    def _resolve_selector(self, paper: PaperSpec, selector: str, what: str) -> list[str]:
        split_name, _, role = selector.partition(":")
        if split_name not in paper.splits:
            raise RegistryError(f"paper {paper.name}: {what} refers to unknown split {split_name!r}; "
                                f"splits: {', '.join(paper.splits)}")
        split = paper.splits[split_name]
        if role and role not in split.roles:
            raise RegistryError(f"paper {paper.name}: {what} refers to unknown role {role!r} of split "
                                f"{split_name!r}; roles: {', '.join(split.roles)}")
        return split.tasks(role or None)

    def paper_tasks(self, paper: str) -> list[str]:
        """Every task of a paper: split members in split order, then tasks tagged with the paper."""
        spec = self.paper(paper)
        names: dict[str, None] = {}
        for split in spec.splits.values():
            for task in split.tasks():
                names.setdefault(task)
        for name, task in self.tasks.items():
            if paper in task.papers:
                names.setdefault(name)
        return list(names)

    def tables_of(self, paper: str, task: str) -> list[str]:
        """The tables of a paper that include a task."""
        spec = self.paper(paper)
        return [table for table, selectors in spec.tables.items()
                if any(task in self._resolve_selector(spec, s, f"table {table}") for s in selectors)]

    def metric_for(self, task: str, paper: str | None = None, split: str | None = None) -> str:
        """The metric a paper (and split) scores a task with; the task's CrossFit metric otherwise."""
        spec = self.get(task)
        if paper is None:
            return spec.metric
        pspec = self.paper(paper)
        if split is not None and spec.name in self.split(paper, split).metrics:
            return self.split(paper, split).metrics[spec.name]
        return pspec.metrics.get(spec.name, spec.metric)

    def listing(self, paper: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
        """Rows for `deltaspace tasks list`: one per task, or one per split member with its role."""
        if split is not None and paper is None:
            paper = self.paper_of_split(split)
        if paper is None:
            return [self._row(spec, "") for spec in self.tasks.values()]
        if split is None:
            rows = []
            for name in self.paper_tasks(paper):
                roles = [f"{s.name}:{m.role}" + (f"({m.group})" if m.group else "")
                         for s in self.paper(paper).splits.values() for m in s.members if m.task == name]
                rows.append(self._row(self.tasks[name], paper, roles=", ".join(roles)))
            return rows
        sspec = self.split(paper, split)
        return [self._row(self.tasks[m.task], paper, split=split, role=m.role, group=m.group)
                for m in sspec.members]

    def paper_of_split(self, split: str) -> str:
        owners = [p.name for p in self.papers.values() if split in p.splits]
        if len(owners) != 1:
            options = ", ".join(f"{p.name}/{s}" for p in self.papers.values() for s in p.splits)
            raise RegistryError(f"split {split!r} " + ("is defined by several papers; give --paper"
                                                       if owners else "is not defined") + f"; splits: {options}")
        return owners[0]

    def _row(self, spec: TaskSpec, paper: str, split: str | None = None, **extra: str) -> dict[str, Any]:
        row = {"task": spec.name, **extra, "category": spec.category, "kind": spec.kind,
               "metric": self.metric_for(spec.name, paper or None, split), "k": spec.k_rule,
               "source": spec.source_of_type(None).type}
        if paper:
            row["tables"] = ",".join(self.tables_of(paper, spec.name))
        return row




def default_tasks_dir() -> Path:
    """``$DELTASPACE_TASKS_DIR``, else the repository's ``config/tasks``, else ``./config/tasks``."""
    env = os.environ.get(TASKS_DIR_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3] / "config" / "tasks"
    if repo.is_dir():
        return repo
    return Path.cwd() / "config" / "tasks"


@functools.lru_cache(maxsize=8)
def _load(folder: str) -> Registry:
    path = Path(folder)
    files = sorted(path.glob("*.yaml"))
    if not files:
        raise RegistryError(f"{path}: no task registry (*.yaml) found; set ${TASKS_DIR_ENV} or run from the repo")
    tasks: dict[str, TaskSpec] = {}
    papers: dict[str, PaperSpec] = {}
    for file in files:
        data = _read_yaml(file)
        _check_keys(data, {"defaults", "tasks", "papers"}, "top level", str(file))
        defaults = data.get("defaults") or {}
        _check_keys(defaults, TASK_KEYS, "defaults", _where(defaults, str(file)))
        for name, node in (data.get("tasks") or {}).items():
            if name in tasks:
                raise RegistryError(f"{_where(node, str(file))}: task {name!r} is already defined at "
                                    f"{tasks[name].defined_in}; define a task once and refer to it by name")
            tasks[name] = _parse_task(str(name), node, defaults, str(file))
        for name, node in (data.get("papers") or {}).items():
            if name in papers:
                raise RegistryError(f"{_where(node, str(file))}: paper {name!r} is defined twice")
            papers[name] = _parse_paper(str(name), node, str(file))
    return Registry(tasks, papers, path)


def load_registry(tasks_dir: str | os.PathLike | None = None) -> Registry:
    """Load (once per folder) and validate the registry in ``tasks_dir`` (default: see above)."""
    return _load(str(Path(tasks_dir or default_tasks_dir()).resolve()))


def get_task(name: str, tasks_dir: str | os.PathLike | None = None) -> TaskSpec:
    """Look a task up by name or alias in the default (or given) registry."""
    return load_registry(tasks_dir).get(name)
