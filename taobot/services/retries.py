"""Retry: an infrastructure failure runs again, preflight first, as a new job linked to the one that failed.

*Retry* on a final reply (or an opted-in automatic retry, `retry=infra:N`) checks that the failure was
triaged as infrastructure (`taobot.triage`), that the launch was not retried already, that nothing of the
thread still runs and that its chain has room (`MAX_CHAIN` launches). Then the thread's intake goes back to
"complete" with a fresh preflight and a `RetryPending` record naming the failed launch and the inputs it had.
When that preflight passes, the launch goes exactly the way *Launch* goes (`LaunchControl.launch`: the gate
asked again, the thread's held credential values), and the new launch row names the failed one in `retry_of`.
A preflight that fails says why on its card, and nothing is launched.
"""

from __future__ import annotations

import logging
import time

from taobot.catalog import find_platform
from taobot.gate import input_fingerprint
from taobot.intake import IntakeState
from taobot.intake.state import RetryPending
from taobot.launches import Launch
from taobot.services.desk import Desk
from taobot.triage import MAX_CHAIN, FailureKind, stored
from taobot.views import SubmitFailed

log = logging.getLogger(__name__)


class Retries:
    def __init__(self, desk: Desk, control, preflight=None) -> None:
        self.desk = desk
        self.control = control  # LaunchControl: launches the retry once its preflight passed
        self.preflight = preflight  # PreflightRuns

    def automatic(self, launch: Launch) -> None:
        """The monitor found an opted-in infrastructure failure: retry it off the monitor's thread."""
        self.control.work.submit(self._automatic, launch.id)

    def _automatic(self, launch_id: str) -> None:
        launch = self.desk.store.get_launch(launch_id)
        state = self.desk.store.get_intake(launch.intake_id) if launch else None
        if launch is not None and state is not None:
            self.retry(state, launch.owner, launch, automatic=True)

    def retry(self, state: IntakeState, user: str, launch: Launch, automatic: bool = False) -> None:
        """Check, reset the intake for a fresh preflight of the same inputs, and start that preflight."""
        desk = self.desk
        with desk.lock(state.id):
            state = desk.store.get_intake(state.id) or state
            launch = desk.store.get_launch(launch.id) or launch
            chain = len(desk.store.retry_chain(launch, MAX_CHAIN + 1))
            refusal = self.refusal(state, launch, chain)
            detail = {"launch": launch.id, "automatic": automatic}
            if refusal:
                desk.audit(user, "retry", intake=state, allowed=False, reason=refusal, detail=detail)
                desk.reply(state, f"Not retrying `{launch.id}`: {refusal} Nothing was created.")
                return
            now = time.time()
            state.status = "complete"
            state.preflight = None
            state.approval = None  # an approval lets one launch go; the retry needs its own
            state.retry_pending = RetryPending(
                of=launch.id,
                fingerprint=input_fingerprint(state, desk.catalog),
                automatic=automatic,
                by=user,
                at=now,
            )
            state.updated_at = now
            desk.store.save_intake(state, user, "retry", detail)
            desk.audit(user, "retry", intake=state, detail=detail)
            how = (
                f"Automatic retry {chain} of {state.retry_infra}" if automatic else f"<@{user}> asked for retry {chain}"
            )
            desk.reply(
                state,
                f":recycle: {how} of `{launch.id}` ({launch.failure_cause}): preflight runs first, and if it passes "
                "the same inputs launch as a new job.",
            )
            desk.refresh(state)
            self.preflight.start(state, user, then=lambda checked, passed: self._checked(checked, user, passed))
            after = desk.store.get_intake(state.id)
            if (
                after is not None
                and after.retry_pending
                and (after.preflight is None or after.preflight.card_ts is None)
            ):
                self._stop(after, user, "preflight did not start (the reply above says why)")

    def refusal(self, state: IntakeState, launch: Launch, chain: int) -> str | None:
        """Why this launch may not be retried now, or None."""
        if self.preflight is None or self.control.launcher is None:
            return "this taobot has no launcher configured."
        if state.status == "cancelled":
            return "its intake was cancelled."
        if not launch.state.terminal and launch.ended_at is None:
            return f"it is still {launch.state.value}."
        found = stored(launch.failure_kind, launch.failure_cause, launch.failure_line, launch.failure_frames)
        if found is None:
            return f"it ended {launch.state.value}, not with a failure taobot triaged; press *Relaunch* to run again."
        if not found.retriable:
            what = "no cause was found" if found.kind is FailureKind.UNKNOWN else f"it was a {found.kind.value} failure"
            return (
                f"only infrastructure failures are retried, and {what} ({found.cause}). A retry with the same inputs "
                "would fail the same way: change them, then press *Relaunch*."
            )
        if retried := self.desk.store.retries_of(launch.id):
            return f"it was retried already, as `{retried[-1].id}`; use *Retry* on that launch's final reply."
        if active := [x for x in self.desk.store.launches_for_intake(state.id) if x.state.active]:
            return f"`{active[0].id}` of this thread is still {active[0].state.value}."
        pending = state.retry_pending
        running = state.preflight is not None and state.preflight.status == "running"
        if pending is not None and running:
            return f"a retry of `{pending.of}` is already under way (its preflight is running)."
        if chain >= MAX_CHAIN:
            return (
                f"its retry chain has {chain} launches already, the most taobot runs ({MAX_CHAIN}). Have the "
                "cluster looked at, then press *Relaunch* to start afresh."
            )
        return None

    def _checked(self, state: IntakeState, user: str, passed: bool) -> None:
        """The retry's preflight is done (under the thread's lock): launch, or stop and say why."""
        pending = state.retry_pending
        if pending is None:
            return  # not this retry's preflight any more (Relaunch, or another retry, replaced it)
        if not passed:
            self._stop(state, user, "its preflight failed; the card above says what to fix")
            return
        try:
            self.control.launch(state, user)
        except Exception:  # noqa: BLE001 - the thread must hear about it
            log.exception("retry launch failed", extra={"intake": state.id})
            self._stop(state, user, "the launch failed unexpectedly")

    def _stop(self, state: IntakeState, user: str, why: str) -> None:
        of = state.retry_pending.of if state.retry_pending else "?"
        state.retry_pending = None
        state.updated_at = time.time()
        self.desk.store.save_intake(state, user, "retry_stopped", {"of": of, "why": why})
        self.desk.reply(
            state,
            f"Retry of `{of}` stopped: {why}. Nothing was launched. Fix it and press *Retry* again, or *Relaunch*.",
        )

    def submit_failed(self, state: IntakeState, unreachable: bool, retry_of: str | None, fallback: str) -> None:
        """A submit failed before any job existed: say why in the thread with the triage the launcher stored on
        the launch row, and offer *Retry* where it can help. A retry's failed submit is linked to what it retried,
        so the chain (and its limit) counts it too. Without a stored triage, `fallback` is said instead."""
        desk = self.desk
        failed = desk.store.latest_launch(state.id)
        found = failed and stored(failed.failure_kind, failed.failure_cause, failed.failure_line, failed.failure_frames)
        if failed is None or found is None or failed.native != "submit failed":
            desk.reply(state, fallback)
            return
        if retry_of:
            desk.store.update_launch(failed.id, retry_of=retry_of)
            failed = desk.store.get_launch(failed.id) or failed
        chain = len(desk.store.retry_chain(failed, MAX_CHAIN + 1))
        platform = find_platform(desk.catalog, failed.platform)
        view = SubmitFailed(
            failed,
            platform.display_name if platform else failed.platform,
            found,
            unreachable=unreachable,
            retry_offered=found.retriable and chain < MAX_CHAIN,
        )
        desk.messenger.post(state.channel, view, thread_ts=state.thread_ts)

    def link(self, state: IntakeState) -> str | None:
        """The failed launch a launch of this state retries: a pending retry for exactly these inputs."""
        pending = state.retry_pending
        if pending is None or pending.fingerprint != input_fingerprint(state, self.desk.catalog):
            return None
        return pending.of
