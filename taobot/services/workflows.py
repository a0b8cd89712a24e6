"""Workflow threads: one intake for a whole pipeline, its stages launched in order through the launcher.

`/tao workflow train-eval-export dino` opens an intake of kind "workflow" whose action is the first stage's;
the workflow's own answers (the plan, each stage's image, where the run stands) live in the store's
workflow tables, keyed by the intake id. **Launch** asks the thread's gate and the workflow's gate over every
stage (`taobot.workflows.gate`) before the first stage starts. A stage is started at most once per run: its row
is written (with the launch id it will get) before the launcher records and submits that launch, so a restart
or a second monitor cycle finds it and starts nothing twice. A stage's end (the monitor's `on_ended`) records
its results, checkpoint and metrics, then starts the next stage with its overrides resolved from them; a failed
stage stops the pipeline with the triage and a *Resume from here*, which goes through preflight and the gate
again and reruns from that stage, later stages reading the results the earlier run recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import Executor

from taobot.errors import BackendUnreachable, GateClosedError, LaunchFailed, TaobotError
from taobot.intake import IntakeState
from taobot.launches import JobState, Launch
from taobot.services.desk import Desk
from taobot.services.workflow_runs import WorkflowAnswers, plan_from_json, results_of
from taobot.workflows import (
    PlannedStage,
    Unresolved,
    Workflow,
    condition_holds,
    resolve,
    stage_state,
)

log = logging.getLogger(__name__)

ENDED = ("succeeded", "failed", "skipped")


class Workflows(WorkflowAnswers):
    def __init__(self, desk: Desk, work: Executor, intake, control, flows: dict[str, Workflow]) -> None:
        self.desk, self.work, self.intake, self.control = desk, work, intake, control
        self.flows = flows

    # ------------------------------------------------------------------ opening a thread

    # ------------------------------------------------------------------ images and the gate

    # ------------------------------------------------------------------ running

    def launch(self, state: IntakeState, user: str) -> None:
        """*Launch* in a workflow thread: the gate over every stage, then the first stage (of this run)."""
        desk = self.desk
        run = desk.store.workflow_run(state.id)
        if run is None:
            desk.reply(state, f"Launch `{state.id}` is a workflow thread without its workflow; start a new one.")
            return
        if run.status == "running":
            desk.reply(state, f"The workflow of `{state.id}` is already running.")
            return
        if self.control.launcher is None:
            desk.reply(state, "This taobot has no launcher configured.")
            return
        problems = self.gate_problems(state, run.start_index)
        if problems:
            desk.audit(
                user, "launch", intake=state, allowed=False, reason="workflow gate closed: " + "; ".join(problems)
            )
            desk.reply(
                state,
                "Not launching the workflow: the gate is closed for its stages. Nothing was created.\n"
                + "\n".join(f"• {p}" for p in problems),
            )
            return
        number = desk.store.start_workflow_run(state.id, run.start_index)
        desk.store.log_event(state.id, user, "workflow_run", {"run": number, "from": run.start_index})
        desk.reply(state, f":hourglass_flowing_sand: Starting workflow `{run.workflow}` (run {number}).")
        self.work.submit(self.advance, state.id, user)

    def results(self, intake_id: str):
        return results_of(self.desk.store, intake_id)

    def advance(self, intake_id: str, user: str) -> None:
        """Start the next stage whose inputs are ready, once; or finish. Safe to call any number of times."""
        desk = self.desk
        try:
            with desk.lock(intake_id):
                self._advance(intake_id, user)
        except Exception:  # noqa: BLE001 - the person must hear about it
            log.exception("workflow advance failed", extra={"intake": intake_id})
            state = desk.store.get_intake(intake_id)
            if state is not None:
                desk.reply(state, ":x: The workflow could not go on (an internal error); see the bot's log.")
        self.redraw(intake_id)

    def _advance(self, intake_id: str, user: str) -> None:
        desk = self.desk
        run = desk.store.workflow_run(intake_id)
        if run is None or run.status != "running":
            return
        plan, number, start, results, mine = self.results(intake_id)
        for stage in plan.stages[start:]:
            row = mine.get(stage.index)
            if row is not None and row.state in ("skipped", "succeeded"):
                continue
            if row is not None and row.state == "failed":
                return  # stopped; *Resume from here* starts a new run
            launch = desk.store.get_launch(row.launch_id) if row is not None and row.launch_id else None
            if launch is not None:
                if launch.state.terminal:
                    # Its end was seen but not recorded (the bot stopped in between): record it now; the
                    # claim of the next stage keeps that stage to one start whoever gets there first.
                    self.work.submit(self._ended, launch.id)
                elif launch.job_id and not self._posted(intake_id, launch.id):
                    # Submitted, and the bot stopped before it said so: the stage runs, and the thread hears it.
                    desk.store.update_stage(intake_id, number, stage.index, state="running")
                    self._post_launch(desk.store.get_intake(intake_id), launch, look_first=True)
                return  # submitted (or being submitted): its end moves the pipeline on
            state = desk.store.get_intake(intake_id)
            run_it, why = condition_holds(plan, stage, results)
            if not run_it:
                desk.store.claim_stage(intake_id, number, stage.index, stage.name, None, "skipped")
                desk.store.update_stage(intake_id, number, stage.index, note=why, ended_at=time.time())
                desk.reply(state, f"Workflow stage `{stage.name}` {why}.")
                continue
            try:
                overrides = resolve(plan, stage, self.inputs(state), results)
            except Unresolved as exc:
                self._stop(state, number, stage, f"its inputs are not known: {exc}")
                return
            launch_id = f"{intake_id}-r{number}s{stage.index}"
            if row is None and not desk.store.claim_stage(
                intake_id, number, stage.index, stage.name, launch_id, "starting"
            ):
                return  # another caller claimed it between our read and now
            self._submit(state, user, plan, number, stage, overrides, launch_id, first=stage.index == start)
            return
        desk.store.update_workflow_run(intake_id, status="done")
        state = desk.store.get_intake(intake_id)
        desk.reply(state, f":white_check_mark: Workflow `{run.workflow}` finished: every stage ended.")

    def inputs(self, state: IntakeState) -> dict[str, str]:
        return {**state.roots, **state.spec_inputs}

    def _submit(self, state, user, plan, number, stage: PlannedStage, overrides, launch_id, first: bool) -> None:
        desk, control = self.desk, self.control
        values = desk.credential_values(state)
        rules = control.checks.rules(state)
        if not first:
            # The gate was asked for every stage before the first one started; a later stage holds to that
            # preflight (the inputs must still be the ones it checked) however long the earlier stages ran.
            rules = dataclasses.replace(rules, preflight_valid_s=float("inf"))
        refusal = None
        if unheld := desk.unheld_credentials(state, values):
            refusal = "credential values changed before this thread held them: " + ", ".join(unheld)
        elif refusals := control.checks.mount_refusals(state, values):
            refusal = "; ".join(refusals)
        elif control.kube is not None and (kube := control.kube.refusal(state, values)):
            refusal = str(kube)
        if refusal:
            desk.audit(user, "launch", intake=state, allowed=False, reason=refusal)
            self._stop(state, number, stage, f"refused before launch: {refusal}")
            return
        image = self.images(state).get(stage.base)
        seen = stage_state(state, stage, image, desk.catalog)
        # An override that fills one of the action's inputs (the train stage's checkpoint) is an input of the
        # launch like a dataset path: a platform that mounts inputs (local-docker, read-only) mounts it too.
        keys = {i.key for i in desk.catalog.models[stage.model].actions[stage.action].inputs}
        given = {k: v for k, v in overrides.items() if k in keys}
        seen = seen.model_copy(update={"spec_inputs": {**seen.spec_inputs, **given}})
        try:
            launch, _ = control.launcher.launch(
                state, user, values, rules, stage=seen, overrides=overrides, launch_id=launch_id
            )
        except GateClosedError as exc:
            desk.audit(user, "launch", intake=state, allowed=False, reason=exc.message)
            self._stop(state, number, stage, exc.message)
            return
        except (LaunchFailed, BackendUnreachable, TaobotError) as exc:
            self._stop(state, number, stage, f"{state.platform} did not take it: {exc.message}")
            return
        desk.store.update_stage(state.id, number, stage.index, state="running")
        self._post_launch(state, launch)

    def _stop(self, state: IntakeState, number: int, stage: PlannedStage, why: str) -> None:
        desk = self.desk
        desk.store.claim_stage(state.id, number, stage.index, stage.name, None, "failed")
        desk.store.update_stage(state.id, number, stage.index, state="failed", note=why[:500], ended_at=time.time())
        desk.store.update_workflow_run(state.id, status="stopped")
        fresh = desk.store.get_intake(state.id) or state
        if fresh.status == "launched":
            fresh.status = "complete"  # the intake is open again for *Resume from here*
            desk.store.save_intake(fresh, "taobot", "workflow_stopped", {"stage": stage.name})
        self.redraw(state.id)  # the card offers *Resume from here* by the time the reply says so
        desk.reply(
            fresh,
            f":x: Workflow stopped at stage `{stage.name}`: {why}\n"
            f"Press *Resume from here* (or reply `resume`) to run `{stage.name}` and the stages after it again.",
        )

    # ------------------------------------------------------------------ a stage's end

    def stage_ended(self, launch: Launch) -> None:
        """The monitor saw a launch change state: a workflow stage that ended moves its pipeline on."""
        if launch.state.terminal and self.desk.store.stage_of_launch(launch.id) is not None:
            self.work.submit(self._ended, launch.id)

    def _ended(self, launch_id: str) -> None:
        """Read the ended stage's last log lines once (its checkpoint, its metrics), then record its end."""
        from taobot.backends.base import JobRef

        launch = self.desk.store.get_launch(launch_id)
        progress = None
        try:
            monitor = self.control.monitor
            creds = (
                monitor.credentials(launch)
                if monitor is not None
                else self.desk.credential_values(self.desk.store.get_intake(launch.intake_id))
            )
            ref = JobRef(launch.id, launch.job_id or "", launch.detail_map, creds)
            status = self.control.launcher.backend(launch.platform).poll([ref], tails_for=[ref.job_id]).get(ref.job_id)
            progress = status.progress if status is not None else None
        except Exception:  # noqa: BLE001 - the stage still ends; a reference to its checkpoint then says it is unknown
            log.warning("could not read the ended stage's log", extra={"launch": launch_id})
        self.on_ended(launch, progress)

    def on_ended(self, launch: Launch, progress) -> None:
        """The monitor saw a launch end (called again after a failed post: idempotent)."""
        desk = self.desk
        row = desk.store.stage_of_launch(launch.id)
        if row is None or row.state in ENDED:
            return
        fresh = desk.store.get_launch(launch.id) or launch
        metrics = {}
        if progress is not None:
            metrics.update({k: float(v) for k, v in dict(progress.validation or {}).items()})
            if progress.train_loss is not None:
                metrics["train_loss"] = float(progress.train_loss)
        ok = fresh.state is JobState.SUCCEEDED
        desk.store.update_stage(
            row.intake_id,
            row.run,
            row.idx,
            state="succeeded" if ok else "failed",
            results=fresh.results_location,
            checkpoint=getattr(progress, "checkpoint", None),
            metrics=metrics,
            ended_at=fresh.ended_at or time.time(),
        )
        if ok:
            self.work.submit(self.advance, row.intake_id, launch.owner)
            return
        triage = f"{fresh.failure_kind}: {fresh.failure_cause}" if fresh.failure_kind else fresh.state.value
        state = desk.store.get_intake(row.intake_id)
        plan = plan_from_json(desk.store.workflow_run(row.intake_id).plan)
        self._stop(state, row.run, plan.stages[row.idx], f"its job `{launch.id}` ended {fresh.state.value} ({triage})")

    # ------------------------------------------------------------------ resume

    # ------------------------------------------------------------------ the card

    def sweep(self) -> int:
        """After a restart: every running workflow moves on from where its stages stand (nothing twice)."""
        runs = self.desk.store.running_workflows()
        for run in runs:
            self.advance(run.intake_id, "taobot")
        return len(runs)


def workflows_for(desk: Desk, work: Executor, intake, control) -> Workflows:
    """The thread runner with the embedded workflows, and the skill bank's when the catalog came from one."""
    from pathlib import Path

    from taobot.workflows import load_workflows

    bank = Path(desk.catalog.source) if desk.catalog.layout != "embedded" else None
    flows, _notes = load_workflows(bank)
    return Workflows(desk, work, intake, control, flows)


def workflow_action(wf: Workflows, user: str, intake_id: str, which: str) -> None:
    """A button on the pipeline card: only the thread's owner or an admin; a refusal is audited."""
    from taobot.intake import may_act

    desk = wf.desk
    state = desk.store.get_intake(intake_id)
    if state is None or state.kind != "workflow":
        return
    if not may_act(state, user, desk.admins):
        desk.audit(user, which, intake=state, allowed=False, reason="not the person who started the launch")
        desk.tell(
            user, state.channel, f"Only <@{state.owner}>, or an admin, can change this workflow.", state.thread_ts
        )
        return
    desk.audit(user, which, intake=state)
    with desk.lock(intake_id):
        state = desk.store.get_intake(intake_id) or state
        if which == "resume":
            wf.resume(state, user)
        else:
            wf.set_image(state, user, None, None)
