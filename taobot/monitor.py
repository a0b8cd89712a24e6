"""One monitoring cycle: poll every active job (batched), post what is due.

`Monitor.cycle()` is pure of scheduling: the scheduler calls it every few
seconds, tests call it directly. Per cycle and per cluster/daemon/namespace
there is ONE status query for all its jobs. For each monitored launch, an
update is due when a new interval slot starts (slot n covers
[launched_at + n·interval, launched_at + (n+1)·interval)); after downtime
only the current slot is posted, so a restart produces one catch-up update,
not a burst.

Posting is `posting.ThreadPoster`'s: exactly once per slot, and a thread
that refuses posts backs off alone. Every launch reaches an end: an
interrupted submit, and a job the platform no longer knows for
`UNKNOWN_GRACE_S`, end with a final reply that says what to check.
At the end of a cycle, launches that have ended get their platform cleanup
(`taobot.cleanup`): what holds their secrets there is removed, once.
Each update and final reply carries the run's training progress, and an
update of a job pending or silent past its threshold says so
(`taobot.monitor_signals`).
With a post queue (`poster.queue`, the running bot's), the cycle only claims what is due and queues
the posts: it never waits out Slack's limits itself, so the next cycle's polls are not delayed by them.
A cycle reads each thread's held credentials (and an owner's saved ones) once, claims all of a cluster's
due updates in one transaction, and reads each poll's progress once.
A long cycle calls `keep_alive` between steps, so the scheduler's lease is
renewed in time (and a cycle that lost it stops before posting anything).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

from taobot.backends.base import JobRef, JobStatus
from taobot.catalog import Catalog
from taobot.cleanup import PlatformCleanup
from taobot.errors import BackendUnreachable
from taobot.launches import JobState, Launch
from taobot.monitor_credentials import LaunchCredentials, platform_credential_names
from taobot.monitor_failures import FailedFinals
from taobot.monitor_signals import Signals
from taobot.posting import DM_COPY_SLOT, FINAL_SLOT, ThreadPoster
from taobot.views import FinalUpdate

log = logging.getLogger(__name__)

__all__ = ["FINAL_SLOT", "Monitor", "CycleStats", "platform_credential_names"]

SUBMIT_STALE_S = 600
UNKNOWN_GRACE_S = 600  # a job the platform does not report for this long has ended as far as taobot can tell
MAX_BACKOFF_S = 600
CARD_REFRESH_S = 900  # the card's "Running for …" may lag this much; a state change shows at once


@dataclass
class CycleStats:
    launches: int = 0
    polls: int = 0  # backend.poll calls (one per cluster/daemon/namespace)
    posted: int = 0
    unreachable: int = 0
    cleaned: int = 0  # ended launches whose platform cleanup was done
    cleanup_failed: int = 0  # ... and those whose cleanup failed (tried again later)
    durations: dict[str, float] = field(default_factory=dict)


class Monitor:
    def __init__(
        self, store, catalog: Catalog, backends: dict, messenger, clock=time.time, on_state_change=None, keep_alive=None
    ) -> None:
        self.on_state_change = on_state_change
        self.store = store
        self.catalog = catalog
        self.backends = backends
        self.messenger = messenger
        self.clock = clock
        self.poster = ThreadPoster(store, messenger, clock)
        # Seconds per status-interval minute: 60, except where a test shrinks time (TAOBOT_INTERVAL_MINUTE_SECONDS).
        self.minute_s = 60.0
        self._card_drawn: dict[str, float] = {}  # launch id -> when an update last redrew its card
        # Called between the steps of a cycle; raises to stop a cycle that must not go on (the lease was lost).
        self.keep_alive = keep_alive or (lambda: None)
        self.cleanup = PlatformCleanup(store, backends, self.credentials, self.keep_alive)
        self.on_retriable = None  # starts an opted-in launch's automatic retry (`retry=infra:N`); LaunchControl's
        self.failures = FailedFinals(store, backends)
        self.signals = Signals(self.poster)  # progress and stuck signals; the thresholds are `signals.rules`
        self.after_cycle = None  # called at the end of every cycle (AutoML searches look at their trials)
        self.creds = LaunchCredentials(store, catalog)  # read once per cycle

    # ------------------------------------------------------------------ helpers

    def credentials(self, launch: Launch) -> dict[str, str]:
        """The values the launch's thread holds (what its preflight checked), else its owner's saved ones."""
        return self.creds.of(launch)

    def ref(self, row: Launch, creds: dict[str, str]) -> JobRef:
        return JobRef(row.id, row.job_id or "", row.detail_map, creds)

    def slot_of(self, row: Launch, now: float) -> int:
        interval = max(1, row.interval_minutes) * self.minute_s
        return int((now - row.launched_at) // interval)

    def update_due(self, row: Launch, now: float, last: int | None) -> int | None:
        """The slot to post now, or None. `last` is the highest slot already claimed."""
        if not row.watched:
            return None
        slot = self.slot_of(row, now)
        if slot < 1:
            return None
        return slot if last is None or slot > last else None

    # ------------------------------------------------------------------ the cycle

    def cycle(self) -> CycleStats:
        self.creds.begin_cycle()
        try:
            return self._cycle()
        finally:
            self.creds.end_cycle()

    def _cycle(self) -> CycleStats:
        stats = CycleStats()
        now = self.clock()
        self.keep_alive()
        stats.posted += self.retry_pending()
        rows = self.store.active_launches()
        stats.launches = len(rows)
        groups: dict[tuple[str, str], list[tuple[Launch, JobRef]]] = defaultdict(list)
        for row in rows:
            if row.state is JobState.SUBMITTING:
                if now - row.launched_at > SUBMIT_STALE_S:
                    self.failures.finish_unknown_submit(row, self.clock())
                continue
            if row.state.terminal or row.ended_at is not None:
                stats.posted += self._post_final(row, None)  # ended, its final reply not posted yet
                continue
            ref = self.ref(row, self.credentials(row))
            backend = self.backends[row.platform]
            groups[(row.platform, backend.connection_key(ref))].append((row, ref))
        last_slots = self.store.last_slots() if groups else {}
        for (platform, _conn), members in groups.items():
            self.keep_alive()
            backend = self.backends[platform]
            if all((r.next_poll_at or 0) > now for r, _ in members):
                continue  # backing off an unreachable platform
            due = {r.id: self.update_due(r, now, last_slots.get(r.id)) for r, _ in members}
            tails = [ref.job_id for r, ref in members if due[r.id] is not None or self.signals.wants_log(r, now)]
            start = time.perf_counter()
            try:
                statuses = backend.poll([ref for _, ref in members], tails_for=tails)
                stats.polls += 1
            except BackendUnreachable as exc:
                stats.polls += 1
                stats.unreachable += len(members)
                for row, _ref in members:
                    stats.posted += self._unreachable(row, str(exc.message), now, due[row.id])
                continue
            except Exception as exc:  # a backend bug must not stop monitoring of everything else
                log.exception("poll failed", extra={"platform": platform})
                for row, _ref in members:
                    stats.posted += self._unreachable(
                        row, f"{type(exc).__name__} while asking {platform}", now, due[row.id]
                    )
                continue
            finally:
                took = time.perf_counter() - start
                stats.durations[platform] = stats.durations.get(platform, 0.0) + took
                from taobot import metrics

                metrics.POLL_SECONDS.labels(backend=platform).observe(took)
            recorded = []
            for row, ref in members:
                status = statuses.get(ref.job_id) or JobStatus(JobState.UNKNOWN, "not reported")
                recorded.append((self._record(row, status, now), ref, status))
            # The cluster's due updates, claimed together: one commit for all of them.
            claimed = self.poster.claim_many(
                [(r, due[r.id]) for r, _ref, _st in recorded if r.ended_at is None and due[r.id] is not None]
            )
            # Jobs that just ended get their last log lines in ONE more query, not one each.
            ended = [(r, ref) for r, ref, st in recorded if r.ended_at and r.watched and not st.log_tail]
            extra_tails: dict[str, JobStatus] = {}
            if ended:
                try:
                    extra_tails = backend.poll([ref for _, ref in ended], tails_for=[ref.job_id for _, ref in ended])
                except Exception:  # noqa: BLE001 - the final reply goes out without log lines then
                    log.warning("could not fetch the last log lines of %d ended job(s)", len(ended))
            for row, ref, status in recorded:
                self.keep_alive()  # posts wait their turn at Slack's limits: renew the lease as they go
                stats.posted += self.signals.seen(row, status, now)  # its log's growth; a silence is said once
                if row.ended_at is not None:
                    status = self.signals.ended(status, extra_tails.get(ref.job_id))
                    tail = self.failures.failure_tail(row, ref, status.log_tail)
                    if self._post_final(row, replace(status, log_tail=tail)):
                        stats.posted += 1
                elif (row.id, due[row.id]) in claimed:
                    if self._post_update(row, due[row.id], status, claimed=True):
                        stats.posted += 1
        self.keep_alive()
        stats.cleaned, stats.cleanup_failed = self.cleanup.run(self.clock())
        if self.after_cycle is not None:
            try:
                self.after_cycle()
            except Exception:  # noqa: BLE001 - monitoring goes on whatever a search does
                log.exception("after-cycle hook failed")
        return stats

    # ------------------------------------------------------------------ state

    def _record(self, row: Launch, status: JobStatus, now: float) -> Launch:
        """Store what changed (nothing is written for an unchanged job)."""
        changes: dict = {}
        if row.unreachable or row.unreachable_since or row.next_poll_at:
            changes.update(unreachable=None, unreachable_since=None, next_poll_at=None)
        if status.state != row.state:
            changes["state"] = status.state
            changes["state_since"] = now
            if status.state.terminal:
                changes["ended_at"] = now
        elif status.state is JobState.UNKNOWN and now - (row.state_since or row.launched_at) > UNKNOWN_GRACE_S:
            minutes = int(UNKNOWN_GRACE_S // 60)
            changes["ended_at"] = now
            status = JobStatus(
                JobState.UNKNOWN,
                status.native,
                f"{row.platform} has not reported job {row.job_id} for {minutes} min ({status.reason or status.native}); "
                "taobot stopped watching it. Check the platform for what became of it.",
                status.exit_code,
            )
        if status.native != row.native:
            changes["native"] = status.native
        if status.reason != row.reason:
            changes["reason"] = status.reason
        # At the end the last poll's exit code stands, even "none" (a signal): an earlier one must not survive.
        if status.exit_code != row.exit_code and (status.exit_code is not None or "ended_at" in changes):
            changes["exit_code"] = status.exit_code
        if changes:
            self.store.update_launch(row.id, **changes)
        if "state" in changes and self.on_state_change is not None:
            try:
                self.on_state_change(row.with_changes(**changes))
            except Exception:  # noqa: BLE001 - the card is a courtesy; monitoring goes on
                log.exception("card refresh failed", extra={"launch": row.id})
        if "state" in changes:
            log.info(
                "job state %s -> %s",
                row.state.value,
                status.state.value,
                extra={"launch": row.id, "job": row.job_id, "platform": row.platform},
            )
        return row.with_changes(**changes)

    def _unreachable(self, row: Launch, why: str, now: float, due_slot: int | None) -> bool:
        since = row.unreachable_since or now
        # Back off exponentially with the length of the outage: 5 s, 10 s, 20 s … capped at 10 min.
        backoff = min(MAX_BACKOFF_S, 5 * 2 ** min(int((now - since) // 60), 7))
        self.store.update_launch(row.id, unreachable=why[:500], unreachable_since=since, next_poll_at=now + backoff)
        row = row.with_changes(unreachable=why, unreachable_since=since)
        if due_slot is not None and self._post_update(row, due_slot, None):
            return True
        return False

    # ------------------------------------------------------------------ posting

    def _post_update(self, row: Launch, slot: int, status: JobStatus | None, claimed: bool = False) -> bool:
        view = self.signals.update(row, status, self.clock())
        return self.poster.post(row, slot, view, claimed=claimed, then=lambda: self._refresh_card(row))

    def _refresh_card(self, row: Launch) -> None:
        """After an update went out: the card's status line ("Running for 12 min") follows, now and then."""
        if self.on_state_change is None or not self._card_due(row):
            return
        try:
            self.on_state_change(row)
        except Exception:  # noqa: BLE001
            log.exception("card refresh failed", extra={"launch": row.id})

    def _card_due(self, row: Launch) -> bool:
        """Redraw a card with an update at most every CARD_REFRESH_S: card edits share one workspace-wide budget
        (`chat.update`, about 50 a minute), and a cycle with many updates due must not spend it all on cards.
        A change of state redraws the card at once anyway (see `_record`)."""
        now = self.clock()
        if now - self._card_drawn.get(row.id, float("-inf")) < CARD_REFRESH_S:
            return False
        self._card_drawn[row.id] = now
        return True

    def _post_final(self, row: Launch, status: JobStatus | None) -> bool:
        if row.final_posted:
            return False
        if not row.watched:
            self.store.update_launch(row.id, final_posted=True)
            return False
        fresh = row.state is JobState.FAILED and row.failure_kind is None  # triaged now, for the first time
        view = self._final_view(row, status)
        posted = self.poster.post(row, FINAL_SLOT, view)
        if posted and row.notify_dm and not row.moved_from:  # `notify=dm`: the owner gets the end by DM as well
            self.poster.post(row, DM_COPY_SLOT, view)
        self.failures.retry_by_itself(view, fresh, self.on_retriable)  # even if the reply is re-sent later
        if posted:
            return True
        if any(s["slot"] == FINAL_SLOT and s["status"] == "posted" for s in self.store.posted_slots(row.id)):
            self.store.update_launch(row.id, final_posted=True)
        return False

    def _final_view(self, row: Launch, status: JobStatus | None) -> FinalUpdate:
        view = self.failures.final_view(row, tuple(status.log_tail) if status else (), self.clock())
        return replace(view, progress=self.signals.progress_of(row, status))

    def retry_pending(self) -> int:
        """Slots claimed but not confirmed posted (a crash, or a post Slack refused): find or post them now."""

        def view_for(row: Launch, slot: int):
            return self._final_view(row, None) if slot == FINAL_SLOT else self.signals.resent(row, slot, self.clock())

        return self.poster.retry_pending(view_for)
