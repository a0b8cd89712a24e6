"""Wiring: settings + store + catalog -> a Bolt App, served over HTTP or Socket Mode.

HTTP mode runs Bolt's WSGI adapter on waitress (a production WSGI server)
at /slack/events, with every request's signature verified by Bolt. Socket
Mode uses SLACK_APP_TOKEN. The Web API client points at SLACK_API_URL when
set, and retries 429s after Retry-After, connection errors and 5xx.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from taobot.catalog import Catalog
from taobot.config import Settings
from taobot.errors import SlackError
from taobot.secrets import REDACTOR
from taobot.service import IntakeService
from taobot.store import Store

log = logging.getLogger(__name__)

SLACK_EVENTS_PATH = "/slack/events"

# What Slack must grant for each thing the code uses; manifest.yml declares
# exactly their union (tests/test_manifest.py compares the two).
SLASH_COMMANDS = ("/tao",)
SCOPES_FOR_METHOD = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "views.open": None,  # needs only the trigger_id of an interaction
    "conversations.replies": "channels:history",  # finding a status post after a crash
}
SCOPES_FOR_EVENT = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
}
COMMAND_SCOPE = "commands"


def make_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    kwargs = {"token": token, "timeout": 15}
    if settings.slack_api_url:
        base = settings.slack_api_url
        kwargs["base_url"] = base if base.endswith("/") else base + "/"
    client = WebClient(**kwargs)
    client.retry_handlers.extend(
        [
            RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ]
    )
    return client


class SlackMessenger:
    """The Messenger the service talks to, backed by the Slack Web API."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def _call(self, method: str, **kwargs: object) -> dict:
        try:
            body = {k: v for k, v in kwargs.items() if v is not None}
            return self.client.api_call(method, json=body).data  # type: ignore[return-value]
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            raise SlackError(f"Slack {method} failed: {error}", method=method, error=error) from exc

    def post(self, channel: str, message: dict, thread_ts: str | None = None, metadata: dict | None = None) -> str:
        body = {"channel": channel, "text": REDACTOR.redact(message.get("text", "")), "blocks": message.get("blocks"),
                "metadata": metadata}
        if thread_ts:
            body["thread_ts"] = thread_ts
        return str(self._call("chat.postMessage", **body)["ts"])

    def find_posted(self, channel: str, thread_ts: str, launch_id: str, slot: int) -> str | None:
        """The ts of a status post for (launch, slot) already in the thread, found by its metadata."""
        cursor = None
        while True:
            data = self._call("conversations.replies", channel=channel, ts=thread_ts, include_all_metadata=True,
                              limit=200, cursor=cursor)
            for message in data.get("messages", []):
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("launch") == launch_id and payload.get("slot") == slot:
                    return str(message["ts"])
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def update(self, channel: str, ts: str, message: dict) -> None:
        self._call("chat.update", channel=channel, ts=ts, text=REDACTOR.redact(message.get("text", "")), blocks=message.get("blocks"))

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        body = {"channel": channel, "user": user, "text": REDACTOR.redact(text)}
        if thread_ts:
            body["thread_ts"] = thread_ts
        try:
            self._call("chat.postEphemeral", **body)
        except SlackError as exc:
            log.warning("ephemeral message failed: %s", exc.error)

    def open_view(self, trigger_id: str, view: dict) -> None:
        self._call("views.open", trigger_id=trigger_id, view=view)


@dataclass
class Runtime:
    """Everything a running bot holds, so serve/tests can reach it."""

    app: App
    service: IntakeService
    store: Store
    client: WebClient
    settings: Settings | None = None
    scheduler: object | None = None

    def start_monitoring(self) -> None:
        from taobot import scheduler

        self.scheduler = scheduler.start(str(self.store.path), self.service.monitor, self.store, self.settings.poll_seconds)

    def stop(self) -> None:
        from taobot import scheduler

        if self.scheduler is not None:
            scheduler.stop(self.scheduler)
            self.scheduler = None
        self.service.monitor.backends.close()


def build_app(settings: Settings, store: Store, catalog: Catalog, client: WebClient | None = None, http: bool = True) -> Runtime:
    client = client or make_client(settings)
    signing = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = App(
        client=client,
        signing_secret=signing if http else None,
        request_verification_enabled=http,
        token_verification_enabled=True,
        process_before_response=False,
        ignoring_self_events_enabled=True,
    )
    from taobot.backends import Backends
    from taobot.launcher import Launcher
    from taobot.monitor import Monitor

    messenger = SlackMessenger(client)
    backends = Backends(settings)
    service = IntakeService(store, catalog, messenger, settings.admin_ids, settings.intake_expiry_days,
                            preflight_settings=settings.preflight_settings(), launcher=Launcher(store, catalog, backends))
    service.monitor = Monitor(store, catalog, backends, messenger, on_state_change=service.refresh_for_launch)
    service.recover()

    @app.middleware
    def drop_retried_deliveries(body: dict, next) -> BoltResponse | None:  # noqa: A002 - Bolt's name
        # Slack re-sends an event it thinks we missed (X-Slack-Retry-Num). The
        # event_id stays the same, so the first delivery's record wins.
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if event_id and not store.first_delivery(f"event:{event_id}"):
            log.info("duplicate delivery of %s ignored", event_id)
            return BoltResponse(status=200, body="")
        return next()

    from taobot.slack.listeners import actions, commands, messages, views

    commands.register(app, service, catalog)
    messages.register(app, service, catalog)
    actions.register(app, service)
    views.register(app, service)
    return Runtime(app=app, service=service, store=store, client=client, settings=settings)


def wsgi_app(runtime: Runtime):
    """/slack/events for Slack, /healthz for probes; everything else 404."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    slack = SlackRequestHandler(runtime.app, path=SLACK_EVENTS_PATH)

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return application


def serve_http(runtime: Runtime, host: str, port: int, threads: int = 8) -> None:
    import waitress

    log.info("serving Slack HTTP mode on http://%s:%d%s", host, port, SLACK_EVENTS_PATH)
    waitress.serve(wsgi_app(runtime), host=host, port=port, threads=threads, ident="taobot")


def serve_socket_mode(runtime: Runtime, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    log.info("connecting to Slack in Socket Mode")
    SocketModeHandler(runtime.app, app_token).start()
