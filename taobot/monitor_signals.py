"""What the monitor adds to its updates beyond the platform's state: the run's progress and stuck signals.

`Signals` is the monitor's helper for both (kept out of `Monitor` so the cycle stays readable):

- each poll's `progress` (TAO's status file and the log, see `taobot.progress`) goes into the update and
  the final reply; the last one seen per launch is kept, so an update or a final reply re-sent later, or a
  final posted on a cycle whose poll had no log, still shows it;
- each poll's `log_mark` feeds an `OutputWatch` (`taobot.stuck`); an update of a job pending or silent past
  its threshold says so, and the owner of a silent job is mentioned once (slot `SILENT_SLOT`);
- where reading a log is what gives its mark (every platform but SLURM, whose poll reports every log's
  size anyway), a running job's log is read every `MARK_EVERY_S` even when no update is due.
"""

from __future__ import annotations

from dataclasses import replace

from taobot.backends.base import JobStatus
from taobot.launches import JobState, Launch
from taobot.progress import Progress
from taobot.stuck import MARK_EVERY_S, SILENT_SLOT, OutputWatch, StuckRules, stuck_signals
from taobot.view_text import silence_notice
from taobot.views import Reply, StatusUpdate


class Signals:
    def __init__(self, poster, rules: StuckRules | None = None) -> None:
        self.poster = poster  # posting.ThreadPoster: the mention is a slot like any update
        self.rules = rules or StuckRules()
        self.watch = OutputWatch()
        self._progress: dict[str, Progress] = {}  # launch id -> the last progress a poll brought
        self._mentioned: set[str] = set()  # launches whose silence was mentioned (or found claimed) here

    def wants_log(self, row: Launch, now: float) -> bool:
        """Read this running job's log in this cycle's poll, for its mark."""
        if not row.watched or row.state is not JobState.RUNNING or row.id in self._mentioned:
            return False
        seen = self.watch.seen_at(row.id)
        return seen is None or now - seen >= MARK_EVERY_S

    def seen(self, row: Launch, status: JobStatus, now: float) -> int:
        """A poll's answer for `row`: its progress and log mark noted; 1 when it made the silence mention."""
        self.watch.observe(row.id, status.log_mark, now)
        if status.progress is not None and status.progress.known:
            self._progress[row.id] = status.progress
        return self.mention_silence(row, now)

    def progress_of(self, row: Launch, status: JobStatus | None = None) -> Progress | None:
        if status is not None and status.progress is not None and status.progress.known:
            return status.progress
        return self._progress.get(row.id)

    def ended(self, status: JobStatus, extra: JobStatus | None) -> JobStatus:
        """An ended job's status, with the log and progress of the one extra read made for ended jobs."""
        if extra is None or status.log_tail:
            return status
        return replace(status, log_tail=extra.log_tail, progress=status.progress or extra.progress)

    def update(self, row: Launch, status: JobStatus | None, now: float) -> StatusUpdate:
        silent = self.watch.silent_for(row.id, now)
        stuck = stuck_signals(row, now, self.rules, silent)
        lines = tuple(status.log_tail) if status else ()
        return StatusUpdate(row, lines, now, self.progress_of(row, status), stuck)

    def resent(self, row: Launch, slot: int, now: float) -> StatusUpdate | Reply:
        """The view of a slot claimed but not posted (a crash, a refused post), posted again."""
        if slot == SILENT_SLOT:
            return Reply(silence_notice(row, self.watch.silent_for(row.id, now) or self.rules.silent_s, self.rules))
        return self.update(row, None, now)

    def mention_silence(self, row: Launch, now: float) -> int:
        """Mention the owner once when a running job has written nothing for the threshold; 1 when posted."""
        if row.id in self._mentioned or not row.watched or row.ended_at is not None:
            return 0
        if not stuck_signals(row, now, self.rules, self.watch.silent_for(row.id, now)):
            return 0
        if row.state is not JobState.RUNNING or self.poster.backing_off(row):
            return 0  # tried again next cycle: a thread backing off has not claimed the slot
        self._mentioned.add(row.id)
        silent = self.watch.silent_for(row.id, now) or self.rules.silent_s
        return int(self.poster.post(row, SILENT_SLOT, Reply(silence_notice(row, silent, self.rules))))
