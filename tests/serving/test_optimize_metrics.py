"""The metrics `modelkube optimize` scores with: SQuAD-style normalization, every output field."""

import dspy
import pytest

from modelkube_serving.programs.metrics import (
    dspy_metric,
    exact_match,
    f1,
    normalize,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Runtime.", "runtime"),
        ("  an   operator, a chart! ", "operator chart"),
        ("Theory", "theory"),  # an article only as a whole word
        (42, "42"),
        ("", ""),
    ],
)
def test_normalize_lowers_and_drops_punctuation_articles_and_extra_spaces(
    text: object, normalized: str
) -> None:
    assert normalize(text) == normalized


@pytest.mark.parametrize(
    ("expected", "predicted", "score"),
    [
        ("the runtime", "Runtime!", 1.0),
        ("kopf operator", "operator", 2 * 1.0 * 0.5 / 1.5),  # precision 1, recall 1/2
        ("red green", "green blue", 0.5),
        ("red", "blue", 0.0),
        ("", "", 1.0),
        ("the", "answer", 0.0),  # nothing left of the expected text but the guess has words
    ],
)
def test_token_f1_is_squads(expected: str, predicted: str, score: float) -> None:
    assert token_f1(expected, predicted) == pytest.approx(score)


def test_exact_match_needs_every_output_field() -> None:
    expected = {"answer": "Runtime", "confidence": "high"}
    assert exact_match(expected, {"answer": "the runtime.", "confidence": "High"}, ["answer"]) == 1
    assert exact_match(expected, {"answer": "runtime", "confidence": "low"}, list(expected)) == 0
    assert exact_match(expected, {"answer": "runtime"}, list(expected)) == 0  # field missing


def test_f1_is_the_mean_over_output_fields() -> None:
    expected = {"answer": "red green", "city": "Paris"}
    predicted = {"answer": "green blue", "city": "paris"}
    assert f1(expected, predicted, ["answer", "city"]) == pytest.approx(0.75)
    assert f1(expected, {"answer": "red green"}, ["answer", "city"]) == pytest.approx(0.5)
    assert f1(expected, predicted, []) == 0.0


def test_dspy_metric_takes_example_prediction_and_trace() -> None:
    metric = dspy_metric("f1", ["answer"])
    example = dspy.Example(question="q", answer="red green").with_inputs("question")
    prediction = dspy.Prediction(answer="green")
    assert metric(example, prediction) == pytest.approx(2 / 3)
    assert metric(example, prediction, trace=[]) == pytest.approx(2 / 3)
    assert metric.__name__ == "f1"
