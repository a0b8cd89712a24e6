"""A local HTTP server that behaves like the documented Slack Web API.

Point a real ``slack_sdk.WebClient(token=..., base_url=fake.url)`` at it::

    with FakeSlackAPI(token="xoxb-test") as fake:
        client = WebClient(token="xoxb-test", base_url=fake.url)
        client.chat_postMessage(channel="C0TAOCHAN1", text="hi")
        fake.wait_for("chat.postMessage")

Everything goes over real HTTP (stdlib ``ThreadingHTTPServer`` on 127.0.0.1,
ephemeral port), so the code under test exercises its real client, retry
handlers and error handling.  The server keeps the state Slack would keep
(messages, threads, reactions, views, triggers) and records every call,
including the ones answered with an injected fault.

Wire behaviour followed (docs.slack.dev "Web API basics"):

* ``POST /api/<method>`` (``GET`` with a query string works too), arguments as
  ``application/x-www-form-urlencoded``, ``multipart/form-data`` or
  ``application/json``; query-string and body arguments are merged.
* The token comes from ``Authorization: Bearer …`` or, for non-JSON bodies, a
  ``token`` argument.  Missing → ``not_authed``; wrong → ``invalid_auth``;
  both with HTTP 200.
* Errors are ``{"ok": false, "error": "<code>"}`` with HTTP 200, except
  rate limiting (HTTP 429 + ``Retry-After``) and unknown methods (HTTP 404,
  ``unknown_method``).
* Fields that Slack documents as "JSON-encoded string" (``blocks``,
  ``attachments``, ``view``, ``metadata`` …) are decoded when they arrive as
  strings inside form bodies.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

from . import _ids
from ._blocks import validate_message_blocks, validate_view

__all__ = ["FakeSlackAPI", "RecordedCall", "WaitTimeout", "SlackApiFault"]

#: Arguments Slack documents as "JSON-encoded" strings.
JSON_ENCODED_FIELDS = (
    "blocks",
    "attachments",
    "view",
    "metadata",
    "user_auth_blocks",
    "unfurls",
)

MAX_TEXT_LENGTH = 40000
MAX_ATTACHMENTS = 100
RESPONSE_URL_MAX_USES = 5
VIEW_PUSH_LIMIT = 3

Predicate = Callable[["RecordedCall"], bool]

#: Slack's published limits, enforced after :meth:`FakeSlackAPI.enforce_rate_limits`:
#: ``{method: {"channel" | "workspace": (calls per second, burst)}}``. chat.postMessage
#: allows about one message a second per channel with short bursts; Tier 3 is 50+ a
#: minute per workspace, Tier 4 100+ (docs.slack.dev "Rate limits").
SLACK_RATE_LIMITS: Dict[str, Dict[str, Tuple[float, float]]] = {
    "chat.postMessage": {"channel": (1.0, 5)},
    "chat.update": {"workspace": (50 / 60, 20)},
    "chat.postEphemeral": {"workspace": (100 / 60, 20)},
    "conversations.replies": {"workspace": (50 / 60, 20)},
    "conversations.history": {"workspace": (50 / 60, 20)},
    "conversations.open": {"workspace": (50 / 60, 20)},
    "views.open": {"workspace": (100 / 60, 20)},
    "views.publish": {"workspace": (100 / 60, 20)},
    "chat.getPermalink": {"workspace": (100 / 60, 20)},
}


class WaitTimeout(AssertionError):
    """Raised by :meth:`FakeSlackAPI.wait_for` when the calls never arrive."""


class SlackApiFault(Exception):
    """Internal: a handler's way of answering ``{"ok": false, ...}``."""

    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra


def _invalid_arguments(*messages: str) -> SlackApiFault:
    return SlackApiFault("invalid_arguments", response_metadata={"messages": list(messages)})


@dataclass
class RecordedCall:
    """One HTTP request the fake received.

    ``params`` are the decoded arguments (query string + body; JSON-encoded
    fields such as ``blocks``/``view`` parsed into Python objects).
    ``headers`` keep the names as sent; use :meth:`header` for a
    case-insensitive lookup.  ``status``/``response`` are what the fake
    answered; ``fault`` is ``"ratelimited"``, ``"injected"`` or ``None``.
    """

    method: str
    params: Dict[str, Any]
    headers: Dict[str, str]
    timestamp: float
    status: int = 200
    response: Dict[str, Any] = field(default_factory=dict)
    fault: Optional[str] = None
    content_type: str = ""
    path: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok")) and self.status == 200

    @property
    def error(self) -> Optional[str]:
        return self.response.get("error")

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


@dataclass
class _Fault:
    kind: str  # "ratelimited" | "injected" | "delay"
    error: str = ""
    status: int = 200
    retry_after: int = 1
    seconds: float = 0.0


@dataclass
class _Trigger:
    issued_at: float
    user_id: Optional[str]
    view_id: Optional[str]
    used: bool = False


@dataclass
class _ResponseUrl:
    channel: Optional[str]
    message_ts: Optional[str]
    thread_ts: Optional[str]
    user_id: Optional[str]
    uses: int = 0


