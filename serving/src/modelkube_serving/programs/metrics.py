"""The metrics `modelkube optimize` scores a program with: pure functions over field values.

Both normalize the way SQuAD's evaluation script does (lower case, no punctuation, no articles,
single spaces), so "The Runtime." matches "runtime". A program with several output fields is
scored on all of them: exact match needs every field to match, F1 is the mean over fields.
"""

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)

Score = Callable[[Mapping[str, Any], Mapping[str, Any], Sequence[str]], float]


def normalize(value: object) -> str:
    text = str(value).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(expected: object, predicted: object) -> float:
    gold, guess = normalize(expected).split(), normalize(predicted).split()
    if not gold or not guess:
        return float(gold == guess)  # both empty is a match; one empty scores nothing
    common = sum((Counter(gold) & Counter(guess)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(guess), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(
    expected: Mapping[str, Any], predicted: Mapping[str, Any], fields: Sequence[str]
) -> float:
    same = all(
        field in predicted and normalize(expected[field]) == normalize(predicted[field])
        for field in fields
    )
    return float(same)


def f1(expected: Mapping[str, Any], predicted: Mapping[str, Any], fields: Sequence[str]) -> float:
    if not fields:
        return 0.0
    scores = [token_f1(expected[f], predicted[f]) if f in predicted else 0.0 for f in fields]
    return sum(scores) / len(scores)


METRICS: dict[str, Score] = {"exact_match": exact_match, "f1": f1}


def dspy_metric(name: str, fields: Sequence[str]) -> Callable[..., float]:
    """The metric in the form DSPy's optimizers call: `metric(example, prediction, trace=None)`."""
    score = METRICS[name]
    wanted = tuple(fields)

    def metric(example: Any, prediction: Any, trace: object = None) -> float:
        return score(dict(example.items()), dict(prediction.items()), wanted)

    metric.__name__ = name
    return metric
