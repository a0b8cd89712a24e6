"""Approvals end to end in a Slack thread: the owner is refused, an approver approves, the gate opens, a change closes it.

The real bot runs with a policy that asks for an approval above 2 GPUs,
against the fake Slack, its own SQLite database and a private dockerd with
an `nvidia` runtime (so the local-docker preflight passes).
"""

from __future__ import annotations

import time

from taobot.intake.intents import APPROVE
from taobot.slack import blocks as B
from tests.fakes import ids
from tests.harness import SlackUser, blocks_text
from tests.polling import wait_until
from tests.test_policy_slack import (  # noqa: F401 - fixtures
    containers,
    data,
    dino_on_docker,
    gpu_daemon,
    policy_bot,
    preflight_text,
    refusals,
    roots,
    stored,
)

OWNER = ids.USER_ID
APPROVER = "U0APPROVR1"
STRANGER = "U0STRANGR1"
POLICY = f"approvers: [{APPROVER}]\napprovals:\n  gpus_over: 2\n"


def ephemeral_to(slack, user: str, needle: str) -> str:
    def found() -> str | None:
        return next((m["text"] for m in slack.ephemeral_messages(ids.CHANNEL_ID, user) if needle in m["text"]), None)

    return wait_until(found, 30, f"an ephemeral answer to {user} with {needle!r}")


def test_an_approval_by_a_second_person_opens_the_gate_for_exactly_those_inputs(tmp_path, slack, data, gpu_daemon):
    bot = policy_bot(tmp_path, slack, POLICY + roots(data), DOCKER_HOST=gpu_daemon)
    try:
        thread = dino_on_docker(SlackUser(bot), data, gpus=4)
        assert "8. approved by a second person: 4 GPUs is over the policy's 2 without an approval" in thread.card_text()
        thread.press(B.RUN_PREFLIGHT)
        text = preflight_text(thread, "passed")
        assert "It still needs an approval: 4 GPUs is over the policy's 2" in text
        ask = thread.wait_reply("press *Approve* on the card")
        assert f"<@{APPROVER}>: press *Approve* on the card" in ask and f"started by <@{OWNER}>" in ask
        thread.wait_card("the launch waits for an approval")
        assert "Launch" not in [b.get("text", {}).get("text") for b in _buttons(thread.card())]

        thread.say("launch")  # the gate is shut without the approval
        assert "8. approved by a second person" in thread.wait_reply("Not launching: the launch gate is closed")

        since = time.time()
        thread.press(APPROVE)  # the owner: refused
        assert "so you cannot approve it" in ephemeral_to(slack, OWNER, "cannot approve")
        thread.press(APPROVE, as_user=STRANGER)
        assert f"<@{APPROVER}>" in ephemeral_to(slack, STRANGER, "Only admins and the policy's approvers")
        state, launches = stored(bot, thread.intake_id)
        assert state.approval is None and launches == []
        assert {r["actor"] for r in refusals(bot, since)} == {OWNER, STRANGER}

        thread.press(APPROVE, as_user=APPROVER)
        assert "for exactly these inputs" in thread.wait_reply(f"<@{APPROVER}> approved launch `{thread.intake_id}`")
        card = thread.wait_card("The launch gate is open")
        assert f"8. approved by a second person: approved by <@{APPROVER}> at " in card
        assert "Launch" in [b.get("text", {}).get("text") for b in _buttons(thread.card())]
        state, _ = stored(bot, thread.intake_id)
        assert state.approval.by == APPROVER and state.approval.fingerprint == state.preflight.fingerprint

        thread.say("num_gpus=3")  # any change after the approval needs a new one
        card = thread.wait_card(f"inputs changed since <@{APPROVER}> approved")
        assert "The launch gate is open" not in card
        thread.press(B.RUN_PREFLIGHT)

        def asked_twice() -> bool:
            return sum("press *Approve* on the card" in blocks_text(m) for m in thread.replies()) >= 2

        wait_until(asked_twice, 60, "the second preflight to pass and ask the approvers again")
        thread.say("approve", as_user=APPROVER)  # a typed approval from the approver, in a thread not theirs
        thread.wait_card("The launch gate is open")
        assert containers(gpu_daemon) == []  # approving creates nothing
    finally:
        bot.kill()


def test_a_launch_below_the_thresholds_needs_no_approval(tmp_path, slack, data, gpu_daemon):
    bot = policy_bot(tmp_path, slack, POLICY + roots(data), DOCKER_HOST=gpu_daemon)
    try:
        thread = dino_on_docker(SlackUser(bot), data, gpus=2)
        assert "approved by a second person" not in thread.card_text()
        thread.press(B.RUN_PREFLIGHT)
        assert "The launch gate is open" in preflight_text(thread, "passed")
        thread.wait_card("Preflight passed.")
        thread.say("approve", as_user=APPROVER)
        assert "needs no approval" in ephemeral_to(slack, APPROVER, "needs no approval")
    finally:
        bot.kill()


def _buttons(message: dict) -> list[dict]:
    return [el for b in message.get("blocks", []) if b.get("type") == "actions" for el in b.get("elements", [])]
