"""Pure Block Kit builders. Every function returns plain dicts.

Builders keep inside Slack's limits themselves (50 blocks per message,
3,000 characters per section, 100 options per select, 24-character modal
titles) so a long path or a chatty error can never make Slack reject a
message. Action and callback ids are constants shared with the listeners.
"""

from __future__ import annotations

import time

from taobot.catalog import Catalog, find_platform
from taobot.conversation import (
    INTERVAL_ADVICE,
    STEP_ORDER,
    IntakeState,
    Step,
    compute_defaults,
    credential_needs,
    dataset_help,
    dataset_inputs,
    missing_items,
    next_step,
    optional_credentials,
    platform_of,
)

# action ids (block_actions)
PLATFORM_SELECT = "platform_select"
MONITOR_YES = "monitor_yes"
MONITOR_NO = "monitor_no"
INTERVAL_SELECT = "interval_select"
OPEN_CREDENTIALS = "open_credentials"
USE_SSH_AGENT = "use_ssh_agent"
IMAGE_USE_DEFAULT = "image_use_default"
IMAGE_OVERRIDE = "image_override"
OPEN_DATASETS = "open_datasets"
COMPUTE_DEFAULTS = "compute_defaults"
CANCEL_INTAKE = "cancel_intake"
RUN_PREFLIGHT = "run_preflight"
CONFIRM_MOUNTED = "confirm_mounted"
LAUNCH = "launch"
CANCEL_JOB = "cancel_job"
DETACH = "detach"
ATTACH = "attach"
RELAUNCH = "relaunch"
ACTION_IDS = (
    PLATFORM_SELECT,
    MONITOR_YES,
    MONITOR_NO,
    INTERVAL_SELECT,
    OPEN_CREDENTIALS,
    USE_SSH_AGENT,
    IMAGE_USE_DEFAULT,
    IMAGE_OVERRIDE,
    OPEN_DATASETS,
    COMPUTE_DEFAULTS,
    CANCEL_INTAKE,
    RUN_PREFLIGHT,
    CONFIRM_MOUNTED,
    LAUNCH,
    CANCEL_JOB,
    DETACH,
    ATTACH,
    RELAUNCH,
)

# callback ids (view_submission)
CREDENTIALS_MODAL = "credentials_modal"
IMAGE_MODAL = "image_modal"
DATASETS_MODAL = "datasets_modal"
CALLBACK_IDS = (CREDENTIALS_MODAL, IMAGE_MODAL, DATASETS_MODAL)

# block / input ids inside modals
CRED_BLOCK_PREFIX = "cred_"
IMAGE_BLOCK = "image_ref"
ROOT_BLOCK_PREFIX = "root_"
SPEC_BLOCK = "spec_pairs"
RESULTS_BLOCK = "results"
VALUE_ID = "value"

MAX_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION = 3000
MAX_TEXT = 3000  # fallback text and context elements are kept under this too
MAX_OPTIONS = 100
MAX_TITLE = 24
MAX_INPUT = 3000  # longest value a plain_text_input can hold
INTERVAL_CHOICES = (1, 2, 5, 10, 15, 30, 60)

STEP_TITLES = {
    Step.PLATFORM: "Where should it run?",
    Step.MONITORING: "Watch it in this thread?",
    Step.CREDENTIALS: "Credentials",
    Step.IMAGE: "Container image",
    Step.DATASETS: "Datasets",
    Step.COMPUTE: "Compute shape",
    Step.COMPLETE: "Intake complete",
}


def clip(text: str, limit: int = MAX_SECTION) -> str:
    """Shorten text to Slack's limit, saying that it was shortened."""
    if len(text) <= limit:
        return text
    marker = "… (shortened)"
    return text[: limit - len(marker)] + marker


def pack(lines: list[str], limit: int) -> list[str]:
    """Join lines into as few chunks as fit within `limit` characters each."""
    chunks: list[str] = []
    for line in lines:
        if chunks and len(chunks[-1]) + 1 + len(line) <= limit:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line[:limit])
    return chunks


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": clip(text)}


def plain(text: str, limit: int = 75) -> dict:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def section(text: str, accessory: dict | None = None, block_id: str | None = None) -> dict:
    block: dict = {"type": "section", "text": mrkdwn(text)}
    if accessory:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id
    return block


def context(text: str) -> dict:
    return {"type": "context", "elements": [mrkdwn(text)]}


