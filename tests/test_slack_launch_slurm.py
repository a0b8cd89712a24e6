"""Launch and monitor real SLURM jobs from Slack threads, at a 1-minute status interval (a minute of
`slurm_flow.MINUTE_S` seconds in the bot these tests start).

The jobs run the stand-in TAO entrypoints installed on the test node
(tests/services). What a stand-in does (sleep, epochs, exit code, ignore
SIGTERM) rides on the dataset: a `standin.env` beside the annotation file.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from taobot.slack import blocks as B
from tests.harness import SlackUser, blocks_text
from tests.slurm_flow import (  # noqa: F401, F811 - slurm_bot is a fixture
    HF_SECRET,
    LAB,
    MINUTE_S,
    launch,
    scenario,
    slurm_bot,
    ssh,
    status_posts,
    wait_final,
)

pytestmark = pytest.mark.slurm  # the shared test cluster: see tests/conftest.py


def test_jobs_succeed_fail_queue_and_are_cancelled_with_one_update_per_interval(slurm_bot, slack):
    person = SlackUser(slurm_bot)
    ok_root = scenario("ok", TAO_STANDIN_SLEEP="4", TAO_STANDIN_EPOCHS="4")
    fail_root = scenario("fail", TAO_STANDIN_SLEEP="1", TAO_STANDIN_EXIT="1")
    long_root = scenario("long", TAO_STANDIN_SLEEP="30", TAO_STANDIN_EPOCHS="20")
    queued_root = scenario("queued", TAO_STANDIN_SLEEP="3", TAO_STANDIN_EPOCHS="2")

    long_t, long_id = launch(person, long_root)
    long_t.say("detach")
    long_t.wait_reply("Stopped status updates")
    detached_at = time.time()
    ok_t, ok_id = launch(person, ok_root)
    fail_t, fail_id = launch(person, fail_root)
    # Needs every CPU of the node, so it waits behind the others: Pending (Resources).
    queued_t, queued_id = launch(person, queued_root, cpus=int(LAB["TAOBOT_TEST_SLURM_CPUS_PER_NODE"]))

    fail_final = wait_final(fail_t, fail_id, 60)
    assert "Failed" in fail_final and "Exit code: 1" in fail_final and "training failed: exit code 1" in fail_final
    # Relaunch keeps the inputs and asks for a fresh preflight before anything is created again
    fail_t.press_on_reply(B.RELAUNCH, "Failed")
    fail_t.wait_reply("Same inputs, ready to go again")
    fail_t.wait_card("Run preflight")

    # slot 1 of the queued job: still pending, with the queue reason, never "finished"
    deadline = time.time() + 100
    while 1 not in status_posts(queued_t, queued_id) and time.time() < deadline:
        time.sleep(1)
    first = blocks_text(status_posts(queued_t, queued_id)[1][0])
    assert "Pending" in first and "Resources" in first and "Succeeded" not in first

    ok_final = wait_final(ok_t, ok_id, 150)
    assert "Succeeded" in ok_final and "Exit code: 0" in ok_final and "training finished: SUCCESS" in ok_final
    # what the stand-in wrote, epoch by epoch: the final gives the run's training facts and its checkpoint
    assert "4/4 epochs" in ok_final and "Validation per epoch" in ok_final and "epoch 4: val_loss" in ok_final
    assert f"tao-results/{ok_id}/results/train/cosmos-rl_model_epoch_004.pth" in ok_final
    ok_posts = status_posts(ok_t, ok_id)
    assert 1 in ok_posts and "Running" in blocks_text(ok_posts[1][0])
    assert "*Training:* epoch " in blocks_text(ok_posts[1][0]) and "/4 · train_loss" in blocks_text(ok_posts[1][0])

    # detached: no update while detached (slots 1 and 2 fall due meanwhile), then attach and updates resume
    time.sleep(max(0.0, detached_at + 2 * MINUTE_S + 1 - time.time()))
    assert not [s for s in status_posts(long_t, long_id) if s >= 0], "posted while detached"
    long_t.say("attach")
    long_t.wait_reply("Resumed status updates")
    deadline = time.time() + 80
    while not [s for s in status_posts(long_t, long_id) if s >= 1] and time.time() < deadline:
        time.sleep(1)
    resumed = [s for s in status_posts(long_t, long_id) if s >= 1]
    assert resumed and "Running" in blocks_text(status_posts(long_t, long_id)[resumed[0]][0])

    # cancel from the thread: the job ends Cancelled; the queued job then runs and succeeds
    long_t.press_on_reply(B.CANCEL_JOB, "Launched `")
    long_t.wait_reply("Cancel sent")
    long_final = wait_final(long_t, long_id, 60)
    assert "Cancelled" in long_final
    queued_final = wait_final(queued_t, queued_id, 120)
    assert "Succeeded" in queued_final

    for thread, launch_id in (
        (ok_t, ok_id),
        (fail_t, fail_id),
        (long_t, long_id),
        (queued_t, queued_id),
    ):
        posts = status_posts(thread, launch_id)
        assert all(len(v) == 1 for v in posts.values()), f"{launch_id} posted a slot twice: {sorted(posts)}"
        assert len(posts[-1]) == 1
        if thread is not fail_t:  # relaunched above: its card is back at the intake
            assert launch_id in thread.card_text()
    with sqlite3.connect(slurm_bot.db) as db:
        pending = db.execute("SELECT COUNT(*) FROM updates WHERE status != 'posted'").fetchone()[0]
    assert pending == 0
    status = person.slash(f"status {ok_id}").text
    assert "Succeeded" in status and "Logs:" in status and ok_id in status
    # the job's secret reached it only through the env file beside the script, which is gone now that it ran
    assert ssh(f"ls ~/tao-results/{ok_id}/sbatch").split() == ["job.sh"]
    assert HF_SECRET not in ssh(f"cd ~/tao-results/{ok_id} && cat sbatch/job.sh specs/* logs/*")
    assert HF_SECRET not in slurm_bot.log_text()
    assert HF_SECRET not in json.dumps([c.params for c in slack.calls])
    assert HF_SECRET.encode() not in b"".join(p.read_bytes() for p in slurm_bot.workdir.glob("taobot.db*"))


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_a_hung_job_runs_into_its_time_limit_and_ends_timeout_with_one_update_per_interval(slurm_bot, slack):
    person = SlackUser(slurm_bot)
    # SLURM's time limits are whole minutes of real time: the hung job (it ignores SIGTERM) runs into its
    # 1-minute limit, past the internal timeout that would have ended a job that heeds SIGTERM.
    hung_root = scenario("hung", TAO_STANDIN_SLEEP="30", TAO_STANDIN_EPOCHS="10", TAO_STANDIN_IGNORE_TERM="1")
    hung_t, hung_id = launch(person, hung_root, time_hours="0.0167", timeout_hours="0.008")
    hung_final = wait_final(hung_t, hung_id, 150)
    assert "Failed" in hung_final and "TIMEOUT" in hung_final
    posts = status_posts(hung_t, hung_id)
    assert 1 in posts and "Running" in blocks_text(posts[1][0])  # it ran past a status interval before its end
    assert all(len(v) == 1 for v in posts.values()), f"{hung_id} posted a slot twice: {sorted(posts)}"
    assert hung_id in hung_t.card_text()


def _sshd_stop() -> None:
    pid = int(open(os.path.join(LAB["TAOBOT_SERVICES_DIR"], "ssh", "key", "sshd.pid")).read().strip())
    os.kill(pid, signal.SIGTERM)
    # the per-connection sshd processes too: a real outage drops open sessions
    subprocess.run(["pkill", "-f", f"sshd: {LAB['TAOBOT_TEST_SSH_USER']}"], check=False)


def _sshd_start() -> None:
    subprocess.run(
        ["bash", "tests/services/setup.sh", "ssh-slurm"],
        check=True,
        capture_output=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def test_kill_9_restart_and_ssh_outage_lose_no_update_and_post_none_twice(slurm_bot, slack):
    person = SlackUser(slurm_bot)
    root = scenario("outage", TAO_STANDIN_SLEEP="6", TAO_STANDIN_EPOCHS="9")
    thread, launch_id = launch(person, root)
    deadline = time.time() + 90
    while 1 not in status_posts(thread, launch_id) and time.time() < deadline:
        time.sleep(1)
    assert 1 in status_posts(thread, launch_id)
    slurm_bot.kill(signal.SIGKILL)
    slurm_bot.proc = None
    time.sleep(5)
    slurm_bot.start()
    _sshd_stop()
    try:
        # The first slot that falls due after sshd went down is decided by a poll made during the outage.
        with sqlite3.connect(slurm_bot.db) as db:
            (launched_at,) = db.execute("SELECT launched_at FROM launches WHERE id = ?", (launch_id,)).fetchone()
        outage_slot = int((time.time() - launched_at) // MINUTE_S) + 1
        deadline = time.time() + 6 * MINUTE_S
        while outage_slot not in status_posts(thread, launch_id) and time.time() < deadline:
            time.sleep(1)
        outage = blocks_text(status_posts(thread, launch_id)[outage_slot][0])
        assert "Could not reach slurm" in outage and "not marked failed" in outage
    finally:
        _sshd_start()
    final = wait_final(thread, launch_id, 150)
    assert "Succeeded" in final
    posts = status_posts(thread, launch_id)
    assert all(len(v) == 1 for v in posts.values()), {k: len(v) for k, v in posts.items()}
    assert 1 in posts and outage_slot in posts


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_launch_without_monitoring_posts_the_durable_status_command(slurm_bot):
    person = SlackUser(slurm_bot)
    root = scenario("quiet", TAO_STANDIN_SLEEP="1", TAO_STANDIN_EPOCHS="1")
    thread, launch_id = launch(person, root, monitor="monitor=no")
    text = thread.wait_reply("Monitoring is off")
    assert f"/tao status {launch_id}" in text and "Job id:" in text and "Logs:" in text
    deadline = time.time() + 30
    while time.time() < deadline:
        status = person.slash(f"status {launch_id}").text
        if "Succeeded" in status:
            break
        time.sleep(1)
    assert "Succeeded" in status
    assert not status_posts(thread, launch_id)


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_launch_through_a_bastion_submits_to_every_partition_given(slurm_bot, slack):
    # The operator's SSH config puts the login node behind a bastion (the test sshd, in front of itself).
    config = slurm_bot.extra_env["TAOBOT_SSH_CONFIG"]
    with open(config, "w") as fh:
        fh.write(
            "Host tao-bastion\n  HostName 127.0.0.1\n"
            f"  Port {LAB['TAOBOT_TEST_SSH_PORT']}\n"
            "Host tao-inner\n  HostName localhost\n"
            f"  Port {LAB['TAOBOT_TEST_SSH_PORT']}\n  ProxyJump tao-bastion\n"
        )
    person = SlackUser(slurm_bot)
    root = scenario("bastion", TAO_STANDIN_SLEEP="1", TAO_STANDIN_EPOCHS="1")
    thread, launch_id = launch(person, root, monitor="monitor=no", hostname="tao-inner", partition="gpu,cpu")
    checks = next(blocks_text(m) for m in thread.replies() if "Preflight passed" in blocks_text(m))
    assert "through jump host 127.0.0.1:" in checks
    assert "Partition gpu" in checks and "Partition cpu" in checks
    script = ssh(f"cat ~/tao-results/{launch_id}/sbatch/job.sh")
    assert "#SBATCH --partition=gpu,cpu\n" in script
    deadline = time.time() + 60
    while time.time() < deadline:
        status = person.slash(f"status {launch_id}").text
        if "Succeeded" in status:
            break
        time.sleep(1)
    assert "Succeeded" in status
