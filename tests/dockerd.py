"""A private dockerd for tests that need a daemon of their own (own data/exec root, pidfile, socket)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

DOCKERD = "/usr/sbin/dockerd"


def _wait_for_socket(sock: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import docker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"private dockerd exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if os.path.exists(sock):
            try:
                client = docker.DockerClient(base_url=f"unix://{sock}", timeout=5)
                client.ping()
                client.close()
                return
            except Exception:
                pass
        time.sleep(0.2)
    pytest.fail(f"private dockerd did not answer on {sock} in {timeout}s:\n{log.read_text()[-3000:]}")


def _unmount_below(root: str) -> None:
    prefix = root.rstrip("/") + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


@contextmanager
def private_dockerd(daemon_config: dict | None = None, prefix: str = "tbdk-") -> Iterator[str]:
    """Start a dockerd with `daemon_config` as its daemon.json; yields its DOCKER_HOST; removes everything after."""
    if not os.access(DOCKERD, os.X_OK):
        pytest.fail(f"{DOCKERD} is missing: run `bash tests/services/setup.sh docker` (installs docker.io)")
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: unix socket paths under it must stay < 108 bytes
    sock = f"{root}/d.sock"
    config = Path(root, "daemon.json")
    config.write_text(json.dumps(daemon_config or {}))  # never the host's /etc/docker/daemon.json
    log = Path(root, "dockerd.log")
    cmd = [
        DOCKERD, "--config-file", str(config), "-H", f"unix://{sock}",
        "--data-root", f"{root}/data", "--exec-root", f"{root}/exec", "--pidfile", f"{root}/dockerd.pid",
        "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none", "--storage-driver=vfs",
        "--log-level=warn",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_socket(sock, proc, log)
        yield f"unix://{sock}"
    finally:
        try:
            import docker

            client = docker.DockerClient(base_url=f"unix://{sock}", timeout=10)
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.close()
        except Exception:
            pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # dockerd stops the containerd it started
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        _unmount_below(root)
        subprocess.run(["rm", "-rf", root], capture_output=True)