def _as_str(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in ("1", "true", "yes")


def _random_id(prefix: str, length: int = 10) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


class _Bucket:
    """A token bucket on the wall clock: ``take()`` is 0 when a call may go, else seconds until one may."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.stamp = self.burst, time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self) -> float:
        self._refill()
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


class FakeSlackAPI:
    """Fake Slack Web API server.  Thread-safe; usable as a context manager.

    :param token: the only bot token accepted (``Authorization: Bearer``).
    :param channels: ``None`` accepts any channel ID; otherwise an iterable of
        channel IDs (or a ``{id: name}`` dict) and any other channel gets
        ``channel_not_found``.
    :param users: ``None`` makes ``users.info`` answer with a generated
        profile for any well-formed user ID; otherwise a ``{id: {...}}`` dict
        of known users (values may hold ``name``, ``real_name``, ``tz``,
        ``is_bot``, ``email``, …) and unknown IDs get ``user_not_found``.
    :param trigger_ttl: seconds a trigger issued by :meth:`issue_trigger_id`
        stays valid (Slack: 3 s); ``None`` disables expiry.
    :param rate_limits: ``True`` enforces :data:`SLACK_RATE_LIMITS`, a dict
        enforces those limits (see :meth:`enforce_rate_limits`); off by default.
    """

    def __init__(
        self,
        token: str = "xoxb-fake",
        *,
        channels: Union[None, Iterable[str], Dict[str, str]] = None,
        users: Optional[Dict[str, Dict[str, Any]]] = None,
        team_id: str = _ids.TEAM_ID,
        team_domain: str = _ids.TEAM_DOMAIN,
        team_name: str = _ids.TEAM_NAME,
        bot_user_id: str = _ids.BOT_USER_ID,
        bot_id: str = _ids.BOT_ID,
        bot_name: str = _ids.BOT_NAME,
        app_id: str = _ids.APP_ID,
        trigger_ttl: Optional[float] = 3.0,
        scopes: Iterable[str] = (
            "chat:write",
            "commands",
            "reactions:write",
            "users:read",
            "channels:history",
            "groups:history",
            "im:history",
            "mpim:history",
        ),
        host: str = "127.0.0.1",
        rate_limits: Union[bool, Dict[str, Dict[str, Tuple[float, float]]]] = False,
    ) -> None:
        self.token = token
        self._rate_limits: Optional[Dict[str, Dict[str, Tuple[float, float]]]] = None
        self.team_id = team_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.app_id = app_id
        self.trigger_ttl = trigger_ttl
        self.scopes = ",".join(scopes)
        self._host = host
        if channels is None:
            self._channels: Optional[Dict[str, str]] = None
        elif isinstance(channels, dict):
            self._channels = dict(channels)
        else:
            self._channels = {c: c for c in channels}
        self._users: Optional[Dict[str, Dict[str, Any]]] = (
            None if users is None else {k: dict(v) for k, v in users.items()}
        )

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._handlers: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.replies": self._conversations_replies,
            "conversations.open": self._conversations_open,
            "reactions.add": self._reactions_add,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "files.info": self._files_info,
            "views.publish": self._views_publish,
            "conversations.history": self._conversations_history,
        }
        self._init_state()
        if rate_limits:
            self.enforce_rate_limits(None if rate_limits is True else rate_limits)

    def _init_state(self) -> None:
        self._buckets: Dict[Tuple[str, Optional[str]], _Bucket] = {}
        self._calls: List[RecordedCall] = []
        self._messages: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self._app_authored: set = set()
        self._ephemeral: List[Dict[str, Any]] = []
        self._views: Dict[str, Dict[str, Any]] = {}
        self._files: Dict[str, Dict[str, Any]] = {}  # file id -> {"meta": file object, "content": bytes}
        self._downloads: List[Dict[str, Any]] = []
        self._home_views: Dict[str, str] = {}  # user id -> the view id of their Home tab
        self._external_ids: Dict[str, str] = {}
        self._triggers: Dict[str, _Trigger] = {}
        self._response_urls: Dict[str, _ResponseUrl] = {}
        self._faults: Dict[str, Deque[_Fault]] = {}
        self._delays: Dict[str, Deque[_Fault]] = {}
        self._last_ts_us = 0
        self._trigger_seq = 0

    # ------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------
    def start(self) -> "FakeSlackAPI":
        if self._server is not None:
            return self
        fake = self

        class Handler(_RequestHandler):
            api = fake

        server = ThreadingHTTPServer((self._host, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeSlackAPI", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> "FakeSlackAPI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlackAPI is not started")
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL for ``WebClient(base_url=...)``; ends with ``/api/``."""
        return f"{self.root_url}/api/"

    # ------------------------------------------------------------------
    # inspection
    # ------------------------------------------------------------------
    @property
    def calls(self) -> List[RecordedCall]:
        """Snapshot of every recorded call, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_for(self, method: str) -> List[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def wait_for(
        self,
        predicate_or_method: Union[str, Predicate],
        count: int = 1,
        timeout: float = 10.0,
    ) -> List[RecordedCall]:
        """Block until at least ``count`` recorded calls match; return them all.

        ``predicate_or_method`` is a method name (``"chat.postMessage"``) or a
        callable taking a :class:`RecordedCall`.  Calls already recorded
        count.  Raises :class:`WaitTimeout` (an ``AssertionError``) listing
        what was received if they do not arrive within ``timeout`` seconds.
        """
        if isinstance(predicate_or_method, str):
            name = predicate_or_method
            predicate: Predicate = lambda c: c.method == name  # noqa: E731
            what = repr(name)
        else:
            predicate = predicate_or_method
            what = getattr(predicate_or_method, "__name__", "predicate")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matched = [c for c in self._calls if predicate(c)]
                if len(matched) >= count:
                    return matched
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = ", ".join(f"{c.method}({c.status}{'' if c.ok else ':' + str(c.error)})" for c in self._calls)
                    raise WaitTimeout(
                        f"timed out after {timeout}s waiting for {count} call(s) matching {what}; "
                        f"got {len(matched)}. Calls received: [{seen}]"
                    )
                self._cond.wait(remaining)

    def messages_in_thread(self, channel: str, thread_ts: str) -> List[Dict[str, Any]]:
        """Current state (after updates/deletes) of a thread: parent first."""
        with self._lock:
            return [copy.deepcopy(m) for m in self._thread_messages(channel, thread_ts)]

    def messages(self, channel: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every live message (top-level and replies), in ``ts`` order."""
        with self._lock:
            keys = sorted(
                (k for k in self._messages if channel is None or k[0] == channel),
                key=lambda k: (k[0], float(k[1])),
            )
            return [self._render_message(k) for k in keys]

    def message(self, channel: str, ts: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            if (channel, ts) not in self._messages:
                return None
            return self._render_message((channel, ts))

    def ephemeral_messages(self, channel: Optional[str] = None, user: Optional[str] = None) -> List[Dict[str, Any]]:
        """Ephemeral messages (``chat.postEphemeral`` and ephemeral response_url posts)."""
        with self._lock:
            return [
                copy.deepcopy(m)
                for m in self._ephemeral
                if (channel is None or m.get("channel") == channel) and (user is None or m.get("user") == user)
            ]

    @property
    def views(self) -> Dict[str, Dict[str, Any]]:
        """``{view_id: view}`` for every view opened/pushed/updated."""
        with self._lock:
            return copy.deepcopy(self._views)

    def get_view(self, view_id: Optional[str] = None, *, external_id: Optional[str] = None) -> Optional[Dict[str, Any]]:
        with self._lock:
            if view_id is None and external_id is not None:
                view_id = self._external_ids.get(external_id)
            view = self._views.get(view_id) if view_id else None
            return copy.deepcopy(view) if view is not None else None

    def reset(self) -> None:
        """Forget calls, messages, views, triggers, response URLs and pending faults."""
        with self._cond:
            self._init_state()
            self._cond.notify_all()

    # ------------------------------------------------------------------
    # set-up helpers (what Slack itself would create)
    # ------------------------------------------------------------------
    def issue_trigger_id(self, user_id: Optional[str] = None, view_id: Optional[str] = None) -> str:
        """A trigger_id as Slack puts in an interaction payload (single use, ``trigger_ttl`` s).

        Pass ``view_id`` for triggers coming from inside a modal (needed to
        ``views.push`` onto that modal's stack).
        """
        with self._lock:
            self._trigger_seq += 1
            trigger = (
                f"{int(time.time() * 1000)}{self._trigger_seq:03d}."
                f"{secrets.randbelow(10**13):013d}.{secrets.token_hex(16)}"
            )
            self._triggers[trigger] = _Trigger(time.monotonic(), user_id, view_id)
            return trigger

    def issue_response_url(
        self,
        channel: Optional[str] = None,
        message_ts: Optional[str] = None,
        *,
        user_id: Optional[str] = None,
        thread_ts: Optional[str] = None,
    ) -> str:
        """A ``response_url`` served by this fake (recorded as method ``"response_url"``).

        Posting to it behaves like Slack: ``replace_original``/``delete_original``
        act on (``channel``, ``message_ts``); ``response_type: in_channel``
        posts to ``channel`` (in ``thread_ts`` if given); otherwise an
        ephemeral message for ``user_id`` is recorded.  Usable 5 times.
        """
        token = secrets.token_urlsafe(18)
        hook_id = f"{self.team_id}/{int(time.time())}{secrets.randbelow(10**4):04d}/{token}"
        with self._lock:
            self._response_urls[hook_id] = _ResponseUrl(channel, message_ts, thread_ts, user_id)
        return f"{self.root_url}/response_url/{hook_id}"

    def seed_message(
        self,
        channel: str,
        text: str = "",
        *,
        user: str = _ids.USER_ID,
        thread_ts: Optional[str] = None,
        blocks: Optional[List[dict]] = None,
    ) -> str:
        """Put a message from a human ``user`` into the workspace; returns its ``ts``.

        The app cannot edit or delete such messages (``cant_update_message``).
        """
        with self._lock:
            if self._channels is not None and channel not in self._channels:
                self._channels[channel] = channel
            ts = self._next_ts()
            msg: Dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "team": self.team_id}
            if blocks is not None:
                msg["blocks"] = copy.deepcopy(blocks)
            if thread_ts:
                msg["thread_ts"] = thread_ts
            self._messages[(channel, ts)] = msg
            return ts

    def add_channel(self, channel_id: str, name: Optional[str] = None) -> None:
        with self._lock:
            if self._channels is None:
                self._channels = {}
            self._channels[channel_id] = name or channel_id

    def add_user(self, user_id: str, **profile: Any) -> None:
        with self._lock:
            if self._users is None:
                self._users = {}
            self._users[user_id] = dict(profile)

    # ------------------------------------------------------------------
    # fault injection
    # ------------------------------------------------------------------
    def add_file(self, user: str, name: str, content: bytes, mimetype: str = "text/plain") -> Dict[str, Any]:
        """A file `user` uploaded (as through a modal's ``file_input``): private to them, shared in no channel.

        Returns the file object a ``view_submission`` carries for it; ``files.info`` answers with the same
        object and ``url_private`` serves ``content`` to the bot token only.
        """
        with self._lock:
            file_id = _random_id("F")
            slug = re.sub(r"[^a-z0-9._-]+", "_", name.lower()) or "file"
            url = f"{self.root_url}/files-pri/{self.team_id}-{file_id}/{slug}"
            now = int(time.time())
            meta = {
                "id": file_id,
                "created": now,
                "timestamp": now,
                "name": name,
                "title": name,
                "mimetype": mimetype,
                "filetype": "text",
                "pretty_type": "Plain Text",
                "user": user,
                "user_team": self.team_id,
                "editable": False,
                "size": len(content),
                "mode": "hosted",
                "is_external": False,
                "is_public": False,
                "public_url_shared": False,
                "url_private": url,
                "url_private_download": url.rsplit("/", 1)[0] + "/download/" + slug,
                "permalink": f"https://{self.team_domain}.slack.com/files/{user}/{file_id}/{slug}",
                "channels": [],
                "groups": [],
                "ims": [],
            }
            self._files[file_id] = {"meta": meta, "content": bytes(content)}
            return copy.deepcopy(meta)

    def file_downloads(self) -> List[Dict[str, Any]]:
        """Every request for a file's bytes (path, whether its token was the bot's, status), oldest first."""
        with self._lock:
            return [dict(d) for d in self._downloads]

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP 429 + ``Retry-After``.

        ``method="*"`` applies to any method.
        """
        with self._lock:
            q = self._faults.setdefault(method, deque())
            for _ in range(times):
                q.append(_Fault("ratelimited", error="ratelimited", status=429, retry_after=int(retry_after)))

    def fail(self, method: str, error: str = "internal_error", times: int = 1, status: int = 200) -> None:
        """Answer the next ``times`` calls to ``method`` with ``{"ok": false, "error": error}``.

        ``status`` is the HTTP status (e.g. 500/503 to exercise server-error retries).
        """
        with self._lock:
            q = self._faults.setdefault(method, deque())
            for _ in range(times):
                q.append(_Fault("injected", error=error, status=int(status)))

    def delay(self, method: str, seconds: float, times: int = 1) -> None:
        """Make the next ``times`` calls to ``method`` take ``seconds`` longer (slow Slack)."""
        with self._lock:
            q = self._delays.setdefault(method, deque())
            for _ in range(times):
                q.append(_Fault("delay", seconds=float(seconds)))

    def enforce_rate_limits(
        self, limits: Optional[Dict[str, Dict[str, Tuple[float, float]]]] = None, *, scale: float = 1.0
    ) -> None:
        """Answer calls beyond Slack's limits with HTTP 429 + ``Retry-After``, as Slack does.

        ``limits`` defaults to :data:`SLACK_RATE_LIMITS`; ``scale`` makes every
        rate that many times faster (tests that must not take minutes). A call
        answered 429 uses no token.  Recorded with ``fault="ratelimited"``.
        """
        chosen = SLACK_RATE_LIMITS if limits is None else limits
        with self._lock:
            self._rate_limits = {
                method: {axis: (rate * scale, burst) for axis, (rate, burst) in axes.items()}
                for method, axes in chosen.items()
            }
            self._buckets = {}

    def stop_enforcing_rate_limits(self) -> None:
        with self._lock:
            self._rate_limits = None
            self._buckets = {}

    def _over_limit(self, method: str, params: Dict[str, Any]) -> Optional[int]:
        """Seconds to put in Retry-After when this call is over a limit, else None (and its tokens are taken)."""
        axes = (self._rate_limits or {}).get(method)
        if not axes:
            return None
        buckets = []
        for axis, (rate, burst) in axes.items():
            key = _as_str(params.get("channel")) if axis == "channel" else None
            if axis == "channel" and not key:
                continue
            bucket = self._buckets.get((method + ":" + axis, key))
            if bucket is None:
                bucket = self._buckets[(method + ":" + axis, key)] = _Bucket(rate, burst)
            buckets.append(bucket)
        wait = max((b.wait() for b in buckets), default=0.0)
        if wait > 0:
            return max(1, int(wait + 0.999))
        for bucket in buckets:
            bucket.take()
        return None

    def _pop(self, table: Dict[str, Deque[_Fault]], method: str) -> Optional[_Fault]:
        for key in (method, "*"):
            q = table.get(key)
            if q:
                return q.popleft()
        return None

    # ------------------------------------------------------------------
    # request processing (called by the HTTP handler threads)
    # ------------------------------------------------------------------
    def _process_api(
        self,
        method: str,
        params: Dict[str, Any],
        headers: Dict[str, str],
        content_type: str,
        path: str,
        parse_error: Optional[str],
        body_is_json: bool,
    ) -> Tuple[int, Dict[str, Any], Dict[str, str]]:
        with self._lock:
            pending_delay = self._pop(self._delays, method)
        if pending_delay is not None:
            time.sleep(pending_delay.seconds)

        extra_headers: Dict[str, str] = {}
        fault_kind: Optional[str] = None
        status = 200
        with self._cond:
            if method not in self._handlers and method not in self._faults:
                status, body = 404, {"ok": False, "error": "unknown_method", "req_method": method}
            elif parse_error is not None:
                body = {"ok": False, "error": parse_error}
            else:
                auth_error = self._check_auth(params, headers, body_is_json)
                if auth_error is not None:
                    body = {"ok": False, "error": auth_error}
                else:
                    limited = self._over_limit(method, params) if method in self._handlers else None
                    fault = self._pop(self._faults, method) if limited is None else None
                    if limited is not None:
                        fault_kind, status = "ratelimited", 429
                        body = {"ok": False, "error": "ratelimited"}
                        extra_headers["Retry-After"] = str(limited)
                    elif fault is not None:
                        fault_kind = fault.kind
                        status = fault.status
                        body = {"ok": False, "error": fault.error}
                        if fault.kind == "ratelimited":
                            extra_headers["Retry-After"] = str(fault.retry_after)
                    elif method not in self._handlers:
                        status, body = 404, {"ok": False, "error": "unknown_method", "req_method": method}
                    else:
                        try:
                            body = self._handlers[method](params)
                        except SlackApiFault as exc:
                            status = exc.status
                            body = {"ok": False, "error": exc.error, **exc.extra}
            extra_headers.setdefault("X-OAuth-Scopes", self.scopes)
            self._record(method, params, headers, content_type, path, status, body, fault_kind)
        return status, body, extra_headers

    def _process_response_url(
        self, hook_id: str, params: Dict[str, Any], headers: Dict[str, str], content_type: str, path: str
    ) -> Tuple[int, Dict[str, Any]]:
        with self._cond:
            hook = self._response_urls.get(hook_id)
            status, body = 200, {"ok": True}
            if hook is None:
                status, body = 404, {"ok": False, "error": "expired_url"}
            elif hook.uses >= RESPONSE_URL_MAX_USES:
                status, body = 404, {"ok": False, "error": "used_url"}
            else:
                try:
                    self._apply_response_url(hook, params)
                    hook.uses += 1
                except SlackApiFault as exc:
                    status, body = exc.status, {"ok": False, "error": exc.error, **exc.extra}
            self._record("response_url", params, headers, content_type, path, status, body, None)
        return status, body

    def _record(
        self,
        method: str,
        params: Dict[str, Any],
        headers: Dict[str, str],
        content_type: str,
        path: str,
        status: int,
        body: Dict[str, Any],
        fault: Optional[str],
    ) -> None:
        self._calls.append(
            RecordedCall(
                method=method,
                params=copy.deepcopy(params),
                headers=dict(headers),
                timestamp=time.time(),
                status=status,
                response=copy.deepcopy(body),
                fault=fault,
                content_type=content_type,
                path=path,
            )
        )
        self._cond.notify_all()

    def _check_auth(self, params: Dict[str, Any], headers: Dict[str, str], body_is_json: bool) -> Optional[str]:
        token: Optional[str] = None
        for key, value in headers.items():
            if key.lower() == "authorization":
                scheme, _, credentials = value.partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    token = credentials.strip()
                else:
                    return "invalid_auth"
                break
        if token is None and not body_is_json:
            token = _as_str(params.get("token")) or None
        if token is None:
            return "not_authed"
        if token != self.token:
            return "invalid_auth"
        return None

    # ------------------------------------------------------------------
    # state helpers (lock held)
    # ------------------------------------------------------------------
    def _next_ts(self) -> str:
        now_us = int(time.time() * 1_000_000) // 100 * 100
        self._last_ts_us = max(self._last_ts_us + 100, now_us)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _check_channel(self, channel: Optional[str]) -> str:
        if not channel:
            raise SlackApiFault("channel_not_found")
        if self._channels is not None and channel not in self._channels:
            raise SlackApiFault("channel_not_found")
        return channel

    def _bot_profile(self) -> Dict[str, Any]:
        return {
            "id": self.bot_id,
            "app_id": self.app_id,
            "name": self.bot_name,
            "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png"},
            "deleted": False,
            "updated": 1700000000,
            "team_id": self.team_id,
        }

    def _validate_content(self, params: Dict[str, Any], require_content: bool = True) -> Dict[str, Any]:
        """Validate text/blocks/attachments like chat.postMessage; returns the normalised fields."""
        out: Dict[str, Any] = {}
        text = params.get("text")
        blocks = params.get("blocks")
        attachments = params.get("attachments")
        if isinstance(blocks, str):
            raise SlackApiFault("invalid_blocks_format")
        if isinstance(attachments, str):
            raise SlackApiFault("invalid_attachments")
        if text is not None:
            text = _as_str(text)
            if len(text) > MAX_TEXT_LENGTH:
                raise SlackApiFault("msg_too_long")
            out["text"] = text
        if blocks is not None:
            errors = validate_message_blocks(blocks)
            if errors:
                raise SlackApiFault("invalid_blocks", errors=errors, response_metadata={"messages": errors})
            out["blocks"] = self._with_block_ids(blocks)
        if attachments is not None:
            if not isinstance(attachments, list):
                raise SlackApiFault("invalid_attachments")
            if len(attachments) > MAX_ATTACHMENTS:
                raise SlackApiFault("too_many_attachments")
            out["attachments"] = copy.deepcopy(attachments)
        if require_content and not (text or blocks or attachments):
            raise SlackApiFault("no_text")
        return out

    @staticmethod
    def _with_block_ids(blocks: List[dict]) -> List[dict]:
        # Slack assigns a block_id to every block that was sent without one.
        result = copy.deepcopy(blocks)
        for block in result:
            if isinstance(block, dict) and "block_id" not in block:
                block["block_id"] = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(5))
        return result

    def _new_app_message(self, channel: str, content: Dict[str, Any], params: Dict[str, Any]) -> Dict[str, Any]:
        ts = self._next_ts()
        msg: Dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": content.get("text", ""),
            "ts": ts,
            "team": self.team_id,
            "bot_profile": self._bot_profile(),
        }
        for key in ("blocks", "attachments"):
            if key in content:
                msg[key] = content[key]
        thread_ts = _as_str(params.get("thread_ts"))
        if thread_ts:
            parent = self._messages.get((channel, thread_ts))
            if parent is not None and parent.get("thread_ts") and parent["thread_ts"] != thread_ts:
                thread_ts = parent["thread_ts"]  # replying to a reply lands in the same thread
            msg["thread_ts"] = thread_ts
            if _as_bool(params.get("reply_broadcast")):
                msg["subtype"] = "thread_broadcast"
        if params.get("metadata") is not None:
            msg["metadata"] = copy.deepcopy(params["metadata"])
        self._messages[(channel, ts)] = msg
        self._app_authored.add((channel, ts))
        return msg

    def _thread_keys(self, channel: str, root_ts: str) -> List[Tuple[str, str]]:
        keys = [
            k
            for k, m in self._messages.items()
            if k[0] == channel and (k[1] == root_ts or m.get("thread_ts") == root_ts)
        ]
        return sorted(keys, key=lambda k: float(k[1]))

    def _thread_messages(self, channel: str, thread_ts: str) -> List[Dict[str, Any]]:
        root = self._messages.get((channel, thread_ts))
        root_ts = thread_ts
        if root is not None and root.get("thread_ts"):
            root_ts = root["thread_ts"]
        return [self._render_message(k) for k in self._thread_keys(channel, root_ts)]

    def _render_message(self, key: Tuple[str, str]) -> Dict[str, Any]:
        channel, ts = key
        msg = copy.deepcopy(self._messages[key])
        thread_ts = msg.get("thread_ts")
        if thread_ts and thread_ts != ts:
            parent = self._messages.get((channel, thread_ts))
            if parent is not None:
                msg["parent_user_id"] = parent.get("user")
        else:
            replies = [
                m for k, m in self._messages.items() if k[0] == channel and k[1] != ts and m.get("thread_ts") == ts
            ]
            if replies:
                replies.sort(key=lambda m: float(m["ts"]))
                users: List[str] = []
                for r in replies:
                    if r.get("user") not in users:
                        users.append(r.get("user"))
                msg.update(
                    {
                        "thread_ts": ts,
                        "reply_count": len(replies),
                        "reply_users_count": len(users),
                        "latest_reply": replies[-1]["ts"],
                        "reply_users": users,
                        "is_locked": False,
                        "subscribed": False,
                    }
                )
        return msg

    def _lookup_message(self, channel: str, ts: Optional[str]) -> Dict[str, Any]:
        if not ts or (channel, ts) not in self._messages:
            raise SlackApiFault("message_not_found")
        return self._messages[(channel, ts)]

    def _update_message(self, channel: str, ts: str, content: Dict[str, Any]) -> Dict[str, Any]:
        msg = self._messages[(channel, ts)]
        for key in ("text", "blocks", "attachments"):
            if key in content:
                msg[key] = content[key]
        msg["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return msg

    def _delete_message(self, channel: str, ts: str) -> None:
        self._messages.pop((channel, ts), None)
        self._app_authored.discard((channel, ts))

    def _user_object(self, user_id: str, include_locale: bool) -> Dict[str, Any]:
        if user_id == self.bot_user_id:
            known: Dict[str, Any] = {"name": self.bot_name, "real_name": self.bot_name, "is_bot": True}
        elif self._users is None:
            if not (user_id[:1] in ("U", "W") and user_id[1:].isalnum() and user_id.isupper() and len(user_id) >= 3):
                raise SlackApiFault("user_not_found")
            known = {}
        elif user_id in self._users:
            known = self._users[user_id]
        else:
            raise SlackApiFault("user_not_found")
        name = known.get("name") or f"user.{user_id.lower()}"
        real_name = known.get("real_name") or name.replace(".", " ").title()
        display_name = known.get("display_name", name)
        tz = known.get("tz", "Europe/London")
        profile = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": display_name,
            "display_name_normalized": display_name,
            "first_name": real_name.split(" ")[0],
            "last_name": " ".join(real_name.split(" ")[1:]),
            "status_text": "",
            "status_emoji": "",
            "avatar_hash": "g" + user_id.lower()[:11],
            "image_48": f"https://secure.gravatar.com/avatar/{user_id.lower()}.jpg?s=48",
            "image_72": f"https://secure.gravatar.com/avatar/{user_id.lower()}.jpg?s=72",
            "team": self.team_id,
        }
        if known.get("email"):
            profile["email"] = known["email"]
        if known.get("is_bot"):
            profile["bot_id"] = known.get("bot_id", self.bot_id if user_id == self.bot_user_id else _random_id("B"))
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": bool(known.get("deleted", False)),
            "color": "9f69e7",
            "real_name": real_name,
            "tz": tz,
            "tz_label": known.get("tz_label", tz),
            "tz_offset": int(known.get("tz_offset", 0)),
            "profile": profile,
            "is_admin": bool(known.get("is_admin", False)),
            "is_owner": bool(known.get("is_owner", False)),
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": bool(known.get("is_bot", False)),
            "is_app_user": False,
            "updated": 1700000000,
            "is_email_confirmed": True,
        }
        if include_locale:
            user["locale"] = known.get("locale", "en-US")
        return user

    # ------------------------------------------------------------------
    # Web API methods (lock held)
    # ------------------------------------------------------------------
    def _api_test(self, params: Dict[str, Any]) -> Dict[str, Any]:
        args = {k: v for k, v in params.items() if k != "token"}
        return {"ok": True, "args": args} if args else {"ok": True}

    def _auth_test(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: Dict[str, Any]) -> Dict[str, Any]:
        channel = self._check_channel(_as_str(params.get("channel")))
        content = self._validate_content(params)
        msg = self._new_app_message(channel, content, params)
        return {"ok": True, "channel": channel, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _chat_update(self, params: Dict[str, Any]) -> Dict[str, Any]:
        channel = self._check_channel(_as_str(params.get("channel")))
        ts = _as_str(params.get("ts"))
        if not ts:
            raise _invalid_arguments("[ERROR] missing required field: ts")
        self._lookup_message(channel, ts)
        if (channel, ts) not in self._app_authored:
            raise SlackApiFault("cant_update_message")
        content = self._validate_content(params)
        msg = self._update_message(channel, ts, content)
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": msg.get("text", ""),
            "message": self._render_message((channel, ts)),
        }

    def _chat_post_ephemeral(self, params: Dict[str, Any]) -> Dict[str, Any]:
        channel = self._check_channel(_as_str(params.get("channel")))
        user = _as_str(params.get("user"))
        if not user:
            raise _invalid_arguments("[ERROR] missing required field: user")
        if self._users is not None and user not in self._users:
            raise SlackApiFault("user_not_in_channel")
        content = self._validate_content(params)
        ts = self._next_ts()
        eph = {"type": "message", "channel": channel, "user": user, "ts": ts, "text": content.get("text", "")}
        for key in ("blocks", "attachments"):
            if key in content:
                eph[key] = content[key]
        if params.get("thread_ts"):
            eph["thread_ts"] = _as_str(params["thread_ts"])
        self._ephemeral.append(eph)
        return {"ok": True, "message_ts": ts}

    def _chat_get_permalink(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """A message's link as Slack makes it: `/archives/<channel>/p<ts without the dot>`, and for a reply
        in a thread `?thread_ts=<root>&cid=<channel>`; an unknown channel or message is refused."""
        channel = self._check_channel(_as_str(params.get("channel")))
        ts = _as_str(params.get("message_ts"))
        if not ts:
            raise _invalid_arguments("[ERROR] missing required field: message_ts")
        msg = self._lookup_message(channel, ts)
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        root = msg.get("thread_ts")
        if root and root != ts:
            link += f"?thread_ts={root}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _chat_delete(self, params: Dict[str, Any]) -> Dict[str, Any]:
        channel = self._check_channel(_as_str(params.get("channel")))
        ts = _as_str(params.get("ts"))
        self._lookup_message(channel, ts)
        if (channel, ts) not in self._app_authored:
            raise SlackApiFault("cant_delete_message")
        self._delete_message(channel, ts)  # type: ignore[arg-type]
        return {"ok": True, "channel": channel, "ts": ts}

    def _conversations_replies(self, params: Dict[str, Any]) -> Dict[str, Any]:
        channel = self._check_channel(_as_str(params.get("channel")))
        ts = _as_str(params.get("ts"))
        if not ts or (channel, ts) not in self._messages:
            raise SlackApiFault("thread_not_found")
        messages = self._thread_messages(channel, ts)
        oldest = params.get("oldest")
        latest = params.get("latest")
        inclusive = _as_bool(params.get("inclusive"))
        if oldest is not None or latest is not None:
            lo = float(oldest) if oldest is not None else float("-inf")
            hi = float(latest) if latest is not None else float("inf")

            def keep(m: Dict[str, Any]) -> bool:
                t = float(m["ts"])
                return (lo <= t <= hi) if inclusive else (lo < t < hi)

            messages = [m for m in messages if keep(m)]
        offset, limit = _page_window(params, default=1000, most=1000)
        page = messages[offset : offset + limit]
        has_more = offset + limit < len(messages)
        body: Dict[str, Any] = {"ok": True, "messages": page, "has_more": has_more}
        if has_more:
            next_cursor = base64.b64encode(f"offset:{offset + limit}".encode()).decode()
            body["response_metadata"] = {"next_cursor": next_cursor}
        return body

    def _conversations_history(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """A channel's top-level messages, newest first (thread replies are not part of history)."""
        channel = self._check_channel(_as_str(params.get("channel")))
        lo = float(params["oldest"]) if params.get("oldest") is not None else float("-inf")
        hi = float(params["latest"]) if params.get("latest") is not None else float("inf")
        inclusive = _as_bool(params.get("inclusive"))
        keys = [
            k
            for k, m in self._messages.items()
            if k[0] == channel
            and (not m.get("thread_ts") or m.get("thread_ts") == k[1])
            and ((lo <= float(k[1]) <= hi) if inclusive else (lo < float(k[1]) < hi))
        ]
        keys.sort(key=lambda k: float(k[1]), reverse=True)
        offset, limit = _page_window(params, default=100, most=999)
        page = [self._render_message(k) for k in keys[offset : offset + limit]]
        if not _as_bool(params.get("include_all_metadata")):
            for message in page:
                message.pop("metadata", None)
        has_more = offset + limit < len(keys)
        body: Dict[str, Any] = {"ok": True, "messages": page, "has_more": has_more}
        if has_more:
            body["response_metadata"] = {"next_cursor": base64.b64encode(f"offset:{offset + limit}".encode()).decode()}
        return body

    def _conversations_open(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """The DM between the bot and one user (``users``), as Slack answers it; several users are a group DM."""
        users = [u.strip() for u in (_as_str(params.get("users")) or "").split(",") if u.strip()]
        if not users:
            raise _invalid_arguments("[ERROR] missing required field: users")
        if len(users) > 1:
            raise SlackApiFault("not_implemented")
        if not re.fullmatch(r"[UW][A-Z0-9]{2,}", users[0]):
            raise SlackApiFault("user_not_found")
        dm = "D" + hashlib.sha256(users[0].encode()).hexdigest()[:10].upper()
        if self._channels is not None:
            self._channels.setdefault(dm, dm)
        return {"ok": True, "channel": {"id": dm, "is_im": True, "user": users[0]}}

    def _reactions_add(self, params: Dict[str, Any]) -> Dict[str, Any]:
        channel = _as_str(params.get("channel"))
        timestamp = _as_str(params.get("timestamp"))
        if not channel or not timestamp:
            raise SlackApiFault("no_item_specified")
        self._check_channel(channel)
        name = (_as_str(params.get("name")) or "").strip(":")
        if not name or any(ch.isspace() or ch == ":" for ch in name):
            raise SlackApiFault("invalid_name")
        msg = self._lookup_message(channel, timestamp)
        reactions = msg.setdefault("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name:
                if self.bot_user_id in reaction["users"]:
                    raise SlackApiFault("already_reacted")
                reaction["users"].append(self.bot_user_id)
                reaction["count"] += 1
                break
        else:
            reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
        return {"ok": True}

    # -- files --------------------------------------------------------
    def _files_info(self, params: Dict[str, Any]) -> Dict[str, Any]:
        file_id = _as_str(params.get("file"))
        if not file_id:
            raise _invalid_arguments("missing required field: file")
        stored = self._files.get(file_id)
        if stored is None:
            raise SlackApiFault("file_not_found")
        return {"ok": True, "file": copy.deepcopy(stored["meta"]), "comments": [], "response_metadata": {}}

    def _serve_file(self, path: str, headers: Dict[str, str]) -> Tuple[int, bytes, str]:
        """GET of a url_private(_download): the bytes for the bot token; Slack's sign-in page for anyone else."""
        match = re.match(r"^/files-pri/([A-Z0-9]+)-(F[A-Z0-9]+)/(?:download/)?[^/]+$", path)
        token = None
        for key, value in headers.items():
            if key.lower() == "authorization":
                scheme, _, rest = value.partition(" ")
                token = rest.strip() if scheme.lower() == "bearer" else None
        with self._lock:
            stored = self._files.get(match.group(2)) if match and match.group(1) == self.team_id else None
            if stored is None:
                status, body, kind = 404, b"file not found", "text/plain"
            elif token != self.token:
                # Slack answers an unauthenticated file URL with its sign-in page, not with an error status
                status, body, kind = 200, b"<!DOCTYPE html><html><title>Sign in | Slack</title></html>", "text/html"
            else:
                status, body, kind = 200, stored["content"], stored["meta"]["mimetype"]
            self._downloads.append({"path": path, "bot_token": token == self.token, "status": status})
        return status, body, kind

    def _users_info(self, params: Dict[str, Any]) -> Dict[str, Any]:
        user_id = _as_str(params.get("user"))
        if not user_id:
            raise SlackApiFault("user_not_found")
        return {"ok": True, "user": self._user_object(user_id, _as_bool(params.get("include_locale")))}

    # -- views --------------------------------------------------------
    def _exchange_trigger(self, params: Dict[str, Any]) -> _Trigger:
        trigger_id = _as_str(params.get("trigger_id") or params.get("interactivity_pointer"))
        if not trigger_id:
            raise _invalid_arguments("[ERROR] missing required field: trigger_id")
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise SlackApiFault("invalid_trigger_id")
        if trigger.used:
            raise SlackApiFault("exchanged_trigger_id")
        if self.trigger_ttl is not None and time.monotonic() - trigger.issued_at > self.trigger_ttl:
            raise SlackApiFault("expired_trigger_id")
        trigger.used = True
        return trigger

    def _check_view(self, params: Dict[str, Any], allowed_types=("modal",)) -> Dict[str, Any]:
        view = params.get("view")
        if view is None:
            raise _invalid_arguments("[ERROR] missing required field: view")
        if isinstance(view, str):
            raise _invalid_arguments("[ERROR] must be a valid JSON object [json-pointer:/view]")
        errors = validate_view(view, allowed_types)
        if errors:
            raise _invalid_arguments(*errors)
        return view

    def _store_view(
        self,
        submitted: Dict[str, Any],
        *,
        view_id: Optional[str] = None,
        root_view_id: Optional[str] = None,
        previous_view_id: Optional[str] = None,
        state: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        view_id = view_id or _random_id("V")
        view = {
            "id": view_id,
            "team_id": self.team_id,
            "type": submitted.get("type", "modal"),
            "title": copy.deepcopy(submitted.get("title")),
            "submit": copy.deepcopy(submitted.get("submit")),
            "close": copy.deepcopy(submitted.get("close")),
            "blocks": self._with_block_ids(submitted.get("blocks", [])),
            "private_metadata": submitted.get("private_metadata", ""),
            "callback_id": submitted.get("callback_id", ""),
            "external_id": submitted.get("external_id", ""),
            "state": state if state is not None else {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(submitted.get("clear_on_close", False)),
            "notify_on_close": bool(submitted.get("notify_on_close", False)),
            "previous_view_id": previous_view_id,
            "root_view_id": root_view_id or view_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        if view["type"] == "home":
            for key in ("title", "submit", "close"):
                view.pop(key)
        old = self._views.get(view_id)
        if old is not None and old.get("external_id"):
            self._external_ids.pop(old["external_id"], None)
        if view["external_id"]:
            self._external_ids[view["external_id"]] = view_id
        self._views[view_id] = view
        return copy.deepcopy(view)

    def _check_external_id_free(self, view: Dict[str, Any], own_view_id: Optional[str] = None) -> None:
        external_id = view.get("external_id")
        if external_id and self._external_ids.get(external_id) not in (None, own_view_id):
            raise SlackApiFault("duplicate_external_id")

    def _views_open(self, params: Dict[str, Any]) -> Dict[str, Any]:
        view = self._check_view(params)
        self._check_external_id_free(view)
        self._exchange_trigger(params)
        return {"ok": True, "view": self._store_view(view)}

    def _views_push(self, params: Dict[str, Any]) -> Dict[str, Any]:
        view = self._check_view(params)
        self._check_external_id_free(view)
        trigger = self._exchange_trigger(params)
        root_view_id = previous_view_id = None
        if trigger.view_id and trigger.view_id in self._views:
            current = self._views[trigger.view_id]
            root_view_id = current["root_view_id"]
            previous_view_id = trigger.view_id
            depth = sum(1 for v in self._views.values() if v.get("root_view_id") == root_view_id)
            if depth >= VIEW_PUSH_LIMIT:
                raise SlackApiFault("push_limit_reached")
        return {
            "ok": True,
            "view": self._store_view(view, root_view_id=root_view_id, previous_view_id=previous_view_id),
        }

    def _views_update(self, params: Dict[str, Any]) -> Dict[str, Any]:
        view_id = _as_str(params.get("view_id"))
        external_id = _as_str(params.get("external_id"))
        if not view_id and not external_id:
            raise _invalid_arguments("[ERROR] either view_id or external_id is required")
        view = self._check_view(params, allowed_types=("modal", "home"))
        if not view_id:
            view_id = self._external_ids.get(external_id or "")
        current = self._views.get(view_id or "")
        if current is None:
            raise SlackApiFault("not_found")
        expected_hash = _as_str(params.get("hash"))
        if expected_hash and expected_hash != current["hash"]:
            raise SlackApiFault("hash_conflict")
        self._check_external_id_free(view, own_view_id=current["id"])
        stored = self._store_view(
            view,
            view_id=current["id"],
            root_view_id=current["root_view_id"],
            previous_view_id=current["previous_view_id"],
            state=current["state"],
        )
        return {"ok": True, "view": stored}

    def _views_publish(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """A user's Home tab: one view per user, replaced on each publish (a stale `hash` is refused)."""
        user_id = _as_str(params.get("user_id"))
        if not user_id:
            raise _invalid_arguments("[ERROR] missing required field: user_id")
        view = self._check_view(params, allowed_types=("home",))
        current_id = self._home_views.get(user_id)
        current = self._views.get(current_id or "")
        expected_hash = _as_str(params.get("hash"))
        if expected_hash and current is not None and expected_hash != current["hash"]:
            raise SlackApiFault("hash_conflict")
        stored = self._store_view(view, view_id=current_id)
        self._home_views[user_id] = stored["id"]
        return {"ok": True, "view": stored}

    def home_view(self, user_id: str) -> Optional[Dict[str, Any]]:
        """The Home tab last published for `user_id`, as Slack would show it."""
        with self._lock:
            view_id = self._home_views.get(user_id)
            return copy.deepcopy(self._views[view_id]) if view_id in self._views else None

    # -- response_url ---------------------------------------------------
    def _apply_response_url(self, hook: _ResponseUrl, params: Dict[str, Any]) -> None:
        original = (hook.channel, hook.message_ts) if hook.channel and hook.message_ts else None
        if _as_bool(params.get("delete_original")):
            if original is None or original not in self._messages:
                raise SlackApiFault("message_not_found")
            self._delete_message(*original)  # type: ignore[arg-type]
            return
        content = self._validate_content(params)
        if _as_bool(params.get("replace_original")):
            if original is None or original not in self._messages:
                raise SlackApiFault("message_not_found")
            self._update_message(original[0], original[1], content)  # type: ignore[index]
            return
        if params.get("response_type") == "in_channel":
            if not hook.channel:
                raise SlackApiFault("channel_not_found")
            post = dict(params)
            if hook.thread_ts and not post.get("thread_ts"):
                post["thread_ts"] = hook.thread_ts
            self._new_app_message(hook.channel, content, post)
            return
        eph = {"type": "message", "channel": hook.channel, "user": hook.user_id, "ts": self._next_ts()}
        eph["text"] = content.get("text", "")
        for key in ("blocks", "attachments"):
            if key in content:
                eph[key] = content[key]
        if hook.thread_ts:
            eph["thread_ts"] = hook.thread_ts
        self._ephemeral.append(eph)


# ----------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------
def _page_window(params: Dict[str, Any], default: int, most: int) -> Tuple[int, int]:
    """(offset, limit) of a paginated read: `limit` clamped to 1..most, `cursor` as this fake issues it."""
    try:
        limit = max(1, min(int(params.get("limit") or default), most))
    except ValueError:
        raise _invalid_arguments("[ERROR] must be an integer [json-pointer:/limit]")
    cursor = _as_str(params.get("cursor"))
    if not cursor:
        return 0, limit
    try:
        return int(base64.b64decode(cursor).decode().split(":", 1)[1]), limit
    except Exception:
        raise SlackApiFault("invalid_cursor")


def _decode_json_fields(params: Dict[str, Any]) -> None:
    """Parse JSON-encoded string arguments in place (undecodable ones are left as strings)."""
    for key in JSON_ENCODED_FIELDS:
        value = params.get(key)
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("[") or stripped.startswith("{"):
                try:
                    params[key] = json.loads(stripped)
                except ValueError:
                    pass  # left as a string; the method reports its own error
            elif stripped == "":
                params.pop(key)


def _parse_multipart(body: bytes, content_type: str) -> Dict[str, Any]:
    message = BytesParser(policy=HTTP_POLICY).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    params: Dict[str, Any] = {}
    if not message.is_multipart():
        return params
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename:
            params[name] = {"filename": filename, "content": payload}
        else:
            params[name] = payload.decode("utf-8", errors="replace")
    return params


class _RequestHandler(BaseHTTPRequestHandler):
    api: FakeSlackAPI  # set on the per-server subclass
    server_version = "FakeSlackAPI/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence default stderr logging
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        content_type = self.headers.get("Content-Type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        headers = dict(self.headers.items())

        params: Dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        parse_error: Optional[str] = None
        body_is_json = False
        if raw:
            if mime == "application/json":
                body_is_json = True
                try:
                    decoded = json.loads(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    parse_error = "invalid_json"
                else:
                    if isinstance(decoded, dict):
                        params.update(decoded)
                    else:
                        parse_error = "json_not_object"
            elif mime == "multipart/form-data":
                params.update(_parse_multipart(raw, content_type))
            else:  # application/x-www-form-urlencoded (and Slack's lenient default)
                params.update(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        _decode_json_fields(params)

        if parts.path.startswith("/api/"):
            method = parts.path[len("/api/") :].strip("/")
            status, body, extra = self.api._process_api(
                method, params, headers, content_type, parts.path, parse_error, body_is_json
            )
            self._send(status, body, extra)
        elif parts.path.startswith("/files-pri/") and self.command == "GET":
            status, payload, kind = self.api._serve_file(parts.path, headers)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        elif parts.path.startswith("/response_url/"):
            hook_id = parts.path[len("/response_url/") :]
            if parse_error is not None:
                self._send(400, {"ok": False, "error": "invalid_payload"}, {})
                return
            status, body = self.api._process_response_url(hook_id, params, headers, content_type, parts.path)
            self._send(status, body, {})
        else:
            self._send(404, {"ok": False, "error": "not_found"}, {})

    def _send(self, status: int, body: Dict[str, Any], extra_headers: Dict[str, str]) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in extra_headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)
