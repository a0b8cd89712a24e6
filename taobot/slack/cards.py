"""The intake card and the preflight card, rendered from their views."""

from __future__ import annotations

import time

from taobot.intake import INTERVAL_ADVICE, STEP_ORDER, Step
from taobot.intake.intents import APPROVE, OPEN_SETTINGS, TRUST_HOST_KEY, USE_TAOBOT_KEY
from taobot.slack.blocks import (
    CANCEL_INTAKE,
    COMPUTE_DEFAULTS,
    CONFIRM_MOUNTED,
    IMAGE_OVERRIDE,
    IMAGE_USE_DEFAULT,
    INTERVAL_CHOICES,
    INTERVAL_SELECT,
    LAUNCH,
    MAX_BLOCKS,
    MAX_OPTIONS,
    MAX_SECTION,
    MAX_TEXT,
    MONITOR_NO,
    MONITOR_YES,
    OPEN_CREDENTIALS,
    OPEN_DATASETS,
    PLATFORM_SELECT,
    RUN_PREFLIGHT,
    actions,
    button,
    clip,
    context,
    fit,
    option,
    pack,
    plain,
    section,
)
from taobot.slack.review import review_blocks
from taobot.view_text import STEP_TITLES, status_line, value_lines
from taobot.views import IntakeCard, PreflightCard


