"""A workflow run read from the store (its plan, the results its stages left, its pipeline card), and the
thread's own answers: opening it, each stage's image, the gate over every stage, *Resume from here*, and its
messages (the pipeline card, each stage's launch message once)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time

from taobot.gate import compute_gate
from taobot.intake import IntakeState
from taobot.launches import Launch
from taobot.views import LaunchPosted
from taobot.workflows import (
    Plan,
    PlannedStage,
    StageImage,
    StageResult,
    check_stages,
    find_workflow,
    fit,
    stage_paths,
)
from taobot.workflows.views import PipelineCard, StageLine

log = logging.getLogger(__name__)
LAUNCH_SLOT = "launched"  # the metadata slot of a stage's launch message (status slots are numbers)


def plan_to_json(plan: Plan) -> dict:
    return {
        "workflow": plan.workflow,
        "model": plan.model,
        "stages": [
            dataclasses.asdict(s) | {"run_if": s.run_if.model_dump() if s.run_if else None} for s in plan.stages
        ],
        "left_out": list(plan.left_out),
    }


def plan_from_json(doc: dict) -> Plan:
    from taobot.workflows import RunIf

    stages = tuple(
        PlannedStage(**{**s, "run_if": RunIf(**s["run_if"]) if s.get("run_if") else None}) for s in doc["stages"]
    )
    return Plan(doc["workflow"], doc["model"], stages, tuple(doc.get("left_out", ())))


def results_of(store, intake_id: str) -> tuple[Plan, int, int, dict[str, StageResult], dict[int, object]]:
    """(plan, run, start index, results by stage name usable now, this run's rows by index)."""
    run = store.workflow_run(intake_id)
    plan = plan_from_json(run.plan)
    rows = store.stage_rows(intake_id)
    results: dict[str, StageResult] = {}
    mine = {}
    for row in rows:
        if row.run == run.run:
            mine[row.idx] = row
        usable = row.run == run.run or (row.idx < run.start_index)
        if usable and row.state == "succeeded":
            results[row.name] = StageResult(row.results, row.checkpoint, row.metrics)
    return plan, run.run, run.start_index, results, mine


def stage_preflight_paths(desk, state: IntakeState) -> tuple:
    """The later stages' dataset paths as preflight paths (labelled `<stage>: <spec key>`), for the preflight of
    a workflow thread to check every path any stage uses."""
    from taobot.preflight.base import DatasetPath

    run = desk.store.workflow_run(state.id)
    if run is None:
        return ()
    paths = stage_paths(state, plan_from_json(run.plan), desk.catalog)
    return tuple(DatasetPath(label, path, fields) for label, (path, fields) in paths.items())


def build_card(wf, intake_id: str) -> PipelineCard:
    desk = wf.desk
    state = desk.store.get_intake(intake_id)
    run = desk.store.workflow_run(intake_id)
    plan, number, start, _results, mine = results_of(desk.store, intake_id)
    images = wf.images(state)
    rows = desk.store.stage_rows(intake_id)
    lines = []
    for stage in plan.stages:
        row = mine.get(stage.index)
        if row is None and stage.index < start:  # kept from an earlier run
            row = next((r for r in reversed(rows) if r.idx == stage.index and r.state == "succeeded"), None)
        image = images.get(stage.base)
        metric = ""
        if row is not None and row.metrics:
            name = next(iter(sorted(k for k in row.metrics if k != "train_loss")), "train_loss")
            metric = f"{name} {row.metrics[name]:.4f}"
        launch = desk.store.get_launch(row.launch_id) if row and row.launch_id else None
        state_text = row.state if row else "waiting"
        if launch is not None and row.state == "running":
            state_text = launch.state.value
        took = None
        if row is not None and row.started_at:
            took = (row.ended_at or time.time()) - row.started_at
        lines.append(
            StageLine(
                stage.name,
                stage.action,
                stage.model,
                image.chosen or image.default if image else "",
                bool(image and image.chosen),
                state_text,
                took,
                metric,
                row.launch_id if row else None,
                row.note if row else "",
            )
        )
    flow = wf.flows.get(run.workflow)
    failed = next((line.name for line in lines if line.state == "failed"), None)
    return PipelineCard(
        intake_id,
        run.workflow,
        flow.summary if flow else "",
        plan.model,
        run.status,
        tuple(lines),
        plan.left_out,
        failed if run.status == "stopped" else None,
        any(not line.image_confirmed for line in lines),
    )


class WorkflowAnswers:
    """A workflow thread's own answers: opening it, stage images, its gate over every stage, resuming; and its
    messages: the pipeline card and each stage's launch message. Mixed into `Workflows`, which provides desk, control (LaunchControl), intake (IntakeService) and flows."""

    def start(self, channel: str, user: str, name: str, model: str, thread_ts: str | None = None) -> IntakeState:
        """Open a workflow thread. Raises UnknownNameError or NotFitting, whose messages list what fits."""
        desk = self.desk
        flow = find_workflow(self.flows, name)
        plan = fit(flow, model, desk.catalog)
        first = plan.stages[0]
        state = self.intake.start(channel, user, plan.model, first.action, thread_ts)
        images = {}
        from taobot.catalog import find_model, resolve_image

        for stage in plan.stages:
            if stage.base in images:
                continue
            owner = find_model(desk.catalog, stage.model)
            resolved = resolve_image(desk.catalog, owner, owner.actions[stage.action])
            images[stage.base] = {"default": resolved.image, "source": resolved.source, "chosen": None}
        with desk.lock(state.id):
            state = desk.store.get_intake(state.id) or state
            state.kind = "workflow"
            desk.store.save_intake(state, user, "workflow", {"workflow": flow.name})
            desk.store.add_workflow_run(state.id, flow.name, plan.model, plan_to_json(plan), images)
        desk.audit(user, "workflow", intake=state, detail={"workflow": flow.name, "model": plan.model})
        ts = desk.messenger.post(state.channel, self.card(state.id), thread_ts=state.thread_ts)
        desk.store.update_workflow_run(state.id, card_ts=ts)
        return state

    def answer(self, state: IntakeState, user: str, text: str) -> bool:
        """A workflow reply: `image.<stage>=<ref>`, `confirm images`, `resume`. False: not one (the intake's)."""
        words = text.strip().split()
        if not words:
            return False
        if words[0].startswith("image.") and "=" in words[0] and len(words) == 1:
            stage, _, image = words[0][len("image.") :].partition("=")
            if not image.strip():
                self.desk.reply(state, f"`image.{stage}=` needs an image, e.g. `image.{stage}=nvcr.io/nvidia/tao/…`.")
                return True
            self.set_image(state, user, stage, image.strip())
            return True
        if [w.lower() for w in words] in (["confirm", "images"], ["confirm", "stage", "images"]):
            self.set_image(state, user, None, None)
            return True
        if words[0].lower() == "resume":
            self.resume(state, user)
            return True
        if len(words) == 1 and "=" in words[0]:
            return self.stage_root(state, user, *words[0].split("=", 1))
        return False

    def stage_root(self, state: IntakeState, user: str, role: str, path: str) -> bool:
        """`train=/data/x` in a thread whose own action (the first stage's) has no such root, but a later stage
        does (the DEFT loop starts with an evaluate): checked as that stage would check it, then kept on the
        thread for the stages that read it. False: not such a root (the intake answers it)."""
        from taobot.intake import SetRoot, apply
        from taobot.intake.values import ROLE_ALIASES

        desk = self.desk
        role = ROLE_ALIASES.get(role.lower())
        own = desk.catalog.models[state.model].actions[state.action].roots
        if role is None or role in own:
            return False
        run = desk.store.workflow_run(state.id)
        plan = plan_from_json(run.plan)
        stage = next((s for s in plan.stages if role in desk.catalog.models[s.model].actions[s.action].roots), None)
        if stage is None:
            return False
        view = state.model_copy(deep=True, update={"model": stage.model, "action": stage.action})
        out = apply(view, SetRoot(role, path.strip()), desk.catalog)
        if out.errors:
            desk.reply(state, f"Not changed (stage `{stage.name}`): " + " ".join(out.errors))
            return True
        state.roots[role] = out.state.roots[role]
        state.preflight = None  # the paths changed: preflight checks them afresh
        state.updated_at = time.time()
        desk.store.save_intake(state, user, "workflow_root", {"role": role, "stage": stage.name})
        desk.refresh(state)
        desk.reply(state, f"`{role}` root for stage `{stage.name}` (and the stages after it that read it): `{path}`.")
        return True

    def images(self, state: IntakeState) -> dict[str, StageImage]:
        """Each stage's image: a stage whose default is the thread's own image follows the thread's answer."""
        run = self.desk.store.workflow_run(state.id)
        out = {}
        for base, img in run.images.items():
            chosen = img.get("chosen")
            if chosen is None and img["default"] == state.image.default and state.image.chosen:
                chosen = state.image.chosen
            out[base] = StageImage(img["default"], img["source"], chosen, bool(img.get("overridden")))
        return out

    def set_image(self, state: IntakeState, user: str, stage: str | None, image: str | None) -> None:
        """`image.<stage>=<ref>` (stage given) or *Confirm stage images* (every stage's default)."""
        desk = self.desk
        run = desk.store.workflow_run(state.id)
        images = dict(run.images)
        if stage is not None and stage not in images:
            desk.reply(state, f"No stage `{stage}` in this workflow. Stages: {', '.join(images)}.")
            return
        prefixes = self.control.checks.rules(state).image_prefixes
        if image and prefixes is not None and not image.startswith(prefixes):
            reason = f"`{image}` is outside the allowed image prefixes: " + ", ".join(f"`{p}`" for p in prefixes)
            desk.audit(user, "workflow_image", intake=state, allowed=False, reason=reason)
            desk.reply(state, f"Not changed: {reason}. Nothing was changed.")
            return
        for base in [stage] if stage else list(images):
            entry = dict(images[base])
            entry["chosen"] = image or entry["default"]
            entry["overridden"] = bool(image) and image != entry["default"]
            images[base] = entry
        desk.store.update_workflow_run(state.id, images=images)
        self.redraw(state.id)
        what = f"`{stage}` runs `{image}`" if stage else "every stage's image is confirmed"
        desk.reply(state, f"Workflow images: {what}.")

    def gate_problems(self, state: IntakeState, start: int = 0) -> list[str]:
        desk = self.desk
        run = desk.store.workflow_run(state.id)
        plan = plan_from_json(run.plan)
        gate = compute_gate(state, desk.catalog, rules=self.control.checks.rules(state))
        problems = list(gate.missing)
        for check in check_stages(state, plan, self.images(state), desk.catalog, start):
            problems += [f"stage {check.stage}: {p}" for p in check.problems]
        return problems

    def resume(self, state: IntakeState, user: str) -> None:
        """*Resume from here*: from the stopped stage, through preflight and the gate again."""
        desk = self.desk
        run = desk.store.workflow_run(state.id)
        failed = [
            r for r in desk.store.stage_rows(state.id) if r.run == (run.run if run else -1) and r.state == "failed"
        ]
        if run is None or run.status != "stopped" or not failed:
            desk.audit(user, "workflow_resume", intake=state, allowed=False, reason="no stopped stage to resume from")
            desk.reply(state, "Nothing to resume: this workflow has no stopped stage.")
            return
        at = failed[0]
        desk.store.update_workflow_run(state.id, start_index=at.idx, status="collecting")
        state.status = "complete"
        state.preflight = None
        state.approval = None
        state.updated_at = time.time()
        desk.store.save_intake(state, user, "workflow_resume", {"from": at.name})
        desk.refresh(state)
        self.redraw(state.id)
        desk.reply(
            state,
            f"Resuming from stage `{at.name}`: run preflight (it checks everything afresh), then *Launch*. "
            f"Stages before it keep the results they recorded.",
        )

    # ------------------------------------------------------------------ the thread's messages

    def _post_launch(self, state: IntakeState, launch: Launch, look_first: bool = False) -> None:
        """The stage's launch message (found by its metadata), noted once posted. After a restart
        (`look_first`) the thread is searched first: a bot stopped after posting it but before noting it
        does not get it posted twice, and one stopped before posting it gets it posted now."""
        messenger = self.desk.messenger
        found = None
        if look_first:
            found = messenger.find_posted(state.channel, state.thread_ts, launch.id, LAUNCH_SLOT)
        if not found:
            metadata = {
                "event_type": "taobot_workflow_stage",
                "event_payload": {"launch": launch.id, "slot": LAUNCH_SLOT},
            }
            messenger.post(state.channel, LaunchPosted(launch), thread_ts=state.thread_ts, metadata=metadata)
        self.desk.store.log_event(state.id, "taobot", "workflow_stage_posted", {"launch": launch.id})

    def _posted(self, intake_id: str, launch_id: str) -> bool:
        return any(
            e["kind"] == "workflow_stage_posted" and json.loads(e["detail"] or "{}").get("launch") == launch_id
            for e in self.desk.store.events_for(intake_id)
        )

    def card(self, intake_id: str) -> PipelineCard:
        return build_card(self, intake_id)

    def redraw(self, intake_id: str) -> None:
        run = self.desk.store.workflow_run(intake_id)
        state = self.desk.store.get_intake(intake_id)
        if run is None or state is None or not run.card_ts:
            return
        try:
            self.desk.messenger.update(state.channel, run.card_ts, self.card(intake_id))
        except Exception:  # noqa: BLE001 - the card is a courtesy; the pipeline goes on
            log.exception("pipeline card update failed", extra={"intake": intake_id})
