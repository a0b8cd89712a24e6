"""View texts both renderers share: the mrkdwn lines of a status, read by Slack as is and by the console plain.

Pure functions of views; no Block Kit here.
"""

from __future__ import annotations

import time

from taobot.intake import Step
from taobot.launches import Launch
from taobot.triage import MAX_CHAIN, FailureKind
from taobot.views import ChannelEntry, ChannelStatus, FinalUpdate, IntakeDetail, IntakeFacts, LaunchDetail

STEP_TITLES = {
    Step.PLATFORM: "Where should it run?",
    Step.MONITORING: "Watch it in this thread?",
    Step.CREDENTIALS: "Credentials",
    Step.IMAGE: "Container image",
    Step.DATASETS: "Datasets",
    Step.COMPUTE: "Compute shape",
    Step.COMPLETE: "Intake complete",
}

STATE_MARK = {
    "Submitting": ":outbox_tray:",
    "Pending": ":hourglass:",
    "Running": ":arrow_forward:",
    "Succeeded": ":white_check_mark:",
    "Failed": ":x:",
    "Cancelled": ":no_entry_sign:",
    "Paused": ":double_vertical_bar:",
    "Unknown": ":grey_question:",
}


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def value_lines(facts: IntakeFacts) -> list[str]:
    """Every answer of the intake so far, one line each."""
    state, platform = facts.state, facts.platform
    lines = [f"*Platform:* {platform.display_name if platform else '—'}"]
    if state.monitor is None:
        lines.append("*Monitoring:* —")
    elif state.monitor:
        interval = f"every {state.interval_minutes} min" if state.interval_minutes else "interval —"
        lines.append(f"*Monitoring:* in this thread, {interval}")
    else:
        lines.append("*Monitoring:* off")
    if state.retry_infra:  # `retry=infra:N`
        times = f"{state.retry_infra} time{'s' if state.retry_infra != 1 else ''}"
        lines.append(f"*Retry:* an infrastructure failure retries by itself, up to {times}")
    if platform:
        creds = [f"`{n.name}` {'set' if n.name in state.credentials else 'missing'}" for n in facts.needs]
        extras = facts.optional + facts.settings
        creds += [f"`{c.name}` set (optional)" for c, _when in extras if c.name in state.credentials]
        lines.append("*Credentials:* " + (", ".join(creds) if creds else "none needed"))
    image = state.image
    if image.chosen is None:
        lines.append(f"*Image:* default `{image.default}` — not confirmed yet")
    else:
        how = "override" if image.overridden else "default, confirmed"
        lines.append(f"*Image:* `{image.chosen}` ({how})")
    if facts.datasets:
        lines.append("*Datasets:*\n" + "\n".join(f"• `{k}` = `{v}`" for k, v in facts.datasets.items()))
    else:
        lines.append("*Datasets:* —")
    if state.results_uri:
        lines.append(f"*Results:* `{state.results_uri}`")
    if state.mount_confirmations:
        confirmed = ", ".join(
            f"`{p}` by <@{c.by}> {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(c.at))}"
            for p, c in state.mount_confirmations.items()
        )
        lines.append(f"*Confirmed mounted:* {confirmed}")
    compute = ", ".join(f"{k}={v}" for k, v in state.compute.items()) or "—"
    lines.append(f"*Compute:* {compute}")
    return lines


def intake_detail_text(view: IntakeDetail) -> str:
    state = view.facts.state
    started = age(view.now - state.created_at)
    next_up = f" · next: {STEP_TITLES[view.facts.step]}" if state.status == "collecting" else ""
    lines = [
        f"*Launch `{state.id}`* — {state.model} {state.action}, started by <@{state.owner}> {started} ago",
        f"Status: *{state.status}*" + next_up,
        *value_lines(view.facts),
    ]
    return "\n".join(lines)


def channel_status_text(view: ChannelStatus) -> str:
    if not view.entries:
        where = "You have no launches" if view.yours else "No launches in this channel"
        return f"{where} yet. Start one with `/tao launch <model> [action]`."
    shown = len(view.entries)
    more = f" (newest {shown} of {view.total})" if view.total > shown else ""
    lines = [f"*{'Your launches' if view.yours else 'Launches in this channel'}*{more}"]
    lines += [entry_line(entry, view.now, channel=view.yours) for entry in view.entries]
    return "\n".join(lines)


