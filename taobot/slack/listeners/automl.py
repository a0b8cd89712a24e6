"""AutoML in Slack: `/tao automl <model>` and `@taobot automl <model>` open a search thread; the final reply's
*Train with these values* opens a normal train thread with the best values. Acked first, work after the ack."""

from __future__ import annotations

from collections.abc import Callable

from slack_bolt import App

from taobot.catalog.automl import automl_models
from taobot.services import Services
from taobot.slack.automl_cards import AUTOML_TRAIN_BEST
from taobot.slack.listeners.after_ack import AfterAck, thread_key


def start_automl(
    services: Services, channel: str, user: str, words: list[str], thread_ts: str | None, say: Callable[[str], None]
) -> None:
    """Open an AutoML thread for `words[0]`; without a model, say which models can be searched."""
    if not words:
        able = ", ".join(f"`{m}`" for m in automl_models(services.catalog))
        say(f"Which model? `/tao automl <model>`; AutoML searches run for: {able}.")
        return
    services.automl.start(channel, user, words[0], thread_ts)


def register(app: App, services: Services, after_ack: AfterAck) -> None:
    @app.action(AUTOML_TRAIN_BEST)
    def on_train_best(ack, body: dict, action: dict) -> None:
        ack()
        channel = (body.get("channel") or {}).get("id", "")
        user = body["user"]["id"]
        thread_ts = (body.get("message") or {}).get("thread_ts")
        after_ack.submit(
            thread_key(channel, thread_ts), lambda: services.automl.train_best(channel, user, action.get("value", ""))
        )
