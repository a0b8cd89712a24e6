"""taobot.backends.docker against real Docker daemons.

Two daemons:
- the lab daemon (tests/services/setup.sh docker) has no NVIDIA runtime, so a GPU DeviceRequest
  fails there at start: that proves the GPU request path and its LaunchFailed message;
- a private dockerd started here (own data/exec root, pidfile, socket; no iptables, no bridge, vfs)
  with a stand-in image imported from Debian's busybox-static plus tests/images/standin/tao-standin
  (as `dino`, `cosmos-rl`). No GPUs exist on this machine and the NVIDIA container hook is not
  installed, so on this daemon the backend is built with `gpu_request=False` (no DeviceRequest);
  every other part of the launch is the real one.

Nothing is mocked: containers run, write status.json into the bot-host results folder, get stopped,
and the tests inspect what the daemon really holds. Every container and image made here is removed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shlex
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from taobot.backends.base import (
    RESULTS_PLACEHOLDER,
    JobRef,
    JobState,
    LaunchSpec,
)
from taobot.backends.docker import DockerBackend
from taobot.backends.docker_status import CANCEL_MARKER, container_status
from taobot.backends.tao_status import NO_SUCCESS
from taobot.catalog.schema import ResourceDefaults
from taobot.config import PlatformSettings
from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.policy import MountRules, protected_paths
from tests.dockerd import private_dockerd

ENV_FILE = Path(os.environ.get("TAOBOT_SERVICES_ENV", "/tmp/taobot-services/services.env"))
BUSYBOX = "/bin/busybox"
STANDIN = Path(__file__).parent / "images" / "standin" / "tao-standin"
STANDIN_IMAGE = "taobot-test/tao-standin:backend"
GPU_DRIVER_ERROR = 'could not select device driver "" with capabilities: [[gpu]]'
SECRET = "hf_Zq8Xv3Lm9Tr2Wp7Ks4Nd6Bc1"


# --------------------------------------------------------------------------- daemons


def services_env(*required: str) -> dict[str, str]:
    if not ENV_FILE.is_file():
        pytest.fail(f"{ENV_FILE} is missing: start the services with `bash tests/services/setup.sh docker`")
    env: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            parts = shlex.split(value) if value else [""]
            env[name.strip()] = parts[0] if parts else ""
    missing = [n for n in required if not env.get(n)]
    if missing:
        pytest.fail(f"{ENV_FILE} lacks {', '.join(missing)}: run `bash tests/services/setup.sh docker`")
    return env


def docker_client(host: str):
    import docker

    return docker.DockerClient(base_url=host, timeout=30)


@pytest.fixture(scope="module")
def lab():
    """(host, image) of the lab daemon: no NVIDIA runtime, busybox image imported by setup.sh."""
    env = services_env("TAOBOT_TEST_DOCKER_HOST", "TAOBOT_TEST_DOCKER_IMAGE")
    host, image = env["TAOBOT_TEST_DOCKER_HOST"], env["TAOBOT_TEST_DOCKER_IMAGE"]
    try:
        client = docker_client(host)
        client.images.get(image)
        client.close()
    except Exception as exc:
        pytest.fail(
            f"lab Docker daemon at {host} (image {image}) is not usable ({exc}): run `bash tests/services/setup.sh docker`"
        )
    return host, image


@pytest.fixture(scope="module")
def private_host():
    """A second dockerd of our own; the whole data root goes away afterwards."""
    with private_dockerd(prefix="tbbk-") as host:
        yield host


def standin_rootfs() -> bytes:
    """A tarball: busybox-static with its applets, and the TAO stand-in as dino / cosmos-rl."""
    if not os.access(BUSYBOX, os.X_OK):
        subprocess.run(["apt-get", "install", "-y", "-q", "busybox-static"], capture_output=True)
    if not os.access(BUSYBOX, os.X_OK):
        pytest.fail(f"{BUSYBOX} is missing: `apt-get install -y busybox-static`")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)

        for d in ("bin", "etc", "proc", "sys", "dev", "root", "opt"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
        for applet in applets:
            if applet != "busybox":
                add_link(f"bin/{applet}", "busybox")
        add_file("bin/tao-standin", STANDIN.read_bytes(), 0o755)
        for entrypoint in ("dino", "cosmos-rl", "cosmos-rl-evaluate"):
            add_link(f"bin/{entrypoint}", "tao-standin")
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


@pytest.fixture(scope="module")
def private(private_host):
    """(host, image) of the private daemon with the stand-in image."""
    client = docker_client(private_host)
    client.api.import_image_from_data(
        standin_rootfs(),
        repository=STANDIN_IMAGE.split(":")[0],
        tag="backend",
        changes=["ENV PATH=/bin", 'CMD ["/bin/sh"]'],
    )
    client.images.get(STANDIN_IMAGE)
    try:
        yield private_host, STANDIN_IMAGE
    finally:
        for ct in client.containers.list(all=True):
            ct.remove(force=True)
        client.images.remove(STANDIN_IMAGE, force=True)
        client.close()


def mount_rules(tmp_path: Path) -> MountRules:
    """The rules a policy with `docker.mount_roots: [<tmp>/data]` gives a bot whose database is in <tmp>/bot."""
    bot = tmp_path / "bot"
    return MountRules(
        (str(tmp_path / "data"),), protected_paths(bot / "taobot.db", bot / "key", tmp_path / "work", None)
    )


@pytest.fixture
def backend(tmp_path, private):
    """The backend on the private daemon (no GPU request: there are no GPUs here). Removes every container after."""
    b = DockerBackend(tmp_path / "work", gpu_request=False, mounts=mount_rules(tmp_path))
    yield b
    b.close()
    client = docker_client(private[0])
    for ct in client.containers.list(all=True):
        ct.remove(force=True)
    client.close()


# --------------------------------------------------------------------------- helpers


_counter = iter(range(1, 10_000))


def make_spec(
    host: str,
    image: str,
    *,
    launch_id: str | None = None,
    command: str = "dino train -e {config_path}",
    config_format: str = "yaml",
    spec: dict | None = None,
    datasets: dict | None = None,
    job_env: dict | None = None,
    creds: dict | None = None,
    num_gpus: int = 1,
    shm_size: str | None = "64m",
    labels: dict | None = None,
) -> LaunchSpec:
    launch_id = launch_id or f"it{os.getpid()}-{next(_counter):03d}"
    flat = {"train.num_gpus": num_gpus, "results_dir": RESULTS_PLACEHOLDER, "standin_sleep": 0, "standin_epochs": 2}
    flat.update(spec or {})
    return LaunchSpec(
        launch_id=launch_id,
        platform="local-docker",
        model="dino",
        action="train",
        image=image,
        command=command,
        config_format=config_format,
        spec=flat,
        datasets=datasets or {},
        num_gpus=num_gpus,
        num_nodes=1,
        resources=ResourceDefaults(num_gpus=num_gpus, shm_size=shm_size),
        platform_credentials={"DOCKER_HOST": host, **(creds or {})},
        job_env=job_env or {},
        labels=labels or {"taobot.intake": "intake-1", "taobot.owner": "U123"},
    )


def ref_of(spec: LaunchSpec, sub) -> JobRef:
    return JobRef(spec.launch_id, sub.job_id, dict(sub.details), dict(spec.platform_credentials))


def wait_state(b: DockerBackend, ref: JobRef, want, timeout: float = 60, tails: bool = False):
    want = {want} if isinstance(want, JobState) else set(want)
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        status = b.poll([ref], tails_for=[ref.job_id] if tails else ())[ref.job_id]
        if not seen or seen[-1] != status.state:
            seen.append(status.state)
        if status.state in want:
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"job {ref.job_id[:12]} never reached {want}; states seen {seen}, last {status}")
        time.sleep(0.2)


class RequestLog:
    """Every HTTP request the backend's Docker client sends (requests response hook)."""

    def __init__(self, b: DockerBackend, creds: dict) -> None:
        self.api = b._client(creds).api
        self.seen: list[tuple[str, str]] = []
        self.api.hooks["response"].append(self._hook)

    def _hook(self, response, *args, **kwargs):
        from urllib.parse import urlparse

        self.seen.append((response.request.method, urlparse(response.request.url).path))

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.seen if method in (None, m)]

    def close(self) -> None:
        self.api.hooks["response"].remove(self._hook)


