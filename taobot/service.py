"""IntakeService: store + conversation + a Messenger, for one workspace.

The Slack listeners (and tests) call these methods after acking. Each
method loads the thread's state, applies the pure conversation, saves the
new state with its event record in one transaction, then tells Slack.
A per-intake lock serialises concurrent clicks and replies on one thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from taobot.catalog import Catalog
from taobot.conversation import (
    AcceptComputeDefaults,
    Cancel,
    ChoosePlatform,
    ConfirmImage,
    ConfirmMounted,
    CredentialsStored,
    Event,
    PreflightRecord,
    Step,
    IntakeState,
    OverrideImage,
    SetMonitoring,
    SetResults,
    SetRoot,
    SetSpecInput,
    UseSshAgent,
    apply_all,
    check_credential_value,
    credential_needs,
    expected_shape,
    may_act,
    missing_items,
    next_step,
    optional_credentials,
    parse_reply,
    start_intake,
)
from taobot import metrics
from taobot.gate import compute_gate, input_fingerprint
from taobot.errors import TaobotError
from taobot.secrets import REDACTOR
from taobot.slack import blocks as B
from taobot.store import Store

log = logging.getLogger(__name__)


class Messenger(Protocol):
    """What the service needs from Slack (or a stand-in)."""

    def post(self, channel: str, message: dict, thread_ts: str | None = None, metadata: dict | None = None) -> str: ...

    def find_posted(self, channel: str, thread_ts: str, launch_id: str, slot: int) -> str | None: ...

    def update(self, channel: str, ts: str, message: dict) -> None: ...

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None: ...

    def open_view(self, trigger_id: str, view: dict) -> None: ...


@dataclass
class ActionContext:
    user: str
    channel: str
    trigger_id: str | None = None
    value: str | None = None


class IntakeService:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        messenger: Messenger,
        admins: frozenset[str] = frozenset(),
        expiry_days: int = 30,
        preflight_settings=None,
        launcher=None,
        monitor=None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.messenger = messenger
        self.admins = admins
        self.expiry_s = expiry_days * 86400
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        from taobot.preflight.base import PreflightSettings

        self.preflight_settings = preflight_settings or PreflightSettings()
        self.launcher = launcher
        self.monitor = monitor
        # Preflights talk to clusters and APIs for seconds; they run here, not on Bolt's listener threads.
        self._work = ThreadPoolExecutor(max_workers=4, thread_name_prefix="preflight")

    def _lock(self, intake_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[intake_id]

    # ------------------------------------------------------------------ starting

    def start(self, channel: str, user: str, model: str, action: str | None, thread_ts: str | None = None) -> IntakeState:
        """Open a launch thread. Raises UnknownNameError (listing what exists) for bad names."""
        state = start_intake(self.catalog, model, action or "train", user, channel, thread_ts)
        # Held until the card's ts is saved: a click on the fresh card waits
        # for it instead of racing it and being overwritten.
        with self._lock(state.id):
            self.store.save_intake(state, user, "start", {"model": state.model, "action": state.action})
            ts = self.messenger.post(channel, B.intake_card(state, self.catalog), thread_ts=thread_ts)
            state.card_ts = ts
            if state.thread_ts is None:
                state.thread_ts = ts
            self.store.save_intake(state, user, "card_posted", {"ts": ts})
        metrics.INTAKES_STARTED.inc()
        log.info("intake started", extra={"intake": state.id, "channel": channel, "thread_ts": state.thread_ts})
        return state

    # ------------------------------------------------------------------ replies in the thread

    def handle_message(self, channel: str, thread_ts: str, user: str, text: str) -> bool:
        """A thread reply. Returns False when the thread is not a launch thread."""
        state = self.store.find_intake(channel, thread_ts)
        if state is None:
            return False
        with self._lock(state.id):
            state = self.store.find_intake(channel, thread_ts) or state
            parsed = parse_reply(text, state, self.catalog)
            if parsed.secret_warning:
                # Never logged with the text, never stored: only the fact of the warning.
                self.store.log_event(state.id, user, "secret_warning", {})
                self._reply(state, parsed.secret_warning)
                return True
            if not may_act(state, user, self.admins):
                if parsed.events or parsed.command:
                    self.messenger.ephemeral(
                        channel, user, f"Only <@{state.owner}>, who started launch `{state.id}`, or an admin can change it.", thread_ts
                    )
                return True
            if self._expired(state):
                self._reply(state, self._expired_text(state))
                return True
            if parsed.command:
                self._command(state, user, parsed.command)
                return True
            outcome = apply_all(state, parsed.events, self.catalog)
            errors = parsed.errors + outcome.errors
            if outcome.changed:
                new = self._with_saved_credentials(outcome.state)
                self._save(state, new, user, "reply", {"events": [type(e).__name__ for e in parsed.events]})
                self._refresh(new)
            lines = outcome.notes + [f":x: {e}" for e in errors]
            self._reply(state, "\n".join(lines) if lines else expected_shape())
            return True

    def _command(self, state: IntakeState, user: str, command: str) -> None:
        if command == "cancel":
            self._apply(state, user, [Cancel()], "cancel")
        elif command == "help":
            self._reply(state, B.help_message(self.catalog)["text"])
        elif command == "status":
            self._reply(state, B.status_detail(state, self.catalog)["text"])
        elif command == "use_image":
            self._apply(state, user, [ConfirmImage()], "image_confirmed")
        elif command == "compute_defaults":
            self._apply(state, user, [AcceptComputeDefaults()], "compute_defaults")
        elif command == "ssh_agent":
            self._apply(state, user, [UseSshAgent(True)], "ssh_agent")
        elif command == "confirm_mounted":
            self._apply(state, user, [ConfirmMounted(user, time.time())], "mount_confirmed")
        elif command == "preflight":
            self._start_preflight(state, user)
        elif command == "launch":
            self._launch(state, user)
        elif command in ("detach", "attach"):
            self._launch_action(B.DETACH if command == "detach" else B.ATTACH, state, None, user)

    def _save(self, before: IntakeState, new: IntakeState, user: str, kind: str, detail: dict | None) -> None:
        self.store.save_intake(new, user, kind, detail)
        if new.status == "complete" and before.status != "complete" and before.status != "launched":
            metrics.INTAKES_COMPLETED.inc()

    def _apply(self, state: IntakeState, user: str, events: list[Event], kind: str, detail: dict | None = None) -> None:
        outcome = apply_all(state, events, self.catalog)
        if outcome.changed:
            new = self._with_saved_credentials(outcome.state)
            self._save(state, new, user, kind, detail)
            self._refresh(new)
        lines = outcome.notes + [f":x: {e}" for e in outcome.errors]
        if lines:
            self._reply(state, "\n".join(lines))

    # ------------------------------------------------------------------ buttons and selects

    LAUNCH_ACTIONS = (B.CANCEL_JOB, B.DETACH, B.ATTACH, B.RELAUNCH)

    def handle_action(self, action_id: str, value: str, ctx: ActionContext) -> None:
        # Intake buttons carry the intake id; launch buttons carry "<intake id>-<n>".
        intake_id, launch_id = value.split("-", 1)[0], value if "-" in value else None
        state = self.store.get_intake(intake_id)
        if state is None:
            self.messenger.ephemeral(
                ctx.channel,
                ctx.user,
                "This launch is unknown to taobot (it may have expired or belong to another installation). "
                "Start a new one with `/tao launch <model> [action]`.",
            )
            return
        if not may_act(state, ctx.user, self.admins):
            self.messenger.ephemeral(
                ctx.channel,
                ctx.user,
                f"Only <@{state.owner}>, who started launch `{state.id}`, or an admin can answer it.",
                state.thread_ts,
            )
            return
        if self._expired(state):
            self.messenger.ephemeral(ctx.channel, ctx.user, self._expired_text(state), state.thread_ts)
            return
        if action_id in self.LAUNCH_ACTIONS:
            self._launch_action(action_id, state, launch_id, ctx.user)
            return
        if state.status in ("cancelled", "launched"):
            self.messenger.ephemeral(ctx.channel, ctx.user, f"Launch `{state.id}` is {state.status}.", state.thread_ts)
            return
        with self._lock(state.id):
            state = self.store.get_intake(intake_id) or state
            if action_id == B.PLATFORM_SELECT and ctx.value:
                self._apply(state, ctx.user, [ChoosePlatform(ctx.value)], "platform", {"platform": ctx.value})
            elif action_id == B.MONITOR_YES:
                interval = state.interval_minutes or self.catalog.default_status_interval_minutes
                self._apply(state, ctx.user, [SetMonitoring(True, interval)], "monitoring", {"interval": interval})
            elif action_id == B.MONITOR_NO:
                self._apply(state, ctx.user, [SetMonitoring(False)], "monitoring", {"enabled": False})
            elif action_id == B.INTERVAL_SELECT and ctx.value:
                self._apply(state, ctx.user, [SetMonitoring(True, int(ctx.value))], "monitoring", {"interval": ctx.value})
            elif action_id == B.USE_SSH_AGENT:
                self._apply(state, ctx.user, [UseSshAgent(True)], "ssh_agent")
            elif action_id == B.IMAGE_USE_DEFAULT:
                self._apply(state, ctx.user, [ConfirmImage()], "image_confirmed")
            elif action_id == B.COMPUTE_DEFAULTS:
                self._apply(state, ctx.user, [AcceptComputeDefaults()], "compute_defaults")
            elif action_id == B.CANCEL_INTAKE:
                self._apply(state, ctx.user, [Cancel()], "cancel")
            elif action_id == B.CONFIRM_MOUNTED:
                self._apply(state, ctx.user, [ConfirmMounted(ctx.user, time.time())], "mount_confirmed")
            elif action_id == B.RUN_PREFLIGHT:
                self._start_preflight(state, ctx.user)
            elif action_id == B.LAUNCH:
                self._launch(state, ctx.user)
            elif action_id == B.OPEN_CREDENTIALS and ctx.trigger_id:
                if state.platform is None:
                    self.messenger.ephemeral(ctx.channel, ctx.user, "Choose a platform first.", state.thread_ts)
                else:
                    self.messenger.open_view(ctx.trigger_id, B.credentials_modal(state, self.catalog))
            elif action_id == B.IMAGE_OVERRIDE and ctx.trigger_id:
                self.messenger.open_view(ctx.trigger_id, B.image_modal(state))
            elif action_id == B.OPEN_DATASETS and ctx.trigger_id:
                self.messenger.open_view(ctx.trigger_id, B.datasets_modal(state, self.catalog))
            else:
                log.warning("unhandled action %s", action_id, extra={"intake": state.id})

    # ------------------------------------------------------------------ modal submissions

    def validate_submission(self, callback_id: str, intake_id: str, user: str, values: dict[str, str]) -> dict[str, str]:
        """Field errors for a modal (shown by Slack next to the field), or {} when it can be saved.

        Runs inside the 3-second ack, so it is pure and fast.
        """
        state = self.store.get_intake(intake_id)
        if state is None:
            first = next(iter(values), B.IMAGE_BLOCK)
            return {first: "This launch is unknown or expired; start a new one with /tao launch."}
        if not may_act(state, user, self.admins):
            first = next(iter(values), B.IMAGE_BLOCK)
            return {first: f"Only the person who started launch {state.id} or an admin can change it."}
        errors: dict[str, str] = {}
        if callback_id == B.CREDENTIALS_MODAL:
            for block_id, value in values.items():
                name = block_id.removeprefix(B.CRED_BLOCK_PREFIX)
                if value and (problem := check_credential_value(name, value)):
                    errors[block_id] = problem
        elif callback_id == B.IMAGE_MODAL:
            from taobot.conversation import check_image_ref

            if problem := check_image_ref(values.get(B.IMAGE_BLOCK, "")):
                errors[B.IMAGE_BLOCK] = problem
        elif callback_id == B.DATASETS_MODAL:
            events, problems = self._dataset_events(values)
            trial = apply_all(state, events, self.catalog)
            for block_id, problem in problems.items():
                errors[block_id] = problem
            if trial.errors and not errors:
                errors[B.SPEC_BLOCK] = B.clip(" ".join(trial.errors), 2000)
        return errors

    def handle_submission(self, callback_id: str, intake_id: str, user: str, values: dict[str, str]) -> None:
        state = self.store.get_intake(intake_id)
        if state is None:
            return
        with self._lock(state.id):
            state = self.store.get_intake(intake_id) or state
            if callback_id == B.CREDENTIALS_MODAL:
                allowed = {n.name for n in credential_needs(state, self.catalog)}
                allowed |= {c.name for c, _ in optional_credentials(state, self.catalog)}
                stored: dict[str, str] = {}
                for block_id, value in values.items():
                    name = block_id.removeprefix(B.CRED_BLOCK_PREFIX)
                    if value and name in allowed:
                        stored[name] = self.store.put_secret(state.owner, name, value.strip())
                if stored:
                    self._apply(state, user, [CredentialsStored(stored)], "credentials", {"names": sorted(stored)})
            elif callback_id == B.IMAGE_MODAL:
                self._apply(state, user, [OverrideImage(values.get(B.IMAGE_BLOCK, ""))], "image_override")
            elif callback_id == B.DATASETS_MODAL:
                events, _ = self._dataset_events(values)
                if events:
                    self._apply(state, user, events, "datasets", {"count": len(events)})

    @staticmethod
    def _dataset_events(values: dict[str, str]) -> tuple[list[Event], dict[str, str]]:
        events: list[Event] = []
        problems: dict[str, str] = {}
        for block_id, value in values.items():
            value = (value or "").strip()
            if not value:
                continue
            if block_id.startswith(B.ROOT_BLOCK_PREFIX):
                events.append(SetRoot(block_id.removeprefix(B.ROOT_BLOCK_PREFIX), value))
            elif block_id == B.RESULTS_BLOCK:
                events.append(SetResults(value))
            elif block_id == B.SPEC_BLOCK:
                for line in value.splitlines():
                    line = line.strip()
                    if not line:
                        continue
                    key, sep, path = line.partition("=")
                    if not sep or not key.strip() or not path.strip():
                        problems[B.SPEC_BLOCK] = f"Each line must be `spec.key=path`; could not read `{line[:80]}`."
                        break
                    events.append(SetSpecInput(key.strip(), path.strip()))
        return events, problems

    # ------------------------------------------------------------------ preflight and the gate

    PREFLIGHT_STALE_S = 600

    def _start_preflight(self, state: IntakeState, user: str) -> None:
        """Record a running preflight, post its card, and run it off the listener thread. Caller holds the lock."""
        if next_step(state, self.catalog) is not Step.COMPLETE:
            self._reply(state, "Preflight runs once the intake is complete. Still missing:\n"
                        + "\n".join(f"• {m.label}" for m in missing_items(state, self.catalog)))
            return
        record = state.preflight
        if record and record.status == "running" and time.time() - record.started_at < self.PREFLIGHT_STALE_S:
            self._reply(state, f"Preflight for launch `{state.id}` is already running.")
            return
        from taobot.preflight import request_for_intake

        values = self._credential_values(state)
        request, required = request_for_intake(state, self.catalog, values, self.preflight_settings)
        fingerprint = input_fingerprint(state, self.catalog)
        card = B.preflight_card(state, [], "credentials", None)
        ts = self.messenger.post(state.channel, card, thread_ts=state.thread_ts)
        state.preflight = PreflightRecord(status="running", fingerprint=fingerprint, by=user, started_at=time.time(), card_ts=ts)
        self.store.save_intake(state, user, "preflight_started", {"fingerprint": fingerprint})
        self._refresh(state)
        self._work.submit(self._run_preflight, state.id, fingerprint, request, required)

    def _credential_values(self, state: IntakeState) -> dict[str, str]:
        names = {n.name for n in credential_needs(state, self.catalog)} | {c.name for c, _ in optional_credentials(state, self.catalog)}
        values = {}
        for name in names:
            if name in state.credentials:
                value = self.store.get_secret(state.owner, name)
                if value is not None:
                    values[name] = value
        return values

    def _run_preflight(self, intake_id: str, fingerprint: str, request, required) -> None:
        from taobot.preflight import run_preflight

        state = self.store.get_intake(intake_id)
        card_ts = state.preflight.card_ts if state and state.preflight else None

        def progress(results, stage):
            if card_ts and stage is not None:
                try:
                    self.messenger.update(state.channel, card_ts, B.preflight_card(state, [r.to_dict() for r in results], stage, None))
                except TaobotError as exc:
                    log.warning("preflight progress update failed: %s", exc, extra={"intake": intake_id})

        try:
            report = run_preflight(request, required, progress)
            results = [r.to_dict() for r in report.results]
            passed = report.passed
        except Exception:  # the card must never stay "running"
            log.exception("preflight crashed", extra={"intake": intake_id})
            results = [{"check": "preflight", "label": "Preflight", "ok": False, "detail": "preflight crashed",
                        "remediation": "Run preflight again; if it persists, tell the taobot maintainers.", "scope": "platform", "key": None}]
            passed = False
        with self._lock(intake_id):
            state = self.store.get_intake(intake_id)
            if state is None or state.preflight is None or state.preflight.fingerprint != fingerprint:
                return
            state.preflight.status = "passed" if passed else "failed"
            state.preflight.results = results
            state.preflight.finished_at = time.time()
            self.store.save_intake(state, state.preflight.by, "preflight_finished",
                                   {"passed": passed, "failed": [r["label"] for r in results if not r["ok"]]})
            if card_ts:
                self.messenger.update(state.channel, card_ts, B.preflight_card(state, results, None, passed))
            self._refresh(state)
        metrics.PREFLIGHTS.labels(platform=request.platform, result="passed" if passed else "failed").inc()
        log.info("preflight %s", "passed" if passed else "failed", extra={"intake": intake_id, "platform": request.platform})

    def _launch(self, state: IntakeState, user: str) -> None:
        """Gate first; then submit off the listener thread. Caller holds the intake lock."""
        gate = compute_gate(state, self.catalog)
        if not gate.open:
            self._reply(state, "Not launching: the launch gate is closed. Nothing was created.\n" + "\n".join(f"• {m}" for m in gate.missing))
            return
        if self.launcher is None:
            self._reply(state, f"The launch gate is open for launch `{state.id}`, but this taobot has no launcher configured.")
            return
        active = [r for r in self.store.launches_for_intake(state.id) if r["state"] in ("Submitting", "Pending", "Running", "Paused")]
        if active or state.status == "launched":
            self._reply(state, f"Launch `{state.id}` already has a job; press *Relaunch* on its final reply to run again.")
            return
        self._reply(state, f":hourglass_flowing_sand: Submitting {state.model} {state.action} to {state.platform}…")
        self._work.submit(self._submit, state.id, user)

    def _submit(self, intake_id: str, user: str) -> None:
        from taobot.backends.base import BackendUnreachable, LaunchFailed
        from taobot.errors import GateClosedError

        with self._lock(intake_id):
            state = self.store.get_intake(intake_id)
            if state is None or state.status != "complete":
                return
            try:
                row, _submitted = self.launcher.launch(state, user, self._credential_values(state))
            except GateClosedError as exc:
                metrics.LAUNCHES.labels(platform=state.platform, outcome="gate_closed").inc()
                self._reply(state, "Not launching: " + exc.message)
                return
            except LaunchFailed as exc:
                metrics.LAUNCHES.labels(platform=state.platform, outcome="refused").inc()
                self._reply(state, f":x: {state.platform} refused the job: {exc.message}\nNothing is running. Fix it and press *Launch* again.")
                self._refresh(self.store.get_intake(intake_id) or state)
                return
            except BackendUnreachable as exc:
                metrics.LAUNCHES.labels(platform=state.platform, outcome="unreachable").inc()
                self._reply(state, f":x: Could not reach {state.platform}: {exc.message}\nNothing was submitted; press *Launch* to try again.")
                self._refresh(self.store.get_intake(intake_id) or state)
                return
            except Exception as exc:  # noqa: BLE001 - the person must hear about it
                metrics.LAUNCHES.labels(platform=state.platform, outcome="error").inc()
                log.exception("launch failed", extra={"intake": intake_id})
                self._reply(state, f":x: Launch failed unexpectedly ({type(exc).__name__}). Nothing is running.")
                self._refresh(self.store.get_intake(intake_id) or state)
                return
            metrics.LAUNCHES.labels(platform=state.platform, outcome="submitted").inc()
            self.messenger.post(state.channel, B.launch_message(row), thread_ts=state.thread_ts)
            self._refresh(self.store.get_intake(intake_id) or state)

    def _latest_launch(self, state: IntakeState, launch_id: str | None) -> dict | None:
        if launch_id:
            return self.store.get_launch(launch_id)
        rows = self.store.launches_for_intake(state.id)
        return rows[0] if rows else None

    def _launch_action(self, action_id: str, state: IntakeState, launch_id: str | None, user: str) -> None:
        row = self._latest_launch(state, launch_id)
        if row is None:
            self._reply(state, f"Launch `{state.id}` has no job yet.")
            return
        if action_id == B.DETACH:
            self.store.update_launch(row["id"], detached=1)
            self.store.log_event(state.id, user, "detach", {"launch": row["id"]})
            self._reply(state, f"Stopped status updates for `{row['id']}`. The job keeps running; check it with `/tao status {row['id']}`, "
                               "or reply `attach` to resume updates here.")
        elif action_id == B.ATTACH:
            if not row["monitor"]:
                self.store.update_launch(row["id"], monitor=1)
            self.store.update_launch(row["id"], detached=0)
            self.store.log_event(state.id, user, "attach", {"launch": row["id"]})
            self._reply(state, f"Resumed status updates for `{row['id']}` every {row['interval_minutes']} min.")
        elif action_id == B.CANCEL_JOB:
            self._work.submit(self._cancel_job, state.id, row["id"], user)
        elif action_id == B.RELAUNCH:
            with self._lock(state.id):
                state = self.store.get_intake(state.id) or state
                if row["state"] not in ("Succeeded", "Failed", "Cancelled", "Unknown"):
                    self._reply(state, f"`{row['id']}` is still {row['state']}; cancel it first or wait for it to end.")
                    return
                state.status = "complete"
                state.preflight = None
                state.updated_at = time.time()
                self.store.save_intake(state, user, "relaunch", {"after": row["id"]})
                self._refresh(state)
                self._reply(state, "Same inputs, ready to go again. Run preflight (it checks everything afresh), then Launch. "
                                   "Change any input first with a `key=value` reply if you like.")

    def _cancel_job(self, intake_id: str, launch_id: str, user: str) -> None:
        from taobot.backends.base import BackendUnreachable, JobRef

        state = self.store.get_intake(intake_id)
        row = self.store.get_launch(launch_id)
        if state is None or row is None:
            return
        if row["state"] in ("Succeeded", "Failed", "Cancelled"):
            self._reply(state, f"`{launch_id}` already ended ({row['state']}); nothing to cancel.")
            return
        if self.monitor is None or not row["job_id"]:
            self._reply(state, f"`{launch_id}` cannot be cancelled from here yet; it has no job id.")
            return
        creds = self.monitor.credentials(row["owner"], row["platform"])
        ref = JobRef(row["id"], row["job_id"], json.loads(row["details"] or "{}"), creds)
        try:
            self.launcher.backend(row["platform"]).cancel(ref)
        except BackendUnreachable as exc:
            self._reply(state, f":x: Could not reach {row['platform']} to cancel `{launch_id}`: {exc.message}. Try again.")
            return
        self.store.log_event(intake_id, user, "cancel_job", {"launch": launch_id, "job": row["job_id"]})
        self._reply(state, f"Cancel sent for job `{row['job_id']}` (`{launch_id}`) by <@{user}>.")

    def shutdown(self, grace_s: float) -> None:
        """Stop taking work; give running preflights and submissions up to `grace_s` to finish."""
        self._work.shutdown(wait=False, cancel_futures=True)
        done = threading.Event()
        threading.Thread(target=lambda: (self._work.shutdown(wait=True), done.set()), daemon=True).start()
        if not done.wait(grace_s):
            log.warning("shutdown: work still running after %ss; leaving it", grace_s)

    def recover(self) -> int:
        """After a restart: a preflight that was running when the process died is marked failed, never left hanging."""
        count = 0
        for intake_id in self.store.intakes_with_running_preflight():
            with self._lock(intake_id):
                state = self.store.get_intake(intake_id)
                if state is None or state.preflight is None or state.preflight.status != "running":
                    continue
                state.preflight.status = "failed"
                state.preflight.finished_at = time.time()
                state.preflight.results = [{"check": "preflight", "label": "Preflight", "ok": False,
                                            "detail": "interrupted by a restart of taobot", "remediation": "Run preflight again.",
                                            "scope": "platform", "key": None}]
                self.store.save_intake(state, "taobot", "preflight_interrupted", {})
                if state.preflight.card_ts:
                    try:
                        self.messenger.update(state.channel, state.preflight.card_ts,
                                              B.preflight_card(state, state.preflight.results, None, False))
                    except TaobotError:
                        pass
                self._refresh(state)
                count += 1
        return count

    # ------------------------------------------------------------------ status

    def channel_status(self, channel: str) -> dict:
        launches: dict[str, dict] = {}
        for row in self.store.launches_in_channel(channel, limit=500):
            launches.setdefault(row["intake_id"], row)
        return B.status_message(self.store.intakes_in_channel(channel, limit=500), self.catalog, launches=launches)

    def one_status(self, intake_id: str) -> dict:
        launch = self.store.find_launch_by_prefix(intake_id.strip())
        if launch is None and "-" not in intake_id:
            rows = self.store.launches_for_intake(intake_id.strip())
            launch = rows[0] if rows else None
        if launch is not None:
            return B.launch_status_detail(launch, time.time())
        matches = self.store.find_intake_by_prefix(intake_id.strip())
        if not matches:
            return B.reply(f"No launch `{intake_id}` is known. `/tao status` lists this channel's launches.")
        return B.status_detail(matches[0], self.catalog)

    # ------------------------------------------------------------------ helpers

    def _with_saved_credentials(self, state: IntakeState) -> IntakeState:
        """Count credentials this person saved on an earlier launch, if this launch needs them."""
        wanted = {n.name for n in credential_needs(state, self.catalog)}
        wanted |= {c.name for c, _ in optional_credentials(state, self.catalog)}
        saved = self.store.secret_fingerprints(state.owner)
        fresh = {n: fp for n, fp in saved.items() if n in wanted and state.credentials.get(n) != fp}
        if not fresh:
            return state
        return apply_all(state, [CredentialsStored(fresh)], self.catalog).state

    def _expired(self, state: IntakeState) -> bool:
        return state.status in ("collecting", "complete") and time.time() - state.updated_at > self.expiry_s

    def _expired_text(self, state: IntakeState) -> str:
        days = int(self.expiry_s // 86400)
        return (
            f"Launch `{state.id}` expired after {days} days without activity. "
            f"Start a new one with `/tao launch {state.model} {state.action}`."
        )

    def refresh_for_launch(self, row: dict) -> None:
        """The monitor saw a state change: show it on the intake card."""
        state = self.store.get_intake(row["intake_id"])
        if state is not None:
            self._refresh(state)

    def _refresh(self, state: IntakeState) -> None:
        if state.card_ts:
            launch = None
            if state.status == "launched":
                rows = self.store.launches_for_intake(state.id)
                launch = rows[0] if rows else None
            try:
                self.messenger.update(state.channel, state.card_ts, B.intake_card(state, self.catalog, launch))
            except TaobotError as exc:
                log.warning("card update failed: %s", exc, extra={"intake": state.id})

    def _reply(self, state: IntakeState, text: str) -> None:
        self.messenger.post(state.channel, B.reply(REDACTOR.redact(text)), thread_ts=state.thread_ts)
