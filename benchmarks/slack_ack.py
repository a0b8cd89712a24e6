"""Slack ack benchmark: how fast HTTP mode answers Slack's requests while the bot is busy.

Measured in one run, each server in its own process, against the fake Slack Web API (tests/fakes/slack_api.py,
also its own process), over real HTTP on 127.0.0.1:
  taobot   - the real bot (`taobot serve --http`, its own database) with --intakes launch threads opened first
             (over --channels channels, one owner per thread), then --requests signed requests at --concurrency:
             thread replies as message events (`interval=`, `gpus=`, `platform=`, dataset roots; each one saved,
             the card redrawn and answered after the ack), `/tao status` (answered in the ack) and new launches
             (`/tao launch`, the card posted after the ack), 3:1:1, in a fixed shuffled order.
  baseline - a minimal Bolt app that only acks (the command with a line of text, events with nothing), served by
             the same HTTP server taobot uses (taobot.slack.serve.serve_wsgi), the same requests.
  dev      - the same minimal app on Bolt's own development server (`app.start()`), the same requests.
Latency is from opening the connection to the last byte of the answer (Connection: close, as a new request each).
Printed per server: p50/p95/p99/max and errors (connection errors, resets, non-200 answers, answers over Slack's
3 s), and for taobot per kind of request and how much of its work was still waiting after the last ack (it goes
on at Slack's rate limits); then the ratios taobot/baseline. `--profile FILE` samples the bot with py-spy.

    python benchmarks/slack_ack.py [--intakes 50] [--requests 500] [--concurrency 50] [--channels 5] [--rounds 1]
                                   [--no-dev] [--keep] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.signing import build_command_body, build_event_envelope, sign  # noqa: E402

SIGNING_SECRET = "bench-signing-secret-ack"
BOT_TOKEN = "xoxb-bench"  # the fake accepts exactly this; not token-shaped, so no scanner mistakes it for one
PATH = "/slack/events"
SLACK_DEADLINE_S = 3.0
MODEL = "cosmos-rl"
# Only the thread holding the GIL is sampled: where the CPU of a GIL-bound process goes. Raw folded stacks.
PY_SPY = ["py-spy", "record", "--gil", "--nonblocking", "--threads", "--format", "raw", "--rate", "1000"]


# --------------------------------------------------------------------------- the processes


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_fake() -> None:
    """Child process: the fake Slack Web API, until stdin closes."""
    from tests.fakes import FakeSlackAPI

    with FakeSlackAPI(token=BOT_TOKEN) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()


def minimal_app(slack_url: str):
    """A Bolt app that acks and does nothing else: what any Bolt app pays per request."""
    from slack_bolt import App
    from slack_sdk import WebClient

    app = App(client=WebClient(token=BOT_TOKEN, base_url=slack_url), signing_secret=SIGNING_SECRET)

    @app.command("/tao")
    def tao(ack) -> None:
        ack(text="ok")

    @app.event("message")
    def message() -> None:
        pass

    return app


def serve_baseline(kind: str, port: int, slack_url: str) -> None:
    """Child process: the minimal app on taobot's HTTP server (`waitress`) or on Bolt's dev server (`dev`)."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    app = minimal_app(slack_url)
    if kind == "dev":
        app.start(port=port, path=PATH)
        return
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    from taobot.slack.serve import serve_wsgi

    serve_wsgi(SlackRequestHandler(app, path=PATH), "127.0.0.1", port)


