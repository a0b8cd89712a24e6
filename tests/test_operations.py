"""Operating taobot: health, readiness, metrics, JSON logs, SIGTERM, standby, backup, key rotation, bad settings."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from taobot.slack import blocks as B
from tests.harness import BotProcess, SlackUser
from tests.polling import wait_until

SECRET = "hf_OperationsSecretValue0123456789abcdefXY"


def get(bot: BotProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(bot: BotProcess, timeout: float = 30) -> str:
    def ready() -> str | None:
        status, body = get(bot, "/readyz")
        return body if status == 200 else None

    return wait_until(ready, timeout, "/readyz to answer 200", show=lambda: get(bot, "/readyz")[1], every=0.2)


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TAOBOT_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "taobot.cli", *args], capture_output=True, text=True, env=full, timeout=60
    )


def test_health_readiness_and_metrics_count_what_happens(tmp_path, slack):
    bot = BotProcess(tmp_path, slack, extra_env={"TAOBOT_POLL_SECONDS": "1"}).start()
    try:
        assert get(bot, "/healthz") == (200, "ok\n")
        body = wait_ready(bot)
        assert "database: writable" in body and "scheduler: active" in body
        thread = SlackUser(bot).launch("dino")
        thread.say("platform=docker monitor=no image=nvcr.io/nvidia/tao/tao:1 train=/data/t eval=/data/v num_gpus=1")
        thread.wait_card("status: *complete*")
        status, metrics = get(bot, "/metrics")
        assert status == 200
        assert "taobot_intakes_started_total 1.0" in metrics
        assert "taobot_intakes_completed_total 1.0" in metrics
        assert 'taobot_slack_api_calls_total{method="chat.postMessage"}' in metrics
        assert "taobot_scheduler_lag_seconds" in metrics
    finally:
        bot.kill()


def test_rate_limits_are_counted_in_metrics(tmp_path, slack):
    bot = BotProcess(tmp_path, slack).start()
    try:
        slack.rate_limit("chat.postMessage", times=1, retry_after=1)
        SlackUser(bot).launch("dino")
        _, metrics = get(bot, "/metrics")
        assert 'taobot_slack_api_errors_total{error="ratelimited",method="chat.postMessage"} 1.0' in metrics
    finally:
        bot.kill()


def test_json_logs_are_one_object_per_line_with_ids_and_never_a_secret(tmp_path, slack):
    bot = BotProcess(tmp_path, slack, extra_env={"TAOBOT_LOG_FORMAT": "json", "TAOBOT_LOG_LEVEL": "DEBUG"}).start()
    try:
        thread = SlackUser(bot).launch("cosmos-rl")
        thread.say("platform=docker")
        thread.wait_card("*Platform:* Local Docker")
        view = thread.open_modal(B.OPEN_CREDENTIALS)
        thread.submit(view, {"cred_HF_TOKEN": SECRET})
        thread.wait_card("`HF_TOKEN` set")
        thread.say(f"oops {SECRET}")
        thread.wait_reply("looks like it contains")
    finally:
        bot.kill(signal.SIGTERM)
    lines = [line for line in bot.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(r.get("intake") == thread.intake_id and r.get("channel") for r in records)
    assert SECRET not in bot.log_text()


def test_sigterm_stops_cleanly_and_releases_the_scheduler_lease(tmp_path, slack):
    bot = BotProcess(tmp_path, slack, extra_env={"TAOBOT_POLL_SECONDS": "1"}).start()
    wait_ready(bot)
    started = time.time()
    bot.proc.send_signal(signal.SIGTERM)
    assert bot.proc.wait(timeout=30) == 0
    assert time.time() - started < 25
    with sqlite3.connect(bot.db) as db:
        assert db.execute("SELECT COUNT(*) FROM lease").fetchone()[0] == 0


def test_second_instance_waits_as_standby_and_takes_over_when_the_first_dies(tmp_path, slack):
    env = {"TAOBOT_POLL_SECONDS": "1"}
    first = BotProcess(tmp_path, slack, extra_env=env).start()
    second = BotProcess(tmp_path, slack, extra_env=env)  # same database, same log file
    try:
        wait_ready(first)
        second.start()
        deadline = time.time() + 20
        status, body = get(second, "/readyz")
        while "standby" not in body and time.time() < deadline:
            time.sleep(0.3)
            status, body = get(second, "/readyz")
        assert status == 503 and "standby" in body
        first.kill(signal.SIGKILL)
        killed = time.time()
        wait_ready(second, timeout=30)
        lease_period = 15  # max(15, 3 x poll seconds)
        assert time.time() - killed <= lease_period + 5
    finally:
        first.kill()
        second.kill()


def test_backup_is_a_consistent_copy_and_rotation_reencrypts_with_the_old_key_required(tmp_path, slack):
    bot = BotProcess(tmp_path, slack).start()
    try:
        thread = SlackUser(bot).launch("cosmos-rl")
        thread.say("platform=docker")
        thread.wait_card("*Platform:* Local Docker")
        view = thread.open_modal(B.OPEN_CREDENTIALS)
        thread.submit(view, {"cred_HF_TOKEN": SECRET})
        thread.wait_card("`HF_TOKEN` set")
        env = {"TAOBOT_DB": str(bot.db)}
        out = cli("backup", str(tmp_path / "backup.db"), env=env)  # while the bot runs
        assert out.returncode == 0, out.stderr
        with sqlite3.connect(tmp_path / "backup.db") as db:
            assert db.execute("SELECT COUNT(*) FROM intakes").fetchone()[0] == 1
            blob = db.execute("SELECT ciphertext FROM secrets").fetchone()[0]
        assert SECRET.encode() not in blob
        assert "keep the encryption key" in out.stdout
        refused = cli("rotate-key", env=env)
        assert refused.returncode == 2 and "Stop it first" in refused.stderr
    finally:
        bot.kill(signal.SIGTERM)
    key_file = Path(str(bot.db) + ".key")
    old_key = key_file.read_bytes()
    out = cli("rotate-key", env={"TAOBOT_DB": str(bot.db)})
    assert out.returncode == 0 and "Re-encrypted 1 secret(s)" in out.stdout, out.stdout + out.stderr
    assert key_file.read_bytes() != old_key and key_file.stat().st_mode & 0o777 == 0o600
    from cryptography.fernet import Fernet, InvalidToken

    with sqlite3.connect(bot.db) as db:
        blob = db.execute("SELECT ciphertext FROM secrets").fetchone()[0]
    assert Fernet(key_file.read_bytes().strip()).decrypt(blob).decode() == SECRET
    try:
        Fernet(old_key.strip()).decrypt(blob)
        raise AssertionError("the old key still decrypts")
    except InvalidToken:
        pass
    # a wrong "old" key changes nothing
    wrong = cli("rotate-key", env={"TAOBOT_DB": str(bot.db), "TAOBOT_SECRET_KEY": Fernet.generate_key().decode()})
    assert wrong.returncode == 2 and "cannot be decrypted" in wrong.stderr
    with sqlite3.connect(bot.db) as db:
        assert db.execute("SELECT ciphertext FROM secrets").fetchone()[0] == blob


def test_bad_settings_stop_the_bot_with_one_line_naming_the_setting(tmp_path):
    base = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    cases = {
        "TAOBOT_LOG_FORMAT": {"TAOBOT_LOG_FORMAT": "xml", "TAOBOT_DB": str(tmp_path / "a.db")},
        "TAOBOT_STATUS_INTERVAL_MINUTES": {"TAOBOT_STATUS_INTERVAL_MINUTES": "90", "TAOBOT_DB": str(tmp_path / "b.db")},
        "TAOBOT_SECRET_KEY_FILE": {
            "TAOBOT_SECRET_KEY_FILE": str(tmp_path / "dir-not-file"),
            "TAOBOT_DB": str(tmp_path / "c.db"),
        },
        "TAOBOT_POLL_SECONDS": {"TAOBOT_POLL_SECONDS": "0", "TAOBOT_DB": str(tmp_path / "d.db")},
    }
    (tmp_path / "dir-not-file").mkdir()
    if os.geteuid() != 0:  # root ignores directory permissions, so the read-only case needs a non-root user
        cases["TAOBOT_DB"] = {"TAOBOT_DB": str(readonly / "t.db")}
    for setting, env in cases.items():
        out = cli("serve", "--http", "--port", "1", env={**base, **env})
        assert out.returncode == 2, (setting, out.stdout, out.stderr)
        assert setting in out.stderr and len(out.stderr.strip().splitlines()) == 1, (setting, out.stderr)


def test_database_in_a_read_only_folder_is_named():
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="taobot-ro-", dir="/tmp"))  # pytest's tmp is private to root
    readonly = tmp_path / "ro"
    readonly.mkdir()
    # root bypasses permissions, so run the bot as an unprivileged user here
    cmd = [sys.executable, "-m", "taobot.cli", "serve", "--http", "--port", "1"]
    env = {
        "PATH": os.environ["PATH"],
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "TAOBOT_DB": str(readonly / "t.db"),
        "HOME": str(tmp_path),
    }
    readonly.chmod(0o555)
    tmp_path.chmod(0o755)
    try:
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "TAOBOT_DB" in out.stderr and "not writable" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # a stop that breaks its loop
def test_socket_mode_serves_health_and_metrics_on_their_own_port(tmp_path, slack):
    """In Socket Mode there is no Slack HTTP endpoint; probes get a separate port."""
    from taobot.catalog import load_catalog
    from taobot.config import load_settings
    from taobot.secrets import SecretBox, load_or_create_key
    from taobot.slack.app import build_app, make_client
    from taobot.slack.serve import serve_health_in_background
    from tests.harness import BOT_TOKEN, free_port

    settings = load_settings(
        slack_bot_token=BOT_TOKEN,
        slack_app_token="xapp-1-test",
        slack_api_url=slack.url,
        db_path=tmp_path / "t.db",
        poll_seconds=1,
    )
    from taobot.store import Store

    store = Store(settings.db_path, SecretBox(load_or_create_key(None, settings.key_file)))
    runtime = build_app(settings, store, load_catalog(), client=make_client(settings), http=False)
    runtime.start_monitoring()
    port = free_port()
    server = serve_health_in_background(runtime, "127.0.0.1", port)
    try:

        def fetch(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        assert fetch("/healthz") == (200, "ok\n")
        status, body = fetch("/readyz")
        assert status == 503 and "no message from Slack yet" in body  # never connected to Slack
        runtime.last_slack_at = time.time()
        deadline = time.time() + 10
        while fetch("/readyz")[0] != 200 and time.time() < deadline:
            time.sleep(0.2)
        assert fetch("/readyz")[0] == 200
        assert "taobot_intakes_started_total" in fetch("/metrics")[1]
        assert fetch("/slack/events")[0] == 404
    finally:
        server.close()
        runtime.stop()
    health = [t for t in threading.enumerate() if t.name == "health"]
    assert not health, "the health server's thread outlived close()"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
