"""Monitoring benchmark: 1,000 launches watched on one SLURM cluster.

Measured in one run against the test sshd + SLURM login node (tests/services/setup.sh):
  setup    - N real jobs (`sbatch --wrap 'sleep 3600'`, 1 CPU each) submitted in ONE ssh session; the node
             has a few CPUs, so a few run and the rest stay PENDING. Each launch gets a launch_dir with a
             30-line log file, so the log tails the monitor asks for are real. A fresh temporary Store holds
             N launch rows (interval 1 minute, all launched at the same moment, i.e. their update slots line
             up: the worst case for one cycle) for ONE owner whose SLURM credentials are stored encrypted.
  taobot   - `Monitor.cycle()` with a real SlurmBackend, called on a scheduler-like grid every P seconds
             (P = TAOBOT_POLL_SECONDS, 30 in production). Per cycle: SSH commands issued
             (backend.commands_run), wall time, time in backend.poll, posts. Slack is not measured: the
             messenger only records what it was asked to post.
  naive    - one SSH command per job per cycle (`sacct -X -P -n -j <id>`) over the same reused paramiko
             connection, for a sample of jobs, and one new `ssh` process per job for a smaller sample;
             both extrapolated LINEARLY to N.
  latency  - a job is cancelled with `scancel` at a random moment while the scheduler loop runs; measured
             is the time from scancel returning to the messenger recording that launch's final post.
  burst    - 100 jobs cancelled at once between two update slots, and the cycle that follows.
The test user is shared: tests/test_slack_launch_slurm.py cancels every job of it (`scancel -u $USER`),
so run this when no SLURM test is running; the benchmark says so when its jobs end behind its back.
Prints medians and the ratios naive/taobot; process RSS after setup and after the cycles.
Every submitted job is cancelled and the temporary store deleted at the end, also on error.

    python benchmarks/monitor_slurm.py [--jobs 1000] [--cycles 5] [--poll-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402

from taobot.backends.base import JobRef  # noqa: E402
from taobot.backends.slurm import SlurmBackend  # noqa: E402
from taobot.catalog import load_catalog  # noqa: E402
from taobot.config import PlatformSettings  # noqa: E402
from taobot.monitor import FINAL_SLOT, Monitor  # noqa: E402
from taobot.secrets import SecretBox  # noqa: E402
from taobot.slack.render import render  # noqa: E402
from taobot.ssh import connect_login_node  # noqa: E402
from taobot.store import Store  # noqa: E402
from tests.lab import services, ssh_command  # noqa: E402

LAB = services()
OWNER = "UBENCHMON"
CHANNEL = "CBENCHMON"
INTERVAL_MINUTES = 1
LOG_LINES = 30


def rss() -> tuple[float, float]:
    """(peak RSS, current RSS) of this process in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    current = float("nan")
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return peak, current


def ssh_base() -> list[str]:
    return ssh_command()


def creds() -> dict[str, str]:
    return {
        "SLURM_USER": LAB["TAOBOT_TEST_SSH_USER"],
        "SLURM_HOSTNAME": f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
        "SLURM_PARTITION": LAB["TAOBOT_TEST_SLURM_PARTITION"],
        "SSH_KEY_PATH": LAB["TAOBOT_TEST_SSH_KEY"],
    }


def settings() -> PlatformSettings:
    # the lab's key file, as on the person's own machine
    return PlatformSettings(
        known_hosts_path=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"], ssh_config_path="/nonexistent", on_persons_machine=True
    )


# ---------------------------------------------------------------------------- the cluster side


@dataclass
class Cluster:
    tag: str  # job name and folder name of this run: cleanup finds everything by it
    base: str = ""
    jobs: list[tuple[str, str]] | None = None  # (job id, launch_dir)


