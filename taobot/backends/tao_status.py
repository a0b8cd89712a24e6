"""TAO's own status file: where a job is told to write it, and what its records say.

TAO's status logger appends one JSON object per line to `$TAO_STATUS_FILE`
(else `$TAO_API_RESULTS_DIR/$TAO_API_JOB_ID/status.json`). Each record has
`date`, `time`, `status` (STARTED, RUNNING, SUCCESS, FAILURE, SKIPPED),
`verbosity` and `message`, and may carry `kpi`, `graphical` and
`categorical` data (epoch, loss …). A run that finished well ends with a
SUCCESS record; an exit code of 0 without one is not a success.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from taobot.backends.base import JobState

STATUS_FILE_NAME = "status.json"
FAILURE_WORDS = ("FAILURE", "FAILED", "ERROR")
NO_SUCCESS = "exited without reporting success (TAO's status file has no SUCCESS record)"


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