def button(text: str, action_id: str, value: str, style: str | None = None, confirm: dict | None = None) -> dict:
    b: dict = {"type": "button", "text": plain(text), "action_id": action_id, "value": value[:2000]}
    if style:
        b["style"] = style
    if confirm:
        b["confirm"] = confirm
    return b


def option(text: str, value: str) -> dict:
    return {"text": plain(text), "value": value[:150]}


def actions(block_id: str, elements: list[dict]) -> dict:
    return {"type": "actions", "block_id": block_id[:255], "elements": elements[:25]}


def _fit(blocks: list[dict], limit: int = MAX_BLOCKS) -> list[dict]:
    if len(blocks) <= limit:
        return blocks
    return blocks[: limit - 1] + [context(f"{len(blocks) - limit + 1} more items not shown; reply `help` for the full list.")]


# --------------------------------------------------------------------------- intake card


def _value_line(state: IntakeState, catalog: Catalog) -> list[str]:
    platform = platform_of(state, catalog)
    lines = [f"*Platform:* {platform.display_name if platform else '—'}"]
    if state.monitor is None:
        lines.append("*Monitoring:* —")
    elif state.monitor:
        interval = f"every {state.interval_minutes} min" if state.interval_minutes else "interval —"
        lines.append(f"*Monitoring:* in this thread, {interval}")
    else:
        lines.append("*Monitoring:* off")
    if platform:
        creds = []
        for need in credential_needs(state, catalog):
            mark = "set" if need.name in state.credentials else "missing"
            creds.append(f"`{need.name}` {mark}")
        for cred, _when in optional_credentials(state, catalog):
            if cred.name in state.credentials:
                creds.append(f"`{cred.name}` set (optional)")
        lines.append("*Credentials:* " + (", ".join(creds) if creds else "none needed"))
    image = state.image
    if image.chosen is None:
        lines.append(f"*Image:* default `{image.default}` — not confirmed yet")
    else:
        how = "override" if image.overridden else "default, confirmed"
        lines.append(f"*Image:* `{image.chosen}` ({how})")
    mapping = dataset_inputs(state, catalog)
    if mapping:
        lines.append("*Datasets:*\n" + "\n".join(f"• `{k}` = `{v}`" for k, v in mapping.items()))
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


def _question_blocks(state: IntakeState, catalog: Catalog, step: Step) -> list[dict]:
    iid = state.id
    if step is Step.PLATFORM:
        opts = [option(p.display_name, p.name) for p in catalog.platforms.values()][:MAX_OPTIONS]
        select = {
            "type": "static_select",
            "action_id": PLATFORM_SELECT,
            "placeholder": plain("Choose a platform"),
            "options": opts,
        }
        names = ", ".join(f"`{p.name}`" for p in catalog.platforms.values())
        return [section(f"*Where should it run?* Choose one of {names} (or reply `platform=<name>`).", select, f"q_{iid}")]
    if step is Step.MONITORING:
        select = {
            "type": "static_select",
            "action_id": INTERVAL_SELECT,
            "placeholder": plain("Status interval"),
            "options": [option(f"every {m} min", str(m)) for m in INTERVAL_CHOICES],
        }
        return [
            section(
                "*Post status updates in this thread until the job ends?* Default: yes, every "
                f"{catalog.default_status_interval_minutes} min ({INTERVAL_ADVICE}).",
                select,
                f"q_{iid}",
            ),
            actions(
                f"a_{iid}",
                [
                    button(f"Yes, every {catalog.default_status_interval_minutes} min", MONITOR_YES, iid, "primary"),
                    button("No monitoring", MONITOR_NO, iid),
                ],
            ),
        ]
    if step is Step.CREDENTIALS:
        elements = [button("Enter credentials", OPEN_CREDENTIALS, iid, "primary")]
        platform = platform_of(state, catalog)
        if platform and any("SSH_AUTH_SOCK" in g.one_of for g in platform.credential_groups) and not state.ssh_agent:
            elements.append(button("I use an SSH agent", USE_SSH_AGENT, iid))
        missing = [n.name for n in credential_needs(state, catalog) if n.name not in state.credentials]
        return [
            section(
                "*Credentials needed:* "
                + ", ".join(f"`{m}`" for m in missing)
                + ". They go in a private form, are encrypted at rest and never shown in the thread.",
                block_id=f"q_{iid}",
            ),
            actions(f"a_{iid}", elements),
        ]
    if step is Step.IMAGE:
        return [
            section(
                f"Container image for {state.model}/{state.action}: default={state.image.default}\n"
                f"_(from `{state.image.source}` in the catalog)_ Use it, or override with `image=<registry/name:tag>`.",
                block_id=f"q_{iid}",
            ),
            actions(
                f"a_{iid}",
                [
                    button("Use default image", IMAGE_USE_DEFAULT, iid, "primary"),
                    button("Override image", IMAGE_OVERRIDE, iid),
                ],
            ),
        ]
    if step is Step.DATASETS:
        return [
            section("*Dataset inputs*\n" + dataset_help(state, catalog), block_id=f"q_{iid}"),
            actions(f"a_{iid}", [button("Enter datasets", OPEN_DATASETS, iid, "primary")]),
        ]
    if step is Step.COMPUTE:
        defaults = compute_defaults(state, catalog)
        shown = ", ".join(f"{k}={v}" for k, v in defaults.items())
        return [
            section(
                f"*Compute shape:* platform defaults are {shown}. Use them, or reply e.g. `num_gpus=8`.",
                block_id=f"q_{iid}",
            ),
            actions(f"a_{iid}", [button(f"Use defaults ({shown})", COMPUTE_DEFAULTS, iid, "primary")]),
        ]
    from taobot.gate import compute_gate

    gate = compute_gate(state, catalog)
    record = state.preflight
    if gate.open:
        text = "*Preflight passed.* The launch gate is open for exactly these inputs; changing any of them closes it again."
        elements = [button("Launch", LAUNCH, iid, "primary"), button("Run preflight again", RUN_PREFLIGHT, iid)]
    else:
        if record is None:
            state_line = "Nothing has been created. Run preflight to check every input from the platform's point of view."
        elif record.status == "running":
            state_line = "Preflight is running; results appear below in this thread."
        else:
            state_line = "Preflight has not passed for these inputs, so nothing will be created."
        text = "*Intake complete.* " + state_line + "\n" + "\n".join(f"• {m}" for m in gate.missing)
        elements = [button("Run preflight", RUN_PREFLIGHT, iid, "primary")]
    return [section(text, block_id=f"q_{iid}"), actions(f"a_{iid}", elements)]


