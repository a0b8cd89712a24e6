"""The App Home tab: opening it shows the person their own launches; its buttons act on one of them.

A Home button carries a launch id. It goes to the same service path (and the same rules: the owner or an
admin) as the button of that launch's thread; then the Home is published again, with the answer on top.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace

from slack_bolt import App

from taobot.errors import TaobotError
from taobot.intake.intents import ATTACH, CANCEL_JOB, DETACH, command_intent
from taobot.services import Services
from taobot.slack.home import HOME_ACTION_IDS, HOME_ATTACH, HOME_CANCEL_JOB, HOME_DETACH
from taobot.slack.listeners.after_ack import AfterAck

log = logging.getLogger(__name__)

COMMAND_OF = {HOME_CANCEL_JOB: CANCEL_JOB, HOME_DETACH: DETACH, HOME_ATTACH: ATTACH}


def register(app: App, services: Services, after_ack: AfterAck) -> None:
    @app.event("app_home_opened")
    def on_home_opened(event: dict) -> None:
        # The Messages tab opens this event too; only the Home tab has a view to publish.
        if event.get("tab", "home") == "home" and event.get("user"):
            services.show_home(event["user"])

    @app.action(re.compile("^(" + "|".join(HOME_ACTION_IDS) + ")$"))
    def on_home_action(ack, body: dict, action: dict) -> None:
        ack()
        user = (body.get("user") or {}).get("id")
        launch_id = str(action.get("value") or "")
        intent = command_intent(COMMAND_OF[action["action_id"]], launch_id)
        if not user or intent is None:
            log.warning("unreadable Home action %s", action.get("action_id"))
            return

        def act() -> None:
            notice = services.launches.from_home(user, launch_id, intent)
            try:
                services.desk.messenger.publish_home(user, replace(services.status.home(user), notice=notice))
            except TaobotError as exc:
                log.warning("App Home not published: %s", exc)

        # One person's Home presses in order; never on the listener thread (a cancel talks to a platform).
        after_ack.submit(f"home:{user}", act)
