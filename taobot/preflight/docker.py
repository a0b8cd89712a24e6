"""Preflight for the local-docker platform: daemon, NVIDIA runtime, host paths, annotation files.

Everything here is read-only: `ping`, `info`, `os.path.exists` and reading
annotation files. No container is created and no image is pulled, so the
GPU runtime is judged from what the daemon reports in `info` (its registered
runtimes, and CDI devices on daemons that list them).

Host paths are held to the operator's mount rules (`request.mounts`, from
the policy's `docker.mount_roots`): each is resolved (symlinks, `..`) and
refused outside the roots or on anything the bot protects (the Docker
socket, /proc, /etc, its own data). On a remote daemon the bot host's files
say nothing about the daemon's, so every host path fails closed: it cannot
be verified there. (Looking on the daemon itself would take a container,
and preflight creates nothing.)
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlparse

from taobot.preflight.base import CheckResult, PreflightRequest, check_annotation_document, local_path, quote

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
MOUNT_POLICY = "docker.mount_policy"
REMOTE_PATH = "docker.remote_path"
REFUSAL_CHECKS = (MOUNT_POLICY, REMOTE_PATH)  # results that are refusals of a person's input (audited)
ANNOTATION_MAX_BYTES = 200 * 1024 * 1024
_LOCAL_TCP_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def check(request: PreflightRequest) -> list[CheckResult]:
    host, from_what = docker_endpoint(request)
    remote = is_remote_endpoint(host)
    results: list[CheckResult] = []

    info, failure = _daemon_info(request, host, from_what)
    if failure is not None:
        results.append(failure)
        results.append(
            CheckResult(
                "docker.gpu_runtime",
                "NVIDIA GPU runtime",
                False,
                f"not checked: the Docker daemon at `{host}` did not answer",
                "Fix the Docker daemon access above, then run preflight again.",
            )
        )
    else:
        results.append(
            CheckResult(
                "docker.daemon",
                "Docker daemon",
                True,
                f"`{host}` ({from_what}) answers: Docker {info.get('ServerVersion', '?')} on "
                f"{info.get('OperatingSystem') or info.get('Name') or 'unknown host'}",
            )
        )
        results.append(gpu_runtime_result(info, host))

    for p in request.paths:
        if p.path.startswith("s3://"):
            continue  # taobot.preflight.s3 checks these
        refused = _refused_path(request, p.label, local_path(p.path), remote, host)
        if refused is not None:
            results.append(refused)
            if p.annotation_fields:
                results.append(annotation_result(request, p, None))
            continue
        results.extend(_path_results(request, p))
    results_dir = local_path(request.results_uri or "")
    if results_dir and request.mounts is not None:
        refused = _refused_path(request, "results", results_dir, remote, host)
        results += [refused] if refused else []
    ssh = request.cred("HOST_SSH_PATH")
    if ssh and request.mounts is not None:
        results.append(
            _refused_path(request, "HOST_SSH_PATH", os.path.expanduser(ssh), remote, host)
            or CheckResult(
                MOUNT_POLICY, "HOST_SSH_PATH", True, f"`{ssh}` may be mounted", scope="dataset", key="HOST_SSH_PATH"
            )
        )
    return results


def _refused_path(request: PreflightRequest, label: str, local: str | None, remote: bool, host: str):
    """A failed result when this host path may not be mounted or cannot be verified; None to check it as usual."""
    if local is None:
        return None  # not a host path: `_path_results` says so
    if remote:
        return CheckResult(
            REMOTE_PATH,
            label,
            False,
            f"`{local}` cannot be verified: DOCKER_HOST `{host}` is a remote daemon, and the bot host's files "
            "say nothing about that machine's",
            "Run local-docker launches with host folders on the bot host's own daemon (a unix socket), "
            "or give s3:// URIs, which preflight reads itself.",
            scope="dataset",
            key=label,
        )
    if request.mounts is None:
        return None
    rules = request.mounts
    parsed = urlparse(host)
    if parsed.scheme == "unix":
        rules = rules.with_protected((parsed.path, "the Docker socket of this launch"))
    refusal = rules.refusal(local)
    if refusal is None:
        return None
    return CheckResult(MOUNT_POLICY, label, False, refusal, rules.remedy(), scope="dataset", key=label)


# --------------------------------------------------------------------------- daemon


def docker_endpoint(request: PreflightRequest) -> tuple[str, str]:
    """The daemon URL preflight (and the launch) talk to, and where it came from."""
    if request.cred("DOCKER_HOST"):
        return request.cred("DOCKER_HOST"), "DOCKER_HOST credential"
    if request.settings.docker_host:
        return request.settings.docker_host, "DOCKER_HOST in the bot's environment"
    return DEFAULT_DOCKER_HOST, "default socket"


def is_remote_endpoint(host: str) -> bool:
    parsed = urlparse(host)
    if parsed.scheme in ("unix", "npipe", "http+unix", ""):
        return False
    if parsed.scheme in ("tcp", "http", "https"):
        return (parsed.hostname or "") not in _LOCAL_TCP_HOSTS
    return True  # ssh:// and anything else reaches another machine


def _client_kwargs(request: PreflightRequest, host: str) -> dict:
    from docker.utils import kwargs_from_env

    env = {"DOCKER_HOST": host}
    for name, own in request.settings.docker_tls.items():
        value = request.cred(name) or own
        if value:
            env[name] = value
    kwargs = kwargs_from_env(environment=env)
    kwargs["timeout"] = max(1, int(round(request.settings.connect_timeout_s)))
    return kwargs


def _daemon_info(request: PreflightRequest, host: str, from_what: str) -> tuple[dict | None, CheckResult | None]:
    try:
        import docker
    except ImportError:
        return None, CheckResult(
            "docker.daemon",
            "Docker daemon",
            False,
            "the `docker` Python package is not installed in the bot's environment",
            "Install it in the bot's environment: `pip install 'docker>=7'`, then restart the bot.",
        )
    client = None
    try:
        client = docker.DockerClient(**_client_kwargs(request, host))
        client.ping()
        return client.info(), None
    except Exception as exc:  # DockerException, requests errors, TLS errors: all mean "not reachable"
        return None, _daemon_failure(exc, host, from_what)
    finally:
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


def _exception_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        stack.extend([e.__cause__, e.__context__])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return seen


def _daemon_failure(exc: Exception, host: str, from_what: str) -> CheckResult:
    chain = _exception_chain(exc)
    text = " ".join(str(e) for e in chain)
    parsed = urlparse(host)
    socket_path = parsed.path if parsed.scheme == "unix" else None
    set_host = "or set DOCKER_HOST (e.g. `DOCKER_HOST=unix:///var/run/docker.sock`) to the daemon you mean."

    if any(isinstance(e, FileNotFoundError) for e in chain) or "No such file or directory" in text:
        why = f"socket `{socket_path or host}` does not exist: the daemon is not running there"
        fix = "Start the daemon on the bot host (`sudo systemctl start docker`, or run `dockerd`), " + set_host
    elif any(isinstance(e, PermissionError) for e in chain) or "Permission denied" in text:
        why = f"permission denied on `{socket_path or host}` for the bot's user"
        fix = (
            "Give the bot's user access to the socket: `sudo usermod -aG docker $USER`, then log in again "
            "(or restart the bot service) so the group applies; " + set_host
        )
    elif any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        why = f"connection refused at `{host}`: no daemon is listening there"
        fix = "Start dockerd (`sudo systemctl start docker`) or make it listen on that address, " + set_host
    elif "timed out" in text.lower() or "timeout" in text.lower():
        why = f"no answer from `{host}` in time"
        fix = "Check that the daemon host is up and reachable from the bot host, " + set_host
    elif "SSL" in text or "certificate" in text.lower() or "TLS" in text:
        why = f"TLS handshake with `{host}` failed"
        fix = "Set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the client certificates for that daemon, " + set_host
    else:
        why = f"`{host}` did not answer as a Docker daemon ({type(exc).__name__})"
        fix = "Start dockerd on that endpoint (`sudo systemctl start docker`), " + set_host
    return CheckResult(
        "docker.daemon",
        "Docker daemon",
        False,
        f"tried `{host}` ({from_what}): {why}",
        fix,
    )


# --------------------------------------------------------------------------- GPU runtime


def nvidia_runtime_evidence(info: dict) -> str | None:
    """What in `docker info` shows the NVIDIA runtime (or CDI GPUs), or None."""
    runtimes = info.get("Runtimes") or {}
    if "nvidia" in runtimes:
        default = " (the default runtime)" if info.get("DefaultRuntime") == "nvidia" else ""
        return f"runtime `nvidia` is registered{default}"
    for name, spec in runtimes.items():
        path = (spec or {}).get("path", "") if isinstance(spec, dict) else ""
        if "nvidia-container-runtime" in path:
            return f"runtime `{name}` runs `{path}`"
    devices = info.get("DiscoveredDevices") or []
    gpus = [
        d.get("ID", "") for d in devices if isinstance(d, dict) and str(d.get("ID", "")).startswith("nvidia.com/gpu")
    ]
    if gpus:
        return f"CDI lists {len(gpus)} NVIDIA device(s): " + ", ".join(f"`{g}`" for g in gpus[:4])
    return None


def gpu_runtime_result(info: dict, host: str) -> CheckResult:
    evidence = nvidia_runtime_evidence(info)
    if evidence:
        return CheckResult("docker.gpu_runtime", "NVIDIA GPU runtime", True, f"{evidence} on `{host}`")
    names = ", ".join(f"`{n}`" for n in sorted(info.get("Runtimes") or {})) or "none"
    return CheckResult(
        "docker.gpu_runtime",
        "NVIDIA GPU runtime",
        False,
        f"the daemon at `{host}` has no NVIDIA GPU runtime (runtimes: {names}; no CDI NVIDIA devices), "
        "so a TAO container would get no GPU",
        "On the Docker host: install the NVIDIA Container Toolkit (`sudo apt-get install -y nvidia-container-toolkit`, "
        "from NVIDIA's repository), run `sudo nvidia-ctk runtime configure --runtime=docker`, then "
        "`sudo systemctl restart docker`; `docker info` must list `nvidia` under Runtimes.",
    )


# --------------------------------------------------------------------------- paths


def _path_results(request: PreflightRequest, p) -> list[CheckResult]:
    local = local_path(p.path)
    where = "on the bot host"
    results: list[CheckResult] = []
    if local is None:
        results.append(
            CheckResult(
                "path",
                p.label,
                False,
                f"`{p.path}` is not a host path local-docker can mount",
                "Give an absolute path (`/data/...` or `file:///data/...`) or an `s3://bucket/key` URI.",
                scope="dataset",
                key=p.label,
            )
        )
        exists = False
    else:
        exists = os.path.exists(local)
        kind = "directory" if os.path.isdir(local) else "file"
        results.append(
            CheckResult(
                "path",
                p.label,
                exists,
                f"`{local}` exists ({kind}) {where}" if exists else f"`{local}` does not exist {where}",
                ""
                if exists
                else f"Create or copy the data to `{local}` on the bot host (`ls -ld {quote(local)}` must succeed), or fix `{p.label}`.",
                scope="dataset",
                key=p.label,
            )
        )
    if p.annotation_fields:
        results.append(annotation_result(request, p, local if exists else None))
    return results


def human_size(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1_000_000 else f"{n:,} bytes"


def read_json_file(path: str, max_bytes: int | None = None) -> tuple[object | None, str | None]:
    """(document, None) or (None, why it could not be read)."""
    max_bytes = max_bytes or ANNOTATION_MAX_BYTES
    if os.path.isdir(path):
        return None, f"`{path}` is a directory, not an annotation file"
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return None, f"`{path}` cannot be read: {exc.strerror or type(exc).__name__}"
    if size > max_bytes:
        return None, f"`{path}` is {human_size(size)}, over the {human_size(max_bytes)} preflight reads"
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        return None, f"`{path}` cannot be read: {exc.strerror or type(exc).__name__}"
    return parse_json_bytes(raw, f"`{path}`", max_bytes)


def parse_json_bytes(raw: bytes, what: str, max_bytes: int | None = None) -> tuple[object | None, str | None]:
    """Decode a JSON document read by preflight; (None, why) when it is too big, not UTF-8 or not JSON."""
    max_bytes = max_bytes or ANNOTATION_MAX_BYTES
    if len(raw) > max_bytes:
        return None, f"{what} is over the {human_size(max_bytes)} preflight reads"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"{what} is not UTF-8 text (bad byte at offset {exc.start}), so not JSON"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def annotation_result(request: PreflightRequest, p, local: str | None) -> CheckResult:
    fields = tuple(p.annotation_fields)
    wanted = ", ".join(f"`{f}`" for f in fields)
    label = f"{p.label} fields"
    if local is None:
        return CheckResult(
            "annotation",
            label,
            False,
            f"not checked: `{p.path}` is not a readable host file",
            f"Fix `{p.label}` (above) so preflight can read it and check for {wanted}.",
            scope="dataset",
            key=p.label,
        )
    doc, why = read_json_file(local)
    if why:
        return CheckResult(
            "annotation",
            label,
            False,
            why,
            f"Point `{p.label}` at a UTF-8 JSON file (a list of records, or a list under "
            f"`annotations`/`data`/`samples`/`items`) whose records have {wanted}; check it with "
            f"`python -m json.tool {quote(local)} > /dev/null`.",
            scope="dataset",
            key=p.label,
        )
    ok, detail = check_annotation_document(doc, fields, request.settings.annotation_sample)
    return CheckResult(
        "annotation",
        label,
        ok,
        f"`{local}`: {detail}",
        ""
        if ok
        else f"Add {wanted} to every record of `{local}` (the model reads it), or point `{p.label}` at the annotation file that has it.",
        scope="dataset",
        key=p.label,
    )
