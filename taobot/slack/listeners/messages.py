"""@taobot mentions start launches; replies in launch threads drive the intake."""

from __future__ import annotations

import logging
import re

from slack_bolt import App

from taobot.catalog import Catalog, find_model
from taobot.errors import UnknownNameError
from taobot.intake.replies import secret_warning, split_launch_text
from taobot.services import Context, Services
from taobot.slack.listeners.after_ack import AfterAck, delivery_key, thread_key
from taobot.slack.listeners.automl import start_automl
from taobot.slack.render import render
from taobot.slack.text import slack_plain_text
from taobot.slack.workflow_cards import start_workflow

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_FILLER = {"launch", "please", "run", "start", "a", "an", "the", "job", "on", "with"}


def strip_mentions(text: str) -> str:
    return _MENTION.sub(" ", text or "").strip()


def parse_mention(text: str, catalog: Catalog) -> tuple[str | None, str, str | None, str]:
    """(model, action, error, answers) from `train cosmos-rl`, `cosmos-rl evaluate`, `launch dino export`.

    A one-message launch (`train cosmos-rl on slurm num_gpus=8`) also gives answers: the text of one thread
    reply, applied once the thread is open.
    """
    head, answers = split_launch_text(strip_mentions(text))
    if warning := secret_warning(" ".join(head), catalog):  # a pasted token where a model name goes: never echoed
        return None, "", warning, ""
    words = [w.lower() for w in head if w.lower() not in _FILLER]
    if not words or words[0] in ("help", "status"):
        return None, "", words[0] if words else "help", ""
    for i, word in enumerate(words):
        try:
            model = find_model(catalog, word)
        except UnknownNameError:
            continue
        others = words[:i] + words[i + 1 :]
        action = next((w for w in others if w.replace("-", "_") in model.actions), None)
        if others and action is None:
            known = ", ".join(model.actions)
            return model.name, "", f"Unknown action `{others[0]}` for {model.name}. Known: {known}.", ""
        return model.name, (action or "train").replace("-", "_"), None, answers
    return None, "", f"Unknown model in `{' '.join(words)}`. Known: {', '.join(sorted(catalog.models))}.", ""


def register(app: App, services: Services, catalog: Catalog, after_ack: AfterAck) -> None:
    # Bolt acks events before their listener runs; the listener only hands the work over (after_ack), keyed by
    # the Slack thread, so one thread's messages are handled in the order they came and a retried delivery once.

    @app.event("app_mention")
    def on_mention(event: dict, body: dict, say) -> None:
        channel, thread = event["channel"], event.get("thread_ts")

        def answer() -> None:
            if thread and services.is_launch_thread(channel, thread):
                return  # the message listener handles replies inside launch threads
            words = strip_mentions(slack_plain_text(event.get("text", ""))).split()
            if words and words[0].lower() == "automl":  # `@taobot automl dino`
                ts = thread or event["ts"]
                start_automl(services, channel, event["user"], words[1:], ts, lambda t: say(text=t, thread_ts=ts))
                return
            if words and words[0].lower() == "workflow":  # `@taobot workflow train-eval-export dino`
                ts = thread or event["ts"]
                start_workflow(services, channel, event["user"], words[1:], ts, lambda t: say(text=t, thread_ts=ts))
                return
            model, action, error, answers = parse_mention(slack_plain_text(event.get("text", "")), catalog)
            reply_ts = thread or event["ts"]
            if error == "help":
                say(**render(services.help()), thread_ts=reply_ts)
            elif error == "status":
                say(**render(services.channel_status(channel, event.get("user"))), thread_ts=reply_ts)
            elif error:
                say(text=error, thread_ts=reply_ts)
            else:
                services.start(channel, event["user"], model, action, thread_ts=reply_ts, answers=answers)

        after_ack.submit(thread_key(channel, thread or event["ts"]), answer, delivery=delivery_key(body))

    @app.event("message")
    def on_message(event: dict, body: dict) -> None:
        if not is_person_reply(event):
            return
        ctx = Context(user=event.get("user", ""), channel=event["channel"], thread_ts=event["thread_ts"])
        text = slack_plain_text(strip_mentions(event.get("text", "")))
        files = len(event.get("files") or ())
        after_ack.submit(
            thread_key(ctx.channel, ctx.thread_ts),
            lambda: services.reply(ctx, text, files=files),
            delivery=delivery_key(body),
        )


# Message subtypes that are still a person's reply in a thread: "also send to
# channel" (thread_broadcast) and a reply with a file (file_share). Every other
# subtype (edits, deletions, bot messages, joins) is not an answer.
REPLY_SUBTYPES = frozenset({"thread_broadcast", "file_share"})


def is_person_reply(event: dict) -> bool:
    """Whether a message event is a person's reply inside a thread (not its root, a bot, or an edit)."""
    subtype = event.get("subtype")
    if subtype is not None and subtype not in REPLY_SUBTYPES:
        return False
    if event.get("bot_id") or not event.get("user"):
        return False
    thread_ts = event.get("thread_ts")
    return bool(thread_ts) and thread_ts != event.get("ts")
