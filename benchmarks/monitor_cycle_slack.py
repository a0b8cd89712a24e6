"""Monitoring cycle benchmark: 1,000 status updates fall due in one cycle, posted to a rate-limited Slack.

Measured in one run against the test sshd + SLURM login node and the fake Slack Web API
(tests/fakes/slack_api.py) with Slack's rate limits ON (HTTP 429 + Retry-After per tier and per channel):
  setup    - N real jobs (`sbatch --wrap 'sleep 3600'`) with 30-line logs, as benchmarks/monitor_slurm.py
             makes them; N launch rows for one owner whose SLURM credentials are stored encrypted, each
             launch in its own thread, launch i in channel i % C (threads seeded in the fake Slack).
  cycles   - `Monitor.cycle()` with a real SlurmBackend and a real SlackMessenger (slack_sdk client with its
             429 handler, taobot's pacer). The monitor's clock stands in the next status interval at each cycle,
             so every cycle has all N updates due (the Slack limits and SSH run on the real clock).
  modes    - queued: the monitor hands posts to its post queue (drained per channel in the background);
             inline: the cycle posts each update itself and waits out the pacer (the previous code path, kept
             callable), as the baseline. Each mode has a fresh store and a fresh fake Slack.
Printed per cycle and as medians: wall time of the cycle (what delays the next cycle's polls), SSH time
(the remote commands), Slack time inside the cycle (pacer waits + HTTP), bot work = wall - SSH - Slack,
posts and card-free updates made, and the time from the cycle's start until its last post went out.
After all cycles: every thread's posts are read back from the fake Slack; lost, doubled and reordered
updates are counted (all must be 0). Ratios inline/queued. `--profile FILE` writes a cProfile of the
first mode's second cycle (and prints its top functions by own time).
`--scale K` makes Slack's limits K times faster on both sides (default 10: a cycle's posts drain in
seconds; `--scale 1` is Slack's own limits: about a minute per cycle for 20 channels).
Every submitted job is cancelled and the temporary stores deleted at the end, also on error.

    flock /tmp/taobot-slurm.lock .venv/bin/python benchmarks/monitor_cycle_slack.py [--jobs 1000] [--cycles 5]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from monitor_slurm import Cluster, cleanup_cluster, make_store, settings, submit_jobs  # noqa: E402

from taobot.backends.slurm import SlurmBackend  # noqa: E402
from taobot.catalog import load_catalog  # noqa: E402
from taobot.config import Settings  # noqa: E402
from taobot.monitor import Monitor  # noqa: E402
from taobot.slack.app import SlackMessenger, make_client  # noqa: E402
from taobot.slack.pacing import DEFAULT_LIMITS, Pacer, scaled  # noqa: E402
from tests.fakes.slack_api import FakeSlackAPI  # noqa: E402

TOKEN = "xoxb-bench"  # the fake accepts exactly this; not token-shaped
INTERVAL_S = 60


class TimedSlurm(SlurmBackend):
    """The real backend, with the time spent in remote commands (SSH round trips) added up."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ssh_seconds = 0.0

    def _run(self, creds: dict, script: str, timeout: float = 60) -> str:
        start = time.perf_counter()
        try:
            return super()._run(creds, script, timeout)
        finally:
            self.ssh_seconds += time.perf_counter() - start


