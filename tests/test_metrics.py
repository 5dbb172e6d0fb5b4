"""Metrics against hand-computed cases and, where one exists, a reference implementation."""

import random

import pytest
from scipy.stats import spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from deltaspace.data import metrics
from deltaspace.data.metrics import compute, normalize_answer


def refs(*golds):
    return [[g] for g in golds]


def test_normalize_answer_follows_squad():
    assert normalize_answer("  The Cat, sat!  ") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_accuracy_normalizes_and_takes_any_reference():
    preds = ["The Cat!", "dog", "bird", "Paris"]
    golds = [["cat"], ["wolf", "Dog."], ["fish"], ["paris", "Paris, France"]]
    assert compute("accuracy", preds, golds) == pytest.approx(75.0)
    assert compute("em", preds, golds) == pytest.approx(75.0)
    assert compute("ACC", preds, golds) == pytest.approx(75.0)  # CrossFit spelling


def test_classification_f1_macro_over_gold_labels_by_hand():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "x"]  # "x" is not a gold label: a miss for c, not a class of its own
    # a: tp 1, fp 0, fn 1 -> 2/3; b: tp 2, fp 1, fn 0 -> 4/5; c: tp 0 -> 0; mean over {a, b, c}
    expected = 100 * (2 / 3 + 4 / 5 + 0) / 3
    assert compute("classification_f1", pred, refs(*gold)) == pytest.approx(expected)
    assert expected == pytest.approx(100 * f1_score(gold, pred, labels=["a", "b", "c"], average="macro"))
    # sklearn's default (union of labels) would average over x too and give a lower score
    assert expected > 100 * f1_score(gold, pred, average="macro")


def test_classification_f1_is_case_insensitive():
    assert compute("Classification-F1", ["POSITIVE", "negative"], refs("positive", "Negative")) == 100.0


def test_label_f1_scores_one_positive_class():
    gold = ["equivalent", "equivalent", "not_equivalent", "not_equivalent"]
    pred = ["equivalent", "not_equivalent", "equivalent", "not_equivalent"]
    # positive class: tp 1, fp 1, fn 1 -> 2 / 4
    assert compute("f1:equivalent", pred, refs(*gold)) == pytest.approx(50.0)


def test_matthews_binary_by_hand_and_multiclass_against_sklearn():
    gold, pred = ["1", "1", "0", "0"], ["1", "0", "0", "0"]
    # tp 1, tn 2, fp 0, fn 1: (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3)
    assert compute("matthews", pred, refs(*gold)) == pytest.approx(100 * 2 / 12 ** 0.5)
    rng = random.Random(0)
    gold = [rng.choice("abc") for _ in range(60)]
    pred = [g if rng.random() < 0.6 else rng.choice("abcd") for g in gold]
    assert compute("mcc", pred, refs(*gold)) == pytest.approx(100 * matthews_corrcoef(gold, pred))
    assert compute("matthews", ["a"] * 4, refs("a", "b", "a", "b")) == 0.0  # constant prediction


def test_pearson_and_spearman():
    # x = 1,2,3; y = 1,2,4: sxy = 3, sxx = 2, syy = 42/9
    assert compute("pearson", ["1", "2", "3"], refs("1", "2", "4")) == pytest.approx(100 * 3 / (2 * 42 / 9) ** 0.5)
    x, y = ["1", "2", "2", "5", "3"], ["0.5", "1", "1.5", "4", "4"]
    assert compute("spearman", x, refs(*y)) == pytest.approx(100 * spearmanr([1, 2, 2, 5, 3], [0.5, 1, 1.5, 4, 4])[0])
    # a non-numeric prediction counts as -1 (T5's STS-B convention)
    assert compute("pearson", ["oops", "2", "3"], refs("1", "2", "3")) == pytest.approx(
        compute("pearson", ["-1", "2", "3"], refs("1", "2", "3")))


def test_rouge_l_by_hand():
    # LCS of "the cat sat on the mat" / "the cat lay on the mat" is 5 of 6 tokens each way
    assert compute("rouge_l", ["the cat sat on the mat"], [["the cat lay on the mat"]]) == pytest.approx(100 * 5 / 6)
    # several references: the best one counts
    assert compute("Rouge-L", ["a b c d"], [["x y", "a b c d"]]) == pytest.approx(100.0)


def test_rouge_l_agrees_with_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")  # not a declared dependency
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(1)
    words = "the cat dog sat ran on under mat rug a big small".split()
    for _ in range(25):
        p = " ".join(rng.choices(words, k=rng.randint(1, 12)))
        r = " ".join(rng.choices(words, k=rng.randint(1, 12)))
        assert metrics.rouge_l_f(p, r) == pytest.approx(scorer.score(r, p)["rougeL"].fmeasure)


def test_qa_f1_token_overlap_by_hand():
    # "the big cat" -> "big cat"; "a cat" -> "cat": overlap 1, precision 1/2, recall 1
    assert compute("qa_f1", ["the big cat"], [["a cat", "dog"]]) == pytest.approx(100 * 2 / 3)
    assert compute("QA-F1", ["nothing"], [["a cat"]]) == 0.0


def test_unknown_metric_lists_valid_names():
    with pytest.raises(ValueError, match="unknown metric 'bleu'.*accuracy.*rouge_l"):
        compute("bleu", ["a"], refs("a"))


@pytest.mark.parametrize("preds, references, message", [
    (["a", "b"], [["a"]], "2 predictions but 1"),
    ([], [], "no predictions"),
    (["a"], ["a"], "must be a non-empty list"),
    (["a"], [[]], "must be a non-empty list"),
])
def test_compute_rejects_malformed_inputs(preds, references, message):
    with pytest.raises(ValueError, match=message):
        compute("accuracy", preds, references)
