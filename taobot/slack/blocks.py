"""Block Kit primitives that stay inside Slack's limits, and the ids the listeners match.

Builders keep inside Slack's limits themselves (50 blocks per message,
3,000 characters per section, 100 options per select, 24-character modal
titles) so a long path or a chatty error can never make Slack reject a
message. Action ids are the core's command ids (`intake.intents`), so a
button, a reply word and a console answer mean the same thing.
"""

from __future__ import annotations

from taobot.intake.intents import (  # noqa: F401 - the action ids of buttons and selects, used by renderers and tests
    ATTACH,
    CANCEL_INTAKE,
    CANCEL_JOB,
    CHOICES,
    COMMANDS,
    COMPUTE_DEFAULTS,
    CONFIRM_MOUNTED,
    DETACH,
    IMAGE_OVERRIDE,
    IMAGE_USE_DEFAULT,
    INTERVAL_SELECT,
    LAUNCH,
    MONITOR_NO,
    MONITOR_YES,
    OPEN_CREDENTIALS,
    OPEN_DATASETS,
    PLATFORM_SELECT,
    RELAUNCH,
    RUN_PREFLIGHT,
    USE_SSH_AGENT,
)

# Every action id a listener accepts: the buttons' commands and the selects.
ACTION_IDS = tuple(c for c in COMMANDS if c not in ("help", "status")) + tuple(CHOICES)

# callback ids (view_submission)
CREDENTIALS_MODAL = "credentials_modal"
IMAGE_MODAL = "image_modal"
DATASETS_MODAL = "datasets_modal"
CALLBACK_IDS = (CREDENTIALS_MODAL, IMAGE_MODAL, DATASETS_MODAL)

# block / input ids inside modals
CRED_BLOCK_PREFIX = "cred_"
IMAGE_BLOCK = "image_ref"
ROOT_BLOCK_PREFIX = "root_"
SPEC_BLOCK = "spec_pairs"
RESULTS_BLOCK = "results"
VALUE_ID = "value"

MAX_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION = 3000
MAX_TEXT = 3000  # fallback text and context elements are kept under this too
MAX_OPTIONS = 100
MAX_TITLE = 24
MAX_INPUT = 3000  # longest value a plain_text_input can hold
INTERVAL_CHOICES = (1, 2, 5, 10, 15, 30, 60)


def clip(text: str, limit: int = MAX_SECTION) -> str:
    """Shorten text to Slack's limit, saying that it was shortened."""
    if len(text) <= limit:
        return text
    marker = "… (shortened)"
    return text[: limit - len(marker)] + marker


def pack(lines: list[str], limit: int) -> list[str]:
    """Join lines into as few chunks as fit within `limit` characters each."""
    chunks: list[str] = []
    for line in lines:
        if chunks and len(chunks[-1]) + 1 + len(line) <= limit:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line[:limit])
    return chunks


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": clip(text)}


def plain(text: str, limit: int = 75) -> dict:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def section(text: str, accessory: dict | None = None, block_id: str | None = None) -> dict:
    block: dict = {"type": "section", "text": mrkdwn(text)}
    if accessory:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id
    return block


def context(text: str) -> dict:
    return {"type": "context", "elements": [mrkdwn(text)]}


def button(text: str, action_id: str, value: str, style: str | None = None, confirm: dict | None = None) -> dict:
    b: dict = {"type": "button", "text": plain(text), "action_id": action_id, "value": value[:2000]}
    if style:
        b["style"] = style
    if confirm:
        b["confirm"] = confirm
    return b


def option(text: str, value: str) -> dict:
    return {"text": plain(text), "value": value[:150]}


def actions(block_id: str, elements: list[dict]) -> dict:
    return {"type": "actions", "block_id": block_id[:255], "elements": elements[:25]}


def fit(blocks: list[dict], limit: int = MAX_BLOCKS) -> list[dict]:
    if len(blocks) <= limit:
        return blocks
    return blocks[: limit - 1] + [
        context(f"{len(blocks) - limit + 1} more items not shown; reply `help` for the full list.")
    ]


# --------------------------------------------------------------------------- replies


def reply(text: str) -> dict:
    """A short thread reply: plain text fallback plus one section per 3,000 chars."""
    chunks = [text[i : i + MAX_SECTION] for i in range(0, min(len(text), MAX_SECTION * 10), MAX_SECTION)] or [""]
    return {"text": clip(text, MAX_TEXT), "blocks": [section(c) for c in chunks if c]}
