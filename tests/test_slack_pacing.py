"""Slack calls are paced inside Slack's limits: buckets per (method, channel) and per method.

The bucket maths runs on a fake clock; the integration tests run a real
SlackMessenger (make_client) against the fake Slack API enforcing Slack's
limits, and assert counts and order, never wall-clock speed.
"""

from __future__ import annotations

import threading

import pytest

from taobot.config import Settings
from taobot.slack.app import SlackMessenger, make_client
from taobot.slack.pacing import DEFAULT_LIMITS, Limit, MethodLimits, Pacer, TokenBucket, scaled
from taobot.views import Reply
from tests.fakes.slack_api import SLACK_RATE_LIMITS, FakeSlackAPI

TOKEN = "xoxb-pacing"
CHANNELS = ("C0PACE0001", "C0PACE0002", "C0PACE0003")
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(limits=None, **kwargs) -> tuple[Pacer, FakeClock]:
    clock = FakeClock()
    return Pacer(limits, clock=clock, sleep=clock.sleep, **kwargs), clock


# ---------------------------------------------------------------------------- the buckets, on a fake clock


def test_bucket_gives_its_burst_then_one_token_per_interval():
    bucket = TokenBucket(Limit(rate=2.0, burst=3), now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0) == pytest.approx(0.5)
    assert bucket.reserve(0.0) == pytest.approx(1.0)  # reservations queue up behind each other
    assert bucket.reserve(10.0) == 0.0  # refilled, but never beyond the burst
    assert bucket.tokens == pytest.approx(2.0)