def launched_containers(host: str, launch_id: str) -> list:
    client = docker_client(host)
    try:
        return client.containers.list(all=True, filters={"label": f"taobot.launch={launch_id}"})
    finally:
        client.close()


# --------------------------------------------------------------------------- GPU request on the lab daemon


def test_gpu_request_without_nvidia_runtime_is_launch_failed_with_the_driver_message(tmp_path, lab):
    host, image = lab
    b = DockerBackend(tmp_path / "work")  # gpu_request=True: the real DeviceRequest(count=n, capabilities=[["gpu"]])
    spec = make_spec(host, image, num_gpus=2)
    try:
        with pytest.raises(LaunchFailed) as err:
            b.launch(spec)
        assert GPU_DRIVER_ERROR in err.value.message
        assert "NVIDIA Container Toolkit" in err.value.message
        # the container the daemon created but could not start was removed again
        assert launched_containers(host, spec.launch_id) == []
    finally:
        b.close()
        for ct in launched_containers(host, spec.launch_id):
            ct.remove(force=True)


# --------------------------------------------------------------------------- happy path


def test_launch_runs_to_succeeded_with_the_real_container(backend, private):
    host, image = private
    spec = make_spec(
        host,
        image,
        spec={"standin_sleep": 1, "standin_epochs": 2},
        creds={"DOCKER_NETWORK": "none"},
        labels={"taobot.intake": "intake-7", "taobot.owner": "U9"},
    )
    requests_seen = RequestLog(backend, spec.platform_credentials)
    t0 = time.monotonic()
    sub = backend.launch(spec)
    launch_s = time.monotonic() - t0
    requests_seen.close()
    assert not [p for p in requests_seen.paths("POST") if p.endswith("/images/create")], (
        "pull policy `missing` pulled a present image"
    )
    ref = ref_of(spec, sub)

    first = backend.poll([ref])[ref.job_id]
    assert first.state in (JobState.PENDING, JobState.RUNNING), first
    final = wait_state(backend, ref, {JobState.SUCCEEDED, JobState.FAILED}, tails=True)
    assert final.state is JobState.SUCCEEDED, final
    assert final.exit_code == 0 and final.native == "exited (0)"
    assert any("epoch 2/2" in line for line in final.log_tail), final.log_tail

    launch_dir = Path(sub.details["launch_dir"])
    assert sub.job_id == sub.details["container"] and len(sub.job_id) == 64
    assert sub.results_location == str(launch_dir / "results")
    assert sub.log_location == f"docker -H {host} logs {sub.job_id[:12]}"
    assert launch_dir.parent == backend.work_root.resolve() and {p.name for p in launch_dir.iterdir()} >= {
        "specs",
        "results",
        "logs",
    }
    spec_text = (launch_dir / "specs" / "train.yaml").read_text()
    assert "results_dir: /tao/results" in spec_text and RESULTS_PLACEHOLDER not in spec_text
    records = [json.loads(line) for line in (launch_dir / "results" / "status.json").read_text().splitlines()]
    assert [r["status"] for r in records] == ["STARTED", "RUNNING", "RUNNING", "SUCCESS"]  # TAO's JSON lines
    assert records[-1]["config"] == "/tao/specs/train.yaml" and records[2]["epoch"] == 2
    assert any("epoch 2/2" in line for line in backend.logs(ref))

    info = docker_client(host).api.inspect_container(sub.job_id)
    assert info["Name"] == f"/tao-{spec.launch_id}"
    assert info["Config"]["Cmd"] == ["dino", "train", "-e", "/tao/specs/train.yaml"]
    assert info["Config"]["Labels"] == {
        "taobot.launch": spec.launch_id,
        "taobot.model": "dino",
        "taobot.action": "train",
        "taobot.intake": "intake-7",
        "taobot.owner": "U9",
    }
    assert "TAO_API_RESULTS_DIR=/tao/results" in info["Config"]["Env"]
    assert "TAO_STATUS_FILE=/tao/results/status.json" in info["Config"]["Env"]
    assert f"TAO_API_JOB_ID={spec.launch_id}" in info["Config"]["Env"]
    host_config = info["HostConfig"]
    assert host_config["ShmSize"] == 64 * 1024 * 1024
    assert host_config["NetworkMode"] == "none"
    assert host_config["AutoRemove"] is False
    assert not host_config.get("DeviceRequests")  # gpu_request=False here; the lab test covers the request
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/tao/specs"]["Source"] == str(launch_dir / "specs") and mounts["/tao/specs"]["RW"] is False
    assert mounts["/tao/results"]["Source"] == str(launch_dir / "results") and mounts["/tao/results"]["RW"] is True
    print(f"launch {launch_s:.2f}s")


