"""Local-docker backend: one TAO container per launch on a Docker daemon the bot can reach.

Launch applies the pull policy, stages the launch folder and the container's
options (`taobot.backends.docker_run`: `<work_root>/<launch-id>/{specs,results,logs}`
on the bot host, the spec, the mounts, a GPU device request; the job's
secrets reach the container only through its environment), then creates
and starts `tao-<launch-id>`.

Poll lists the daemon's taobot containers ONCE per daemon per cycle
(`containers.list(all=True, filters=label taobot.launch, sparse=True)`, a
single GET /containers/json) and maps every job from that answer; the only
extra daemon calls are log tails asked for, and one inspect for a container
that died of SIGKILL (exit 137), to tell an OOM kill apart. `status.json` and
the cancel marker are read from the bot host's launch folder, not the daemon.

A cancel cannot be recorded on the container (labels are fixed at create),
so `cancel` writes `<launch>/cancelled` on the bot host before it stops the
container; a finished or removed container with that marker is Cancelled
(`taobot.backends.docker_status` maps a list entry and the launch folder to
a state).

The daemon is the DOCKER_HOST credential, else the bot's DOCKER_HOST (from
`PlatformSettings`), else the default socket.

Before the daemon is asked anything, every host path the container would
mount is held to the mount rules (`taobot.policy.MountRules`, from the
operator's `docker.mount_roots`): resolved (symlinks, `..`), inside a root,
never the Docker socket, /proc, /etc, the bot's data or its work folder. A
launch that breaks them is refused with nothing created. The default rules
allow no host path at all. On a remote daemon no host path can be verified,
so one is refused unless the rules allow any path.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from taobot.backends.base import JobRef, JobStatus, LaunchSpec, Submitted
from taobot.backends.docker_run import (
    LAUNCH_LABEL,
    flag,
    refuse_mounts,
    registry_auth,
    safe_name,
    stage_launch,
    start_hint,
)
from taobot.backends.docker_status import (
    CANCEL_MARKER,
    cancelled,
    container_status,
    exit_code_of,
    find_container,
    with_log_progress,
)
from taobot.backends.tao_status import PROGRESS_LOG_LINES
from taobot.config import PlatformSettings
from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.policy import MountRules

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10
TAIL_LINES = 20
PULL_POLICIES = ("always", "missing", "never")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def docker_host(creds: Mapping[str, str], settings: PlatformSettings) -> str:
    """The daemon URL: DOCKER_HOST credential, else the bot's DOCKER_HOST, else the default socket."""
    return creds.get("DOCKER_HOST") or settings.docker_host or DEFAULT_DOCKER_HOST


