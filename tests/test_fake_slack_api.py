"""The fake Slack server must behave like Slack for a real slack_sdk WebClient,
and the signing helpers must produce requests Slack's own verifier and Bolt accept."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

try:
    from tests.fakes import ids
except ModuleNotFoundError:  # bare `pytest` with no tests/__init__.py: tests/ itself is on sys.path
    from fakes import ids  # type: ignore[no-redef]
    from fakes.signing import (  # type: ignore[no-redef]
        post_block_action,
        post_command,
        post_event,
        post_url_verification,
        post_view_submission,
        sign,
    )
    from fakes.slack_api import FakeSlackAPI, WaitTimeout  # type: ignore[no-redef]
else:
    from tests.fakes.signing import (
        post_block_action,
        post_command,
        post_event,
        post_url_verification,
        post_view_submission,
        sign,
    )
    from tests.fakes.slack_api import FakeSlackAPI, WaitTimeout

TOKEN = "xoxb-1111"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = ids.CHANNEL_ID


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def modal(title: str = "Launch", blocks=None, **extra) -> dict:
    view = {
        "type": "modal",
        "callback_id": "launch_modal",
        "title": {"type": "plain_text", "text": title},
        "blocks": blocks if blocks is not None else [section("hi")],
    }
    view.update(extra)
    return view


@pytest.fixture
def fake():
    with FakeSlackAPI(token=TOKEN, channels=[CHANNEL, "C0OTHER001"]) as server:
        yield server


@pytest.fixture
def client(fake):
    return WebClient(token=TOKEN, base_url=fake.url, timeout=5)


# ----------------------------------------------------------------------
# Web API behaviour
# ----------------------------------------------------------------------
def test_url_shape(fake):
    assert fake.url.startswith("http://127.0.0.1:")
    assert fake.url.endswith("/api/")


def test_auth_test(fake, client):
    resp = client.auth_test()
    assert resp["ok"] is True
    assert resp["user_id"] == fake.bot_user_id
    assert resp["team_id"] == fake.team_id
    assert resp["bot_id"] == fake.bot_id
    call = fake.calls_for("auth.test")[0]
    assert call.header("authorization") == f"Bearer {TOKEN}"


def test_post_update_replies_round_trip(fake, client):
    parent = client.chat_postMessage(channel=CHANNEL, text="Launching dino", blocks=[section("*Launching*")])
    assert parent["ok"] and parent["channel"] == CHANNEL
    assert parent["message"]["text"] == "Launching dino"
    assert parent["message"]["blocks"][0]["text"]["text"] == "*Launching*"
    assert parent["message"]["blocks"][0]["block_id"]  # Slack assigns block ids

    reply = client.chat_postMessage(channel=CHANNEL, thread_ts=parent["ts"], text="step 1")
    assert reply["message"]["thread_ts"] == parent["ts"]
    second = client.chat_postMessage(channel=CHANNEL, thread_ts=parent["ts"], text="step 2")
    assert float(parent["ts"]) < float(reply["ts"]) < float(second["ts"])
    assert len({parent["ts"], reply["ts"], second["ts"]}) == 3

    updated = client.chat_update(channel=CHANNEL, ts=reply["ts"], text="step 1 done", blocks=[section("done")])
    assert updated["ok"] and updated["ts"] == reply["ts"] and updated["text"] == "step 1 done"

    replies = client.conversations_replies(channel=CHANNEL, ts=parent["ts"])
    messages = replies["messages"]
    assert [m["ts"] for m in messages] == [parent["ts"], reply["ts"], second["ts"]]
    assert messages[0]["reply_count"] == 2
    assert messages[0]["latest_reply"] == second["ts"]
    assert messages[1]["text"] == "step 1 done"
    assert messages[1]["blocks"][0]["text"]["text"] == "done"
    assert "edited" in messages[1]
    assert replies["has_more"] is False

    state = fake.messages_in_thread(CHANNEL, parent["ts"])
    assert [m["text"] for m in state] == ["Launching dino", "step 1 done", "step 2"]

    post_call = fake.calls_for("chat.postMessage")[0]
    assert post_call.params["blocks"] == [section("*Launching*")]  # recorded as sent, parsed
    assert post_call.content_type.startswith("application/json")


def test_replies_pagination(fake, client):
    parent = client.chat_postMessage(channel=CHANNEL, text="parent")["ts"]
    for i in range(4):
        client.chat_postMessage(channel=CHANNEL, thread_ts=parent, text=f"r{i}")
    first = client.conversations_replies(channel=CHANNEL, ts=parent, limit=3)
    assert first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    rest = client.conversations_replies(channel=CHANNEL, ts=parent, limit=3, cursor=cursor)
    texts = [m["text"] for m in first["messages"] + rest["messages"]]
    assert texts == ["parent", "r0", "r1", "r2", "r3"]


def test_form_encoded_json_fields_are_decoded(fake, client):
    blocks = [section("from a form body")]
    resp = client.api_call(
        "chat.postMessage", params={"channel": CHANNEL, "text": "fallback", "blocks": json.dumps(blocks)}
    )
    assert resp["ok"]
    call = fake.calls_for("chat.postMessage")[-1]
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.params["blocks"] == blocks


def test_token_in_form_body_is_accepted(fake):
    anonymous = WebClient(base_url=fake.url)
    resp = anonymous.api_call("auth.test", params={"token": TOKEN})
    assert resp["ok"]


def test_invalid_and_missing_token(fake):
    with pytest.raises(SlackApiError) as bad:
        WebClient(token="xoxb-wrong", base_url=fake.url).chat_postMessage(channel=CHANNEL, text="x")
    assert bad.value.response.status_code == 200
    assert bad.value.response["error"] == "invalid_auth"

    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=fake.url).auth_test()
    assert missing.value.response["error"] == "not_authed"
    assert fake.messages() == []
    assert [c.error for c in fake.calls] == ["invalid_auth", "not_authed"]


def test_unknown_method(fake, client):
    with pytest.raises(SlackApiError) as err:
        client.api_call("tao.launchRocket")
    assert err.value.response["error"] == "unknown_method"


def test_channel_not_found_with_allow_list(fake, client):
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0NOPE0001", text="hello")
    assert err.value.response["error"] == "channel_not_found"


def test_message_validation_errors(fake, client):
    with pytest.raises(SlackApiError) as too_many:
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section(f"b{i}") for i in range(51)])
    assert too_many.value.response["error"] == "invalid_blocks"
    assert any("no more than 50 items" in m for m in too_many.value.response["response_metadata"]["messages"])

    client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section(f"b{i}") for i in range(50)])

    with pytest.raises(SlackApiError) as long_section:
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section("a" * 3001)])
    assert long_section.value.response["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in long_section.value.response["errors"][0]

    with pytest.raises(SlackApiError) as no_text:
        client.chat_postMessage(channel=CHANNEL, text="")
    assert no_text.value.response["error"] == "no_text"

    with pytest.raises(SlackApiError) as too_long:
        client.chat_postMessage(channel=CHANNEL, text="a" * 40001)
    assert too_long.value.response["error"] == "msg_too_long"

    with pytest.raises(SlackApiError) as bad_button:
        client.chat_postMessage(
            channel=CHANNEL,
            text="x",
            blocks=[{"type": "actions", "elements": [{"type": "buton", "text": {"type": "plain_text", "text": "Go"}}]}],
        )
    assert bad_button.value.response["error"] == "invalid_blocks"
    assert len(fake.messages(CHANNEL)) == 1  # only the valid 50-block message was stored


def test_update_errors(fake, client):
    with pytest.raises(SlackApiError) as unknown:
        client.chat_update(channel=CHANNEL, ts="1700000000.000100", text="nope")
    assert unknown.value.response["error"] == "message_not_found"

    human_ts = fake.seed_message(CHANNEL, "hello bot", user="U0HUMAN001")
    with pytest.raises(SlackApiError) as not_ours:
        client.chat_update(channel=CHANNEL, ts=human_ts, text="edited")
    assert not_ours.value.response["error"] == "cant_update_message"
    assert fake.message(CHANNEL, human_ts)["text"] == "hello bot"


def test_ephemeral_delete_reactions_users(fake, client):
    eph = client.chat_postEphemeral(channel=CHANNEL, user=ids.USER_ID, text="only you")
    assert eph["ok"] and eph["message_ts"]
    assert fake.ephemeral_messages(CHANNEL, ids.USER_ID)[0]["text"] == "only you"

    ts = client.chat_postMessage(channel=CHANNEL, text="react to me")["ts"]
    client.reactions_add(channel=CHANNEL, name="rocket", timestamp=ts)
    with pytest.raises(SlackApiError) as again:
        client.reactions_add(channel=CHANNEL, name="rocket", timestamp=ts)
    assert again.value.response["error"] == "already_reacted"
    assert fake.message(CHANNEL, ts)["reactions"] == [{"name": "rocket", "users": [fake.bot_user_id], "count": 1}]

    deleted = client.chat_delete(channel=CHANNEL, ts=ts)
    assert deleted["ok"] and deleted["ts"] == ts
    assert fake.message(CHANNEL, ts) is None
    with pytest.raises(SlackApiError) as gone:
        client.chat_delete(channel=CHANNEL, ts=ts)
    assert gone.value.response["error"] == "message_not_found"

    user = client.users_info(user=ids.USER_ID)["user"]
    assert user["id"] == ids.USER_ID and user["profile"]["real_name"]
    with pytest.raises(SlackApiError) as bad_user:
        client.users_info(user="not-a-user")
    assert bad_user.value.response["error"] == "user_not_found"


# ----------------------------------------------------------------------
# views
# ----------------------------------------------------------------------
def test_views_open_requires_issued_trigger(fake, client):
    with pytest.raises(SlackApiError) as bad:
        client.views_open(trigger_id="12345.98765.abcd2358fdea", view=modal())
    assert bad.value.response["error"] == "invalid_trigger_id"

    trigger = fake.issue_trigger_id(user_id=ids.USER_ID)
    opened = client.views_open(trigger_id=trigger, view=modal())
    view = opened["view"]
    assert view["id"].startswith("V") and view["hash"]
    assert view["root_view_id"] == view["id"]
    assert view["callback_id"] == "launch_modal"
    assert fake.get_view(view["id"])["title"]["text"] == "Launch"

    with pytest.raises(SlackApiError) as reused:
        client.views_open(trigger_id=trigger, view=modal())
    assert reused.value.response["error"] == "exchanged_trigger_id"


def test_views_open_expired_trigger():
    with FakeSlackAPI(token=TOKEN, trigger_ttl=0.05) as fake:
        client = WebClient(token=TOKEN, base_url=fake.url)
        trigger = fake.issue_trigger_id()
        time.sleep(0.1)
        with pytest.raises(SlackApiError) as err:
            client.views_open(trigger_id=trigger, view=modal())
        assert err.value.response["error"] == "expired_trigger_id"


def test_views_validation(fake, client):
    with pytest.raises(SlackApiError) as long_title:
        client.views_open(trigger_id=fake.issue_trigger_id(), view=modal(title="x" * 25))
    assert long_title.value.response["error"] == "invalid_arguments"
    assert "/view/title/text" in long_title.value.response["response_metadata"]["messages"][0]

    with pytest.raises(SlackApiError) as too_many:
        client.views_open(trigger_id=fake.issue_trigger_id(), view=modal(blocks=[section("b")] * 101))
    assert too_many.value.response["error"] == "invalid_arguments"

    input_block = {
        "type": "input",
        "block_id": "name",
        "label": {"type": "plain_text", "text": "Name"},
        "element": {"type": "plain_text_input", "action_id": "value"},
    }
    with pytest.raises(SlackApiError) as no_submit:
        client.views_open(trigger_id=fake.issue_trigger_id(), view=modal(blocks=[input_block]))
    assert no_submit.value.response["error"] == "invalid_arguments"

    ok = client.views_open(
        trigger_id=fake.issue_trigger_id(),
        view=modal(title="x" * 24, blocks=[input_block], submit={"type": "plain_text", "text": "Go"}),
    )
    assert ok["ok"]


def test_views_update_and_push(fake, client):
    view = client.views_open(trigger_id=fake.issue_trigger_id(), view=modal(external_id="launch-1"))["view"]
    updated = client.views_update(view_id=view["id"], hash=view["hash"], view=modal(title="Launched"))["view"]
    assert updated["id"] == view["id"] and updated["hash"] != view["hash"]
    assert fake.get_view(view["id"])["title"]["text"] == "Launched"

    with pytest.raises(SlackApiError) as stale:
        client.views_update(view_id=view["id"], hash=view["hash"], view=modal())
    assert stale.value.response["error"] == "hash_conflict"

    with pytest.raises(SlackApiError) as missing:
        client.views_update(view_id="V0DOESNOTX", view=modal())
    assert missing.value.response["error"] == "not_found"

    pushed = client.views_push(trigger_id=fake.issue_trigger_id(view_id=view["id"]), view=modal(title="Step 2"))
    assert pushed["view"]["root_view_id"] == view["id"]
    assert pushed["view"]["previous_view_id"] == view["id"]
    with pytest.raises(SlackApiError) as bad_push:
        client.views_push(trigger_id="1.2.3", view=modal())
    assert bad_push.value.response["error"] == "invalid_trigger_id"


# ----------------------------------------------------------------------
# fault injection, recording, waiting
# ----------------------------------------------------------------------
def test_rate_limit_is_retried_by_sdk_handler(fake):
    client = WebClient(token=TOKEN, base_url=fake.url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    fake.rate_limit("chat.postMessage", times=1, retry_after=1)
    started = time.monotonic()
    resp = client.chat_postMessage(channel=CHANNEL, text="eventually")
    assert resp["ok"]
    assert time.monotonic() - started >= 1.0  # the SDK honoured Retry-After
    first, second = fake.calls_for("chat.postMessage")
    assert first.status == 429 and first.fault == "ratelimited" and first.error == "ratelimited"
    assert second.ok and second.fault is None
    assert len(fake.messages(CHANNEL)) == 1


def test_rate_limit_surfaces_without_handler(fake, client):
    fake.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel=CHANNEL, text="too fast")
    response = err.value.response
    assert response.status_code == 429
    assert response["error"] == "ratelimited"
    assert response.headers.get("retry-after", response.headers.get("Retry-After")) in ("7", ["7"])
    assert fake.messages() == []
    assert client.chat_postMessage(channel=CHANNEL, text="later")["ok"]  # only `times` calls are limited


def test_fail_injection(fake, client):
    fake.fail("views.open", error="internal_error")
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id=fake.issue_trigger_id(), view=modal())
    assert err.value.response["error"] == "internal_error"

    fake.fail("chat.postMessage", error="fatal_error", status=500)
    retrying = WebClient(token=TOKEN, base_url=fake.url, retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)])
    assert retrying.chat_postMessage(channel=CHANNEL, text="second time lucky")["ok"]
    assert [c.status for c in fake.calls_for("chat.postMessage")] == [500, 200]


def test_wait_for_calls_from_another_thread(fake, client):
    def bot():
        time.sleep(0.2)
        client.chat_postMessage(channel=CHANNEL, text="one")
        client.chat_postMessage(channel=CHANNEL, text="two")

    threading.Thread(target=bot).start()
    calls = fake.wait_for("chat.postMessage", count=2, timeout=5)
    assert [c.params["text"] for c in calls] == ["one", "two"]
    assert fake.wait_for(lambda c: c.params.get("text") == "two")[0].ok

    with pytest.raises(WaitTimeout):
        fake.wait_for("views.open", timeout=0.2)

    fake.reset()
    assert fake.calls == [] and fake.messages() == []


def test_response_url(fake, client):
    ts = client.chat_postMessage(channel=CHANNEL, text="original")["ts"]
    url = fake.issue_response_url(CHANNEL, ts, user_id=ids.USER_ID)
    from slack_sdk.webhook import WebhookClient

    assert WebhookClient(url).send(text="just for you").status_code == 200
    assert fake.ephemeral_messages(CHANNEL, ids.USER_ID)[0]["text"] == "just for you"
    WebhookClient(url).send(text="replaced", replace_original=True)
    assert fake.message(CHANNEL, ts)["text"] == "replaced"
    WebhookClient(url).send(text="hello all", response_type="in_channel")
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["replaced", "hello all"]
    assert len(fake.calls_for("response_url")) == 3


# ----------------------------------------------------------------------
# signing helpers
# ----------------------------------------------------------------------
def test_sign_verifies_with_slack_sdk():
    body = b"token=abc&command=%2Ftao&text=launch+dino"
    headers = sign(body, SECRET)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    stale = sign(body, SECRET, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)
    fixed = sign("v", "s", timestamp=1531420618)
    assert fixed["X-Slack-Request-Timestamp"] == "1531420618"
    assert fixed["X-Slack-Signature"].startswith("v0=") and len(fixed["X-Slack-Signature"]) == 67


class _CaptureServer:
    """Records raw requests; answers 200 with an empty body."""

    def __init__(self):
        self.requests = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                capture.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slack/events"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture():
    server = _CaptureServer()
    yield server
    server.close()


def test_post_helpers_send_signed_slack_shaped_requests(capture):
    verifier = SignatureVerifier(SECRET)

    status, headers, body, elapsed = post_command(capture.url, SECRET, trigger_id="1.2.3", response_url="http://r")
    assert status == 200 and body == b"" and 0 <= elapsed < 3
    _, req_headers, raw = capture.requests[-1]
    assert verifier.is_valid_request(raw, req_headers)
    assert req_headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    assert form["command"] == "/tao" and form["text"] == "launch dino"
    assert form["trigger_id"] == "1.2.3" and form["response_url"] == "http://r"
    assert {"team_id", "channel_id", "user_id", "api_app_id", "token"} <= set(form)

    post_event(capture.url, SECRET, {"type": "app_mention", "text": "hi"}, event_id="Ev1", retry_num=2)
    _, req_headers, raw = capture.requests[-1]
    assert verifier.is_valid_request(raw, req_headers)
    envelope = json.loads(raw)
    assert envelope["type"] == "event_callback" and envelope["event_id"] == "Ev1"
    assert envelope["event"]["type"] == "app_mention" and isinstance(envelope["event_time"], int)
    assert req_headers["X-Slack-Retry-Num"] == "2" and req_headers["X-Slack-Retry-Reason"] == "http_timeout"

    post_block_action(
        capture.url, SECRET, ids.USER_ID, CHANNEL, "1700000000.000200", "1700000000.000100", "stop", "run-1"
    )
    _, req_headers, raw = capture.requests[-1]
    assert verifier.is_valid_request(raw, req_headers)
    form = parse_qs(raw.decode())
    assert list(form) == ["payload"]
    payload = json.loads(form["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["container"]["message_ts"] == "1700000000.000200"
    assert payload["container"]["thread_ts"] == "1700000000.000100"
    assert payload["actions"][0]["action_id"] == "stop" and payload["actions"][0]["value"] == "run-1"

    post_view_submission(
        capture.url,
        SECRET,
        ids.USER_ID,
        "launch_modal",
        '{"run": 1}',
        {"b": {"a": {"type": "plain_text_input", "value": "x"}}},
    )
    payload = json.loads(parse_qs(capture.requests[-1][2].decode())["payload"][0])
    assert payload["type"] == "view_submission"
    assert payload["view"]["callback_id"] == "launch_modal"
    assert payload["view"]["private_metadata"] == '{"run": 1}'
    assert payload["view"]["state"]["values"]["b"]["a"]["value"] == "x"

    post_url_verification(capture.url, SECRET, "chal")
    assert json.loads(capture.requests[-1][2]) == {
        "token": ids.VERIFICATION_TOKEN,
        "challenge": "chal",
        "type": "url_verification",
    }


# ----------------------------------------------------------------------
# end to end: a real Bolt app, served over HTTP, talking to the fake
# ----------------------------------------------------------------------
class _BoltServer:
    def __init__(self, app):
        from slack_bolt.request import BoltRequest

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
                headers = {k.lower(): [v] for k, v in self.headers.items()}
                resp = app.dispatch(BoltRequest(body=body, headers=headers))
                payload = resp.body.encode("utf-8")
                self.send_response(resp.status)
                for name, values in resp.headers.items():
                    for value in values:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slack/events"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_bolt_app_accepts_helpers_and_uses_fake(fake):
    from slack_bolt import App

    app = App(signing_secret=SECRET, client=WebClient(token=TOKEN, base_url=fake.url))
    fake.wait_for("auth.test")  # Bolt verifies its token at start-up
    submitted = {}

    @app.command("/tao")
    def on_command(ack, body, client, respond):
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=modal())
        respond(text=f"launching {body['text']}")

    @app.action("stop")
    def on_stop(ack, body, client):
        ack()
        client.chat_update(channel=body["channel"]["id"], ts=body["container"]["message_ts"], text="stopped")

    @app.view("launch_modal")
    def on_submit(ack, view):
        submitted.update(view["state"]["values"])
        ack()

    @app.event("app_mention")
    def on_mention(event, say):
        say(text="hi!", thread_ts=event["ts"])

    server = _BoltServer(app)
    try:
        status, _, body, elapsed = post_url_verification(server.url, SECRET, "challenge-xyz")
        assert status == 200 and json.loads(body)["challenge"] == "challenge-xyz"

        bad = post_command(server.url, "wrong-secret")
        assert bad.status_code == 401

        result = post_command(
            server.url,
            SECRET,
            trigger_id=fake.issue_trigger_id(user_id=ids.USER_ID),
            response_url=fake.issue_response_url(CHANNEL, user_id=ids.USER_ID),
        )
        assert result.status_code == 200 and result.elapsed < 3
        opened = fake.wait_for("views.open")[0]
        assert opened.ok, opened.response
        fake.wait_for("response_url")
        assert fake.ephemeral_messages(CHANNEL, ids.USER_ID)[-1]["text"] == "launching launch dino"

        ts = WebClient(token=TOKEN, base_url=fake.url).chat_postMessage(channel=CHANNEL, text="running")["ts"]
        result = post_block_action(
            server.url, SECRET, ids.USER_ID, CHANNEL, ts, None, "stop", value="x", message=fake.message(CHANNEL, ts)
        )
        assert result.status_code == 200
        assert fake.wait_for("chat.update")[0].ok
        assert fake.message(CHANNEL, ts)["text"] == "stopped"

        view = fake.get_view(opened.response["view"]["id"])
        values = {"name": {"value": {"type": "plain_text_input", "value": "dino"}}}
        result = post_view_submission(server.url, SECRET, ids.USER_ID, "launch_modal", "", values, view=view)
        assert result.status_code == 200 and submitted == values

        mention_ts = fake.seed_message(CHANNEL, f"<@{fake.bot_user_id}> hello")
        event = {"type": "app_mention", "user": ids.USER_ID, "text": "hello", "ts": mention_ts, "channel": CHANNEL}
        assert post_event(server.url, SECRET, event).status_code == 200
        fake.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == mention_ts)
        assert [m["text"] for m in fake.messages_in_thread(CHANNEL, mention_ts)][-1] == "hi!"
    finally:
        server.close()


def test_concurrent_posts_get_unique_increasing_ts(fake, client):
    results = []

    def poster(n):
        for i in range(10):
            results.append(client.chat_postMessage(channel=CHANNEL, text=f"{n}-{i}")["ts"])

    threads = [threading.Thread(target=poster, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(set(results)) == 80
    assert len(fake.wait_for("chat.postMessage", count=80, timeout=5)) == 80
    stored = [m["ts"] for m in fake.messages(CHANNEL)]
    assert stored == sorted(stored, key=float) and len(stored) == 80


def test_get_with_query_string(fake):
    import urllib.request

    with urllib.request.urlopen(f"{fake.url}auth.test?token={TOKEN}", timeout=5) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())["user_id"] == fake.bot_user_id


# ----------------------------------------------------------------------
# Slack's own rate limits, enforced on request
# ----------------------------------------------------------------------
def test_enforced_limits_answer_429_past_a_channels_burst(fake, client):
    fake.enforce_rate_limits()  # chat.postMessage: ~1/s per channel, bursts of 5
    answers = []
    for i in range(8):
        try:
            answers.append(client.chat_postMessage(channel=CHANNEL, text=f"m{i}")["ok"])
        except SlackApiError as exc:
            answers.append(exc.response.status_code)
            assert exc.response["error"] == "ratelimited"
            assert int(exc.response.headers.get("retry-after", exc.response.headers.get("Retry-After"))) >= 1
    assert answers[:5] == [True] * 5
    assert 429 in answers[5:]
    limited = [c for c in fake.calls_for("chat.postMessage") if c.status == 429]
    assert limited and all(c.fault == "ratelimited" for c in limited)
    assert len(fake.messages(CHANNEL)) == answers.count(True)  # a 429 posts nothing
    assert client.chat_postMessage(channel="C0OTHER001", text="another channel")["ok"]  # its own bucket


def test_enforced_update_tier_is_per_workspace(fake, client):
    fake.enforce_rate_limits({"chat.update": {"workspace": (1.0, 3)}})
    one = client.chat_postMessage(channel=CHANNEL, text="a")["ts"]
    two = client.chat_postMessage(channel="C0OTHER001", text="b")["ts"]
    statuses = []
    for i in range(6):
        channel, ts = (CHANNEL, one) if i % 2 == 0 else ("C0OTHER001", two)
        try:
            client.chat_update(channel=channel, ts=ts, text=f"edit {i}")
            statuses.append(200)
        except SlackApiError as exc:
            statuses.append(exc.response.status_code)
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]  # both channels drew on the one workspace bucket
    assert len(fake.calls_for("chat.postMessage")) == 2 and all(c.ok for c in fake.calls_for("chat.postMessage"))


def test_rate_limits_off_by_default_and_can_be_stopped():
    with FakeSlackAPI(token=TOKEN) as plain:
        c = WebClient(token=TOKEN, base_url=plain.url)
        assert all(c.chat_postMessage(channel=CHANNEL, text=str(i))["ok"] for i in range(10))
    with FakeSlackAPI(token=TOKEN, rate_limits={"chat.postMessage": {"channel": (0.5, 1)}}) as strict:
        c = WebClient(token=TOKEN, base_url=strict.url)
        assert c.chat_postMessage(channel=CHANNEL, text="first")["ok"]
        with pytest.raises(SlackApiError):
            c.chat_postMessage(channel=CHANNEL, text="second")
        strict.stop_enforcing_rate_limits()
        assert c.chat_postMessage(channel=CHANNEL, text="third")["ok"]


def test_sdk_retry_handler_gets_every_post_through_enforced_limits(fake):
    fake.enforce_rate_limits(scale=4)  # 4 posts/s per channel after a burst of 5
    client = WebClient(token=TOKEN, base_url=fake.url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=5)])
    for i in range(8):
        assert client.chat_postMessage(channel=CHANNEL, text=f"m{i}")["ok"]
    assert any(c.status == 429 for c in fake.calls_for("chat.postMessage"))
    assert [m["text"] for m in fake.messages(CHANNEL)] == [f"m{i}" for i in range(8)]
