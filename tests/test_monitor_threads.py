"""Monitoring never stalls: one thread that refuses posts backs off alone, and every launch reaches an end.

Real parts: jobs on the test SLURM cluster (sbatch over the test sshd), the
real SlurmBackend, the real Slack Web API client against the fake Slack
server over HTTP, and real SQLite.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid

import pytest
from cryptography.fernet import Fernet

from taobot import metrics, scheduler
from taobot.backends.slurm import SlurmBackend
from taobot.catalog import load_catalog
from taobot.config import PlatformSettings, load_settings
from taobot.launches import JobState
from taobot.monitor import FINAL_SLOT, UNKNOWN_GRACE_S, Monitor
from taobot.posting import post_backoff
from taobot.secrets import SecretBox
from taobot.slack.app import SlackMessenger, make_client, thread_health
from taobot.store import Store
from tests.builders import launch_record
from tests.fakes import FakeSlackAPI
from tests.harness import BOT_TOKEN
from tests.lab import require, ssh_command

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slurm_lane(2),
]  # the test cluster, as lane 2's own user: see tests/conftest.py

LAB = require("TAOBOT_TEST_SSH_USER", "TAOBOT_TEST_SSH_PORT", "TAOBOT_TEST_SSH_KEY", "TAOBOT_TEST_SLURM_PARTITION")
OWNER = "U0MONTHREADS"
GOOD, GONE = "C0GOODCHAN", "C0GONECHAN"


def ssh(script: str) -> str:
    cmd = [*ssh_command(), "bash -s"]
    return subprocess.run(cmd, input=script, text=True, capture_output=True, timeout=120, check=True).stdout


@pytest.fixture
def sleeping_jobs():
    """Two real SLURM jobs that sleep until cancelled, each with a launch folder; cancelled afterwards."""
    tag = f"tmt{uuid.uuid4().hex[:8]}"
    partition = shlex.quote(LAB["TAOBOT_TEST_SLURM_PARTITION"])
    out = ssh(
        f"""set -eu
for i in 0 1; do
  d="$HOME/{tag}/L$i"; mkdir -p "$d/logs" "$d/results"
  id=$(sbatch --parsable --wrap 'sleep 600' -p {partition} --cpus-per-task=1 -o /dev/null -J {tag})
  echo "epoch 1 loss 0.5" > "$d/logs/slurm-${{id%%;*}}.out"
  echo "JOB ${{id%%;*}} $d"
