"""Every hub task of the registry against the recorded hub schemas (src/deltaspace/data/hub_schemas.yaml).

The hub cannot be reached here, so ``datasets.load_dataset`` is patched to return a synthetic
Dataset built from the recorded schema of the requested (id, config) and split (an unknown split
raises as ``datasets`` does), and each task is prepared through the real code path:
``prepare_task`` -> ``loaders.read_hub`` -> ``datasets.load_dataset``. A template naming a field
the dataset lacks, a ClassLabel value that maps to no verbalizer, or a split name the dataset does
not have fails here.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import subprocess
from pathlib import Path

import pytest

from deltaspace.data import hub_schemas as hs
from deltaspace.data.builders import get_builder
from deltaspace.data.loaders import DataError
from deltaspace.data.prepare import LabelError, PrepareOptions, load_prepared, prepare_task
from deltaspace.data.registry import CLASSIFICATION, GENERATION, SourceSpec, load_registry

REGISTRY = load_registry()
SCHEMAS = hs.load_schemas()
ROWS_PER_CLASS = 3  # few-shot K=1 per class: one train and one dev row per class, the rest spare
MIN_ROWS = 12


def _hub_tasks():
    return [t for t in REGISTRY.tasks.values() if hs.hub_sources(t)]


def _preparable():
    """Tasks that prepare from a hub source: with a template, or a row builder on that source
    (other template: null tasks use TSV)."""
    return [t for t in _hub_tasks() if any(t.usable(s) for s in hs.hub_sources(t))]


def _builder(source: SourceSpec):
    return get_builder(source.get("builder")) if source.get("builder") else None


def _exception(task) -> str | None:
    """The explicit, reasoned exceptions: tasks whose hub pair is listed under not_covered."""
    return hs.not_covered_reason(task, SCHEMAS)


# --------------------------------------------------------------------------- the fake hub


def _class_count(schema: hs.HubSchema) -> int:
    counts = [1]

    def walk(feature: hs.Feature) -> None:
        if feature.kind == "class_label":
            counts.append(len(feature.names))
        for child in ([feature.item] if feature.item else []) + list((feature.fields or {}).values()):
            walk(child)

    for feature in schema.features.values():
        walk(feature)
    return max(counts)


def _set(row: dict, path: str, value) -> None:
    """Put ``value`` at a dotted path of a row (a list on the way gets it in every item)."""
    head, _, rest = path.partition(".")
    if not rest:
        current = row.get(head)
        row[head] = [value] * len(current) if isinstance(current, list) else value
        return
    inner = row[head]
    if isinstance(inner, list):
        for item in inner:
            _set(item, rest, value)
    else:
        _set(inner, rest, value)


def _fix_values(task, source: SourceSpec, schema: hs.HubSchema, rows: list[dict]) -> None:
    """Values a schema cannot tell: a raw (non-ClassLabel) label must be one the task maps, a
    raw answer must point into the choices. ClassLabel values are left as generated (all of them
    appear), so a ClassLabel value that maps nowhere fails the preparation. For a row builder: the
    values its ``keep`` rule keeps (cycled with one it drops), and rows in pairs that share their
    ``group_by`` values, so that the builder really merges and filters."""
    builder = _builder(source)
    if builder is not None:
        for field, allowed in builder.keep.items():
            for i, row in enumerate(rows):
                _set(row, field, allowed[i % len(allowed)] if i % 3 else f"not {allowed[0]}")
        for field in builder.group_by:
            for i, row in enumerate(rows):
                leaf = hs.feature_at(schema.features, field)
                _set(row, field, i // 2 if leaf.kind == "value" and leaf.dtype.startswith(("int", "uint"))
                     else f"group {i // 2} of {field}")
        return
    tpl = task.template
    if task.kind == CLASSIFICATION and tpl.label:
        leaf = hs.feature_at(schema.features, tpl.label)
        while leaf is not None and leaf.kind in ("sequence", "list"):
            leaf = leaf.item
        if leaf is not None and leaf.kind == "value":
            label_map = source.get("label_map") or {}
            raw = list(label_map) if label_map else list(range(len(task.verbalizers or ())))
            if leaf.dtype == "string":  # the mapped strings, and the verbalizers no mapping produces
                raw = list(label_map) + [v for v in task.verbalizers if v not in label_map.values()]
            for i, row in enumerate(rows):
                value = raw[i % len(raw)]
                value = int(value) if leaf.dtype.startswith(("int", "uint")) else value
                value = bool(value) if leaf.dtype == "bool" else value
                _set(row, tpl.label, str(value) if leaf.dtype == "string" else value)
    for ex in tpl.extract:  # a field a template pattern cuts up: its example, made unique by the generated value
        for row in rows:
            _set(row, ex["field"], f"{ex['example']} {row[ex['field'].split('.')[0]]}")
    for row in rows if tpl.spans else ():  # tags with each span's begin tag once, then its inside tag
        tags = [t for span in tpl.spans for t in (span["begin"], span["inside"])]
        words = row[tpl.spans[0]["tokens"]]
        row[tpl.spans[0]["tags"]] = tags
        row[tpl.spans[0]["tokens"]] = [f"{words[i % len(words)]} {i}" for i in range(len(tags))]
    if task.kind == CLASSIFICATION and tpl.label and source.get("label_vote") == "majority":
        # random synthetic votes mostly tie (a tie drops the row): let each row's votes agree, cycling the classes
        for i, row in enumerate(rows):
            _set(row, tpl.label, i % len(task.verbalizers or (0, 1)))
    if task.kind == GENERATION and tpl.answer:
        leaf = hs.feature_at(schema.features, tpl.answer)
        n_choices = len(tpl.choices) if isinstance(tpl.choices, tuple) else 2  # lists have 2 items
        if leaf is not None and leaf.kind == "value":
            for i, row in enumerate(rows):
                index = i % n_choices
                value = "ABCDEFGH"[index] if leaf.dtype == "string" else index + tpl.answer_offset
                _set(row, tpl.answer, value)


class FakeHub:
    """``datasets.load_dataset`` over the recorded schemas; counts the calls it answers."""

    def __init__(self, task, source: SourceSpec):
        self.task, self.source, self.calls = task, source, []

    def __call__(self, path, name=None, *, split=None, revision=None, data_files=None, **kwargs):
        import datasets

        schema = SCHEMAS.schemas.get((path, name))
        if schema is None:
            raise FileNotFoundError(f"Couldn't find dataset {path!r} (config {name!r}) among the recorded hub schemas")
        if split not in schema.splits:
            raise ValueError(f'Unknown split "{split}". Should be one of {list(schema.splits)}.')
        self.calls.append((path, name, split))
        n = max(MIN_ROWS, ROWS_PER_CLASS * _class_count(schema))
        builder = _builder(self.source)
        if builder is not None and builder.test_share:  # enough lines that the test share is not empty
            n = max(n, int(8 / builder.test_share))
        rows = hs.synthetic_rows(schema, split, n, seed=len(self.calls))
        _fix_values(self.task, self.source, schema, rows)
        return datasets.Dataset.from_list(rows, features=hs.to_features(schema), split=datasets.NamedSplit(split))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def _prepare(task, out: Path, tokenizer, monkeypatch) -> tuple[dict, FakeHub]:
    import datasets

    source = task.source_of_type("hub")
    hub = FakeHub(task, source)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    options = PrepareOptions(k=1 if task.k_rule == "per_class" else 4, source="hub")
    manifest = prepare_task(task, out, seed=100, backbone="tiny-t5", options=options, tokenizer=tokenizer,
                            registry=REGISTRY)
    return manifest, hub


# --------------------------------------------------------------------------- every hub task


@pytest.mark.parametrize("name", [t.name for t in _preparable()])
def test_every_hub_task_prepares_on_its_recorded_schema(name, tmp_path, tokenizer, monkeypatch):
    task = REGISTRY.get(name)
    reason = _exception(task)
    if reason:
        pytest.skip(f"hub schema not covered: {reason}")
    manifest, hub = _prepare(task, tmp_path, tokenizer, monkeypatch)
    source = task.source_of_type("hub")
    wanted = {source.get("train", "train")} | (set() if source.get("holdout") else {source.get("test", "validation")})
    assert {split for _, _, split in hub.calls} == wanted  # the data came through the patched hub
    prepared = load_prepared(tmp_path)
    assert all(prepared.tables[s].num_rows > 0 for s in ("train", "dev", "test"))
    if task.kind == CLASSIFICATION:
        leaf = hs.feature_at(hs.schema_for(source, SCHEMAS).features, task.template.label)
        if leaf is not None and leaf.kind == "class_label":  # every class value was generated and kept
            seen = {v for split in ("train", "dev", "test") for v, n in manifest["label_counts"][split].items() if n}
            assert len(seen) == min(len(leaf.names), len(manifest["verbalizers"])), (seen, leaf.names)


def test_preparation_covers_the_hub_tasks():
    preparable = _preparable()
    assert len(preparable) >= 30
    assert {"glue-sst2", "superglue-record", "wiqa", "circa", "trec-finegrained"} <= {t.name for t in preparable}
    # the row-builder tasks go through the same fake hub
    assert {"superglue-multirc", "empathetic_dialogues", "wiki_bio", "limit", "crows_pairs"} <= {t.name for t in preparable}


@pytest.mark.parametrize("name", ["superglue-multirc", "empathetic_dialogues"])
def test_grouping_builders_merge_the_synthetic_rows(name, tmp_path, tokenizer, monkeypatch):
    """The synthetic rows come in pairs sharing the builder's group_by values: half as many lines."""
    task = REGISTRY.get(name)
    _prepare(task, tmp_path, tokenizer, monkeypatch)
    test = load_prepared(tmp_path).rows("test")
    source = task.source_of_type("hub")
    share = _builder(source).test_share
    n = max(MIN_ROWS, ROWS_PER_CLASS * _class_count(hs.schema_for(source, SCHEMAS)), int(8 / share) if share else 0)
    assert len(test) == int((share or 1) * (n // 2))
    if name == "empathetic_dialogues":
        assert all(len(r["references"]) == 2 for r in test)  # both utterances of the pair are references
    else:
        assert all(r["input"].count(" (B) ") == 1 and " (C) " not in r["input"] for r in test)


def test_a_builder_reading_a_missing_field_is_a_problem():
    task = _with_source(REGISTRY.get("limit"), id="ybisk/piqa", config=None, test="validation")
    problems = hs.schema_problems(task, SCHEMAS)
    assert len(problems) == 3 and all("builder 'limit' reads field" in p for p in problems), problems
    assert any("'motion'" in p for p in problems)


@pytest.mark.parametrize("name", [t.name for t in _hub_tasks()])
def test_schema_problems_are_empty_for_every_hub_task(name):
    task = REGISTRY.get(name)
    problems = hs.schema_problems(task, SCHEMAS)
    reason = _exception(task)
    if reason:
        assert problems and all("not_covered" in p for p in problems)
        pytest.skip(f"hub schema not covered: {reason}")
    assert problems == []


def test_every_registry_hub_pair_is_recorded_or_explained():
    named = {hs.source_key(s) for t in _hub_tasks() for s in hs.hub_sources(t)}
    missing = sorted(named - set(SCHEMAS.schemas) - set(SCHEMAS.not_covered), key=str)
    assert missing == [], f"record these hub (id, config) pairs in {hs.SCHEMA_FILE.name}: {missing}"
    assert all(reason for reason in SCHEMAS.not_covered.values())
    stale = sorted(set(SCHEMAS.not_covered) - named, key=str)
    assert stale == [], f"not_covered pairs no task names any more (drop them): {stale}"


# --------------------------------------------------------------------------- negative cases


def _with_template(task, **changes):
    return dataclasses.replace(task, template=dataclasses.replace(task.template, **changes))


def _with_source(task, **options):
    source = SourceSpec("hub", {**task.source.options, **options})
    return dataclasses.replace(task, source=source)


def _one_problem(task, *needles):
    problems = hs.schema_problems(task, SCHEMAS)
    assert len(problems) == 1, problems
    where = hs._short(task.defined_in)
    assert where.startswith("config/tasks/") and where.rsplit(":", 1)[1].isdigit()
    assert problems[0].startswith(f"{where}: task {task.name!r}: hub "), problems[0]
    for needle in needles:
        assert needle in problems[0], problems[0]
    return problems[0]


def test_a_missing_template_field_is_a_problem_and_fails_preparation(tmp_path, tokenizer, monkeypatch):
    task = _with_template(REGISTRY.get("sick"), input="{sentence_A} [SEP] {sentence_C}")
    line = _one_problem(task, "names field 'sentence_C'", "closest: sentence_B", "sentence_B (string)", "fix:")
    assert "relatedness_score (float32)" in line  # the real fields are listed
    with pytest.raises(DataError, match="template field 'sentence_C' is missing"):
        _prepare(task, tmp_path, tokenizer, monkeypatch)


def test_a_missing_nested_field_is_a_problem():
    task = _with_template(REGISTRY.get("wiqa"), choices="choices.texts", input="{question_stem} {choices.text:options}")
    _one_problem(task, "template choices names field 'choices.texts'", "closest: choices.text")


def test_a_missing_split_is_a_problem_and_fails_preparation(tmp_path, tokenizer, monkeypatch):
    task = _with_source(REGISTRY.get("amazon_polarity"), test="validation")
    _one_problem(task, "test split 'validation' does not exist", "train (3600000), test (400000)", "holdout")
    with pytest.raises(DataError, match='Unknown split "validation"'):
        _prepare(task, tmp_path, tokenizer, monkeypatch)


def test_an_unmapped_label_is_a_problem_and_fails_preparation(tmp_path, tokenizer, monkeypatch):
    task = dataclasses.replace(REGISTRY.get("glue-mnli"), verbalizers=("entailment", "neutral"))
    _one_problem(task, "ClassLabel value(s) 2 (contradiction) of 'label' map to no verbalizer")
    with pytest.raises(LabelError, match="label 2 is not one of its verbalizers"):
        _prepare(task, tmp_path, tokenizer, monkeypatch)


def test_a_wrong_label_field_is_a_problem():
    task = _with_template(REGISTRY.get("circa"), label="goldstandard")
    _one_problem(task, "template label names field 'goldstandard'", "goldstandard2 (class_label[")


def test_verbalizers_in_another_order_than_the_class_names_are_a_problem():
    task = dataclasses.replace(REGISTRY.get("glue-mnli"), verbalizers=("entailment", "contradiction", "neutral"))
    _one_problem(task, "index order", "order the verbalizers as the ClassLabel names")


def test_label_map_and_skip_labels_count_as_mapped():
    task = dataclasses.replace(REGISTRY.get("glue-mnli"), verbalizers=("entailment", "not_entailment"))
    assert hs.schema_problems(_with_source(task, label_map={2: "not_entailment", 1: "not_entailment"}), SCHEMAS) == []
    assert hs.schema_problems(_with_source(task, label_map={1: 1}, skip_labels=[2]), SCHEMAS) == []


def test_an_unrecorded_pair_is_a_problem():
    task = _with_source(REGISTRY.get("glue-sst2"), config="sst-2")
    _one_problem(task, "no recorded schema", "recorded configs of nyu-mll/glue: ", "sst2")


# --------------------------------------------------------------------------- the module and the file


def test_synthetic_rows_obey_the_features():
    import datasets

    schema = SCHEMAS.schemas[("hotpotqa/hotpot_qa", "distractor")]
    rows = hs.synthetic_rows(schema, "validation", 5, seed=1)
    ds = hs.synthetic_dataset(schema, "validation", 5, seed=1)
    assert ds.features == hs.to_features(schema) and len(ds) == 5 and ds.split == "validation"
    assert isinstance(ds.features["context"], dict)  # a Sequence of a struct: a dict of lists
    assert list(ds) == rows
    assert isinstance(rows[0]["context"]["sentences"][0], list) and isinstance(rows[0]["supporting_facts"]["sent_id"][0], int)
    trec = SCHEMAS.schemas[("CogComp/trec", None)]
    rows = hs.synthetic_rows(trec, "train", 50)
    assert {r["fine_label"] for r in rows} == set(range(50)) and {r["coarse_label"] for r in rows} == set(range(6))
    ds = hs.synthetic_dataset(trec, "train", 50)
    assert ds.features["fine_label"].names[0] == "ABBR:abb"
    with pytest.raises(KeyError, match="no split 'validation'"):
        hs.synthetic_rows(trec, "validation", 1)
    assert hs.synthetic_rows(trec, "train", 3, seed=7) == hs.synthetic_rows(trec, "train", 3, seed=7)


def test_the_schema_file_is_well_formed_and_shipped():
    text = hs.SCHEMA_FILE.read_text(encoding="utf-8")
    assert hs.parse_schema_file(text).schemas.keys() == SCHEMAS.schemas.keys()
    for schema in SCHEMAS.schemas.values():
        assert schema.origin.strip() and schema.card_config and schema.splits and schema.features
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert "data/hub_schemas.yaml" in pyproject


@pytest.mark.parametrize("bad, message", [
    ("datasets:\n- {id: a, config: null, card_config: default, splits: {train: 1}, features: {x: string}}\n",
     "exactly the keys"),
    ("datasets:\n- {id: a, config: null, card_config: default, from: x, splits: {train: 1}, features: {x: strin}}\n",
     "unknown dtype 'strin'"),
    ("datasets:\n- {id: a, config: null, card_config: d, from: x, splits: {train: 1}, features: {x: string}}\n"
     "- {id: a, config: null, card_config: d, from: x, splits: {train: 2}, features: {x: string}}\n", "recorded twice"),
    ("not_covered:\n- {id: a, config: null, reason: ''}\n", "non-empty reason"),
])
def test_a_malformed_schema_file_fails_naming_the_line(bad, message):
    with pytest.raises(hs.SchemaError, match=message) as info:
        hs.parse_schema_file(bad, "x.yaml")
    assert str(info.value).startswith("x.yaml:")


def test_the_module_imports_neither_torch_nor_datasets():
    code = ("import sys; import deltaspace.data.hub_schemas as h; from deltaspace.data.registry import get_task; "
            "h.schema_problems(get_task('glue-sst2')); "
            "print(json.dumps(sorted(m for m in ('torch', 'datasets', 'transformers') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_merging_schema_files_dedupes_by_pair_and_reports_conflicts():
    entry = ("- id: {id}\n  config: {config}\n  card_config: default\n  from: card of {id}\n"
             "  splits: {{train: {n}}}\n  features:\n    text: string\n    label: {{class_label: [a, b]}}\n")
    base = "# header\ndatasets:\n" + entry.format(id="x/a", config="null", n=3) + \
        "not_covered:\n- {id: x/c, config: null, reason: not found yet}\n"
    other = "datasets:\n" + entry.format(id="x/a", config="null", n=3) + entry.format(id="x/b", config="cfg", n=5) + \
        entry.format(id="x/c", config="null", n=7)
    clash = "datasets:\n" + entry.format(id="x/a", config="null", n=4)
    merged, conflicts = hs.merge_schema_texts(base, other, clash)
    parsed = hs.parse_schema_file(merged)
    assert merged.startswith("# header\ndatasets:\n")
    assert list(parsed.schemas) == [("x/a", None), ("x/b", "cfg"), ("x/c", None)]
    assert parsed.schemas[("x/a", None)].splits == {"train": 3} and parsed.not_covered == {}
    assert len(conflicts) == 1 and "('x/a', None)" in conflicts[0]
    assert hs.merge_schema_texts(merged)[0] == merged
