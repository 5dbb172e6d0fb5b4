"""Loaders on small fixture files written by the tests (the hub path included, through datasets)."""

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltaspace.data.loaders import DataError, crossfit_tsv_paths, load_source, read_hub, read_records
from deltaspace.data.registry import SourceSpec, TaskSpec, Template


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_reads_inputs_and_several_outputs(tmp_path):
    path = write(tmp_path / "qa.tsv", "who wrote it?\tAnn\tAnn Smith\n\nwhere?\tParis\n")
    records = read_records(path)
    assert [r.data for r in records] == [{"input": "who wrote it?", "outputs": ["Ann", "Ann Smith"]},
                                        {"input": "where?", "outputs": ["Paris"]}]
    assert records[1].where == f"{path}:3" and records[1].idx == 1


def test_tsv_malformed_row_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.tsv", "good input\tgood output\nno tab on this line\n")
    with pytest.raises(DataError, match=rf"{path}:2: expected 'input<TAB>output"):
        read_records(path)
    empty_output = write(tmp_path / "empty.tsv", "input\t \n")
    with pytest.raises(DataError, match=rf"{empty_output}:1:"):
        read_records(empty_output)


def test_jsonl_reads_objects_and_reports_bad_lines(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": 0}\n\n{"text": "b", "label": 1}\n')
    assert [r.data["text"] for r in read_records(path)] == ["a", "b"]
    assert read_records(path)[1].where.endswith(":3")
    bad = write(tmp_path / "bad.jsonl", '{"text": "a"}\n{"text": "b",}\n')
    with pytest.raises(DataError, match=rf"{bad}:2: invalid JSON"):
        read_records(bad)
    not_object = write(tmp_path / "list.jsonl", "[1, 2]\n")
    with pytest.raises(DataError, match=rf"{not_object}:1: expected a JSON object"):
        read_records(not_object)


def test_csv_reads_quoted_multiline_rows_with_their_start_line(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\n"two\nlines",pos\nplain,neg\n')
    records = read_records(path)
    assert [r.data for r in records] == [{"text": "two\nlines", "label": "pos"}, {"text": "plain", "label": "neg"}]
    assert [r.where.rsplit(":", 1)[1] for r in records] == ["2", "4"]


def test_csv_wrong_field_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.csv", "text,label\nok,pos\ntoo,many,fields\n")
    with pytest.raises(DataError, match=rf"{path}:3: expected 2 fields \(text, label\), got 3"):
        read_records(path)


def test_latin1_csv_with_encoding_option(tmp_path):
    path = tmp_path / "l1.csv"
    path.write_bytes("text,label\ncaf\xe9,pos\n".encode("latin-1"))
    assert read_records(path, encoding="latin-1")[0].data["text"] == "café"


def test_parquet_rows_are_addressed_by_index(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["x", "y"], "label": [1, 0]}), path)
    records = read_records(path)
    assert [r.data for r in records] == [{"text": "x", "label": 1}, {"text": "y", "label": 0}]
    assert records[1].where == f"{path}#1"


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown file format"):
        read_records(write(tmp_path / "d.xml", "<a/>"))
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")


def test_hub_loader_through_datasets_returns_rows_and_class_names(tmp_path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.Dataset.from_dict({"text": ["bad", "good", "fine"], "label": [0, 1, 1]},
                               features=features).to_parquet(str(tmp_path / "train.parquet"))
    records, names = read_hub("parquet", None, "train", data_files={"train": str(tmp_path / "train.parquet")})
    assert [r.data["text"] for r in records] == ["bad", "good", "fine"]
    assert names == {"label": ["neg", "pos"]}
    assert records[2].where == "hub:parquet/train#2"
    with pytest.raises(DataError, match=r"hub:parquet/validation: cannot load"):
        read_hub("parquet", None, "validation", data_files={"train": str(tmp_path / "train.parquet")})


def test_hub_repository_with_a_loading_script_is_read_from_its_parquet_conversion(monkeypatch, capsys):
    """datasets >= 4 refuses a repository that still holds a loading script (wiki_bio, limit, ...); the
    loader then reads the hub's Parquet conversion of it, and says so."""
    calls = []
    rows = datasets.Dataset.from_dict({"text": ["a", "b"]})

    def fake_load(dataset_id, config, split, revision=None, data_files=None):
        calls.append(revision)
        if revision != "refs/convert/parquet":
            raise RuntimeError("Dataset scripts are no longer supported, but found wiki_bio.py")
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    records, _ = read_hub("michaelauli/wiki_bio", None, "train")
    assert calls == [None, "refs/convert/parquet"] and [r.data["text"] for r in records] == ["a", "b"]
    assert "loading script" in capsys.readouterr().err
    calls.clear()  # a revision the registry names is the user's choice: no second try
    with pytest.raises(DataError, match="Dataset scripts are no longer supported"):
        read_hub("michaelauli/wiki_bio", None, "train", revision="main")
    assert calls == ["main"]


def _task(source, **kw):
    return TaskSpec(name="toy", ontology="cls/other", kind="classification", metric="accuracy", k_rule="per_class",
                    source=source, template=Template(input="{text}", label="label"), verbalizers=("a", "b"), **kw)


def test_hub_source_with_holdout_leaves_the_carve_to_preparation(tmp_path):
    write(tmp_path / "all.jsonl", "".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(5)))
    source = SourceSpec("hub", {"id": "json", "data_files": {"train": str(tmp_path / "all.jsonl")}, "holdout": 0.2})
    loaded = load_source(_task(source), source)
    assert loaded.holdout == 0.2 and list(loaded.splits) == ["train"] and len(loaded.splits["train"]) == 5


def test_file_source_needs_a_test_file_or_holdout(tmp_path):
    write(tmp_path / "train.jsonl", '{"text": "x", "label": 0}\n')
    source = SourceSpec("jsonl", {"train": "train.jsonl"})
    with pytest.raises(DataError, match="give a `test` file or a `holdout` fraction"):
        load_source(_task(source), source, data_dir=tmp_path)


def test_crossfit_tsv_source_reads_presampled_files(tmp_path):
    paths = crossfit_tsv_paths("toy", 16, 13, tmp_path)
    paths["train"].parent.mkdir()
    for split, path in paths.items():
        write(path, f"{split} example\ta\n")
    assert paths["dev"].name == "toy_16_13_dev.tsv"
    source = SourceSpec("crossfit_tsv", {})
    loaded = load_source(_task(source), source, data_dir=tmp_path, k=16, seed=13)
    assert loaded.presampled and sorted(loaded.splits) == ["dev", "test", "train"]
    assert loaded.splits["dev"][0].data == {"input": "dev example", "outputs": ["a"]}
    with pytest.raises(DataError, match="needs --data-dir"):
        load_source(_task(source), source, k=16, seed=13)
