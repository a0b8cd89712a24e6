"""Modal submissions into intents: credentials and more settings, image override, datasets.

Field problems are answered inside the ack (Slack shows them next to the
field); a form without problems is acked and then handed over.
"""

from __future__ import annotations

from slack_bolt import App

from taobot.intake import OverrideImage
from taobot.intake.intents import Answer, SubmitCredentials, SubmitDatasets
from taobot.services import Context, Services
from taobot.slack import forms as F
from taobot.slack.blocks import clip


def submitted_values(view: dict) -> dict[str, str]:
    values: dict[str, str] = {}
    for block_id, fields in (view.get("state") or {}).get("values", {}).items():
        field = fields.get(F.VALUE_ID) or {}
        values[block_id] = field.get("value") or ""
    return values


def form_intent(callback_id: str, values: dict[str, str]) -> tuple[SubmitCredentials | SubmitDatasets | Answer, dict]:
    """The intent a submitted form means, and each of its field names' block id (to place problems)."""
    if callback_id in F.CREDENTIAL_FORMS:
        by_name = {
            b.removeprefix(F.CRED_BLOCK_PREFIX): v for b, v in values.items() if b.startswith(F.CRED_BLOCK_PREFIX)
        }
        return SubmitCredentials(by_name), {n: F.CRED_BLOCK_PREFIX + n for n in by_name}
    if callback_id == F.IMAGE_MODAL:
        return Answer((OverrideImage(values.get(F.IMAGE_BLOCK, "")),), "image_override"), {"image": F.IMAGE_BLOCK}
    roots = {b.removeprefix(F.ROOT_BLOCK_PREFIX): v for b, v in values.items() if b.startswith(F.ROOT_BLOCK_PREFIX)}
    form = SubmitDatasets(roots, values.get(F.SPEC_BLOCK, ""), values.get(F.RESULTS_BLOCK, ""))
    return form, {"spec": F.SPEC_BLOCK}


def register(app: App, services: Services) -> None:
    for callback_id in F.CALLBACK_IDS:

        @app.view(callback_id)
        def on_submit(ack, body: dict, view: dict) -> None:
            values = submitted_values(view)
            ctx = Context(user=body["user"]["id"], channel="")
            intake_id = view.get("private_metadata", "")
            intent, blocks = form_intent(view["callback_id"], values)
            problems = services.check_form(ctx, intake_id, intent)
            if problems:
                first = next(iter(values), F.IMAGE_BLOCK)
                ack(
                    response_action="errors",
                    errors={blocks.get(field, first): clip(text, 2000) for field, text in problems.items()},
                )
                return
            ack()
            state = services.store.get_intake(intake_id)
            if state is not None:
                services.act(Context(user=ctx.user, channel=state.channel), intake_id, intent)