def entry_line(entry: ChannelEntry, now: float, channel: bool = False, owner: bool = True) -> str:
    """One launch in a list: id, what, where, state, who, how long ago."""
    s, launch = entry.intake, entry.launch
    where = f"job `{launch.job_id}` *{launch.state.value}* (`{launch.id}`)" if launch else f"*{s.status}*"
    parts = [f"• `{s.id}` {s.model} {s.action}", entry.platform, where]
    if channel:
        parts.append(f"in <#{s.channel}>")
    if owner:
        parts.append(f"<@{s.owner}>")
    parts.append(f"{age(now - s.created_at)} ago")
    return " · ".join(parts)


# SLURM queue reasons that mean the job as asked for will never start, with what to change.
NEVER_STARTS = {
    "PartitionConfig": "it asks for more CPUs, GPUs or memory per node than the partition's nodes have "
    "(lower `SLURM_CPUS_PER_TASK` or the GPUs per node)",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows (lower the node count)",
    "PartitionTimeLimit": "its time limit is above the partition's MaxTime (lower `SLURM_TIME_HOURS`)",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "BadConstraints": "its constraints cannot be met by any node",
    "InvalidAccount": "the account is not valid (check `SLURM_ACCOUNT`)",
    "InvalidQOS": "the QOS is not valid",
    "AccountNotAllowed": "the account may not use this partition",
    "QOSNotAllowed": "the QOS may not use this partition",
}


def never_starts(reason: str | None) -> str | None:
    """Why a pending job will never start as asked, or None when it is only waiting."""
    if not reason:
        return None
    word = reason.strip().split(" ", 1)[0].strip("()")
    if word in NEVER_STARTS:
        return f"{word}: {NEVER_STARTS[word]}"
    if word.startswith(("QOSMax", "AssocMax")) and "PerJob" in word:
        return f"{word}: it asks for more than the job limit of its QOS or account allows"
    if word.startswith("ReqNodeNotAvail") and "down" in reason.lower():
        return f"{reason}: the nodes it needs are down"
    return None


def clock(at: float, now: float) -> str:
    """`14:03 UTC`, with the date when it is not today's."""
    same_day = time.gmtime(at)[:3] == time.gmtime(now)[:3]
    return time.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC", time.gmtime(at))


def status_line(launch: Launch, now: float) -> str:
    state = launch.state.value
    if launch.ended_at is not None:
        took = duration(launch.ended_at - launch.launched_at)
        text = f"{STATE_MARK.get(state, '')} *{state}* after {took} (ended {clock(launch.ended_at, now)})"
    else:
        text = f"{STATE_MARK.get(state, '')} *{state}* for {duration(now - (launch.state_since or launch.launched_at))}"
    if launch.native and launch.native.upper() != state.upper():
        text += f" (`{launch.native}`)"
    if state == "Pending" and launch.reason:
        never = never_starts(launch.reason)
        text += f" — :no_entry: will never start: {never}" if never else f" — waiting: {launch.reason}"
    elif launch.ended_at is not None and launch.reason:
        text += f" — {launch.reason}"
    return text


