"""The /tao slash command: launch, status, help.

`help` and `status` are answered in the ack itself (a read, no write); `launch` checks the names against the
catalog, acks, and opens the thread after the ack.
"""

from __future__ import annotations

import logging

from slack_bolt import App

from taobot.catalog import Catalog, find_action, find_model
from taobot.errors import SlackError, UnknownNameError
from taobot.intake.replies import secret_warning, split_launch_text
from taobot.services import Services
from taobot.slack.listeners import automl as automl_listeners
from taobot.slack.listeners.after_ack import AfterAck
from taobot.slack.listeners.automl import start_automl
from taobot.slack.render import render
from taobot.slack.text import slack_plain_text
from taobot.slack.workflow_cards import start_workflow

log = logging.getLogger(__name__)

USAGE = "Usage: `/tao launch <model> [action] [key=value …]`, `/tao automl <model>`, `/tao status [id]`, `/tao help`."


def register(app: App, services: Services, catalog: Catalog, after_ack: AfterAck) -> None:
    automl_listeners.register(app, services, after_ack)  # the AutoML final reply's *Train with these values*

    @app.command("/tao")
    def tao(ack, command: dict, respond) -> None:
        words = (command.get("text") or "").split()
        verb = words[0].lower() if words else "help"
        if verb == "help":
            ack(**render(services.help()))
            return
        if verb == "status":
            channel, user = command["channel_id"], command["user_id"]
            wanted = words[1] if len(words) > 1 else None
            view = (
                services.one_status(wanted, channel, user, audit=False)
                if wanted
                else services.channel_status(channel, user, audit=False)
            )
            ack(**render(view))
            # The audit row is a write: it waits until the answer is on its way.
            after_ack.submit(f"audit:{user}", lambda: services.audit_status(user, channel, wanted))
            return
        if verb == "automl":  # `/tao automl dino`: a hyperparameter search, each trial a launch
            channel, user = command["channel_id"], command["user_id"]
            ack()
            say = lambda t: respond(text=t, response_type="ephemeral")  # noqa: E731
            after_ack.submit(f"start:{channel}", lambda: start_automl(services, channel, user, words[1:], None, say))
            return
        if verb == "workflow":  # `/tao workflow train-eval-export dino`: one thread for the whole pipeline
            channel, user = command["channel_id"], command["user_id"]
            ack()
            after_ack.submit(
                f"start:{channel}",
                lambda: start_workflow(
                    services, channel, user, words[1:], None, lambda t: respond(text=t, response_type="ephemeral")
                ),
            )
            return
        if verb != "launch":
            ack(text=f"Unknown subcommand `{verb}`. {USAGE}")
            return
        if len(words) < 2:
            ack(text=f"Which model? {USAGE} Models: {', '.join(sorted(catalog.models))}.")
            return
        # `/tao launch cosmos-rl train on slurm num_gpus=8`: the rest are answers, read as one thread reply.
        head, answers = split_launch_text(slack_plain_text((command.get("text") or "").split(None, 1)[1]))
        if warning := secret_warning(" ".join(head), catalog):  # a pasted token where a model name goes
            ack(text=warning)
            return
        if not head:
            ack(text=f"Which model? {USAGE} Models: {', '.join(sorted(catalog.models))}.")
            return
        model_name, action_name = head[0], (head[1] if len(head) > 1 else "train")
        try:
            find_action(find_model(catalog, model_name), action_name)
        except UnknownNameError as exc:
            ack(text=exc.message)
            return
        ack(text=f"Starting a launch thread for {model_name} {action_name}…")
        channel, user = command["channel_id"], command["user_id"]

        def start() -> None:
            try:
                services.start(channel, user, model_name, action_name, answers=answers)
            except SlackError as exc:
                hint = (
                    " Invite the bot to this channel with `/invite @taobot`."
                    if exc.error in ("not_in_channel", "channel_not_found")
                    else ""
                )
                respond(text=f"Could not open the launch thread: {exc.error}.{hint}", response_type="ephemeral")

        # One channel's new threads open in the order they were asked for; posting the card waits its turn
        # under Slack's per-channel rate limit, after the ack.
        after_ack.submit(f"start:{channel}", start)
