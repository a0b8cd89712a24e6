"""SIGTERM and kill -9 restarts under load: threads mid-intake and jobs being monitored.

Nothing is lost: every intake continues where it stopped, every monitored
job keeps getting its interval updates, and no status slot is posted twice.
"""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest

from tests.harness import SlackUser
from tests.slurm_flow import launch, scenario, slurm_bot, status_posts, wait_final  # noqa: F401 - slurm_bot is a fixture

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slurm_lane(1),
]  # the test cluster, as lane 1's own user: see tests/conftest.py

# A status-interval minute of 20 s in the bot (see slurm_flow.MINUTE_S): each restart below is over well
# inside one interval, so "no slot skipped" holds for the reason it would at real minutes.
INTERVAL_MINUTE_SECONDS = 20.0

INTAKE_STEPS = [
    ("dino", "platform=slurm monitor=yes interval=5"),
    ("rtdetr", "platform=kubernetes monitor=no"),
    ("cosmos-rl", "platform=docker"),
]


def test_sigterm_then_kill_9_under_load_lose_nothing_and_post_nothing_twice(slurm_bot, slack):
    person = SlackUser(slurm_bot)
    jobs = [launch(person, scenario(f"load{i}", TAO_STANDIN_SLEEP="7", TAO_STANDIN_EPOCHS="9")) for i in range(2)]
    intakes = []
    for model, answer in INTAKE_STEPS:
        thread = person.launch(model)
        thread.say(answer)
        thread.wait_card("*Platform:*")
        intakes.append(thread)

    # graceful restart first
    slurm_bot.proc.send_signal(signal.SIGTERM)
    assert slurm_bot.proc.wait(timeout=40) == 0
    slurm_bot.proc = None
    slurm_bot.start()
    for thread in intakes:
        thread.say("num_gpus=1")
        thread.wait_card("num_gpus=1")

    # wait until both jobs have had their first update, then kill -9 in the middle of monitoring
    deadline = time.time() + 100
    while not all(1 in status_posts(t, lid) for t, lid in jobs) and time.time() < deadline:
        time.sleep(1)
    assert all(1 in status_posts(t, lid) for t, lid in jobs)
    slurm_bot.kill(signal.SIGKILL)
    slurm_bot.proc = None
    slurm_bot.start()

    # every intake answers where it left off, with everything it had
    for thread, (model, answer) in zip(intakes, INTAKE_STEPS):
        thread.say("image=nvcr.io/nvidia/tao/custom:1")  # a registry the default policy allows
        card = thread.wait_card("nvcr.io/nvidia/tao/custom:1")
        assert "num_gpus=1" in card, card
        platform_word = answer.split()[0].split("=")[1]
        assert "*Platform:* —" not in card and platform_word[:4].lower() in card.lower()

    for thread, launch_id in jobs:
        final = wait_final(thread, launch_id, 180)
        assert "Succeeded" in final
        posts = status_posts(thread, launch_id)
        assert all(len(v) == 1 for v in posts.values()), {k: len(v) for k, v in posts.items()}
        assert 1 in posts and 2 in posts, sorted(posts)  # no interval skipped across the restarts
    with sqlite3.connect(slurm_bot.db) as db:
        assert db.execute("SELECT COUNT(*) FROM updates WHERE status != 'posted'").fetchone()[0] == 0
