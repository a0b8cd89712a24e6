"""Training progress and stuck signals in the thread, for real jobs on the test SLURM cluster.

The jobs run the stand-in TAO entrypoint on the test node (tests/services/lib/tao-standin): one TAO-shaped
status record per epoch (epoch, max_epoch, time per epoch, ETA, kpi with train_loss and validation metrics), a
checkpoint file per epoch and Lightning's "saving model to" line. A real SlurmBackend polls them; the store and
the Slack client and messenger are the real ones, against the fake Slack Web API. The monitor's clock is
injected, so thresholds of half an hour pass in seconds; no test waits for them or asserts a time.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time

import pytest
from cryptography.fernet import Fernet

from taobot.backends.slurm import SlurmBackend
from taobot.catalog import load_catalog
from taobot.config import PlatformSettings, load_settings
from taobot.launches import JobState
from taobot.monitor import FINAL_SLOT, Monitor
from taobot.progress import duration_s
from taobot.secrets import SecretBox
from taobot.slack.app import SlackMessenger, make_client
from taobot.store import Store
from taobot.stuck import SILENT_SLOT
from taobot.view_text import duration, metric
from tests.builders import launch_record
from tests.fakes import FakeSlackAPI
from tests.harness import BOT_TOKEN
from tests.lab import ssh_command
from tests.slurm_flow import LAB, cancel_taobot_jobs, ssh
from tests.test_backend_slurm_outcomes import CPUS, creds, make_spec, submit, wait

pytestmark = pytest.mark.slurm  # the shared test cluster: see tests/conftest.py

OWNER = "U0PROGRESS1"
CHANNEL = "C0PROGRESS"


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
        clock = {"now": time.time()}
        messenger = SlackMessenger(make_client(settings))
        monitor = Monitor(store, load_catalog(), {"slurm": backend}, messenger, clock=lambda: clock["now"])
        yield store, slack, monitor, backend, clock
        backend.close()
        store.close()
    cancel_taobot_jobs()


def watch(store, ref, n: int, start: float, interval: int = 1) -> str:
    from taobot.intake import start_intake

    launch = launch_record(
        id=f"prg{n}0000-00001",
        intake_id=f"prg{n}0000",
        channel=CHANNEL,
        thread_ts=f"1700000000.00020{n}",
        owner=OWNER,
        job_id=ref.job_id,
        details=json.dumps(dict(ref.details)),
        log_location=f"{ref.details['launch_dir']}/logs/slurm-{ref.job_id}.out",
        results_location=f"{ref.details['launch_dir']}/results",
        state=JobState.PENDING,
        native="PENDING",
        interval_minutes=interval,
        launched_at=start,
        state_since=start,
    )
    intake = start_intake(load_catalog(), "dino", "train", OWNER, CHANNEL, launch.thread_ts)
    intake.id, intake.status = launch.intake_id, "launched"
    store.save_intake(intake, OWNER, "start")
    store.add_launch(launch, intake, OWNER)
    return launch.id


def posts(slack, launch_id: str) -> dict[int, list[str]]:
    """slot -> the texts (blocks, as JSON) posted for it."""
    out: dict[int, list[str]] = {}
    for call in slack.calls:
        payload = (call.params.get("metadata") or {}).get("event_payload") or {}
        if call.method == "chat.postMessage" and payload.get("launch") == launch_id:
            text = json.dumps(call.params.get("blocks") or call.params.get("text"), ensure_ascii=False)
            out.setdefault(payload["slot"], []).append(text)
    return out


def put(path: str, text: str) -> None:
    """A file on the login node with exactly these bytes."""
    subprocess.run([*ssh_command(), f"cat > {shlex.quote(path)}"], input=text.encode(), check=True, timeout=60)


def status_records(launch_dir: str) -> dict[int, dict]:
    """The epoch records the job wrote, read from the cluster."""
    lines = ssh(f"cat {launch_dir}/results/status.json").splitlines()
    return {r["epoch"]: r for r in map(json.loads, lines) if "epoch" in r}


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_updates_show_epoch_loss_and_eta_as_written_and_the_final_gives_loss_validation_and_checkpoint(world):
    store, slack, monitor, backend, clock = world
    ref = submit(backend, make_spec({"standin_sleep": 4, "standin_epochs": 4}))
    launch_id = watch(store, ref, 1, clock["now"])
    deadline = time.monotonic() + 120
    while not store.get_launch(launch_id).final_posted:
        clock["now"] += 61  # one minute on the monitor's clock: every cycle has an update due
        monitor.cycle()
        assert time.monotonic() < deadline, posts(slack, launch_id).keys()
        time.sleep(1)

    records = status_records(ref.details["launch_dir"])
    assert sorted(records) == [1, 2, 3, 4] and all(r["max_epoch"] == 4 for r in records.values())
    updates = {slot: texts[0] for slot, texts in posts(slack, launch_id).items() if slot >= 1}
    seen = set()
    for text in updates.values():
        shown = re.search(r"\*Training:\* epoch (\d+)/4", text)
        if not shown:
            continue
        n = int(shown.group(1))
        seen.add(n)
        kpi = records[n]["kpi"]
        assert f"train_loss {metric(kpi['train_loss'])}" in text, text
        assert f"val_loss {metric(kpi['val_loss'])}, val_accuracy {metric(kpi['val_accuracy'])}" in text
        if n < 4:
            assert f"ETA {duration(duration_s(records[n]['eta']))}" in text, text
        assert f"dino_model_epoch_{n:03d}.pth" in text and "progress from TAO's status file and the log" in text
    assert len(seen) >= 2, f"the updates showed epochs {seen} of a 4-epoch run"

    (final,) = posts(slack, launch_id)[FINAL_SLOT]
    assert "Succeeded" in final and "4/4 epochs" in final
    assert f"final train_loss {metric(records[4]['kpi']['train_loss'])}" in final
    for n, record in records.items():
        assert f"epoch {n}: val_loss {metric(record['kpi']['val_loss'])}" in final, final
    checkpoint = f"{ref.details['launch_dir']}/results/train/dino_model_epoch_004.pth"
    assert f"*Checkpoint:* `{checkpoint}`" in final and f"`{ref.details['launch_dir']}/results`" in final
    assert ssh(f"test -f {checkpoint} && echo there").strip() == "there"


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_a_job_whose_log_stops_growing_gets_no_output_said_in_updates_and_its_owner_told_once(world):
    store, slack, monitor, backend, clock = world
    ref = submit(backend, make_spec({"standin_sleep": 600, "standin_epochs": 1}))  # starts, then prints nothing
    wait(backend, ref, lambda s: s.state is JobState.RUNNING)
    log = f"{ref.details['launch_dir']}/logs/slurm-{ref.job_id}.out"
    deadline = time.monotonic() + 30
    while "results_dir:" not in ssh(f"cat {log}"):  # its start lines are out: from now on the log stays as it is
        assert time.monotonic() < deadline
        time.sleep(0.5)
    start = clock["now"]
    launch_id = watch(store, ref, 2, start, interval=5)
    size_before = ssh(f"stat -c %s {log}").strip()

    def at(minutes: float) -> dict[int, list[str]]:
        clock["now"] = start + minutes * 60
        monitor.cycle()
        return posts(slack, launch_id)

    at(0)  # Running from here on, its log seen
    assert store.get_launch(launch_id).state is JobState.RUNNING
    early = at(10)
    assert 2 in early and "No output" not in early[2][0] and SILENT_SLOT not in early
    late = at(26)
    (mention,) = late[SILENT_SLOT]
    assert f"<@{OWNER}>" in mention and "no output for 26 min" in mention and ref.job_id in mention
    assert "*No output for 26 min*" in late[5][0]
    for minutes in (27, 31, 36):
        later = at(minutes)
    assert len(later[SILENT_SLOT]) == 1  # said once, not with every update
    assert "*No output for 31 min*" in later[6][0] and "*No output for 36 min*" in later[7][0]
    assert ssh(f"stat -c %s {log}").strip() == size_before  # the log really did not grow meanwhile
    backend.cancel(ref)


def test_a_job_pending_past_the_threshold_says_how_long_and_why(world):
    store, slack, monitor, backend, clock = world
    # A job that fills the node keeps ours queued (Resources) for as long as the test needs.
    blocker = submit(backend, make_spec({"standin_sleep": 120, "standin_epochs": 1}, SLURM_CPUS_PER_TASK=str(CPUS)))
    wait(backend, blocker, lambda s: s.state is JobState.RUNNING)
    queued = submit(backend, make_spec({"standin_sleep": 1, "standin_epochs": 1}))
    wait(backend, queued, lambda s: s.state is JobState.PENDING and s.reason, 30)
    start = clock["now"]
    launch_id = watch(store, queued, 3, start, interval=10)

    def update_at(minutes: float, slot: int) -> str:
        clock["now"] = start + minutes * 60
        monitor.cycle()
        return posts(slack, launch_id)[slot][0]

    early = update_at(10.5, 1)
    reason = store.get_launch(launch_id).reason
    assert reason in ("Resources", "Priority"), reason
    assert "Pending" in early and "longer than" not in early
    late = update_at(31, 3)
    assert "*Pending for 31 min* (longer than 30 min)" in late and f"the queue says `{reason}`" in late
    means = "the nodes it needs are busy" if reason == "Resources" else "jobs of higher priority are ahead"
    assert means in late
    assert SILENT_SLOT not in posts(slack, launch_id)  # pending is not silent
    backend.cancel(queued)
    backend.cancel(blocker)


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_the_poll_command_reads_records_metric_lines_and_checkpoints_on_the_login_node(world):
    """The one poll command as it runs on the cluster's own shell, tail, tr and awk, on files made to be hard."""
    from taobot.backends.base import JobRef
    from taobot.backends.slurm_poll import parse_poll_output, poll_script
    from tests.test_progress import STANDIN_LOG, pytorch_today

    store, slack, monitor, backend, clock = world
    base = ssh("mktemp -d ~/tprg.XXXXXX").strip()
    try:
        due = JobRef("d-1", "99999001", {"launch_dir": f"{base}/due"}, creds())
        other = JobRef("o-1", "99999002", {"launch_dir": f"{base}/other"}, creds())
        records = "\n".join(pytorch_today(3, 10))
        bar = "\r".join(
            f"Epoch 2: {p}%|##| {p}/100 [00:01<00:09, v_num=0, train_loss=0.{99 - p}]" for p in range(0, 100, 7)
        )
        noise = "\n".join(f"step {i} of a long epoch, nothing to read here" for i in range(300))
        log = "\n".join([*STANDIN_LOG, bar, noise, "no newline at the end"])
        for folder in ("due", "other"):
            ssh(f"mkdir -p {base}/{folder}/results {base}/{folder}/logs")
        put(f"{base}/due/results/status.json", records + "\n")
        put(f"{base}/due/logs/slurm-99999001.out", log)
        put(f"{base}/other/results/status.json", records + "\n")
        script, tails, logs = poll_script([due, other], {due.job_id})
        got = parse_poll_output(backend._run(creds(), script), [due.job_id, other.job_id], tails, logs)
        progress = got[due.job_id].progress
        assert (progress.done, progress.total, progress.train_loss) == (3, 10, 0.25)  # the status file wins
        assert progress.checkpoint == "/r/train/dino_model_epoch_002.pth"  # from the log, before 300 other lines
        assert got[due.job_id].log_tail[-1] == "no newline at the end" and len(got[due.job_id].log_tail) == 20
        assert got[due.job_id].log_mark == str(len(log.encode()))
        assert got[other.job_id].progress is None and got[other.job_id].log_mark is None  # not due, and no log
    finally:
        ssh(f"rm -rf {base}")
