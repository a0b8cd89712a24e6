"""The monitor's final replies for real SLURM jobs: only facts of the end state reach the thread.

A real SlurmBackend polls jobs on the test cluster; the store, the Slack client and the messenger are the
real ones, talking to the fake Slack Web API. A job held as an administrator (the cluster's own `scontrol`
on this host) is watched through its hold, then runs and fails; another is cancelled while it runs.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from cryptography.fernet import Fernet

from taobot.backends.slurm import SlurmBackend
from taobot.catalog import load_catalog
from taobot.config import PlatformSettings, load_settings
from taobot.launches import JobState
from taobot.monitor import FINAL_SLOT, Monitor
from taobot.secrets import SecretBox
from taobot.slack.app import SlackMessenger, make_client
from taobot.store import Store
from tests.builders import launch_record
from tests.fakes import FakeSlackAPI
from tests.harness import BOT_TOKEN
from tests.slurm_flow import LAB, cancel_taobot_jobs
from tests.test_backend_slurm_outcomes import CPUS, creds, make_spec, submit, wait

pytestmark = pytest.mark.slurm  # the shared test cluster: see tests/conftest.py

OWNER = "U0FINALFACTS"
CHANNEL = "C0FINALFACT"


@pytest.fixture
def world(tmp_path):
    cancel_taobot_jobs()
    with FakeSlackAPI(token=BOT_TOKEN, channels=[CHANNEL]) as slack:
        store = Store(tmp_path / "taobot.db", SecretBox(Fernet.generate_key()))
        for name, value in creds().items():
            store.put_secret(OWNER, name, value, secret=False)
        settings = load_settings(slack_bot_token=BOT_TOKEN, slack_api_url=slack.url)
        backend = SlurmBackend(
            PlatformSettings(
                known_hosts_path=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
                ssh_config_path="/nonexistent",
                connect_timeout_s=5,
                on_persons_machine=True,  # the lab's key file, as on the person's own machine
            ),
            container="none",
        )
        monitor = Monitor(store, load_catalog(), {"slurm": backend}, SlackMessenger(make_client(settings)))
        yield store, slack, monitor, backend
        backend.close()
        store.close()
    cancel_taobot_jobs()


def watch(store, ref, n: int) -> str:
    from taobot.intake import start_intake

    launch = launch_record(
        id=f"fin{n}0000-00001",
        intake_id=f"fin{n}0000",
        channel=CHANNEL,
        thread_ts=f"1700000000.00010{n}",
        owner=OWNER,
        job_id=ref.job_id,
        details=json.dumps(dict(ref.details)),
        state=JobState.PENDING,
        native="PENDING",
        interval_minutes=1,
        launched_at=time.time(),
        state_since=time.time(),
    )
    intake = start_intake(load_catalog(), "cosmos-rl", "train", OWNER, CHANNEL, launch.thread_ts)
    intake.id, intake.status = launch.intake_id, "launched"
    store.save_intake(intake, OWNER, "start")
    store.add_launch(launch, intake, OWNER)
    return launch.id


def final_text(slack, launch_id: str) -> str:
    """The blocks of the one final reply (the last slot) posted for this launch."""
    finals = [
        c
        for c in slack.calls
        if c.method == "chat.postMessage"
        and (c.params.get("metadata") or {}).get("event_payload") == {"launch": launch_id, "slot": FINAL_SLOT}
    ]
    assert len(finals) == 1, [c.params.get("text") for c in slack.calls if c.method == "chat.postMessage"]
    return json.dumps(finals[0].params["blocks"])


def cycle_until(monitor, store, launch_id: str, done, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        monitor.cycle()
        row = store.get_launch(launch_id)
        if done(row):
            return row
        assert time.monotonic() < deadline, row
        time.sleep(1)


def test_a_hold_reason_and_a_running_exit_code_do_not_survive_into_the_final_reply(world):
    store, slack, monitor, backend = world
    blocker = submit(backend, make_spec({"standin_sleep": 30, "standin_epochs": 1}, SLURM_CPUS_PER_TASK=str(CPUS)))
    wait(backend, blocker, lambda s: s.state is JobState.RUNNING)
    held = submit(backend, make_spec({"standin_exit": 3, "standin_sleep": 2}))
    subprocess.run(["scontrol", "hold", held.job_id], check=True, capture_output=True)
    held_id = watch(store, held, 1)
    backend.cancel(blocker)
    row = cycle_until(monitor, store, held_id, lambda r: r.reason == "JobHeldAdmin")
    assert row.state is JobState.PENDING
    subprocess.run(["scontrol", "release", held.job_id], check=True, capture_output=True)
    row = cycle_until(monitor, store, held_id, lambda r: r.final_posted or r.ended_at is not None)
    assert row.state is JobState.FAILED and row.exit_code == 3 and row.reason is None, row
    text = final_text(slack, held_id)
    assert "Exit code: 3" in text and "JobHeldAdmin" not in text and "(ended " in text

    running = submit(backend, make_spec({"standin_sleep": 30, "standin_epochs": 4}))
    run_id = watch(store, running, 2)
    cycle_until(monitor, store, run_id, lambda r: r.state is JobState.RUNNING)
    assert store.get_launch(run_id).exit_code is None  # sacct's 0:0 while running is stored as nothing
    backend.cancel(running)
    # sacct records the batch step's signal (0:15) a moment after the job reads CANCELLED; the monitor posts its
    # final at the first terminal poll, so it is asked only once the cluster's accounting has the signal.
    wait(backend, running, lambda s: s.state.terminal and s.reason is not None, 60)
    row = cycle_until(monitor, store, run_id, lambda r: r.ended_at is not None)
    assert row.state is JobState.CANCELLED and row.exit_code is None, row
    text = final_text(slack, run_id)
    assert "Exit code" not in text and "ended by signal 15 (SIGTERM)" in text