def test_toml_and_args_actions(backend, private):
    host, image = private
    toml = make_spec(
        host,
        image,
        command="cosmos-rl --config {config_path} /opt/cosmos_rl/tao_sft_example.py",
        config_format="toml",
        spec={"standin_exit": 0},
    )
    args = make_spec(host, image, command="dino train", config_format="args", spec={"standin_exit": 4})
    toml_sub, args_sub = backend.launch(toml), backend.launch(args)
    t = wait_state(backend, ref_of(toml, toml_sub), {JobState.SUCCEEDED, JobState.FAILED})
    a = wait_state(backend, ref_of(args, args_sub), {JobState.SUCCEEDED, JobState.FAILED})
    assert t.state is JobState.SUCCEEDED, t
    toml_text = (Path(toml_sub.details["launch_dir"]) / "specs" / "train.toml").read_text()
    assert 'results_dir = "/tao/results"' in toml_text
    assert a.state is JobState.FAILED and a.exit_code == 4, a  # the exit code came from `--standin_exit 4`
    client = docker_client(host)
    cmd = client.api.inspect_container(args_sub.job_id)["Config"]["Cmd"]
    assert cmd[:2] == ["dino", "train"] and cmd[cmd.index("--results_dir") + 1] == "/tao/results"
    assert cmd[cmd.index("--standin_exit") + 1] == "4"
    assert not list((Path(args_sub.details["launch_dir"]) / "specs").iterdir())  # args-style: no file
    client.close()