def launch_detail_text(view: LaunchDetail) -> str:
    launch, now = view.launch, view.now
    updates = "off" if not launch.monitor else "detached" if launch.detached else f"every {launch.interval_minutes} min"
    lines = [
        f"*Launch `{launch.id}`* — {launch.model} {launch.action} on {launch.platform}, by <@{launch.owner}>",
        status_line(launch, now),
        f"Job id: `{launch.job_id}` · elapsed {duration((launch.ended_at or now) - launch.launched_at)}",
        f"Logs: `{launch.log_location}`",
        f"Results: `{launch.results_location}`",
        "Updates: " + updates,
    ]
    if launch.unreachable:
        lines.append(f":warning: last poll could not reach {launch.platform}: {launch.unreachable}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- a failure's triage (final replies)

TRIAGE_MARK = {
    FailureKind.INFRASTRUCTURE: ":recycle:",
    FailureKind.CONFIGURATION: ":memo:",
    FailureKind.PROGRAM: ":bug:",
    FailureKind.UNKNOWN: ":grey_question:",
}


def triage_text(view: FinalUpdate) -> str:
    """What the triage found, the line that decided it, and what a retry can do: the final reply's middle."""
    found, launch = view.triage, view.launch
    assert found is not None
    head = f"{TRIAGE_MARK[found.kind]} *Failure triage: {found.kind.value}* ({found.cause})"
    if found.kind is FailureKind.INFRASTRUCTURE:
        what = "The platform state or logs point to an infrastructure problem; this failure is likely retriable."
        if view.auto_retry:
            what += " " + view.auto_retry
        elif view.retry_offered:
            what += " *Retry* runs preflight again and, if it passes, launches the same inputs as a new job."
        elif view.chain >= MAX_CHAIN:
            what += (
                f" This is launch {view.chain} of its retry chain, the most taobot runs ({MAX_CHAIN}); "
                "have the cluster looked at, then *Relaunch*."
            )
    elif found.kind is FailureKind.CONFIGURATION:
        what = "A retry with the same inputs would fail the same way: change what this line names, then *Relaunch*." + (
            f" {view.auto_retry}" if view.auto_retry else ""
        )
    elif found.kind is FailureKind.PROGRAM:
        what = "The run itself failed; a retry with the same inputs would fail the same way, so none is offered." + (
            f" {view.auto_retry}" if view.auto_retry else ""
        )
    else:
        what = "Neither the platform state nor the last log lines say why; read the full log."
    lines = [f"{head}. {what}", "Decided by: `" + found.evidence.replace("`", "'") + "`"]
    if launch.retry_of:
        lines.append(f"This launch is retry {view.chain - 1} of its chain (it retries `{launch.retry_of}`).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- training progress and stuck signals

# What a queue reason means, for a job pending past its threshold (SLURM's words, and Kubernetes' Pod reasons).
PENDING_MEANS = {
    "Resources": "the nodes it needs are busy; it starts when they free up",
    "Priority": "jobs of higher priority are ahead of it in the queue",
    "Dependency": "it waits for another job it depends on",
    "JobHeldUser": "it is held (`scontrol release <job>` lets it go)",
    "JobHeldAdmin": "an administrator holds it",
    "BeginTime": "it was asked to start later",
    "ReqNodeNotAvail": "a node it needs is not available (drained, reserved or down)",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as your QOS allows; it starts when one ends",
    "AssocMaxJobsLimit": "your account already runs as many jobs as it may",
    "QOSGrpGRES": "the QOS's GPU limit is in use by other jobs",
    "AssocGrpGRES": "the account's GPU limit is in use by other jobs",
    "Reservation": "it waits for its reservation",
    "Unschedulable": "no node has the resources it asks for free (or none matches its constraints)",
    "ImagePullBackOff": "its image cannot be pulled; check the image name and the pull secret",
    "ErrImagePull": "its image cannot be pulled; check the image name and the pull secret",
}


def metric(value: float) -> str:
    """A loss or metric as TAO wrote it, without float noise: 0.25, 0.0001234, 12.5."""
    return format(value, ".4g")


def _metrics_text(pairs) -> str:
    return ", ".join(f"{short(name, 40)} {metric(value)}" for name, value in pairs)


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_text(progress, launch: Launch, now: float) -> str:
    """An update's training line: epoch n/N, latest loss, last validation, time per epoch, ETA, checkpoint."""
    p = progress
    parts = []
    if p.done is not None:
        parts.append(f"{p.unit} {p.done}/{p.total}" if p.total else f"{p.unit} {p.done}")
    if p.train_loss is not None:
        parts.append(f"{p.loss_name or 'loss'} {metric(p.train_loss)}")
    if p.validation:
        at = f" (epoch {p.validation_epoch})" if p.validation_epoch is not None else ""
        parts.append(f"validation{at}: {_metrics_text(p.validation)}")
    if p.time_per_epoch_s is not None:
        parts.append(f"{duration(p.time_per_epoch_s)} per {p.unit}")
    eta = p.eta_s
    if eta is None and p.done and p.total and launch.state.value == "Running":
        # No ETA written: estimated from how long it has run so far.
        spent = now - (launch.state_since or launch.launched_at)
        eta = max(0.0, spent / p.done * (p.total - p.done))
        parts.append(f"ETA ≈{duration(eta)} (estimated)")
    elif eta is not None and not p.finished_training:
        parts.append(f"ETA {duration(eta)}")
    lines = [":chart_with_upwards_trend: *Training:* " + " · ".join(parts)] if parts else []
    if p.checkpoint:
        lines.append(f"*Last checkpoint:* `{short(p.checkpoint, 500)}`")
    lines.append(f"_progress from {p.source}_")
    return "\n".join(lines)


SPARKS = "▁▂▃▄▅▆▇█"
FENCE = "```"
EPOCHS_SHOWN = 12


def sparkline(values: list[float], width: int = 40) -> str:
    """A loss curve in characters, oldest first (sampled down to `width`)."""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - low) / span * (len(SPARKS) - 1) + 0.5))] for v in values)


