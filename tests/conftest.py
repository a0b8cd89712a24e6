from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes import FakeSlackAPI
from tests.harness import BOT_TOKEN, BotProcess, SlackUser
from tests.lab import slurm_lane

_REPO = Path(__file__).resolve().parents[1]
_SNAPSHOTS = [
    Path(os.environ.get("TAO_SKILL_BANK_TEST_PATH") or _REPO.parent / "shared" / "tao-skill-bank"),
    Path(os.environ.get("TAO_SKILL_BANK_2026_TEST_PATH") or _REPO.parent / "shared" / "tao-skill-bank-2026-08"),
]
# The published skill-bank snapshots live beside the repository, not in it: a clone alone does not collect
# their checks (tests/run.sh says so); where they are, or TAOBOT_SKILL_BANK_SNAPSHOTS=required, they run.
_WANTED = os.environ.get("TAOBOT_SKILL_BANK_SNAPSHOTS") == "required" or all(p.is_dir() for p in _SNAPSHOTS)
collect_ignore = [] if _WANTED else ["test_skill_bank_snapshots.py"]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the items
def pytest_collection_modifyitems(config, items):
    # The SLURM cluster's tests cancel their user's jobs, fill or drain its one node and read the sshd log:
    # under pytest-xdist (`--dist loadgroup`) every `slurm` test runs on one worker, one after another,
    # beside the rest of the suite on the others.
    if config.pluginmanager.has_plugin("xdist"):
        for item in items:
            if item.get_closest_marker("slurm"):
                item.add_marker(pytest.mark.xdist_group("slurm"))
    # A `slurm_lane(N)` module touches only its own user's jobs and logins. tests/run.sh runs the lanes
    # side by side (each as its own cluster user) once nothing else uses the cluster; this process runs one lane.
    lane = slurm_lane()
    if lane is not None:
        kept = [item for item in items if lane_of(item) == lane]
        dropped = [item for item in items if lane_of(item) != lane]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept


def lane_of(item) -> int | None:
    mark = item.get_closest_marker("slurm_lane")
    return int(mark.args[0]) if mark and mark.args else None


@pytest.fixture
def slack():
    with FakeSlackAPI(token=BOT_TOKEN, trigger_ttl=None) as fake:
        yield fake


@pytest.fixture
def bot(tmp_path, slack):
    process = BotProcess(tmp_path, slack).start()
    yield process
    process.kill()


@pytest.fixture
def person(bot):
    return SlackUser(bot)
