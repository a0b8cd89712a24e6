"""Build and send Slack-signed HTTP requests to the bot's ``/slack/events`` endpoint.

Requests are shaped the way Slack sends them:

* slash commands: ``application/x-www-form-urlencoded`` fields
  (``token``, ``team_id``, ``team_domain``, ``channel_id``, ``channel_name``,
  ``user_id``, ``user_name``, ``command``, ``text``, ``api_app_id``,
  ``is_enterprise_install``, ``response_url``, ``trigger_id``);
* Events API: ``application/json`` ``event_callback`` envelopes
  (and ``url_verification``); retries carry ``X-Slack-Retry-Num`` /
  ``X-Slack-Retry-Reason``;
* interactivity (``block_actions``, ``view_submission``):
  ``application/x-www-form-urlencoded`` with a single ``payload=<json>`` field.

Every request is signed with the v0 scheme (docs.slack.dev "Verifying
requests from Slack"): ``X-Slack-Signature: v0=HMAC_SHA256(secret,
"v0:<timestamp>:<raw body>")`` and ``X-Slack-Request-Timestamp``.

Each ``post_*`` returns a :class:`SlackHTTPResponse` ``(status_code, headers,
body, elapsed)`` (a named tuple, so it unpacks into four values); ``elapsed``
is the wall time in seconds to the full response, for checking Slack's
3-second acknowledgement deadline.  HTTP error statuses are returned, not
raised.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Union
from urllib.parse import urlencode

from . import _ids

__all__ = [
    "SlackHTTPResponse",
    "sign",
    "post_signed",
    "post_command",
    "post_event",
    "post_block_action",
    "post_view_submission",
    "post_url_verification",
    "post_interactive",
    "build_command_body",
    "build_event_envelope",
    "build_block_actions_payload",
    "build_view_submission_payload",
    "new_trigger_id",
]

DEFAULT_TIMEOUT = 10.0
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class SlackHTTPResponse(NamedTuple):
    status_code: int
    headers: Dict[str, str]
    body: bytes
    elapsed: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body.strip() else None

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


def sign(body: Union[bytes, str], secret: str, timestamp: Union[int, str, None] = None) -> Dict[str, str]:
    """Headers Slack would send with ``body``: ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature``."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    ts = str(int(time.time()) if timestamp is None else int(timestamp))
    base = b"v0:" + ts.encode("ascii") + b":" + body
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def new_trigger_id() -> str:
    """A well-formed trigger_id that no FakeSlackAPI issued (views.open → ``invalid_trigger_id``)."""
    return f"{int(time.time() * 1000)}.{secrets.randbelow(10**13):013d}.{secrets.token_hex(16)}"


