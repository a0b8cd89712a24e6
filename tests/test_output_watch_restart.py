"""The "no output for N min" signal survives a restart of the bot: the silent stretch is recorded when it
begins (`output_watch`), so the restarted bot goes on counting it, and never mentions the owner twice.

The end-to-end test runs a real SLURM job of the lab's stand-in that prints its start lines and then nothing,
with the real bot (`taobot serve --http`) and TAOBOT_NO_OUTPUT_WARN_MINUTES=3; the bot is killed with
SIGKILL in the middle of the silence and started again on the same database.
"""

from __future__ import annotations

import signal

import pytest

from taobot.slack import blocks as B
from taobot.stuck import SILENT_SLOT, OutputWatch
from tests.fakes import ids
from tests.harness import SlackUser, blocks_text
from tests.polling import wait_until
from tests.slurm_flow import launch, scenario, slurm_bot, ssh, status_posts  # noqa: F401 - slurm_bot is a fixture

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slurm_lane(2),
]  # the test cluster, as lane 2's own user: see tests/conftest.py


def test_a_silent_stretch_is_handed_out_once_for_recording_and_restored_as_it_was():
    watch = OutputWatch()
    assert watch.observe("L", "100", 10.0) is None  # first sight: the log may have just grown
    assert watch.observe("L", "100", 40.0) == ("100", 10.0)  # unchanged since 10: a silence begins, record it
    assert watch.observe("L", "100", 70.0) is None  # the same stretch: recorded already
    assert watch.observe("L", "180", 100.0) is None  # it grew: a new mark, nothing to record
    assert watch.observe("L", "180", 130.0) == ("180", 100.0)  # silent again: a new stretch
    assert watch.silent_for("L", 160.0) == 60.0

    restarted = OutputWatch()  # a new process: what was recorded, and nothing else
    restarted.restore("L", "180", 100.0)
    assert restarted.silent_for("L", 160.0) == 60.0 and restarted.seen_at("L") is None
    assert restarted.observe("L", "180", 170.0) is None  # still the recorded stretch: not recorded twice
    assert restarted.silent_for("L", 190.0) == 90.0
    assert restarted.observe("L", "250", 200.0) is None and restarted.silent_for("L", 230.0) == 30.0
    other = OutputWatch()
    other.restore("L", "180", 100.0)
    assert other.observe("L", "999", 170.0) is None and other.silent_for("L", 170.0) == 0.0  # it grew meanwhile


def recorded(bot, launch_id: str):
    store = bot.store()
    try:
        return store.output_watch().get(launch_id)
    finally:
        store.close()


def test_a_restart_in_the_middle_of_a_silence_neither_forgets_it_nor_mentions_it_twice(slurm_bot, slack):
    slurm_bot.kill()
    # 3 minutes of the bot's (slurm_flow.MINUTE_S each): three update slots, so an update right after the restart
    # that counted the silence afresh could not yet say it.
    slurm_bot.extra_env["TAOBOT_NO_OUTPUT_WARN_MINUTES"] = "3"
    slurm_bot.start()
    person = SlackUser(slurm_bot)
    root = scenario("silent", TAO_STANDIN_SLEEP="600", TAO_STANDIN_EPOCHS="1")  # starts, then prints nothing
    thread, launch_id = launch(person, root)

    # The silent stretch is recorded as soon as a poll finds the log where the last one left it.
    stretch = wait_until(lambda: recorded(slurm_bot, launch_id), 60, "the silent stretch to be recorded")
    mention = wait_until(
        lambda: status_posts(thread, launch_id).get(SILENT_SLOT), 120, "the owner to be told of the silence"
    )
    assert (
        len(mention) == 1
        and f"<@{ids.USER_ID}>" in blocks_text(mention[0])
        and "no output for" in blocks_text(mention[0])
    )
    assert recorded(slurm_bot, launch_id) == stretch  # the same stretch: written once

    slurm_bot.kill(signal.SIGKILL)
    before = max(s for s in status_posts(thread, launch_id) if s >= 1)
    slurm_bot.start()

    def first_update_after_restart():
        later = sorted(s for s in status_posts(thread, launch_id) if s > before)
        return blocks_text(status_posts(thread, launch_id)[later[0]][0]) if later else None

    # The first update of the restarted bot already counts the silence from before the restart (counted
    # afresh it would say nothing for a whole minute), and the owner is not told again.
    update = wait_until(first_update_after_restart, 60, "an update from the restarted bot")
    assert "*No output for " in update, update
    assert recorded(slurm_bot, launch_id) == stretch
    store = slurm_bot.store()
    try:
        job = store.get_launch(launch_id).job_id
    finally:
        store.close()
    assert ssh(f"squeue -h -j {job} -o %T || true").strip() == "RUNNING"  # still running, still silent
    wait_until(lambda: len([s for s in status_posts(thread, launch_id) if s > before]) >= 2, 60, "another update")
    assert len(status_posts(thread, launch_id)[SILENT_SLOT]) == 1
    assert all(len(v) == 1 for v in status_posts(thread, launch_id).values())  # nothing posted twice

    # When the launch ends its record goes.
    thread.press_on_reply(B.CANCEL_JOB, "Launched")
    wait_until(lambda: -1 in status_posts(thread, launch_id), 90, "the final reply")
    wait_until(lambda: recorded(slurm_bot, launch_id) is None, 30, "the record of the silence to go")