def _api_message(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    text = explanation.decode("utf-8", "replace") if isinstance(explanation, bytes) else str(explanation or exc)
    return text.strip()[:500]


def _is_api_error(exc: BaseException) -> bool:
    from docker.errors import APIError

    return isinstance(exc, APIError)


class DockerBackend:
    name = "local-docker"

    def __init__(
        self,
        work_root: str | Path,
        gpu_request: bool = True,
        timeout_s: float = 30,
        settings: PlatformSettings | None = None,
        mounts: MountRules | None = None,
    ) -> None:
        self.work_root = Path(work_root)
        self.settings = settings or PlatformSettings()
        self.mounts = (mounts or MountRules()).with_protected((str(work_root), "the bot's work folder"))  # see above
        # False only where no GPU exists (tests): the container then gets no DeviceRequest at all.
        self.gpu_request = gpu_request
        self.timeout_s = timeout_s
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()
        self._oom: dict[str, bool] = {}  # container id -> OOMKilled, inspected once for exit 137
        self.list_calls = 0  # container list queries issued by poll; the benchmark reads it

    # ------------------------------------------------------------------ connections

    def connection_key(self, job: JobRef) -> str:
        creds = job.platform_credentials
        return creds.get("DOCKER_HOST") or self.settings.docker_host or "default"

    def _client(self, creds: Mapping[str, str]):
        host = docker_host(creds, self.settings)
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                client = self._clients[host] = connect(host, creds, self.settings, self.timeout_s)
            return client

    def close_connection(self, creds: Mapping[str, str]) -> None:
        with self._lock:
            client = self._clients.pop(docker_host(creds, self.settings), None)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    def _unreachable(self, creds: Mapping[str, str], exc: Exception, doing: str) -> BackendUnreachable:
        self.close_connection(creds)
        host = docker_host(creds, self.settings)
        return BackendUnreachable(
            f"the Docker daemon at `{host}` did not answer while {doing}: {_short(exc)}", host=host
        )

    # ------------------------------------------------------------------ launch

    def launch(self, spec: LaunchSpec) -> Submitted:
        creds = dict(spec.platform_credentials)
        policy = (creds.get("DOCKER_PULL_POLICY") or "missing").strip().lower()
        if policy not in PULL_POLICIES:
            raise LaunchFailed(f"DOCKER_PULL_POLICY is {policy!r}; use always, missing or never")
        # Before the daemon is asked anything: nothing pulled, nothing created.
        refuse_mounts(spec, docker_host(creds, self.settings), self.mounts)
        client = self._client(creds)
        self._ensure_image(client, creds, spec, policy)
        run = stage_launch(self.work_root, spec, self.gpu_request)

        # create + start is what containers.run(detach=True) does; done apart so a container
        # the daemon created but could not start (no GPU driver, bad mount) is removed again.
        try:
            container = client.containers.create(run.image, run.command, **run.options)
        except Exception as exc:  # noqa: BLE001
            if _is_api_error(exc):
                raise LaunchFailed(f"Docker refused to create the container: {_api_message(exc)}") from exc
            raise self._unreachable(creds, exc, "creating the container") from exc
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001
                log.warning("could not remove the container that failed to start", extra={"container": container.id})
            if _is_api_error(exc):
                message = _api_message(exc)
                raise LaunchFailed(f"Docker refused to start the container: {message}{start_hint(message)}") from exc
            raise self._unreachable(creds, exc, "starting the container") from exc
        host_opt = f"-H {shlex.quote(creds['DOCKER_HOST'])} " if creds.get("DOCKER_HOST") else ""
        return Submitted(
            job_id=container.id,
            log_location=f"docker {host_opt}logs {container.short_id}",
            results_location=str(run.results),
            details={
                "container": container.id,
                "launch_dir": str(run.launch_dir),
                "auto_remove": "true" if run.auto_remove else "false",
            },
        )

    def _ensure_image(self, client, creds: Mapping[str, str], spec: LaunchSpec, policy: str) -> None:
        from docker.errors import ImageNotFound, NotFound

        image = spec.image
        present = False
        if policy != "always":
            try:
                client.api.inspect_image(image)
                present = True
            except (ImageNotFound, NotFound):
                present = False
            except Exception as exc:  # noqa: BLE001
                if _is_api_error(exc):
                    raise LaunchFailed(f"Docker could not look up image `{image}`: {_api_message(exc)}") from exc
                raise self._unreachable(creds, exc, "looking up the image") from exc
        if present:
            return
        if policy == "never":
            raise LaunchFailed(
                f"image `{image}` is not on the Docker host and DOCKER_PULL_POLICY is never: "
                f"pull it there first (`docker pull {image}`) or set DOCKER_PULL_POLICY to missing"
            )
        self._pull(client, creds, spec)

    def _pull(self, client, creds: Mapping[str, str], spec: LaunchSpec) -> None:
        from docker.utils import parse_repository_tag

        image = spec.image
        repository, tag = parse_repository_tag(image)
        auth = registry_auth(creds, spec.job_env, image)
        started = time.monotonic()
        try:
            for chunk in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True, auth_config=auth):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise LaunchFailed(f"could not pull `{image}`: {str(chunk['error'])[:500]}")
        except LaunchFailed:
            raise
        except Exception as exc:  # noqa: BLE001
            if _is_api_error(exc):
                login = (
                    " with DOCKER_USERNAME / NGC_KEY"
                    if auth
                    else " (no registry login was given: set DOCKER_USERNAME and NGC_KEY)"
                )
                raise LaunchFailed(f"could not pull `{image}`{login}: {_api_message(exc)}") from exc
            raise self._unreachable(creds, exc, f"pulling `{image}`") from exc
        log.info("image pulled", extra={"image": image, "seconds": round(time.monotonic() - started, 1)})

    # ------------------------------------------------------------------ status

    def poll(self, jobs: list[JobRef], tails_for: Iterable[str] = ()) -> dict[str, JobStatus]:
        """One container list per daemon for all jobs (callers group by connection_key; mixed daemons are grouped here)."""
        if not jobs:
            return {}
        tails = set(tails_for)
        groups: dict[str, list[JobRef]] = {}
        for job in jobs:
            groups.setdefault(self.connection_key(job), []).append(job)
        result: dict[str, JobStatus] = {}
        for members in groups.values():
            creds = dict(members[0].platform_credentials)
            client = self._client(creds)
            try:
                listed = client.containers.list(all=True, filters={"label": LAUNCH_LABEL}, sparse=True)
            except Exception as exc:  # noqa: BLE001 - any failure to list means "could not ask"
                raise self._unreachable(creds, exc, "listing containers") from exc
            self.list_calls += 1
            by_id = {c.attrs.get("Id", c.id): c.attrs for c in listed}
            for job in members:
                summary = find_container(by_id, job.job_id)
                launch_dir = job.details.get("launch_dir") or str(self.work_root / safe_name(job.launch_id))
                oom = False
                if (
                    summary is not None
                    and str(summary.get("State", "")).lower() == "exited"
                    and exit_code_of(summary) == 137
                    and not cancelled(launch_dir)
                ):
                    oom = self._oom_killed(client, summary["Id"])
                status = container_status(summary, launch_dir, flag(job.details.get("auto_remove")), oom)
                if job.job_id in tails:  # a container removed on exit has no log, its status file is left
                    lines = log_tail(client, summary["Id"], PROGRESS_LOG_LINES, self.timeout_s) if summary else []
                    status = with_log_progress(status, launch_dir, lines)
                result[job.job_id] = status
        return result

    def _oom_killed(self, client, container_id: str) -> bool:
        """Exit 137 is SIGKILL: one inspect (once per container) says whether the kernel's OOM killer sent it."""
        if container_id not in self._oom:
            try:
                self._oom[container_id] = bool(client.api.inspect_container(container_id)["State"].get("OOMKilled"))
            except Exception:  # noqa: BLE001 - the reason is a nicety; the state is known without it
                return False
        return self._oom[container_id]

    def logs(self, job: JobRef, lines: int = TAIL_LINES) -> list[str]:
        creds = dict(job.platform_credentials)
        client = self._client(creds)
        try:
            return read_logs(client, job.job_id, lines, self.timeout_s) or []  # removed: nothing left to read
        except BackendUnreachable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._unreachable(creds, exc, "reading logs") from exc

    def cancel(self, job: JobRef) -> None:
        """Stop the container (SIGTERM, SIGKILL after 10 s); finished or missing counts as cancelled."""
        from docker.errors import NotFound

        creds = dict(job.platform_credentials)
        client = self._client(creds)
        try:
            container = client.containers.get(job.job_id)
        except NotFound:
            return
        except Exception as exc:  # noqa: BLE001
            if _is_api_error(exc):
                return
            raise self._unreachable(creds, exc, "looking up the container to cancel") from exc
        if container.status in ("exited", "dead", "removing"):
            return  # it finished on its own: its own outcome stands
        launch_dir = Path(job.details.get("launch_dir") or self.work_root / safe_name(job.launch_id))
        marker = launch_dir / CANCEL_MARKER
        # Written before the stop, so a poll racing the stop sees Cancelled and not the SIGTERM exit code.
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        except OSError as exc:
            raise BackendUnreachable(f"cannot record the cancel in `{marker}`: {exc.strerror or exc}") from exc
        try:
            if container.status == "created":
                container.remove(force=True)  # never started: nothing to stop
            else:
                container.stop(timeout=STOP_TIMEOUT_S)
        except NotFound:
            return
        except Exception as exc:  # noqa: BLE001
            marker.unlink(missing_ok=True)
            if _is_api_error(exc):
                raise BackendUnreachable(
                    f"Docker did not stop container {container.short_id}: {_api_message(exc)}"
                ) from exc
            raise self._unreachable(creds, exc, "stopping the container") from exc


