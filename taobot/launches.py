"""What a launch is: the job states taobot knows and the record of one submitted job.

`JobState` is the one vocabulary of job states, and `TERMINAL` the one
definition of "ended" (the store's SQL is built from it too). `Launch` is
the typed record the store returns for a row of the launches table.
"""

from __future__ import annotations

import json
from enum import Enum

from pydantic import BaseModel, ConfigDict


class JobState(str, Enum):
    SUBMITTING = "Submitting"  # recorded before the platform is asked; never reported by a backend
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"

    @property
    def terminal(self) -> bool:
        """The job ended on the platform; it will not change again."""
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """A job may be running or about to: a second launch of the same intake must wait."""
        return not self.terminal and self is not JobState.UNKNOWN


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


def terminal_sql_list() -> str:
    """`'Cancelled', 'Failed', 'Succeeded'`: TERMINAL for an SQL `IN (...)`. Values are enum constants, never input."""
    return ", ".join(f"'{s.value}'" for s in sorted(TERMINAL, key=lambda s: s.value))


class Launch(BaseModel):
    """One submitted (or being submitted) job, as the store keeps it."""

    model_config = ConfigDict(frozen=True)

    id: str  # shown as `/tao status <id>`
    intake_id: str
    channel: str
    thread_ts: str | None = None
    owner: str
    platform: str
    model: str
    action: str
    job_id: str | None = None
    details: str = "{}"  # JSON: what poll/cancel need (remote dir, namespace, host …)
    log_location: str | None = None
    results_location: str | None = None
    state: JobState = JobState.SUBMITTING
    native: str | None = None  # the platform's own state text
    reason: str | None = None
    exit_code: int | None = None
    monitor: bool = False
    detached: bool = False
    interval_minutes: int
    launched_at: float
    state_since: float | None = None
    ended_at: float | None = None
    unreachable: str | None = None  # why the last poll could not reach the platform
    unreachable_since: float | None = None
    next_poll_at: float | None = None  # backoff while unreachable
    final_posted: bool = False
    post_error: str | None = None  # why the last status post into the thread failed
    post_failures: int = 0  # failed posts in a row
    post_retry_at: float | None = None  # the thread's posts wait until then
    notify_dm: bool = False  # the final reply also goes to the owner by DM
    moved_from: str | None = None  # the channel whose thread was lost; updates now go to the owner's DM
    cleaned_at: float | None = None  # what the ended job left on its platform holding secrets was removed then
    cleanup_attempts: int = 0  # failed removals so far
    cleanup_retry_at: float | None = None  # the next removal waits until then
    cleanup_error: str | None = None  # why the last removal failed (never a secret)
    retry_of: str | None = None  # the launch this one retries (*Retry*, or an automatic retry)
    failure_kind: str | None = None  # the failure triage (taobot.triage), stored once the launch failed
    failure_cause: str | None = None
    failure_line: str | None = None  # the log line or state that decided it
    failure_frames: str | None = None  # JSON list: a traceback's last frames

    @property
    def detail_map(self) -> dict[str, str]:
        return json.loads(self.details or "{}")

    @property
    def watched(self) -> bool:
        """Status updates go to the thread: monitoring is on and nobody detached it."""
        return self.monitor and not self.detached

    def with_changes(self, **changes: object) -> "Launch":
        return self.model_copy(update=changes)


def launch_row(launch: Launch) -> dict:
    """The launches-table row for a Launch (SQLite has no booleans or enums)."""
    return {k: to_column(v) for k, v in launch.model_dump().items()}


def to_column(value: object) -> object:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, JobState):
        return value.value
    return value
