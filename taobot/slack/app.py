"""Wiring: settings + store + catalog -> a Bolt App (served by slack/serve.py, over HTTP or Socket Mode).

Over HTTP, Bolt verifies every request's signature. The Web API client points at SLACK_API_URL when
set, and retries 429s after Retry-After, connection errors and 5xx. The
messenger paces its calls inside Slack's rate limits first (slack/pacing.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import App
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
from taobot.services import Services
from taobot.slack.listeners.after_ack import AfterAck, RetriedDeliveries
from taobot.slack.pacing import Pacer
from taobot.slack.render import render
from taobot.store import Store
from taobot.views import View

log = logging.getLogger(__name__)

# Bolt's listener pool: listeners only ack and hand over (slack/listeners/after_ack.py), so this is about
# how many requests are in flight at once, not how much work is waiting.
LISTENER_THREADS = 16

# What Slack must grant for each thing the code uses; manifest.yml declares
# exactly their union (tests/test_manifest.py compares the two).
SLASH_COMMANDS = ("/tao",)
SCOPES_FOR_METHOD = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "views.open": None,  # needs only the trigger_id of an interaction
    "files.info": "files:read",  # a kubeconfig a person uploads in the credentials form
    # finding a status post after a crash, in a channel, a private channel or a DM thread
    "conversations.replies": ("channels:history", "groups:history", "im:history"),
    "conversations.history": "im:history",  # the final reply's DM copy, looked for after a crash
    "conversations.open": "im:write",  # a launch whose channel is gone goes on in its owner's DM
    "views.publish": None,  # the App Home tab needs no scope, only home_tab_enabled
    "auth.test": None,  # the workspace's URL, once, for the App Home's thread links
}
SCOPES_FOR_EVENT = {
    "app_home_opened": None,  # sent to every app with a Home tab
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
}
COMMAND_SCOPE = "commands"


class CountingRateLimitHandler(RateLimitErrorRetryHandler):
    """Slack's 429 handler (waits Retry-After), counting each 429 in /metrics."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if response is not None and response.status_code == 429:
            from taobot import metrics

            method = request.url.rstrip("/").rsplit("/", 1)[-1]
            metrics.SLACK_ERRORS.labels(method=method, error="ratelimited").inc()
        return super()._can_retry(state=state, request=request, response=response, error=error)


def thread_health(store: Store) -> str:
    """One line for /readyz: which launch threads refuse status posts. One bad thread never makes the bot unready."""
    failing = store.launches_failing_to_post()
    if not failing:
        return "threads: every watched thread accepts status posts"
    errors = Counter(launch.post_error or "error" for launch in failing)
    shown = ", ".join(f"{error} x{count}" for error, count in errors.most_common())
    return f"threads: {len(failing)} refusing status posts ({shown}); each retried with backoff, the others unaffected"


def make_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    kwargs = {"token": token, "timeout": 15}
    if settings.slack_api_url:
        base = settings.slack_api_url
        kwargs["base_url"] = base if base.endswith("/") else base + "/"
    client = WebClient(**kwargs)
    client.retry_handlers.extend(
        [
            CountingRateLimitHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ]
    )
    return client


