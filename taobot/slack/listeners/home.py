"""The App Home tab: opening it shows the person their own launches."""

from __future__ import annotations

from slack_bolt import App

from taobot.services import Services


def register(app: App, services: Services) -> None:
    @app.event("app_home_opened")
    def on_home_opened(event: dict) -> None:
        # The Messages tab opens this event too; only the Home tab has a view to publish.
        if event.get("tab", "home") == "home" and event.get("user"):
            services.show_home(event["user"])