def submit_jobs(cluster: Cluster, n: int) -> float:
    """Submit n jobs and write their launch dirs in ONE ssh session. Returns the seconds it took."""
    partition = LAB["TAOBOT_TEST_SLURM_PARTITION"]
    log = "".join(
        f"[bench] epoch {e // 10}/100 step {e % 10 * 50}/500 loss=0.{4321 - e:04d} lr=1.0e-04 gpu_mem=41.2G\\n"
        for e in range(LOG_LINES)
    )
    script = f"""
set -u
max=$(scontrol show config | awk '$1 == "MaxJobCount" {{print $3}}')
now=$(squeue -h -t all -o %i | wc -l)
echo "LIMIT|${{max:-?}}|$now"
if [ -n "$max" ] && [ $((now + {n})) -gt "$max" ]; then echo "ABORT|MaxJobCount $max would be exceeded: $now jobs known, {n} more"; exit 3; fi
base="$HOME/{cluster.tag}"
mkdir -p "$base"
echo "BASE|$base"
for i in $(seq 0 {n - 1}); do
  out=$(sbatch --parsable --wrap 'sleep 3600' -p {shlex.quote(partition)} --cpus-per-task=1 -o /dev/null -J {cluster.tag} 2>&1) \\
    || {{ echo "FAIL|$i|$out"; exit 4; }}
  id=${{out%%;*}}
  d="$base/L$i"
  mkdir -p "$d/logs" "$d/results"
  printf '{log}' > "$d/logs/slurm-$id.out"
  echo "JOB|$id|$d"
done
"""
    start = time.perf_counter()
    proc = subprocess.run(ssh_base() + ["bash -s"], input=script, text=True, capture_output=True, timeout=900)
    elapsed = time.perf_counter() - start
    cluster.jobs = []
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if parts[0] == "LIMIT":
            print(f"slurm MaxJobCount {parts[1]}, jobs the controller knows before setup: {parts[2]}")
        elif parts[0] == "BASE":
            cluster.base = parts[1]
        elif parts[0] == "JOB":
            cluster.jobs.append((parts[1], parts[2]))
        elif parts[0] in ("ABORT", "FAIL"):
            raise SystemExit(f"setup stopped: {line}")
    if proc.returncode != 0 or len(cluster.jobs) != n:
        raise SystemExit(f"setup failed (rc {proc.returncode}, {len(cluster.jobs)}/{n} jobs): {proc.stderr[-2000:]}")
    return elapsed


def cleanup_cluster(cluster: Cluster) -> None:
    ids = " ".join(job_id for job_id, _ in cluster.jobs or [])
    user = LAB["TAOBOT_TEST_SSH_USER"]
    script = (
        f"{'scancel ' + ids if ids else 'true'} 2>/dev/null; scancel -u {shlex.quote(user)} -n {cluster.tag} 2>/dev/null; "
        f"sleep 1; echo LEFT=$(squeue -h -u {shlex.quote(user)} -n {cluster.tag} -t PD,R,CG -o %i | wc -l)\n"
    )
    if cluster.base.endswith("/" + cluster.tag):
        script += f"rm -rf {shlex.quote(cluster.base)}\n"
    proc = subprocess.run(ssh_base() + ["bash -s"], input=script, text=True, capture_output=True, timeout=300)
    left = proc.stdout.strip().splitlines()[-1:] or ["?"]
    print(f"cleanup: scancel {len(cluster.jobs or [])} jobs, {left[0].lower().replace('=', ' still queued: ')}")


# ---------------------------------------------------------------------------- the bot side


