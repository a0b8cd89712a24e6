"""Run the real bot (`taobot serve --http`) against the fake Slack Web API.

`BotProcess` starts the console script as a subprocess with its own
database and log file, so tests can kill -9 and restart it. `SlackUser`
drives it the way Slack would: signed slash commands, events, button
presses and modal submissions, using the messages and views the bot
really posted to the fake.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes import (
    FakeSlackAPI,
    ids,
    post_block_action,
    post_command,
    post_event,
    post_view_submission,
)
from tests.polling import wait_until

SIGNING_SECRET = "test-signing-secret-8f2c"
BOT_TOKEN = "xoxb-fake"
ENV_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BotProcess:
    workdir: Path
    slack: FakeSlackAPI
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    @property
    def db(self) -> Path:
        return self.workdir / "taobot.db"

    @property
    def log_path(self) -> Path:
        return self.workdir / "bot.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ENV_PASSTHROUGH}
        env.update(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=self.slack.url,
            TAOBOT_DB=str(self.db),
            TAOBOT_LOG_LEVEL="DEBUG",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> "BotProcess":
        self.port = self.port or free_port()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taobot.cli", "serve", "--http", "--port", str(self.port)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bot exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("bot did not become healthy:\n" + self.log_path.read_text())

    def wait_saved(self, intake_id: str, card_ts: str, timeout: float = 10) -> None:
        """Block until the bot has recorded the card it posted (it does so right after posting)."""
        store = self.store()
        try:

            def saved() -> bool:
                state = store.get_intake(intake_id)
                return state is not None and state.card_ts == card_ts

            wait_until(saved, timeout, f"launch {intake_id} to record its card")
        finally:
            store.close()

    def store(self):
        """The bot's own database, opened the way the bot opens it (with its key file)."""
        from taobot.secrets import SecretBox, load_or_create_key
        from taobot.store import Store

        return Store(self.db, SecretBox(load_or_create_key(None, self.db.with_name(self.db.name + ".key"))))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class SlackUser:
    """One person in the test workspace, talking to the bot through Slack's requests."""

    def __init__(self, bot: BotProcess, user_id: str = ids.USER_ID, channel: str = ids.CHANNEL_ID) -> None:
        self.bot, self.slack, self.user, self.channel = bot, bot.slack, user_id, channel

    # -------------------------------------------------------------- starting

    def slash(self, text: str):
        resp = post_command(
            self.bot.url,
            SIGNING_SECRET,
            text=text,
            user_id=self.user,
            channel_id=self.channel,
            trigger_id=self.slack.issue_trigger_id(self.user),
            response_url=self.slack.issue_response_url(self.channel, user_id=self.user),
        )
        assert resp.status_code == 200, resp
        return resp

    def launch(self, model: str, action: str = "train") -> "Thread":
        return self.open_thread(f"launch {model} {action}")

    def open_thread(self, text: str) -> "Thread":
        """`/tao <text>` that opens a thread (`launch …`, `automl …`, `workflow …`): the thread of its card."""

        def posted(c):
            # the card is a new root message; other threads' replies may be posted meanwhile
            return (
                c.method == "chat.postMessage"
                and c.ok
                and "thread_ts" not in c.params
                and "TAO launch:" in blocks_text(c.params)
            )

        before = len([c for c in self.slack.calls if posted(c)])
        resp = self.slash(text)
        assert resp.elapsed < 3.0, f"ack took {resp.elapsed:.2f}s"
        card = self.slack.wait_for(posted, count=before + 1, timeout=45)[before]
        ts = card.response["ts"]
        thread = Thread(self, ts, ts, intake_id_of(card.params))
        self.bot.wait_saved(thread.intake_id, ts)
        return thread

    def mention(self, text: str, thread_ts: str | None = None):
        ts = self.slack.seed_message(self.channel, f"<@{ids.BOT_USER_ID}> {text}", user=self.user, thread_ts=thread_ts)
        event = {
            "type": "app_mention",
            "user": self.user,
            "text": f"<@{ids.BOT_USER_ID}> {text}",
            "ts": ts,
            "channel": self.channel,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        resp = post_event(self.bot.url, SIGNING_SECRET, event)
        assert resp.status_code == 200, resp
        return ts


@dataclass
class Thread:
    person: SlackUser
    thread_ts: str
    card_ts: str
    intake_id: str

    @property
    def slack(self) -> FakeSlackAPI:
        return self.person.slack

    def card(self) -> dict:
        return self.slack.message(self.person.channel, self.card_ts)

    def card_text(self) -> str:
        return blocks_text(self.card())

    def replies(self) -> list[dict]:
        return [
            m
            for m in self.slack.messages_in_thread(self.person.channel, self.thread_ts)
            if m.get("ts") != self.card_ts and m.get("ts") != self.thread_ts
        ]

    def wait_card(self, needle: str, timeout: float = 45) -> str:
        return wait_until(
            lambda: (lambda text: text if needle in text else None)(self.card_text()),
            timeout,
            f"the card to show {needle!r}",
            show=self.card_text,
        )

    def wait_reply(self, needle: str, timeout: float = 45) -> str:
        def found() -> str | None:
            return next((t for t in (blocks_text(m) for m in self.replies()) if needle in t), None)

        return wait_until(
            found, timeout, f"a reply with {needle!r}", show=lambda: [blocks_text(m)[:200] for m in self.replies()]
        )

    def press(self, action_id: str, value: str | None = None, select: str | None = None, as_user: str | None = None):
        message = self.card()
        block_id = None
        for block in message.get("blocks", []):
            elements = block.get("elements", []) if block.get("type") == "actions" else [block.get("accessory") or {}]
            for el in elements:
                if el.get("action_id") == action_id:
                    block_id = block.get("block_id")
                    value = value if value is not None else el.get("value")
        assert block_id is not None, f"no {action_id} on the card:\n{self.card_text()}"
        option = {"text": {"type": "plain_text", "text": select}, "value": select} if select else None
        user = as_user or self.person.user
        resp = post_block_action(
            self.person.bot.url,
            SIGNING_SECRET,
            user,
            self.person.channel,
            self.card_ts,
            self.thread_ts,
            action_id,
            value=value,
            block_id=block_id,
            selected_option=option,
            trigger_id=self.slack.issue_trigger_id(user),
            message=message,
            action_type="static_select" if select else "button",
        )
        assert resp.status_code == 200, resp
        assert resp.elapsed < 3.0
        return resp

    def press_on_reply(self, action_id: str, containing: str = "") -> None:
        """Press a button on the newest thread reply that has it (and contains `containing`)."""
        for m in reversed(self.replies()):
            if containing not in blocks_text(m):
                continue
            for block in m.get("blocks", []):
                for el in block.get("elements", []) if block.get("type") == "actions" else []:
                    if el.get("action_id") == action_id:
                        resp = post_block_action(
                            self.person.bot.url,
                            SIGNING_SECRET,
                            self.person.user,
                            self.person.channel,
                            m["ts"],
                            self.thread_ts,
                            action_id,
                            value=el["value"],
                            block_id=block["block_id"],
                            trigger_id=self.slack.issue_trigger_id(self.person.user),
                            message=m,
                        )
                        assert resp.status_code == 200, resp
                        return
        raise AssertionError(f"no {action_id} on a reply containing {containing!r}")

    def open_modal(self, action_id: str) -> dict:
        before = len(self.slack.calls_for("views.open"))
        self.press(action_id)
        call = self.slack.wait_for("views.open", count=before + 1, timeout=45)[before]
        assert call.ok, call.response
        return call.response["view"]

    def submit(self, view: dict, values: dict[str, str], as_user: str | None = None):
        # A person can only fill in the fields the form shows.
        fields = {b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"}
        assert set(values) <= fields, f"{sorted(set(values) - fields)} are not fields of {view['callback_id']}"
        state = {bid: {"value": {"type": "plain_text_input", "value": v}} for bid, v in values.items()}
        resp = post_view_submission(
            self.person.bot.url,
            SIGNING_SECRET,
            as_user or self.person.user,
            view["callback_id"],
            view["private_metadata"],
            state,
            view=view,
        )
        assert resp.status_code == 200, resp
        return resp

    def say(
        self,
        text: str,
        as_user: str | None = None,
        retry_num: int | None = None,
        event_id: str | None = None,
        subtype: str | None = None,
        files: list[dict] | None = None,
    ):
        """A reply in the thread; `subtype` as Slack marks some replies (`thread_broadcast`, `file_share`)."""
        user = as_user or self.person.user
        ts = self.slack.seed_message(self.person.channel, text, user=user, thread_ts=self.thread_ts)
        event = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "thread_ts": self.thread_ts,
            "channel": self.person.channel,
            "channel_type": "channel",
            "event_ts": ts,
        }
        if subtype:
            event["subtype"] = subtype
        if subtype == "thread_broadcast":
            # "Also send to channel": Slack adds the thread's root message.
            root = self.slack.message(self.person.channel, self.thread_ts) or {}
            event["root"] = {k: root.get(k) for k in ("type", "text", "user", "ts", "thread_ts") if k in root}
        if files is not None:
            event["files"] = files
            event["upload"] = False
        resp = post_event(self.person.bot.url, SIGNING_SECRET, event, event_id=event_id, retry_num=retry_num)
        assert resp.status_code == 200, resp
        return resp


def blocks_text(message: dict | None) -> str:
    """Everything a person can read in a message: fallback text and all block texts."""
    if not message:
        return ""
    out = [message.get("text") or ""]

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and "text" in node:
                out.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(message.get("blocks") or [])
    return "\n".join(out)


def intake_id_of(params: dict) -> str:
    match = re.search(r"Launch `([0-9a-f]{8})`", blocks_text(params))
    assert match, f"no launch id in {params}"
    return match.group(1)
