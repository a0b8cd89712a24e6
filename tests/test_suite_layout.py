"""The suite runs test files in parallel (pytest-xdist, `--dist loadgroup`; see tests/run.sh) beside SLURM tests
that cancel their user's jobs, fill or drain the cluster's one node, stop its sshd and read its log: a module
that reaches the cluster or its sshd without the `slurm` mark would run beside them. This finds such a module,
and a test in a SLURM lane (`slurm_lane(N)`, run beside the other lanes as its own user) that does what only
a test with the cluster to itself may do."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
LAB_SETTINGS = TESTS / "services" / "lib" / "common.sh"
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


# What only a test with the cluster to itself may do: change the node or a partition (scontrol), fill the node
# (all its CPUs), stop the sshd or its sessions, read the sshd log (another lane's logins are in it).
WHOLE_CLUSTER = re.compile(r"scontrol|CPUS_PER_NODE|\bCPUS\b|_sshd_stop|pkill|SshdLog|sshd_log")


def lane_marked(decorators: list[ast.expr]) -> bool:
    return any("slurm_lane" in ast.unparse(d) for d in decorators)


def test_no_test_in_a_slurm_lane_needs_the_cluster_to_itself():
    """A lane module's whole source, or a lane test's own function, holds nothing of WHOLE_CLUSTER."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        source = path.read_text()
        tree = ast.parse(source)
        module_lane = any(
            isinstance(n, ast.Assign)
            and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)
            and "slurm_lane" in ast.unparse(n.value)
            for n in tree.body
        )
        if module_lane and (hit := WHOLE_CLUSTER.search(source)):
            found.append(f"{path.name}: {hit.group()}")
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and lane_marked(node.decorator_list):
                if hit := WHOLE_CLUSTER.search(ast.get_source_segment(source, node) or ""):
                    found.append(f"{path.name}::{node.name}: {hit.group()}")
    assert not found, f"in a SLURM lane, yet needing the cluster to itself: {found}"


def test_the_suite_runs_slurm_tests_as_one_group_then_in_lanes_each_with_its_own_user():
    run = (TESTS / "run.sh").read_text()
    assert "--dist loadgroup" in run and " -n " in run and '-m "not slurm_lane"' in run
    assert "TAOBOT_TEST_SLURM_LANE=1" in run and "TAOBOT_TEST_SLURM_LANE=$lane" in run
    lanes = int(re.search(r"^LANES=(\d+)", run, re.M).group(1))
    users = re.search(r"^SSH_LANE_USERS=\$\{TAOBOT_TEST_SSH_LANE_USERS:-([^}]*)\}", LAB_SETTINGS.read_text(), re.M)
    assert lanes == 1 + len(users.group(1).split()), "a lane without its own cluster user"
    sources = [p.read_text() for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name]
    marked = {int(n) for source in sources for n in re.findall(r"slurm_lane\((\d+)\)", source)}
    assert marked == set(range(1, lanes + 1)), f"lanes with tests {sorted(marked)}, lanes run {lanes}"
    conftest = (TESTS / "conftest.py").read_text()
    assert 'xdist_group("slurm")' in conftest


def test_a_lane_runs_only_its_own_tests_as_its_own_cluster_user(tmp_path):
    """The real mechanics: this suite's collection hook and lab reader, the installed pytest, each part of
    tests/run.sh (the first part, then each lane) selecting its tests, lanes 2 and 3 seeing their own users."""
    services = tmp_path / "services"
    services.mkdir()
    (services / "services.env").write_text(
        "export TAOBOT_TEST_SSH_USER=first\nexport TAOBOT_TEST_SSH_KEY=/keys/one\nexport TAOBOT_TEST_SSH_PUBKEY=/keys/one.pub\n"
        "export TAOBOT_TEST_SSH_USER2=second\nexport TAOBOT_TEST_SSH_KEY2=/keys/two\n"
        "export TAOBOT_TEST_SSH_PUBKEY2=/keys/two.pub\nexport TAOBOT_TEST_SSH_PORT=2222\n"
        "export TAOBOT_TEST_SSH_USER3=third\nexport TAOBOT_TEST_SSH_KEY3=/keys/three\n"
        "export TAOBOT_TEST_SSH_PUBKEY3=/keys/three.pub\n"
    )
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slurm: the cluster\n    slurm_lane(n): a lane\n")
    body = (
        "import pytest\nfrom tests.lab import services\n\n{mark}\n\n\n{fmark}def test_{name}():\n"
        "    env = services()\n    with open('ran.txt', 'a') as fh:\n"
        "        fh.write(f\"{name} {{env['TAOBOT_TEST_SSH_USER']}} {{env['TAOBOT_TEST_SSH_KEY']}} "
        "{{env['TAOBOT_TEST_SSH_PORT']}}\\n\")\n"
    )
    files = {
        "whole": ("pytestmark = pytest.mark.slurm", ""),
        "one": ("pytestmark = [pytest.mark.slurm, pytest.mark.slurm_lane(1)]", ""),
        "two_in_whole": ("pytestmark = pytest.mark.slurm", "@pytest.mark.slurm_lane(2)\n"),
        "three": ("pytestmark = [pytest.mark.slurm, pytest.mark.slurm_lane(3)]", ""),
        "free": ("", ""),
    }
    for name, (mark, fmark) in files.items():
        (tmp_path / f"test_{name}.py").write_text(body.format(mark=mark, fmark=fmark, name=name))

    def part(*args: str, lane: str | None = None) -> list[str]:
        ran = tmp_path / "ran.txt"
        ran.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "TAOBOT_SERVICES_DIR": str(services)}
        env.pop("TAOBOT_TEST_SLURM_LANE", None)
        if lane:
            env["TAOBOT_TEST_SLURM_LANE"] = lane
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args]
        run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        return sorted(ran.read_text().splitlines())

    assert part("-n", "2", "--dist", "loadgroup", "-m", "not slurm_lane") == [
        "free first /keys/one 2222",
        "whole first /keys/one 2222",
    ]
    assert part("-p", "no:xdist", lane="1") == ["one first /keys/one 2222"]
    assert part("-p", "no:xdist", lane="2") == ["two_in_whole second /keys/two 2222"]
    assert part("-p", "no:xdist", lane="3") == ["three third /keys/three 2222"]


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
