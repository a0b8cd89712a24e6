"""The trials of a running AutoML search: ask the engine, launch each recommendation, read each result, tell it.

`advance(intake_id)` is level-triggered and idempotent: it looks at what is stored (the trials, their launch
rows, the engine's journal) and does the next thing, so the start of a search and the sweep after every
monitor cycle (the first one after a restart included) call the same function. A trial row is written before its launch is submitted and
its launch id comes from its number, so no trial is launched twice; the engine is rebuilt from its journal, so
no recommendation is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
from pathlib import Path

from taobot.automl.engine import AutomlEngineError, SearchEngine
from taobot.automl.plan import AutomlPlan
from taobot.automl.trials import ACTIVE, FINISHED, Trial, trial_launch_id
from taobot.automl.views import ExperimentCard, metric_of, summary_text
from taobot.backends.base import JobRef
from taobot.errors import BackendUnreachable, GateClosedError
from taobot.launches import JobState, Launch
from taobot.services.policy_checks import launch_gpus
from taobot.store.automl import AutomlRows
from taobot.views import Reply

log = logging.getLogger(__name__)


class TrialRuns:
    def __init__(self, desk, work, launches, rows: AutomlRows, on_change, on_finish) -> None:
        self.desk, self.work, self.launches, self.rows = desk, work, launches, rows
        self.on_change = on_change  # redraw the experiment card
        self.on_finish = on_finish  # every trial ended: the final reply
        self._engines: dict[str, SearchEngine] = {}
        self._guard = threading.Lock()
        self._queued: set[str] = set()
        path = desk.store.path
        self.workspaces = (
            Path(tempfile.mkdtemp(prefix="taobot-automl-")) if str(path) == ":memory:" else path.parent / "automl"
        )

    # ------------------------------------------------------------------ triggers

    def sweep(self) -> int:
        """Every running search looks at its trials (after each monitor cycle, and after a restart): a result
        that could not be read yet, or a trial that ended while taobot was down, is taken up here."""
        running = self.rows.running()
        for intake_id in running:
            self.submit(intake_id)
        for intake_id in self.rows.stale_plans():  # an answer on the intake card changes what the search needs
            self.rows.update_experiment(intake_id)
            self.on_change(intake_id)
        return len(running)

    def submit(self, intake_id: str) -> None:
        with self._guard:
            if intake_id in self._queued:
                return  # one step per search waits at a time; it reads everything afresh when it runs
            self._queued.add(intake_id)
        self.work.submit(self.advance, intake_id)

    def advance(self, intake_id: str) -> None:
        with self._guard:
            self._queued.discard(intake_id)
        try:
            with self.desk.lock(intake_id):
                self._advance(intake_id)
        except AutomlEngineError as exc:  # the engine refused the plan or failed: the search ends, saying why
            self._engines.pop(intake_id, None)
            self.stop(intake_id, exc.message)
            state = self.desk.store.get_intake(intake_id)
            if state is not None:
                self.desk.reply(state, f":x: The AutoML search stopped: {exc.message}. No new trial starts.")
            self.on_change(intake_id)
        except Exception:  # noqa: BLE001 - a search that cannot move now is tried again at the next sweep
            self._engines.pop(intake_id, None)  # rebuilt from the stored journal next time
            log.exception("AutoML search could not advance", extra={"intake": intake_id})

    # ------------------------------------------------------------------ the step

    def _advance(self, intake_id: str) -> None:
        plan, state = self.rows.plan(intake_id), self.desk.store.get_intake(intake_id)
        if plan is None or state is None or plan.status == "planning":
            return
        trials = self.rows.trials(intake_id)
        changed = any([self._follow(trial, plan) for trial in trials])
        if plan.status != "running":  # stopped or cancelled: its trials are followed to their end, then the final
            if changed:
                self.on_change(intake_id)
            if all(t.state in FINISHED for t in trials):
                self.on_finish(intake_id)
            return
        engine = self._engine(plan)
        for trial in trials:
            if trial.state == "ended":  # its result goes to the engine once; the journal says so
                engine.tell(trial.rec_id, trial.metric if trial.outcome == "success" else None)
                trial.state = "reported"
                self.rows.save_trial(trial, engine.journal)
                changed = True
        changed |= self._fill(state, plan, engine, trials)
        if changed:
            self.on_change(intake_id)
        self._summary(state, plan)
        over = len(trials) >= plan.trials or engine.complete()
        if over and all(t.state in FINISHED for t in trials):
            self.on_finish(intake_id)

    def _follow(self, trial: Trial, plan: AutomlPlan) -> bool:
        """Bring a launched trial's row up to date with its launch; True when it changed."""
        if trial.state not in ACTIVE:
            return False
        launch = self.desk.store.get_launch(trial.launch_id) if trial.launch_id else None
        if launch is None:
            if trial.state == "launching":  # stopped before its launch row was written: nothing was submitted
                trial.state = "queued"
                self.rows.save_trial(trial)
                return True
            return False
        if launch.monitor:
            # Trials post no updates of their own: the experiment card and its final reply speak for them.
            self.desk.store.update_launch(launch.id, monitor=False)
        before = trial.model_dump()
        trial.state = "running"
        trial.job_state = launch.state.value
        trial.gpu_hours = gpu_hours(self.desk, launch)
        if launch.state.terminal or launch.ended_at is not None:
            trial.ended_at = launch.ended_at or time.time()
            trial.metric, trial.checkpoint, trial.outcome = self._result(launch, plan)
            trial.state = "cancelled" if launch.state is JobState.CANCELLED and plan.status == "cancelled" else "ended"
        if trial.model_dump() == before:
            return False
        self.rows.save_trial(trial)
        return True

    def _fill(self, state, plan: AutomlPlan, engine: SearchEngine, trials: list[Trial]) -> bool:
        """Launch trials until `parallel` run at once or the budget is spent; True when any was added."""
        changed = False
        while sum(1 for t in trials if t.state in ACTIVE) < plan.parallel:
            queued = [t for t in trials if t.state == "queued"]
            if not queued:
                if len(trials) >= plan.trials or engine.complete():
                    break
                known = {t.rec_id for t in trials}
                new = []
                for rec_id, values in engine.ask():
                    if rec_id in known or len(trials) + len(new) >= plan.trials:
                        continue  # the budget caps the search; the engine may offer more
                    number = len(trials) + len(new) + 1
                    new.append(
                        Trial(
                            intake_id=plan.intake_id,
                            number=number,
                            rec_id=rec_id,
                            values=values,
                            launch_id=trial_launch_id(plan.intake_id, number),
                        )
                    )
                if not new:
                    break  # the engine waits for results before it recommends more
                self.rows.add_trials(plan.intake_id, new, engine.journal)
                trials.extend(new)
                queued = new
            self._launch(state, plan, queued[0])
            changed = True
        return changed

    def _launch(self, state, plan: AutomlPlan, trial: Trial) -> None:
        """One trial, through the launcher like any launch (gate, staging, secrets, monitoring, cleanup)."""
        desk, launcher = self.desk, self.launches.launcher
        trial.state, trial.started_at = "launching", time.time()
        self.rows.save_trial(trial)  # before the launch row: a restart finds it by its launch id
        overrides = dict(trial.values)
        if plan.epochs_key and plan.epochs:
            overrides.setdefault(plan.epochs_key, plan.epochs)
        values = desk.credential_values(state)
        rules = self.launches.checks.rules(state)
        if trial.number > 1:
            # The search passed the gate as a whole when it started; later trials use the inputs that preflight
            # checked (the gate still refuses any that changed), however long the search runs.
            rules = dataclasses.replace(rules, preflight_valid_s=float("inf"))
        owner = self.rows.experiment(plan.intake_id).get("started_by") or state.owner
        try:
            if unheld := desk.unheld_credentials(state, values):
                raise GateClosedError("credential values changed since preflight: " + ", ".join(unheld), [])
            launch, _ = launcher.launch(state, owner, values, rules, overrides=overrides, launch_id=trial.launch_id)
        except GateClosedError as exc:
            self._not_launched(trial, "gate closed")
            self.stop(plan.intake_id, f"trial {trial.number} was refused: {exc.message}")
            desk.audit(owner, "automl_trial", intake=state, allowed=False, reason=exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - the platform refused or could not be reached: the trial failed
            why = getattr(exc, "message", None) or type(exc).__name__
            log.warning("AutoML trial %s not launched: %s", trial.number, why, extra={"intake": plan.intake_id})
            self._not_launched(trial, f"not launched: {why}"[:200])
            desk.reply(state, f":x: Trial {trial.number} could not be launched: {why}")
            return
        desk.store.update_launch(launch.id, monitor=False)
        trial.state, trial.job_state = "running", launch.state.value
        self.rows.save_trial(trial)
        desk.audit(owner, "automl_trial", intake=state, detail={"trial": trial.number, "launch": launch.id})

    def _not_launched(self, trial: Trial, outcome: str) -> None:
        trial.state, trial.outcome, trial.ended_at = "ended", outcome, time.time()
        self.rows.save_trial(trial)

    def stop(self, intake_id: str, note: str, status: str = "done") -> None:
        plan = self.rows.plan(intake_id)
        if plan is None or plan.status != "running":
            return
        self.rows.save_plan(plan.model_copy(update={"status": status}))
        self.rows.update_experiment(intake_id, ended_at=time.time(), note=note)

    # ------------------------------------------------------------------ interval updates

    def _summary(self, state, plan: AutomlPlan) -> None:
        """Every `interval` minutes of a monitored search, one summary in the thread (never two for a slot)."""
        row = self.rows.experiment(plan.intake_id) or {}
        if not state.monitor or not row.get("started_at"):
            return
        interval = state.interval_minutes or self.desk.catalog.default_status_interval_minutes
        minute_s = float(getattr(self.launches.monitor, "minute_s", 60.0) or 60.0)
        slot = int((time.time() - row["started_at"]) // (interval * minute_s))
        last, key = row.get("summary_slot") or 0, f"{plan.intake_id}-automl"
        messenger = self.desk.messenger
        if last and not row.get("summary_ts"):  # claimed, not confirmed: posted before a crash, or not at all
            found = messenger.find_posted(state.channel, state.thread_ts, key, last, since=row["started_at"])
            if found:
                self.rows.update_experiment(plan.intake_id, summary_ts=found)
            else:
                self._post_summary(state, plan, last, interval)
        if slot > last:
            self.rows.update_experiment(plan.intake_id, summary_slot=slot, summary_ts=None)
            self._post_summary(state, plan, slot, interval)

    def _post_summary(self, state, plan: AutomlPlan, slot: int, interval: int) -> None:
        view = ExperimentCard(plan, tuple(self.rows.trials(plan.intake_id)))
        metadata = {
            "event_type": "taobot_status",
            "event_payload": {"launch": f"{plan.intake_id}-automl", "slot": slot},
        }
        ts = self.desk.messenger.post(
            state.channel, Reply(summary_text(view, interval)), thread_ts=state.thread_ts, metadata=metadata
        )
        self.rows.update_experiment(plan.intake_id, summary_ts=ts)

    # ------------------------------------------------------------------ results and the engine

    def _result(self, launch: Launch, plan: AutomlPlan) -> tuple[float | None, str | None, str]:
        """(metric, checkpoint, outcome) of an ended trial, read from what its run wrote."""
        if launch.state is not JobState.SUCCEEDED:
            return None, None, launch.state.value.lower()
        monitor = self.launches.monitor
        creds = monitor.credentials(launch) if monitor is not None else {}
        ref = JobRef(launch.id, launch.job_id or "", launch.detail_map, creds)
        try:
            statuses = self.launches.launcher.backend(launch.platform).poll([ref], tails_for=[ref.job_id])
        except BackendUnreachable:
            raise  # tried again at the next change or sweep; the trial stays running until its result is read
        progress = (statuses.get(ref.job_id) or None) and statuses[ref.job_id].progress
        metric = metric_of(progress, plan.metric)
        checkpoint = progress.checkpoint if progress is not None else None
        return metric, checkpoint, "success" if metric is not None else f"no {plan.metric} in its results"

    def _engine(self, plan: AutomlPlan) -> SearchEngine:
        engine = self._engines.get(plan.intake_id)
        if engine is None:
            journal = self.rows.journal(plan.intake_id)
            engine = SearchEngine(plan, self.workspaces / plan.intake_id, journal)
            self._engines[plan.intake_id] = engine
        return engine

    def forget(self, intake_id: str) -> None:
        self._engines.pop(intake_id, None)


def gpu_hours(desk, launch: Launch) -> float:
    """GPUs of the trial's launch times how long it has run (so far, while it runs)."""
    state = desk.store.get_intake(launch.intake_id)
    gpus = (launch_gpus(state, desk.catalog) or 0) if state is not None else 0
    end = launch.ended_at or time.time()
    return round(gpus * max(0.0, end - launch.launched_at) / 3600, 4)
