"""The App Home tab: opening it shows a person their own launches, from every channel, and nobody else's."""

from __future__ import annotations

from taobot.slack.home import home_view
from tests.fakes import ids, post_event
from tests.harness import SIGNING_SECRET, SlackUser, blocks_text
from tests.polling import wait_until

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
    import time

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
    assert "The newest 40 of your 500 launches." in blocks_text(view)