def preflight_card(state: IntakeState, results: list[dict], running: str | None, passed: bool | None) -> dict:
    """One message per preflight run: a line per check, remediation under each failure."""
    iid = state.id
    platform = state.platform or "—"
    if running is not None:
        head = f":hourglass_flowing_sand: *Preflight for launch `{iid}` on {platform}* — checking {running}…"
    elif passed:
        head = f":white_check_mark: *Preflight passed for launch `{iid}` on {platform}.* The launch gate is open."
    else:
        head = f":x: *Preflight failed for launch `{iid}` on {platform}.* Nothing was created. Fix what is marked below, then run it again."
    blocks: list[dict] = [section(head)]
    lines = []
    for r in results:
        mark = ":white_check_mark:" if r["ok"] else ":x:"
        text = f"{mark} *{r['label']}* — {r['detail']}"
        if not r["ok"] and r.get("remediation"):
            text += "\n" + "\n".join("> " + line for line in r["remediation"].splitlines())
        lines.append(clip(text, MAX_SECTION // 2))
    # Several checks share a section so a long path list never pushes the buttons past 50 blocks.
    blocks += [section(chunk) for chunk in pack(lines, MAX_SECTION)][: MAX_BLOCKS - 3]
    if running is None:
        elements = [button("Run preflight again", RUN_PREFLIGHT, iid)]
        if any(not r["ok"] and r.get("check") == "mount" for r in results):
            elements.insert(0, button("Confirm paths are mounted", CONFIRM_MOUNTED, iid))
        if passed:
            elements.insert(0, button("Launch", LAUNCH, iid, "primary"))
        blocks.append(actions(f"p_{iid}", elements))
    failed = sum(1 for r in results if not r["ok"])
    summary = f"Preflight {iid}: " + ("running" if running is not None else "passed" if passed else f"{failed} check(s) failed")
    return {"text": summary, "blocks": _fit(blocks)}


def intake_card(state: IntakeState, catalog: Catalog, launch: dict | None = None) -> dict:
    """The one message per thread that shows where the intake stands. Updated in place."""
    step = next_step(state, catalog)
    title = f"TAO launch: {state.model} {state.action}"
    blocks: list[dict] = [
        {"type": "header", "text": plain(title, 150)},
        context(f"Launch `{state.id}` · started by <@{state.owner}> · status: *{state.status}*"),
        section("\n".join(_value_line(state, catalog))),
    ]
    if launch is not None and state.status == "launched":
        blocks.append(section(f"*Job:* `{launch['job_id']}` on {launch['platform']} · "
                              + status_line(launch, time.time()) + f"\n`/tao status {launch['id']}`"))
        return {"text": f"{title} — {launch['state']}", "blocks": blocks}
    if state.status == "cancelled":
        blocks.append(section(":no_entry_sign: *Cancelled.* Nothing was created."))
        return {"text": f"{title} — cancelled", "blocks": blocks}
    blocks.append({"type": "divider"})
    blocks += _question_blocks(state, catalog, step)
    missing = missing_items(state, catalog)
    if missing:
        lines = [f"• *{m.label}* — {m.example}" for m in missing]
        blocks.append(section("*Still missing*\n" + "\n".join(lines)))
    tail = []
    if state.platform and step is not Step.CREDENTIALS:
        tail.append(button("Change credentials", OPEN_CREDENTIALS, state.id))
    past_image = step is Step.COMPLETE or STEP_ORDER.index(step) > STEP_ORDER.index(Step.IMAGE)
    if past_image:
        tail.append(button("Override image", IMAGE_OVERRIDE, state.id))
    if step is not Step.DATASETS and step is not Step.PLATFORM:
        tail.append(button("Change datasets", OPEN_DATASETS, state.id))
    tail.append(
        button(
            "Cancel intake",
            CANCEL_INTAKE,
            state.id,
            "danger",
            confirm={
                "title": plain("Cancel this launch?"),
                "text": plain("The intake stops here. Nothing has been created.", 300),
                "confirm": plain("Cancel intake"),
                "deny": plain("Keep going"),
            },
        )
    )
    blocks.append(actions(f"t_{state.id}", tail))
    blocks.append(context("Reply in this thread with `key=value` (several per message), `help`, or `cancel`."))
    fallback = f"{title} — next: {STEP_TITLES[step]}"
    return {"text": clip(fallback, MAX_TEXT), "blocks": _fit(blocks)}


# --------------------------------------------------------------------------- modals


def _input(block_id: str, label: str, optional: bool, hint: str = "", initial: str | None = None,
           placeholder: str | None = None, multiline: bool = False) -> dict:
    element: dict = {"type": "plain_text_input", "action_id": VALUE_ID, "multiline": multiline}
    if initial and len(initial) <= MAX_INPUT:
        element["initial_value"] = initial
    elif initial:
        # A shortened prefill would be submitted back as a shortened path; an
        # empty field keeps the current value instead.
        hint = "The current value is too long to show here; leave this empty to keep it. " + hint
    if placeholder:
        element["placeholder"] = plain(placeholder, 150)
    block: dict = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label, 2000),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def modal(callback_id: str, title: str, blocks: list[dict], private_metadata: str, submit: str = "Save") -> dict:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, MAX_TITLE),
        "submit": plain(submit, MAX_TITLE),
        "close": plain("Cancel", MAX_TITLE),
        "private_metadata": private_metadata[:3000],
        "blocks": _fit(blocks, MAX_MODAL_BLOCKS),
    }


