"""The App Home tab: opening it shows a person their own launches, from every channel, and nobody else's;
its buttons cancel, detach and attach a real SLURM job through the thread's own path and rules."""

from __future__ import annotations

import time

import pytest

from taobot.slack.home import HOME_ATTACH, HOME_CANCEL_JOB, HOME_DETACH, home_view
from tests.fakes import ids, post_block_action, post_event
from tests.harness import SIGNING_SECRET, SlackUser, blocks_text
from tests.polling import wait_until
from tests.slurm_flow import launch, scenario, slurm_bot, wait_final  # noqa: F401 - slurm_bot is a fixture

pytestmark = [pytest.mark.slurm, pytest.mark.slurm_lane(2)]  # the buttons act on a real SLURM job

OTHER_USER = "U0TAOOTHER"
OTHER_CHANNEL = "C0TAOPRIV2"


def open_home(bot, user: str, tab: str = "home") -> None:
    resp = post_event(
        bot.url,
        SIGNING_SECRET,
        {"type": "app_home_opened", "user": user, "channel": "D0TAOHOME1", "tab": tab, "event_ts": "1.000001"},
    )
    assert resp.status_code == 200, resp


def home_text(slack, user: str) -> str:
    return blocks_text(slack.home_view(user) or {})


def test_home_lists_the_persons_own_launches_and_only_theirs(bot, slack):
    mine = SlackUser(bot).launch("dino")
    mine.say("platform=slurm")
    mine.wait_card("*Platform:* SLURM")
    also_mine = SlackUser(bot, ids.USER_ID, OTHER_CHANNEL).launch("cosmos-rl")
    theirs = SlackUser(bot, OTHER_USER).launch("dino", "evaluate")

    open_home(bot, ids.USER_ID)
    text = wait_until(lambda: home_text(slack, ids.USER_ID), 15, "the owner's Home tab")
    assert "Your TAO launches" in text and "*Being set up* (2)" in text
    assert mine.intake_id in text and also_mine.intake_id in text and "SLURM" in text
    assert f"<#{OTHER_CHANNEL}>" in text and f"<#{ids.CHANNEL_ID}>" in text
    assert theirs.intake_id not in text

    open_home(bot, OTHER_USER)
    other = wait_until(lambda: home_text(slack, OTHER_USER), 15, "the other person's Home tab")
    assert theirs.intake_id in other and mine.intake_id not in other

    # The Messages tab publishes nothing.
    before = len(slack.calls_for("views.publish"))
    open_home(bot, "U0TAONEW01", tab="messages")
    open_home(bot, "U0TAONEW02")
    wait_until(lambda: slack.home_view("U0TAONEW02"), 15, "a new person's Home tab")
    assert slack.home_view("U0TAONEW01") is None
    assert len(slack.calls_for("views.publish")) == before + 1
    assert "You have no launches yet" in home_text(slack, "U0TAONEW02")


def test_a_full_home_stays_inside_slacks_limits():
    from taobot.catalog import load_catalog
    from taobot.intake import start_intake
    from taobot.views import ChannelEntry, HomeView

    catalog = load_catalog()
    entries = tuple(
        ChannelEntry(start_intake(catalog, "dino", "train", ids.USER_ID, f"C{i:09d}"), "SLURM", None) for i in range(40)
    )
    view = home_view(HomeView(ids.USER_ID, entries, 500, time.time()))
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in view["blocks"])
    assert "The newest 40 of your 500 launches; 460 more are not shown." in blocks_text(view)


def test_a_home_of_launches_with_buttons_is_capped_at_100_blocks_and_says_how_many_are_not_shown():
    from taobot.catalog import load_catalog
    from taobot.intake import start_intake
    from taobot.slack.home import HOME_CANCEL_JOB, HOME_DETACH
    from taobot.views import ChannelEntry, HomeView
    from tests.builders import launch_record

    catalog = load_catalog()
    entries = []
    for i in range(60):
        state = start_intake(catalog, "dino", "train", ids.USER_ID, ids.CHANNEL_ID)
        state.thread_ts = f"1700000{i:03d}.000100"
        entries.append(ChannelEntry(state, "SLURM", launch_record(id=f"{state.id}-{i:05d}", intake_id=state.id)))
    view = home_view(HomeView(ids.USER_ID, tuple(entries), 60, time.time()), "https://tw.slack.com/")
    assert len(view["blocks"]) <= 100
    buttons = [el for b in view["blocks"] if b["type"] == "actions" for el in b["elements"]]
    shown = len([b for b in view["blocks"] if b["type"] == "actions"])
    assert 40 <= shown < 60 and {el["action_id"] for el in buttons} == {HOME_CANCEL_JOB, HOME_DETACH}
    assert f"The newest {shown} of your 60 launches; {60 - shown} more are not shown." in blocks_text(view)
    assert f"<https://tw.slack.com/archives/{ids.CHANNEL_ID}/p1700000000000100|open thread>" in blocks_text(view)


# --------------------------------------------------------------------------- buttons on a real SLURM job


def home_button(slack, user: str, action_id: str, launch_id: str) -> tuple[dict, str] | None:
    """(block, element) of the Home's button `action_id` for `launch_id`, or None when the Home has none."""
    for block in (slack.home_view(user) or {}).get("blocks", []):
        for el in block.get("elements", []) if block.get("type") == "actions" else []:
            if el.get("action_id") == action_id and el.get("value") == launch_id:
                return block, el
    return None


