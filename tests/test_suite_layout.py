"""The suite runs test files in parallel (pytest-xdist, `--dist loadgroup`; see tests/run.sh), and the SLURM
cluster has one shared test user: a module that reaches the cluster or its sshd without the `slurm` mark would
run beside the SLURM tests, which cancel that user's jobs and read the sshd log. This finds such a module."""

from __future__ import annotations

import ast
import re
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