def credentials_modal(state: IntakeState, catalog: Catalog) -> dict:
    """One field per needed credential, then the optional ones that apply now."""
    platform = platform_of(state, catalog)
    blocks: list[dict] = [
        context(
            f"For launch `{state.id}` on {platform.display_name if platform else '—'}. "
            "Values are encrypted at rest, remembered for your next launch and never shown in Slack. "
            "Leave a field empty to keep what is already set."
        )
    ]
    for need in credential_needs(state, catalog):
        cred = need.credential
        is_set = need.name in state.credentials
        blocks.append(
            _input(
                CRED_BLOCK_PREFIX + cred.name,
                f"{cred.name}" + (" (set)" if is_set else ""),
                optional=is_set,
                hint=f"{cred.description} How to get it: {cred.how_to_get}",
                placeholder=("already set — leave empty to keep" if is_set else (cred.example or "")) or None,
            )
        )
    for cred, when in optional_credentials(state, catalog):
        is_set = cred.name in state.credentials
        blocks.append(
            _input(
                CRED_BLOCK_PREFIX + cred.name,
                f"{cred.name} (optional{', set' if is_set else ''})",
                optional=True,
                hint=f"Only if {when}. {cred.description}" if when else cred.description,
                placeholder=cred.example,
            )
        )
    return modal(CREDENTIALS_MODAL, "Launch credentials", blocks, state.id)


