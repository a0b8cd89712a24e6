"""AutoML searches: an AutoML thread is a train intake plus a plan; its trials are launches like any other.

`start` opens the thread (a train intake of kind "automl") with the model's default plan and the experiment
card; `answer` takes the plan's replies (`search.*`, `trials=`, …); `launch` asks the launch gate and the
search's own conditions, then hands over to `TrialRuns`; `cancel` stops every trial; `train_best` opens a
normal train thread with the best values, which go into its spec when it launches (through the gate again).
"""

from __future__ import annotations

import logging
import shlex
import time

from taobot.automl.conditions import SearchCondition, search_conditions
from taobot.automl.engine import engine_missing
from taobot.automl.plan import AutomlPlan, default_plan
from taobot.automl.replies import apply_settings, is_automl_key
from taobot.automl.trials import ACTIVE, best_trial
from taobot.automl.views import ExperimentCard, ExperimentFinal, values_text
from taobot.backends.base import JobRef
from taobot.catalog import find_model
from taobot.catalog.automl import automl_models, automl_support
from taobot.errors import BackendUnreachable, UnknownNameError
from taobot.gate import compute_gate
from taobot.intake import (
    ChoosePlatform,
    IntakeState,
    SetCompute,
    SetMonitoring,
    SetResults,
    SetRoot,
    SetSpecInput,
    may_act,
)
from taobot.services.automl_runs import TrialRuns
from taobot.services.policy_checks import launch_gpus
from taobot.store.automl import AutomlRows

log = logging.getLogger(__name__)


