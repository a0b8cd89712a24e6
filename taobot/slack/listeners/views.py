"""Modal submissions: credentials, image override, datasets."""

from __future__ import annotations

from slack_bolt import App

from taobot.service import IntakeService
from taobot.slack import blocks as B


def submitted_values(view: dict) -> dict[str, str]:
    values: dict[str, str] = {}
    for block_id, fields in (view.get("state") or {}).get("values", {}).items():
        field = fields.get(B.VALUE_ID) or {}
        values[block_id] = field.get("value") or ""
    return values


def register(app: App, service: IntakeService) -> None:
    for callback_id in B.CALLBACK_IDS:

        @app.view(callback_id)
        def on_submit(ack, body: dict, view: dict) -> None:
            values = submitted_values(view)
            user = body["user"]["id"]
            intake_id = view.get("private_metadata", "")
            errors = service.validate_submission(view["callback_id"], intake_id, user, values)
            if errors:
                ack(response_action="errors", errors=errors)
                return
            ack()
            service.handle_submission(view["callback_id"], intake_id, user, values)
