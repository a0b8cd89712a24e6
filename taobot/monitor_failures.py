"""A failed launch's final reply (and the end of a launch whose submit was interrupted): its triage, worked out once and stored, and what a retry can do about it.

The monitor asks this for the final reply of every launch that ended. A launch that failed is triaged
(`taobot.triage`) the first time, from the platform state and a longer read of its log than an update
shows, and the verdict is stored on the launch row, so a final reply re-sent after a crash and the *Retry*
button read the same one. An opted-in launch (`retry=infra:N`) whose failure is infrastructure retries
itself once its triage is made: exactly once, whether or not its final reply went out at the first try.
"""

from __future__ import annotations

import logging

from taobot.backends.base import JobRef
from taobot.launches import JobState, Launch
from taobot.triage import MAX_CHAIN, Triage, auto_retry, columns, stored, triage
from taobot.views import FinalUpdate

log = logging.getLogger(__name__)

TRIAGE_LINES = 200  # a failed job's triage reads this much of its log (a traceback is longer than an update's tail)


class FailedFinals:
    def __init__(self, store, backends) -> None:
        self.store = store
        self.backends = backends

    def finish_unknown_submit(self, row: Launch, now: float) -> None:
        """taobot stopped between recording the launch and hearing back from the platform: end it, saying what to
        check."""
        self.store.update_launch(
            row.id,
            state=JobState.UNKNOWN,
            native="submit interrupted",
            reason=f"submission state unknown: taobot stopped while submitting; look for a job named "
            f"tao-{row.model}-{row.action}-{row.id} on the platform, and cancel it there if it runs",
            ended_at=now,
            state_since=now,
        )

    def failure_tail(self, row: Launch, ref: JobRef, tail: tuple[str, ...]) -> tuple[str, ...]:
        """A failed job's triage reads more of its log than an update shows; the tail it has when that fails."""
        if row.state is not JobState.FAILED or not row.watched or row.final_posted or row.failure_kind:
            return tail
        try:
            lines = self.backends[row.platform].logs(ref, TRIAGE_LINES)
        except Exception:  # noqa: BLE001 - triage then reads the tail the poll brought
            log.warning("could not read the log of failed launch %s for its triage", row.id)
            return tail
        return tuple(lines) or tail

    def triaged(self, row: Launch, tail: tuple[str, ...]) -> Triage | None:
        """The launch's failure triage: worked out once, from the first final reply's state and log, then stored."""
        if row.state is not JobState.FAILED:
            return None
        found = stored(row.failure_kind, row.failure_cause, row.failure_line, row.failure_frames)
        if found is None:
            found = triage(row.state, row.native, row.reason, row.exit_code, tail)
            self.store.update_launch(row.id, **columns(found))
            log.info("failure triage: %s (%s)", found.kind.value, found.cause, extra={"launch": row.id})
        return found

    def final_view(self, row: Launch, tail: tuple[str, ...], now: float) -> FinalUpdate:
        found = self.triaged(row, tail)
        if found is None:
            return FinalUpdate(row, tail, None, now)
        row = self.store.get_launch(row.id) or row
        chain = len(self.store.retry_chain(row, MAX_CHAIN + 1))
        intake = self.store.get_intake(row.intake_id)
        going, said = auto_retry(found, chain, intake.retry_infra if intake else 0)
        # While an automatic retry starts, a button for the same would only be refused.
        offered = found.retriable and chain < MAX_CHAIN and not going and not self.store.retries_of(row.id)
        cause = found.cause if found.retriable else None
        return FinalUpdate(row, tail, cause, now, found, chain, offered, said)

    def retry_by_itself(self, view: FinalUpdate, fresh: bool, start) -> None:
        """An opted-in infrastructure failure starts its automatic retry, once: when its triage was first made.

        `start(launch)` begins the retry (LaunchControl's); None where no services run (a bare monitor)."""
        if not fresh or start is None or view.triage is None:
            return
        intake = self.store.get_intake(view.launch.intake_id)
        going, _said = auto_retry(view.triage, view.chain, intake.retry_infra if intake else 0)
        if not going:
            return
        try:
            start(view.launch)
        except Exception:  # noqa: BLE001 - monitoring goes on
            log.exception("automatic retry failed to start", extra={"launch": view.launch.id})
