"""Buttons and selects on the intake card."""

from __future__ import annotations

import re

from slack_bolt import App

from taobot.service import ActionContext, IntakeService
from taobot.slack import blocks as B


def _intake_id(action: dict) -> str:
    # Buttons carry the launch id as their value; selects carry it in the block id (q_<id>).
    if action.get("type") == "button":
        return action.get("value", "")
    return action.get("block_id", "").split("_", 1)[-1]


def register(app: App, service: IntakeService) -> None:
    @app.action(re.compile("^(" + "|".join(B.ACTION_IDS) + ")$"))
    def on_action(ack, body: dict, action: dict) -> None:
        ack()
        selected = (action.get("selected_option") or {}).get("value")
        ctx = ActionContext(
            user=body["user"]["id"],
            channel=(body.get("channel") or {}).get("id", ""),
            trigger_id=body.get("trigger_id"),
            value=selected,
        )
        service.handle_action(action["action_id"], _intake_id(action), ctx)