def test_posts_to_one_channel_go_one_a_second_after_a_burst_of_three():
    p, clock = pacer()
    start = clock.now
    waits = [p.acquire("chat.postMessage", "C1") for _ in range(10)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert all(w == pytest.approx(1.0) for w in waits[3:])
    assert clock.now - start == pytest.approx(7.0)  # 10 posts: 3 at once, then 1/s
    assert p.calls["chat.postMessage"] == 10
    assert p.waited["chat.postMessage"] == pytest.approx(7.0)


def test_channels_are_paced_independently():
    p, _clock = pacer()
    for _ in range(3):
        p.acquire("chat.postMessage", "C1")
    assert p.reserve("chat.postMessage", "C1") == pytest.approx(1.0)
    assert p.reserve("chat.postMessage", "C2") == 0.0
    assert p.reserve("chat.postMessage", "C3") == 0.0


def test_update_is_paced_per_workspace_at_tier_3():
    p, clock = pacer()
    start = clock.now
    for i in range(10 + 50):
        p.acquire("chat.update", f"C{i % 7}")  # every channel shares one bucket
    assert clock.now - start == pytest.approx(60.0)  # 10 at once, then 50 a minute
    assert p.reserve("chat.update", "C99") > 0


def test_methods_have_their_own_buckets_and_views_open_is_never_paced():
    p, _clock = pacer()
    for _ in range(50):
        p.reserve("chat.postMessage", "C1")
        p.reserve("chat.update", "C1")
    assert p.reserve("chat.postMessage", "C1") > 30
    assert p.reserve("chat.postEphemeral", "C1") == 0.0
    assert all(p.reserve("views.open") == 0.0 for _ in range(1000))
    assert p.reserve("auth.test") == 0.0  # a method with no limit listed


def test_turns_are_first_come_first_served_within_a_channel():
    p, _clock = pacer()
    turns = [p.reserve("chat.postMessage", "C1") for _ in range(8)]
    assert turns == sorted(turns)
    assert len(set(turns[3:])) == 5  # each later post has a turn of its own


def test_no_wait_is_longer_than_max_wait_and_capped_waits_are_counted():
    seen = []
    p, clock = pacer(
        {"chat.update": MethodLimits(per_method=Limit(0.1, 1))}, max_wait=2.0, on_wait=lambda *a: seen.append(a)
    )
    assert p.acquire("chat.update") == 0.0
    assert p.acquire("chat.update") == 2.0  # 10 s due, cut to 2
    assert p.capped == {"chat.update": 1}
    assert seen == [("chat.update", 0.0, False), ("chat.update", 2.0, True)]
    assert max(clock.sleeps) == 2.0


def test_scaled_limits_keep_bursts_and_multiply_rates():
    fast = scaled(DEFAULT_LIMITS, 10)
    assert fast["chat.postMessage"].per_channel == Limit(10.0, 3)
    assert fast["chat.update"].per_method.rate == pytest.approx(DEFAULT_LIMITS["chat.update"].per_method.rate * 10)


def test_pacer_keeps_inside_the_limits_the_fake_slack_enforces():
    for method, axes in SLACK_RATE_LIMITS.items():
        ours = DEFAULT_LIMITS.get(method)
        if ours is None:
            continue
        for axis, (rate, burst) in axes.items():
            limit = ours.per_channel if axis == "channel" else ours.per_method
            assert limit is not None and limit.rate <= rate and limit.burst <= burst, method


def test_concurrent_callers_never_exceed_the_rate():
    p, clock = pacer({"chat.postMessage": MethodLimits(per_channel=Limit(1.0, 1))})
    turns: list[float] = []
    lock = threading.Lock()

    def caller():
        for _ in range(25):
            turn = p.reserve("chat.postMessage", "C1")
            with lock:
                turns.append(turn)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(turns) == [float(i) for i in range(100)]  # one token each, none shared, none skipped
    assert clock.now == 1000.0  # reserve never sleeps


# ---------------------------------------------------------------------------- a real messenger against the fake

FAST = 10  # limits 10x faster on both sides, so the test takes seconds, not a minute


@pytest.fixture
def fake():
    with FakeSlackAPI(token=TOKEN, channels=list(CHANNELS)) as server:
        server.enforce_rate_limits(scale=FAST)
        yield server


def messenger_for(fake: FakeSlackAPI, pacer: Pacer | None) -> SlackMessenger:
    client = make_client(Settings(SLACK_BOT_TOKEN=TOKEN, SLACK_API_URL=fake.url))
    return SlackMessenger(client, pacer=pacer or Pacer(scaled(DEFAULT_LIMITS, FAST)))


def post_interleaved(messenger: SlackMessenger, count: int) -> dict[str, str]:
    threads = {c: messenger.post(c, Reply(f"{c} parent")) for c in CHANNELS}
    for i in range(count):
        channel = CHANNELS[i % len(CHANNELS)]
        messenger.post(channel, Reply(f"{channel} update {i}"), thread_ts=threads[channel])
    return threads


def test_sixty_paced_posts_to_three_channels_arrive_in_order_without_a_429(fake):
    messenger = messenger_for(fake, None)
    threads = post_interleaved(messenger, 60)
    assert [c for c in fake.calls if c.status == 429] == []
    for i, channel in enumerate(CHANNELS):
        texts = [m["text"] for m in fake.messages_in_thread(channel, threads[channel])][1:]
        assert texts == [f"{channel} update {n}" for n in range(i, 60, 3)]
    assert messenger.pacer.waited["chat.postMessage"] > 0  # the pacing did the work, not Slack's 429s


def test_posts_unpaced_meet_429s_but_retry_after_still_loses_none(fake):
    messenger = messenger_for(fake, Pacer({}))
    threads = post_interleaved(messenger, 30)
    assert any(c.status == 429 for c in fake.calls_for("chat.postMessage"))  # the limits are real
    for i, channel in enumerate(CHANNELS):
        texts = [m["text"] for m in fake.messages_in_thread(channel, threads[channel])][1:]
        assert texts == [f"{channel} update {n}" for n in range(i, 30, 3)]


def test_ephemeral_answers_and_modals_do_not_wait_behind_a_backlog_of_posts(fake):
    # Posts at 4/s per channel after a burst of 3: 16 posts to one channel queue for about 3 s.
    pacer = Pacer(scaled(DEFAULT_LIMITS, 4))
    messenger = messenger_for(fake, pacer)
    parent = messenger.post(CHANNELS[0], Reply("parent"))
    backlog = threading.Thread(
        target=lambda: [messenger.post(CHANNELS[0], Reply(f"u{i}"), thread_ts=parent) for i in range(16)]
    )
    backlog.start()
    fake.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == parent, count=3)
    messenger.ephemeral(CHANNELS[0], "U0PACEUSER", "only you can see this", thread_ts=parent)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Creds"}, "blocks": [SECTION]}
    messenger.open_view(fake.issue_trigger_id("U0PACEUSER"), modal)
    posted_by_then = len([c for c in fake.calls_for("chat.postMessage") if c.params.get("thread_ts") == parent])
    backlog.join()
    assert fake.ephemeral_messages(CHANNELS[0], "U0PACEUSER")[0]["text"] == "only you can see this"
    assert len(fake.views) == 1  # the trigger id was still good
    assert posted_by_then < 16  # they went while posts were still queued
    assert pacer.waited["chat.postEphemeral"] == 0.0 and pacer.waited["views.open"] == 0.0
    assert [m["text"] for m in fake.messages_in_thread(CHANNELS[0], parent)][1:] == [f"u{i}" for i in range(16)]


