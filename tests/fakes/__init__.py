"""Honest, out-of-process-style fakes of Slack for the taobot test-suite.

* :mod:`.slack_api` - :class:`FakeSlackAPI`, a local HTTP server that speaks the
  Slack Web API (point ``slack_sdk.WebClient(base_url=fake.url)`` at it).
* :mod:`.signing` - build and send Slack-signed requests (slash commands,
  events, interactivity payloads) to the bot's ``/slack/events`` endpoint.
"""

from . import _ids as ids
from .signing import (
    SlackHTTPResponse,
    post_block_action,
    post_command,
    post_event,
    post_interactive,
    post_signed,
    post_url_verification,
    post_view_submission,
    sign,
)
from .slack_api import FakeSlackAPI, RecordedCall, WaitTimeout

__all__ = [
    "FakeSlackAPI",
    "RecordedCall",
    "SlackHTTPResponse",
    "WaitTimeout",
    "ids",
    "post_block_action",
    "post_command",
    "post_event",
    "post_interactive",
    "post_signed",
    "post_url_verification",
    "post_view_submission",
    "sign",
]