def redacted(value: object) -> object:
    """Every string in a rendered message, redacted: the one place secrets are removed before Slack sees them."""
    if isinstance(value, str):
        return REDACTOR.redact(value)
    if isinstance(value, list):
        return [redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    return value


def _observe_wait(method: str, seconds: float, capped: bool) -> None:
    from taobot import metrics

    metrics.SLACK_PACING_WAIT.labels(method=method).observe(seconds)
    if capped:
        metrics.SLACK_PACING_CAPPED.labels(method=method).inc()


class SlackMessenger:
    """The Messenger the services talk to: renders views to Block Kit, redacts, and calls the Web API.

    Every call waits its turn in `pacer` (taobot.slack.pacing) first, so posts and updates stay inside
    Slack's per-channel and per-method limits; `views.open` is never paced.
    """

    def __init__(self, client: WebClient, pacer: Pacer | None = None) -> None:
        self.client = client
        self.pacer = pacer or Pacer(on_wait=_observe_wait)
        self._workspace_url: str | None = None

    def _call(self, method: str, **kwargs: object) -> dict:
        from taobot import metrics

        channel = kwargs.get("channel")
        self.pacer.acquire(method, channel if isinstance(channel, str) else None)
        metrics.SLACK_CALLS.labels(method=method).inc()
        try:
            body = {k: v for k, v in kwargs.items() if v is not None}
            return self.client.api_call(method, json=body).data  # type: ignore[return-value]
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            metrics.SLACK_ERRORS.labels(method=method, error=str(error)).inc()
            raise SlackError(f"Slack {method} failed: {error}", method=method, error=error) from exc
        except Exception as exc:  # connection errors after the SDK's own retries
            metrics.SLACK_ERRORS.labels(method=method, error=type(exc).__name__).inc()
            raise SlackError(
                f"Slack {method} failed: {type(exc).__name__}", method=method, error=type(exc).__name__
            ) from exc

    def post(self, channel: str, view: View, thread_ts: str | None = None, metadata: dict | None = None) -> str:
        message = redacted(render(view))
        body = {
            "channel": channel,
            "text": message.get("text", ""),
            "blocks": message.get("blocks"),
            "metadata": metadata,
        }
        if thread_ts:
            body["thread_ts"] = thread_ts
        return str(self._call("chat.postMessage", **body)["ts"])

    def find_posted(
        self, channel: str, thread_ts: str | None, launch_id: str, slot: int, since: float | None = None
    ) -> str | None:
        """The ts of a status post for (launch, slot) already in the thread, found by its metadata.

        With no thread (the final reply's DM copy), the channel's own messages from `since` on are searched.
        """
        cursor = None
        while True:
            if thread_ts is None:
                data = self._call(
                    "conversations.history",
                    channel=channel,
                    oldest=f"{since:.6f}" if since else None,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            else:
                data = self._call(
                    "conversations.replies",
                    channel=channel,
                    ts=thread_ts,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            for message in data.get("messages", []):
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("launch") == launch_id and payload.get("slot") == slot:
                    return str(message["ts"])
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def update(self, channel: str, ts: str, view: View) -> None:
        message = redacted(render(view))
        self._call("chat.update", channel=channel, ts=ts, text=message.get("text", ""), blocks=message.get("blocks"))

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        body = {"channel": channel, "user": user, "text": REDACTOR.redact(text)}
        if thread_ts:
            body["thread_ts"] = thread_ts
        try:
            self._call("chat.postEphemeral", **body)
        except SlackError as exc:
            log.warning("ephemeral message failed: %s", exc.error)

    def open_dm(self, user: str) -> str:
        """The id of the bot's DM with `user`, opened if needed."""
        return str(self._call("conversations.open", users=user)["channel"]["id"])

    def publish_home(self, user: str, view: View) -> None:
        """The person's App Home tab (views.publish, Tier 4), its thread links made from the workspace's URL."""
        from taobot.slack.home import home_view
        from taobot.views import HomeView

        home = home_view(view, self.workspace_url()) if isinstance(view, HomeView) else render(view)
        self._call("views.publish", user_id=user, view=redacted(home))

    def workspace_url(self) -> str:
        """`https://<team>.slack.com/` from auth.test, asked once; "" (links left out) while Slack does not say."""
        if self._workspace_url is None:
            try:
                self._workspace_url = str(self._call("auth.test").get("url") or "")
            except SlackError as exc:
                log.warning("workspace URL unknown (auth.test failed: %s); Home links left out", exc.error)
                return ""
        return self._workspace_url

    def open_view(self, trigger_id: str, modal: dict) -> None:
        self._call("views.open", trigger_id=trigger_id, view=redacted(modal))


@dataclass
class Runtime:
    """Everything a running bot holds, so serve/tests can reach it."""

    app: App
    services: Services
    store: Store
    client: WebClient
    settings: Settings | None = None
    scheduler: object | None = None
    http_mode: bool = True
    last_slack_at: float = 0.0  # when Slack last sent us anything (Socket Mode readiness)
    socket_client: object | None = None
    after_ack: AfterAck | None = None

    def readiness(self) -> tuple[bool, list[str]]:
        """Database writable, scheduler running (and holding the lease), Slack connection healthy."""
        import sqlite3
        import time as _time

        from taobot import scheduler as sched

        lines, ok = [], True
        try:
            conn = sqlite3.connect(str(self.store.path), timeout=2)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            finally:
                conn.close()
            lines.append("database: writable")
        except sqlite3.Error as exc:
            ok = False
            lines.append(f"database: NOT writable ({exc})")
        status = sched.status()
        poll = self.settings.poll_seconds if self.settings else 30
        if self.scheduler is None or not getattr(self.scheduler, "running", False):
            ok = False
            lines.append("scheduler: not running")
        elif status.get("role") == "standby":
            ok = False
            lines.append(
                "scheduler: standby (another instance holds the lease; this one takes over if it stops renewing)"
            )
        elif status.get("last_cycle") and _time.time() - status["last_cycle"] > max(60, poll * 4):
            ok = False
            lines.append(f"scheduler: stalled (last cycle {int(_time.time() - status['last_cycle'])} s ago)")
        else:
            lines.append(f"scheduler: {status.get('role') or 'starting'}")
        lines.append(thread_health(self.store))
        if self.http_mode:
            lines.append("slack: HTTP mode (token verified at start)")
        else:
            last = max(self.last_slack_at, float(getattr(self.socket_client, "last_ping_pong_time", 0) or 0))
            age = _time.time() - last if last else None
            if age is None or age > 120:
                ok = False
                lines.append("slack: no message from Slack " + (f"for {int(age)} s" if age else "yet"))
            else:
                lines.append(f"slack: last message {int(age)} s ago")
        return ok, lines

    def start_monitoring(self) -> None:
        from taobot import scheduler
        from taobot.posting import PostQueue

        self.services.monitor.poster.queue = PostQueue()  # cycles queue posts: Slack's limits never delay a poll
        self.scheduler = scheduler.start(
            str(self.store.path), self.services.monitor, self.store, self.settings.poll_seconds
        )

    def stop(self) -> None:
        from taobot import scheduler

        grace = self.settings.shutdown_grace_seconds if self.settings else 20
        deadline = time.monotonic() + grace
        # One grace for both, side by side: the work of requests already acked, and running preflights and submits.
        closing = threading.Thread(target=self.after_ack.close, args=(grace,), daemon=True) if self.after_ack else None
        if closing is not None:
            closing.start()
        self.services.shutdown(grace)
        if closing is not None:
            closing.join(max(0.0, deadline - time.monotonic()))
        if self.scheduler is not None:
            scheduler.stop(self.scheduler)
            self.scheduler = None
        if self.services.monitor.poster.queue is not None:  # what is left stays pending: posted after the restart
            self.services.monitor.poster.queue.close(max(1.0, deadline - time.monotonic()))
        self.services.monitor.backends.close()


def build_app(
    settings: Settings,
    store: Store,
    catalog: Catalog,
    client: WebClient | None = None,
    http: bool = True,
    policy=None,
) -> Runtime:
    from taobot.policy import policy_for

    policy = policy or policy_for(settings, catalog)  # read once, here: a bad file stops the bot before it serves
    client = client or make_client(settings)
    signing = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = App(
        client=client,
        signing_secret=signing if http else None,
        request_verification_enabled=http,
        token_verification_enabled=True,
        # Bolt answers Slack as soon as a listener acks (events: before the listener runs). Listeners run on
        # this pool and only ack and hand over, so it never fills with slow work and no ack waits for a thread.
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener"),
        ignoring_self_events_enabled=True,
    )
    from taobot.backends import Backends
    from taobot.launcher import Launcher
    from taobot.monitor import Monitor
    from taobot.stuck import StuckRules

    messenger = SlackMessenger(client)
    backends = Backends(settings, policy)
    services = Services(
        store,
        catalog,
        messenger,
        settings.admin_ids,
        settings.intake_expiry_days,
        platform_settings=backends.platform_settings(),  # with the policy's cluster profiles
        launcher=Launcher(store, catalog, backends),
        policy=policy,
        preflight_valid_minutes=settings.preflight_valid_minutes,
    )
    services.monitor = Monitor(store, catalog, backends, messenger, on_state_change=services.refresh_for_launch)
    services.monitor.minute_s = minute = settings.interval_minute_seconds
    scale = minute / 60  # 1, except in tests that shrink time: the stuck thresholds shrink with the intervals
    services.monitor.signals.rules = StuckRules.minutes(
        settings.pending_warn_minutes * scale, settings.no_output_warn_minutes * scale
    )
    services.recover()

    runtime_ref: dict = {}

    after_ack = AfterAck(claim=store.first_delivery)

    app.use(RetriedDeliveries(store.first_delivery, runtime_ref))

    from taobot.slack import workflow_cards
    from taobot.slack.listeners import actions, commands, home, messages, views

    commands.register(app, services, catalog, after_ack)
    messages.register(app, services, catalog, after_ack)
    actions.register(app, services, after_ack)
    views.register(app, services)
    home.register(app, services, after_ack)
    workflow_cards.register(app, services, after_ack)
    from taobot import metrics
    from taobot import scheduler as sched

    metrics.STATE.store = store
    metrics.STATE.scheduler_status = sched.status
    metrics.STATE.after_ack_pending = lambda: after_ack.pending
    runtime = Runtime(
        app=app, services=services, store=store, client=client, settings=settings, http_mode=http, after_ack=after_ack
    )
    runtime_ref["runtime"] = runtime
    return runtime
