"""The real services the test setup started (tests/services/setup.sh), as a dict of their env file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def services() -> dict[str, str]:
    path = Path(os.environ.get("TAOBOT_SERVICES_DIR", "/tmp/taobot-services")) / "services.env"
    if not path.is_file():
        raise AssertionError(
            f"{path} is missing: start the test services with `bash tests/services/setup.sh` (as root)"
        )
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            values[name] = value.strip().strip("'\"")
    lane = slurm_lane()
    if lane is not None and lane > 1:
        # Lane N (from 2 on) logs in and submits as the lab's user of that lane: its jobs and logins are its own.
        for name in LANE_USER:
            values[name] = values.get(f"{name}{lane}", "")
    return values


# What makes a test a lane's cluster user: the login and its key (tests/services/lib/ssh-slurm.sh).
LANE_USER = ("TAOBOT_TEST_SSH_USER", "TAOBOT_TEST_SSH_KEY", "TAOBOT_TEST_SSH_PUBKEY")


def slurm_lane() -> int | None:
    """The lane this pytest process runs (TAOBOT_TEST_SLURM_LANE, set by tests/run.sh), or None: every test."""
    lane = os.environ.get("TAOBOT_TEST_SLURM_LANE", "")
    return int(lane) if lane.isdigit() else None


def require(*names: str) -> dict[str, str]:
    """The services env with these names present; a test FAILS (never skips) without them."""
    import pytest

    try:
        env = services()
    except AssertionError as exc:
        pytest.fail(str(exc))
    missing = [n for n in names if not env.get(n)]
    if missing:
        pytest.fail(f"the services env lacks {', '.join(missing)}: run `bash tests/services/setup.sh`")
    return env


def ssh_command() -> list[str]:
    """`ssh` to the test login node as the test user: key only, known hosts enforced, never a prompt."""
    env = services()
    return [
        "ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={env['TAOBOT_TEST_SSH_KNOWN_HOSTS']}",
        "-o", "StrictHostKeyChecking=yes", "-i", env["TAOBOT_TEST_SSH_KEY"], "-p", env["TAOBOT_TEST_SSH_PORT"],
        f"{env['TAOBOT_TEST_SSH_USER']}@127.0.0.1",
    ]  # fmt: skip


def sshd_log() -> Path:
    """The key-only test sshd's log (LogLevel VERBOSE: every publickey tried, accepted or failed, with its SHA256)."""
    env = services()
    return Path(env.get("TAOBOT_TEST_SSH_LOG") or Path(env["TAOBOT_SERVICES_DIR"]) / "ssh" / "key" / "sshd.log")


class SshdLog:
    """What the test sshd logs from the moment this is made: `log = SshdLog(); ...; log.text()`."""

    def __init__(self) -> None:
        self.path = sshd_log()
        self.start = self.path.stat().st_size

    def text(self) -> str:
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            return fh.read().decode("utf-8", "replace")
