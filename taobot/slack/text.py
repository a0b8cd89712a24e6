"""Slack's message text encoding, undone: what a person typed, as plain text."""

from __future__ import annotations

import html
import re


def slack_plain_text(text: str) -> str:
    """Undo Slack's message encoding: <url|label> links, &amp; escapes, smart quotes."""
    text = re.sub(r"<(?:mailto:)?([^<>|]+)\|([^<>]+)>", r"\2", text)
    text = re.sub(r"<([^<>@#!][^<>]*)>", r"\1", text)
    text = html.unescape(text)
    return text.translate(str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"}))
