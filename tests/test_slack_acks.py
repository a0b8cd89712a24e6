"""Slack gets its ack first: listeners hand their slow work over, ordered per thread, each delivery once.

The bot process is real (`taobot serve --http`) and Slack is the fake Web API made slow on purpose; the
after-ack queue is tested on its own against a real SQLite store.
"""

from __future__ import annotations

import threading

from taobot.secrets import SecretBox, load_or_create_key
from taobot.slack.listeners.after_ack import AfterAck
from taobot.store import Store
from tests.fakes import ids, post_command
from tests.harness import SIGNING_SECRET, blocks_text
from tests.polling import wait_until

SLOW_SLACK_S = 5  # longer than Slack's 3 s ack deadline: an ack that waited for Slack would be refused


# --------------------------------------------------------------------------- the bot, with Slack slow


def test_commands_and_replies_are_acked_while_earlier_launches_wait_on_a_slow_slack(person, slack):
    thread = person.launch("dino")
    posts_before = len(slack.calls_for("chat.postMessage"))
    channels = [f"C0TAOSLOW{i}" for i in range(8)]  # more than a listener pool of Bolt's default size
    slack.delay("chat.postMessage", SLOW_SLACK_S, times=len(channels) + 4)
    for channel in channels:
        resp = post_command(person.bot.url, SIGNING_SECRET, text="launch dino", user_id=person.user, channel_id=channel)
        assert resp.status_code == 200 and "Starting a launch thread" in resp.text, resp
    status = person.slash("status")
    thread.say("platform=slurm")
    assert thread.intake_id in status.text  # answered in the ack, from the database
    # Every ack above came back while all of the cards' posts were still waiting on Slack.
    assert len(slack.calls_for("chat.postMessage")) == posts_before

    def cards_posted() -> int:
        return sum(1 for c in slack.calls_for("chat.postMessage") if c.ok and c.params.get("channel") in channels)

    wait_until(lambda: cards_posted() == len(channels), 60, "every launch card to be posted", show=cards_posted)
    thread.wait_card("*Platform:* SLURM")


def test_one_threads_replies_are_applied_in_the_order_they_were_sent(person, slack):
    thread = person.launch("dino")
    thread.say("platform=slurm")
    thread.wait_card("*Platform:* SLURM")
    slack.delay("chat.update", 2, times=1)  # the first answer's card redraw is slow; the next must wait for it
    for minutes in (7, 9, 11):
        thread.say(f"interval={minutes}")
    thread.wait_card("*Monitoring:* in this thread, every 11 min")
    thread.wait_reply("Status interval: every 11 min")
    answers = [t for t in (blocks_text(m) for m in thread.replies()) if "Status interval: every" in t]
    assert [int(t.split("every ", 1)[1].split(" ", 1)[0]) for t in answers] == [7, 9, 11], answers


def test_a_retried_delivery_of_a_reply_is_answered_once(person):
    thread = person.launch("dino")
    for retry in (None, 1, 2):
        thread.say("platform=slurm", event_id="Ev0ACKRETRY1", retry_num=retry)
    thread.wait_reply("Platform set to SLURM")
    thread.say("monitor=no")  # after the retries in the same thread: once it is answered, they were handled
    thread.wait_reply("Status updates in this thread: off")
    replies = [blocks_text(m) for m in thread.replies() if "Platform set to SLURM" in blocks_text(m)]
    assert len(replies) == 1, replies


# --------------------------------------------------------------------------- the queue on its own


def _store(tmp_path) -> Store:
    return Store(tmp_path / "taobot.db", SecretBox(load_or_create_key(None, tmp_path / "taobot.db.key")))


def test_work_with_one_key_runs_in_order_and_never_two_pieces_at_once(tmp_path):
    queue, done, running = AfterAck(), [], []
    overlap = threading.Event()

    def piece(n: int) -> None:
        running.append(n)
        if len(running) > 1:
            overlap.set()
        threading.Event().wait(0.002)
        running.remove(n)
        done.append(n)

    for n in range(40):
        queue.submit(f"{ids.CHANNEL_ID}:1.0", lambda n=n: piece(n))
    assert queue.close(30)
    assert done == list(range(40)) and not overlap.is_set()


def test_a_slow_thread_never_holds_up_another_threads_work(tmp_path):
    queue, release, other_done = AfterAck(), threading.Event(), threading.Event()
    queue.submit("C1:1.0", lambda: release.wait(30))
    queue.submit("C1:1.0", lambda: None)  # behind the slow one, in its thread
    queue.submit("C2:2.0", other_done.set)
    assert other_done.wait(10), "the other thread's work waited for the slow thread"
    wait_until(lambda: queue.pending == 2, 10, "the other thread's work to finish", show=lambda: queue.pending)
    release.set()
    assert queue.close(10) and queue.pending == 0


def test_a_delivery_is_claimed_once_in_the_store_and_a_failure_never_stops_the_next(tmp_path):
    store = _store(tmp_path)
    queue, ran = AfterAck(claim=store.first_delivery), []

    def fails() -> None:
        raise RuntimeError("this piece fails")

    queue.submit("C1:1.0", fails)
    for _ in range(3):  # Slack's first delivery and two retries of one event
        queue.submit("C1:1.0", lambda: ran.append("reply"), delivery="event:Ev0ONCE")
    queue.submit("C1:1.0", lambda: ran.append("next"), delivery="event:Ev0OTHER")
    assert queue.close(10)
    assert ran == ["reply", "next"]
    assert not store.first_delivery("event:Ev0ONCE")  # recorded: a later retry is recognised too
    store.close()


def test_closing_finishes_what_was_handed_over_and_takes_no_more(tmp_path):
    queue, ran = AfterAck(), []
    queue.submit("C1:1.0", lambda: (threading.Event().wait(0.2), ran.append("first")))
    assert queue.close(10)
    assert ran == ["first"]
    assert not queue.submit("C1:1.0", lambda: ran.append("late"))
    assert ran == ["first"] and queue.pending == 0
