"""Preflight benchmark: SLURM, 10 dataset paths of which 5 are annotation files checked for a field.

Measured in one run against the test sshd + SLURM login node (tests/services/setup.sh):
  taobot   - the preflight as `taobot preflight` runs it: one paramiko session, one remote script
             (in-process time, and the whole `taobot preflight` command including interpreter start)
  naive    - the published helper's way: one `ssh` process per check (login, each path, each annotation file)
  floor    - one `ssh` process doing every check in one session
  python   - `python -c pass`: the interpreter's own start, which the command pays before its first import
Prints median wall times, the ratios taobot/floor and naive/taobot, and where the command's cold start goes:
one more run under `python -X importtime`, its total import time and the biggest top-level imports.

    python benchmarks/preflight_slurm.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taobot.catalog import load_catalog  # noqa: E402
from taobot.config import PlatformSettings  # noqa: E402
from taobot.preflight import DatasetPath, PreflightRequest, run_preflight  # noqa: E402
from tests.lab import services, ssh_command  # noqa: E402

LAB = services()
FIELD = "video_fps"
CHECK_PY = (
    "import json,sys\n"
    "d=json.load(open(sys.argv[1]))\n"
    "r=d if isinstance(d,list) else next((d[k] for k in ('annotations','data','samples','items') if isinstance(d.get(k),list)),[])\n"
    "sys.exit(0 if r and all(sys.argv[2] in x for x in r[:20]) else 1)\n"
)


def ssh_base() -> list[str]:
    return ssh_command()


def make_dataset() -> list[tuple[str, str, bool]]:
    """10 paths on the login node: 5 annotation files (with the field) and 5 media folders."""
    base = LAB["TAOBOT_TEST_LUSTRE_ROOT"] + "/bench"
    records = json.dumps([{"video": f"v{i}.mp4", FIELD: 30} for i in range(200)])
    script = f"mkdir -p {shlex.quote(base)}\n"
    paths = []
    for i in range(5):
        ann = f"{base}/split{i}/annotations.json"
        media = f"{base}/split{i}/media"
        script += f"mkdir -p {shlex.quote(media)} && printf '%s' {shlex.quote(records)} > {shlex.quote(ann)}\n"
        paths += [(f"ann{i}", ann, True), (f"media{i}", media, False)]
    subprocess.run(ssh_base() + ["sh -s"], input=script, text=True, check=True, capture_output=True)
    return paths


def run_taobot_inprocess(paths) -> float:
    creds = {
        "SLURM_USER": LAB["TAOBOT_TEST_SSH_USER"],
        "SLURM_HOSTNAME": f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
        "SLURM_PARTITION": LAB["TAOBOT_TEST_SLURM_PARTITION"],
        "SSH_KEY_PATH": LAB["TAOBOT_TEST_SSH_KEY"],
        # the test node's CPU count: the catalog's default request (16 per task) could never start there
        "SLURM_CPUS_PER_TASK": LAB["TAOBOT_TEST_SLURM_CPUS_PER_NODE"],
    }
    request = PreflightRequest(
        "slurm",
        creds,
        tuple(DatasetPath(label, p, (FIELD,) if a else ()) for label, p, a in paths),
        resources=load_catalog().platforms["slurm"].resources,
        settings=PlatformSettings(
            known_hosts_path=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"], ssh_config_path="/nonexistent", on_persons_machine=True
        ),
    )
    start = time.perf_counter()
    report = run_preflight(request, tuple(creds))
    elapsed = time.perf_counter() - start
    assert report.passed, [r for r in report.results if not r.ok]
    return elapsed


def command_line(paths) -> tuple[list[str], dict[str, str]]:
    """`taobot preflight` for the dataset, and its environment (the credentials as the published helper takes them)."""
    env = dict(
        os.environ,
        SLURM_USER=LAB["TAOBOT_TEST_SSH_USER"],
        SLURM_HOSTNAME=f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
        SLURM_PARTITION=LAB["TAOBOT_TEST_SLURM_PARTITION"],
        SSH_KEY_PATH=LAB["TAOBOT_TEST_SSH_KEY"],
        SLURM_CPUS_PER_TASK=LAB["TAOBOT_TEST_SLURM_CPUS_PER_NODE"],
        TAOBOT_SSH_KNOWN_HOSTS=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
        TAOBOT_SSH_CONFIG="/nonexistent",
    )
    cmd = [sys.executable, "-m", "taobot.cli", "preflight", "--platform", "slurm"]
    for label, path, ann in paths:
        cmd += ["--path", f"{label}={path}"] + (["--json-required-field", f"{label}={FIELD}"] if ann else [])
    return cmd, env


def run_taobot_command(paths) -> float:
    cmd, env = command_line(paths)
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stdout + out.stderr
    return elapsed


def run_python_start(_paths) -> float:
    """The interpreter alone, with the same site-packages: what any Python command pays before its first import."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True)
    return time.perf_counter() - start