def image_modal(state: IntakeState) -> dict:
    blocks = [
        section(f"Default for {state.model}/{state.action}: `{state.image.default}`"),
        _input(
            IMAGE_BLOCK,
            "Container image",
            optional=False,
            hint="A full reference: registry/path/name:tag (optionally @sha256:digest).",
            initial=state.image.chosen or state.image.default,
        ),
    ]
    return modal(IMAGE_MODAL, "Override image", blocks, state.id)


def datasets_modal(state: IntakeState, catalog: Catalog) -> dict:
    from taobot.conversation import action_of

    action = action_of(state, catalog)
    blocks: list[dict] = [section(dataset_help(state, catalog))]
    for role in action.roots:
        keys = ", ".join(f"`{k}`" for k in action.roots[role])
        blocks.append(
            _input(
                ROOT_BLOCK_PREFIX + role,
                f"{role} root (root mode)",
                optional=True,
                hint=f"Expands to {keys}"[:2000],
                initial=state.roots.get(role),
            )
        )
    pairs = "\n".join(f"{k}={v}" for k, v in state.spec_inputs.items())
    blocks.append(
        _input(
            SPEC_BLOCK,
            "Exact spec keys (spec mode), one key=path per line",
            optional=True,
            hint="Kept exactly as given. Inputs: " + ", ".join(i.key for i in action.inputs)[:1900],
            initial=pairs or None,
            multiline=True,
        )
    )
    blocks.append(_input(RESULTS_BLOCK, "Results location (optional)", optional=True, initial=state.results_uri))
    return modal(DATASETS_MODAL, "Dataset inputs", blocks, state.id)


# --------------------------------------------------------------------------- replies


def reply(text: str) -> dict:
    """A short thread reply: plain text fallback plus one section per 3,000 chars."""
    chunks = [text[i : i + MAX_SECTION] for i in range(0, min(len(text), MAX_SECTION * 10), MAX_SECTION)] or [""]
    return {"text": clip(text, MAX_TEXT), "blocks": [section(c) for c in chunks if c]}


def help_message(catalog: Catalog) -> dict:
    models = ", ".join(sorted(catalog.models))
    platforms = ", ".join(catalog.platforms)
    text = (
        "*taobot* launches NVIDIA TAO jobs from Slack.\n"
        "• `/tao launch <model> [action]` or `@taobot train <model>` — start a launch thread (action defaults to `train`).\n"
        "• `/tao status` — intakes and launches in this channel; `/tao status <id>` for one.\n"
        "• `/tao help` — this message.\n"
        "In a launch thread reply with `key=value` pairs (`platform=slurm`, `interval=5`, `image=…`, "
        "`train=/path`, `<spec.key>=/path`, `num_gpus=4`) or `cancel`. Credentials go in the private form only.\n"
        f"*Platforms:* {platforms}\n*Models:* {models}"
    )
    return reply(text)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d"


def status_message(intakes: list[IntakeState], catalog: Catalog, now: float | None = None,
                   launches: dict[str, dict] | None = None) -> dict:
    now = now if now is not None else time.time()
    if not intakes:
        return reply("No launches in this channel yet. Start one with `/tao launch <model> [action]`.")
    shown = intakes[:40]
    more = f" (newest {len(shown)} of {len(intakes)})" if len(intakes) > len(shown) else ""
    lines = [f"*Launches in this channel*{more}"]
    for s in shown:
        platform = find_platform(catalog, s.platform).display_name if s.platform else "—"
        launch = (launches or {}).get(s.id)
        where = f"job `{launch['job_id']}` *{launch['state']}* (`{launch['id']}`)" if launch else f"*{s.status}*"
        lines.append(
            f"• `{s.id}` {s.model} {s.action} · {platform} · {where} · <@{s.owner}> · {_age(now - s.created_at)} ago"
        )
    return reply("\n".join(lines))


def status_detail(state: IntakeState, catalog: Catalog, now: float | None = None) -> dict:
    now = now if now is not None else time.time()
    step = next_step(state, catalog)
    lines = [
        f"*Launch `{state.id}`* — {state.model} {state.action}, started by <@{state.owner}> {_age(now - state.created_at)} ago",
        f"Status: *{state.status}*" + (f" · next: {STEP_TITLES[step]}" if state.status == "collecting" else ""),
        *_value_line(state, catalog),
    ]
    return reply("\n".join(lines))


# --------------------------------------------------------------------------- launches and status

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


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _log_block(lines) -> list[dict]:
    if not lines:
        return []
    # Log text goes in a code block; a stray fence inside it would end the block early.
    text = "\n".join(lines)[-2400:].replace("```", "` ` `")
    return [section("*Last log lines*\n```" + text + "```")]


