"""Task metrics: pure functions of predictions and references, on a 0-100 scale.

Every paper in this benchmark scores tasks the way CrossFit (Ye et al. 2021) does, so the
conventions here are CrossFit's: string answers are compared after SQuAD normalization
(lower-case, no punctuation, no articles, single spaces); a prediction is scored against each
acceptable reference and keeps the best score; classification F1 is the macro average over the
labels present in the gold set. Scores are returned x100 because every table in the papers is.

``references`` is always a list (one per example) of lists of strings: generation tasks may have
several acceptable outputs, classification and regression tasks have one (the first is the gold
label). :func:`compute` is the single entry point the training and table stages use.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

References = Sequence[Sequence[str]]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_ROUGE_TOKEN = re.compile(r"[^a-z0-9]+")


def normalize_answer(text: str) -> str:
    """SQuAD normalization, which CrossFit applies before every string comparison."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _check(predictions: Sequence[str], references: References) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("no predictions to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of strings, got {refs!r}")


def exact_match(predictions: Sequence[str], references: References) -> float:
    """Share of predictions equal to any reference after normalization (CrossFit ACC and EM)."""
    _check(predictions, references)
    hits = sum(any(normalize_answer(p) == normalize_answer(r) for r in refs)
               for p, refs in zip(predictions, references))
    return 100.0 * hits / len(predictions)


def _f1_per_label(gold: list[str], pred: list[str], label: str) -> float:
    tp = sum(g == label and p == label for g, p in zip(gold, pred))
    fp = sum(g != label and p == label for g, p in zip(gold, pred))
    fn = sum(g == label and p != label for g, p in zip(gold, pred))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def classification_f1(predictions: Sequence[str], references: References) -> float:
    """Macro F1 over the labels present in the gold set (CrossFit's Classification-F1).

    A prediction outside the gold label set counts as a miss for its gold label but does not add
    a class of its own to the average, so free-form generations cannot dilute the mean.
    """
    _check(predictions, references)
    gold = [normalize_answer(refs[0]) for refs in references]
    pred = [normalize_answer(p) for p in predictions]
    labels = sorted(set(gold))
    return 100.0 * sum(_f1_per_label(gold, pred, c) for c in labels) / len(labels)


def label_f1(positive: str) -> Callable[[Sequence[str], References], float]:
    """F1 of one positive label (GLUE's F1 for MRPC and QQP, used by the survey's Tables 5-6)."""
    target = normalize_answer(positive)

    def score(predictions: Sequence[str], references: References) -> float:
        _check(predictions, references)
        gold = [normalize_answer(refs[0]) for refs in references]
        return 100.0 * _f1_per_label(gold, [normalize_answer(p) for p in predictions], target)

    return score


def matthews(predictions: Sequence[str], references: References) -> float:
    """Matthews correlation over label strings (multi-class form; CoLA's metric), x100.

    Degenerate cases (a constant prediction or gold column) score 0, as in scikit-learn.
    """
    _check(predictions, references)
    gold = [normalize_answer(refs[0]) for refs in references]
    pred = [normalize_answer(p) for p in predictions]
    n = len(gold)
    labels = sorted(set(gold) | set(pred))
    t = Counter(gold)
    p = Counter(pred)
    correct = sum(g == q for g, q in zip(gold, pred))
    cov_tp = correct * n - sum(t[c] * p[c] for c in labels)
    cov_pp = n * n - sum(p[c] ** 2 for c in labels)
    cov_tt = n * n - sum(t[c] ** 2 for c in labels)
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return 100.0 * cov_tp / math.sqrt(cov_pp * cov_tt)


# A prediction that is not a number scores as this value; -1 follows T5's STS-B convention
# (outside the 0-5 range, so a malformed output is penalized rather than ignored).
NON_NUMERIC = -1.0


def _as_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        return NON_NUMERIC
    return value if math.isfinite(value) else NON_NUMERIC


