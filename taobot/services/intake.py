"""The intake service: starts launch threads and applies a person's answers.

Each answer loads the thread's state, applies the pure transitions, saves
the new state with its event record in one transaction, redraws the card
and says what changed. Callers hold the thread's lock (see `Services`).
"""

from __future__ import annotations

import logging
import time

from taobot import metrics
from taobot.errors import IntakeConflict
from taobot.intake import (
    ConfirmMounted,
    CredentialsStored,
    Event,
    IntakeState,
    OverrideImage,
    apply_all,
    check_credential_value,
    check_image_ref,
    parse_reply,
    start_intake,
    wanted_credentials,
)
from taobot.intake.intents import (
    Answer,
    ConfirmMounts,
    OpenForm,
    SubmitCredentials,
    SubmitDatasets,
    TrustHostKey,
    UseTaobotKey,
    dataset_form_events,
)
from taobot.services.desk import Desk
from taobot.services.kube_access import KubeAccess
from taobot.services.policy_checks import PolicyChecks
from taobot.services.ssh_identity import SshIdentities
from taobot.views import CredentialsForm, Form, ImageForm, datasets_form, intake_card, intake_facts

log = logging.getLogger(__name__)


class IntakeService:
    def __init__(self, desk: Desk, settings=None) -> None:
        from taobot.config import PlatformSettings

        self.desk = desk
        self.ssh = SshIdentities(desk, settings or PlatformSettings())  # the person's own SSH identity, never the bot's
        self.kube = KubeAccess(desk, settings or PlatformSettings())  # a profile open to them, or their upload
        self.checks = PolicyChecks(desk)

    def start(
        self, channel: str, user: str, model: str, action: str | None, thread_ts: str | None = None
    ) -> IntakeState:
        """Open a launch thread. Raises UnknownNameError (listing what exists) for bad names."""
        desk = self.desk
        state = start_intake(desk.catalog, model, action or "train", user, channel, thread_ts)
        # Held until the card's ts is saved: a click on the fresh card waits
        # for it instead of racing it and being overwritten.
        with desk.lock(state.id):
            desk.store.save_intake(state, user, "start", {"model": state.model, "action": state.action})
            ts = desk.messenger.post(channel, intake_card(state, desk.catalog), thread_ts=thread_ts)
            state.card_ts = ts
            if state.thread_ts is None:
                state.thread_ts = ts
            try:
                desk.store.save_intake(state, user, "card_posted", {"ts": ts})
            except IntakeConflict:  # another instance answered on the fresh card already: keep its answer
                fresh = desk.store.get_intake(state.id) or state
                fresh.card_ts, fresh.thread_ts = ts, fresh.thread_ts or ts
                desk.store.save_intake(fresh, user, "card_posted", {"ts": ts})
                state = fresh
        metrics.INTAKES_STARTED.inc()
        log.info("intake started", extra={"intake": state.id, "channel": channel, "thread_ts": state.thread_ts})
        return state

    def first_answers(self, state: IntakeState, user: str, text: str) -> IntakeState:
        """A one-message launch's `key=value …`: read by the same parser and transitions as a thread reply.

        Whatever is missing after them is asked on the card as usual. A message that looks like it holds a
        secret is read no further (nothing of it applies); a field that cannot be read says why, and the
        others still apply.
        """
        with self.desk.lock(state.id):
            for _attempt in range(3):  # another instance may answer on the fresh card meanwhile: read it again
                try:
                    return self._first_answers(self.desk.store.get_intake(state.id) or state, user, text)
                except IntakeConflict:
                    continue
        return self.desk.store.get_intake(state.id) or state

    def _first_answers(self, state: IntakeState, user: str, text: str) -> IntakeState:
        parsed = parse_reply(text, state, self.desk.catalog)
        if parsed.secret_warning:
            self.desk.store.log_event(state.id, user, "secret_warning", {})  # the fact only, never the text
            reason = "the launch message looked like it holds a secret; none of its answers were read"
            self.desk.audit(user, "launch_message", intake=state, allowed=False, reason=reason)
            self.desk.reply(state, parsed.secret_warning)
            return state
        names = [type(e).__name__ for e in parsed.events]
        self.desk.audit(
            user, "launch_message", intake=state, detail={"events": names, "unreadable": len(parsed.errors)}
        )
        return self.answer(state, user, parsed.events, "launch_message", {"events": names}, errors=parsed.errors)

    # ------------------------------------------------------------------ answers

    def answer(
        self,
        state: IntakeState,
        user: str,
        events: list[Event],
        kind: str,
        detail: dict | None = None,
        errors: list[str] | None = None,
        say_shape_if_silent: str | None = None,
    ) -> IntakeState:
        """Apply events, save and redraw if anything changed, and reply with what changed or was refused."""
        desk = self.desk
        events, refused = self.checks.screen(state, user, events)  # what the operator's policy refuses never applies
        errors = (errors or []) + refused
        events, ssh_refused = self.ssh.screen(state, user, events)  # no agent of the bot's host, from Slack
        errors += ssh_refused
        outcome = apply_all(state, events, desk.catalog)
        new = state
        if outcome.changed:
            new = desk.with_saved_credentials(outcome.state)
            desk.store.save_intake(new, user, kind, detail)
            if new.status == "complete" and state.status not in ("complete", "launched"):
                metrics.INTAKES_COMPLETED.inc()
            desk.refresh(new)
        lines = outcome.notes + [f":x: {e}" for e in (errors or []) + outcome.errors]
        if lines:
            desk.reply(state, "\n".join(lines))
        elif say_shape_if_silent:
            desk.reply(state, say_shape_if_silent)
        return new

    def apply_intent(
        self, state: IntakeState, user: str, intent: Answer | ConfirmMounts | SubmitCredentials | SubmitDatasets
    ) -> None:
        if isinstance(intent, Answer):
            detail = {"events": [type(e).__name__ for e in intent.events]}
            self.answer(state, user, list(intent.events), intent.kind, detail)
        elif isinstance(intent, ConfirmMounts):
            self.answer(state, user, [ConfirmMounted(user, time.time())], "mount_confirmed")
        elif isinstance(intent, SubmitCredentials):
            self._store_credentials(state, user, intent)
        elif isinstance(intent, SubmitDatasets):
            events, _ = dataset_form_events(intent)
            if events:
                self.answer(state, user, events, "datasets", {"count": len(events)})
        elif isinstance(intent, UseTaobotKey):
            self.ssh.use_key(state, user, self.answer)
        elif isinstance(intent, TrustHostKey):
            self.ssh.trust_host_key(state, user)

    def _store_credentials(self, state: IntakeState, user: str, form: SubmitCredentials) -> None:
        allowed = wanted_credentials(state, self.desk.catalog)
        refused = self.ssh.refusals(state, form.values, user)  # checked in the ack already; again, before storing
        stored: dict[str, str] = {}
        for name, value in form.values.items():
            if value and name in allowed and name not in refused:
                secret = self.desk.catalog.credentials[name].secret
                stored[name] = self.desk.store.put_secret(state.owner, name, value.strip(), secret=secret)
        if refused:
            self.desk.reply(state, "\n".join(f":x: {problem}" for problem in refused.values()))
        if stored:
            new = self.answer(state, user, [CredentialsStored(stored)], "credentials", {"names": sorted(stored)})
            self.ssh.after_credentials(new, user, set(stored), self.answer)

    # ------------------------------------------------------------------ forms

    def form(self, state: IntakeState, intent: OpenForm) -> Form | str:
        """The form to open, or why it cannot open yet."""
        catalog = self.desk.catalog
        if intent.form in ("credentials", "settings"):
            if state.platform is None:
                return "Choose a platform first."
            facts = intake_facts(state, catalog)
            if intent.form == "settings" and not facts.settings:
                return f"{facts.platform.display_name} has no optional settings."
            alternatives = self.ssh.alternatives(state, facts.needs)
            return self.kube.with_choices(
                CredentialsForm(facts, more=intent.form == "settings", alternatives=alternatives)
            )
        if intent.form == "image":
            return ImageForm(state)
        return datasets_form(state, catalog)

    def check_form(
        self, state: IntakeState, intent: SubmitCredentials | SubmitDatasets | Answer, user: str | None = None
    ) -> dict[str, str]:
        """Problems by field name of a submitted form, or {} when it can be saved. Pure and fast: it runs inside the ack."""
        catalog = self.desk.catalog
        problems: dict[str, str] = {}
        if isinstance(intent, SubmitCredentials):
            for name, value in intent.values.items():
                if value and (problem := check_credential_value(catalog, name, value)):
                    problems[name] = problem
            problems.update(self.kube.refusals(state, intent.values, user))
            problems.update(self.ssh.refusals(state, intent.values, user))
        elif isinstance(intent, SubmitDatasets):
            events, problems = dataset_form_events(intent)
            trial = apply_all(state, events, catalog)
            if trial.errors and not problems:
                problems["spec"] = " ".join(trial.errors)
        elif isinstance(intent, Answer):
            for event in intent.events:
                if isinstance(event, OverrideImage) and (problem := check_image_ref(event.ref)):
                    problems["image"] = problem
            if not problems:
                _kept, refused = self.checks.screen(state, user or state.owner, list(intent.events))
                if refused:
                    problems["image"] = " ".join(refused)
        return problems