def test_the_default_messenger_paces_with_slacks_limits_and_reports_waits_in_metrics(fake):
    from taobot import metrics

    messenger = SlackMessenger(make_client(Settings(SLACK_BOT_TOKEN=TOKEN, SLACK_API_URL=fake.url)))
    assert messenger.pacer.limits == DEFAULT_LIMITS
    before = metrics.SLACK_PACING_WAIT.labels(method="chat.postMessage")._sum.get()
    for i in range(5):  # a burst of 3, then two posts wait their turn (about 1 s each)
        messenger.post(CHANNELS[1], Reply(f"p{i}"))
    assert messenger.pacer.waited["chat.postMessage"] > 1.0
    assert metrics.SLACK_PACING_WAIT.labels(method="chat.postMessage")._sum.get() - before > 1.0
    assert b"taobot_slack_pacing_wait_seconds_count" in metrics.render()
    assert [m["text"] for m in fake.messages(CHANNELS[1])] == [f"p{i}" for i in range(5)]


# ---------------------------------------------------------------------------- queued posts (the running bot's)

OWNER = "U0PACEOWNER"


@pytest.fixture
def poster_world(tmp_path, fake):
    """A store with four launches (threads in the fake), a paced messenger, and a ThreadPoster with a PostQueue."""
    from cryptography.fernet import Fernet

    from taobot.catalog import load_catalog
    from taobot.intake import start_intake
    from taobot.launches import JobState
    from taobot.posting import PostQueue, ThreadPoster
    from taobot.secrets import SecretBox
    from taobot.store import Store
    from tests.builders import launch_record

    store = Store(tmp_path / "taobot.db", SecretBox(Fernet.generate_key()))
    clock = {"now": 1_800_000_000.0}
    launches = []
    for n in range(4):
        channel = CHANNELS[n % 2]
        launch = launch_record(
            id=f"pq{n}00000-00001", intake_id=f"pq{n}00000", channel=channel, owner=OWNER,
            thread_ts=fake.seed_message(channel, f"launch {n}"), state=JobState.RUNNING, native="RUNNING",
        )  # fmt: skip
        intake = start_intake(load_catalog(), "cosmos-rl", "train", OWNER, launch.channel, launch.thread_ts)
        intake.id, intake.status = launch.intake_id, "launched"
        store.save_intake(intake, OWNER, "start")
        store.add_launch(launch, intake, OWNER)
        launches.append(launch)
    queue = PostQueue(workers=4)
    poster = ThreadPoster(store, messenger_for(fake, None), lambda: clock["now"], queue)
    yield store, poster, queue, launches, clock
    queue.close(5)
    store.close()


