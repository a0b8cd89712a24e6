"""Preflight runs: record a running preflight, check off the listener thread, and open or keep shut the gate.

A run is tied to the exact inputs it checked (`gate.input_fingerprint`);
a result that arrives after the inputs changed is dropped, so it can
never open the gate for inputs it did not check.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from dataclasses import replace

from taobot import metrics
from taobot.errors import IntakeConflict, TaobotError
from taobot.gate import compute_gate, input_fingerprint
from taobot.intake import IntakeState, PreflightRecord, Step, missing_items, next_step
from taobot.services.approvals import Approvals
from taobot.services.desk import Desk
from taobot.services.kube_access import KubeAccess
from taobot.services.policy_checks import PolicyChecks
from taobot.views import PreflightCard

log = logging.getLogger(__name__)

PREFLIGHT_STALE_S = 600
CRASHED = {
    "check": "preflight",
    "label": "Preflight",
    "ok": False,
    "detail": "preflight crashed",
    "remediation": "Run preflight again; if it persists, tell the taobot maintainers.",
    "scope": "platform",
    "key": None,
}
INTERRUPTED = {
    "check": "preflight",
    "label": "Preflight",
    "ok": False,
    "detail": "interrupted by a restart of taobot",
    "remediation": "Run preflight again.",
    "scope": "platform",
    "key": None,
}


def card_for(
    state: IntakeState,
    results,
    running: str | None,
    passed: bool | None,
    superseded: bool = False,
    approval: str | None = None,
) -> PreflightCard:
    return PreflightCard(state.id, state.platform or "—", tuple(results), running, passed, superseded, approval)


class PreflightRuns:
    def __init__(self, desk: Desk, work: Executor, settings) -> None:
        self.desk = desk
        self.work = work  # preflights talk to clusters and APIs for seconds; never on a listener thread
        self.settings = settings  # PlatformSettings
        self.kube = KubeAccess(desk, settings)  # whose Kubernetes identity a preflight may use
        self.checks = PolicyChecks(desk)
        self.approvals = Approvals(desk)

    def start(self, state: IntakeState, user: str, then=None) -> None:
        """Record a running preflight, post its card, and run it in the background. Caller holds the lock.

        `then(state, passed)` runs once the result is recorded, under the lock (a retry launches from there)."""
        desk = self.desk
        if next_step(state, desk.catalog) is not Step.COMPLETE:
            desk.reply(
                state,
                "Preflight runs once the intake is complete. Still missing:\n"
                + "\n".join(f"• {m.label}" for m in missing_items(state, desk.catalog)),
            )
            return
        record = state.preflight
        if record and record.status == "running" and time.time() - record.started_at < PREFLIGHT_STALE_S:
            desk.reply(state, f"Preflight for launch `{state.id}` is already running.")
            return
        if refusals := self.checks.preflight_refusals(state, self.checks.rules(state)):
            head = "Preflight did not start: the operator's policy refuses this launch. Nothing was checked or created."
            self.checks.refuse(state, user, "preflight", refusals, head)
            return
        from taobot.preflight import request_for_intake

        values = desk.credential_values(state)
        if unheld := desk.unheld_credentials(state, values):
            desk.audit(user, "preflight", intake=state, allowed=False, reason="values changed: " + ", ".join(unheld))
            desk.reply(
                state,
                "Preflight did not start: the values of "
                + ", ".join(f"`{n}`" for n in unheld)
                + " this thread recorded are no longer stored (they were changed elsewhere). "
                "Enter them again with *Enter credentials*.",
            )
            return
        request, required = request_for_intake(state, desk.catalog, values, self.settings)
        request = replace(request, mounts=desk.policy.mounts)  # which host folders local-docker may mount
        if state.kind == "workflow":  # every path any stage uses is checked before the first stage starts
            from taobot.services.workflow_runs import stage_preflight_paths

            request = replace(request, paths=request.paths + stage_preflight_paths(desk, state))
        if refusal := self.kube.refusal(state, request.credentials):
            head = "Preflight did not start: this launch's Kubernetes identity may not be used. Nothing was checked."
            self.kube.refuse(state, user, "preflight", refusal, head)
            return
        fingerprint = input_fingerprint(state, desk.catalog)
        ts = desk.messenger.post(state.channel, card_for(state, [], "credentials", None), thread_ts=state.thread_ts)
        previous = state.preflight
        state.preflight = PreflightRecord(
            status="running", fingerprint=fingerprint, by=user, started_at=time.time(), card_ts=ts
        )
        desk.store.save_intake(state, user, "preflight_started", {"fingerprint": fingerprint})
        self._supersede(state, previous)
        desk.refresh(state)
        self.work.submit(self._run, state.id, fingerprint, ts, request, required, then)

    def _supersede(self, state: IntakeState, previous: PreflightRecord | None) -> None:
        """Redraw the earlier preflight card without its buttons: only the newest run may be acted on."""
        if previous is None or not previous.card_ts:
            return
        view = card_for(state, previous.results, None, previous.status == "passed", superseded=True)
        try:
            self.desk.messenger.update(state.channel, previous.card_ts, view)
        except TaobotError as exc:
            log.warning("superseded preflight card update failed: %s", exc, extra={"intake": state.id})

    def _run(self, intake_id: str, fingerprint: str, card_ts: str, request, required, then=None) -> None:
        from taobot.preflight import run_preflight

        desk = self.desk
        state = desk.store.get_intake(intake_id)
        if state is None or state.preflight is None or state.preflight.card_ts != card_ts:
            return  # a newer preflight took over before this one began

        def progress(results, stage):
            now = desk.store.get_intake(intake_id)
            if stage is not None and now is not None and now.preflight and now.preflight.card_ts == card_ts:
                try:
                    desk.messenger.update(
                        state.channel, card_ts, card_for(state, [r.to_dict() for r in results], stage, None)
                    )
                except TaobotError as exc:
                    log.warning("preflight progress update failed: %s", exc, extra={"intake": intake_id})

        try:
            report = run_preflight(request, required, progress)
            results = [r.to_dict() for r in report.results]
            passed = report.passed
        except Exception:  # the card must never stay "running"
            log.exception("preflight crashed", extra={"intake": intake_id})
            results, passed = [CRASHED], False
        with desk.lock(intake_id):
            state = self._record_result(intake_id, card_ts, fingerprint, results, passed)
            if state is None:
                return  # superseded, or the inputs changed: this result proves nothing about them
            self._audit_refused_paths(state, results)
            rules = self.checks.rules(state) if passed else None
            waiting = rules is not None and any(
                c.number == 8 and not c.ok for c in compute_gate(state, desk.catalog, rules=rules).conditions
            )
            approval = rules.approval if waiting else None
            desk.messenger.update(state.channel, card_ts, card_for(state, results, None, passed, approval=approval))
            desk.refresh(state)
            if waiting:
                self.approvals.ask(state, rules)
            if then is not None:
                then(state, passed)
        metrics.PREFLIGHTS.labels(platform=request.platform, result="passed" if passed else "failed").inc()
        log.info(
            "preflight %s", "passed" if passed else "failed", extra={"intake": intake_id, "platform": request.platform}
        )

    def _audit_refused_paths(self, state: IntakeState, results: list[dict]) -> None:
        """Host paths the policy refused (or a remote daemon could not show) are refusals: each is an audit row."""
        from taobot.preflight.docker import REFUSAL_CHECKS

        for r in results:
            if r.get("check") in REFUSAL_CHECKS and not r["ok"]:
                reason = f"{r['label']}: {r['detail']}"
                self.desk.audit(state.preflight.by, "preflight", intake=state, allowed=False, reason=reason)

    def _record_result(self, intake_id: str, card_ts, fingerprint: str, results, passed: bool) -> IntakeState | None:
        """Save the result on the intake it checked; read again if another instance saved it meanwhile."""
        store = self.desk.store
        for _attempt in range(3):
            state = store.get_intake(intake_id)
            current = state is not None and state.preflight is not None and state.preflight.card_ts == card_ts
            if not current or state.preflight.fingerprint != fingerprint:
                return None
            state.preflight.status = "passed" if passed else "failed"
            state.preflight.results = results
            state.preflight.finished_at = time.time()
            failed = [r["label"] for r in results if not r["ok"]]
            try:
                store.save_intake(state, state.preflight.by, "preflight_finished", {"passed": passed, "failed": failed})
                return state
            except IntakeConflict:
                log.info(
                    "intake changed by another instance meanwhile; saving the result again", extra={"intake": intake_id}
                )
        return None

    def recover(self) -> int:
        """After a restart: a preflight that was running when the process died is marked failed, never left hanging."""
        desk, count = self.desk, 0
        for intake_id in desk.store.intakes_with_running_preflight():
            with desk.lock(intake_id):
                state = desk.store.get_intake(intake_id)
                if state is None or state.preflight is None or state.preflight.status != "running":
                    continue
                state.preflight.status = "failed"
                state.preflight.finished_at = time.time()
                state.preflight.results = [INTERRUPTED]
                desk.store.save_intake(state, "taobot", "preflight_interrupted", {})
                if state.preflight.card_ts:
                    try:
                        desk.messenger.update(
                            state.channel,
                            state.preflight.card_ts,
                            card_for(state, state.preflight.results, None, False),
                        )
                    except TaobotError:
                        pass
                desk.refresh(state)
                count += 1
        return count
