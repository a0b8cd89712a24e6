"""Slack pacing benchmark: one monitoring cycle in which 1,000 status updates fall due.

Measured in one run against the fake Slack Web API (tests/fakes/slack_api.py) enforcing Slack's limits
(chat.postMessage about 1/s per channel with short bursts, chat.update Tier 3, ...), over real HTTP:
  setup    - C channels, one launch thread per launch (N launches, launch i in channel i % C), parents
             posted before the limits are switched on.
  taobot   - a real SlackMessenger (make_client: slack_sdk with its 429 Retry-After handler) with the
             pacer, posting the N due updates one after another as a monitoring cycle does, each with
             its launch/slot metadata. Meanwhile another thread sends an ephemeral answer every 1/K s (at least 0.2 s),
             as someone clicking in a launch thread would, and its latency is recorded.
  baseline - the same messenger with pacing switched off, against the same fake, same workload.
  --cards  - also refresh each launch's intake card (chat.update, Tier 3) after its update, as the
             monitor does. At Slack's limits 1,000 card refreshes need about 20 minutes on their own.
Printed per run: posts lost (must be 0), 429s seen, per-thread order violations, wall time; then the
ratio baseline/taobot. `--scale K` makes every limit K times faster on both sides (default 10, so the
run takes seconds); `--scale 1` is Slack's own limits. Retry-After is whole seconds, as Slack sends it.

    python benchmarks/slack_pacing.py [--updates 1000] [--channels 20] [--scale 10] [--cards]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taobot.config import Settings  # noqa: E402
from taobot.errors import TaobotError  # noqa: E402
from taobot.slack.app import SlackMessenger, make_client  # noqa: E402
from taobot.slack.pacing import DEFAULT_LIMITS, Pacer, scaled  # noqa: E402
from taobot.views import Reply  # noqa: E402
from tests.fakes.slack_api import FakeSlackAPI  # noqa: E402

TOKEN = "xoxb-bench"  # the fake accepts exactly this; not token-shaped, so no scanner mistakes it for one
USER = "U0BENCHPACE"


def run(name: str, paced: bool, args) -> dict:
    channels = [f"C0BENCH{i:04d}" for i in range(args.channels)]
    with FakeSlackAPI(token=TOKEN, channels=channels) as fake:
        client = make_client(Settings(SLACK_BOT_TOKEN=TOKEN, SLACK_API_URL=fake.url))
        pacer = Pacer(scaled(DEFAULT_LIMITS, args.scale) if paced else {})
        messenger = SlackMessenger(client, pacer=pacer)
        launches = []  # (launch id, channel, thread ts, card ts)
        for i in range(args.updates):
            channel = channels[i % len(channels)]
            launches.append((f"L{i:05d}", channel, fake.seed_message(channel, "launch"), None))
        if args.cards:
            launches = [(lid, ch, ts, messenger.post(ch, Reply(f"card {lid}"))) for lid, ch, ts, _ in launches]
        fake.enforce_rate_limits(scale=args.scale)

        stop = threading.Event()
        latencies: list[float] = []

        def clicks() -> None:  # inside Tier 4 (100 a minute, times the scale) on their own
            while not stop.wait(max(0.2, 1.0 / args.scale)):
                started = time.perf_counter()
                messenger.ephemeral(channels[0], USER, "only you can see this")
                latencies.append(time.perf_counter() - started)

        clicker = threading.Thread(target=clicks, daemon=True)
        clicker.start()
        failed = 0
        started = time.perf_counter()
        for n, (lid, channel, thread_ts, card_ts) in enumerate(launches):
            metadata = {"event_type": "taobot_status", "event_payload": {"launch": lid, "slot": 1}}
            try:
                messenger.post(channel, Reply(f"{lid} update {n}"), thread_ts=thread_ts, metadata=metadata)
                if card_ts:
                    messenger.update(channel, card_ts, Reply(f"card {lid}: running"))
            except TaobotError:
                failed += 1
        took = time.perf_counter() - started
        stop.set()
        clicker.join()

        delivered, violations = 0, 0
        for lid, channel, thread_ts, _ in launches:
            delivered += len(fake.messages_in_thread(channel, thread_ts)) - 1
        for channel in channels:
            arrived = [
                int(m["text"].rsplit(" ", 1)[1])
                for m in fake.messages(channel)
                if m.get("thread_ts") and m["text"].startswith("L")
            ]
            violations += sum(1 for a, b in zip(arrived, arrived[1:]) if b < a)
        limited = sum(1 for c in fake.calls if c.status == 429)
    result = {
        "name": name,
        "lost": args.updates - delivered,
        "failed": failed,
        "429s": limited,
        "violations": violations,
        "seconds": took,
        "waited": sum(pacer.waited.values()),
        "eph_n": len(latencies),
        "eph_p50": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "eph_max": max(latencies) * 1000 if latencies else float("nan"),
    }
    print(
        f"{name:9s} posts lost {result['lost']} (raised {failed}), 429s seen {limited}, order violations "
        f"{violations}, time {took:.1f} s (paced waits {result['waited']:.1f} s); ephemeral answers meanwhile "
        f"{result['eph_n']}, p50 {result['eph_p50']:.0f} ms, max {result['eph_max']:.0f} ms",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--scale", type=float, default=10.0, help="limits K times faster on both sides (1: Slack's)")
    parser.add_argument("--cards", action="store_true", help="also refresh each launch's card (chat.update)")
    args, _unknown = parser.parse_known_args()  # benchmarks/run passes its arguments to every benchmark
    print(
        f"{args.updates} due updates over {args.channels} channels, Slack's limits x{args.scale:g}"
        + (", with card refreshes" if args.cards else ""),
        flush=True,
    )
    ours = run("taobot", True, args)
    base = run("baseline", False, args)
    print(
        f"ratio baseline/taobot: time {base['seconds'] / ours['seconds']:.2f}x, 429s {base['429s']} vs "
        f"{ours['429s']}, posts lost {base['lost']} vs {ours['lost']}, ephemeral max "
        f"{base['eph_max'] / ours['eph_max']:.2f}x",
        flush=True,
    )
    burst = DEFAULT_LIMITS["chat.postMessage"].per_channel.burst
    floor = max(0.0, args.updates / args.channels - burst) / args.scale  # the busiest channel at 1 post/s
    what = "the busiest channel's posts"
    if args.cards:
        update = DEFAULT_LIMITS["chat.update"].per_method
        cards = max(0.0, args.updates - update.burst) / (update.rate * args.scale)
        if cards > floor:
            floor, what = cards, "the card refreshes at Tier 3"
    print(f"floor at taobot's limits: {floor:.1f} s for {what}; taobot took {ours['seconds'] / floor:.2f}x")


if __name__ == "__main__":
    main()