def connect(host: str, creds: Mapping[str, str], settings: PlatformSettings, timeout_s: float):
    """A DockerClient for `host`; TLS from the DOCKER_TLS_VERIFY / DOCKER_CERT_PATH credentials, else the bot's own."""
    try:
        import docker
        from docker.utils import kwargs_from_env
    except ImportError as exc:
        raise BackendUnreachable("the `docker` Python package is not installed in the bot's environment") from exc
    env = {"DOCKER_HOST": host}
    for name, own in settings.docker_tls.items():
        value = creds.get(name) or own
        if value:
            env[name] = value
    try:
        kwargs = kwargs_from_env(environment=env)
        kwargs["timeout"] = max(1, int(round(timeout_s)))
        return docker.DockerClient(**kwargs)  # asks the daemon for its API version: fails fast when it is gone
    except Exception as exc:  # DockerException, requests and TLS errors: "could not ask"
        raise BackendUnreachable(f"the Docker daemon at `{host}` does not answer: {_short(exc)}", host=host) from exc


def log_tail(client, container_id: str, lines: int, timeout_s: float) -> list[str]:
    try:
        return read_logs(client, container_id, lines, timeout_s) or []
    except Exception:  # noqa: BLE001 - a missing tail never fails a poll
        return []


def read_logs(client, container_id: str, lines: int, timeout_s: float) -> list[str] | None:
    """The last `lines` log lines in ONE request (the SDK's logs() inspects first to learn about a TTY);
    None when the container is gone. Our containers have no TTY, so the answer is the multiplexed stream."""
    api = client.api
    response = api.get(
        f"{api.base_url}/v{api.api_version}/containers/{container_id}/logs",
        params={"stdout": 1, "stderr": 1, "tail": int(lines)},
        timeout=timeout_s,
    )
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise BackendUnreachable(f"Docker answered {response.status_code} for the logs of {container_id[:12]}")
    return demultiplex(response.content).decode("utf-8", "replace").splitlines()


def demultiplex(raw: bytes) -> bytes:
    """Docker's log stream for a container without TTY: 8-byte frame headers (stream, 0, 0, 0, size BE32)."""
    out, i = bytearray(), 0
    while i + 8 <= len(raw) and raw[i] in (0, 1, 2) and raw[i + 1 : i + 4] == b"\0\0\0":
        size = int.from_bytes(raw[i + 4 : i + 8], "big")
        out += raw[i + 8 : i + 8 + size]
        i += 8 + size
    return bytes(out) + raw[i:]  # anything unframed (a TTY container) as it is


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "No such file or directory" in text:
        text = "socket not found (no daemon there)"
    elif "Connection refused" in text:
        text = "connection refused (no daemon listening)"
    elif "Permission denied" in text:
        text = "permission denied on the socket"
    return f"{type(exc).__name__}: {text[:300]}"