def import_summary(paths, top: int = 12) -> None:
    """One more `taobot preflight` under `-X importtime`: the total and the biggest top-level imports (cumulative)."""
    cmd, env = command_line(paths)
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True, cwd=ROOT)
    rows = []  # (self us, cumulative us, depth, module)
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and not line.endswith("| imported package"):
            own, cumulative, name = line.removeprefix("import time:").split("|")
            rows.append((int(own), int(cumulative), (len(name) - len(name.lstrip()) - 1) // 2, name.strip()))
    total = sum(r[0] for r in rows) / 1000
    print(f"\n`taobot preflight` imports (-X importtime, one run): {len(rows)} modules, {total:.1f} ms in all")
    for own, cumulative, _depth, name in sorted((r for r in rows if r[2] == 0), key=lambda r: -r[1])[:top]:
        print(f"  {name:<34} {cumulative / 1000:7.1f} ms")


def run_naive(paths) -> float:
    start = time.perf_counter()
    subprocess.run(ssh_base() + ["hostname"], check=True, capture_output=True)
    for _label, path, ann in paths:
        subprocess.run(ssh_base() + [f"test -e {shlex.quote(path)}"], check=True, capture_output=True)
        if ann:
            subprocess.run(
                ssh_base() + [f"python3 -c {shlex.quote(CHECK_PY)} {shlex.quote(path)} {FIELD}"],
                check=True,
                capture_output=True,
            )
    return time.perf_counter() - start


def run_floor(paths) -> float:
    script = "hostname >/dev/null\n"
    for _label, path, ann in paths:
        script += f"test -e {shlex.quote(path)} || exit 1\n"
        if ann:
            script += f"python3 -c {shlex.quote(CHECK_PY)} {shlex.quote(path)} {FIELD} || exit 1\n"
    start = time.perf_counter()
    subprocess.run(ssh_base() + ["sh -s"], input=script, text=True, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args, _unknown = parser.parse_known_args()  # benchmarks/run passes its arguments to every benchmark
    paths = make_dataset()
    runs = {
        "taobot (in-process)": run_taobot_inprocess,
        "taobot preflight (command)": run_taobot_command,
        "naive (ssh per check)": run_naive,
        "floor (one ssh session)": run_floor,
        "python -c pass": run_python_start,
    }
    medians = {}
    for name, fn in runs.items():
        fn(paths)  # warm-up
        times = [fn(paths) for _ in range(args.repeat)]
        medians[name] = statistics.median(times)
        print(
            f"{name:<28} median {medians[name] * 1000:8.1f} ms   (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={args.repeat})"
        )
    t, cmd, naive, floor, start = medians.values()
    print(f"\ntaobot (in-process) / floor      = {t / floor:5.2f}x   (target <= 2x)")
    print(f"naive / taobot (in-process)      = {naive / t:5.2f}x   (target >= 8x)")
    print(
        f"taobot preflight command / floor = {cmd / floor:5.2f}x   (target <= 1.5x; includes Python start and imports)"
    )
    print(f"naive / taobot preflight command = {naive / cmd:5.2f}x   (target >= 8x)")
    print(f"command - in-process             = {(cmd - t) * 1000:6.1f} ms  (interpreter start {start * 1000:.1f} ms)")
    import_summary(paths)


if __name__ == "__main__":
    main()