class RecordingMessenger:
    """Stands in for Slack: records what it was asked to post (time, launch, slot), answers like Slack would."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.posts: list[tuple[float, str, int]] = []
        self.final_at: dict[str, float] = {}
        self.updates = 0

    def post(self, channel: str, view, thread_ts: str | None = None, metadata: dict | None = None) -> str:
        render(view)  # what the Slack messenger does before it sends: part of a cycle's cost
        now = time.time()
        payload = (metadata or {}).get("event_payload") or {}
        with self._lock:
            self.posts.append((now, payload.get("launch", ""), payload.get("slot", 0)))
            if payload.get("slot") == FINAL_SLOT:
                self.final_at.setdefault(payload["launch"], now)
            return f"{now:.6f}{len(self.posts):06d}"

    def update(self, channel: str, ts: str, view) -> None:
        render(view)
        with self._lock:
            self.updates += 1

    def find_posted(self, channel: str, thread_ts: str, launch_id: str, slot: int) -> str | None:
        with self._lock:
            for at, launch, s in self.posts:
                if launch == launch_id and s == slot:
                    return f"{at:.6f}"
        return None

    def ephemeral(self, *args, **kwargs) -> None:
        pass

    def open_dm(self, user: str) -> str:
        return "D" + user


def make_store(path: Path, cluster: Cluster, catalog) -> tuple[Store, list[str]]:
    store = Store(path, SecretBox(Fernet.generate_key()))
    for name, value in creds().items():
        store.put_secret(OWNER, name, value)
    model = next(iter(catalog.models.values()))
    action = next(iter(model.actions)) if hasattr(model, "actions") else "train"
    action = getattr(action, "name", action)
    now = time.time()
    rows = []
    for i, (job_id, launch_dir) in enumerate(cluster.jobs):
        rows.append(
            {
                "id": f"bench{i:05d}-{int(now) % 100000:05d}",
                "intake_id": f"bench{i:05d}",
                "channel": CHANNEL,
                "thread_ts": f"{int(now) - 3600}.{i:06d}",
                "owner": OWNER,
                "platform": "slurm",
                "model": model.name,
                "action": str(action),
                "job_id": job_id,
                "details": json.dumps({"launch_dir": launch_dir}),
                "log_location": f"{launch_dir}/logs/slurm-{job_id}.out",
                "results_location": f"{launch_dir}/results",
                "state": "Pending",
                "native": "submitted",
                "reason": None,
                "exit_code": None,
                "monitor": 1,
                "detached": 0,
                "interval_minutes": INTERVAL_MINUTES,
                "launched_at": now,
                "state_since": now,
                "ended_at": None,
                "unreachable": None,
                "unreachable_since": None,
                "next_poll_at": None,
                "final_posted": 0,
            }
        )
    with store.transaction() as db:
        db["launches"].insert_all(rows, pk="id")
    return store, [r["id"] for r in rows]


@dataclass
class CycleRecord:
    started: float  # seconds since the loop's start
    wall: float
    poll: float
    commands: int
    posted: int  # posts the messenger received in this cycle (a "could not reach" update counts too)
    launches: int
    unreachable: int = 0
    error: str = ""


class SchedulerLoop(threading.Thread):
    """Like taobot.scheduler (APScheduler interval job, max_instances=1, coalesce): cycles start on a grid of P
    seconds; a cycle that overruns makes the grid points it covered be skipped, not queued."""

    def __init__(
        self,
        monitor: Monitor,
        backend: SlurmBackend,
        messenger: RecordingMessenger,
        period: float,
        max_cycles: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.monitor, self.backend, self.messenger, self.period, self.max_cycles = (
            monitor,
            backend,
            messenger,
            period,
            max_cycles,
        )
        self.records: list[CycleRecord] = []
        self.stopping = threading.Event()
        self.cycle_done = threading.Condition()

    def run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while not self.stopping.is_set():
            wait = t0 + k * self.period - time.monotonic()
            if wait > 0 and self.stopping.wait(wait):
                break
            before, posts_before = self.backend.commands_run, len(self.messenger.posts)
            start = time.perf_counter()
            began = time.monotonic() - t0
            try:
                stats = self.monitor.cycle()
                record = CycleRecord(
                    began,
                    time.perf_counter() - start,
                    stats.durations.get("slurm", 0.0),
                    self.backend.commands_run - before,
                    len(self.messenger.posts) - posts_before,
                    stats.launches,
                    stats.unreachable,
                )
                if stats.unreachable:
                    reasons = {r.unreachable for r in self.monitor.store.active_launches() if r.unreachable}
                    record.error = "unreachable: " + " / ".join(sorted(reasons))[:300]
            except Exception as exc:  # noqa: BLE001 - recorded and printed; the loop goes on like the real one
                record = CycleRecord(
                    began,
                    time.perf_counter() - start,
                    0.0,
                    self.backend.commands_run - before,
                    len(self.messenger.posts) - posts_before,
                    0,
                    0,
                    f"{type(exc).__name__}: {exc}",
                )
            with self.cycle_done:
                self.records.append(record)
                self.cycle_done.notify_all()
            if self.max_cycles is not None and len(self.records) >= self.max_cycles:
                break
            k = max(k + 1, math.ceil((time.monotonic() - t0) / self.period))

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def print_cycles(records: list[CycleRecord], label: str) -> None:
    print(f"\n{label}")
    print("  cycle  start_s   wall_ms   poll_ms  ssh_cmds  posts  launches")
    for i, r in enumerate(records):
        print(
            f"  {i + 1:5d} {r.started:8.1f} {r.wall * 1000:9.1f} {r.poll * 1000:9.1f} {r.commands:9d} {r.posted:6d} {r.launches:9d}"
            + (f"  {r.error}" if r.error else "")
        )


def summarize(records: list[CycleRecord], label: str) -> None:
    if not records:
        print(f"  {label:<34} (none)")
        return
    walls = [r.wall for r in records]
    print(
        f"  {label:<34} n={len(records)}  wall median {statistics.median(walls) * 1000:8.1f} ms  max {max(walls) * 1000:8.1f} ms  "
        f"poll median {statistics.median(r.poll for r in records) * 1000:7.1f} ms  "
        f"ssh cmds/cycle median {statistics.median(r.commands for r in records):g} max {max(r.commands for r in records)}  "
        f"posts/cycle median {statistics.median(r.posted for r in records):g} max {max(r.posted for r in records)}"
    )


# ---------------------------------------------------------------------------- baselines


def naive_reused(backend: SlurmBackend, job_ids: list[str]) -> list[float]:
    """One remote command per job over the backend's reused paramiko connection."""
    client = backend._client(creds())
    times = []
    for job_id in job_ids:
        start = time.perf_counter()
        _stdin, stdout, _stderr = client.exec_command(
            f"sacct -X -P -n -o JobID,State,ExitCode,Reason -j {job_id}", timeout=60
        )
        out = stdout.read()
        stdout.channel.recv_exit_status()
        times.append(time.perf_counter() - start)
        if job_id.encode() not in out:
            print(f"  (naive sacct: job {job_id} not in accounting yet; timed anyway)")
    return times


