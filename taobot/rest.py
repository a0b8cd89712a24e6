"""One small JSON-over-HTTP client (stdlib urllib) for the REST APIs taobot talks to.

The Lepton and Brev preflight checks (`taobot.preflight.lepton`,
`taobot.preflight.brev`) and backends (`taobot.backends.lepton`,
`taobot.backends.brev`) all go through `RestClient`, so these rules hold in
one place:

* Bearer token auth; a request body goes out as JSON, an answer's body is
  parsed as JSON (`Reply.body`, None when empty or not JSON).
* Redirects are never followed: urllib would resend the Authorization header
  to the new host. A 3xx comes back as a `Reply` for the caller to judge.
* Secrets are scrubbed: `Reply.text` and `said` never contain the token or
  any other value given as a secret, even when an API echoes one back.
* A transport failure (refused, timeout, DNS, TLS) is a `Reply` with status
  None and a one-line `failure`; `send` and `call` never raise.
* The retry rule (`RetryRule`), at most one repeat per request: a 429 waits
  what Retry-After asks (capped) and asks once more; a 502/503/504 asks once
  more after a short pause; a 500 is not repeated. A caller switches off the
  half it must not use: preflight reports a 429 at once rather than wait, and
  a backend does not repeat a 5xx (a repeated POST could create a job twice;
  the monitor asks again on its next poll anyway).
* `request` is the backends' form of `call`: transport failures, 5xx and a
  429 left after the retry raise `BackendUnreachable` ("could not ask").
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taobot.errors import BackendUnreachable

MAX_BODY = 1024 * 1024  # bytes of an answer read
TEXT_KEPT = 2000  # characters of the raw body kept in `Reply.text`
USER_AGENT = "taobot"
GATEWAY_STATUSES = (502, 503, 504)
RETRY_PAUSE_S = 0.5  # before repeating a request answered 502/503/504
MAX_RETRY_AFTER_S = 30.0  # the longest Retry-After a 429 is waited for
DEFAULT_RETRY_AFTER_S = 1.0  # the wait after a 429 without a Retry-After in seconds


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would resend the Authorization header to the new host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib API
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


@dataclass(frozen=True)
class Reply:
    """One HTTP exchange: a status with its body, or (status None) a transport failure."""

    method: str
    url: str
    status: int | None = None  # None: no HTTP answer at all, see `failure`
    body: Any = None  # parsed JSON, or None
    text: str = ""  # first part of the raw body, secrets scrubbed
    content_type: str = ""
    failure: str = ""  # what went wrong in transport, for status None
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def where(self) -> str:
        """Method and path, without host or query (for messages)."""
        return f"{self.method} {urllib.parse.urlsplit(self.url).path}"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (of 4 characters or more) replaced by `***`."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


def said(reply: Reply, secrets: Iterable[str], limit: int = 200) -> str:
    """The API's own words for an error answer: one line, secret-free, at most `limit` characters."""
    msg = ""
    body = reply.body
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "code"):
            if isinstance(body.get(key), str) and body[key]:
                msg = body[key]
                break
        errors = body.get("errors")  # Brev's {"errors": [{"message"|"type": ...}]}
        if not msg and isinstance(errors, list) and errors and isinstance(errors[0], dict):
            msg = str(errors[0].get("message") or errors[0].get("type") or "")
    if not msg:
        msg = reply.text
    msg = " ".join(scrub(msg, secrets).split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


@dataclass(frozen=True)
class RetryRule:
    """When a request is sent a second time (never a third)."""

    rate_limited: bool = True  # 429: wait what Retry-After asks, at most max_wait_s
    gateway: bool = True  # 502/503/504: wait pause_s
    pause_s: float = RETRY_PAUSE_S
    max_wait_s: float = MAX_RETRY_AFTER_S
    default_wait_s: float = DEFAULT_RETRY_AFTER_S  # a 429 without Retry-After, or with an HTTP date

    def wait(self, reply: Reply) -> float | None:
        """Seconds to wait before asking again, or None: do not ask again."""
        if reply.status == 429 and self.rate_limited:
            try:
                value = float(reply.retry_after) if reply.retry_after is not None else self.default_wait_s
            except ValueError:  # an HTTP date: not worth parsing for a single retry
                value = self.default_wait_s
            return min(max(value, 0.0), self.max_wait_s)
        if reply.status in GATEWAY_STATUSES and self.gateway:
            return self.pause_s
        return None


def _transport(reason: object, url: str, timeout: float) -> str:
    """One line saying why no HTTP answer came; names the host, never the token."""
    host = urllib.parse.urlsplit(url).netloc
    if isinstance(reason, ConnectionRefusedError):
        return f"connection to {host} refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer from {host} within {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return f"host name `{urllib.parse.urlsplit(url).hostname}` does not resolve"
    if isinstance(reason, ssl.SSLError):
        return f"TLS handshake with {host} failed ({type(reason).__name__})"
    if isinstance(reason, ConnectionError):
        return f"connection to {host} failed ({type(reason).__name__})"
    if isinstance(reason, OSError) and reason.strerror:
        return f"connection to {host} failed ({reason.strerror})"
    return f"request to {host} failed ({reason if isinstance(reason, str) else type(reason).__name__})"


class RestClient:
    """JSON over HTTP with a bearer token against one base URL; see the module docstring for the rules."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float,
        service: str = "the API",
        *,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        retry: RetryRule = RetryRule(),
        user_agent: str = USER_AGENT,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.service = service  # for messages: "the Lepton API"
        self.headers = dict(headers or {})
        self.secrets = tuple(s for s in (token, *secrets) if s)
        self.retry = retry
        self.user_agent = user_agent
        self.on_request = on_request  # called before every request sent (a counter)

    def send(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None) -> Reply:
        """One exchange, no retry; never raises."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", "User-Agent": self.user_agent}
        headers.update(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        if self.on_request:
            self.on_request()
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                return self._reply(method, url, resp.status, resp.headers, resp.read(MAX_BODY))
        except urllib.error.HTTPError as exc:  # any status urllib does not call success, 3xx included
            try:
                raw = exc.read(MAX_BODY) if exc.fp else b""
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                exc.close()
            return self._reply(method, url, exc.code, exc.headers, raw)
        except urllib.error.URLError as exc:
            return Reply(method, url, failure=_transport(exc.reason, url, self.timeout))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return Reply(method, url, failure=_transport(exc, url, self.timeout))

    def _reply(self, method: str, url: str, status: int, headers, raw: bytes) -> Reply:
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = None
        return Reply(
            method,
            url,
            status,
            parsed,
            scrub(text[:TEXT_KEPT], self.secrets),
            content_type=(headers.get("Content-Type", "") if headers else "") or "",
            retry_after=headers.get("Retry-After") if headers else None,
        )

    def call(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None) -> Reply:
        """One exchange, sent once more when the retry rule says so; never raises."""
        reply = self.send(method, path, query, body)
        wait = self.retry.wait(reply)
        if wait is not None:
            time.sleep(wait)
            reply = self.send(method, path, query, body)
        return reply

    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None) -> Reply:
        """`call`, raising `BackendUnreachable` for a transport failure, a 5xx or a 429 left after the retry.

        Every other answer (2xx, 3xx, 4xx) is returned for the caller to judge.
        """
        reply = self.call(method, path, query, body)
        if reply.status == 429:
            wait = f"; it asks to wait {reply.retry_after} s" if reply.retry_after else ""
            twice = " twice" if self.retry.rate_limited else ""
            raise BackendUnreachable(
                f"{self.service} is rate limiting requests (HTTP 429{twice} for {reply.where}{wait}); "
                "this is not a job failure, it will be asked again"
            )
        if reply.status is None:
            raise BackendUnreachable(f"{self.service} could not be asked ({reply.where}): {reply.failure}")
        if reply.status >= 500:
            words = said(reply, self.secrets)
            raise BackendUnreachable(
                f"{self.service} answered HTTP {reply.status} for {reply.where}"
                + (f" ({words})" if words else "")
                + "; this is not a job failure, it will be asked again"
            )
        return reply