class TimedMessenger(SlackMessenger):
    """The real messenger, with the time each thread spends in Web API calls (pacer waits + HTTP) added up."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._guard = threading.Lock()
        self._seconds: dict[int, float] = {}  # thread id -> seconds in Web API calls
        self.posted_at: list[float] = []  # when each chat.postMessage returned

    def _call(self, method: str, **kwargs: object) -> dict:
        start = time.perf_counter()
        try:
            return super()._call(method, **kwargs)
        finally:
            end = time.perf_counter()
            with self._guard:
                me = threading.get_ident()
                self._seconds[me] = self._seconds.get(me, 0.0) + end - start
                if method == "chat.postMessage":
                    self.posted_at.append(end)

    def seconds_of(self, thread: int) -> float:
        with self._guard:
            return self._seconds.get(thread, 0.0)


@dataclass
class Cycle:
    wall: float
    ssh: float
    slack: float  # Web API time inside the cycle's own thread
    posted: int
    last_post: float  # seconds from the cycle's start until its last post went out

    @property
    def bot(self) -> float:
        return self.wall - self.ssh - self.slack


def run_mode(name: str, queued: bool, args, cluster: Cluster, catalog, tmp: Path, profile: str | None) -> dict:
    channels = [f"C0BENCHCY{i:03d}" for i in range(args.channels)]
    backend = TimedSlurm(settings(), container="none")
    store = None
    try:
        with FakeSlackAPI(token=TOKEN, channels=channels) as fake:
            store, launch_ids = make_store(tmp / f"{name}.db", cluster, catalog)
            threads = {}
            with store.transaction() as db:
                for i, launch_id in enumerate(launch_ids):
                    channel = channels[i % len(channels)]
                    ts = fake.seed_message(channel, f"launch {launch_id}")
                    threads[launch_id] = (channel, ts)
                    db.execute("UPDATE launches SET channel = ?, thread_ts = ? WHERE id = ?", [channel, ts, launch_id])
            fake.enforce_rate_limits(scale=args.scale)
            client = make_client(Settings(SLACK_BOT_TOKEN=TOKEN, SLACK_API_URL=fake.url))
            messenger = TimedMessenger(client, pacer=Pacer(scaled(DEFAULT_LIMITS, args.scale)))
            # The monitor's clock stands half a second into slot k+1 during cycle k, whatever the real time.
            launched = store.active_launches()[0].launched_at
            virtual = {"now": launched}
            monitor = Monitor(store, catalog, {"slurm": backend}, messenger, clock=lambda: virtual["now"])
            queue = None
            if queued:  # as the running bot does (Runtime.start_monitoring)
                try:
                    from taobot.posting import PostQueue
                except ImportError:
                    print(f"{name}: this taobot has no post queue; skipped")
                    return {}
                queue = monitor.poster.queue = PostQueue()
            # inline: no queue, the previous path: the cycle posts each update and waits out the pacer itself
            me = threading.get_ident()
            cycles: list[Cycle] = []
            for k in range(args.cycles + 1):  # cycle 0 warms up (connection, caches) and is not counted
                virtual["now"] = launched + (k + 1) * INTERVAL_S + 0.5
                posts_before = len(messenger.posted_at)
                ssh0, slack0 = backend.ssh_seconds, messenger.seconds_of(me)
                profiler = cProfile.Profile() if profile and k == 1 else None
                start = time.perf_counter()
                if profiler:
                    profiler.enable()
                stats = monitor.cycle()
                if profiler:
                    profiler.disable()
                wall = time.perf_counter() - start
                if queue is not None:
                    queue.wait_idle(timeout=600)
                last = max(messenger.posted_at[posts_before:], default=start) - start
                cycle = Cycle(wall, backend.ssh_seconds - ssh0, messenger.seconds_of(me) - slack0, stats.posted, last)
                label = "warm-up" if k == 0 else f"cycle {k}"
                print(
                    f"  {name:7s} {label:8s} wall {cycle.wall * 1000:8.1f} ms  ssh {cycle.ssh * 1000:7.1f} ms  "
                    f"slack in cycle {cycle.slack * 1000:8.1f} ms  bot work {cycle.bot * 1000:7.1f} ms  "
                    f"posts {cycle.posted:5d}  last post after {cycle.last_post:6.2f} s",
                    flush=True,
                )
                if profiler:
                    profiler.dump_stats(profile)
                    text = io.StringIO()
                    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
                    print("\n".join(text.getvalue().splitlines()[:45]))
                if k:
                    cycles.append(cycle)
            # Every thread's posts, read back: each slot 1..cycles+1 exactly once, in order.
            lost = doubled = reordered = 0
            want = list(range(1, args.cycles + 2))
            for launch_id in launch_ids:
                channel, ts = threads[launch_id]
                slots = [
                    ((m.get("metadata") or {}).get("event_payload") or {}).get("slot")
                    for m in fake.messages_in_thread(channel, ts)
                    if m.get("bot_id")
                ]
                lost += len(set(want) - set(slots))
                doubled += len(slots) - len(set(slots))
                reordered += sum(1 for a, b in zip(slots, slots[1:]) if b < a)
            limited = sum(1 for c in fake.calls if c.status == 429)
            if queue is not None:
                queue.close(timeout=5)
    finally:
        backend.close()
        if store is not None:
            store.close()
    med = {f: statistics.median(getattr(c, f) for c in cycles) for f in ("wall", "ssh", "slack", "bot", "last_post")}
    med["posted"] = statistics.median(c.posted for c in cycles)
    print(
        f"{name}: median of {len(cycles)} cycles: wall {med['wall'] * 1000:.1f} ms, ssh {med['ssh'] * 1000:.1f} ms, "
        f"slack in cycle {med['slack'] * 1000:.1f} ms, bot work {med['bot'] * 1000:.1f} ms, posts {med['posted']:g}, "
        f"last post after {med['last_post']:.2f} s; updates lost {lost}, doubled {doubled}, reordered {reordered}; "
        f"429s seen {limited}",
        flush=True,
    )
    return {**med, "lost": lost, "doubled": doubled, "reordered": reordered, "429s": limited}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5, help="measured cycles per mode (after one warm-up)")
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--scale", type=float, default=10.0, help="Slack's limits K times faster (1: Slack's own)")
    parser.add_argument("--modes", default="queued,inline", help="comma-separated: queued, inline")
    parser.add_argument("--profile", default=None, help="write a cProfile of the first mode's 2nd cycle here")
    args, unknown = parser.parse_known_args()  # benchmarks/run passes the same flags to every benchmark
    if unknown:
        print(f"(ignoring {' '.join(unknown)})")
    print(
        f"{args.jobs} launches on one SLURM cluster, all due every cycle, {args.channels} channels, "
        f"Slack's limits x{args.scale:g} (fake Slack and pacer)",
        flush=True,
    )
    cluster = Cluster(tag=f"taobot-bench-cycle-{uuid.uuid4().hex[:8]}")
    tmp = Path(tempfile.mkdtemp(prefix="taobot-bench-cycle-"))
    results = {}
    try:
        setup_s = submit_jobs(cluster, args.jobs)
        print(f"setup: {args.jobs} jobs submitted in {setup_s:.1f} s", flush=True)
        catalog = load_catalog()
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            profile = args.profile if not results else None  # the first mode's second cycle
            results[mode] = run_mode(mode, mode == "queued", args, cluster, catalog, tmp, profile)
    finally:
        try:
            cleanup_cluster(cluster)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    q, i = results.get("queued"), results.get("inline")
    if q and i:
        print(
            f"ratio inline/queued: cycle wall (delay of the next cycle's polls) {i['wall'] / q['wall']:.1f}x, "
            f"bot work {i['bot'] / q['bot']:.2f}x, last post {i['last_post'] / max(q['last_post'], 1e-9):.2f}x"
        )
    for name, r in results.items():
        if r:
            print(
                f"{name}: bot work {r['bot'] * 1000:.0f} ms per cycle = {r['bot'] / 2:.2f}x the 2 s goal; "
                f"SSH {r['ssh'] * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
