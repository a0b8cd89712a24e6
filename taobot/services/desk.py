"""What every service shares: the store, the catalog, a Messenger, per-thread locks and the thread's card.

A `Desk` is the services' one way to say something in a thread. It sends
views, never Block Kit: the Messenger (Slack, or a test's stand-in)
renders and redacts them at the edge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from taobot.catalog import Catalog
from taobot.errors import TaobotError
from taobot.intake import CredentialsStored, IntakeState, apply_all, wanted_credentials
from taobot.policy import Policy, default_policy
from taobot.services.policy_checks import gate_rules
from taobot.services.reviews import launch_review
from taobot.store import Store
from taobot.views import Reply, View, intake_card

log = logging.getLogger(__name__)


class Messenger(Protocol):
    """What the services need from Slack (or a stand-in): views in, message timestamps out."""

    def post(self, channel: str, view: View, thread_ts: str | None = None, metadata: dict | None = None) -> str: ...

    def find_posted(
        self, channel: str, thread_ts: str | None, launch_id: str, slot: int, since: float | None = None
    ) -> str | None: ...

    def update(self, channel: str, ts: str, view: View) -> None: ...

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None: ...

    def publish_home(self, user: str, view: View) -> None: ...


@dataclass(frozen=True)
class Context:
    """Who acted, and where."""

    user: str
    channel: str
    thread_ts: str | None = None


class Desk:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        messenger: Messenger,
        admins: frozenset[str] = frozenset(),
        expiry_days: int = 30,
        policy: Policy | None = None,
        preflight_valid_minutes: int = 60,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.messenger = messenger
        self.policy = policy or default_policy(catalog)
        self.admins = frozenset(admins) | frozenset(self.policy.admins)  # both may act in any thread and approve
        self.preflight_valid_s = preflight_valid_minutes * 60.0
        self.expiry_s = expiry_days * 86400
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    def lock(self, intake_id: str) -> threading.Lock:
        """The lock that keeps one thread's clicks and replies in order."""
        with self._locks_guard:
            return self._locks[intake_id]

    # ------------------------------------------------------------------ saying things

    def reply(self, state: IntakeState, text: str) -> None:
        self.messenger.post(state.channel, Reply(text), thread_ts=state.thread_ts)

    def tell(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> None:
        """Only `user` sees it."""
        self.messenger.ephemeral(channel, user, text, thread_ts)

    def refresh(self, state: IntakeState) -> None:
        """Redraw the thread's intake card from the stored state (and its latest launch)."""
        if not state.card_ts:
            return
        launch = self.store.latest_launch(state.id) if state.status == "launched" else None
        rules = gate_rules(self, state) if state.status == "complete" else None
        review = launch_review(self, state)  # once preflight passed: the review Launch sits under
        try:
            self.messenger.update(
                state.channel, state.card_ts, intake_card(state, self.catalog, launch, rules, review=review)
            )
        except TaobotError as exc:
            log.warning("card update failed: %s", exc, extra={"intake": state.id})

    # ------------------------------------------------------------------ rules every service applies

    def expired(self, state: IntakeState) -> bool:
        return state.status in ("collecting", "complete") and time.time() - state.updated_at > self.expiry_s

    def expired_text(self, state: IntakeState) -> str:
        days = int(self.expiry_s // 86400)
        return (
            f"Launch `{state.id}` expired after {days} days without activity. "
            f"Start a new one with `/tao launch {state.model} {state.action}`."
        )

    # ------------------------------------------------------------------ credentials

    def credential_values(self, state: IntakeState) -> dict[str, str]:
        """Decrypted values of the credentials this launch uses (for a preflight or a submit only).

        Read from the thread's held copies, and only where the held fingerprint is the one the thread records:
        what a preflight checked is what the launch gets, whatever the person saved elsewhere since.
        """
        wanted = wanted_credentials(state, self.catalog)
        fingerprints = {n: fp for n, fp in state.credentials.items() if n in wanted}
        return self.store.thread_credentials(state.id, state.owner, fingerprints)

    def unheld_credentials(self, state: IntakeState, values: dict[str, str]) -> list[str]:
        """Credentials the thread records but `values` lacks: changed elsewhere before this thread held them."""
        wanted = wanted_credentials(state, self.catalog)
        return sorted(n for n in state.credentials if n in wanted and n not in values)

    # ------------------------------------------------------------------ the audit trail

    def audit(
        self,
        actor: str,
        action: str,
        *,
        intake: IntakeState | None = None,
        channel: str | None = None,
        allowed: bool = True,
        reason: str = "",
        detail: dict | None = None,
    ) -> None:
        """Record what a person did or was refused; a failure to record never stops the action's answer."""
        try:
            self.store.audit(
                actor,
                action,
                channel=channel or (intake.channel if intake else None),
                intake_id=intake.id if intake else None,
                allowed=allowed,
                reason=reason,
                detail=detail,
            )
        except TaobotError as exc:
            log.error("audit row not written: %s", exc)

    def with_saved_credentials(self, state: IntakeState) -> IntakeState:
        """Count credentials this person saved on an earlier launch, if this launch needs them and has none yet.

        A value this thread already holds stays: a change made in another thread never replaces it here.
        """
        wanted = wanted_credentials(state, self.catalog)
        saved = self.store.secret_fingerprints(state.owner)
        fresh = {n: fp for n, fp in saved.items() if n in wanted and n not in state.credentials}
        if not fresh:
            return state
        return apply_all(state, [CredentialsStored(fresh)], self.catalog).state
