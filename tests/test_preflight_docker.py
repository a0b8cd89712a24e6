"""taobot.preflight.docker against real Docker daemons.

The lab daemon (tests/services/setup.sh docker) is a plain Debian dockerd
with no NVIDIA runtime: it is the "Docker without GPU runtime" case. The
passing case is a second, private dockerd started here whose daemon.json
registers a runtime named `nvidia` (backed by runc). Nothing here creates a
container or pulls an image, and one test proves preflight does not either.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time

import pytest

from taobot.config import PlatformSettings
from taobot.preflight import docker as dk
from taobot.preflight.base import CheckResult, DatasetPath, PreflightRequest
from tests.dockerd import private_dockerd
from tests.lab import require


def services_env(*required: str) -> dict[str, str]:
    return require(*required)


@pytest.fixture(scope="module")
def lab_host() -> str:
    import docker

    host = services_env("TAOBOT_TEST_DOCKER_HOST")["TAOBOT_TEST_DOCKER_HOST"]
    try:
        client = docker.DockerClient(base_url=host, timeout=10)
        client.ping()
        client.close()
    except Exception as exc:
        pytest.fail(f"lab Docker daemon at {host} does not answer ({exc}): run `bash tests/services/setup.sh docker`")
    return host


def request(host: str | None, *paths: DatasetPath, **settings) -> PreflightRequest:
    creds = {"DOCKER_HOST": host} if host else {}
    return PreflightRequest("local-docker", creds, paths=tuple(paths), settings=PlatformSettings(**settings))


def by_check(results: list[CheckResult], check: str, key: str | None = None) -> CheckResult:
    found = [r for r in results if r.check == check and (key is None or r.key == key)]
    assert len(found) == 1, f"expected one {check} result for {key}, got {results}"
    return found[0]


def assert_failure_is_actionable(r: CheckResult) -> None:
    assert not r.ok
    assert r.detail and r.remediation, r


# --------------------------------------------------------------------------- a private dockerd with an `nvidia` runtime


@pytest.fixture(scope="module")
def nvidia_runtime_host():
    """A second dockerd whose daemon.json registers runtime `nvidia` (pointing at runc)."""
    with private_dockerd({"runtimes": {"nvidia": {"path": "runc"}}}, prefix="tbdk-") as host:
        yield host


# --------------------------------------------------------------------------- daemon


def test_unreachable_daemon_fails_naming_the_endpoint_tried(tmp_path):
    host = f"unix://{tmp_path}/no-daemon-here.sock"
    results = dk.check(request(host))
    daemon = by_check(results, "docker.daemon")
    assert_failure_is_actionable(daemon)
    assert daemon.scope == "platform"
    assert host in daemon.detail
    assert "does not exist" in daemon.detail
    assert "DOCKER_HOST" in daemon.remediation and "dockerd" in daemon.remediation
    runtime = by_check(results, "docker.gpu_runtime")
    assert not runtime.ok and "not checked" in runtime.detail


def test_refused_tcp_daemon_fails_as_connection_refused():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"tcp://127.0.0.1:{port}"
    daemon = by_check(dk.check(request(host)), "docker.daemon")
    assert_failure_is_actionable(daemon)
    assert host in daemon.detail and "refused" in daemon.detail


def _check_as_nobody(req: PreflightRequest) -> list[dict]:
    """Run dk.check in a forked child that has dropped to uid/gid `nobody` (the modules are already imported)."""
    import docker  # noqa: F401  (imported before the fork: the child cannot read the venv as nobody)
    import docker.utils  # noqa: F401

    if os.geteuid() != 0:
        pytest.fail("this test drops to `nobody` and must run as root (as the services do)")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 1
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            payload = json.dumps([r.to_dict() for r in dk.check(req)]).encode()
            with os.fdopen(write_fd, "wb") as w:
                w.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as r:
        data = r.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the child check failed"
    return json.loads(data)


def test_socket_the_bot_user_may_not_open_fails_with_docker_group_remediation():
    root = tempfile.mkdtemp(prefix="tbsock-", dir="/tmp")
    os.chmod(root, 0o755)  # nobody can reach the socket, and is refused by the socket itself
    sock_path = f"{root}/locked.sock"
    srv = socket.socket(socket.AF_UNIX)
    try:
        srv.bind(sock_path)
        srv.listen(1)
        os.chmod(sock_path, 0o600)  # root-only, like /var/run/docker.sock for a user outside group docker
        results = _check_as_nobody(request(f"unix://{sock_path}"))
    finally:
        srv.close()
        subprocess.run(["rm", "-rf", root], capture_output=True)
    daemon = next(r for r in results if r["check"] == "docker.daemon")
    assert daemon["ok"] is False
    assert "permission denied" in daemon["detail"] and sock_path in daemon["detail"]
    assert "usermod -aG docker" in daemon["remediation"]


def test_lab_daemon_answers_but_has_no_nvidia_runtime(lab_host):
    results = dk.check(request(lab_host))
    daemon = by_check(results, "docker.daemon")
    assert daemon.ok, daemon
    assert lab_host in daemon.detail and "DOCKER_HOST credential" in daemon.detail
    runtime = by_check(results, "docker.gpu_runtime")
    assert_failure_is_actionable(runtime)
    assert runtime.scope == "platform"
    assert "no NVIDIA GPU runtime" in runtime.detail and "`runc`" in runtime.detail
    assert "nvidia-container-toolkit" in runtime.remediation
    assert "nvidia-ctk runtime configure --runtime=docker" in runtime.remediation
    assert "restart docker" in runtime.remediation


def test_docker_host_from_the_environment_is_used_when_no_credential(lab_host, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", lab_host)
    from taobot.config import load_settings

    bots_own = load_settings().platform_settings()  # the bot's DOCKER_HOST arrives through its settings
    assert bots_own.docker_host == lab_host
    daemon = by_check(dk.check(request(None, docker_host=bots_own.docker_host)), "docker.daemon")
    assert daemon.ok and lab_host in daemon.detail and "environment" in daemon.detail


def test_daemon_with_nvidia_runtime_passes(nvidia_runtime_host):
    results = dk.check(request(nvidia_runtime_host))
    assert by_check(results, "docker.daemon").ok
    runtime = by_check(results, "docker.gpu_runtime")
    assert runtime.ok, runtime
    assert "runtime `nvidia` is registered" in runtime.detail and nvidia_runtime_host in runtime.detail


def test_cdi_nvidia_devices_count_as_gpu_runtime():
    # Docker >= 28 lists CDI devices in `info`; a CDI-only host has no `nvidia` runtime entry
    info = {"Runtimes": {"runc": {"path": "runc"}}, "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}]}
    assert dk.gpu_runtime_result(info, "unix:///x").ok
    info["DiscoveredDevices"] = [{"Source": "cdi", "ID": "vendor.com/fpga=0"}]
    assert not dk.gpu_runtime_result(info, "unix:///x").ok


# --------------------------------------------------------------------------- paths


def test_existing_and_missing_host_paths_reported_per_path(lab_host, tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    results = dk.check(
        request(
            lab_host,
            DatasetPath("train_dir", str(data)),
            DatasetPath("eval_dir", f"file://{tmp_path}/eval-missing"),
            DatasetPath("lustre_dir", f"lustre://{data}"),
            DatasetPath("on_s3", "s3://bucket/key/"),
        )
    )
    ok = by_check(results, "path", "train_dir")
    assert ok.ok and ok.scope == "dataset" and ok.label == "train_dir" and "exists" in ok.detail
    assert by_check(results, "path", "lustre_dir").ok
    missing = by_check(results, "path", "eval_dir")
    assert_failure_is_actionable(missing)
    assert missing.scope == "dataset" and missing.key == "eval_dir"
    assert f"{tmp_path}/eval-missing" in missing.detail and "does not exist" in missing.detail
    assert f"{tmp_path}/eval-missing" in missing.remediation
    assert not [r for r in results if r.key == "on_s3"], "s3:// paths are for taobot.preflight.s3"
    assert "remote daemon" not in ok.detail


def test_non_local_scheme_fails(lab_host):
    r = by_check(dk.check(request(lab_host, DatasetPath("data", "gs://bucket/x"))), "path", "data")
    assert_failure_is_actionable(r)
    assert "not a host path" in r.detail


def test_remote_docker_host_fails_every_host_path_closed(tmp_path):
    # The folder exists on the bot host, which proves nothing about the other machine: it never passes.
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps(RECORDS_WITH))
    paths = (DatasetPath("data", str(tmp_path)), DatasetPath("ann", str(ann), ("video_fps",)))
    results = dk.check(request("tcp://192.0.2.1:2375", *paths, connect_timeout_s=1))
    assert not by_check(results, "docker.daemon").ok
    for key in ("data", "ann"):
        r = by_check(results, dk.REMOTE_PATH, key)
        assert_failure_is_actionable(r)
        assert r.scope == "dataset" and "cannot be verified" in r.detail and "remote daemon" in r.detail
        assert "tcp://192.0.2.1:2375" in r.detail and "s3://" in r.remediation
    assert not [r for r in results if r.check == "path"], "a remote daemon's paths are never checked on the bot host"
    assert not by_check(results, "annotation", "ann").ok


# --------------------------------------------------------------------------- annotation files


RECORDS_WITH = [{"video": f"v{i}.mp4", "video_fps": 30.0} for i in range(3)]
RECORDS_WITHOUT = [{"video": f"v{i}.mp4"} for i in range(3)]


@pytest.mark.parametrize(
    "shape",
    [lambda r: r, lambda r: {"annotations": r}, lambda r: {"items": r}],
    ids=["json-list", "annotations-key", "items-key"],
)
def test_annotation_field_present_passes_and_absent_fails_for_each_layout(lab_host, tmp_path, shape):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(shape(RECORDS_WITH)))
    bad.write_text(json.dumps(shape(RECORDS_WITHOUT)))
    results = dk.check(
        request(lab_host, DatasetPath("good", str(good), ("video_fps",)), DatasetPath("bad", str(bad), ("video_fps",)))
    )
    assert by_check(results, "path", "good").ok and by_check(results, "path", "bad").ok
    passed = by_check(results, "annotation", "good")
    assert passed.ok and passed.scope == "dataset" and "`video_fps`" in passed.detail
    failed = by_check(results, "annotation", "bad")
    assert_failure_is_actionable(failed)
    assert failed.scope == "dataset" and failed.key == "bad"
    assert "`video_fps` missing in 3 of 3" in failed.detail


def test_lab_annotation_files_with_and_without_video_fps(lab_host):
    env = services_env("TAOBOT_TEST_ANNOTATIONS", "TAOBOT_TEST_ANNOTATIONS_NOFPS")
    results = dk.check(
        request(
            lab_host,
            DatasetPath("with_fps", env["TAOBOT_TEST_ANNOTATIONS"], ("video_fps",)),
            DatasetPath("without_fps", env["TAOBOT_TEST_ANNOTATIONS_NOFPS"], ("video_fps",)),
        )
    )
    assert by_check(results, "annotation", "with_fps").ok
    assert not by_check(results, "annotation", "without_fps").ok


def test_invalid_json_annotation_fails_with_position(lab_host, tmp_path):
    f = tmp_path / "broken.json"
    f.write_text('[{"video_fps": 30}, {"video_fps": ]')
    r = by_check(dk.check(request(lab_host, DatasetPath("ann", str(f), ("video_fps",)))), "annotation", "ann")
    assert_failure_is_actionable(r)
    assert "not valid JSON" in r.detail and "line 1 column" in r.detail
    assert "json.tool" in r.remediation


def test_annotation_without_records_fails(lab_host, tmp_path):
    f = tmp_path / "dict.json"
    f.write_text(json.dumps({"meta": {"video_fps": 30}}))
    r = by_check(dk.check(request(lab_host, DatasetPath("ann", str(f), ("video_fps",)))), "annotation", "ann")
    assert not r.ok and "no records" in r.detail


def test_oversized_annotation_is_not_read(lab_host, tmp_path, monkeypatch):
    monkeypatch.setattr(dk, "ANNOTATION_MAX_BYTES", 100)
    f = tmp_path / "big.json"
    f.write_text(json.dumps(RECORDS_WITH * 10))
    r = by_check(dk.check(request(lab_host, DatasetPath("ann", str(f), ("video_fps",)))), "annotation", "ann")
    assert not r.ok and "over the 100 bytes preflight reads" in r.detail


def test_annotation_path_that_is_a_directory_or_missing_fails(lab_host, tmp_path):
    results = dk.check(
        request(
            lab_host,
            DatasetPath("dir", str(tmp_path), ("video_fps",)),
            DatasetPath("gone", f"{tmp_path}/gone.json", ("video_fps",)),
        )
    )
    assert "is a directory" in by_check(results, "annotation", "dir").detail
    gone = by_check(results, "annotation", "gone")
    assert not gone.ok and "not checked" in gone.detail
    assert not by_check(results, "path", "gone").ok


# --------------------------------------------------------------------------- creates nothing


def test_preflight_creates_no_container_and_pulls_no_image(nvidia_runtime_host, tmp_path):
    # on the private daemon (nobody else uses it, so any event is ours), where the GPU check passes
    import docker

    ann = tmp_path / "a.json"
    ann.write_text(json.dumps(RECORDS_WITH))
    host = nvidia_runtime_host
    client = docker.DockerClient(base_url=host, timeout=10)
    try:
        containers_before = sorted(c.id for c in client.containers.list(all=True))
        images_before = sorted(i.id for i in client.images.list(all=True))
        since = int(time.time()) - 1
        for _ in range(3):
            results = dk.check(
                request(host, DatasetPath("d", str(tmp_path)), DatasetPath("a", str(ann), ("video_fps",)))
            )
            assert all(r.ok for r in results), results
        until = int(time.time()) + 1
        time.sleep(1.1)  # let the event window close
        events = list(client.events(since=since, until=until, decode=True))
        assert sorted(c.id for c in client.containers.list(all=True)) == containers_before
        assert sorted(i.id for i in client.images.list(all=True)) == images_before
        changes = [e for e in events if e.get("Type") in ("container", "image", "volume", "network")]
        assert changes == [], f"preflight caused Docker events: {changes}"
    finally:
        client.close()


# --------------------------------------------------------------------------- the operator's mount roots


@pytest.fixture
def tree(tmp_path_factory):
    """An allowed root with data, a folder beside it, a symlink out of the root to /etc, and a bot data folder."""
    base = tmp_path_factory.mktemp("mounts")
    data, other, bot = base / "data", base / "other", base / "bot"
    for d in (data / "train", other, bot):
        d.mkdir(parents=True)
    (data / "etc-link").symlink_to("/etc")
    return base


def mount_request(host, tree, *paths, mounts=None, **creds):
    from taobot.policy import MountRules, protected_paths

    protected = protected_paths(tree / "bot" / "taobot.db", tree / "bot" / "taobot.db.key", tree / "bot" / "runs", None)
    rules = mounts if mounts is not None else MountRules((str(tree / "data"),), protected)
    creds = {"DOCKER_HOST": host, **creds}
    return PreflightRequest("local-docker", creds, paths=tuple(paths), settings=PlatformSettings(), mounts=rules)


def test_paths_are_resolved_and_held_to_the_mount_roots(lab_host, tree):
    data = tree / "data"
    results = dk.check(
        mount_request(
            lab_host,
            tree,
            DatasetPath("inside", str(data / "train")),
            DatasetPath("beside", str(tree / "other")),
            DatasetPath("dotdot", f"{data}/../other"),
            DatasetPath("symlink", f"file://{data}/etc-link/hostname"),
            DatasetPath("socket", "/var/run/docker.sock"),
            DatasetPath("bots_db", str(tree / "bot")),
            DatasetPath("proc", "/proc/self"),
        )
    )
    inside = by_check(results, "path", "inside")
    assert inside.ok and "exists" in inside.detail
    for key in ("beside", "dotdot", "symlink", "socket", "bots_db", "proc"):
        r = by_check(results, dk.MOUNT_POLICY, key)
        assert_failure_is_actionable(r)
        assert r.scope == "dataset" and str(data) in r.remediation and "docker.mount_roots" in r.remediation
        assert not [x for x in results if x.check == "path" and x.key == key], f"{key} was looked at anyway"
    assert f"resolves to `{tree}/other`" in by_check(results, dk.MOUNT_POLICY, "dotdot").detail
    assert "outside the folders local-docker may mount" in by_check(results, dk.MOUNT_POLICY, "beside").detail
    symlink = by_check(results, dk.MOUNT_POLICY, "symlink").detail
    assert "resolves to `/etc/hostname`" in symlink and "the host's configuration" in symlink
    assert "the Docker socket" in by_check(results, dk.MOUNT_POLICY, "socket").detail
    assert "the bot's data folder" in by_check(results, dk.MOUNT_POLICY, "bots_db").detail
    assert "kernel's process files" in by_check(results, dk.MOUNT_POLICY, "proc").detail


def test_no_mount_roots_refuses_every_host_path_and_says_how_to_allow_one(lab_host, tree):
    from taobot.policy import MountRules

    r = by_check(
        dk.check(mount_request(lab_host, tree, DatasetPath("train", str(tree / "data")), mounts=MountRules())),
        dk.MOUNT_POLICY,
        "train",
    )
    assert_failure_is_actionable(r)
    assert "mounts no host folders" in r.detail and "docker.mount_roots: [/data]" in r.remediation


def test_host_ssh_path_is_a_mount_too(lab_host, tree):
    results = dk.check(mount_request(lab_host, tree, HOST_SSH_PATH="/root/.ssh"))
    r = by_check(results, dk.MOUNT_POLICY, "HOST_SSH_PATH")
    assert_failure_is_actionable(r)
    assert "the root user's home" in r.detail
    ok = dk.check(mount_request(lab_host, tree, HOST_SSH_PATH=str(tree / "data" / "train")))
    assert by_check(ok, dk.MOUNT_POLICY, "HOST_SSH_PATH").ok


def test_the_launchs_own_docker_socket_is_never_mounted(tree):
    sock = tree / "data" / "d.sock"
    sock.write_text("")  # where a DOCKER_HOST credential points: inside the root, and still refused
    results = dk.check(mount_request(f"unix://{sock}", tree, DatasetPath("sock", str(sock))))
    assert "the Docker socket of this launch" in by_check(results, dk.MOUNT_POLICY, "sock").detail


def test_a_host_results_folder_is_held_to_the_roots_too(lab_host, tree):
    req = mount_request(lab_host, tree)
    from dataclasses import replace

    results = dk.check(replace(req, results_uri=f"file://{tree}/bot/runs"))
    assert "the bot's data folder" in by_check(results, dk.MOUNT_POLICY, "results").detail
    assert not [r for r in dk.check(replace(req, results_uri=f"{tree}/data/out")) if r.key == "results"]