class AutomlService:
    def __init__(self, desk, work, intake, launches) -> None:
        self.desk, self.work, self.intake, self.launches = desk, work, intake, launches
        self.rows = AutomlRows(desk.store)
        self.runs = TrialRuns(desk, work, launches, self.rows, self.refresh, self.finish)

    # ------------------------------------------------------------------ starting a search

    def refusal(self, model: str) -> str | None:
        """Why `/tao automl <model>` cannot start here, or None."""
        catalog = self.desk.catalog
        if automl_support(catalog, model) is None:
            able = ", ".join(f"`{m}`" for m in automl_models(catalog))
            try:
                name = find_model(catalog, model).name
            except UnknownNameError:
                return f"Unknown model `{model}`. AutoML searches run for: {able}."
            return f"`{name}` has no AutoML search in taobot's catalog. AutoML searches run for: {able}."
        missing = engine_missing()
        return f"AutoML is not available here: {missing}." if missing else None

    def start(self, channel: str, user: str, model: str, thread_ts: str | None = None) -> IntakeState | None:
        """Open an AutoML thread; a refusal is told to `user` alone and audited (nothing is created)."""
        desk = self.desk
        if refusal := self.refusal(model):
            desk.audit(user, "automl_start", channel=channel, allowed=False, reason=refusal, detail={"model": model})
            desk.tell(user, channel, refusal, thread_ts)
            return None
        support = automl_support(desk.catalog, model)
        state = self.intake.start(channel, user, support.model, "train", thread_ts)
        with desk.lock(state.id):
            state = desk.store.get_intake(state.id) or state
            state.kind = "automl"
            desk.store.save_intake(state, user, "automl", {"model": state.model})
            plan = default_plan(support, state.id)
            self.rows.save_plan(plan)
            desk.audit(user, "start", intake=state, detail={"model": state.model, "kind": "automl"})
            ts = desk.messenger.post(state.channel, self.card(state, plan), thread_ts=state.thread_ts)
            self.rows.update_experiment(state.id, card_ts=ts)
        return state

    # ------------------------------------------------------------------ the plan's answers

    def answer(self, state: IntakeState, user: str, text: str) -> bool:
        """Apply the reply's AutoML answers; True when the reply held nothing else. Caller holds the lock."""
        try:
            tokens = shlex.split(text.translate(str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})))
        except ValueError:
            return False  # the intake's reader says what is wrong with the quotes
        pairs = [tuple(t.split("=", 1)) for t in tokens if "=" in t and is_automl_key(t.split("=", 1)[0])]
        if not pairs:
            return False
        rest = len(tokens) > len(pairs)
        plan = self.rows.plan(state.id)
        if plan is None:
            return False
        if plan.status != "planning":
            reason = f"the search is {plan.status}; its plan no longer changes"
            self.desk.audit(user, "automl_plan", intake=state, allowed=False, reason=reason)
            self.desk.reply(state, f"Not changed: {reason}. Start a new one with `/tao automl {state.model}`.")
            return not rest
        change = apply_settings(plan, pairs)
        if change.errors:
            self.desk.audit(user, "automl_plan", intake=state, allowed=False, reason="; ".join(change.errors))
            self.desk.reply(
                state, "Nothing in the AutoML plan was changed:\n" + "\n".join(f":x: {e}" for e in change.errors)
            )
            return not rest
        self.rows.save_plan(change.plan)
        self.desk.audit(user, "automl_plan", intake=state, detail={"keys": [k for k, _ in pairs]})
        self.desk.reply(state, "AutoML plan: " + "; ".join(change.said) + ".")
        self.refresh(state.id)
        return not rest

    def conditions(self, state: IntakeState, plan: AutomlPlan) -> list[SearchCondition]:
        gpus = launch_gpus(state, self.desk.catalog) if state.platform else None
        refusal = None
        if gpus:
            policy = self.desk.policy
            others = self.launches.checks.active_gpus(state.owner, state.id) if policy.gpus.max_per_person else 0
            refusal = policy.gpu_refusal(plan.parallel * gpus, others)
        return search_conditions(plan, engine_missing(), gpus, refusal)

    # ------------------------------------------------------------------ launch, cancel

    def launch(self, state: IntakeState, user: str) -> None:
        """*Launch* in an AutoML thread: the gate and the search's conditions, then the first trials. Caller holds
        the thread's lock."""
        desk = self.desk
        plan = self.rows.plan(state.id)
        if plan is None:
            return
        if plan.status != "planning":
            desk.reply(state, f"This AutoML search is already {plan.status}; see its card.")
            return
        gate = compute_gate(state, desk.catalog, rules=self.launches.checks.rules(state))
        missing = gate.missing + [f"{c.name}: {c.detail}" for c in self.conditions(state, plan) if not c.ok]
        if not missing and self.launches.launcher is None:
            missing = ["this taobot has no launcher configured"]
        if not missing and (unheld := desk.unheld_credentials(state, desk.credential_values(state))):
            missing = ["credential values changed before this thread held them: " + ", ".join(unheld)]
        if missing:
            desk.audit(user, "automl_launch", intake=state, allowed=False, reason="; ".join(missing))
            desk.reply(
                state, "Not starting the AutoML search. Nothing was created.\n" + "\n".join(f"• {m}" for m in missing)
            )
            return
        self.rows.save_plan(plan.model_copy(update={"status": "running"}))
        self.rows.update_experiment(state.id, started_by=user, started_at=time.time())
        desk.audit(user, "automl_launch", intake=state, detail={"trials": plan.trials, "parallel": plan.parallel})
        desk.reply(
            state,
            f":hourglass_flowing_sand: Starting the AutoML search: {plan.trials} trials, {plan.parallel} at once "
            f"on {state.platform} (`{plan.algorithm}`). The experiment card follows every trial.",
        )
        self.refresh(state.id)
        self.runs.submit(state.id)

    def cancel(self, intake_id: str, user: str) -> None:
        """Stop the search: no new trial starts, and every running trial is cancelled on its platform."""
        desk = self.desk
        with desk.lock(intake_id):
            state, plan = desk.store.get_intake(intake_id), self.rows.plan(intake_id)
            if state is None or plan is None or plan.status != "running":
                if state is not None:
                    desk.reply(state, "This AutoML search is not running; nothing to cancel.")
                return
            self.runs.stop(intake_id, f"cancelled by <@{user}>", status="cancelled")
            sent, failed = [], []
            for trial in self.rows.trials(intake_id):
                if trial.state == "queued":
                    trial.state, trial.outcome = "cancelled", "cancelled before it started"
                    self.rows.save_trial(trial)
                    continue
                launch = desk.store.get_launch(trial.launch_id) if trial.state in ACTIVE else None
                if launch is None or launch.state.terminal or not launch.job_id:
                    continue
                ref = JobRef(launch.id, launch.job_id, launch.detail_map, self.launches.monitor.credentials(launch))
                try:
                    self.launches.launcher.backend(launch.platform).cancel(ref)
                    sent.append(f"trial {trial.number} (job `{launch.job_id}`)")
                except BackendUnreachable as exc:
                    failed.append(f"trial {trial.number}: {exc.message}")
            desk.audit(user, "automl_cancel", intake=state, detail={"cancelled": len(sent), "failed": len(failed)})
            text = f"AutoML search cancelled by <@{user}>; no new trial starts. Cancel sent for " + (
                ", ".join(sent) if sent else "no running trial"
            )
            desk.reply(state, text + "." + ("".join(f"\n:x: {f}" for f in failed)))
        self.refresh(intake_id)

    # ------------------------------------------------------------------ the card and the end

    def card(self, state: IntakeState, plan: AutomlPlan | None = None) -> ExperimentCard:
        plan = plan or self.rows.plan(state.id)
        row = self.rows.experiment(state.id) or {}
        conditions = tuple(self.conditions(state, plan)) if plan.status == "planning" else ()
        gpus = launch_gpus(state, self.desk.catalog) if state.platform else None
        return ExperimentCard(plan, tuple(self.rows.trials(state.id)), conditions, gpus, row.get("note") or "")

    def refresh(self, intake_id: str) -> None:
        state, row = self.desk.store.get_intake(intake_id), self.rows.experiment(intake_id)
        if state is None or row is None or not row.get("card_ts"):
            return
        try:
            self.desk.messenger.update(state.channel, row["card_ts"], self.card(state))
        except Exception as exc:  # noqa: BLE001 - the card is a courtesy; the search goes on
            log.warning("experiment card not updated: %s", exc, extra={"intake": intake_id})

    def finish(self, intake_id: str) -> None:
        """Every trial ended: the final reply, once (the experiment row records it)."""
        desk = self.desk
        plan, state, row = self.rows.plan(intake_id), desk.store.get_intake(intake_id), self.rows.experiment(intake_id)
        if plan is None or state is None or row is None or row.get("final_ts") not in (None, "posting"):
            return
        key = f"{intake_id}-automl"  # the final is slot -1 of the search's posts, found by its metadata
        if row.get("final_ts") == "posting":  # claimed before a crash: posted or not?
            found = desk.messenger.find_posted(state.channel, state.thread_ts, key, -1, since=row.get("started_at"))
            if found:
                self.rows.update_experiment(intake_id, final_ts=found)
                return
        trials = self.rows.trials(intake_id)
        if plan.status == "running":
            self.runs.stop(intake_id, "")
            plan = self.rows.plan(intake_id)
        self.rows.update_experiment(intake_id, final_ts="posting")
        best = best_trial(trials, plan.higher_is_better)
        final = ExperimentFinal(plan, best, len(trials), sum(t.gpu_hours for t in trials), row.get("note") or "")
        metadata = {"event_type": "taobot_status", "event_payload": {"launch": key, "slot": -1}}
        ts = desk.messenger.post(state.channel, final, thread_ts=state.thread_ts, metadata=metadata)
        self.rows.update_experiment(intake_id, final_ts=ts)
        self.runs.forget(intake_id)
        self.refresh(intake_id)

    # ------------------------------------------------------------------ Train with these values

    def train_best(self, channel: str, user: str, intake_id: str) -> None:
        """A normal train thread with the search's inputs and its best values; it needs its own preflight."""
        desk = self.desk
        source, plan = desk.store.get_intake(intake_id), self.rows.plan(intake_id)
        best = best_trial(self.rows.trials(intake_id), plan.higher_is_better) if plan else None
        refusal = None
        if source is None or plan is None:
            refusal = "That AutoML search is unknown here."
        elif not may_act(source, user, desk.admins):
            refusal = (
                f"Only <@{source.owner}>, who started AutoML search `{intake_id}`, or an admin can use its values."
            )
        elif best is None:
            refusal = "That AutoML search has no trial with a metric, so there are no values to train with."
        if refusal:
            desk.audit(user, "automl_train_best", intake=source, channel=channel, allowed=False, reason=refusal)
            desk.tell(user, channel, refusal, source.thread_ts if source else None)
            return
        state = self.intake.start(source.channel, user, source.model, "train")
        with desk.lock(state.id):
            state = desk.store.get_intake(state.id) or state
            self.rows.save_prefill(state.id, intake_id, best.number, best.values)
            events = [ChoosePlatform(source.platform)] if source.platform else []
            if source.monitor is not None:
                events.append(SetMonitoring(enabled=source.monitor, interval=source.interval_minutes))
            events += [SetRoot(role, path) for role, path in source.roots.items()]
            events += [SetSpecInput(key, path) for key, path in source.spec_inputs.items()]
            events += [SetCompute(name, value) for name, value in source.compute.items()]
            events += [SetResults(source.results_uri)] if source.results_uri else []
            desk.audit(user, "automl_train_best", intake=state, detail={"from": intake_id, "trial": best.number})
            desk.reply(
                state,
                f"Prefilled from AutoML search `{intake_id}`, trial {best.number} ({plan.metric} {best.metric:.6g}): "
                f"`{values_text(best.values)}` goes into the spec when this launches. Confirm the image, run "
                "preflight, then Launch.",
            )
            self.intake.answer(state, user, events, "automl_prefill", {"from": intake_id})

    def overrides_for(self, intake_id: str) -> dict | None:
        """The values a *Train with these values* thread takes into its spec, or None for any other thread."""
        return self.rows.prefill(intake_id)