# --------------------------------------------------------------------------- failures


def test_nonzero_exit_is_failed_with_the_exit_code(backend, private):
    host, image = private
    spec = make_spec(host, image, spec={"standin_exit": 3})
    sub = backend.launch(spec)
    final = wait_state(backend, ref_of(spec, sub), {JobState.SUCCEEDED, JobState.FAILED}, tails=True)
    assert final.state is JobState.FAILED and final.exit_code == 3, final
    assert final.reason == "exited with code 3" and final.native == "exited (3)"
    assert any("done: FAILURE (exit 3)" in line for line in final.log_tail)


def test_status_json_failure_on_exit_zero_is_failed(backend, private):
    host, image = private
    spec = make_spec(host, image, spec={"standin_exit": 0, "standin_status": "FAILURE"})
    sub = backend.launch(spec)
    final = wait_state(backend, ref_of(spec, sub), {JobState.SUCCEEDED, JobState.FAILED})
    assert final.state is JobState.FAILED and final.exit_code == 0, final
    assert final.reason == "TAO's status file reports failure: dino finished with exit code 0."


def test_exit_zero_without_tao_success_record_is_failed(backend, private):
    """The run exits 0 but TAO's status logger never wrote its final SUCCESS record: not a success."""
    host, image = private
    spec = make_spec(host, image, spec={"standin_exit": 0, "standin_no_final": 1})
    sub = backend.launch(spec)
    final = wait_state(backend, ref_of(spec, sub), {JobState.SUCCEEDED, JobState.FAILED})
    assert final.state is JobState.FAILED and final.exit_code == 0 and final.native == "exited (0)", final
    assert final.reason == NO_SUCCESS and "without reporting success" in final.reason
    lines = (Path(sub.details["launch_dir"]) / "results" / "status.json").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["STARTED", "RUNNING", "RUNNING"]


def test_oom_killed_container_is_failed_out_of_memory(backend, private, tmp_path):
    """The backend sets no memory limit, so this container is made by hand (same labels) with a small one."""
    host, _ = private
    client = docker_client(host)
    ct = client.containers.create(
        private[1],
        ["sh", "-c", "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived"],
        labels={"taobot.launch": "oom-1"},
        mem_limit="16m",
        memswap_limit="16m",
        network="none",
    )
    ct.start()
    assert ct.wait(timeout=60)["StatusCode"] == 137
    if not client.api.inspect_container(ct.id)["State"]["OOMKilled"]:
        pytest.fail("the kernel did not OOM-kill a 16 MiB container here (memory cgroup missing?)")
    ref = JobRef("oom-1", ct.id, {"container": ct.id, "launch_dir": str(tmp_path / "oom-1")}, {"DOCKER_HOST": host})
    status = backend.poll([ref])[ct.id]
    assert status.state is JobState.FAILED and status.exit_code == 137 and status.reason == "out of memory", status
    client.close()


def test_missing_dataset_path_is_launch_failed_and_leaves_no_container(backend, private, tmp_path):
    host, image = private
    missing = tmp_path / "data" / "no-such-dataset"
    spec = make_spec(host, image, datasets={"train": f"file://{missing}"})
    with pytest.raises(LaunchFailed) as err:
        backend.launch(spec)
    assert str(missing) in err.value.message and "does not exist" in err.value.message
    assert launched_containers(host, spec.launch_id) == []


def test_same_launch_id_twice_is_refused_and_the_first_container_is_untouched(backend, private):
    host, image = private
    spec = make_spec(host, image, spec={"standin_sleep": 30, "standin_epochs": 1})
    sub = backend.launch(spec)
    with pytest.raises(LaunchFailed) as err:
        backend.launch(spec)
    assert "Conflict" in err.value.message or "already in use" in err.value.message
    assert backend.poll([ref_of(spec, sub)])[sub.job_id].state is JobState.RUNNING


# --------------------------------------------------------------------------- cancel