def _pearson(x: list[float], y: list[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(predictions: Sequence[str], references: References) -> float:
    """Pearson correlation of numeric predictions with the first reference (STS-B), x100."""
    _check(predictions, references)
    return 100.0 * _pearson([_as_float(p) for p in predictions], [float(refs[0]) for refs in references])


def spearman(predictions: Sequence[str], references: References) -> float:
    """Spearman rank correlation (Pearson of average ranks), x100."""
    _check(predictions, references)
    x = _ranks([_as_float(p) for p in predictions])
    y = _ranks([float(refs[0]) for refs in references])
    return 100.0 * _pearson(x, y)


def _rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenization: lower-case alphanumeric runs, no stemming."""
    return [t for t in _ROUGE_TOKEN.split(text.lower()) if t]


def _lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            cur = row[j]
            row[j] = prev + 1 if x == y else max(row[j], row[j - 1])
            prev = cur
    return row[-1]


def rouge_l_f(prediction: str, reference: str) -> float:
    """Sentence-level Rouge-L F1 from the longest common subsequence of tokens, on 0-1."""
    pred, ref = _rouge_tokens(prediction), _rouge_tokens(reference)
    if not pred or not ref:
        return 0.0
    return _overlap_f1(_lcs_length(pred, ref), len(pred), len(ref))


def _overlap_f1(overlap: int, n_pred: int, n_ref: int) -> float:
    """F1 of an overlap count between a prediction and a reference (LCS or shared tokens)."""
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def _best_reference_mean(score, predictions: Sequence[str], references: References) -> float:
    """Mean over examples of the best ``score(prediction, reference)`` over its references, x100."""
    _check(predictions, references)
    total = sum(max(score(p, r) for r in refs) for p, refs in zip(predictions, references))
    return 100.0 * total / len(predictions)


def rouge_l(predictions: Sequence[str], references: References) -> float:
    """Mean over examples of the best Rouge-L F1 against any reference, x100."""
    return _best_reference_mean(rouge_l_f, predictions, references)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token-overlap F1 of one prediction against one reference, on 0-1."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    return _overlap_f1(sum((Counter(pred) & Counter(ref)).values()), len(pred), len(ref))


def qa_f1(predictions: Sequence[str], references: References) -> float:
    """Mean over examples of the best SQuAD token F1 against any reference (QA-F1), x100."""
    return _best_reference_mean(token_f1, predictions, references)


METRICS: dict[str, Callable[[Sequence[str], References], float]] = {
    "accuracy": exact_match,
    "em": exact_match,
    "classification_f1": classification_f1,
    "matthews": matthews,
    "pearson": pearson,
    "spearman": spearman,
    "rouge_l": rouge_l,
    "qa_f1": qa_f1,
}
"""Canonical metric names. ``accuracy`` and ``em`` coincide under CrossFit's normalization; both
names are kept because the papers report them under different headings."""

# CrossFit's spellings (its dataloader/metrics.py and the paper notes), mapped to canonical names.
ALIASES = {
    "acc": "accuracy",
    "exact_match": "em",
    "classification-f1": "classification_f1",
    "macro_f1": "classification_f1",
    "matthew-correlation": "matthews",
    "mcc": "matthews",
    "rouge-l": "rouge_l",
    "qa-f1": "qa_f1",
}

LABEL_F1_PREFIX = "f1:"
"""``f1:<label>`` is the F1 of one positive label, e.g. ``f1:equivalent`` for GLUE MRPC."""


def canonical_metric(name: str) -> str:
    """The canonical spelling of a metric name; raises ValueError listing valid names."""
    if name.lower().startswith(LABEL_F1_PREFIX) and len(name) > len(LABEL_F1_PREFIX):
        return LABEL_F1_PREFIX + name[len(LABEL_F1_PREFIX):]
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in METRICS:
        valid = ", ".join([*METRICS, LABEL_F1_PREFIX + "<positive label>"])
        raise ValueError(f"unknown metric {name!r}; valid metrics: {valid} "
                         f"(CrossFit spellings such as ACC, Classification-F1, Rouge-L also work)")
    return key


def compute(metric_name: str, predictions: Sequence[str], references: References) -> float:
    """Score ``predictions`` against ``references`` (a list of lists of strings) with a metric.

    >>> compute("accuracy", ["Positive"], [["positive"]])
    100.0
    """
    name = canonical_metric(metric_name)
    if name.startswith(LABEL_F1_PREFIX):
        return label_f1(name[len(LABEL_F1_PREFIX):])(predictions, references)
    return METRICS[name](predictions, references)