def press_home(bot, slack, user: str, action_id: str, value: str, block_id: str = "h_forged") -> None:
    """A click on the person's own Home tab (an App Home action: the view is the container, no channel)."""
    resp = post_block_action(
        bot.url,
        SIGNING_SECRET,
        user,
        None,
        None,
        None,
        action_id,
        value=value,
        block_id=block_id,
        view=slack.home_view(user) or {"id": "V0NOHOME", "type": "home", "blocks": []},
        trigger_id=slack.issue_trigger_id(user),
    )
    assert resp.status_code == 200, resp
    assert resp.elapsed < 3.0


def press_own(bot, slack, user: str, action_id: str, launch_id: str) -> None:
    found = wait_until(lambda: home_button(slack, user, action_id, launch_id), 30, f"{action_id} on the Home")
    press_home(bot, slack, user, action_id, launch_id, found[0]["block_id"])


def test_home_buttons_detach_attach_and_cancel_a_real_job_and_refuse_a_forged_one(slurm_bot, slack):
    from slack_sdk import WebClient

    from tests.harness import BOT_TOKEN
    from tests.test_retry_slurm import job_state

    person = SlackUser(slurm_bot)
    root = scenario("home", TAO_STANDIN_SLEEP="3", TAO_STANDIN_EPOCHS="60")
    thread, launch_id = launch(person, root)
    store = slurm_bot.store()
    try:
        job = store.get_launch(launch_id).job_id
        wait_until(lambda: job_state(job) == "RUNNING", 60, f"job {job} to run", show=lambda: job_state(job))

        open_home(slurm_bot, ids.USER_ID)
        text = wait_until(
            lambda: (lambda t: t if "*Running* (1)" in t else None)(home_text(slack, ids.USER_ID)),
            30,
            "the Running launch on the Home",
            show=lambda: home_text(slack, ids.USER_ID),
        )
        assert launch_id in text and job in text and "cosmos-rl train" in text and "SLURM" in text
        assert home_button(slack, ids.USER_ID, HOME_CANCEL_JOB, launch_id)
        assert home_button(slack, ids.USER_ID, HOME_DETACH, launch_id)
        # The link is the thread's own: what Slack's chat.getPermalink says for the thread's root message.
        link = text.split("|open thread>", 1)[0].rsplit("<", 1)[1]
        client = WebClient(token=BOT_TOKEN, base_url=slack.url)
        assert link == client.chat_getPermalink(channel=ids.CHANNEL_ID, message_ts=thread.thread_ts)["permalink"]
        assert slack.calls_for("auth.test") and len(slack.calls_for("chat.getPermalink")) == 1  # the bot asks none

        # Another person: their Home never shows it, and a forged button value is refused, audited, done nothing.
        open_home(slurm_bot, OTHER_USER)
        wait_until(lambda: slack.home_view(OTHER_USER), 15, "the other person's Home")
        assert launch_id not in home_text(slack, OTHER_USER)
        since = time.time()
        press_home(slurm_bot, slack, OTHER_USER, HOME_CANCEL_JOB, launch_id)
        press_home(slurm_bot, slack, OTHER_USER, HOME_DETACH, launch_id)
        refused = wait_until(
            lambda: (lambda r: r if len(r) == 2 else None)(
                [r for r in store.audit_rows(since=since, actor=OTHER_USER) if not r["allowed"]]
            ),
            30,
            "two refusals in the audit table",
        )
        assert {r["action"] for r in refused} == {"CancelJob", "Detach"}
        assert all(r["intake_id"] == thread.intake_id and "nor an admin" in r["reason"] for r in refused)
        notice = wait_until(
            lambda: (lambda t: t if "Not done" in t else None)(home_text(slack, OTHER_USER)), 15, "the refusal"
        )
        assert "Nothing was changed" in notice and launch_id not in notice.split("Nothing was changed", 1)[1]
        time.sleep(3)
        assert job_state(job) == "RUNNING"
        row = store.get_launch(launch_id)
        assert row.watched and row.state.value == "Running"
        assert not any("Cancel sent" in blocks_text(m) for m in thread.replies())

        # The owner stops and resumes the updates from the Home: the thread's own path and answers.
        press_own(slurm_bot, slack, ids.USER_ID, HOME_DETACH, launch_id)
        thread.wait_reply(f"Stopped status updates for `{launch_id}`")
        wait_until(lambda: store.get_launch(launch_id).detached, 15, "the launch detached")
        press_own(slurm_bot, slack, ids.USER_ID, HOME_ATTACH, launch_id)
        thread.wait_reply(f"Resumed status updates for `{launch_id}`")
        wait_until(lambda: store.get_launch(launch_id).watched, 15, "the launch attached again")
        assert "Resumed status updates" in home_text(slack, ids.USER_ID)

        # And cancels it: the real job is cancelled, the thread ends it, the Home shows it ended without buttons.
        press_own(slurm_bot, slack, ids.USER_ID, HOME_CANCEL_JOB, launch_id)
        thread.wait_reply(f"Cancel sent for job `{job}` (`{launch_id}`) by <@{ids.USER_ID}>")
        final = wait_final(thread, launch_id, 90)
        assert "Cancelled" in final, final
        assert job_state(job) in ("", "CANCELLED")
        wait_until(
            lambda: (
                "*Ended* (1)" in home_text(slack, ids.USER_ID)
                and not home_button(slack, ids.USER_ID, HOME_CANCEL_JOB, launch_id)
            ),
            30,
            "the Home to show the launch ended",
            show=lambda: home_text(slack, ids.USER_ID),
        )
        assert [r["action"] for r in store.audit_rows(since=since, actor=ids.USER_ID) if r["allowed"]][-3:] == [
            "Detach",
            "Attach",
            "CancelJob",
        ]
    finally:
        store.close()
