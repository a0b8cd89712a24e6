"""TAO's own status file: where a job is told to write it, and what its records say.

TAO's status logger appends one JSON object per line to `$TAO_STATUS_FILE`
(else `$TAO_API_RESULTS_DIR/$TAO_API_JOB_ID/status.json`). Each record has
`date`, `time`, `status` (STARTED, RUNNING, SUCCESS, FAILURE, SKIPPED),
`verbosity` and `message`, and may carry `kpi`, `graphical` and
`categorical` data (epoch, loss …). A run that finished well ends with a
SUCCESS record; an exit code of 0 without one is not a success.

The same records, with the log's metric lines, are the run's training
progress (`taobot.progress`): `with_progress` puts it on a polled status,
with the last log lines and a mark that changes when the log grows. Where
the bot cannot read the results folder (a Kubernetes PVC or s3, Lepton,
Brev) the log is all there is, and the progress says it came from the log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from taobot.backends.base import JobState, JobStatus
from taobot.progress import read_progress

STATUS_FILE_NAME = "status.json"
FAILURE_WORDS = ("FAILURE", "FAILED", "ERROR")
NO_SUCCESS = "exited without reporting success (TAO's status file has no SUCCESS record)"
TAIL_LINES = 20  # log lines shown in an update
PROGRESS_LOG_LINES = 200  # log lines read for progress where the log is read through an API (one call either way)
PROGRESS_RECORDS = 600  # the status file's last records read for progress (a few per epoch)


def status_env(launch_id: str, results_dir: str) -> dict[str, str]:
    """The variables that make TAO's status logger write where taobot reads."""
    return {
        "TAO_API_JOB_ID": launch_id,
        "TAO_STATUS_FILE": f"{results_dir.rstrip('/')}/{STATUS_FILE_NAME}",
    }


def status_root(results_dir: str) -> str:
    """Where the status file can be written: the results folder when it is a local path (not s3://…)."""
    return results_dir if results_dir.startswith("/") else "/tmp/tao-status"


@dataclass(frozen=True)
class TaoReport:
    final: str | None  # SUCCESS or FAILURE from the last final record, None when there is none
    message: str | None  # the message of that record (or of the last record)
    records: int
    exit_code: int | None = None  # an `exit_code` field of the final record, when it has one


def parse_status(text: str | Iterable[str]) -> TaoReport:
    """JSON lines (or one JSON document) into the run's verdict; lines that are not JSON are skipped."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    final: str | None = None
    message: str | None = None
    exit_code: int | None = None
    records = 0
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        records += 1
        status = str(doc.get("status", "")).upper()
        text_msg = doc.get("message")
        if status == "SUCCESS" or status in FAILURE_WORDS:
            final = "SUCCESS" if status == "SUCCESS" else "FAILURE"
            message = str(text_msg) if text_msg else None
            code = doc.get("exit_code")
            exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        elif final is None and text_msg:
            message = str(text_msg)
    return TaoReport(final, message, records, exit_code)


def judge_exit_zero(report: TaoReport | None) -> tuple[JobState, str | None]:
    """A job the platform says ended well, checked against TAO's own report."""
    if report is not None and report.final == "SUCCESS":
        return JobState.SUCCEEDED, None
    if report is not None and report.final == "FAILURE":
        return JobState.FAILED, "TAO's status file reports failure" + (f": {report.message}" if report.message else "")
    return JobState.FAILED, NO_SUCCESS


def log_digest(lines: Sequence[str]) -> str | None:
    """A mark of the log's last lines: it changes when the log grows (None when there is no log yet)."""
    if not lines:
        return None
    return hashlib.sha256("\n".join(lines[-5:]).encode("utf-8", "replace")).hexdigest()[:16]


def with_progress(
    status: JobStatus, log_lines: Sequence[str], records: Iterable[str] = (), mark: str | None = None
) -> JobStatus:
    """`status` with the log's last lines, the run's progress (records and log lines) and the log's mark
    (`mark`, else a digest of the last lines)."""
    lines = tuple(log_lines)
    return replace(
        status,
        log_tail=lines[-TAIL_LINES:] if lines else status.log_tail,
        progress=read_progress(records, lines),
        log_mark=mark if mark is not None else log_digest(lines),
    )
