"""What the SLURM backend reports at the end of real jobs on the test cluster, and how the monitor's texts read it;
and that a job's secrets are on the cluster only until the job has read them.

Jobs run the stand-in TAO entrypoint installed on the test node (tests/services/lib/tao-standin), which writes
TAO-shaped records to $TAO_STATUS_FILE. Holding a job as an administrator is done with the cluster's own
`scontrol` on this host. What a job folder holds is read as bytes over ssh (`tar`), so a secret value never
travels in a command line of the test either.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid

import pytest

from taobot.backends.base import JobRef, JobState, LaunchSpec, infrastructure_cause
from taobot.backends.slurm import SlurmBackend
from taobot.backends.tao_status import NO_SUCCESS
from taobot.catalog.schema import ResourceDefaults
from taobot.config import PlatformSettings
from taobot.errors import LaunchFailed
from taobot.slack.launch_messages import final_update, status_update
from taobot.view_text import status_line
from taobot.views import FinalUpdate, StatusUpdate
from tests.builders import launch_record
from tests.lab import ssh_command
from tests.slurm_flow import LAB, cancel_taobot_jobs, ssh

pytestmark = pytest.mark.slurm  # the shared test cluster: see tests/conftest.py

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


def make_spec(config: dict, job_env: dict | None = None, command: str = "dino train -e {config_path}", **over: str):
    return LaunchSpec(
        launch_id=f"t{uuid.uuid4().hex[:7]}-00001",
        platform="slurm",
        model="dino",
        action="train",
        image="unused-without-a-container-plugin",
        command=command,
        config_format="yaml",
        spec={"standin_sleep": 1, "standin_epochs": 2, **config},
        datasets={},
        num_gpus=0,
        num_nodes=1,
        resources=ResourceDefaults(),
        platform_credentials=creds(**over),
        job_env=job_env or {},
    )


@pytest.fixture
def backend():
    cancel_taobot_jobs()
    b = SlurmBackend(
        PlatformSettings(
            known_hosts_path=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
            ssh_config_path="/nonexistent/ssh_config",
            connect_timeout_s=5,
            on_persons_machine=True,  # the lab's key file, as on the person's own machine
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
    # The job reads CANCELLED a moment before sacct records its batch step's signal (0:15): wait for that.
    final = wait(backend, ref, lambda s: s.state.terminal and s.reason is not None, 60)
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


# --------------------------------------------------------------------------- the job's secrets


def secret_values() -> dict[str, str]:
    """Token-shaped values made at run time, different in every run."""
    return {"HF_TOKEN": f"hf_{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}", "NGC_KEY": f"ngc{uuid.uuid4().hex}"}


def sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


# What the job prints about its credentials: their hashes, from the batch script and from an srun task (the way a
# multi-node job's tasks get them), and whether the env file was still there when TAO started.
PROBE = (
    'h() { printf %s "$1" | sha256sum | cut -d" " -f1; }; '
    'echo "batch hf=$(h "${HF_TOKEN:-}") ngc=$(h "${NGC_KEY:-}")"; '
    'srun -n1 bash -c \'echo "task hf=$(printf %s "${HF_TOKEN:-}" | sha256sum | cut -d" " -f1)"\'; '
    '[ -e "$TAO_API_RESULTS_DIR/../sbatch/job.env" ] && echo "job.env still there" || echo "job.env gone"; '
    'exec dino train -e "$1"'
)
PROBE_COMMAND = f"bash -c {shlex.quote(PROBE)} probe {{config_path}}"


def folder_bytes(path: str) -> bytes:
    """Every byte of the files under `path` on the login node (a tar stream: names and contents)."""
    out = subprocess.run(
        [*ssh_command(), f"tar -C {shlex.quote(path)} -cf - ."], capture_output=True, timeout=60, check=True
    )
    return out.stdout


def listing(path: str) -> list[str]:
    return sorted(ssh(f"cd {shlex.quote(path)} && find . -type f").split())


def test_a_job_reads_its_env_file_once_and_no_file_of_its_folder_holds_a_secret_whatever_the_end(backend):
    values = secret_values()
    refs = {
        "completed": submit(backend, make_spec({}, values, PROBE_COMMAND)),
        "failed": submit(backend, make_spec({"standin_exit": 3}, values, PROBE_COMMAND)),
        "cancelled": submit(backend, make_spec({"standin_sleep": 30, "standin_epochs": 4}, values, PROBE_COMMAND)),
    }
    wait(backend, refs["cancelled"], lambda s: s.state is JobState.RUNNING)
    time.sleep(2)  # past the probe's lines
    backend.cancel(refs["cancelled"])
    ends = {name: wait(backend, ref, lambda s: s.state.terminal) for name, ref in refs.items()}
    assert ends["completed"].state is JobState.SUCCEEDED, ends
    assert ends["failed"].state is JobState.FAILED and ends["failed"].exit_code == 3, ends
    assert ends["cancelled"].state is JobState.CANCELLED, ends
    for name, ref in refs.items():
        d = ref.details["launch_dir"]
        files = listing(d)
        assert "./sbatch/job.env" not in files and "./sbatch/job.sh" in files, (name, files)
        raw = folder_bytes(d)
        for secret in values.values():
            assert secret.encode() not in raw, f"{name}: a file under {d} holds a secret"
        log = ssh(f"cat {shlex.quote(ref.details['launch_dir'])}/logs/slurm-{ref.job_id}.out")
        # the job saw the values (their hashes), in the batch script and in an srun task, after the file was gone
        assert f"batch hf={sha256(values['HF_TOKEN'])} ngc={sha256(values['NGC_KEY'])}" in log, (name, log)
        assert f"task hf={sha256(values['HF_TOKEN'])}" in log, (name, log)
        assert "job.env gone" in log and "job.env still there" not in log, (name, log)
    # the cluster's own state and accounting files hold no value either
    state_dirs = [p for p in ("/tmp/taobot-services/slurm/state", "/tmp/taobot-services/slurm/log")]
    held = subprocess.run(["tar", "-cf", "-", *state_dirs], capture_output=True, timeout=60).stdout
    assert held and not [v for v in values.values() if v.encode() in held]


def test_the_env_file_is_0600_in_a_0700_folder_and_a_queued_job_cancelled_leaves_none(backend):
    values = secret_values()
    blocker = submit(backend, make_spec({"standin_sleep": 30, "standin_epochs": 1}, SLURM_CPUS_PER_TASK=str(CPUS)))
    wait(backend, blocker, lambda s: s.state is JobState.RUNNING)
    ref = submit(backend, make_spec({}, values))
    d = shlex.quote(ref.details["launch_dir"])
    assert backend.poll([ref])[ref.job_id].state is JobState.PENDING
    modes = ssh(f"stat -c '%a %n' {d} {d}/sbatch {d}/sbatch/job.env").split("\n")
    assert [m.split(" ", 1)[0] for m in modes if m] == ["700", "700", "600"], modes
    assert not [v for v in values.values() if v.encode() in folder_bytes(f"{ref.details['launch_dir']}/specs")]

    backend.cancel(ref)  # it never ran, so it never read (or removed) the file: the cancel does

    assert "./sbatch/job.env" not in listing(ref.details["launch_dir"])
    assert wait(backend, ref, lambda s: s.state.terminal).state is JobState.CANCELLED
    backend.cancel(blocker)


def test_a_refused_submission_leaves_no_env_file(backend):
    values = secret_values()
    spec = make_spec({}, values, SLURM_PARTITION="no-such-partition")
    with pytest.raises(LaunchFailed) as refused:
        backend.launch(spec)
    assert "sbatch refused the job" in refused.value.message
    folder = ssh("echo $HOME").strip() + f"/tao-results/{spec.launch_id}"
    assert "./sbatch/job.env" not in listing(folder) and "./sbatch/job.sh" in listing(folder)
    assert not [v for v in values.values() if v.encode() in folder_bytes(folder)]


def test_the_monitor_removes_the_env_file_of_a_job_that_ended_without_reading_it_once_even_across_a_restart(
    backend, tmp_path
):
    from cryptography.fernet import Fernet

    from taobot.catalog import load_catalog
    from taobot.cleanup import CLEANUP_ATTEMPTS
    from taobot.intake import start_intake
    from taobot.monitor import Monitor
    from taobot.secrets import SecretBox
    from taobot.store import Store

    values = secret_values()
    blocker = submit(backend, make_spec({"standin_sleep": 30, "standin_epochs": 1}, SLURM_CPUS_PER_TASK=str(CPUS)))
    wait(backend, blocker, lambda s: s.state is JobState.RUNNING)
    spec = make_spec({}, values)
    ref = submit(backend, spec)
    store = Store(tmp_path / "taobot.db", SecretBox(Fernet.generate_key()))
    owner = "U0CLEANUP"
    for name, value in creds().items():
        store.put_secret(owner, name, value, secret=False)
    intake = start_intake(load_catalog(), "dino", "train", owner, "C0CLEAN", "1700000000.000001")
    intake.status = "launched"
    store.save_intake(intake, owner, "start")
    row = launch_record(
        id=spec.launch_id, intake_id=intake.id, channel="C0CLEAN", owner=owner, job_id=ref.job_id,
        details=json.dumps(dict(ref.details)), state=JobState.PENDING, native="PENDING", monitor=False,
        launched_at=time.time(), state_since=time.time(),
    )  # fmt: skip
    store.add_launch(row, intake, owner)
    try:
        monitor = Monitor(store, load_catalog(), {"slurm": backend}, None)
        monitor.cycle()
        assert "./sbatch/job.env" in listing(ref.details["launch_dir"])  # still queued: it still needs the file
        assert store.get_launch(spec.launch_id).cleaned_at is None
        # an administrator cancels it (not taobot): nobody removed the file yet
        ssh(f"scancel {ref.job_id}")
        wait(backend, ref, lambda s: s.state.terminal)
        assert "./sbatch/job.env" in listing(ref.details["launch_dir"])

        stats = monitor.cycle()  # sees the end, and cleans up

        assert stats.cleaned == 1 and stats.cleanup_failed == 0
        assert "./sbatch/job.env" not in listing(ref.details["launch_dir"])
        done = store.get_launch(spec.launch_id)
        assert done.state is JobState.CANCELLED and done.cleaned_at is not None and done.cleanup_attempts == 0
        # a restarted monitor does not do it again: no command at all goes to the cluster for it
        before = backend.commands_run
        again = Monitor(store, load_catalog(), {"slurm": backend}, None).cycle()
        assert again.cleaned == 0 and backend.commands_run == before
        assert store.launches_to_clean(time.time(), CLEANUP_ATTEMPTS, 10) == []
    finally:
        backend.cancel(blocker)
        store.close()