def _question_blocks(card: IntakeCard) -> list[dict]:
    facts = card.facts
    state, step, iid = facts.state, facts.step, facts.state.id
    if step is Step.PLATFORM:
        opts = [option(p.display_name, p.name) for p in card.platforms][:MAX_OPTIONS]
        select = {
            "type": "static_select",
            "action_id": PLATFORM_SELECT,
            "placeholder": plain("Choose a platform"),
            "options": opts,
        }
        names = ", ".join(f"`{p.name}`" for p in card.platforms)
        return [
            section(f"*Where should it run?* Choose one of {names} (or reply `platform=<name>`).", select, f"q_{iid}")
        ]
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
                f"{card.default_interval} min ({INTERVAL_ADVICE}).",
                select,
                f"q_{iid}",
            ),
            actions(
                f"a_{iid}",
                [
                    button(f"Yes, every {card.default_interval} min", MONITOR_YES, iid, "primary"),
                    button("No monitoring", MONITOR_NO, iid),
                ],
            ),
        ]
    if step is Step.CREDENTIALS:
        elements = [button("Enter credentials", OPEN_CREDENTIALS, iid, "primary")]
        missing = [n for n in facts.needs if n.name not in state.credentials]
        # The SSH key taobot makes for the person is a button, never a field. An agent on the bot's host is its
        # operator's, so Slack never offers one (the console does).
        if any(n.credential.generated for n in missing):
            elements.insert(0, button("Use a taobot key", USE_TAOBOT_KEY, iid, "primary"))
            elements[1] = button("Enter credentials", OPEN_CREDENTIALS, iid)
        if facts.settings:
            elements.append(button("More settings", OPEN_SETTINGS, iid))
        made = [f"`{n.name}` (press *Use a taobot key*: your own SSH key)" for n in missing if n.credential.generated]
        typed = [f"`{n.name}`" for n in missing if not n.credential.generated]
        return [
            section(
                "*Credentials needed:* "
                + ", ".join(made + typed)
                + ". They go in a private form, are encrypted at rest and never shown in the thread.",
                block_id=f"q_{iid}",
            ),
            actions(f"a_{iid}", elements),
        ]
    if step is Step.IMAGE:
        return [
            section(
                f"Container image for {state.model}/{state.action}: default={state.image.default}\n"
                f"_(from `{state.image.source}` in the catalog)_ Use it, or override with `image=<registry/name:tag>`."
                + (f"\n:warning: {state.image.access}" if state.image.access else ""),
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
            section("*Dataset inputs*\n" + card.dataset_help, block_id=f"q_{iid}"),
            actions(f"a_{iid}", [button("Enter datasets", OPEN_DATASETS, iid, "primary")]),
        ]
    if step is Step.COMPUTE:
        # Only the fields not given yet: the button fills exactly what it names.
        pending = card.compute_defaults
        shown = ", ".join(f"{k}={v}" for k, v in pending.items())
        given = ", ".join(f"{k}={v}" for k, v in state.compute.items())
        if given:
            text = f"*Compute shape:* {given} given; the platform default for the rest is {shown}."
        else:
            text = f"*Compute shape:* platform defaults are {shown}."
        field = next(iter(pending), "num_gpus")
        example = f"{field}={8 if field == 'num_gpus' else 2}"
        label = ("Use default" if len(pending) == 1 else "Use defaults") + f" ({shown})"
        return [
            section(
                f"{text} Use {'it' if len(pending) == 1 else 'them'}, or reply e.g. `{example}`.", block_id=f"q_{iid}"
            ),
            actions(f"a_{iid}", [button(label, COMPUTE_DEFAULTS, iid, "primary")]),
        ]
    gate = card.gate
    assert gate is not None  # the card of a complete intake carries its gate
    record = state.preflight
    approval = next((c for c in gate.conditions if c.number == 8), None)
    if gate.open:
        text = "*Preflight passed.* The launch gate is open for exactly these inputs; changing any of them closes it again."
        if approval is not None:
            text += f"\n• 8. {approval.name}: {approval.detail}"
        elements = [button("Launch", LAUNCH, iid, "primary"), button("Run preflight again", RUN_PREFLIGHT, iid)]
        if card.review is not None:  # nothing is created before this has been seen: Launch sits under it
            return [section(text, block_id=f"q_{iid}"), *review_blocks(card.review), actions(f"a_{iid}", elements)]
    else:
        if record is None:
            state_line = (
                "Nothing has been created. Run preflight to check every input from the platform's point of view."
            )
        elif record.status == "running":
            state_line = "Preflight is running; results appear below in this thread."
        elif [c.number for c in gate.conditions if not c.ok] == [8]:
            state_line = "Preflight passed; the launch waits for an approval, so nothing will be created yet."
        else:
            state_line = "Preflight has not passed for these inputs, so nothing will be created."
        text = "*Intake complete.* " + state_line + "\n" + "\n".join(f"• {m}" for m in gate.missing)
        if approval is not None and approval.ok:
            text += f"\n• 8. {approval.name}: {approval.detail}"
        elements = [button("Run preflight", RUN_PREFLIGHT, iid, "primary")]
        if approval is not None and not approval.ok:
            elements.append(button("Approve", APPROVE, iid))
            if card.review is not None and [c.number for c in gate.conditions if not c.ok] == [8]:
                # Preflight passed for these inputs; the approver sees what they approve.
                return [section(text, block_id=f"q_{iid}"), *review_blocks(card.review), actions(f"a_{iid}", elements)]
    return [section(text, block_id=f"q_{iid}"), actions(f"a_{iid}", elements)]


def preflight_card(view: PreflightCard) -> dict:
    """One message per preflight run: a line per check, remediation under each failure."""
    iid, platform, results, running, passed = view.intake_id, view.platform, view.results, view.running, view.passed
    if view.superseded:
        head = (
            f":heavy_minus_sign: *Superseded by a newer preflight* of launch `{iid}`. "
            "Its results stay here for reference; act on the newest preflight card."
        )
    elif running is not None:
        head = f":hourglass_flowing_sand: *Preflight for launch `{iid}` on {platform}* — checking {running}…"
    elif passed and view.approval:
        head = (
            f":white_check_mark: *Preflight passed for launch `{iid}` on {platform}.* "
            f":raised_hand: It still needs an approval: {view.approval}"
        )
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
    if running is None and not view.superseded:
        elements = [button("Run preflight again", RUN_PREFLIGHT, iid)]
        if any(not r["ok"] and r.get("check") == "mount" for r in results):
            elements.insert(0, button("Confirm paths are mounted", CONFIRM_MOUNTED, iid))
        # A login node's unknown host key, where the operator allows trusting it on first use (TAOBOT_SSH_TOFU).
        if any(not r["ok"] and r.get("check") == "slurm.host_key" for r in results):
            elements.insert(0, button("Trust this host key", TRUST_HOST_KEY, iid))
        if passed and view.approval:
            elements.insert(0, button("Approve", APPROVE, iid, "primary"))
        elif passed:
            elements.insert(0, button("Launch", LAUNCH, iid, "primary"))
        blocks.append(actions(f"p_{iid}", elements))
    failed = sum(1 for r in results if not r["ok"])
    if view.superseded:
        summary = f"Preflight {iid}: superseded by a newer preflight"
    else:
        summary = f"Preflight {iid}: " + (
            "running" if running is not None else "passed" if passed else f"{failed} check(s) failed"
        )
    return {"text": summary, "blocks": fit(blocks)}


def intake_card(card: IntakeCard) -> dict:
    """The one message per thread that shows where the intake stands. Updated in place."""
    facts, launch = card.facts, card.launch
    state, step = facts.state, facts.step
    title = f"TAO launch: {state.model} {state.action}"
    blocks: list[dict] = [
        {"type": "header", "text": plain(title, 150)},
        context(f"Launch `{state.id}` · started by <@{state.owner}> · status: *{state.status}*"),
        section("\n".join(value_lines(facts))),
    ]
    if card.changes and state.relaunch is not None:
        changed = "\n".join(f"• {k}: `{old or '—'}` → `{new or '—'}`" for k, old, new in card.changes)
        blocks.append(section(clip(f"*Changed since `{state.relaunch.after}`:*\n{changed}", MAX_SECTION)))
    if launch is not None and state.status == "launched":
        job = f"*Job:* `{launch.job_id}` on {launch.platform} · " + status_line(launch, time.time())
        blocks.append(section(job + f"\n`/tao status {launch.id}`"))
        return {"text": f"{title} — {launch.state.value}", "blocks": blocks}
    if state.status == "cancelled":
        blocks.append(section(":no_entry_sign: *Cancelled.* Nothing was created."))
        return {"text": f"{title} — cancelled", "blocks": blocks}
    blocks.append({"type": "divider"})
    blocks += _question_blocks(card)
    if card.missing:
        lines = [f"• *{m.label}* — {m.example}" for m in card.missing]
        blocks.append(section("*Still missing*\n" + "\n".join(lines)))
    tail = []
    if state.platform and step is not Step.CREDENTIALS:
        tail.append(button("Change credentials", OPEN_CREDENTIALS, state.id))
        if facts.settings:
            tail.append(button("More settings", OPEN_SETTINGS, state.id))
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
    return {"text": clip(fallback, MAX_TEXT), "blocks": fit(blocks)}


# --------------------------------------------------------------------------- modals
