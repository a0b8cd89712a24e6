"""A Docker container, as the daemon's list answer shows it, mapped to a `JobStatus`.

Pure apart from reading the launch folder on the bot host: the container's
state word and exit code come from one `GET /containers/json` entry, and
two files the daemon knows nothing about refine them. `results/status.json`
(TAO's status file, JSON lines) is the run's own report: a TAO action that
exits 0 succeeded only with a final SUCCESS record in it, and a container
removed on exit leaves only this report. The
`cancelled` marker is written by cancel before the stop, because labels
are fixed at create and the stop's SIGTERM exit code must not read as a
failure.

`with_log_progress` adds what an update shows: the last log lines, the
run's progress from the status file (its last 256 KiB) and the log's
metric lines, and a digest of the log's last lines that changes while the
job still writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from taobot.backends.base import JobState, JobStatus
from taobot.backends.docker_run import CONTAINER_RESULTS
from taobot.backends.tao_status import STATUS_FILE_NAME, TaoReport, judge_exit_zero, parse_status, with_progress

CANCEL_MARKER = "cancelled"
_EXIT = re.compile(r"\((-?\d+)\)")

STATE_MAP = {
    "created": JobState.PENDING,
    "running": JobState.RUNNING,
    "restarting": JobState.RUNNING,
    "paused": JobState.PAUSED,
    "removing": JobState.RUNNING,  # auto-remove in progress; the next poll sees it gone
    "exited": JobState.SUCCEEDED,  # refined by the exit code and status.json
    "dead": JobState.FAILED,
}


def exit_code_of(summary: Mapping) -> int | None:
    """`Exited (137) 3 seconds ago` -> 137 (the list answer has no ExitCode field)."""
    state = summary.get("State")
    if isinstance(state, dict):  # an inspect answer
        code = state.get("ExitCode")
        return int(code) if code is not None else None
    match = _EXIT.search(str(summary.get("Status", "")))
    return int(match.group(1)) if match else None


def status_text(launch_dir: str | None, limit: int = 64 * 1024) -> str | None:
    """The last `limit` bytes of TAO's status file in the launch's results folder, None when there is none."""
    if not launch_dir:
        return None
    path = Path(launch_dir, "results", STATUS_FILE_NAME)
    try:
        with open(path, "rb") as fh:
            size = path.stat().st_size
            fh.seek(max(0, size - limit))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    return text.split("\n", 1)[-1] if size > limit else text  # the first line may be cut: not a record


def read_status_json(launch_dir: str | None) -> TaoReport | None:
    """TAO's status file in the launch's results folder (its last 64 KiB), None when there is none."""
    text = status_text(launch_dir)
    return parse_status(text) if text is not None else None


def with_log_progress(status: JobStatus, launch_dir: str | None, log_lines: list[str]) -> JobStatus:
    """The status with the log's last lines, the run's progress and the log's mark (see the module's text).
    A checkpoint the log names in the container's results folder is named where it is on the bot host."""
    records = (status_text(launch_dir, 256 * 1024) or "").splitlines()
    status = with_progress(status, log_lines, records)
    saved = status.progress.checkpoint if status.progress else None
    if saved and launch_dir and (saved + "/").startswith(CONTAINER_RESULTS + "/"):
        # Resolved: a launch whose results live under the intake's results location names them there.
        host = os.path.realpath(Path(launch_dir, "results")) + saved[len(CONTAINER_RESULTS) :]
        status = replace(status, progress=replace(status.progress, checkpoint=host))
    return status


def cancelled(launch_dir: str | None) -> bool:
    return bool(launch_dir) and Path(launch_dir, CANCEL_MARKER).exists()


def container_status(
    summary: Mapping | None, launch_dir: str | None, auto_remove: bool = False, oom_killed: bool = False
) -> JobStatus:
    """Map one container (an entry of the list answer, or None when it is gone) to a JobStatus."""
    if summary is None:
        if cancelled(launch_dir):
            return JobStatus(JobState.CANCELLED, "removed", "cancelled from taobot")
        report = read_status_json(launch_dir) if auto_remove else None
        if report is not None and report.records:  # removed on exit (DOCKER_AUTO_REMOVE): the run's report is left
            state, reason = judge_exit_zero(report)
            if state is JobState.SUCCEEDED:
                return JobStatus(state, "removed", "TAO reported success (container removed on exit)", report.exit_code)
            return JobStatus(state, "removed", f"{reason} (container removed on exit)", report.exit_code)
        return JobStatus(JobState.UNKNOWN, "removed", "the container no longer exists")
    raw = summary.get("State")
    word = (raw.get("Status", "") if isinstance(raw, dict) else str(raw or "")).lower()
    state = STATE_MAP.get(word, JobState.UNKNOWN)
    code = exit_code_of(summary) if word in ("exited", "dead") else None
    native = f"{word} ({code})" if code is not None and word == "exited" else word or "unknown"
    if word in ("exited", "dead") and cancelled(launch_dir):
        return JobStatus(JobState.CANCELLED, native, "cancelled from taobot", code)
    if word == "exited":
        if code not in (None, 0):
            if oom_killed:
                reason = "out of memory"
            elif code == 137:
                reason = "killed (SIGKILL, exit code 137)"
            elif code == 143:
                reason = "terminated (SIGTERM, exit code 143)"
            else:
                reason = f"exited with code {code}"
            return JobStatus(JobState.FAILED, native, reason, code)
        state, reason = judge_exit_zero(read_status_json(launch_dir))
        return JobStatus(state, native, reason, code)
    if word == "dead":
        return JobStatus(JobState.FAILED, native, "the container is dead (Docker could not stop or remove it)", code)
    if state is JobState.UNKNOWN:
        return JobStatus(state, native, f"Docker reports state {word!r}")
    return JobStatus(state, native)


def find_container(by_id: Mapping[str, Mapping], job_id: str) -> Mapping | None:
    """The list entry for a full container id, or for a short one (12+ characters) as `docker ps` prints it."""
    if job_id in by_id:
        return by_id[job_id]
    if len(job_id) >= 12:  # a short id
        for cid, summary in by_id.items():
            if cid.startswith(job_id):
                return summary
    return None
