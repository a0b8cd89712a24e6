"""Retry without a cluster: the `retry=` reply, when a launch retries by itself, and the final reply's triage.

What happens on a real cluster (a node taken down, a retry launched and linked) is in test_retry_slurm.py.
"""

from __future__ import annotations

import json

import pytest

from taobot import views as V
from taobot.intake import Step, parse_reply
from taobot.intake.events import SetRetry
from taobot.intake.intents import RETRY, WORDS, Retry, command_intent
from taobot.intake.transitions import apply
from taobot.launches import JobState
from taobot.slack import blocks as B
from taobot.slack.render import render
from taobot.triage import MAX_CHAIN, FailureKind, Triage, auto_retry, columns, stored, triage
from taobot.view_text import value_lines
from tests.builders import CATALOG, drive_to, launch_record, new
from tests.fakes._blocks import validate_message_blocks
from tests.test_blocks import assert_message_ok

NODE_FAIL = Triage(FailureKind.INFRASTRUCTURE, "node failure", "platform state NODE_FAIL")
TRACEBACK = Triage(
    FailureKind.PROGRAM,
    "Python exception",
    "KeyError: 'loss_bbox_enc'",
    ('File "/opt/train.py", line 118, in run_experiment\n    trainer.fit(model)',),
)


@pytest.mark.parametrize(("text", "times"), [("retry=infra:3", 3), ("retry=INFRA:1", 1), ("retry=off", 0)])
def test_retry_replies_set_the_automatic_retry(text, times):
    parsed = parse_reply(text, new(), CATALOG)
    assert parsed.errors == [] and parsed.events == [SetRetry(times)]
    out = apply(new(), parsed.events[0], CATALOG)
    assert out.state.retry_infra == times and out.notes


@pytest.mark.parametrize("text", ["retry=infra:0", f"retry=infra:{MAX_CHAIN}", "retry=always", "retry=infra"])
def test_a_retry_reply_out_of_range_is_refused_with_what_is_allowed(text):
    parsed = parse_reply(text, new(), CATALOG)
    assert parsed.events == []
    (error,) = parsed.errors
    assert "`retry` takes `infra:N`" in error and f"N from 1 to {MAX_CHAIN - 1}" in error and "or `off`" in error


def test_a_launched_thread_still_takes_retry_and_nothing_else_and_the_card_shows_it():
    launched = drive_to(Step.COMPLETE, "slurm").model_copy(update={"status": "launched"})
    out = apply(launched, SetRetry(2), CATALOG)
    assert out.state.retry_infra == 2 and not out.errors
    refused = apply(launched, parse_reply("num_gpus=2", launched, CATALOG).events[0], CATALOG)
    assert refused.errors and refused.state is launched
    lines = value_lines(V.intake_facts(out.state, CATALOG))
    assert "*Retry:* an infrastructure failure retries by itself, up to 2 times" in lines
    assert not any(line.startswith("*Retry:*") for line in value_lines(V.intake_facts(launched, CATALOG)))


def test_retry_is_one_command_for_the_button_and_the_reply():
    assert WORDS["retry"] == RETRY
    assert command_intent(RETRY, "abcd1234-00001") == Retry("abcd1234-00001")
    assert RETRY in B.ACTION_IDS


def test_automatic_retry_goes_for_infrastructure_only_and_stops_when_used_up_or_the_chain_is_full():
    assert auto_retry(NODE_FAIL, 1, 0) == (False, None)  # not opted in
    go, said = auto_retry(NODE_FAIL, 1, 3)
    assert go and "Retrying automatically (1 of 3)" in said
    go, said = auto_retry(NODE_FAIL, 3, 3)
    assert go and "(3 of 3)" in said
    go, said = auto_retry(NODE_FAIL, 4, 3)
    assert not go and "Automatic retries used up (3 of 3)" in said
    go, said = auto_retry(NODE_FAIL, MAX_CHAIN, MAX_CHAIN - 1)
    assert not go and f"the most taobot runs ({MAX_CHAIN})" in said
    go, said = auto_retry(TRACEBACK, 1, 3)
    assert not go and "for infrastructure failures only" in said


def test_a_stored_triage_reads_back_the_same():
    row = columns(TRACEBACK)
    assert stored(row["failure_kind"], row["failure_cause"], row["failure_line"], row["failure_frames"]) == TRACEBACK
    assert json.loads(columns(TRACEBACK)["failure_frames"]) == list(TRACEBACK.frames)
    assert stored(None, None, None, None) is None


def final(triage_, **kw):
    launch = launch_record(
        state=JobState.FAILED, native="NODE_FAIL", exit_code=None, ended_at=1.0e9, **kw.pop("row", {})
    )
    cause = triage_.cause if triage_.retriable else None
    return render(V.FinalUpdate(launch, ("last line",), cause, 1.0e9 + 60, triage_, **kw))


def actions_of(message) -> list[str]:
    return [el["action_id"] for b in message["blocks"] if b["type"] == "actions" for el in b["elements"]]


def test_an_infrastructure_failure_offers_retry_and_says_which_line_decided():
    message = final(NODE_FAIL, retry_offered=True)
    text = json.dumps(message)
    assert "*Failure triage: infrastructure* (node failure)" in text and "likely retriable" in text
    assert "Decided by: `platform state NODE_FAIL`" in text and "*Retry* runs preflight again" in text
    assert actions_of(message) == [RETRY, B.RELAUNCH]
    assert validate_message_blocks(message["blocks"]) == []


def test_a_full_chain_or_a_program_failure_offers_no_retry():
    full = final(NODE_FAIL, chain=MAX_CHAIN, row={"retry_of": "abcd1234-00000"})
    assert actions_of(full) == [B.RELAUNCH]
    assert f"launch {MAX_CHAIN} of its retry chain" in json.dumps(full)
    assert f"retry {MAX_CHAIN - 1} of its chain (it retries `abcd1234-00000`)" in json.dumps(full)
    program = final(TRACEBACK)
    text = json.dumps(program)
    assert actions_of(program) == [B.RELAUNCH]
    assert "*Failure triage: program* (Python exception)" in text and "Last frames of the traceback" in text
    assert "trainer.fit(model)" in text and "likely retriable" not in text


def test_a_huge_traceback_and_evidence_stay_within_block_kit_limits():
    frames = [line for i in range(5) for line in (f'  File "/{"x" * 900}/m{i}.py", line {i}, in f', "    " + "y" * 900)]
    tail = ["Traceback (most recent call last):", *frames, "ValueError: " + "z" * 5000]
    found = triage(JobState.FAILED, "FAILED", None, 1, tail)
    assert len(found.evidence) <= 300 and len(found.frames) == 3
    message = final(found)
    assert_message_ok(message)
    assert validate_message_blocks(message["blocks"]) == []
