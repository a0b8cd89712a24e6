"""The suite runs test files in parallel (pytest-xdist, `--dist loadgroup`; see tests/run.sh), and the SLURM
cluster has one shared test user: a module that reaches the cluster or its sshd without the `slurm` mark would
run beside the SLURM tests, which cancel that user's jobs and read the sshd log. This finds such a module."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# What reaching the cluster looks like in a test module: the SLURM flow helpers, the lab's sshd or SLURM facts,
# the sshd log, the login node's data folders.
REACHES_SLURM = re.compile(
    r"slurm_flow|TAOBOT_TEST_SSH|TAOBOT_TEST_SLURM|SshdLog|sshd_log|ssh_command|TAOBOT_TEST_LUSTRE|TAOBOT_TEST_TRAIN"
)


def marked_slurm(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            if "pytest.mark.slurm" in ast.unparse(node.value):
                return True
    return False


def test_every_module_that_reaches_the_slurm_cluster_is_marked_slurm():
    unmarked = []
    for path in sorted(TESTS.glob("test_*.py")):
        source = path.read_text()
        if path.name != Path(__file__).name and REACHES_SLURM.search(source) and not marked_slurm(ast.parse(source)):
            unmarked.append(path.name)
    assert not unmarked, f"reach the SLURM cluster without `pytestmark = pytest.mark.slurm`: {unmarked}"


def test_the_suite_runs_slurm_tests_as_one_group():
    run = (TESTS / "run.sh").read_text()
    assert "--dist loadgroup" in run and " -n " in run
    conftest = (TESTS / "conftest.py").read_text()
    assert 'xdist_group("slurm")' in conftest


def test_slurm_marked_tests_in_different_files_run_on_one_worker(tmp_path):
    """The real mechanics: this suite's collection hook, the installed pytest and pytest-xdist, three workers."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slurm: the shared cluster\n")
    for name in ("a", "b", "c"):
        (tmp_path / f"test_{name}.py").write_text(
            "import os, time\nimport pytest\n\npytestmark = pytest.mark.slurm\n\n\n"
            "@pytest.mark.parametrize('i', range(3))\ndef test_one(i):\n    time.sleep(0.2)\n"
            f"    with open('workers.txt', 'a') as fh:\n        fh.write('{name}' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
        )
    (tmp_path / "test_free.py").write_text("def test_free():\n    pass\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "3", "--dist", "loadgroup", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = (tmp_path / "workers.txt").read_text().split()
    assert len(lines) == 9
    assert len({line[1:] for line in lines}) == 1, f"slurm tests spread over workers: {sorted(lines)}"
