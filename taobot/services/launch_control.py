"""Launch control: launch (gate first), cancel a job, detach and attach updates, relaunch, retry.

Submitting and cancelling talk to a platform for seconds, so they run on
the work pool, never on a listener thread; the gate is asked again at
submit time, under the thread's lock, from the stored state.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor

from taobot import metrics
from taobot.errors import BackendUnreachable, GateClosedError, LaunchFailed
from taobot.gate import compute_gate
from taobot.intake import IntakeState
from taobot.intake.intents import Attach, CancelJob, Detach, Relaunch, Retry
from taobot.services.desk import Desk
from taobot.services.kube_access import KubeAccess
from taobot.services.policy_checks import PolicyChecks
from taobot.services.relaunches import Relaunches
from taobot.services.retries import Retries
from taobot.views import LaunchPosted, RelaunchForm

log = logging.getLogger(__name__)


class LaunchControl:
    def __init__(self, desk: Desk, work: Executor, launcher=None, monitor=None, preflight=None) -> None:
        self.desk = desk
        self.work = work
        self.launcher = launcher
        self.checks = PolicyChecks(desk)
        self.retries = Retries(desk, self, preflight)
        self.kube: KubeAccess | None = None  # set by Services: the preflight's rules for Kubernetes identities
        self.workflows = None  # set by Services: *Launch* in a workflow thread runs its stages
        self.automl = None  # set by Services: *Launch* in an AutoML thread starts its trials
        self.monitor = monitor
        self.relaunches = Relaunches(desk, work)

    @property
    def monitor(self):
        return self._monitor

    @monitor.setter
    def monitor(self, monitor) -> None:
        # The monitor is made after the services (it needs their card refresh); whoever hands it over wires the
        # automatic retry of opted-in infrastructure failures to it.
        self._monitor = monitor
        if monitor is not None:
            monitor.on_retriable = self.retries.automatic
            if self.automl is not None:
                monitor.after_cycle = self.automl.runs.sweep  # a search's trials are looked at every cycle

    # ------------------------------------------------------------------ launch

    def launch(self, state: IntakeState, user: str) -> None:
        """Gate first; then submit off the listener thread. Caller holds the intake lock."""
        desk = self.desk
        if state.kind == "workflow" and self.workflows is not None:
            self.workflows.launch(state, user)  # the gate over every stage, then the stages in order
            return
        if state.kind == "automl" and self.automl is not None:
            self.automl.launch(state, user)  # the gate and the search's own conditions, then the first trials
            return
        gate = compute_gate(state, desk.catalog, rules=self.checks.rules(state))
        if not gate.open:
            desk.audit(user, "launch", intake=state, allowed=False, reason="gate closed: " + "; ".join(gate.missing))
            desk.reply(
                state,
                "Not launching: the launch gate is closed. Nothing was created.\n"
                + "\n".join(f"• {m}" for m in gate.missing),
            )
            return
        if self.launcher is None:
            desk.reply(
                state, f"The launch gate is open for launch `{state.id}`, but this taobot has no launcher configured."
            )
            return
        active = [launch for launch in desk.store.launches_for_intake(state.id) if launch.state.active]
        if active or state.status == "launched":
            desk.reply(
                state, f"Launch `{state.id}` already has a job; press *Relaunch* on its final reply to run again."
            )
            return
        if unheld := desk.unheld_credentials(state, desk.credential_values(state)):
            self._refuse_unheld(state, user, unheld)
            return
        desk.reply(state, f":hourglass_flowing_sand: Submitting {state.model} {state.action} to {state.platform}…")
        self.work.submit(self._submit, state.id, user)

    def _submit(self, intake_id: str, user: str) -> None:
        desk = self.desk
        with desk.lock(intake_id):
            state = desk.store.get_intake(intake_id)
            if state is None or state.status != "complete":
                return
            values = desk.credential_values(state)
            if unheld := desk.unheld_credentials(state, values):
                self._refuse_unheld(state, user, unheld)
                return
            if refusals := self.checks.mount_refusals(state, values):
                # The paths preflight checked may have changed since (a folder swapped for a symlink).
                head = "Not launching: the operator's policy refuses a host path of this launch. Nothing was created."
                self.checks.refuse(state, user, "launch", refusals, head)
                return
            if self.kube is not None and (refusal := self.kube.refusal(state, values)):
                head = "Not launching: this launch's Kubernetes identity may not be used. Nothing was created."
                self.kube.refuse(state, user, "launch", refusal, head)
                return
            retry_of = self.retries.link(state)  # a retry's launch names the failed one
            state.retry_pending = None  # recorded with the launch (or with its failure)
            try:
                # A thread opened by *Train with these values* takes the AutoML search's best values into its spec.
                overrides = self.automl.overrides_for(state.id) if self.automl is not None else None
                launch, _submitted = self.launcher.launch(
                    state, user, values, self.checks.rules(state), overrides=overrides
                )
            except GateClosedError as exc:
                metrics.LAUNCHES.labels(platform=state.platform, outcome="gate_closed").inc()
                desk.audit(user, "launch", intake=state, allowed=False, reason=exc.message)
                desk.reply(state, "Not launching: " + exc.message)
                return
            except LaunchFailed as exc:
                desk.audit(user, "launch", intake=state, allowed=False, reason=exc.message)
                text = f":x: {state.platform} refused the job: {exc.message}\nNothing is running."
                self._submit_failed(state, "refused", False, retry_of, text)
                return
            except BackendUnreachable as exc:
                text = f":x: Could not reach {state.platform}: {exc.message}\nNothing was submitted."
                self._submit_failed(state, "unreachable", True, retry_of, text)
                return
            except Exception as exc:  # noqa: BLE001 - the person must hear about it
                log.exception("launch failed", extra={"intake": intake_id})
                self._failed(
                    state, "error", f":x: Launch failed unexpectedly ({type(exc).__name__}). Nothing is running."
                )
                return
            metrics.LAUNCHES.labels(platform=state.platform, outcome="submitted").inc()
            if retry_of:
                desk.store.update_launch(launch.id, retry_of=retry_of)
                launch = desk.store.get_launch(launch.id) or launch
            desk.messenger.post(state.channel, LaunchPosted(launch), thread_ts=state.thread_ts)
            desk.refresh(desk.store.get_intake(intake_id) or state)

    def _refuse_unheld(self, state: IntakeState, user: str, names: list[str]) -> None:
        """A value the preflight checked is no longer to be had: launching with another one is never done."""
        reason = "credential values changed before this thread held them: " + ", ".join(names)
        self.desk.audit(user, "launch", intake=state, allowed=False, reason=reason)
        self.desk.reply(
            state,
            "Not launching: the values of "
            + ", ".join(f"`{n}`" for n in names)
            + " this thread checked are no longer stored (they were changed elsewhere). Nothing was created. "
            "Enter them again with *Enter credentials* and run preflight.",
        )

    def _submit_failed(self, state: IntakeState, outcome: str, unreachable: bool, retry_of, text: str) -> None:
        """The platform refused the submit or did not answer: the triaged reply (Retry where it helps)."""
        metrics.LAUNCHES.labels(platform=state.platform, outcome=outcome).inc()
        self.retries.submit_failed(state, unreachable, retry_of, text)
        self.desk.refresh(self.desk.store.get_intake(state.id) or state)

    def _failed(self, state: IntakeState, outcome: str, text: str) -> None:
        metrics.LAUNCHES.labels(platform=state.platform, outcome=outcome).inc()
        self.desk.reply(state, text)
        self.desk.refresh(self.desk.store.get_intake(state.id) or state)

    # ------------------------------------------------------------------ a launched job

    def act(
        self, state: IntakeState, user: str, intent: Detach | Attach | CancelJob | Relaunch | Retry
    ) -> RelaunchForm | None:
        """Act on the thread's job; a *Relaunch* click returns the form of what to change, for the caller to open."""
        desk = self.desk
        if (
            state.kind == "automl"
            and self.automl is not None
            and isinstance(intent, CancelJob)
            and not intent.launch_id
        ):
            self.work.submit(self.automl.cancel, state.id, user)  # *Cancel search*: every trial
            return None
        launch = desk.store.get_launch(intent.launch_id) if intent.launch_id else desk.store.latest_launch(state.id)
        if launch is None:
            desk.reply(state, f"Launch `{state.id}` has no job yet.")
            return
        if isinstance(intent, Detach):
            desk.store.update_launch(launch.id, detached=True)
            desk.store.log_event(state.id, user, "detach", {"launch": launch.id})
            desk.reply(
                state,
                f"Stopped status updates for `{launch.id}`. The job keeps running; check it with "
                f"`/tao status {launch.id}`, or reply `attach` to resume updates here.",
            )
        elif isinstance(intent, Attach):
            desk.store.update_launch(launch.id, monitor=True, detached=False)
            desk.store.log_event(state.id, user, "attach", {"launch": launch.id})
            desk.reply(state, f"Resumed status updates for `{launch.id}` every {launch.interval_minutes} min.")
        elif isinstance(intent, CancelJob):
            self.work.submit(self._cancel_job, state.id, launch.id, user)
        elif isinstance(intent, Retry):
            # Off this thread: a typed `retry` arrives with the thread's lock held, and the retry takes it.
            self.work.submit(self.retries.retry, state, user, launch)
        else:
            return self.relaunches.start(state, user, launch, intent)
        return None

    def _cancel_job(self, intake_id: str, launch_id: str, user: str) -> None:
        from taobot.backends.base import JobRef

        desk = self.desk
        state, launch = desk.store.get_intake(intake_id), desk.store.get_launch(launch_id)
        if state is None or launch is None:
            return
        if launch.state.terminal:
            desk.reply(state, f"`{launch_id}` already ended ({launch.state.value}); nothing to cancel.")
            return
        if self.monitor is None or not launch.job_id:
            desk.reply(state, f"`{launch_id}` cannot be cancelled from here yet; it has no job id.")
            return
        creds = self.monitor.credentials(launch)
        ref = JobRef(launch.id, launch.job_id, launch.detail_map, creds)
        try:
            self.launcher.backend(launch.platform).cancel(ref)
        except BackendUnreachable as exc:
            desk.reply(
                state, f":x: Could not reach {launch.platform} to cancel `{launch_id}`: {exc.message}. Try again."
            )
            return
        desk.store.log_event(intake_id, user, "cancel_job", {"launch": launch_id, "job": launch.job_id})
        desk.reply(state, f"Cancel sent for job `{launch.job_id}` (`{launch_id}`) by <@{user}>.")

    # ------------------------------------------------------------------ from a person's App Home

    def from_home(self, user: str, launch_id: str, intent: Detach | Attach | CancelJob) -> str:
        """A button pressed on a person's App Home: the thread's own rules and path; the line the Home shows.

        The launch is read from its id alone (a button's value can be forged): only its owner or an admin
        may act on it, as in its thread, and a refusal is audited and changes nothing.
        """
        from taobot.intake import may_act

        desk = self.desk
        launch = desk.store.get_launch(launch_id) if launch_id else None
        state = desk.store.get_intake(launch.intake_id) if launch is not None else None
        action, detail = type(intent).__name__, {"launch": launch_id[:80], "from": "home"}
        refusal = None
        if state is None:
            refusal = "unknown launch"
        elif not may_act(state, user, desk.admins):
            refusal = "not the person who started the launch, nor an admin"
        if refusal:
            desk.audit(user, action, intake=state, allowed=False, reason=refusal, detail=detail)
            return (
                f":no_entry: Not done: launch `{launch_id[:80]}` is not one you may change here ({refusal}). "
                "Only the person who started a launch, or an admin, can cancel it or change its updates. "
                "Nothing was changed."
            )
        desk.audit(user, action, intake=state, detail=detail)
        self.act(state, user, intent)
        if isinstance(intent, CancelJob):
            return f"Cancel asked for `{launch.id}`; its thread says when the platform has taken it."
        if isinstance(intent, Detach):
            return f"Stopped status updates for `{launch.id}`; the job keeps running."
        return f"Resumed status updates for `{launch.id}` in its thread."
