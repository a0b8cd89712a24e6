"""What the monitor adds to its updates beyond the platform's state: the run's progress and stuck signals.

`Signals` is the monitor's helper for both (kept out of `Monitor` so the cycle stays readable):

- each poll's `progress` (TAO's status file and the log, see `taobot.progress`) goes into the update and
  the final reply; the last one seen per launch is kept, so an update or a final reply re-sent later, or a
  final posted on a cycle whose poll had no log, still shows it;
- each poll's `log_mark` feeds an `OutputWatch` (`taobot.stuck`); an update of a job pending or silent past
  its threshold says so, and the owner of a silent job is mentioned once (slot `SILENT_SLOT`). A silent
  stretch is recorded in the database when it begins (`output_watch`, one row per running launch, gone when
  it ends), so a restarted bot goes on counting it instead of starting again;
- where reading a log is what gives its mark (every platform but SLURM, whose poll reports every log's
  size anyway), a running job's log is read every `MARK_EVERY_S` even when no update is due.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from taobot.backends.base import JobStatus
from taobot.errors import TaobotError
from taobot.launches import JobState, Launch
from taobot.progress import Progress
from taobot.stuck import MARK_EVERY_S, SILENT_SLOT, OutputWatch, StuckRules, stuck_signals
from taobot.view_text import silence_notice
from taobot.views import Reply, StatusUpdate

log = logging.getLogger(__name__)


class Signals:
    def __init__(self, poster, rules: StuckRules | None = None) -> None:
        self.poster = poster  # posting.ThreadPoster: the mention is a slot like any update
        self.rules = rules or StuckRules()
        self.watch = OutputWatch()
        self._progress: dict[str, Progress] = {}  # launch id -> the last progress a poll brought
        self._mentioned: set[str] = set()  # launches whose silence was mentioned (or found claimed) here
        self._recorded: set[str] | None = None  # launches with a silent stretch in the database; None: not read yet

    @property
    def store(self):
        return self.poster.store

    def _restore(self) -> set[str]:
        """The silent stretches recorded before this process started, read once; those of ended launches dropped."""
        if self._recorded is None:
            self._recorded = set()
            try:
                for launch_id, (mark, changed_at) in self.store.output_watch().items():
                    launch = self.store.get_launch(launch_id)
                    if launch is None or launch.ended_at is not None or launch.state.terminal:
                        self.store.drop_output_watch(launch_id)
                        continue
                    self.watch.restore(launch_id, mark, changed_at)
                    self._recorded.add(launch_id)
            except TaobotError as exc:
                log.warning("recorded log silences not read: %s", exc)
        return self._recorded

    def _keep(self, row: Launch, status: JobStatus, now: float) -> None:
        """Note the poll's log mark; record a silent stretch as it begins, and drop it when the launch ends."""
        recorded = self._restore()
        try:
            if row.ended_at is not None or row.state.terminal:
                self.watch.forget(row.id)
                if row.id in recorded:
                    recorded.discard(row.id)
                    self.store.drop_output_watch(row.id)
                return
            begun = self.watch.observe(row.id, status.log_mark, now)
            if begun is not None:
                self.store.keep_output_watch(row.id, *begun)
                recorded.add(row.id)
        except TaobotError as exc:  # the silence is still counted in memory; a write that failed never stops a poll
            log.warning("log silence not recorded: %s", exc, extra={"launch": row.id})

    def wants_log(self, row: Launch, now: float) -> bool:
        """Read this running job's log in this cycle's poll, for its mark."""
        if not row.watched or row.state is not JobState.RUNNING or row.id in self._mentioned:
            return False
        self._restore()
        seen = self.watch.seen_at(row.id)
        return seen is None or now - seen >= MARK_EVERY_S

    def seen(self, row: Launch, status: JobStatus, now: float) -> int:
        """A poll's answer for `row`: its progress and log mark noted; 1 when it made the silence mention."""
        self._keep(row, status, now)
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
