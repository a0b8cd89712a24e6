"""Launch messages: the launch notice, interval status updates and the final reply."""

from __future__ import annotations

from taobot.intake.intents import RETRY
from taobot.slack.blocks import CANCEL_JOB, DETACH, RELAUNCH, actions, button, context, fit, plain, section
from taobot.triage import SUBMIT_HINTS, FailureKind
from taobot.view_text import (
    STATE_MARK,
    TRIAGE_MARK,
    clock,
    duration,
    final_progress_texts,
    never_starts,
    progress_text,
    status_line,
    stuck_text,
    triage_text,
)
from taobot.views import FinalUpdate, LaunchPosted, StatusUpdate, SubmitFailed


def _log_block(lines) -> list[dict]:
    if not lines:
        return []
    # Log text goes in a code block; a stray fence inside it would end the block early.
    text = "\n".join(lines)[-2400:].replace("```", "` ` `")
    return [section("*Last log lines*\n```" + text + "```")]


def _cancel_button(launch_id: str) -> dict:
    return button(
        "Cancel job",
        CANCEL_JOB,
        launch_id,
        "danger",
        confirm={
            "title": plain("Cancel this job?"),
            "text": plain("The job is cancelled on the platform. This cannot be undone.", 300),
            "confirm": plain("Cancel job"),
            "deny": plain("Keep it running"),
        },
    )


def launch_posted(view: LaunchPosted) -> dict:
    launch = view.launch
    lines = [
        f":rocket: *Launched `{launch.id}`* — {launch.model} {launch.action} on {launch.platform}",
        f"Job id: `{launch.job_id}`",
        f"Logs: `{launch.log_location}`",
        f"Results: `{launch.results_location}`",
    ]
    if launch.retry_of:
        lines.append(f":recycle: A retry of `{launch.retry_of}`, with the same inputs.")
    if launch.monitor:
        lines.append(
            f"I will post status here every {launch.interval_minutes} min until it ends. Reply `detach` to stop updates."
        )
    else:
        lines.append(f"Monitoring is off. Check it any time with `/tao status {launch.id}`.")
    elements = [_cancel_button(launch.id)]
    if launch.monitor:
        elements.append(button("Stop updates", DETACH, launch.id))
    return {
        "text": f"Launched {launch.id}: job {launch.job_id}",
        "blocks": [section("\n".join(lines)), actions(f"l_{launch.id}", elements)],
    }


def status_update(view: StatusUpdate) -> dict:
    launch, lines, now = view.launch, view.log_lines, view.now
    head = f"*`{launch.id}`* {launch.model} {launch.action} · job `{launch.job_id}` · " + status_line(launch, now)
    body = [section(head)]
    never = never_starts(launch.reason) if launch.state.value == "Pending" else None
    if never:
        body.append(
            section(
                f":no_entry: This job will never start as asked ({never}). "
                "Cancel it and relaunch with the setting changed."
            )
        )
    if launch.unreachable:
        body.append(
            section(
                f":warning: Could not reach {launch.platform}: {launch.unreachable}. "
                "The job is not marked failed; taobot keeps retrying with backoff."
            )
        )
    body += [section(stuck_text(signal)) for signal in view.stuck]
    if view.progress is not None and view.progress.known:
        body.append(section(progress_text(view.progress, launch, now)))
    body += _log_block(lines)
    body.append(
        context(
            f"Full logs: `{launch.log_location}` · {duration(now - launch.launched_at)} since launch · "
            f"`/tao status {launch.id}` · reply `detach` to stop updates"
        )
    )
    body.append(actions(f"u_{launch.id}", [_cancel_button(launch.id), button("Stop updates", DETACH, launch.id)]))
    return {"text": f"{launch.id}: {launch.state.value}", "blocks": fit(body)}