def wait_healthy(proc: subprocess.Popen, port: int, path: str, log: Path | None = None) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}" + (f":\n{log.read_text()}" if log else ""))
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answers (Bolt's dev server says 404 to a GET)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not come up")


def start_bot(workdir: Path, slack_url: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_url,
        TAOBOT_DB=str(workdir / "taobot.db"),
        TAOBOT_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    log = workdir / "bot.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "taobot.cli", "serve", "--http", "--port", str(port)],
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    wait_healthy(proc, port, "/healthz", log)
    return proc


def start_child(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # Bolt's dev server logs every request there
        text=True,
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the requests


def owner(i: int) -> str:
    return f"U0BENCH{i % 10:03d}"


def command(text: str, user: str, channel: str, response_url: str) -> tuple[bytes, str]:
    body = build_command_body("/tao", text, user_id=user, channel_id=channel, response_url=response_url)
    return body.encode(), "application/x-www-form-urlencoded"


def reply_event(n: int, user: str, channel: str, thread_ts: str, round_no: int) -> tuple[bytes, str]:
    text = (f"interval={n % 50 + 1}", f"gpus={n % 8 + 1}", "platform=slurm", f"train=/lustre/bench/train{n}")[n % 4]
    ts = f"{time.time() + n * 1e-6:.6f}"
    event = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "thread_ts": thread_ts,
        "channel": channel,
        "channel_type": "channel",
        "event_ts": ts,
    }
    return json.dumps(build_event_envelope(event, f"EvBENCH{round_no:03d}{n:06d}")).encode(), ("application/json")


def workload(args, threads: list[tuple], channels: list[str], response_url: str, round_no: int) -> list[tuple]:
    """(kind, body, content type) for every request, in a fixed shuffled order; bodies built once, signed when sent."""
    rng = random.Random(13 + round_no)
    kinds = ["reply"] * (args.requests * 3 // 5) + ["status"] * (args.requests // 5)
    kinds += ["launch"] * (args.requests - len(kinds))
    rng.shuffle(kinds)
    out = []
    for n, kind in enumerate(kinds):
        if kind == "reply":
            channel, thread_ts, user = threads[n % len(threads)]
            out.append((kind, *reply_event(n, user, channel, thread_ts, round_no)))
        else:
            channel = channels[n % len(channels)]
            text = "status" if kind == "status" else f"launch {MODEL} train"
            out.append((kind, *command(text, owner(n), channel, response_url)))
    return out


async def send(port: int, body: bytes, content_type: str, timeout: float) -> tuple[int, float]:
    """(HTTP status or 0 for a connection error, seconds to the whole answer)."""
    head = sign(body, SIGNING_SECRET)
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {head['X-Slack-Request-Timestamp']}\r\n"
        f"X-Slack-Signature: {head['X-Slack-Signature']}\r\nUser-Agent: Slackbot 1.0\r\nConnection: close\r\n\r\n"
    ).encode() + body
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        status = 0
    return status, time.perf_counter() - started


async def load(port: int, requests: list[tuple], concurrency: int) -> list[tuple[str, int, float]]:
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    results: list[tuple[str, int, float]] = []

    async def worker() -> None:
        while not queue.empty():
            kind, body, content_type = queue.get_nowait()
            status, took = await send(port, body, content_type, timeout=10)
            results.append((kind, status, took))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(name: str, results: list[tuple[str, int, float]]) -> dict:
    times = [t for _, status, t in results if status == 200]
    failed = sum(1 for _, status, _ in results if status != 200)
    late = sum(1 for _, status, t in results if status == 200 and t > SLACK_DEADLINE_S)
    row = {"n": len(results), "errors": failed + late, "failed": failed, "late": late}
    if times:
        row |= {
            "p50": percentile(times, 50) * 1000,
            "p95": percentile(times, 95) * 1000,
            "p99": percentile(times, 99) * 1000,
            "max": max(times) * 1000,
            "mean": statistics.fmean(times) * 1000,
        }
    shown = (
        f"p50 {row['p50']:7.1f} ms  p95 {row['p95']:7.1f} ms  p99 {row['p99']:7.1f} ms  max {row['max']:7.1f} ms"
        if times
        else "no answers"
    )
    print(f"{name:<26} n={row['n']:<4} {shown}  errors {row['errors']} ({failed} failed, {late} over 3 s)", flush=True)
    return row


# --------------------------------------------------------------------------- the run


def open_intakes(port: int, db: Path, count: int, channels: list[str], response_url: str) -> list[tuple]:
    """`count` launch threads, opened through `/tao launch`; (channel, thread ts, owner) of each, once recorded."""
    opening = [
        command(f"launch {MODEL} train", owner(i), channels[i % len(channels)], response_url) for i in range(count)
    ]
    answers = asyncio.run(load(port, [("launch", b, c) for b, c in opening], concurrency=5))
    assert all(status == 200 for _, status, _ in answers), answers
    deadline = time.time() + 120 + count
    while time.time() < deadline:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT channel, thread_ts, owner FROM intakes WHERE thread_ts IS NOT NULL AND thread_ts != ''"
            ).fetchall()
        if len(rows) >= count:
            return [tuple(r) for r in rows]
        time.sleep(0.5)
    raise RuntimeError(f"only {len(rows)} of {count} launch threads were opened")


def after_ack_pending(port: int) -> str:
    """The bot's `taobot_after_ack_pending` gauge from /metrics: replies and launches acked, not yet done."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return next((line.split()[-1] for line in text.splitlines() if line.startswith("taobot_after_ack_pending ")), "?")


def measure(
    name: str, port: int, requests: list[tuple], concurrency: int, warmup: list[tuple], profile=None
) -> list[tuple[str, int, float]]:
    asyncio.run(load(port, warmup, concurrency=5))  # first imports, auth.test; never a measured event id twice
    spy = profile() if profile else None
    started = time.perf_counter()
    results = asyncio.run(load(port, requests, concurrency))
    took = time.perf_counter() - started
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        spy.wait()
    print(f"{name}: {len(requests)} requests at concurrency {concurrency} in {took:.1f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--intakes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the measured requests (fresh event ids)")
    parser.add_argument("--no-dev", action="store_true", help="leave out Bolt's development server")
    parser.add_argument("--keep", action="store_true", help="keep the bot's folder (database, log) and print it")
    parser.add_argument("--profile", metavar="FILE", help="sample the bot with py-spy (on PATH) into FILE (raw stacks)")
    args, _unknown = parser.parse_known_args()  # benchmarks/run passes its arguments to every benchmark

    fake = start_child("--serve-fake")
    slack_url = fake.stdout.readline().strip()
    response_url = slack_url.replace("/api/", "/response/bench")  # the acks answer in the HTTP response
    channels = [f"C0BENCHACK{i}" for i in range(args.channels)]
    workdir = Path(tempfile.mkdtemp(prefix="taobot-ack-"))
    servers = []
    try:
        port = free_port()
        bot = start_bot(workdir, slack_url, port)
        servers.append(bot)
        print(f"taobot: opening {args.intakes} launch threads over {args.channels} channels", flush=True)
        threads = open_intakes(port, workdir / "taobot.db", args.intakes, channels, response_url)
        rounds = [workload(args, threads, channels, response_url, r) for r in range(args.rounds)]
        warmup = [
            ("status", *command("status", owner(i), channels[i % len(channels)], response_url)) for i in range(20)
        ]
        profile = None
        if args.profile:

            def profile() -> subprocess.Popen:
                cmd = [*PY_SPY, "-o", args.profile, "--pid", str(bot.pid)]
                spy = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
                time.sleep(1.0)  # attached before the first request
                return spy

        ours = [r for requests in rounds for r in measure("taobot", port, requests, args.concurrency, warmup, profile)]
        pending = after_ack_pending(port)
        stop(bot)

        others = {}
        for kind in ("waitress",) + (() if args.no_dev else ("dev",)):
            port = free_port()
            server = start_child("--serve-baseline", kind, "--port", str(port), "--slack-url", slack_url)
            servers.append(server)
            wait_healthy(server, port, PATH)
            others[kind] = [
                r
                for requests in rounds
                for r in measure(f"baseline ({kind})", port, requests, args.concurrency, warmup)
            ]
            stop(server)
    finally:
        for proc in servers:
            stop(proc)
        fake.stdin.close()
        stop(fake)

    print()
    row = summary("taobot", ours)
    for kind in ("reply", "status", "launch"):
        summary(f"  {kind}", [r for r in ours if r[0] == kind])
    base = summary("baseline (same server)", others["waitress"])
    if "dev" in others:
        summary("baseline (Bolt dev server)", others["dev"])
    if "p99" in row and "p99" in base:
        print(
            f"\ntaobot/baseline: p50 {row['p50'] / base['p50']:.2f}x, p95 {row['p95'] / base['p95']:.2f}x, "
            f"p99 {row['p99'] / base['p99']:.2f}x   (target: taobot p99 < 100 ms, 0 errors)"
        )
    print(f"taobot's work after the ack still queued or running when the last ack came back: {pending}")
    if args.keep:
        print(f"bot folder: {workdir}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-fake"]:
        serve_fake()
    elif sys.argv[1:2] == ["--serve-baseline"]:
        child = argparse.ArgumentParser()
        child.add_argument("--serve-baseline")
        child.add_argument("--port", type=int)
        child.add_argument("--slack-url")
        a = child.parse_args()
        serve_baseline(a.serve_baseline, a.port, a.slack_url)
    else:
        main()