def test_cancel_running_container_is_cancelled(backend, private):
    host, image = private
    spec = make_spec(host, image, spec={"standin_sleep": 30, "standin_epochs": 10})
    sub = backend.launch(spec)
    ref = ref_of(spec, sub)
    wait_state(backend, ref, JobState.RUNNING)

    client = docker_client(host)
    client.api.pause(sub.job_id)
    assert backend.poll([ref])[sub.job_id].state is JobState.PAUSED
    client.api.unpause(sub.job_id)

    t0 = time.monotonic()
    backend.cancel(ref)
    cancel_s = time.monotonic() - t0
    assert cancel_s < 9, f"the stand-in traps SIGTERM, so the stop should not wait for SIGKILL ({cancel_s:.1f}s)"
    assert (Path(sub.details["launch_dir"]) / CANCEL_MARKER).is_file()
    status = backend.poll([ref])[sub.job_id]
    assert status.state is JobState.CANCELLED and status.reason == "cancelled from taobot", status
    assert status.exit_code == 143  # SIGTERM: without the marker this would be Failed
    assert client.api.inspect_container(sub.job_id)["State"]["Status"] == "exited"

    backend.cancel(ref)  # cancelling again: already finished, no error
    assert backend.poll([ref])[sub.job_id].state is JobState.CANCELLED
    client.api.remove_container(sub.job_id)
    assert backend.poll([ref])[sub.job_id].state is JobState.CANCELLED  # the marker outlives the container
    client.close()


def test_cancel_of_finished_or_removed_container_is_no_error(backend, private):
    host, image = private
    spec = make_spec(host, image)
    sub = backend.launch(spec)
    ref = ref_of(spec, sub)
    assert wait_state(backend, ref, {JobState.SUCCEEDED, JobState.FAILED}).state is JobState.SUCCEEDED
    backend.cancel(ref)  # finished on its own: its outcome stands
    assert backend.poll([ref])[sub.job_id].state is JobState.SUCCEEDED
    assert not (Path(sub.details["launch_dir"]) / CANCEL_MARKER).exists()

    docker_client(host).api.remove_container(sub.job_id)
    backend.cancel(ref)  # gone: no error
    gone = backend.poll([ref])[sub.job_id]
    assert gone.state is JobState.UNKNOWN and gone.reason == "the container no longer exists", gone
    assert backend.logs(ref) == []


def test_auto_remove_keeps_the_outcome_from_status_json(backend, private):
    host, image = private
    ok = make_spec(host, image, creds={"DOCKER_AUTO_REMOVE": "true"})
    bad = make_spec(host, image, creds={"DOCKER_AUTO_REMOVE": "true"}, spec={"standin_exit": 5})
    ok_ref, bad_ref = ref_of(ok, backend.launch(ok)), ref_of(bad, backend.launch(bad))
    assert ok_ref.details["auto_remove"] == "true"
    deadline = time.monotonic() + 60
    while launched_containers(host, ok.launch_id) or launched_containers(host, bad.launch_id):
        assert time.monotonic() < deadline, "auto-removed containers are still there"
        time.sleep(0.2)
    statuses = backend.poll([ok_ref, bad_ref])
    assert statuses[ok_ref.job_id].state is JobState.SUCCEEDED, statuses
    assert statuses[bad_ref.job_id].state is JobState.FAILED and statuses[bad_ref.job_id].exit_code == 5, statuses


# --------------------------------------------------------------------------- batching


def test_poll_of_five_jobs_is_one_list_request(backend, private):
    host, image = private
    specs = [make_spec(host, image, spec={"standin_exit": i % 2, "standin_sleep": 0}) for i in range(5)]
    refs = [ref_of(s, backend.launch(s)) for s in specs]
    for ref in refs:  # all finished, so every state below is settled
        wait_state(backend, ref, {JobState.SUCCEEDED, JobState.FAILED})
    before = backend.list_calls
    requests_seen = RequestLog(backend, dict(specs[0].platform_credentials))
    statuses = backend.poll(refs)
    requests_seen.close()
    assert requests_seen.seen == [("GET", requests_seen.seen[0][1])] and requests_seen.seen[0][1].endswith(
        "/containers/json"
    ), requests_seen.seen
    assert backend.list_calls == before + 1
    assert [statuses[r.job_id].state for r in refs] == [JobState.SUCCEEDED, JobState.FAILED] * 2 + [JobState.SUCCEEDED]

    # log tails cost one request per job asked for, and nothing for the others
    requests_seen = RequestLog(backend, dict(specs[0].platform_credentials))
    statuses = backend.poll(refs, tails_for=[refs[1].job_id])
    requests_seen.close()
    assert len(requests_seen.seen) == 2 and requests_seen.seen[1][1].endswith(f"/containers/{refs[1].job_id}/logs")
    assert statuses[refs[1].job_id].log_tail and not statuses[refs[0].job_id].log_tail


# --------------------------------------------------------------------------- data and secrets


