"""Buttons and selects: the action id (and chosen value) into an intent, from the core's one table."""

from __future__ import annotations

import logging
import re

from slack_bolt import App

from taobot.intake.intents import choice_intent, command_intent
from taobot.services import Context, Services
from taobot.slack import blocks as B
from taobot.slack.render import render

log = logging.getLogger(__name__)


def _target(action: dict) -> str:
    # Buttons carry the intake id (or a launch id "<intake id>-<n>") as their
    # value; selects carry the intake id in their block id (q_<id>).
    if action.get("type") == "button":
        return action.get("value", "")
    return action.get("block_id", "").split("_", 1)[-1]


def register(app: App, services: Services) -> None:
    @app.action(re.compile("^(" + "|".join(B.ACTION_IDS) + ")$"))
    def on_action(ack, body: dict, action: dict, client) -> None:
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
        form = services.act(ctx, intake_id, intent)
        if form is not None and body.get("trigger_id"):
            services.desk.messenger.open_view(body["trigger_id"], render(form))
