"""A clone of the repository alone passes the catalog and command-line tests.

The repository's files (what `git ls-files` lists, plus new files not yet
committed and not ignored) are copied into an empty folder with nothing beside
it, so no skill bank snapshot can be found, and pytest runs there in a
subprocess against that copy's own `taobot` package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLONE_TESTS = ["tests/test_catalog.py", "tests/test_skill_bank.py", "tests/test_cli.py"]


def _repository_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    # A file deleted in the work tree is still listed as cached; a clone of the next commit will not have it.
    return sorted({f for f in listed.split("\0") if f and (ROOT / f).is_file()})


def test_the_catalog_and_cli_tests_pass_in_a_copy_of_the_repository_alone(tmp_path: Path) -> None:
    clone = tmp_path / "clone" / "taobot-repo"
    files = _repository_files()
    assert "taobot/catalog/data/versions.yaml" in files and "tests/skill_banks.py" in files
    for name in files:
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    assert not (clone.parent.parent / "shared").exists()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TAOBOT_", "TAO_", "PYTEST_"))}
    env["PYTHONPATH"] = str(clone)  # ahead of the editable install: the copy's own taobot
    where = subprocess.run(
        [sys.executable, "-c", "import taobot; print(taobot.__file__)"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(clone), where

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CLONE_TESTS],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
