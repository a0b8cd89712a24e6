"""A SLURM poll: the one shell script that asks a cluster about all its jobs, and the reading of its answer.

One command per cluster and cycle, for every job at once:

- `sacct -P` (with the batch step, where a signal shows) or `squeue` where there is no accounting, and
  `squeue` for the queue reason;
- the last records of each job's TAO status file (the verdict of a COMPLETED job);
- `stat` of every job's log: its size is the mark that shows whether the log still grows;
- for the jobs whose update or final reply is due (`tails`): the last log lines, the status file's last
  `PROGRESS_RECORDS` records, the log's metric lines and its last checkpoint lines (both from its last
  2 MB, progress bars' carriage returns made line breaks), for the run's progress.

Each answer line is tagged (`ACCT|`, `SQ|`, `STATUS|<job>|`, `SZ|<size>|<path>`, `T|`, `P|<job>|`,
`G|<job>|`, `CK|<job>|`), so one answer is read back per job.
"""

from __future__ import annotations

import re
import signal
from dataclasses import replace

from taobot.backends.base import JobRef, JobState, JobStatus
from taobot.backends.tao_status import (
    PROGRESS_RECORDS,
    STATUS_FILE_NAME,
    TAIL_LINES,
    judge_exit_zero,
    parse_status,
)
from taobot.preflight.base import quote
from taobot.progress import read_progress

STATE_MAP = {
    "PENDING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "PREEMPTED": JobState.FAILED,  # the scheduler's doing, not the user's: an infrastructure failure
    "REVOKED": JobState.CANCELLED,
    "SUSPENDED": JobState.PAUSED,
    "STOPPED": JobState.PAUSED,
}
# Native states whose cause is the cluster, not the run; the reason says so.
INFRA_REASONS = {
    "PREEMPTED": "preempted by the scheduler (infrastructure; likely retriable)",
    "NODE_FAIL": "a node of the job failed (infrastructure; likely retriable)",
    "BOOT_FAIL": "a node failed to boot (infrastructure; likely retriable)",
}
LOG_WINDOW = 2_000_000  # bytes at the end of a log searched for metric and checkpoint lines
METRIC_LINES = 80
METRIC_WORDS = "epoch|loss|val_|map|acc|iou|f1|precision|recall|auc"
CHECKPOINT_WORDS = "checkpoint|saving model|saved model|model saved"


def normalise(native: str) -> JobState:
    """`CANCELLED by 1001` -> Cancelled; unknown text -> Unknown."""
    word = native.strip().split(" ", 1)[0].rstrip("+").upper()
    return STATE_MAP.get(word, JobState.UNKNOWN)


def parse_exit_code(text: str) -> int | None:
    code = text.split(":", 1)[0].strip()
    return int(code) if code.isdigit() else None


def parse_signal(text: str) -> int | None:
    """sacct's `ExitCode` is `code:signal`; `0:15` is a job ended by SIGTERM, not one that exited 0."""
    _, _, sig = text.partition(":")
    sig = sig.strip()
    return int(sig) if sig.isdigit() and int(sig) > 0 else None


def signal_text(number: int) -> str:
    try:
        return f"ended by signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"ended by signal {number}"


def log_path(job: JobRef) -> str:
    return f"{job.details.get('launch_dir', '')}/logs/slurm-{job.job_id}.out"


# Reads the stream of every job's status records and due logs (see `poll_script`) in ONE process: tags the
# status records, and keeps each due log's last metric lines and last checkpoint lines.
MARK = "\\036taobot\\036"  # a section header of the stream; no log line starts with it
SORTER = (
    'function flush(  i, n) { if (lj == "") return;'
    f" n = ng < {METRIC_LINES} ? ng : {METRIC_LINES};"
    f' for (i = ng - n; i < ng; i++) print "G|" lj "|" g[i % {METRIC_LINES}];'
    ' n = nc < 3 ? nc : 3; for (i = nc - n; i < nc; i++) print "CK|" lj "|" c[i % 3];'
    ' ng = 0; nc = 0; lj = "" }'
    f' index($0, "{MARK} ") == 1 {{ flush(); split($0, f, " "); mode = f[2]; id = f[3];'
    ' if (mode == "L") lj = id; next }'
    ' mode == "S" || mode == "P" { if ($0 != "") print ((mode == "P" ? "P|" : "STATUS|") id "|"'
    " substr($0, 1, 2000)); next }"
    ' mode == "L" { low = tolower($0);'
    f" if (low ~ /{CHECKPOINT_WORDS}/) c[nc++ % 3] = substr($0, 1, 600);"
    f" else if (low ~ /{METRIC_WORDS}/) g[ng++ % {METRIC_LINES}] = substr($0, 1, 600) }}"
    " END { flush() }"
)