def test_datasets_are_mounted_read_only_at_the_same_path(backend, private, tmp_path):
    host, image = private
    train = tmp_path / "data" / "train"
    train.mkdir(parents=True)
    (train / "annotations.json").write_text("[]")
    spec = make_spec(
        host,
        image,
        datasets={
            "train": f"lustre://{train}",
            "annotations": f"file://{train}/annotations.json",
            "eval": "s3://bucket/eval",
        },
        spec={"dataset.train_dir": str(train), "standin_touch": str(train / "written-by-job")},
    )
    sub = backend.launch(spec)
    final = wait_state(backend, ref_of(spec, sub), {JobState.SUCCEEDED, JobState.FAILED}, tails=True)
    assert final.state is JobState.SUCCEEDED, final
    assert any(f"touch {train}/written-by-job: READ-ONLY" in line for line in final.log_tail), final.log_tail
    assert not (train / "written-by-job").exists()
    info = docker_client(host).api.inspect_container(sub.job_id)
    data_mounts = [m for m in info["Mounts"] if not m["Destination"].startswith("/tao/")]
    # the annotation file lies inside the mounted folder; s3:// is not a host path
    assert [(m["Source"], m["Destination"], m["RW"]) for m in data_mounts] == [(str(train), str(train), False)]


def test_a_dataset_is_mounted_from_its_resolved_path(backend, private, tmp_path):
    host, image = private
    train = tmp_path / "data" / "train"
    train.mkdir(parents=True)
    link = tmp_path / "data" / "current"
    link.symlink_to(train)  # inside the root, pointing inside it: allowed, and mounted as what was checked
    spec = make_spec(host, image, datasets={"train": str(link)})
    sub = backend.launch(spec)
    info = docker_client(host).api.inspect_container(sub.job_id)
    data_mounts = [(m["Source"], m["Destination"]) for m in info["Mounts"] if not m["Destination"].startswith("/tao/")]
    assert data_mounts == [(str(train), str(link))]


def _bad_mounts(tmp_path: Path) -> dict[str, tuple[dict, dict, str]]:
    """name -> (datasets, credentials, what the refusal says) for host paths the rules never let through."""
    data = tmp_path / "data"
    (data / "ok").mkdir(parents=True, exist_ok=True)
    (tmp_path / "bot").mkdir(exist_ok=True)
    (tmp_path / "bot" / "taobot.db").write_text("")
    if not (data / "etc-link").exists():
        (data / "etc-link").symlink_to("/etc")
    return {
        "docker socket": ({"train": "/var/run/docker.sock"}, {}, "the Docker socket"),
        "db folder": ({"train": f"file://{tmp_path}/bot"}, {}, "the bot's data folder"),
        "symlink to /etc": ({"train": str(data / "etc-link")}, {}, "resolves to `/etc`"),
        "dotdot": ({"train": f"{data}/ok/../../bot/taobot.db"}, {}, f"resolves to `{tmp_path}/bot/taobot.db`"),
        "work folder": ({"train": f"{data}/../work"}, {}, "the bot's work folder"),
        "outside the roots": ({"train": str(tmp_path / "elsewhere")}, {}, "outside the folders local-docker may mount"),
        "ssh keys": ({"train": str(data / "ok")}, {"HOST_SSH_PATH": "/root/.ssh"}, "not mounting HOST_SSH_PATH"),
    }


@pytest.mark.parametrize(
    "case",
    ["docker socket", "db folder", "symlink to /etc", "dotdot", "work folder", "outside the roots", "ssh keys"],
)
def test_host_paths_the_mount_rules_refuse_never_reach_the_daemon(backend, private, tmp_path, case):
    host, image = private
    datasets, creds, says = _bad_mounts(tmp_path)[case]
    spec = make_spec(host, image, datasets=datasets, creds=creds)
    requests_seen = RequestLog(backend, dict(spec.platform_credentials))
    since = int(time.time()) - 1
    with pytest.raises(LaunchFailed) as err:
        backend.launch(spec)
    requests_seen.close()
    assert says in err.value.message and "docker.mount_roots" in err.value.message
    assert requests_seen.paths() == [], "the daemon was asked something for a refused launch"
    assert launched_containers(host, spec.launch_id) == []
    client = docker_client(host)
    mine = {"label": f"taobot.launch={spec.launch_id}"}
    events = list(client.events(since=since, until=int(time.time()) + 1, decode=True, filters=mine))
    client.close()
    assert events == []
    assert not (tmp_path / "work" / spec.launch_id).exists(), "a launch folder was staged"