def _cancel_button(launch_id: str) -> dict:
    return button("Cancel job", CANCEL_JOB, launch_id, "danger", confirm={
        "title": plain("Cancel this job?"),
        "text": plain("The job is cancelled on the platform. This cannot be undone.", 300),
        "confirm": plain("Cancel job"),
        "deny": plain("Keep it running"),
    })


def launch_message(row: dict) -> dict:
    lines = [
        f":rocket: *Launched `{row['id']}`* — {row['model']} {row['action']} on {row['platform']}",
        f"Job id: `{row['job_id']}`",
        f"Logs: `{row['log_location']}`",
        f"Results: `{row['results_location']}`",
    ]
    if row["monitor"]:
        lines.append(f"I will post status here every {row['interval_minutes']} min until it ends. Reply `detach` to stop updates.")
    else:
        lines.append(f"Monitoring is off. Check it any time with `/tao status {row['id']}`.")
    elements = [_cancel_button(row["id"])]
    if row["monitor"]:
        elements.append(button("Stop updates", DETACH, row["id"]))
    return {"text": f"Launched {row['id']}: job {row['job_id']}",
            "blocks": [section("\n".join(lines)), actions(f"l_{row['id']}", elements)]}


def status_line(row: dict, now: float) -> str:
    state = row["state"]
    text = f"{STATE_MARK.get(state, '')} *{state}* for {_duration(now - (row['state_since'] or row['launched_at']))}"
    if row.get("native") and row["native"].upper() != state.upper():
        text += f" (`{row['native']}`)"
    if state == "Pending" and row.get("reason"):
        text += f" — waiting: {row['reason']}"
    return text


def status_update(row: dict, lines, now: float) -> dict:
    head = f"*`{row['id']}`* {row['model']} {row['action']} · job `{row['job_id']}` · " + status_line(row, now)
    body = [section(head)]
    if row.get("unreachable"):
        body.append(section(f":warning: Could not reach {row['platform']}: {row['unreachable']}. "
                            "The job is not marked failed; taobot keeps retrying with backoff."))
    body += _log_block(lines)
    body.append(context(f"Full logs: `{row['log_location']}` · {_duration(now - row['launched_at'])} since launch · "
                        f"`/tao status {row['id']}` · reply `detach` to stop updates"))
    body.append(actions(f"u_{row['id']}", [_cancel_button(row["id"]), button("Stop updates", DETACH, row["id"])]))
    return {"text": f"{row['id']}: {row['state']}", "blocks": _fit(body)}


def final_update(row: dict, lines, cause: str | None, now: float) -> dict:
    state = row["state"]
    took = _duration((row.get("ended_at") or now) - row["launched_at"])
    head = f"{STATE_MARK.get(state, '')} *`{row['id']}` {state}* — {row['model']} {row['action']} on {row['platform']}, after {took}"
    facts = [head, f"Job `{row['job_id']}` · platform state `{row['native']}`"]
    if row.get("exit_code") is not None:
        facts.append(f"Exit code: {row['exit_code']}")
    if row.get("reason"):
        facts.append(f"Reason: {row['reason']}")
    facts.append(f"Results: `{row['results_location']}`")
    facts.append(f"Logs: `{row['log_location']}`")
    if cause:
        facts.append(f":recycle: The logs point to an infrastructure problem ({cause}); this failure is likely retriable.")
    body = [section("\n".join(facts))] + _log_block(lines)
    body.append(actions(f"f_{row['id']}", [button("Relaunch", RELAUNCH, row["id"], "primary")]))
    return {"text": f"{row['id']} {state}", "blocks": _fit(body)}


def launch_status_detail(row: dict, now: float) -> dict:
    lines = [
        f"*Launch `{row['id']}`* — {row['model']} {row['action']} on {row['platform']}, by <@{row['owner']}>",
        status_line(row, now),
        f"Job id: `{row['job_id']}` · elapsed {_duration((row.get('ended_at') or now) - row['launched_at'])}",
        f"Logs: `{row['log_location']}`",
        f"Results: `{row['results_location']}`",
        "Updates: " + ("off" if not row["monitor"] else "detached" if row["detached"] else f"every {row['interval_minutes']} min"),
    ]
    if row.get("unreachable"):
        lines.append(f":warning: last poll could not reach {row['platform']}: {row['unreachable']}")
    return reply("\n".join(lines))
