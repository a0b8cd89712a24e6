"""Stuck signals: a job pending past a threshold, a running job whose log stopped growing.

Pure (no I/O, no clock of its own): the monitor passes what the platforms said and the time.

- *Pending too long*: a job queued longer than `pending_s` (TAOBOT_PENDING_WARN_MINUTES, default 30)
  says so in each update, with how long and the queue's reason in words. Reasons that mean "never"
  (`view_text.never_starts`) say so at once, whatever the threshold.
- *No output*: a running job whose log has not grown for `silent_s` (TAOBOT_NO_OUTPUT_WARN_MINUTES,
  default 25) says "no output for 25 min" in each update while it lasts, and its owner is mentioned
  once in the thread (slot `SILENT_SLOT`, claimed like any update, so once across restarts too).

Whether a log grows is read from a mark the backend reports with a poll (`JobStatus.log_mark`: the log's
size on SLURM, a digest of its last lines elsewhere). `OutputWatch` keeps, per launch, the mark and when it
last changed. When a silent stretch begins (a poll finds the mark where the last one left it) `observe` hands
back what the monitor records in the database (`output_watch`), once per stretch; a restarted bot `restore`s
those, so it goes on counting the same silence. A stretch it never recorded (the log grew until the restart)
counts from the first poll after the restart: a silence is never reported early.
"""

from __future__ import annotations

from dataclasses import dataclass

from taobot.launches import JobState, Launch

PENDING_WARN_S = 30 * 60
SILENT_WARN_S = 25 * 60
SILENT_SLOT = -5  # the once-only "no output" mention's slot in the updates table
MARK_EVERY_S = 300  # where a mark costs a log read (not SLURM), a running job's log is read this often


@dataclass(frozen=True)
class Stuck:
    """One stuck signal an update shows."""

    kind: str  # "pending" or "silent"
    seconds: float  # pending for, or without output for
    threshold_s: float
    reason: str | None = None  # the queue's reason, for "pending"


@dataclass(frozen=True)
class StuckRules:
    pending_s: float = PENDING_WARN_S
    silent_s: float = SILENT_WARN_S

    @classmethod
    def minutes(cls, pending: float | None = None, silent: float | None = None) -> StuckRules:
        return cls(
            (pending if pending is not None else PENDING_WARN_S / 60) * 60,
            (silent if silent is not None else SILENT_WARN_S / 60) * 60,
        )


class OutputWatch:
    """Per launch: the log's last mark, when it last changed, and when it was last seen."""

    def __init__(self) -> None:
        self._marks: dict[str, tuple[str, float, float | None]] = {}  # launch id -> (mark, changed at, seen at)
        self._kept: set[str] = set()  # launches whose current silent stretch is recorded

    def observe(self, launch_id: str, mark: str | None, now: float) -> tuple[str, float] | None:
        """Note a poll's mark; (mark, changed at) when a silent stretch has just begun and is to be recorded."""
        if mark is None:
            return None
        old = self._marks.get(launch_id)
        if old is None or old[0] != mark:
            self._marks[launch_id] = (mark, now, now)
            self._kept.discard(launch_id)
            return None
        self._marks[launch_id] = (mark, old[1], now)
        if launch_id in self._kept:
            return None
        self._kept.add(launch_id)
        return mark, old[1]

    def restore(self, launch_id: str, mark: str, changed_at: float) -> None:
        """A stretch recorded before a restart: the log's mark then, and since when it had not changed."""
        if launch_id not in self._marks:
            self._marks[launch_id] = (mark, changed_at, None)
            self._kept.add(launch_id)

    def silent_for(self, launch_id: str, now: float) -> float | None:
        """Seconds since the log last grew, as far as this process (or a recorded stretch) saw; None when the
        log was never seen."""
        got = self._marks.get(launch_id)
        return now - got[1] if got else None

    def seen_at(self, launch_id: str) -> float | None:
        got = self._marks.get(launch_id)
        return got[2] if got else None

    def forget(self, launch_id: str) -> None:
        self._marks.pop(launch_id, None)
        self._kept.discard(launch_id)


def stuck_signals(launch: Launch, now: float, rules: StuckRules, silent_for: float | None) -> tuple[Stuck, ...]:
    """What an update of `launch` says about being stuck (nothing for a job that moves)."""
    if launch.ended_at is not None or launch.unreachable:
        return ()
    since = launch.state_since or launch.launched_at
    if launch.state is JobState.PENDING and now - since >= rules.pending_s:
        return (Stuck("pending", now - since, rules.pending_s, launch.reason),)
    if launch.state is JobState.RUNNING and silent_for is not None and silent_for >= rules.silent_s:
        return (Stuck("silent", silent_for, rules.silent_s),)
    return ()