def final_progress_texts(progress, results: str | None) -> list[str]:
    """A final reply's training facts, as sections: final loss and the loss curve; each epoch's validation
    (compact: the first two and the last ones, as many as fit); the checkpoint and where the rest is."""
    p = progress
    facts = []
    head = []
    if p.done is not None:
        head.append(f"{p.done}/{p.total} {p.unit}s" if p.total else f"{p.done} {p.unit}s")
    if p.train_loss is not None:
        head.append(f"final {p.loss_name or 'training loss'} {metric(p.train_loss)}")
    if head:
        facts.append(":chart_with_upwards_trend: *Training:* " + " · ".join(head))
    losses = [e.train_loss for e in p.epochs if e.train_loss is not None]
    if len(losses) >= 3:
        facts.append(f"Loss per {p.unit}: `{sparkline(losses)}` {metric(losses[0])} → {metric(losses[-1])}")
    validated = [e for e in p.epochs if e.validation]
    if not validated and p.validation:
        facts.append(f"*Metrics:* {_metrics_text(p.validation)}")
    if p.checkpoint:
        facts.append(f"*Checkpoint:* `{short(p.checkpoint, 500)}`")
    if facts:
        facts.append(f"_from {p.source}_" + (f" · all of it in `{short(results, 500)}`" if results else ""))
    texts = ["\n".join(facts)] if facts else []
    if validated:
        rows = [short(f"{p.unit} {e.epoch}: {_metrics_text(e.validation)}", 300) for e in validated]
        fits = max(3, min(EPOCHS_SHOWN, 2400 // max(len(r) + 1 for r in rows)))
        if len(rows) > fits:
            rows = rows[:2] + [f"… {len(rows) - fits} more"] + rows[-(fits - 2) :]
        table = "\n".join(rows).replace(FENCE, "' ' '")
        texts.append("*Validation per epoch:*\n" + FENCE + table + FENCE)
    return texts


def pending_means(reason: str | None) -> str:
    word = (reason or "").strip().split(" ", 1)[0].split(":", 1)[0].strip("()")
    for key, means in PENDING_MEANS.items():
        if word.startswith(key):
            return means
    return ""


def stuck_text(signal) -> str:
    """One stuck signal of an update, in words."""
    if signal.kind == "pending":
        why = f"the queue says `{signal.reason}`" if signal.reason else "the platform gives no reason"
        means = pending_means(signal.reason)
        return (
            f":hourglass_flowing_sand: *Pending for {duration(signal.seconds)}* (longer than "
            f"{duration(signal.threshold_s)}): {why}" + (f" — {means}" if means else "") + "."
        )
    return (
        f":zzz: *No output for {duration(signal.seconds)}*: the job is Running but its log has not grown "
        f"(taobot says so after {duration(signal.threshold_s)}). It may be hung, or in a long step that prints nothing."
    )


def silence_notice(launch: Launch, seconds: float, rules) -> str:
    """The once-only mention of the owner when their running job has written nothing for the threshold."""
    return (
        f"<@{launch.owner}> :zzz: `{launch.id}` ({launch.model} {launch.action} on {launch.platform}, job "
        f"`{launch.job_id}`) is Running but has written no output for {duration(seconds)} (taobot says so once, "
        f"after {duration(rules.silent_s)}). Look at its log (`{launch.log_location}`); cancel it if it hangs. "
        "The updates go on as before."
    )