def block(queue, lanes) -> threading.Event:
    """Hold these lanes (channels) with a piece of work that waits for the returned event."""
    gate = threading.Event()
    for lane in lanes:
        queue.submit(lane, lambda: gate.wait(30))
    return gate


def thread_slots(fake, launch) -> list[int]:
    return [
        m["metadata"]["event_payload"]["slot"]
        for m in fake.messages_in_thread(launch.channel, launch.thread_ts)
        if m.get("metadata")
    ]


def view_for(launch, slot):
    return Reply(f"{launch.id} slot {slot} (again)")


def test_queued_posts_return_before_slack_sees_them_then_arrive_once_each_in_order(fake, poster_world):
    store, poster, queue, launches, _clock = poster_world
    gate = block(queue, CHANNELS[:2])
    for slot in (1, 2, 3):
        for launch in launches:
            assert poster.post(launch, slot, Reply(f"{launch.id} slot {slot}")) is True
    # Nothing has reached Slack: the caller (the cycle) went on while the posts wait in their lanes.
    assert [c for c in fake.calls if c.method == "chat.postMessage"] == []
    assert len(store.pending_slots()) == 12
    # Queued slots are not "pending" for the retry pass: nothing is looked for, nothing is sent twice.
    assert poster.retry_pending(view_for) == 0
    assert [c for c in fake.calls if c.method == "conversations.replies"] == []
    gate.set()
    assert queue.wait_idle(60)
    assert {launch.id: thread_slots(fake, launch) for launch in launches} == {x.id: [1, 2, 3] for x in launches}
    assert store.pending_slots() == []
    assert poster.post(launches[0], 2, Reply("again")) is False  # claimed once: never queued twice


def test_posts_queued_at_shutdown_stay_pending_and_go_out_once_after_the_restart(fake, poster_world):
    from taobot.posting import ThreadPoster

    store, poster, queue, launches, clock = poster_world
    launch = launches[0]
    gate = block(queue, [launch.channel])
    assert poster.post(launch, 1, Reply("slot 1")) and poster.post(launch, 2, Reply("slot 2"))
    assert queue.close(0) is False  # the two posts are dropped from the queue, not lost
    gate.set()
    assert thread_slots(fake, launch) == []
    assert sorted(p["slot"] for p in store.pending_slots()) == [1, 2]
    restarted = ThreadPoster(store, poster.messenger, lambda: clock["now"])  # a new process: no queue
    assert restarted.retry_pending(view_for) == 2
    assert restarted.retry_pending(view_for) == 0
    assert thread_slots(fake, launch) == [1, 2]


def test_a_thread_backing_off_leaves_its_queued_posts_pending_and_keeps_their_order(fake, poster_world):
    store, poster, queue, launches, clock = poster_world
    launch = launches[1]
    fake.fail("chat.postMessage", "internal_error", times=1)
    gate = block(queue, [launch.channel])
    assert poster.post(launch, 1, Reply("slot 1")) and poster.post(launch, 2, Reply("slot 2"))
    gate.set()
    assert queue.wait_idle(30)
    refused = store.get_launch(launch.id)
    assert refused.post_failures == 1 and refused.post_error == "internal_error"
    assert thread_slots(fake, launch) == []  # slot 2 was not tried while its thread backs off
    assert sorted(p["slot"] for p in store.pending_slots()) == [1, 2]
    assert poster.retry_pending(view_for) == 0  # still backing off: nothing queued
    clock["now"] = refused.post_retry_at + 1
    assert poster.retry_pending(view_for) == 2
    assert queue.wait_idle(30)
    assert thread_slots(fake, launch) == [1, 2]
    assert store.get_launch(launch.id).post_failures == 0
