"""Modal submissions into intents: credentials and more settings, image override, datasets.

Field problems are answered inside the ack (Slack shows them next to the
field); a form without problems is acked and then handed over. A kubeconfig
uploaded in the credentials form is read from Slack after the ack (a
download is slow work) and handed to the services, who check it, store it
encrypted and say in the thread what was kept or why it was refused.
"""

from __future__ import annotations

import logging

from slack_bolt import App

from taobot.intake import OverrideImage
from taobot.intake.intents import Answer, SubmitCredentials, SubmitDatasets
from taobot.kube_upload import MAX_UPLOAD_BYTES
from taobot.services import Context, Services
from taobot.slack import forms as F
from taobot.slack import kube_forms as KF
from taobot.slack.blocks import clip
from taobot.slack.files import SlackFileError, read_uploaded_text

log = logging.getLogger(__name__)


def submitted_values(view: dict) -> dict[str, str]:
    """Text fields and selects by block id; uploaded files are `submitted_files`."""
    values: dict[str, str] = {}
    for block_id, fields in (view.get("state") or {}).get("values", {}).items():
        field = fields.get(F.VALUE_ID) or {}
        if field.get("type") == "file_input":
            continue
        if "selected_option" in field:
            values[block_id] = (field.get("selected_option") or {}).get("value") or ""
        else:
            values[block_id] = field.get("value") or ""
    return values


def submitted_files(view: dict) -> dict[str, list[dict]]:
    """The file objects of each `file_input` field that has any, by block id."""
    found: dict[str, list[dict]] = {}
    for block_id, fields in (view.get("state") or {}).get("values", {}).items():
        field = fields.get(F.VALUE_ID) or {}
        if field.get("type") == "file_input" and field.get("files"):
            found[block_id] = [f for f in field["files"] if isinstance(f, dict) and f.get("id")]
    return found


def form_intent(callback_id: str, values: dict[str, str]) -> tuple[SubmitCredentials | SubmitDatasets | Answer, dict]:
    """The intent a submitted form means, and each of its field names' block id (to place problems)."""
    if callback_id in F.CREDENTIAL_FORMS:
        by_name = {
            b.removeprefix(F.CRED_BLOCK_PREFIX): v for b, v in values.items() if b.startswith(F.CRED_BLOCK_PREFIX)
        }
        blocks = {n: F.CRED_BLOCK_PREFIX + n for n in by_name}
        blocks["KUBECONFIG_CONTENT"] = KF.UPLOAD_BLOCK
        return SubmitCredentials(by_name), blocks
    if callback_id == F.RELAUNCH_MODAL:
        return F.relaunch_intent(values), {}
    if callback_id == F.IMAGE_MODAL:
        return Answer((OverrideImage(values.get(F.IMAGE_BLOCK, "")),), "image_override"), {"image": F.IMAGE_BLOCK}
    roots = {b.removeprefix(F.ROOT_BLOCK_PREFIX): v for b, v in values.items() if b.startswith(F.ROOT_BLOCK_PREFIX)}
    form = SubmitDatasets(roots, values.get(F.SPEC_BLOCK, ""), values.get(F.RESULTS_BLOCK, ""))
    return form, {"spec": F.SPEC_BLOCK}


def take_upload(app: App, services: Services, ctx: Context, intake_id: str, file: dict) -> None:
    """Read the uploaded kubeconfig from Slack and hand it to the services (after the ack)."""
    kube = services.intake.kube
    try:
        name, text = read_uploaded_text(app.client, file["id"], MAX_UPLOAD_BYTES)
    except SlackFileError as exc:
        log.info("uploaded kubeconfig not read: %s", exc, extra={"intake": intake_id})
        kube.upload_unread(ctx.user, intake_id, exc.message)
        return
    accepted = kube.check_upload(ctx.user, intake_id, name, text)
    if accepted is not None:
        values, upload = accepted
        services.act(ctx, intake_id, SubmitCredentials(values))
        kube.upload_saved(intake_id, name, upload)


def register(app: App, services: Services) -> None:
    for callback_id in F.CALLBACK_IDS:

        @app.view(callback_id)
        def on_submit(ack, body: dict, view: dict) -> None:
            values = submitted_values(view)
            ctx = Context(user=body["user"]["id"], channel="")
            intake_id = view.get("private_metadata", "")
            intent, blocks = form_intent(view["callback_id"], values)
            uploads = (
                submitted_files(view).get(KF.UPLOAD_BLOCK, []) if view["callback_id"] == F.CREDENTIALS_MODAL else []
            )
            problems = services.check_form(ctx, intake_id, intent)
            if uploads and not problems and (clash := services.intake.kube.upload_conflict(intent.values, True)):
                problems = {"KUBECONFIG_CONTENT": clash}
            if problems:
                first = next(iter(values), F.IMAGE_BLOCK)
                ack(
                    response_action="errors",
                    errors={blocks.get(field, first): clip(text, 2000) for field, text in problems.items()},
                )
                return
            ack()
            state = services.store.get_intake(intake_id)
            if state is None:
                return
            ctx = Context(user=ctx.user, channel=state.channel)
            services.act(ctx, intake_id, intent)
            if uploads:
                take_upload(app, services, ctx, intake_id, uploads[0])