def poll_script(jobs: list[JobRef], tails: set[str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """(the script, tail log path -> job id, every log path -> job id) for one cluster's jobs."""
    ids = ",".join(j.job_id for j in jobs)
    script = [
        # With its steps: a cancelled job's signal (0:15) is on its batch step, the allocation says 0:0.
        f"sacct -P -n -o JobID,State,ExitCode,Reason -j {quote(ids)} 2>/dev/null | sed 's/^/ACCT|/' "
        f"|| squeue -h -t all -j {quote(ids)} -o 'SQ|%i|%T|%r' 2>/dev/null",
        "echo 'END|acct'",
        f"squeue -h -t all -j {quote(ids)} -o 'SQ|%i|%T|%r' 2>/dev/null; echo 'END|squeue'",
    ]
    tail_paths: dict[str, str] = {}
    logs = {log_path(j): j.job_id for j in jobs if j.details.get("launch_dir")}
    stream = []
    for job in jobs:
        status_file = quote(f"{job.details.get('launch_dir', '')}/results/{STATUS_FILE_NAME}")
        # TAO appends JSON lines: the last few hold the final record, the last few hundred the run's progress.
        kind, lines = ("P", PROGRESS_RECORDS) if job.job_id in tails else ("S", 5)
        stream.append(
            f"printf '\\n{MARK} {kind} %s\\n' {quote(job.job_id)}; tail -n {lines} -- {status_file} 2>/dev/null"
        )
        if job.job_id in tails:
            tail_paths[log_path(job)] = job.job_id
            stream.append(
                f"printf '\\n{MARK} L %s\\n' {quote(job.job_id)}; tail -c {LOG_WINDOW} -- {quote(log_path(job))} 2>/dev/null"
            )
    # One stream for every file, sorted by one awk: a tail per file, not a pipeline per file.
    script.append("{ " + "\n".join(stream) + "\n} | tr '\\r' '\\n' | awk " + quote(SORTER))
    if logs:
        # One `stat` for every log: its size says whether the job still writes.
        script.append("stat -c 'SZ|%s|%n' -- " + " ".join(quote(p) for p in logs) + " 2>/dev/null")
    if tail_paths:
        # One `tail` for every wanted log: its "==> file <==" headers say which job each line is from.
        script.append(
            f"tail -v -n {TAIL_LINES} -- " + " ".join(quote(p) for p in tail_paths) + " 2>/dev/null | sed 's/^/T|/'"
        )
    return "\n".join(script) + "\n", tail_paths, logs


def parse_poll_output(
    out: str, job_ids: list[str], tail_paths: dict[str, str] | None = None, log_paths: dict[str, str] | None = None
) -> dict[str, JobStatus]:
    acct: dict[str, tuple[str, str, str]] = {}
    tail_paths = tail_paths or {}
    log_paths = log_paths or {}
    tail_job: str | None = None
    squeue: dict[str, tuple[str, str]] = {}
    status_lines: dict[str, list[str]] = {}
    batch_codes: dict[str, str] = {}  # the batch step's ExitCode: where a signal shows
    tails: dict[str, list[str]] = {}
    records: dict[str, list[str]] = {}  # P: the status file's records, for progress (and the verdict)
    metric_lines: dict[str, list[str]] = {}  # G and CK: the log's metric and checkpoint lines
    sizes: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split("|")
        kind = parts[0]
        if kind == "ACCT" and len(parts) >= 4 and "." in parts[1]:
            job, _, step = parts[1].partition(".")
            if step == "batch":
                batch_codes[job] = parts[3]
        elif kind == "ACCT" and len(parts) >= 4:
            acct[parts[1]] = (parts[2], parts[3], parts[4] if len(parts) > 4 else "")
        elif kind == "SQ" and len(parts) >= 3:
            squeue[parts[1]] = (parts[2], parts[3] if len(parts) > 3 else "")
        elif kind in ("STATUS", "P") and len(parts) >= 3:
            status_lines.setdefault(parts[1], []).append("|".join(parts[2:]))
            if kind == "P":
                records.setdefault(parts[1], []).append("|".join(parts[2:]))
        elif kind in ("G", "CK") and len(parts) >= 3:
            metric_lines.setdefault(parts[1], []).append("|".join(parts[2:]))
        elif kind == "SZ" and len(parts) >= 3 and "|".join(parts[2:]) in log_paths:
            sizes[log_paths["|".join(parts[2:])]] = parts[1]
        elif kind == "TAIL" and len(parts) >= 3:
            tails.setdefault(parts[1], []).append("|".join(parts[2:]))
        elif kind == "T":
            text = line[2:]
            header = re.match(r"^==> (.*) <==$", text)
            if header and header.group(1) in tail_paths:
                tail_job = tail_paths[header.group(1)]
            elif tail_job is not None:
                tails.setdefault(tail_job, []).append(text)
    for lines in tails.values():
        while lines and not lines[-1].strip():
            lines.pop()  # the blank line `tail` puts before the next file's header
    result: dict[str, JobStatus] = {}
    for job_id in job_ids:
        status = _job_status(job_id, acct, squeue, batch_codes, status_lines)
        tail = tuple(tails.get(job_id, ()))
        if job_id in records or job_id in metric_lines or tail:
            # The metric lines count for progress; the update shows the log's own last lines.
            progress = read_progress(records.get(job_id, ()), [*metric_lines.get(job_id, ()), *tail])
            status = replace(status, log_tail=tail, progress=progress)
        result[job_id] = replace(status, log_mark=sizes.get(job_id))
    return result


def _job_status(
    job_id: str,
    acct: dict[str, tuple[str, str, str]],
    squeue: dict[str, tuple[str, str]],
    batch_codes: dict[str, str],
    status_lines: dict[str, list[str]],
) -> JobStatus:
    reason = None
    exit_code = None
    sig = None
    if job_id in acct:
        native, code, reason = acct[job_id]
        exit_code = parse_exit_code(code)
        sig = parse_signal(code) or parse_signal(batch_codes.get(job_id, ""))
    elif job_id in squeue:
        native, reason = squeue[job_id]
    else:
        return JobStatus(JobState.UNKNOWN, "not found", "the cluster no longer knows this job")
    # squeue is more current than accounting for a job that just started, and
    # it is where the queue reason (Resources, Priority, …) is reliable.
    if job_id in squeue and normalise(native) is JobState.PENDING:
        if normalise(squeue[job_id][0]) is not JobState.PENDING or reason in (None, "", "None"):
            native, reason = squeue[job_id]
    state = normalise(native)
    if state not in (JobState.PENDING, JobState.PAUSED):
        # sacct keeps the last queue reason (JobHeldAdmin, Resources …) after the job ran: not today's news.
        reason = None
    if not state.terminal:
        exit_code = None  # sacct prints 0:0 for a job still queued or running
    elif sig is not None:
        reason, exit_code = signal_text(sig), None
    elif state is JobState.CANCELLED and exit_code == 0:
        exit_code = None  # cancelled before it ran: it exited with nothing
    word = native.strip().split(" ", 1)[0].rstrip("+").upper()
    if word in INFRA_REASONS:
        reason = INFRA_REASONS[word] + (f"; {reason}" if reason else "")
    if state is JobState.SUCCEEDED:
        report = parse_status(status_lines[job_id]) if job_id in status_lines else None
        state, reason = judge_exit_zero(report)
    if reason in ("None", "", None):
        reason = None
    return JobStatus(state, native, reason, exit_code)
