"""A submit that fails on a real Docker daemon (the image cannot be pulled) gets triage in its thread.

The real bot runs against the fake Slack and a private dockerd with an `nvidia` runtime (so the local-docker
preflight passes, see tests/test_policy_slack.py). The image lives on a small registry served here on
127.0.0.1 (dockerd speaks plain HTTP to a loopback registry): one that answers "manifest unknown" (the image
does not exist: configuration, no Retry) and one that answers 503 to everything (the registry is down:
infrastructure, and Retry preflights again and submits again, linked to the first).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from taobot.intake.intents import RETRY
from taobot.slack import blocks as B
from tests.harness import SlackUser, Thread, blocks_text
from tests.polling import wait_until
from tests.test_policy_slack import (  # noqa: F401 - fixtures
    containers,
    data,
    gpu_daemon,
    policy_bot,
    preflight_text,
    roots,
    stored,
)


class Registry(BaseHTTPRequestHandler):
    """Docker Registry HTTP API v2, as far as a pull gets: the version check, then the manifest."""

    mode = "missing"  # or "down"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.mode == "down":
            self._answer(503, {"errors": [{"code": "UNAVAILABLE", "message": "service unavailable"}]})
        elif self.path.rstrip("/") == "/v2":
            self._answer(200, {})
        else:
            self._answer(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]})

    do_HEAD = do_GET


@pytest.fixture
def registry():
    def serve(mode: str) -> str:
        handler = type("ThisRegistry", (Registry,), {"mode": mode})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    servers: list[ThreadingHTTPServer] = []
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def allowing(registry_host: str) -> str:
    """The operator's policy lets images of this registry be used (the default allows only `nvcr.io/`)."""
    return f"images:\n  allowed_prefixes: ['{registry_host}/']\n"


def dino_with_image(person: SlackUser, data, image: str) -> Thread:
    thread = person.launch("dino")
    thread.say("platform=local-docker monitor=no")
    thread.wait_card("Use default image")
    thread.say(f"image={image}")
    thread.wait_card(f"`{image}` (override)")
    thread.say(f"train={data}/data/train eval={data}/data/val num_gpus=1")
    thread.wait_card("status: *complete*")
    thread.press(B.RUN_PREFLIGHT)
    preflight_text(thread, "passed")
    thread.wait_card("Preflight passed.")
    return thread


def submit_failures(thread: Thread) -> list[dict]:
    return [m for m in thread.replies() if "submit failed" in m.get("text", "")]


def buttons(message: dict) -> list[str]:
    return [el["action_id"] for b in message.get("blocks", []) if b.get("type") == "actions" for el in b["elements"]]


def test_an_image_that_does_not_exist_is_a_configuration_failure_without_retry(
    tmp_path, slack, data, gpu_daemon, registry
):
    host = registry("missing")
    image = f"{host}/nvidia/tao/missing:1"
    bot = policy_bot(tmp_path, slack, roots(data) + allowing(host), DOCKER_HOST=gpu_daemon)
    try:
        thread = dino_with_image(SlackUser(bot), data, image)
        thread.press(B.LAUNCH)
        text = thread.wait_reply("Failure triage: configuration", timeout=90)
        assert "Local Docker refused the job" in text and "Nothing is running." in text
        assert "(image not found or not allowed)" in text and "Decided by: `" in text and "manifest unknown" in text
        assert "check the image's name and tag (reply `image=<ref>`)" in text
        (message,) = submit_failures(thread)
        assert buttons(message) == []  # a retry would be refused the same way
        _, (launch,) = stored(bot, thread.intake_id)
        assert (launch.state.value, launch.native, launch.job_id) == ("Failed", "submit failed", None)
        assert (launch.failure_kind, launch.failure_cause) == ("configuration", "image not found or not allowed")
        assert "manifest unknown" in launch.failure_line
        assert containers(gpu_daemon) == []
        thread.wait_card("Preflight passed.")  # the intake is back to complete: fix the image, launch again
    finally:
        bot.kill()


def test_a_registry_that_is_down_is_infrastructure_and_retry_submits_again_linked(
    tmp_path, slack, data, gpu_daemon, registry
):
    host = registry("down")
    image = f"{host}/nvidia/tao/tao-toolkit:7.1.0-pyt"
    bot = policy_bot(tmp_path, slack, roots(data) + allowing(host), DOCKER_HOST=gpu_daemon)
    try:
        thread = dino_with_image(SlackUser(bot), data, image)
        thread.press(B.LAUNCH)
        text = thread.wait_reply("Failure triage: infrastructure", timeout=90)
        assert "(image registry unreachable)" in text and "503" in text
        assert "*Retry* runs preflight again" in text
        (message,) = submit_failures(thread)
        assert buttons(message) == [RETRY]
        _, (first,) = stored(bot, thread.intake_id)
        assert first.failure_kind == "infrastructure" and first.job_id is None

        thread.press_on_reply(RETRY, "Failure triage: infrastructure")
        thread.wait_reply(f"asked for retry 1 of `{first.id}` (image registry unreachable)")
        wait_until(lambda: len(submit_failures(thread)) == 2, 120, "the retry's submit to fail too")
        _, launches = stored(bot, thread.intake_id)
        second = next(x for x in launches if x.id != first.id)
        assert second.retry_of == first.id and second.failure_kind == "infrastructure"
        assert sum("Preflight passed" in blocks_text(m) for m in thread.replies()) >= 2  # the retry preflighted
        assert containers(gpu_daemon) == []
    finally:
        bot.kill()