done"""
    )
    jobs = [tuple(line.split()[1:]) for line in out.splitlines() if line.startswith("JOB ")]
    yield jobs
    ssh(f'scancel -n {tag} 2>/dev/null; rm -rf "$HOME/{tag}"; true')


@pytest.fixture
def world(tmp_path):
    """A store, a fake Slack that knows only GOOD, the real Slack client and messenger, a SLURM backend."""
    with FakeSlackAPI(token=BOT_TOKEN, channels=[GOOD]) as slack:
        store = Store(tmp_path / "taobot.db", SecretBox(Fernet.generate_key()))
        creds = {
            "SLURM_USER": LAB["TAOBOT_TEST_SSH_USER"],
            "SLURM_HOSTNAME": f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
            "SLURM_PARTITION": LAB["TAOBOT_TEST_SLURM_PARTITION"],
            "SSH_KEY_PATH": LAB["TAOBOT_TEST_SSH_KEY"],
        }
        for name, value in creds.items():
            store.put_secret(OWNER, name, value, secret=False)
        settings = load_settings(slack_bot_token=BOT_TOKEN, slack_api_url=slack.url)
        messenger = SlackMessenger(make_client(settings))
        backend = SlurmBackend(
            # the lab's key file, as on the person's own machine
            PlatformSettings(
                known_hosts_path=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
                ssh_config_path="/nonexistent",
                on_persons_machine=True,
            ),
            container="none",
        )
        clock = {"now": time.time()}
        monitor = Monitor(store, load_catalog(), {"slurm": backend}, messenger, clock=lambda: clock["now"])
        yield store, slack, monitor, clock
        backend.close()
        store.close()


def add_launch(store, launch):
    from taobot.intake import start_intake

    intake = start_intake(load_catalog(), "cosmos-rl", "train", OWNER, launch.channel, launch.thread_ts)
    intake.id = launch.intake_id
    intake.status = "launched"
    store.save_intake(intake, OWNER, "start")
    store.add_launch(launch, intake, OWNER)


def posts_to(slack, channel):
    return [c for c in slack.calls if c.method == "chat.postMessage" and c.params.get("channel") == channel]


def test_a_channel_that_refuses_posts_never_holds_up_another_thread(world, sleeping_jobs):
    store, slack, monitor, clock = world
    (good_job, good_dir), (gone_job, gone_dir) = sleeping_jobs
    start = clock["now"] - 61  # one minute in: slot 1 of a 1-minute interval is due for both
    for channel, job, folder, n in ((GOOD, good_job, good_dir, 1), (GONE, gone_job, gone_dir, 2)):
        add_launch(store, launch_record(
            id=f"thr{n}0000-00001", intake_id=f"thr{n}0000", channel=channel, thread_ts=f"1700000000.00000{n}",
            owner=OWNER, job_id=job, details=f'{{"launch_dir": "{folder}"}}', state=JobState.RUNNING,
            native="RUNNING", interval_minutes=1, launched_at=start, state_since=start,
        ))  # fmt: skip
    # A slot left pending in the refusing channel (a crash between claim and post): today's first step.
    assert store.claim_slot("thr20000-00001", 0, JobState.RUNNING)
    slack.fail("conversations.open", "user_not_found", times=100)  # and the owner's DM cannot be opened either
    failures_before = metrics.THREAD_POST_FAILURES.labels(error="channel_not_found")._value.get()

    stats = monitor.cycle()

    assert stats.posted == 1 and stats.polls == 1
    good_posts = posts_to(slack, GOOD)
    assert len(good_posts) == 1 and good_posts[0].params["metadata"]["event_payload"] == {
        "launch": "thr10000-00001",
        "slot": 1,
    }
    gone = store.get_launch("thr20000-00001")
    assert gone.post_error == "channel_not_found" and gone.post_failures == 1
    assert gone.post_retry_at == pytest.approx(clock["now"] + post_backoff(1))
    assert metrics.THREAD_POST_FAILURES.labels(error="channel_not_found")._value.get() == failures_before + 1
    assert "1 refusing status posts (channel_not_found x1)" in thread_health(store)

    # Backing off: a cycle within the backoff does not knock on the refusing channel again.
    calls_before = len(slack.calls)
    clock["now"] += post_backoff(1) - 2
    monitor.cycle()
    assert [c for c in slack.calls[calls_before:] if c.params.get("channel") == GONE] == []
    # After it, the refusing thread is tried again (and backs off longer); the good thread keeps its slots.
    clock["now"] += 61
    monitor.cycle()
    assert store.get_launch("thr20000-00001").post_failures == 2
    assert [p.params["metadata"]["event_payload"]["slot"] for p in posts_to(slack, GOOD) if p.ok] == [1, 2]

    # Once the channel takes posts again, the thread catches up and its failures are forgotten.
    # (the bot is invited back to the channel, where the launch's thread still is)
    store.update_launch("thr20000-00001", thread_ts=slack.seed_message(GONE, "the launch thread"))
    clock["now"] += post_backoff(2) + 1
    monitor.cycle()
    gone = store.get_launch("thr20000-00001")
    assert gone.post_failures == 0 and gone.post_error is None
    delivered = [p.params["metadata"]["event_payload"]["slot"] for p in posts_to(slack, GONE) if p.ok]
    assert delivered[0] == 0 and len(delivered) == len(set(delivered))  # the pending slot first, none twice
    assert "every watched thread accepts status posts" in thread_health(store)


def test_an_interrupted_submit_ends_with_a_final_reply_and_is_not_polled_again(world):
    store, slack, monitor, clock = world
    long_ago = clock["now"] - 700
    add_launch(store, launch_record(
        id="sub00000-00001", intake_id="sub00000", channel=GOOD, owner=OWNER, job_id=None,
        state=JobState.SUBMITTING, native="submitting", interval_minutes=1, launched_at=long_ago, state_since=long_ago,
    ))  # fmt: skip
    monitor.cycle()  # ends it
    monitor.cycle()  # posts its final reply
    launch = store.get_launch("sub00000-00001")
    assert launch.state is JobState.UNKNOWN and launch.ended_at is not None and launch.final_posted
    finals = [p for p in posts_to(slack, GOOD) if p.params["metadata"]["event_payload"]["slot"] == FINAL_SLOT]
    assert len(finals) == 1 and "submission state unknown" in str(finals[0].params["blocks"])
    assert "tao-cosmos-rl-train-sub00000-00001" in str(finals[0].params["blocks"])
    assert store.active_launches() == []
    before = len(slack.calls)
    assert monitor.cycle().launches == 0 and len(slack.calls) == before


def test_a_job_the_cluster_no_longer_knows_ends_after_the_grace_time(world):
    store, slack, monitor, clock = world
    start = clock["now"] - 30
    add_launch(store, launch_record(
        id="gon00000-00001", intake_id="gon00000", channel=GOOD, owner=OWNER, job_id="987654321",
        details='{"launch_dir": "/nonexistent/taobot"}', state=JobState.RUNNING, native="RUNNING",
        interval_minutes=60, launched_at=start, state_since=start,
    ))  # fmt: skip
    monitor.cycle()
    launch = store.get_launch("gon00000-00001")
    assert launch.state is JobState.UNKNOWN and launch.ended_at is None  # not yet: sacct may just be late
    clock["now"] += UNKNOWN_GRACE_S + 1
    monitor.cycle()
    launch = store.get_launch("gon00000-00001")
    assert launch.ended_at is not None and "taobot stopped watching it" in launch.reason
    finals = [p for p in posts_to(slack, GOOD) if p.params["metadata"]["event_payload"]["slot"] == FINAL_SLOT]
    assert len(finals) == 1 and "has not reported job 987654321" in str(finals[0].params["blocks"])
    assert store.active_launches() == []


def test_a_long_cycle_renews_the_lease_and_stops_when_it_lost_it(tmp_path, monkeypatch):
    store = Store(tmp_path / "lease.db", SecretBox(Fernet.generate_key()))
    try:
        monkeypatch.setattr(scheduler, "_ACTIVE", {"store": store, "holder": "me", "lease_ttl": 3.0})
        assert store.acquire_lease(scheduler.LEASE, "me", 3.0)
        scheduler._ACTIVE["renewed"] = time.monotonic() - 2  # two thirds of the lease gone mid-cycle
        scheduler.keep_lease()
        holder, expires = store.lease_holder(scheduler.LEASE)
        assert holder == "me" and expires > time.time() + 2.5
        # Another instance took over (this one's lease ran out): the cycle must stop at its next step.
        store.release_lease(scheduler.LEASE, "me")
        assert store.acquire_lease(scheduler.LEASE, "other", 30.0)
        scheduler._ACTIVE["renewed"] = time.monotonic() - 2
        with pytest.raises(scheduler.LeaseLost):
            scheduler.keep_lease()
    finally:
        store.close()


def test_a_cycle_forgets_old_slack_deliveries(tmp_path, monkeypatch):
    store = Store(tmp_path / "prune.db", SecretBox(Fernet.generate_key()))
    try:
        assert store.first_delivery("event:old") and store.first_delivery("event:new")
        with store.transaction() as db:
            db.execute("UPDATE seen_deliveries SET at = ? WHERE key = 'event:old'", [time.time() - 2 * 86400])

        class Once:
            keep_alive = None

            def cycle(self):
                return None

        monkeypatch.setattr(
            scheduler, "_ACTIVE", {"monitor": Once(), "store": store, "holder": "me", "lease_ttl": 30.0}
        )
        scheduler.run_cycle()
        assert store.first_delivery("event:old")  # forgotten, so new again
        assert not store.first_delivery("event:new")  # a retry of a recent delivery is still recognised
    finally:
        store.close()


def test_a_launch_whose_channel_is_gone_goes_on_in_the_owners_dm_exactly_once(world, sleeping_jobs):
    store, slack, monitor, clock = world
    (job, folder), _ = sleeping_jobs
    start = clock["now"] - 61
    add_launch(store, launch_record(
        id="dmm00000-00001", intake_id="dmm00000", channel=GONE, thread_ts="1700000000.000009", owner=OWNER,
        job_id=job, details=f'{{"launch_dir": "{folder}"}}', state=JobState.RUNNING, native="RUNNING",
        interval_minutes=1, launched_at=start, state_since=start,
    ))  # fmt: skip
    assert monitor.cycle().posted == 1
    launch = store.get_launch("dmm00000-00001")
    assert launch.moved_from == GONE and launch.channel.startswith("D") and launch.post_failures == 0
    dm_posts = [p for p in posts_to(slack, launch.channel) if p.ok]
    intro, update = dm_posts
    assert "can no longer be posted to (`channel_not_found`)" in intro.params["text"] and GONE in intro.params["text"]
    assert update.params["thread_ts"] == launch.thread_ts == intro.response["ts"]
    assert update.params["metadata"]["event_payload"] == {"launch": "dmm00000-00001", "slot": 1}
    clock["now"] += 60
    monitor.cycle()
    dm_posts = [p for p in posts_to(slack, launch.channel) if p.ok and "metadata" in p.params]
    slots = [p.params["metadata"]["event_payload"]["slot"] for p in dm_posts]
    assert slots == [1, 2]  # the next slot in the DM thread, none twice
    assert [p for p in posts_to(slack, GONE) if p.ok] == []


def test_notify_dm_sends_the_final_reply_to_the_owner_too_exactly_once(world, sleeping_jobs):
    store, slack, monitor, clock = world
    (job, folder), _ = sleeping_jobs
    start = clock["now"] - 30
    add_launch(store, launch_record(
        id="ntf00000-00001", intake_id="ntf00000", channel=GOOD, owner=OWNER, job_id=job, notify_dm=True,
        details=f'{{"launch_dir": "{folder}"}}', state=JobState.RUNNING, native="RUNNING", interval_minutes=60,
        launched_at=start, state_since=start,
    ))  # fmt: skip
    ssh(f"scancel {shlex.quote(job)}")
    for _ in range(30):  # until sacct reports the cancel; each cycle is one real poll
        monitor.cycle()
        if store.get_launch("ntf00000-00001").final_posted:
            break
        time.sleep(1)
    monitor.cycle()
    finals = [p for p in slack.calls if p.method == "chat.postMessage" and p.ok and "metadata" in p.params]
    slots = {p.params["channel"]: p.params["metadata"]["event_payload"]["slot"] for p in finals}
    dm = [c for c in slots if c.startswith("D")]
    assert slots[GOOD] == FINAL_SLOT and len(dm) == 1 and slots[dm[0]] == -2
    assert len(finals) == 2  # one in the thread, one by DM, none twice
    assert all(f"<@{OWNER}>" in str(p.params["blocks"]) and "Cancelled" in str(p.params["blocks"]) for p in finals)


def test_a_crash_after_the_dm_copy_went_out_never_sends_it_twice(world, sleeping_jobs):
    store, slack, monitor, clock = world
    (job, folder), _ = sleeping_jobs
    start = clock["now"] - 30
    add_launch(store, launch_record(
        id="ntf00000-00002", intake_id="ntf00002", channel=GOOD, owner=OWNER, job_id=job, notify_dm=True,
        details=f'{{"launch_dir": "{folder}"}}', state=JobState.RUNNING, native="RUNNING", interval_minutes=60,
        launched_at=start, state_since=start,
    ))  # fmt: skip
    ssh(f"scancel {shlex.quote(job)}")
    for _ in range(30):
        monitor.cycle()
        if store.get_launch("ntf00000-00002").final_posted:
            break
        time.sleep(1)

    def dm_copies():
        return [
            c
            for c in slack.calls
            if c.method == "chat.postMessage"
            and c.ok
            and c.params["channel"].startswith("D")
            and "metadata" in c.params
        ]

    assert len(dm_copies()) == 1
    # As if the process died after Slack took the DM copy but before it was recorded as posted.
    with store.transaction() as db:
        db.execute(
            "UPDATE updates SET status = 'pending', ts = NULL WHERE launch_id = ? AND slot = -2", ["ntf00000-00002"]
        )
    monitor.cycle()
    assert len(dm_copies()) == 1  # found in the DM by its metadata, not sent again
    assert not [r for r in store.pending_slots() if r["launch_id"] == "ntf00000-00002"]
    assert any(c.method == "conversations.history" for c in slack.calls)
    # And when the copy is not in the DM (it never went out), it is sent, once.
    first = dm_copies()[0]
    monitor.messenger.client.api_call(
        "chat.delete", json={"channel": first.params["channel"], "ts": first.response["ts"]}
    )
    with store.transaction() as db:
        db.execute(
            "UPDATE updates SET status = 'pending', ts = NULL WHERE launch_id = ? AND slot = -2", ["ntf00000-00002"]
        )
    monitor.cycle()
    monitor.cycle()
    assert len(dm_copies()) == 2
