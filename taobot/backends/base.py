"""What every platform backend does: launch, poll (batched), logs, cancel, cleanup.

A backend gets a `LaunchSpec` only after the launch gate opened (the
launcher calls `gate.require_open` first). Job credentials reach the job
only through the platform's secret mechanism; they never appear in the
rendered spec, a script body, a log line or a message.

States are normalised to `JobState`; the platform's own state text is kept
beside it in `JobStatus.native`. A backend that cannot reach its platform
raises `BackendUnreachable` from `poll`: the monitor reports that and
retries, and never marks the job failed because of it.

A job's secrets stay on its platform only as long as the job needs them:
`cleanup` removes what a launch left there that holds them (SLURM's env
file, the Kubernetes Secret, Lepton's per-launch secrets). The monitor calls
it once when the launch has ended (recorded in the store, retried a bounded
number of times when it fails), and `cancel` calls it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from taobot.catalog.schema import ResourceDefaults
from taobot.errors import TaobotError
from taobot.launches import JobState  # noqa: F401 - the one vocabulary of job states, re-exported for backends
from taobot.progress import Progress

# A spec value equal to this is replaced by the launch's results folder once
# the backend knows where that is.
RESULTS_PLACEHOLDER = "{results_dir}"

# Credentials the TAO container itself uses; everything else (SSH, platform
# tokens) stays with the bot.
JOB_ENV_CREDENTIALS = (
    "HF_TOKEN",
    "NGC_KEY",
    "ACCESS_KEY",
    "SECRET_KEY",
    "S3_ENDPOINT_URL",
    "CLOUD_REGION",
    "S3_BUCKET_NAME",
)


@dataclass(frozen=True)
class LaunchSpec:
    launch_id: str
    platform: str
    model: str
    action: str
    image: str
    command: str  # the action's command with {config_path} still to fill
    config_format: str  # yaml, toml or args
    spec: Mapping[str, object]  # flat spec key -> value (datasets, compute keys, results key)
    datasets: Mapping[str, str]
    num_gpus: int
    num_nodes: int
    resources: ResourceDefaults
    platform_credentials: Mapping[str, str]  # how the bot reaches the platform
    job_env: Mapping[str, str]  # secrets the job needs, delivered through the platform's secret mechanism
    results_uri: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Submitted:
    job_id: str
    log_location: str
    results_location: str
    details: Mapping[str, str] = field(default_factory=dict)  # what poll/cancel need later (remote dir, namespace …)


@dataclass(frozen=True)
class JobRef:
    launch_id: str
    job_id: str
    details: Mapping[str, str]
    platform_credentials: Mapping[str, str]


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    native: str
    reason: str | None = None
    exit_code: int | None = None
    log_tail: tuple[str, ...] = ()
    # Asked for with the log tail: how far training is, from TAO's status file and the log (None: nothing said).
    progress: Progress | None = None
    # Changes whenever the job's log grows (its size, or a digest of its last lines); None: not looked at.
    log_mark: str | None = None


class Backend(Protocol):
    name: str

    def launch(self, spec: LaunchSpec) -> Submitted: ...

    def poll(self, jobs: list[JobRef], tails_for: Iterable[str] = ()) -> dict[str, JobStatus]:
        """Status of every job, with ONE query per cluster/daemon/namespace for all of them;
        the last log lines of the jobs named in `tails_for` come back in `log_tail`, with their `progress` and
        `log_mark` (SLURM gives every job's `log_mark`, its log's size, in the same query)."""
        ...

    def logs(self, job: JobRef, lines: int = 20) -> list[str]: ...

    def cancel(self, job: JobRef) -> None:
        """Cancel; an already finished or unknown job counts as cancelled (no error). Then `cleanup`, best effort."""
        ...

    def cleanup(self, job: JobRef) -> None:
        """Remove what the launch left on the platform that holds its secrets; what is gone already counts as
        removed, so calling it twice is harmless. Raises `BackendUnreachable` (a message without secrets) when
        something could not be removed; the monitor tries again later."""
        ...

    def connection_key(self, job: JobRef) -> str:
        """Jobs with the same key are polled together over one connection."""
        ...


def cleanup_jobs(backend: Backend, jobs: list[JobRef]) -> dict[str, str | None]:
    """launch id -> None when its cleanup is done, else why not (secret-free). Jobs of one connection.

    A backend with `cleanup_many` does them all in one request (SLURM: one SSH command); otherwise `cleanup`
    runs per job. A backend without `cleanup` leaves nothing to remove."""
    many = getattr(backend, "cleanup_many", None)
    if many is not None:
        return many(jobs)
    one = getattr(backend, "cleanup", None)
    result: dict[str, str | None] = {}
    for job in jobs:
        try:
            if one is not None:
                one(job)
            result[job.launch_id] = None
        except TaobotError as exc:
            result[job.launch_id] = exc.message
    return result


def infrastructure_cause(native_state: str, lines: list[str] | tuple[str, ...]) -> str | None:
    """A known infrastructure failure in the state or logs (likely retriable), as `taobot.triage` finds it."""
    from taobot.triage import triage

    found = triage(JobState.FAILED, native_state, None, None, lines)
    return found.cause if found is not None and found.retriable else None
