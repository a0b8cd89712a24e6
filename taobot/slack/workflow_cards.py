"""The pipeline card (one line per stage; *Confirm stage images*, *Resume from here*), the `/tao workflow` and
`@taobot workflow` starts, and the card's buttons: acked first, handed to the services after the ack."""

from __future__ import annotations

import logging

from taobot.errors import SlackError, TaobotError
from taobot.slack import blocks as B
from taobot.slack.listeners.after_ack import thread_key
from taobot.workflows.views import CONFIRM_IMAGES, RESUME, PipelineCard, duration

log = logging.getLogger(__name__)

USAGE = "Usage: `/tao workflow <workflow> <model>`, e.g. `/tao workflow train-eval-export dino`."
ICONS = {"succeeded": ":white_check_mark:", "failed": ":x:", "skipped": ":fast_forward:", "waiting": ":white_circle:"}


def pipeline_card(view: PipelineCard) -> dict:
    blocks = [
        B.section(f"*Workflow `{view.workflow}`* for *{view.model}* — {view.status}\n{view.summary}"[:2900]),
    ]
    lines = []
    for s in view.stages:
        icon = ICONS.get(s.state, ":large_blue_circle:")
        took = f" · {duration(s.duration_s)}" if s.duration_s is not None else ""
        metric = f" · {s.metric}" if s.metric else ""
        image = f"`{s.image}`" + ("" if s.image_confirmed else " (default, not confirmed)")
        job = f" · `{s.launch_id}`" if s.launch_id else ""
        note = f"\n      {s.note}" if s.note else ""
        lines.append(f"{icon} *{s.name}* ({s.action}) {s.state}{took}{metric}{job}\n      image {image}{note}")
    for chunk in B.pack(lines, 2900):
        blocks.append(B.section(chunk))
    if view.left_out:
        blocks.append(B.context("Left out: " + "; ".join(view.left_out)))
    buttons = []
    if view.images_pending and view.status == "collecting":
        buttons.append(B.button("Confirm stage images", CONFIRM_IMAGES, view.intake_id))
    if view.resume_from:
        buttons.append(B.button(f"Resume from {view.resume_from}", RESUME, view.intake_id, style="primary"))
    if buttons:
        blocks.append(B.actions(f"wf_{view.intake_id}", buttons))
    return {"text": B.clip(view.text, 3000), "blocks": B.fit(blocks)}


def start_workflow(services, channel: str, user: str, words: list[str], thread_ts: str | None, say) -> None:
    """`workflow <name> <model>` from a slash command or a mention; bad names get what exists or fits."""
    flows = services.workflows.flows
    if len(words) < 2:
        say(f"{USAGE} Workflows: {', '.join(sorted(flows))}.")
        return
    try:
        services.workflows.start(channel, user, words[0], words[1], thread_ts)
    except SlackError as exc:
        say(f"Could not open the workflow thread: {exc.error}.")
    except TaobotError as exc:
        services.desk.audit(user, "workflow", channel=channel, allowed=False, reason=exc.message)
        say(exc.message)


def register(app, services, after_ack) -> None:
    from taobot.services.workflows import workflow_action

    def on_button(which: str):
        def handler(ack, body: dict, action: dict) -> None:
            ack()
            user = body["user"]["id"]
            channel = (body.get("channel") or {}).get("id", "")
            thread = ((body.get("message") or {}).get("thread_ts")) or (body.get("message") or {}).get("ts")
            after_ack.submit(
                thread_key(channel, thread), lambda: workflow_action(services.workflows, user, action["value"], which)
            )

        return handler

    app.action(RESUME)(on_button("resume"))
    app.action(CONFIRM_IMAGES)(on_button("confirm_images"))
