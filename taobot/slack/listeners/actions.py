"""Buttons and selects: the action id (and chosen value) into an intent, from the core's one table.

Acked first. A button that opens a form opens it at once (its trigger id expires in 3 s); every other click is
handed over after the ack, in order with the rest of its Slack thread's replies and clicks.
"""

from __future__ import annotations

import logging
import re

from slack_bolt import App

from taobot.intake.intents import OpenForm, choice_intent, command_intent
from taobot.services import Context, Services
from taobot.slack import blocks as B
from taobot.slack.listeners.after_ack import AfterAck, thread_key
from taobot.slack.render import render

log = logging.getLogger(__name__)


def _target(action: dict) -> str:
    # Buttons carry the intake id (or a launch id "<intake id>-<n>") as their
    # value; selects carry the intake id in their block id (q_<id>).
    if action.get("type") == "button":
        return action.get("value", "")
    return action.get("block_id", "").split("_", 1)[-1]


def register(app: App, services: Services, after_ack: AfterAck) -> None:
    @app.action(re.compile("^(" + "|".join(B.ACTION_IDS) + ")$"))
    def on_action(ack, body: dict, action: dict) -> None:
        ack()
        target = _target(action)
        intake_id, launch_id = target.split("-", 1)[0], (target if "-" in target else None)
        selected = (action.get("selected_option") or {}).get("value")
        if action["action_id"] in B.CHOICES:
            intent = choice_intent(action["action_id"], selected or "")
        else:
            intent = command_intent(action["action_id"], launch_id)
        if intent is None:
            log.warning("unreadable action %s", action["action_id"], extra={"intake": intake_id})
            return
        ctx = Context(user=body["user"]["id"], channel=(body.get("channel") or {}).get("id", ""))
        trigger_id = body.get("trigger_id")

        def act() -> None:
            form = services.act(ctx, intake_id, intent)
            if form is not None and trigger_id:
                services.desk.messenger.open_view(trigger_id, render(form))

        if isinstance(intent, OpenForm):
            # A trigger id lives 3 s: the form opens now, on this listener's thread, never behind a queue.
            act()
        else:
            after_ack.submit(thread_key(ctx.channel, _thread_ts(body)), act)


def _thread_ts(body: dict) -> str | None:
    """The Slack thread the clicked message is in (a card that opened its thread is that thread's root)."""
    message = body.get("message") or {}
    container = body.get("container") or {}
    return message.get("thread_ts") or container.get("thread_ts") or message.get("ts") or container.get("message_ts")
