"""Local-docker backend: one TAO container per launch on a Docker daemon the bot can reach.

Launch writes `<work_root>/<launch-id>/{specs,results,logs}` on the bot host,
renders the spec into `specs/` (mounted read-only at /tao/specs), mounts
`results/` read-write at /tao/results and every local dataset path read-only
at the same path, applies the pull policy, then creates and starts
`tao-<launch-id>` with a GPU device request. The job's secrets reach the
container only through its environment; they are never written into the
spec, the command or a label.

Poll lists the daemon's taobot containers ONCE per daemon per cycle
(`containers.list(all=True, filters=label taobot.launch, sparse=True)`, a
single GET /containers/json) and maps every job from that answer; the only
extra daemon calls are log tails asked for, and one inspect for a container
that died of SIGKILL (exit 137), to tell an OOM kill apart. `status.json` and
the cancel marker are read from the bot host's launch folder, not the daemon.

A cancel cannot be recorded on the container (labels are fixed at create),
so `cancel` writes `<launch>/cancelled` on the bot host before it stops the
container; a finished or removed container with that marker is Cancelled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from taobot.backends.base import (
    BackendUnreachable,
    JobRef,
    JobState,
    JobStatus,
    LaunchFailed,
    LaunchSpec,
    RESULTS_PLACEHOLDER,
    Submitted,
)
from taobot.preflight.base import local_path
from taobot.render import render, render_args

log = logging.getLogger(__name__)

CONTAINER_SPECS = "/tao/specs"
CONTAINER_RESULTS = "/tao/results"
LAUNCH_LABEL = "taobot.launch"
MODEL_LABEL = "taobot.model"
ACTION_LABEL = "taobot.action"
CANCEL_MARKER = "cancelled"
STOP_TIMEOUT_S = 10
TAIL_LINES = 20
PULL_POLICIES = ("always", "missing", "never")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_EXIT = re.compile(r"\((-?\d+)\)")
_TRUE = ("1", "true", "yes", "on", "y")

STATE_MAP = {
    "created": JobState.PENDING,
    "running": JobState.RUNNING,
    "restarting": JobState.RUNNING,
    "paused": JobState.PAUSED,
    "removing": JobState.RUNNING,  # auto-remove in progress; the next poll sees it gone
    "exited": JobState.SUCCEEDED,  # refined by the exit code and status.json
    "dead": JobState.FAILED,
}


def safe_name(launch_id: str) -> str:
    """A launch id as a container-name / folder-name component."""
    name = _SAFE_NAME.sub("-", launch_id).strip(".-") or "launch"
    return name


def docker_host(creds: Mapping[str, str]) -> str:
    """The daemon URL: DOCKER_HOST credential, else the bot's DOCKER_HOST, else the default socket."""
    return creds.get("DOCKER_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def flag(value: str | None) -> bool:
    return str(value or "").strip().lower() in _TRUE


def container_command(spec: LaunchSpec, flat: Mapping[str, object], config_path: str) -> list[str]:
    """The action's command as an argv list (no shell), `{config_path}` filled; args-style actions get `--key value`."""
    argv = shlex.split(spec.command.replace("{config_path}", shlex.quote(config_path)))
    if spec.config_format == "args":
        argv += render_args(flat)
    return argv


def dataset_mount_paths(datasets: Mapping[str, str]) -> list[str]:
    """Host paths to mount read-only: local ones only (s3:// is not mounted), nested ones folded into their parent dir."""
    paths = sorted({os.path.normpath(p) for p in (local_path(v) for v in datasets.values()) if p})
    out: list[str] = []
    for p in paths:
        if any(p.startswith(parent.rstrip("/") + "/") and os.path.isdir(parent) for parent in out):
            continue
        out.append(p)
    return out


def exit_code_of(summary: Mapping) -> int | None:
    """`Exited (137) 3 seconds ago` -> 137 (the list answer has no ExitCode field)."""
    state = summary.get("State")
    if isinstance(state, dict):  # an inspect answer
        code = state.get("ExitCode")
        return int(code) if code is not None else None
    match = _EXIT.search(str(summary.get("Status", "")))
    return int(match.group(1)) if match else None


def read_status_json(launch_dir: str | None) -> dict | None:
    if not launch_dir:
        return None
    path = Path(launch_dir, "results", "status.json")
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read(64 * 1024).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _reported_failure(doc: dict | None) -> str | None:
    status = str((doc or {}).get("status", "")).upper()
    return status.lower() if status in ("FAILURE", "FAILED", "ERROR") else None


def cancelled(launch_dir: str | None) -> bool:
    return bool(launch_dir) and Path(launch_dir, CANCEL_MARKER).exists()


def container_status(summary: Mapping | None, launch_dir: str | None, auto_remove: bool = False,
                     oom_killed: bool = False) -> JobStatus:
    """Map one container (an entry of the list answer, or None when it is gone) to a JobStatus."""
    if summary is None:
        if cancelled(launch_dir):
            return JobStatus(JobState.CANCELLED, "removed", "cancelled from taobot")
        doc = read_status_json(launch_dir) if auto_remove else None
        if doc is not None:  # removed on exit (DOCKER_AUTO_REMOVE): the run's own report is what is left
            failure = _reported_failure(doc)
            code = doc.get("exit_code")
            code = int(code) if isinstance(code, int) or str(code).lstrip("-").isdigit() else None
            if failure or (code not in (None, 0)):
                return JobStatus(JobState.FAILED, "removed", f"status.json reports {failure or 'exit code ' + str(code)} "
                                 "(container removed on exit)", code)
            return JobStatus(JobState.SUCCEEDED, "removed", "status.json reports success (container removed on exit)", code)
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
        failure = _reported_failure(read_status_json(launch_dir))
        if failure:
            return JobStatus(JobState.FAILED, native, f"status.json reports {failure}", code)
        return JobStatus(JobState.SUCCEEDED, native, None, code)
    if word == "dead":
        return JobStatus(JobState.FAILED, native, "the container is dead (Docker could not stop or remove it)", code)
    if state is JobState.UNKNOWN:
        return JobStatus(state, native, f"Docker reports state {word!r}")
    return JobStatus(state, native)


def _api_message(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    text = explanation.decode("utf-8", "replace") if isinstance(explanation, bytes) else str(explanation or exc)
    return text.strip()[:500]


def _is_api_error(exc: BaseException) -> bool:
    from docker.errors import APIError

    return isinstance(exc, APIError)


class DockerBackend:
    name = "local-docker"

    def __init__(self, work_root: str | Path, gpu_request: bool = True, timeout_s: float = 30) -> None:
        self.work_root = Path(work_root)
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
        return creds.get("DOCKER_HOST") or os.environ.get("DOCKER_HOST") or "default"

    def _client(self, creds: Mapping[str, str]):
        host = docker_host(creds)
        with self._lock:
            client = self._clients.get(host)
            if client is not None:
                return client
            try:
                import docker
                from docker.utils import kwargs_from_env
            except ImportError as exc:
                raise BackendUnreachable("the `docker` Python package is not installed in the bot's environment") from exc
            env = {"DOCKER_HOST": host}
            for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
                value = creds.get(name) or os.environ.get(name)
                if value:
                    env[name] = value
            try:
                kwargs = kwargs_from_env(environment=env)
                kwargs["timeout"] = max(1, int(round(self.timeout_s)))
                client = docker.DockerClient(**kwargs)  # asks the daemon for its API version: fails fast when it is gone
            except Exception as exc:  # DockerException, requests and TLS errors: "could not ask"
                raise BackendUnreachable(f"the Docker daemon at `{host}` does not answer: {_short(exc)}", host=host) from exc
            self._clients[host] = client
            return client

    def close_connection(self, creds: Mapping[str, str]) -> None:
        with self._lock:
            client = self._clients.pop(docker_host(creds), None)
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
        host = docker_host(creds)
        return BackendUnreachable(f"the Docker daemon at `{host}` did not answer while {doing}: {_short(exc)}", host=host)

    # ------------------------------------------------------------------ launch

    def launch(self, spec: LaunchSpec) -> Submitted:
        from docker.types import DeviceRequest, Mount

        creds = dict(spec.platform_credentials)
        policy = (creds.get("DOCKER_PULL_POLICY") or "missing").strip().lower()
        if policy not in PULL_POLICIES:
            raise LaunchFailed(f"DOCKER_PULL_POLICY is {policy!r}; use always, missing or never")
        client = self._client(creds)
        self._ensure_image(client, creds, spec, policy)

        ident = safe_name(spec.launch_id)
        launch_dir = (self.work_root / ident).resolve()
        specs, results, logs = launch_dir / "specs", launch_dir / "results", launch_dir / "logs"
        for d in (specs, results, logs):
            d.mkdir(parents=True, exist_ok=True)
        ext = "toml" if spec.config_format == "toml" else "yaml"
        file_name = f"{safe_name(spec.action)}.{ext}"
        flat = {k: (CONTAINER_RESULTS if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
        if spec.config_format != "args":
            (specs / file_name).write_text(render(flat, spec.config_format))
        command = container_command(spec, flat, f"{CONTAINER_SPECS}/{file_name}")

        mounts = [
            Mount(CONTAINER_SPECS, str(specs), type="bind", read_only=True),
            Mount(CONTAINER_RESULTS, str(results), type="bind", read_only=False),
        ]
        mounts += [Mount(p, p, type="bind", read_only=True) for p in dataset_mount_paths(spec.datasets)]
        if creds.get("HOST_SSH_PATH"):
            mounts.append(Mount("/root/.ssh", os.path.expanduser(creds["HOST_SSH_PATH"]), type="bind", read_only=True))
        environment = {k: str(v) for k, v in spec.job_env.items()}  # the only way a secret reaches the job
        environment["TAO_API_RESULTS_DIR"] = CONTAINER_RESULTS
        environment["NUM_GPU_PER_NODE"] = str(spec.num_gpus)
        labels = {str(k): str(v) for k, v in spec.labels.items()}
        labels.update({LAUNCH_LABEL: spec.launch_id, MODEL_LABEL: spec.model, ACTION_LABEL: spec.action})
        auto_remove = flag(creds.get("DOCKER_AUTO_REMOVE"))
        kwargs: dict = {
            "name": f"tao-{ident}",
            "detach": True,
            "environment": environment,
            "labels": labels,
            "mounts": mounts,
            "auto_remove": auto_remove,
        }
        if self.gpu_request and spec.num_gpus > 0:
            kwargs["device_requests"] = [DeviceRequest(count=int(spec.num_gpus), capabilities=[["gpu"]])]
        if spec.resources.shm_size:
            kwargs["shm_size"] = spec.resources.shm_size
        if creds.get("DOCKER_NETWORK"):
            kwargs["network"] = creds["DOCKER_NETWORK"]

        # create + start is what containers.run(detach=True) does; done apart so a container
        # the daemon created but could not start (no GPU driver, bad mount) is removed again.
        try:
            container = client.containers.create(spec.image, command, **kwargs)
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
                hint = ""
                if "could not select device driver" in message:
                    hint = (" — this Docker host has no NVIDIA GPU runtime: install the NVIDIA Container Toolkit, "
                            "run `nvidia-ctk runtime configure --runtime=docker` and restart dockerd")
                raise LaunchFailed(f"Docker refused to start the container: {message}{hint}") from exc
            raise self._unreachable(creds, exc, "starting the container") from exc
        host_opt = f"-H {shlex.quote(creds['DOCKER_HOST'])} " if creds.get("DOCKER_HOST") else ""
        return Submitted(
            job_id=container.id,
            log_location=f"docker {host_opt}logs {container.short_id}",
            results_location=str(results),
            details={"container": container.id, "launch_dir": str(launch_dir), "auto_remove": "true" if auto_remove else "false"},
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
                login = " with DOCKER_USERNAME / NGC_KEY" if auth else " (no registry login was given: set DOCKER_USERNAME and NGC_KEY)"
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
                summary = _find(by_id, job.job_id)
                launch_dir = job.details.get("launch_dir") or str(self.work_root / safe_name(job.launch_id))
                oom = False
                if (summary is not None and str(summary.get("State", "")).lower() == "exited"
                        and exit_code_of(summary) == 137 and not cancelled(launch_dir)):
                    oom = self._oom_killed(client, summary["Id"])
                status = container_status(summary, launch_dir, flag(job.details.get("auto_remove")), oom)
                if job.job_id in tails and summary is not None:
                    status = replace(status, log_tail=tuple(self._tail(client, summary["Id"], TAIL_LINES)))
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

    def _tail(self, client, container_id: str, lines: int) -> list[str]:
        try:
            return self._read_logs(client, container_id, lines) or []
        except Exception:  # noqa: BLE001 - a missing tail never fails a poll
            return []

    def _read_logs(self, client, container_id: str, lines: int) -> list[str] | None:
        """The last `lines` log lines in ONE request (the SDK's logs() inspects first to learn about a TTY);
        None when the container is gone. Our containers have no TTY, so the answer is the multiplexed stream."""
        api = client.api
        response = api.get(
            f"{api.base_url}/v{api.api_version}/containers/{container_id}/logs",
            params={"stdout": 1, "stderr": 1, "tail": int(lines)},
            timeout=self.timeout_s,
        )
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise BackendUnreachable(f"Docker answered {response.status_code} for the logs of {container_id[:12]}")
        return demultiplex(response.content).decode("utf-8", "replace").splitlines()

    def logs(self, job: JobRef, lines: int = TAIL_LINES) -> list[str]:
        creds = dict(job.platform_credentials)
        client = self._client(creds)
        try:
            return self._read_logs(client, job.job_id, lines) or []  # removed: nothing left to read
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
                raise BackendUnreachable(f"Docker did not stop container {container.short_id}: {_api_message(exc)}") from exc
            raise self._unreachable(creds, exc, "stopping the container") from exc


def registry_auth(creds: Mapping[str, str], job_env: Mapping[str, str], image: str) -> dict | None:
    """DOCKER_USERNAME with NGC_KEY as the password; `$oauthtoken` for nvcr.io when only NGC_KEY is given."""
    password = creds.get("NGC_KEY") or job_env.get("NGC_KEY")
    username = creds.get("DOCKER_USERNAME")
    if not username and password and image.startswith("nvcr.io/"):
        username = "$oauthtoken"
    if not (username and password):
        return None
    return {"username": username, "password": password}


def demultiplex(raw: bytes) -> bytes:
    """Docker's log stream for a container without TTY: 8-byte frame headers (stream, 0, 0, 0, size BE32)."""
    out, i = bytearray(), 0
    while i + 8 <= len(raw) and raw[i] in (0, 1, 2) and raw[i + 1:i + 4] == b"\0\0\0":
        size = int.from_bytes(raw[i + 4:i + 8], "big")
        out += raw[i + 8:i + 8 + size]
        i += 8 + size
    return bytes(out) + raw[i:]  # anything unframed (a TTY container) as it is


def _find(by_id: Mapping[str, Mapping], job_id: str) -> Mapping | None:
    if job_id in by_id:
        return by_id[job_id]
    if len(job_id) >= 12:  # a short id
        for cid, summary in by_id.items():
            if cid.startswith(job_id):
                return summary
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "No such file or directory" in text:
        text = "socket not found (no daemon there)"
    elif "Connection refused" in text:
        text = "connection refused (no daemon listening)"
    elif "Permission denied" in text:
        text = "permission denied on the socket"
    return f"{type(exc).__name__}: {text[:300]}"