def test_without_mount_rules_the_backend_mounts_no_host_path(private, tmp_path):
    host, image = private
    (tmp_path / "data").mkdir()
    b = DockerBackend(tmp_path / "work", gpu_request=False)
    try:
        spec = make_spec(host, image, datasets={"train": str(tmp_path / "data")})
        with pytest.raises(LaunchFailed) as err:
            b.launch(spec)
        assert "mounts no host folders" in err.value.message
        assert launched_containers(host, spec.launch_id) == []
    finally:
        b.close()


def test_a_remote_daemon_gets_no_host_path_it_cannot_verify(tmp_path):
    (tmp_path / "data").mkdir()
    b = DockerBackend(tmp_path / "work", gpu_request=False, timeout_s=5, mounts=mount_rules(tmp_path))
    spec = make_spec("tcp://192.0.2.1:2375", "img:1", datasets={"train": str(tmp_path / "data")})
    with pytest.raises(LaunchFailed) as err:
        b.launch(spec)
    assert "remote daemon" in err.value.message and "cannot verify" in err.value.message
    assert b._clients == {}, "the remote daemon was connected to before the refusal"
    assert not (tmp_path / "work").exists()


def test_secrets_reach_the_container_env_only(backend, private):
    host, image = private
    spec = make_spec(
        host, image, job_env={"HF_TOKEN": SECRET, "NGC_KEY": SECRET + "ngc"}, spec={"standin_env": "HF_TOKEN"}
    )
    sub = backend.launch(spec)
    final = wait_state(backend, ref_of(spec, sub), {JobState.SUCCEEDED, JobState.FAILED}, tails=True)
    assert final.state is JobState.SUCCEEDED
    assert any("env HF_TOKEN: set" in line for line in final.log_tail), final.log_tail
    info = docker_client(host).api.inspect_container(sub.job_id)
    assert f"HF_TOKEN={SECRET}" in info["Config"]["Env"] and f"NGC_KEY={SECRET}ngc" in info["Config"]["Env"]
    assert SECRET not in json.dumps(info["Config"]["Cmd"]) and SECRET not in json.dumps(info["Config"]["Labels"])
    assert SECRET not in json.dumps([sub.job_id, sub.log_location, sub.results_location, dict(sub.details)])
    for f in Path(sub.details["launch_dir"]).rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f


# --------------------------------------------------------------------------- images


def test_pull_policy_never_with_absent_image_is_launch_failed(backend, private):
    host, _ = private
    spec = make_spec(host, "taobot-test/not-here:1", creds={"DOCKER_PULL_POLICY": "never"})
    requests_seen = RequestLog(backend, dict(spec.platform_credentials))
    with pytest.raises(LaunchFailed) as err:
        backend.launch(spec)
    requests_seen.close()
    assert "taobot-test/not-here:1" in err.value.message and "DOCKER_PULL_POLICY is never" in err.value.message
    assert not [p for p in requests_seen.paths("POST")], requests_seen.seen  # no pull, no create
    assert launched_containers(host, spec.launch_id) == []


def test_unknown_pull_policy_is_launch_failed(backend, private):
    with pytest.raises(LaunchFailed, match="always, missing or never"):
        backend.launch(make_spec(*private, creds={"DOCKER_PULL_POLICY": "sometimes"}))


class _Registry(BaseHTTPRequestHandler):
    """A registry that wants a login and has no images: records the Authorization headers it gets."""

    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append(self.headers.get("Authorization"))
        if not self.headers.get("Authorization"):
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="taobot-test"')
        else:
            body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
            self.send_response(404)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_missing_image_is_pulled_with_the_registry_login(backend, private):
    host, _ = private
    _Registry.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    image = f"127.0.0.1:{server.server_address[1]}/tao/standin:1"
    try:
        spec = make_spec(host, image, creds={"DOCKER_USERNAME": "taouser", "NGC_KEY": SECRET})
        with pytest.raises(LaunchFailed) as err:
            backend.launch(spec)  # DOCKER_PULL_POLICY defaults to missing: absent, so it pulls
    finally:
        server.shutdown()
        server.server_close()
    assert err.value.message.startswith(f"could not pull `{image}`"), err.value.message
    assert SECRET not in err.value.message
    expected = "Basic " + base64.b64encode(f"taouser:{SECRET}".encode()).decode()
    assert expected in _Registry.seen, _Registry.seen  # the daemon logged in with DOCKER_USERNAME / NGC_KEY
    assert launched_containers(host, spec.launch_id) == []


def test_pull_policy_always_pulls_even_a_present_image(backend, private):
    host, image = private  # imported locally, in no registry: an `always` pull must fail
    with pytest.raises(LaunchFailed, match="could not pull"):
        backend.launch(make_spec(host, image, creds={"DOCKER_PULL_POLICY": "always"}))


# --------------------------------------------------------------------------- unreachable daemons


