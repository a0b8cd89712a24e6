"""What the SLURM backend reports at the end of real jobs on the test cluster, and how the monitor's texts read it.

Jobs run the stand-in TAO entrypoint installed on the test node (tests/services/lib/tao-standin), which writes
TAO-shaped records to $TAO_STATUS_FILE. Holding a job as an administrator is done with the cluster's own
`scontrol` on this host.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from taobot.backends.base import JobRef, JobState, LaunchSpec, infrastructure_cause
from taobot.backends.slurm import SlurmBackend
from taobot.backends.tao_status import NO_SUCCESS
from taobot.catalog.schema import ResourceDefaults
from taobot.config import PlatformSettings
from taobot.slack.launch_messages import final_update, status_update
from taobot.view_text import status_line
from taobot.views import FinalUpdate, StatusUpdate
from tests.builders import launch_record
from tests.slurm_flow import LAB, cancel_taobot_jobs, ssh

CPUS = int(LAB["TAOBOT_TEST_SLURM_CPUS_PER_NODE"])


def creds(**over: str) -> dict[str, str]:
    base = {
        "SLURM_USER": LAB["TAOBOT_TEST_SSH_USER"],
        "SLURM_HOSTNAME": f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
        "SLURM_PARTITION": LAB["TAOBOT_TEST_SLURM_PARTITION"],
        "SSH_KEY_PATH": LAB["TAOBOT_TEST_SSH_KEY"],
        "SLURM_CPUS_PER_TASK": "1",
    }
    base.update(over)
    return base


def make_spec(config: dict, **over: str) -> LaunchSpec:
    return LaunchSpec(
        launch_id=f"t{uuid.uuid4().hex[:7]}-00001",
        platform="slurm",
        model="dino",
        action="train",
        image="unused-without-a-container-plugin",
        command="dino train -e {config_path}",
        config_format="yaml",
        spec={"standin_sleep": 1, "standin_epochs": 2, **config},
        datasets={},
        num_gpus=0,
        num_nodes=1,
        resources=ResourceDefaults(),
        platform_credentials=creds(**over),
        job_env={},
    )


@pytest.fixture
def backend():
    cancel_taobot_jobs()
    b = SlurmBackend(
        PlatformSettings(
            known_hosts_path=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
            ssh_config_path="/nonexistent/ssh_config",
            connect_timeout_s=5,
        ),
        container="none",
    )
    yield b
    b.close()
    cancel_taobot_jobs()


def submit(backend: SlurmBackend, spec: LaunchSpec) -> JobRef:
    sub = backend.launch(spec)
    return JobRef(spec.launch_id, sub.job_id, dict(sub.details), dict(spec.platform_credentials))


def wait(backend: SlurmBackend, ref: JobRef, done, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        status = backend.poll([ref])[ref.job_id]
        if done(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(1)


def scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, timeout=30)


def test_a_held_job_that_then_fails_ends_without_the_old_hold_reason(backend):
    # A job that fills the node keeps ours queued long enough to be held as an administrator.
    blocker = submit(backend, make_spec({"standin_sleep": 30, "standin_epochs": 1}, SLURM_CPUS_PER_TASK=str(CPUS)))
    wait(backend, blocker, lambda s: s.state is JobState.RUNNING)
    ref = submit(backend, make_spec({"standin_exit": 3, "standin_sleep": 0}))
    scontrol("hold", ref.job_id)
    backend.cancel(blocker)
    held = wait(backend, ref, lambda s: s.reason == "JobHeldAdmin", 30)
    assert held.state is JobState.PENDING
    scontrol("release", ref.job_id)
    final = wait(backend, ref, lambda s: s.state.terminal)
    assert final.state is JobState.FAILED and final.exit_code == 3, final
    assert final.reason != "JobHeldAdmin" and "Held" not in (final.reason or ""), final
    # what the thread is told, from the rows the monitor stores from these polls
    ended = time.time()
    row = launch_record(
        job_id=ref.job_id,
        state=final.state,
        native=final.native,
        reason=final.reason,
        exit_code=final.exit_code,
        launched_at=ended - 720,
        state_since=ended,
        ended_at=ended,
    )
    text = json.dumps(final_update(FinalUpdate(row, (), None, ended + 3600)))
    assert "Exit code: 3" in text and "JobHeldAdmin" not in text
    line = status_line(row, ended + 3600)
    assert "*Failed* after 12 min (ended " in line and " for " not in line, line


def test_a_cancelled_running_job_ended_by_a_signal_not_with_exit_code_zero(backend):
    ref = submit(backend, make_spec({"standin_sleep": 30, "standin_epochs": 4}))
    wait(backend, ref, lambda s: s.state is JobState.RUNNING)
    assert backend.poll([ref])[ref.job_id].exit_code is None  # sacct's 0:0 of a running job is no exit code
    backend.cancel(ref)
    final = wait(backend, ref, lambda s: s.state.terminal, 60)
    assert final.state is JobState.CANCELLED and final.native.startswith("CANCELLED"), final
    assert final.exit_code is None and final.reason == "ended by signal 15 (SIGTERM)", final
    row = launch_record(
        job_id=ref.job_id, state=final.state, native=final.native, reason=final.reason, ended_at=time.time()
    )
    text = json.dumps(final_update(FinalUpdate(row, (), None, time.time())))
    assert "Exit code: 0" not in text and "ended by signal 15 (SIGTERM)" in text


def test_exit_zero_needs_tao_final_success_record(backend):
    good = submit(backend, make_spec({}))
    silent = submit(backend, make_spec({"standin_no_final": 1}))
    ok = wait(backend, good, lambda s: s.state.terminal)
    quiet = wait(backend, silent, lambda s: s.state.terminal)
    assert ok.state is JobState.SUCCEEDED and ok.exit_code == 0, ok
    assert quiet.state is JobState.FAILED and quiet.native == "COMPLETED" and quiet.exit_code == 0, quiet
    assert quiet.reason == NO_SUCCESS
    # the job was told where TAO writes; the file holds TAO's JSON lines
    d = good.details["launch_dir"]
    script = ssh(f"cat {d}/sbatch/job.sh")
    assert f"export TAO_STATUS_FILE={d}/results/status.json" in script
    assert f"export TAO_API_JOB_ID={good.launch_id}" in script
    records = [json.loads(line) for line in ssh(f"cat {d}/results/status.json").splitlines()]
    assert [r["status"] for r in records] == ["STARTED", "RUNNING", "RUNNING", "SUCCESS"]
    assert records[1]["epoch"] == 1 and records[1]["max_epoch"] == 2
    silent_records = ssh(f"cat {silent.details['launch_dir']}/results/status.json").splitlines()
    assert [json.loads(line)["status"] for line in silent_records][-1] == "RUNNING"


def test_a_job_that_can_never_start_is_said_to_never_start(backend):
    # This cluster refuses too many CPUs at sbatch (EnforcePartLimits=ALL); a cluster that does not queues the
    # job forever as PartitionConfig. An administrator's update of a queued job makes that same state here.
    blocker = submit(backend, make_spec({"standin_sleep": 30, "standin_epochs": 1}, SLURM_CPUS_PER_TASK=str(CPUS)))
    wait(backend, blocker, lambda s: s.state is JobState.RUNNING)
    ref = submit(backend, make_spec({}))
    scontrol("hold", ref.job_id)
    # both print "Requested partition configuration not available now" and do it
    subprocess.run(["scontrol", "update", f"jobid={ref.job_id}", f"NumCPUs={CPUS * 2}"], capture_output=True)
    subprocess.run(["scontrol", "release", ref.job_id], capture_output=True)
    backend.cancel(blocker)
    status = wait(backend, ref, lambda s: (s.reason or "").startswith("PartitionConfig"), 30)
    assert status.state is JobState.PENDING, status
    row = launch_record(job_id=ref.job_id, state=status.state, native=status.native, reason=status.reason)
    line = status_line(row, time.time())
    assert "will never start: PartitionConfig" in line and "SLURM_CPUS_PER_TASK" in line and "waiting" not in line
    text = json.dumps(status_update(StatusUpdate(row, (), time.time())))
    assert "will never start as asked" in text
    # a job that only waits its turn still reads as waiting
    waiting = launch_record(state=JobState.PENDING, native="PENDING", reason="Resources")
    assert status_line(waiting, time.time()).endswith("waiting: Resources")


def test_preempted_and_node_fail_are_infrastructure_failures():
    assert infrastructure_cause("PREEMPTED", ()) == "preempted by the scheduler"
    assert infrastructure_cause("NODE_FAIL", ()) == "node failure"
    row = launch_record(state=JobState.FAILED, native="PREEMPTED", reason="preempted", ended_at=time.time())
    text = json.dumps(final_update(FinalUpdate(row, (), "preempted by the scheduler", time.time())))
    assert "platform state `PREEMPTED`" in text and "likely retriable" in text
