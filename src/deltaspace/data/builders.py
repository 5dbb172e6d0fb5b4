"""Row builders: named Python transforms for tasks whose CrossFit builder no template can express.

A template maps one dataset row to one example. A few of CrossFit's task builders
(github.com/INK-USC/CrossFit, ``tasks/<task>.py``) do more: they merge several rows into one
example, zip two parallel lists, or keep rows by a field's value. For those, a registry source names
a builder instead of the task giving a template::

    source: {type: hub, id: aps/super_glue, config: multirc, builder: multirc}

A builder takes every row of one source split (a list of dicts, as ``datasets`` gives them) and
yields :class:`Line` s, ``(input, outputs, row)``: the example's input text, its reference outputs
(the first is the training target), and the index of the source row it came from (the first row of
a merged group; error messages point there). The lines are text-to-text, exactly like the lines of
CrossFit's TSV files, so everything after them (label checks, the 80/20 ``holdout``, sampling) is the
same code that prepares a ``crossfit_tsv`` source. Each builder also declares

* ``reads``: the dataset fields it reads (dotted paths), checked against the recorded hub schema
  (:func:`deltaspace.data.hub_schemas.schema_problems`) and on every row before it runs;
* ``keep``: rows are kept only where a field has one of the given values (applied before it runs);
* ``group_by``: the fields whose equal values merge rows into one line (documentation, and what the
  schema tests give equal values so that their synthetic rows form groups);
* ``test_share``: CrossFit evaluates on this share of the test split's lines only, taken after
  ``np.random.seed(42); np.random.shuffle`` (applied to the ``test`` split's lines after it runs).

This module imports nothing from the package (the registry imports it to validate names).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

TEST_SHARE_SEED = 42  # CrossFit's np.random.seed(42) before it cuts its evaluation share


class Line(NamedTuple):
    """One built example: input text, reference outputs (first = target), source row index."""

    input: str
    outputs: tuple[str, ...]
    row: int


@dataclass(frozen=True)
class Builder:
    """A registered builder and what it declares (see the module docstring)."""

    name: str
    build: Callable[[Sequence[Mapping[str, Any]]], Iterable[Line]]
    reads: tuple[str, ...]
    crossfit: str
    keep: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    test_share: float | None = None

    @property
    def summary(self) -> str:
        return (self.build.__doc__ or "").strip().split("\n\n")[0]


BUILDERS: dict[str, Builder] = {}


class UnknownBuilderError(KeyError):
    """A builder name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:
        return self.args[0]


def register(name: str, *, reads: Sequence[str], crossfit: str, keep: Mapping[str, Sequence[Any]] | None = None,
             group_by: Sequence[str] = (), test_share: float | None = None):
    """Decorator: register ``fn`` as builder ``name`` with what it declares."""
    def wrap(fn):
        if name in BUILDERS:
            raise ValueError(f"builder {name!r} is registered twice")
        BUILDERS[name] = Builder(name, fn, tuple(reads), crossfit, {k: tuple(v) for k, v in (keep or {}).items()},
                                 tuple(group_by), test_share)
        return fn
    return wrap