def _refused_tcp() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["missing socket", "refused tcp"])
def test_unreachable_daemon_is_backend_unreachable(tmp_path, kind):
    host = f"unix://{tmp_path}/no-daemon.sock" if kind == "missing socket" else _refused_tcp()
    b = DockerBackend(tmp_path / "work", timeout_s=5)
    spec = make_spec(host, "taobot-test/any:1")
    ref = JobRef(
        spec.launch_id,
        "0" * 64,
        {"container": "0" * 64, "launch_dir": str(tmp_path / "x")},
        dict(spec.platform_credentials),
    )
    for call in (lambda: b.launch(spec), lambda: b.poll([ref]), lambda: b.cancel(ref), lambda: b.logs(ref)):
        with pytest.raises(BackendUnreachable) as err:
            call()
        assert host in err.value.message
    assert not (tmp_path / "work").exists()  # nothing was staged for a launch that could not be asked for


def test_daemon_going_away_after_a_good_poll_is_backend_unreachable(tmp_path, private):
    """A cached client whose daemon vanished: poll says "could not ask", never a job state."""
    sock_dir = Path(tempfile.mkdtemp(prefix="tbpx-", dir="/tmp"))
    sock = sock_dir / "p.sock"
    stop = threading.Event()
    target = private[0][len("unix://") :]
    open_sockets: list[socket.socket] = []

    def relay(conn):
        up = socket.socket(socket.AF_UNIX)
        up.connect(target)
        open_sockets.extend([conn, up])
        pair = [(conn, up), (up, conn)]

        def pump(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        for a, b in pair:
            threading.Thread(target=pump, args=(a, b), daemon=True).start()

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    server.listen(8)
    server.settimeout(0.2)

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            relay(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    b = DockerBackend(tmp_path / "work", gpu_request=False, timeout_s=5)
    spec = make_spec(f"unix://{sock}", private[1])
    try:
        sub = b.launch(spec)
        ref = ref_of(spec, sub)
        assert b.poll([ref])[sub.job_id].state in (JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED)
        stop.set()
        thread.join()
        server.close()
        sock.unlink()  # the "daemon" is gone, with every connection the client keeps open
        for s in open_sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with pytest.raises(BackendUnreachable):
            b.poll([ref])
    finally:
        b.close()
        stop.set()
        subprocess.run(["rm", "-rf", str(sock_dir)], capture_output=True)
        for ct in launched_containers(private[0], spec.launch_id):
            ct.remove(force=True)


# --------------------------------------------------------------------------- pure parts


def test_connection_key_is_the_docker_host_or_default(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix:///ignored.sock")  # the backend reads its settings, never the environment
    b = DockerBackend(tmp_path)
    assert b.connection_key(JobRef("l", "c", {}, {"DOCKER_HOST": "unix:///x.sock"})) == "unix:///x.sock"
    assert b.connection_key(JobRef("l", "c", {}, {})) == "default"
    assert b.name == "local-docker"
    bots_own = DockerBackend(tmp_path, settings=PlatformSettings(docker_host="unix:///bot.sock"))
    assert bots_own.connection_key(JobRef("l", "c", {}, {})) == "unix:///bot.sock"
    assert bots_own.connection_key(JobRef("l", "c", {}, {"DOCKER_HOST": "unix:///x.sock"})) == "unix:///x.sock"


def test_state_mapping_of_list_entries(tmp_path):
    def entry(state, status=""):
        return {"Id": "c" * 64, "State": state, "Status": status}

    assert container_status(entry("created", "Created"), None).state is JobState.PENDING
    assert container_status(entry("running", "Up 2 seconds"), None).state is JobState.RUNNING
    assert container_status(entry("restarting", "Restarting (1) 1 second ago"), None).state is JobState.RUNNING
    assert container_status(entry("paused", "Up 5 seconds (Paused)"), None).state is JobState.PAUSED
    dead = container_status(entry("dead", "Dead"), None)
    assert dead.state is JobState.FAILED and dead.reason
    killed = container_status(entry("exited", "Exited (137) 3 seconds ago"), None)
    assert killed.state is JobState.FAILED and killed.exit_code == 137 and "SIGKILL" in killed.reason
    assert (
        container_status(entry("exited", "Exited (137) 3 seconds ago"), None, oom_killed=True).reason == "out of memory"
    )
    (tmp_path / CANCEL_MARKER).write_text("x")
    assert container_status(entry("exited", "Exited (137) 1 second ago"), str(tmp_path)).state is JobState.CANCELLED
    assert (
        container_status(entry("running", "Up 1 second"), str(tmp_path)).state is JobState.RUNNING
    )  # stop in progress
    assert container_status(None, None).state is JobState.UNKNOWN