def naive_processes(job_ids: list[str]) -> list[float]:
    """One new `ssh` process (new TCP connection, key exchange, login) per job."""
    times = []
    for job_id in job_ids:
        start = time.perf_counter()
        out = subprocess.run(
            ssh_base() + [f"sacct -X -P -n -o JobID,State,ExitCode,Reason -j {job_id}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        times.append(time.perf_counter() - start)
        if job_id not in out:
            print(f"  (naive sacct: job {job_id} not in accounting yet; timed anyway)")
    return times


# ---------------------------------------------------------------------------- latency


def user_client():
    """The person on the cluster (scancel): a connection of its own, not taobot's."""
    login = connect_login_node(
        creds()["SLURM_HOSTNAME"],
        creds()["SLURM_USER"],
        creds()["SSH_KEY_PATH"],
        None,
        "/nonexistent",
        LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
    )
    assert login.ok, login.attempts
    return login.client


def latency_trials(
    store: Store,
    monitor: Monitor,
    backend: SlurmBackend,
    messenger: RecordingMessenger,
    user,
    period: float,
    repeats: int,
    rng: random.Random,
) -> tuple[list[tuple[str, float, float]], list[CycleRecord]]:
    """Cancel a job at a random moment; time until its final post. Returns (state before, latency s, wait s)."""
    loop = SchedulerLoop(monitor, backend, messenger, period)
    results = []
    try:
        loop.start()
        with loop.cycle_done:  # let the first cycle (catch-up after the pause) happen first
            loop.cycle_done.wait_for(lambda: loop.records, timeout=600)
        attempts = 0
        while len(results) < repeats and attempts < repeats + 3:
            attempts += 1
            want = "Running" if len(results) % 2 == 0 else "Pending"
            active = [r for r in store.active_launches() if not r.final_posted and r.id not in messenger.final_at]
            rows = [r for r in active if r.state.value == want] or [
                r for r in active if r.state.value in ("Running", "Pending")
            ]
            if not rows:
                print("  no Running or Pending launch left for a latency trial: the jobs ended outside the benchmark")
                break
            row = rng.choice(rows)
            time.sleep(rng.uniform(0, period))
            # Ask whether the job is still queued or running and cancel it, in one command.
            _i, stdout, _e = user.exec_command(
                f"squeue -h -t PD,R -o %T -j {row.job_id} 2>/dev/null; scancel {row.job_id}", timeout=60
            )
            alive = stdout.read().decode().strip()
            stdout.channel.recv_exit_status()
            changed = time.time()
            if not alive:
                print(
                    f"  job {row.job_id} had already ended before its latency trial (cancelled outside the benchmark?); "
                    "trying another"
                )
                continue
            deadline = changed + 2 * period + 300
            while row.id not in messenger.final_at and time.time() < deadline:
                time.sleep(0.02)
            if row.id not in messenger.final_at:
                results.append((alive.title(), float("nan"), time.time() - changed))
                continue
            results.append((alive.title(), messenger.final_at[row.id] - changed, 0.0))
    finally:
        loop.stop()
    print_cycles(
        loop.records,
        f"cycles during the latency trials (P = {period:g} s; each trial adds one `tail` "
        "command for the cancelled job's final reply)",
    )
    return results, loop.records


def burst_cycle(
    store: Store,
    monitor: Monitor,
    backend: SlurmBackend,
    messenger: RecordingMessenger,
    user,
    k: int,
    rng: random.Random,
) -> CycleRecord | None:
    """k jobs end at once between two update slots (a node failure, a user cancelling a sweep): the next cycle."""
    rows = [r for r in store.active_launches() if r.state.value in ("Running", "Pending") and not r.final_posted]
    if len(rows) < k:
        print(f"  only {len(rows)} live launches left; burst of {k} skipped")
        return None
    interval = INTERVAL_MINUTES * 60
    launched = rows[0]["launched_at"]  # all launches share it
    to_boundary = interval - (time.time() - launched) % interval
    if to_boundary < 20:  # both cycles must fall in the same slot, so the second has no update due
        time.sleep(to_boundary + 1)
    monitor.cycle()  # posts whatever slot is due now
    chosen = rng.sample(rows, k)
    _i, stdout, _e = user.exec_command("scancel " + " ".join(r.job_id for r in chosen), timeout=120)
    stdout.channel.recv_exit_status()
    time.sleep(2)  # let accounting (sacct) see the cancellations
    before, posts_before = backend.commands_run, len(messenger.posts)
    start = time.perf_counter()
    stats = monitor.cycle()
    return CycleRecord(
        0.0,
        time.perf_counter() - start,
        stats.durations.get("slurm", 0.0),
        backend.commands_run - before,
        len(messenger.posts) - posts_before,
        stats.launches,
        stats.unreachable,
    )


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5, help="measured cycles, on the scheduler grid")
    parser.add_argument("--poll-seconds", type=float, default=30.0, help="TAOBOT_POLL_SECONDS (production default 30)")
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument(
        "--latency-poll-seconds", type=float, default=None, help="P for the latency trials (default: --poll-seconds)"
    )
    parser.add_argument("--naive-sample", type=int, default=100)
    parser.add_argument("--ssh-sample", type=int, default=20)
    parser.add_argument("--burst", type=int, default=100, help="jobs cancelled at once for the burst cycle (0: skip)")
    parser.add_argument("--seed", type=int, default=1)
    args, unknown = parser.parse_known_args()  # benchmarks/run passes the same flags to every benchmark
    if unknown:
        print(f"(ignoring {' '.join(unknown)})")
    rng = random.Random(args.seed)
    n, period = args.jobs, args.poll_seconds
    latency_period = args.latency_poll_seconds or period
    began = time.perf_counter()
    print(
        f"{n} launches on one SLURM cluster, status interval {INTERVAL_MINUTES} min, poll every {period:g} s, "
        f"{os.cpu_count()} CPUs here, node has {LAB.get('TAOBOT_TEST_SLURM_CPUS_PER_NODE', '?')} CPUs"
    )
    rss0 = rss()

    cluster = Cluster(tag=f"taobot-bench-monitor-{uuid.uuid4().hex[:8]}")
    tmp = Path(tempfile.mkdtemp(prefix="taobot-bench-monitor-"))
    store = None
    backend = SlurmBackend(settings(), container="none")
    try:
        # ------------------------------------------------------------ setup
        setup_s = submit_jobs(cluster, n)
        print(
            f"setup: {n} jobs submitted in one ssh session in {setup_s:.1f} s ({setup_s / n * 1000:.1f} ms per sbatch)"
        )
        catalog = load_catalog()
        store, launch_ids = make_store(tmp / "taobot.db", cluster, catalog)
        messenger = RecordingMessenger()
        monitor = Monitor(store, catalog, {"slurm": backend}, messenger)
        rss_setup = rss()

        # ------------------------------------------------------------ cycles on the scheduler grid
        loop = SchedulerLoop(monitor, backend, messenger, period, max_cycles=args.cycles)
        loop.start()
        loop.join()
        rss_cycles = rss()
        records = loop.records
        print_cycles(
            records,
            f"taobot: {args.cycles} cycles every {period:g} s (launches were all made at the same moment, "
            f"so every {INTERVAL_MINUTES * 60} s all {n} updates fall due in the same cycle)",
        )
        states: dict[str, int] = {}
        for row in store.active_launches():
            states[row.state.value] = states.get(row.state.value, 0) + 1
        print(
            "  states after the cycles: " + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none active")
        )
        finals = sum(1 for _at, _launch, slot in messenger.posts if slot == FINAL_SLOT)
        if finals:
            print(
                f"  WARNING: {finals} jobs ended during the cycles although this benchmark cancelled none: someone else "
                "cancelled them (tests/test_slack_launch_slurm.py runs `scancel -u $USER` for the shared test user); "
                "the cycles after that are not representative, run again when no SLURM test is running"
            )
        quiet = [r for r in records if r.posted == 0 and not r.error]
        due = [r for r in records if r.posted > 0 and not r.error]
        summarize(records, "all cycles")
        summarize(quiet, "cycles with nothing due")
        summarize(due, "cycles with updates due")
        summarize([r for r in records if r.error], "cycles that failed to reach SLURM")

        # ------------------------------------------------------------ baselines (scheduler stopped)
        job_ids = [job_id for job_id, _ in cluster.jobs]
        refs = [JobRef(lid, job_id, {"launch_dir": d}, creds()) for lid, (job_id, d) in zip(launch_ids, cluster.jobs)]
        poll_times = []
        for _ in range(3):
            start = time.perf_counter()
            statuses = backend.poll(refs)
            poll_times.append(time.perf_counter() - start)
        assert len(statuses) == n
        start = time.perf_counter()
        backend.poll(refs, tails_for=job_ids)
        poll_tails = time.perf_counter() - start
        sample = rng.sample(job_ids, min(args.naive_sample, n))
        naive_reused(backend, sample[:3])  # warm-up
        reused = naive_reused(backend, sample)
        procs = naive_processes(rng.sample(job_ids, min(args.ssh_sample, n))) if args.ssh_sample > 0 else []
        taobot_poll = statistics.median(poll_times)
        naive_cycle = statistics.mean(reused) * n
        proc_cycle = statistics.mean(procs) * n if procs else float("nan")
        quiet_wall = statistics.median(r.wall for r in quiet) if quiet else statistics.median(r.wall for r in records)
        taobot_cmds = statistics.median(r.commands for r in records)

        print(f"\nstatus of all {n} jobs, one cycle's worth (scheduler stopped):")
        print(
            f"  taobot backend.poll (1 ssh command, no tails)    median {taobot_poll * 1000:8.1f} ms  "
            f"(min {min(poll_times) * 1000:.1f}, max {max(poll_times) * 1000:.1f}, n=3)"
        )
        print(f"  taobot backend.poll (1 ssh command, {n} tails)  {poll_tails * 1000:13.1f} ms  (n=1)")
        print(
            f"  naive: sacct per job, reused connection          median {statistics.median(reused) * 1000:8.1f} ms per job "
            f"(n={len(reused)}) -> EXTRAPOLATED x{n}: {naive_cycle:7.1f} s per cycle, {n} ssh commands"
        )
        if procs:
            print(
                f"  naive: new ssh process per job                   median {statistics.median(procs) * 1000:8.1f} ms per job "
                f"(n={len(procs)}) -> EXTRAPOLATED x{n}: {proc_cycle:7.1f} s per cycle, {n} ssh logins"
            )
        print(
            f"\n  ssh commands per cycle, naive / taobot           = {n / max(taobot_cmds, 1):7.0f}x   (taobot median {taobot_cmds:g}; target 1)"
        )
        print(
            f"  status time, naive reused / taobot poll          = {naive_cycle / taobot_poll:7.1f}x   (naive extrapolated)"
        )
        print(
            f"  naive reused / taobot whole quiet cycle          = {naive_cycle / quiet_wall:7.1f}x   (cycle includes the database work)"
        )
        if procs:
            print(
                f"  status time, naive ssh-per-job / taobot poll     = {proc_cycle / taobot_poll:7.1f}x   (naive extrapolated)"
            )
        if naive_cycle > period:
            print(f"  (the naive reused-connection cycle, {naive_cycle:.0f} s, does not fit in P = {period:g} s)")

        # ------------------------------------------------------------ latency
        user = user_client()
        try:
            trials, latency_records = latency_trials(
                store, monitor, backend, messenger, user, latency_period, args.latency_repeats, rng
            )
            burst = burst_cycle(store, monitor, backend, messenger, user, args.burst, rng) if args.burst else None
        finally:
            user.close()
        cycle_max = max(r.wall for r in records + latency_records)
        print(
            f"\nlatency, status change on the cluster -> thread update (interval {INTERVAL_MINUTES} min, P = {latency_period:g} s):"
        )
        for i, (state, latency, waited) in enumerate(trials):
            if math.isnan(latency):
                print(f"  trial {i + 1}: scancel of a {state} job: NO final post within {waited:.0f} s")
            else:
                print(f"  trial {i + 1}: scancel of a {state} job -> final post after {latency:6.1f} s")
        good = [t[1] for t in trials if not math.isnan(t[1])]
        if good:
            print(
                f"  terminal change: median {statistics.median(good):.1f} s, max {max(good):.1f} s  "
                f"(analytically: posted by the next cycle, <= P + cycle time = {latency_period:g} + {cycle_max:.1f} s; "
                f"mean ~ P/2 + cycle time; scales linearly with P)"
            )
        print(
            f"  non-terminal change (Pending->Running, …): shown in the next slot's update, worst case "
            f"<= {INTERVAL_MINUTES * 60} s + cycle time = {INTERVAL_MINUTES * 60 + cycle_max:.1f} s when P divides the interval "
            f"(cycles hit every slot at the same phase), <= interval + P + cycle time = "
            f"{INTERVAL_MINUTES * 60 + latency_period + cycle_max:.1f} s otherwise"
        )

        if burst is not None:
            print(f"\nburst: {args.burst} jobs cancelled at once between two update slots; the next cycle:")
            print(
                f"  wall {burst.wall * 1000:.1f} ms, poll {burst.poll * 1000:.1f} ms, ssh commands {burst.commands}, "
                f"posts {burst.posted} (each final reply without a tail from the poll fetches its log with its own command)"
            )

        rss_end = rss()
        print("\nprocess RSS (MB)          peak (ru_maxrss)   current (VmRSS)   target < 200")
        for label, (peak, cur) in (
            ("after imports", rss0),
            ("after setup", rss_setup),
            ("after the cycles", rss_cycles),
            ("at the end", rss_end),
        ):
            print(f"  {label:<22} {peak:14.1f} {cur:17.1f}")
        print(
            f"\nposts recorded {len(messenger.posts)}; database {os.path.getsize(tmp / 'taobot.db') / 1e6:.1f} MB "
            f"(+ WAL {os.path.getsize(tmp / 'taobot.db-wal') / 1e6 if (tmp / 'taobot.db-wal').exists() else 0:.1f} MB); "
            f"benchmark ran {time.perf_counter() - began:.0f} s"
        )
    finally:
        try:
            cleanup_cluster(cluster)
        finally:
            backend.close()
            if store is not None:
                store.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
