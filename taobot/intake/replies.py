"""Thread replies (already plain text) into events or a command name.

Never stores or echoes a pasted secret: a reply that looks like one is
refused whole, before any word of it is read.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from taobot.automl.replies import is_automl_key
from taobot.catalog import Catalog, Model
from taobot.intake.events import (
    ChoosePlatform,
    ConfirmImage,
    Event,
    OverrideImage,
    SetCompute,
    SetMonitoring,
    SetNotify,
    SetResults,
    SetRetry,
    SetRoot,
    SetSpecInput,
    UseSshAgent,
)
from taobot.intake.help import expected_shape
from taobot.intake.intents import COMMANDS, RELAUNCH, WORDS, Answer, Intent, Relaunch
from taobot.intake.queries import model_of
from taobot.intake.state import IntakeState
from taobot.intake.values import ROLE_ALIASES
from taobot.secret_shapes import looks_like_secret
from taobot.triage import MAX_CHAIN

MAX_REPLY_CHARS = 4000
GPU_KEYS = ("num_gpus", "gpus")
NODE_KEYS = ("num_nodes", "nodes")
RESULT_KEYS = ("results", "results_dir", "results_uri")

_PLAIN_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})
_TRUE = {"yes", "y", "on", "true", "1"}
_FALSE = {"no", "n", "off", "false", "0"}


@dataclass
class ParsedReply:
    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    command: str | None = None  # a command id of `intents.COMMANDS`
    secret_warning: str | None = None

    @property
    def intent(self) -> Intent | None:
        """What the reply asks for: its command, or the answers it gives; None when it says nothing usable."""
        if self.command == RELAUNCH:
            # `relaunch key=value …`: the changes ride with the command, and so do the fields it could not read.
            return Relaunch(changes=tuple(self.events), unreadable=tuple(self.errors))
        if self.command:
            return COMMANDS[self.command]
        return Answer(tuple(self.events)) if self.events else None


def parse_reply(text: str, state: IntakeState, catalog: Catalog) -> ParsedReply:
    """Turn a plain-text thread reply into events or a command. Never stores or echoes a pasted secret."""
    # Phones and chat clients turn quotes into typographic ones; shlex needs plain ones.
    text = text.translate(_PLAIN_QUOTES).strip()
    reply = ParsedReply()
    if len(text) > MAX_REPLY_CHARS:
        reply.errors.append(
            f"That reply is {len(text)} characters; the most taobot reads is {MAX_REPLY_CHARS}. Send the values in smaller replies."
        )
        return reply
    reply.secret_warning = secret_warning(text, catalog)
    if reply.secret_warning:
        return reply
    word = " ".join(text.lower().split()).rstrip(".!")
    if word in WORDS:
        reply.command = WORDS[word]
        return reply
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError:
        reply.errors.append("Unbalanced quotes in that reply. " + expected_shape())
        return reply
    if tokens and tokens[0].lower() == RELAUNCH:
        # `relaunch num_gpus=16 image=…`: a new launch of this thread with these answers changed.
        reply.command = RELAUNCH
        tokens = tokens[1:]
        if not tokens:
            return reply
    if not tokens or not all("=" in t for t in tokens):
        bad = next((t for t in tokens if "=" not in t), text)
        reply.errors.append(f"I could not read `{bad[:80]}`. " + expected_shape())
        return reply
    model = model_of(state, catalog)
    for token in tokens:
        key, _, value = token.partition("=")
        key, value = key.strip(), value.strip()
        if state.kind == "automl" and is_automl_key(key):
            continue  # the search's own answers (`search.*`, `trials=`, …): read by taobot.automl.replies
        event, error = _event_for(key, value, model, catalog)
        if error:
            reply.errors.append(error)
        elif event is not None:
            reply.events.append(event)
    return reply


def secret_warning(text: str, catalog: Catalog) -> str | None:
    """The answer to a message that looks like it holds a secret (never echoing it), or None."""
    secret_names = frozenset(n for n, c in catalog.credentials.items() if c.secret)
    reason = looks_like_secret(text, secret_names)
    if not reason:
        return None
    return (
        f":warning: That message looks like it contains {reason}. taobot did not read or store it. "
        "Delete the message, rotate the credential if it was real, and enter credentials with the "
        "*Enter credentials* button, which opens a private form."
    )


def _parse_int(key: str, value: str) -> tuple[int | None, str | None]:
    try:
        return int(value), None
    except ValueError:
        return None, f"`{key}` needs a whole number, e.g. `{key}=4`; got `{value}`."


def _event_for(key: str, value: str, model: Model, catalog: Catalog) -> tuple[Event | None, str | None]:
    lower = key.lower()
    if not key:
        return None, "A `=value` without a key. " + expected_shape()
    if key.upper() in catalog.credentials:
        return None, (
            f"{key.upper()} is a credential; enter it with the *Enter credentials* button (a private form), "
            "not in the thread."
        )
    if lower == "platform":
        return ChoosePlatform(value), None
    if lower in ("monitor", "monitoring", "long_running", "long_running_enabled"):
        if value.lower() in _TRUE:
            return SetMonitoring(enabled=True), None
        if value.lower() in _FALSE:
            return SetMonitoring(enabled=False), None
        return None, f"`{key}` takes yes or no; got `{value}`."
    if lower == "notify":
        if value.lower() in ("dm", "thread"):
            return SetNotify(value.lower() == "dm"), None
        return None, f"`notify` takes `dm` (the end also by DM) or `thread`; got `{value}`."
    if lower == "retry":
        return _retry_event(value)
    if lower in ("interval", "status_interval", "status_interval_minutes"):
        number, err = _parse_int(key, value.removesuffix("m").removesuffix("min"))
        return (SetMonitoring(interval=number), None) if err is None else (None, err)
    if lower in ("image", "container_image"):
        return (ConfirmImage(), None) if value.lower() == "default" else (OverrideImage(value), None)
    if lower in ("agent", "ssh_agent"):
        return UseSshAgent(value.lower() in _TRUE), None
    if lower in ROLE_ALIASES:
        if not value:
            return None, f"`{key}` needs a path, e.g. `{key}=/data/{model.name}/train`."
        return SetRoot(ROLE_ALIASES[lower], value), None
    if lower in RESULT_KEYS:
        return SetResults(value), None
    if lower in GPU_KEYS or key == model.gpus_key:
        number, err = _parse_int(key, value)
        return (SetCompute("num_gpus", number), None) if err is None else (None, err)
    if lower in NODE_KEYS or (model.nodes_key and key == model.nodes_key):
        number, err = _parse_int(key, value)
        return (SetCompute("num_nodes", number), None) if err is None else (None, err)
    if "." in key or "[" in key or "-" in key:
        if not value:
            return None, f"`{key}` needs a path."
        return SetSpecInput(key, value), None
    known = (
        "platform, monitor, interval, notify, retry, image, train, eval, calibration, results, num_gpus, num_nodes, "
        "or a spec key"
    )
    return None, f"Unknown key `{key}`. Known keys: {known}."


def _retry_event(value: str) -> tuple[Event | None, str | None]:
    """`retry=infra:N` (N automatic retries of an infrastructure failure) or `retry=off`."""
    most = MAX_CHAIN - 1  # a chain holds the first launch and its retries
    word, _, count = value.lower().partition(":")
    if word in ("off", "no", "none") and not count:
        return SetRetry(0), None
    if word == "infra" and count.isdigit() and 1 <= int(count) <= most:
        return SetRetry(int(count)), None
    return None, (
        f"`retry` takes `infra:N` (retry an infrastructure failure by itself up to N times, N from 1 to {most}) "
        f"or `off`; got `{value}`."
    )


def split_launch_text(text: str) -> tuple[list[str], str]:
    """A one-message launch (`train cosmos-rl on slurm train=/data num_gpus=8`) as (head words, answers).

    The head names the model and the action; every `key=value` word and `on <platform>` is an answer,
    returned as the text of one thread reply, so that `parse_reply` reads it exactly as it reads replies.
    """
    text = text.translate(_PLAIN_QUOTES)
    try:
        words = shlex.split(text, posix=True)
    except ValueError:
        words = text.split()  # the answers' unbalanced quote is said by `parse_reply`, from the raw text
        unquoted = False
    else:
        unquoted = True
    head: list[str] = []
    answers: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if "=" in word:
            answers.append(shlex.quote(word) if unquoted else word)
        elif word.lower() == "on" and index + 1 < len(words) and "=" not in words[index + 1]:
            answers.append("platform=" + shlex.quote(words[index + 1]))
            index += 1
        else:
            head.append(word)
        index += 1
    return head, " ".join(answers)
