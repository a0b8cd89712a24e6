from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes import FakeSlackAPI
from tests.harness import BOT_TOKEN, BotProcess, SlackUser

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
    # The SLURM cluster has one test user, and its tests cancel that user's jobs and read the sshd log:
    # under pytest-xdist (`--dist loadgroup`) every `slurm` test runs on one worker, one after another,
    # beside the rest of the suite on the others.
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))


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