def get_builder(name: str) -> Builder:
    """The builder of that name; an unknown name fails listing the valid ones (and the closest)."""
    if name not in BUILDERS:
        close = difflib.get_close_matches(str(name), list(BUILDERS), n=3, cutoff=0.5)
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise UnknownBuilderError(f"unknown builder {name!r}{hint}; valid builders: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name]


def missing_field(row: Mapping[str, Any], path: str) -> bool:
    """Whether a dotted path is absent from a row (a list on the way: absent from any item)."""
    value: Any = row
    for i, part in enumerate(path.split(".")):
        if isinstance(value, (list, tuple)):
            rest = ".".join(path.split(".")[i:])
            return any(missing_field(item, rest) for item in value if isinstance(item, Mapping)) or \
                not all(isinstance(item, Mapping) for item in value)
        if not isinstance(value, Mapping) or part not in value:
            return True
        value = value[part]
    return False


def crossfit_test_share(lines: Sequence[Line], share: float, seed: int = TEST_SHARE_SEED) -> list[Line]:
    """The first ``int(share * n)`` lines after CrossFit's ``np.random.seed(seed); np.random.shuffle``."""
    import numpy as np

    order = np.random.RandomState(seed).permutation(len(lines))
    return [lines[i] for i in order[:int(share * len(lines))]]


def build_split(name: str, rows: Sequence[Mapping[str, Any]], split: str) -> list[Line]:
    """Run builder ``name`` over one source split's rows (``split``: ``train`` or ``test``): rows
    outside ``keep`` are dropped first (row indices stay those of the source), outputs are
    stripped and empty ones dropped, a line left without outputs is dropped (CrossFit's TSV
    reader would find no output on it), and the ``test`` split keeps only its ``test_share``."""
    spec = get_builder(name)
    kept = [(i, row) for i, row in enumerate(rows)
            if all(_get(row, f) in allowed for f, allowed in spec.keep.items())]
    lines = []
    for line in spec.build([row for _, row in kept]):
        outputs = tuple(o.strip() for o in line.outputs if o.strip())
        if outputs:
            lines.append(Line(line.input, outputs, kept[line.row][0]))
    if split == "test" and spec.test_share:
        lines = crossfit_test_share(lines, spec.test_share)
    return lines


def _get(row: Mapping[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value[part]
    return value


def _flat(text: str) -> str:
    """Newlines, carriage returns and tabs become spaces (CrossFit's cleaning before writing TSV)."""
    return text.replace("\n", " ").replace("\r", " ").replace("\t", " ")


# --------------------------------------------------------------------------- the builders


@register("multirc", reads=("question", "paragraph", "answer", "label", "idx.question"), group_by=("idx.question",),
          crossfit="tasks/superglue_multirc.py")
def multirc(rows: Sequence[Mapping[str, Any]]) -> Iterable[Line]:
    """SuperGLUE MultiRC: one line per question, its candidate answers as options.

    The hub has one row per (question, candidate answer); rows with the same ``idx.question`` form
    one line, in order of first appearance, with the question and paragraph of the first row:
    ``question: Q (A) a1 (B) a2 ... context: P`` (newlines and tabs as spaces). The output is the
    answers labelled 1 (True) joined by `` [SEP] ``, or ``NO ANSWER!`` when none is."""
    groups: dict[Any, tuple[int, Mapping[str, Any], list[str], list[int]]] = {}
    for i, row in enumerate(rows):
        first, _, answers, labels = groups.setdefault(row["idx"]["question"], (i, row, [], []))
        answers.append(row["answer"])
        labels.append(row["label"])
    for first, row, answers, labels in groups.values():
        options = "".join(f" ({chr(65 + k)}) {_flat(a)}" for k, a in enumerate(answers))
        text = f"question: {_flat(row['question'])}{options} context: {_flat(row['paragraph'])}"
        correct = [a for a, label in zip(answers, labels) if label == 1]
        yield Line(text, (" [SEP] ".join(correct) if correct else "NO ANSWER!",), first)


@register("empathetic_dialogues", reads=("prompt", "context", "utterance"), group_by=("prompt", "context"),
          test_share=0.2, crossfit="tasks/empathetic_dialogues.py")
def empathetic_dialogues(rows: Sequence[Mapping[str, Any]]) -> Iterable[Line]:
    """EmpatheticDialogues: the situation and emotion in, every utterance of the dialogue out.

    The input is ``prompt`` (the situation, ``_comma_`` as ``,``) `` [SEP] `` ``context`` (the
    emotion word); rows whose utterance contains ``hit:`` (crowd-sourcing debris) are skipped;
    rows with the same input merge into one line whose outputs are their utterances (``_comma_`` as
    ``,``, newlines and tabs as spaces) in row order. Test: 20% of the validation lines."""
    merged: dict[str, tuple[int, list[str]]] = {}
    for i, row in enumerate(rows):
        if "hit:" in row["utterance"]:
            continue
        text = row["prompt"].replace("_comma_", ",") + " [SEP] " + row["context"]
        merged.setdefault(text, (i, []))[1].append(_flat(row["utterance"].replace("_comma_", ",")))
    for text, (first, replies) in merged.items():
        yield Line(text, tuple(replies), first)


@register("wiki_bio", reads=("input_text.context", "input_text.table.column_header", "input_text.table.content",
                             "target_text"), test_share=0.01, crossfit="tasks/wiki_bio.py")
def wiki_bio(rows: Sequence[Mapping[str, Any]]) -> Iterable[Line]:
    """WikiBio: an infobox in, the biography's first sentence out.

    The input is the article title (``input_text.context``, stripped) `` [SEP] `` and then, per
    infobox cell, ``header: content [n] `` (content stripped, newlines as spaces); a row whose
    header and content lists differ in length is skipped. The output is ``target_text`` with
    newlines as spaces. Test: 1% of the ``val`` lines."""
    for i, row in enumerate(rows):
        table = row["input_text"]["table"]
        headers, contents = table["column_header"], table["content"]
        if len(headers) != len(contents):
            continue
        cells = "".join(f"{h}: {c.strip().replace(chr(10), ' ')} [n] " for h, c in zip(headers, contents))
        yield Line(row["input_text"]["context"].strip() + " [SEP] " + cells, (row["target_text"].replace("\n", " "),), i)


@register("limit", reads=("sentence", "motion", "motion_entities.entity"), keep={"motion": ("yes",)},
          crossfit="tasks/limit.py")
def limit(rows: Sequence[Mapping[str, Any]]) -> Iterable[Line]:
    """LiMiT: a sentence describing motion in, its moving entities out.

    Only rows whose ``motion`` is ``yes`` (the ``keep`` rule); the input is ``sentence`` stripped,
    the output the ``entity`` of each ``motion_entities`` item joined by `` [SEP] ``."""
    for i, row in enumerate(rows):
        yield Line(row["sentence"].strip(), (" [SEP] ".join(e["entity"] for e in row["motion_entities"]),), i)