def post_signed(
    url: str,
    secret: str,
    body: Union[bytes, str],
    content_type: str,
    *,
    timestamp: Union[int, str, None] = None,
    extra_headers: Optional[Mapping[str, str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SlackHTTPResponse:
    """POST ``body`` signed with ``secret``; ``extra_headers`` override/add headers (e.g. a forged signature)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {
        "Content-Type": content_type,
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "Accept": "application/json,*/*",
    }
    headers.update(sign(body, secret, timestamp))
    if extra_headers:
        headers.update(extra_headers)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
            return SlackHTTPResponse(response.status, dict(response.headers.items()), data, time.monotonic() - started)
    except urllib.error.HTTPError as error:
        data = error.read()
        return SlackHTTPResponse(error.code, dict(error.headers.items()), data, time.monotonic() - started)


# ----------------------------------------------------------------------
# slash commands
# ----------------------------------------------------------------------
def build_command_body(
    command: str = "/tao",
    text: str = "launch dino",
    *,
    user_id: str = _ids.USER_ID,
    user_name: str = _ids.USER_NAME,
    channel_id: str = _ids.CHANNEL_ID,
    channel_name: str = _ids.CHANNEL_NAME,
    team_id: str = _ids.TEAM_ID,
    team_domain: str = _ids.TEAM_DOMAIN,
    api_app_id: str = _ids.APP_ID,
    trigger_id: Optional[str] = None,
    response_url: Optional[str] = None,
) -> str:
    fields = [
        ("token", _ids.VERIFICATION_TOKEN),
        ("team_id", team_id),
        ("team_domain", team_domain),
        ("channel_id", channel_id),
        ("channel_name", channel_name),
        ("user_id", user_id),
        ("user_name", user_name),
        ("command", command),
        ("text", text),
        ("api_app_id", api_app_id),
        ("is_enterprise_install", "false"),
        ("response_url", response_url or _default_response_url(team_id)),
        ("trigger_id", trigger_id or new_trigger_id()),
    ]
    return urlencode(fields)


def post_command(
    url: str,
    secret: str,
    command: str = "/tao",
    text: str = "launch dino",
    user_id: str = _ids.USER_ID,
    channel_id: str = _ids.CHANNEL_ID,
    trigger_id: Optional[str] = None,
    response_url: Optional[str] = None,
    *,
    user_name: str = _ids.USER_NAME,
    channel_name: str = _ids.CHANNEL_NAME,
    team_id: str = _ids.TEAM_ID,
    team_domain: str = _ids.TEAM_DOMAIN,
    api_app_id: str = _ids.APP_ID,
    timestamp: Union[int, str, None] = None,
    extra_headers: Optional[Mapping[str, str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SlackHTTPResponse:
    """Send a slash command invocation.  Pass ``trigger_id=fake.issue_trigger_id()``
    and ``response_url=fake.issue_response_url(channel_id)`` to let the bot use them."""
    body = build_command_body(
        command,
        text,
        user_id=user_id,
        user_name=user_name,
        channel_id=channel_id,
        channel_name=channel_name,
        team_id=team_id,
        team_domain=team_domain,
        api_app_id=api_app_id,
        trigger_id=trigger_id,
        response_url=response_url,
    )
    return post_signed(url, secret, body, FORM, timestamp=timestamp, extra_headers=extra_headers, timeout=timeout)


# ----------------------------------------------------------------------
# Events API
# ----------------------------------------------------------------------
def build_event_envelope(
    event: Dict[str, Any],
    event_id: Optional[str] = None,
    *,
    team_id: str = _ids.TEAM_ID,
    api_app_id: str = _ids.APP_ID,
    bot_user_id: str = _ids.BOT_USER_ID,
    event_time: Optional[int] = None,
) -> Dict[str, Any]:
    event = dict(event)
    now = time.time()
    event.setdefault("event_ts", f"{now:.6f}")
    return {
        "token": _ids.VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
        "event_time": int(now) if event_time is None else int(event_time),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + secrets.token_urlsafe(24),
    }


def post_event(
    url: str,
    secret: str,
    event: Dict[str, Any],
    event_id: Optional[str] = None,
    retry_num: Optional[int] = None,
    *,
    retry_reason: str = "http_timeout",
    team_id: str = _ids.TEAM_ID,
    api_app_id: str = _ids.APP_ID,
    bot_user_id: str = _ids.BOT_USER_ID,
    timestamp: Union[int, str, None] = None,
    extra_headers: Optional[Mapping[str, str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SlackHTTPResponse:
    """Deliver ``event`` (e.g. ``{"type": "app_mention", ...}``) as an ``event_callback``.

    ``retry_num`` (1..3) marks a redelivery: adds ``X-Slack-Retry-Num`` and
    ``X-Slack-Retry-Reason`` (``retry_reason``).  Reuse the same ``event_id``
    for redeliveries of one event.
    """
    envelope = build_event_envelope(event, event_id, team_id=team_id, api_app_id=api_app_id, bot_user_id=bot_user_id)
    headers: Dict[str, str] = {}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(int(retry_num))
        headers["X-Slack-Retry-Reason"] = retry_reason
    if extra_headers:
        headers.update(extra_headers)
    return post_signed(
        url, secret, json.dumps(envelope), JSON, timestamp=timestamp, extra_headers=headers, timeout=timeout
    )


def post_url_verification(
    url: str,
    secret: str,
    challenge: str,
    *,
    timestamp: Union[int, str, None] = None,
    extra_headers: Optional[Mapping[str, str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SlackHTTPResponse:
    body = {"token": _ids.VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    return post_signed(
        url, secret, json.dumps(body), JSON, timestamp=timestamp, extra_headers=extra_headers, timeout=timeout
    )


# ----------------------------------------------------------------------
# interactivity
# ----------------------------------------------------------------------
def _user(user_id: str, user_name: str, team_id: str) -> Dict[str, Any]:
    return {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id}


def _team(team_id: str, team_domain: str) -> Dict[str, Any]:
    return {"id": team_id, "domain": team_domain}


def _default_response_url(team_id: str) -> str:
    return f"https://hooks.slack.com/actions/{team_id}/{secrets.randbelow(10**12)}/{secrets.token_urlsafe(18)}"


def build_block_actions_payload(
    user_id: str,
    channel_id: Optional[str],
    message_ts: Optional[str],
    thread_ts: Optional[str],
    action_id: str,
    value: Optional[str] = None,
    block_id: Optional[str] = None,
    selected_option: Optional[Dict[str, Any]] = None,
    trigger_id: Optional[str] = None,
    *,
    message: Optional[Dict[str, Any]] = None,
    view: Optional[Dict[str, Any]] = None,
    response_url: Optional[str] = None,
    action_type: Optional[str] = None,
    action_text: Optional[str] = None,
    state_values: Optional[Dict[str, Any]] = None,
    user_name: str = _ids.USER_NAME,
    channel_name: str = _ids.CHANNEL_NAME,
    team_id: str = _ids.TEAM_ID,
    team_domain: str = _ids.TEAM_DOMAIN,
    api_app_id: str = _ids.APP_ID,
    bot_user_id: str = _ids.BOT_USER_ID,
) -> Dict[str, Any]:
    action_ts = f"{time.time():.6f}"
    block_id = block_id or secrets.token_urlsafe(4)
    if action_type is None:
        action_type = "static_select" if selected_option is not None else "button"
    action: Dict[str, Any] = {"action_id": action_id, "block_id": block_id, "type": action_type}
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": action_text or action_id, "emoji": True}
        if value is not None:
            action["value"] = value
    else:
        if selected_option is not None:
            action["selected_option"] = selected_option
        if value is not None:
            action["value"] = value
    action["action_ts"] = action_ts

    payload: Dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": _ids.VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": _team(team_id, team_domain),
        "enterprise": None,
        "is_enterprise_install": False,
    }
    if view is not None:
        # action inside a modal / App Home: container is the view, no channel/message/response_url
        payload["container"] = {"type": "view", "view_id": view.get("id")}
        payload["view"] = view
        payload["state"] = view.get("state", {"values": state_values or {}})
    else:
        container: Dict[str, Any] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        if thread_ts:
            container["thread_ts"] = thread_ts
        payload["container"] = container
        payload["channel"] = {"id": channel_id, "name": channel_name}
        if message is None:
            message = {
                "type": "message",
                "user": bot_user_id,
                "ts": message_ts,
                "bot_id": _ids.BOT_ID,
                "app_id": api_app_id,
                "text": "",
                "team": team_id,
                "blocks": [],
            }
            if thread_ts:
                message["thread_ts"] = thread_ts
        payload["message"] = message
        payload["state"] = {"values": state_values or {}}
        payload["response_url"] = response_url or _default_response_url(team_id)
    payload["actions"] = [action]
    return payload


def post_block_action(
    url: str,
    secret: str,
    user_id: str,
    channel_id: Optional[str],
    message_ts: Optional[str],
    thread_ts: Optional[str],
    action_id: str,
    value: Optional[str] = None,
    block_id: Optional[str] = None,
    selected_option: Optional[Dict[str, Any]] = None,
    trigger_id: Optional[str] = None,
    *,
    message: Optional[Dict[str, Any]] = None,
    view: Optional[Dict[str, Any]] = None,
    response_url: Optional[str] = None,
    action_type: Optional[str] = None,
    action_text: Optional[str] = None,
    state_values: Optional[Dict[str, Any]] = None,
    timestamp: Union[int, str, None] = None,
    extra_headers: Optional[Mapping[str, str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
    **ids: str,
) -> SlackHTTPResponse:
    """A user clicked a button (or picked ``selected_option`` in a select) on a message.

    ``message`` should be the message as Slack shows it (e.g.
    ``fake.message(channel, ts)``); a minimal bot message is used otherwise.
    Pass ``view=fake.get_view(view_id)`` instead for an action inside a modal.
    ``ids`` may override ``user_name``, ``channel_name``, ``team_id``,
    ``team_domain``, ``api_app_id``, ``bot_user_id``.
    """
    payload = build_block_actions_payload(
        user_id,
        channel_id,
        message_ts,
        thread_ts,
        action_id,
        value,
        block_id,
        selected_option,
        trigger_id,
        message=message,
        view=view,
        response_url=response_url,
        action_type=action_type,
        action_text=action_text,
        state_values=state_values,
        **ids,
    )
    return post_interactive(url, secret, payload, timestamp=timestamp, extra_headers=extra_headers, timeout=timeout)


def build_view_submission_payload(
    user_id: str,
    callback_id: str,
    private_metadata: str,
    state_values: Dict[str, Any],
    view_id: Optional[str] = None,
    *,
    view: Optional[Dict[str, Any]] = None,
    trigger_id: Optional[str] = None,
    response_urls: Optional[List[Dict[str, Any]]] = None,
    user_name: str = _ids.USER_NAME,
    team_id: str = _ids.TEAM_ID,
    team_domain: str = _ids.TEAM_DOMAIN,
    api_app_id: str = _ids.APP_ID,
    bot_id: str = _ids.BOT_ID,
) -> Dict[str, Any]:
    base: Dict[str, Any] = dict(view) if view else {}
    view_id = view_id or base.get("id") or "V" + secrets.token_hex(5).upper()
    full_view: Dict[str, Any] = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "blocks": [],
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": state_values},
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": {"type": "plain_text", "text": "Modal", "emoji": True},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": api_app_id,
        "external_id": "",
        "app_installed_team_id": team_id,
        "bot_id": bot_id,
    }
    for key, val in base.items():
        if key not in ("id", "private_metadata", "callback_id", "state"):
            full_view[key] = val
    return {
        "type": "view_submission",
        "team": _team(team_id, team_domain),
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": _ids.VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": full_view,
        "response_urls": response_urls or [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def post_view_submission(
    url: str,
    secret: str,
    user_id: str,
    callback_id: str,
    private_metadata: str,
    state_values: Dict[str, Any],
    view_id: Optional[str] = None,
    *,
    view: Optional[Dict[str, Any]] = None,
    trigger_id: Optional[str] = None,
    response_urls: Optional[List[Dict[str, Any]]] = None,
    timestamp: Union[int, str, None] = None,
    extra_headers: Optional[Mapping[str, str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
    **ids: str,
) -> SlackHTTPResponse:
    """A user pressed Submit on a modal.

    ``state_values`` is ``view.state.values`` as Slack sends it:
    ``{block_id: {action_id: {"type": "plain_text_input", "value": "..."}}}``.
    Pass ``view=fake.get_view(view_id)`` to submit the modal the bot really
    opened (its blocks, title, hash, root/previous ids are reused).
    """
    payload = build_view_submission_payload(
        user_id,
        callback_id,
        private_metadata,
        state_values,
        view_id,
        view=view,
        trigger_id=trigger_id,
        response_urls=response_urls,
        **ids,
    )
    return post_interactive(url, secret, payload, timestamp=timestamp, extra_headers=extra_headers, timeout=timeout)


def post_interactive(
    url: str,
    secret: str,
    payload: Dict[str, Any],
    *,
    timestamp: Union[int, str, None] = None,
    extra_headers: Optional[Mapping[str, str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SlackHTTPResponse:
    """POST any interactivity ``payload`` as Slack does: form-encoded ``payload=<json>``."""
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))})
    return post_signed(url, secret, body, FORM, timestamp=timestamp, extra_headers=extra_headers, timeout=timeout)
