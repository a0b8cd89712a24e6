"""A launch uses exactly the credential values its preflight checked, whatever the person changes elsewhere.

Real SLURM behind the real sshd; the bot process; the fake Slack Web API.
"""

from __future__ import annotations

import pytest

from taobot.slack import blocks as B
from tests.harness import SlackUser, blocks_text
from tests.polling import wait_until
from tests.slurm_flow import (  # noqa: F401 - slurm_bot is a fixture
    LAB,
    complete_intake,
    press_launch,
    scenario,
    slurm_bot,
    ssh,
)

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slurm_lane(1),
]  # the test cluster, as lane 1's own user: see tests/conftest.py

UNCHECKED_HOST = "127.0.0.1:1"  # nothing listens there: a launch sent to it fails


def superseded_cards(thread) -> int:
    return sum(1 for m in thread.replies() if "Superseded by a newer preflight" in blocks_text(m))


def held_host(bot, thread) -> str:
    store = bot.store()
    try:
        fingerprint = store.get_intake(thread.intake_id).credentials["SLURM_HOSTNAME"]
        return store.thread_credentials(thread.intake_id, thread.person.user, {"SLURM_HOSTNAME": fingerprint})[
            "SLURM_HOSTNAME"
        ]
    finally:
        store.close()


def job_of(bot, launch_id: str) -> str:
    store = bot.store()
    try:
        return store.get_launch(launch_id).job_id
    finally:
        store.close()


def test_a_change_in_another_thread_never_reaches_a_checked_launch(slurm_bot):
    person = SlackUser(slurm_bot)
    checked_host = f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}"
    first = complete_intake(person, scenario("held-a", STANDIN_SECONDS="1"), monitor="monitor=no")
    second = complete_intake(person, scenario("held-b", STANDIN_SECONDS="1"), monitor="monitor=no")
    for thread in (first, second):
        thread.press(B.RUN_PREFLIGHT)
        thread.wait_card("Preflight passed.", timeout=30)

    # The same person, in a third thread, saves another login host.
    other = person.launch("cosmos-rl")
    other.say("platform=slurm")
    other.wait_card("*Platform:* SLURM")
    other.submit(other.open_modal(B.OPEN_CREDENTIALS), {"cred_SLURM_HOSTNAME": UNCHECKED_HOST})
    other.wait_card("`SLURM_HOSTNAME` set")

    # The first thread's gate stayed open: its launch goes to the host its preflight checked.
    job = job_of(slurm_bot, press_launch(first))
    assert job
    wait_until(lambda: job in ssh(f"sacct -n -X -j {job} -o jobid"), 30, f"job {job} in the cluster's accounting")

    # The second thread changes an input and checks again: it keeps its own host, so preflight passes again.
    second.say("num_gpus=2")
    second.wait_card("num_gpus=2")
    second.say("num_gpus=1")
    second.wait_card("status: *complete*")
    assert held_host(slurm_bot, second) == checked_host
    superseded = superseded_cards(second)
    second.press(B.RUN_PREFLIGHT)
    wait_until(
        lambda: (
            superseded_cards(second) > superseded
            and any(blocks_text(m).startswith(f"Preflight {second.intake_id}: passed") for m in second.replies())
        ),
        30,
        "the second preflight to pass",
        show=lambda: [blocks_text(m)[:80] for m in second.replies()],
    )
    second.wait_card("The launch gate is open for exactly these inputs")
    job = job_of(slurm_bot, press_launch(second))
    assert job
    wait_until(lambda: job in ssh(f"sacct -n -X -j {job} -o jobid"), 30, f"job {job} in the cluster's accounting")
    # Where the new value was given, it is the one held.
    assert held_host(slurm_bot, other) == UNCHECKED_HOST
