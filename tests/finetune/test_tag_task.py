"""The tag task's data: what tag_task.py generates, distinct, and held out for real."""

import json

from tests.finetune import tag_task
from tests.finetune.tag_task import HELD_OUT, TRAIN


def test_the_checked_in_files_are_the_generated_ones() -> None:
    assert (TRAIN.read_text(), HELD_OUT.read_text()) == tag_task.generated()


def test_no_word_repeats_and_no_held_out_word_is_trained_on() -> None:
    def prompts(path: str) -> list[str]:
        return [json.loads(line)["messages"][-2]["content"] for line in path.splitlines()]

    train, held = prompts(TRAIN.read_text()), prompts(HELD_OUT.read_text())
    assert len(train) == tag_task.TRAIN_ROWS and len(held) == tag_task.HELD_OUT_ROWS
    assert len({*train, *held}) == len(train) + len(held)


def test_exact_match_takes_the_whole_answer_only() -> None:
    expected = ["[[kasoko]]", "[[rugi]]"]
    assert tag_task.exact_match(["[[kasoko]]\n", "[[rugi]]"], expected) == 1.0
    assert tag_task.exact_match(["[[kasoko]] is it", "rugi"], expected) == 0.0
