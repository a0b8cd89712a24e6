"""The image question says what pulling the default image needs when not everyone can."""

from __future__ import annotations

import json

import pytest

from taobot import views as V
from taobot.intake import Step
from taobot.slack.render import render
from tests.builders import CATALOG, drive_to
from tests.fakes._blocks import validate_message_blocks, validate_view

NOTE = "pre-release Cosmos-RL build"


def _image_question(model: str) -> tuple[str, str]:
    state = drive_to(Step.IMAGE, "slurm", model, "train")
    card, modal = render(V.intake_card(state, CATALOG)), render(V.ImageForm(state))
    assert not validate_message_blocks(card["blocks"])
    assert not validate_view(modal)
    question = next(b for b in card["blocks"] if b.get("block_id", "").startswith("q_"))
    return json.dumps(question), json.dumps(modal)


def test_a_pre_release_default_says_what_access_it_needs_on_the_card_and_in_the_form() -> None:
    question, modal = _image_question("cosmos-rl")
    assert NOTE in question and "nvstaging" in question
    assert NOTE in modal


@pytest.mark.parametrize("model", ["dino", "cosmos-embed"])
def test_a_public_default_has_no_note(model: str) -> None:
    question, modal = _image_question(model)
    assert ":warning:" not in question and ":warning:" not in modal
    assert "nvcr.io/nvidia/tao/" in question