def final_update(view: FinalUpdate) -> dict:
    launch, lines, cause, now = view.launch, view.log_lines, view.cause, view.now
    state = launch.state.value
    took = duration((launch.ended_at or now) - launch.launched_at)
    ended = f" (ended {clock(launch.ended_at, now)})" if launch.ended_at is not None else ""
    head = (
        f"{STATE_MARK.get(state, '')} *`{launch.id}` {state}* — {launch.model} {launch.action} on {launch.platform}, "
        f"after {took}{ended}"
    )
    # The owner is mentioned, so the end reaches them (not the whole channel) wherever they are.
    facts = [head, f"<@{launch.owner}> · job `{launch.job_id}` · platform state `{launch.native}`"]
    if launch.exit_code is not None:
        facts.append(f"Exit code: {launch.exit_code}")
    if launch.reason:
        facts.append(f"Reason: {launch.reason}")
    facts.append(f"Results: `{launch.results_location}`")
    facts.append(f"Logs: `{launch.log_location}`")
    if cause and view.triage is None:
        facts.append(
            f":recycle: The platform state or logs point to an infrastructure problem ({cause}); "
            "this failure is likely retriable."
        )
    body = [section("\n".join(facts))] + _progress_blocks(view) + _triage_blocks(view) + _log_block(lines)
    body.append(actions(f"f_{launch.id}", _final_buttons(view)))
    return {"text": f"{launch.id} {state}", "blocks": fit(body)}


def _progress_blocks(view: FinalUpdate) -> list[dict]:
    """What the run reported: final loss, each epoch's validation, checkpoint and results paths."""
    if view.progress is None or not view.progress.known:
        return []
    return [section(text) for text in final_progress_texts(view.progress, view.launch.results_location)]


def _triage_blocks(view: FinalUpdate) -> list[dict]:
    """The failure's kind, the deciding line, and for a program failure the traceback's last frames."""
    if view.triage is None:
        return []
    blocks = [section(triage_text(view))]
    if view.triage.frames:
        frames = "\n".join(view.triage.frames)[-2400:].replace("```", "` ` `")
        blocks.append(section("*Last frames of the traceback*\n```" + frames + "```"))
    return blocks


def _final_buttons(view: FinalUpdate) -> list[dict]:
    """*Retry* for an infrastructure failure with room left in its chain; *Relaunch* (inputs first) always."""
    launch_id = view.launch.id
    if view.retry_offered:
        return [button("Retry", RETRY, launch_id, "primary"), button("Relaunch", RELAUNCH, launch_id)]
    return [button("Relaunch", RELAUNCH, launch_id, "primary")]


SUBMIT_WHAT = {
    FailureKind.INFRASTRUCTURE: "The platform, not the inputs, failed this submit: another attempt may well be taken.",
    FailureKind.CONFIGURATION: "The same request would be refused the same way: change what this line names, "
    "then run preflight and *Launch* again.",
    FailureKind.UNKNOWN: "taobot does not know this refusal: read the platform's message above, fix what it names, "
    "then run preflight and *Launch* again.",
}


def submit_failed(view: SubmitFailed) -> dict:
    """A submit that failed before any job existed: the platform's words, the triage and its deciding line,
    what to do, and *Retry* only for an infrastructure failure."""
    launch, found = view.launch, view.triage
    head = (
        f":x: *Could not reach {view.platform}* to submit `{launch.id}`"
        if view.unreachable
        else f":x: *{view.platform} refused the job* `{launch.id}`"
    )
    lines = [
        f"{head} — {launch.model} {launch.action}. Nothing is running.",
        f"{TRIAGE_MARK[found.kind]} *Failure triage: {found.kind.value}* ({found.cause})",
        "Decided by: `" + found.evidence.replace("`", "'") + "`",
    ]
    what = SUBMIT_WHAT.get(found.kind, SUBMIT_WHAT[FailureKind.UNKNOWN])
    if hint := SUBMIT_HINTS.get(found.cause):
        what += f" What to do: {hint}."
    if view.retry_offered:
        what += " *Retry* runs preflight again and, if it passes, submits the same inputs as a new job."
    lines.append(what)
    body = [section("\n".join(lines))]
    if launch.reason and launch.reason.strip() != found.evidence.strip():
        body.append(section("*The platform said*\n```" + launch.reason[-2400:].replace("```", "` ` `") + "```"))
    if view.retry_offered:
        body.append(actions(f"s_{launch.id}", [button("Retry", RETRY, launch.id, "primary")]))
    return {"text": f"{launch.id}: submit failed ({found.kind.value}: {found.cause})", "blocks": fit(body)}
