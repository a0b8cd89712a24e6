"""A local HTTP server that behaves like the DGX Cloud Lepton workspace API.

Point code at ``fake.url`` as the Lepton gateway::

    with FakeLeptonAPI(workspace_id="tao-ws", token="lep-tok") as fake:
        # GET {fake.url}/api/v2/workspaces/tao-ws/workspace
        #     with "Authorization: Bearer lep-tok"
        ...
        assert {c.method for c in fake.calls} == {"GET"}

Everything goes over real HTTP (stdlib ``ThreadingHTTPServer`` on 127.0.0.1,
ephemeral port). Every request is recorded in ``fake.calls`` (the
Authorization value is replaced by ``<redacted>``), including requests
answered with an injected fault.

Wire behaviour followed (official ``leptonai`` SDK, ``leptonai/api/v2``:
``client.py``, ``utils.py``, ``job.py``, ``dedicated_node_groups.py``,
``types``; its tests; NVIDIA's TAO Lepton handler; docs.nvidia.com
dgx-cloud/lepton "Token"):

* Base ``<gateway>/api/v2/workspaces/<workspace_id>``; the workspace is in the
  path. Auth ``Authorization: Bearer <token>``. The SDK also sends
  ``Origin``; it is recorded, not enforced.
* ``GET  .../workspace``                  workspace info (``build_time``,
  ``git_commit``, ``workspace_name``, ``workspace_tier``,
  ``workspace_state``, ``supported_shapes``, ``workloads``,
  ``resource_quota`` ...).
* ``GET  .../dedicated-node-groups``      list of node groups;
  ``GET .../dedicated-node-groups/<id>`` one.
* ``GET  .../shapes?node_groups=<id>``   resource shapes (``metadata.id``,
  ``spec.accelerator_type/num``, ``cpu``, ``memory_in_mb``, ``listable_in``).
* ``GET  .../jobs``   ``{"jobs": [...]}`` with ``job_query_mode``
  (alive_only | archive_only | alive_and_archive), ``q`` (name substring),
  ``status`` (repeatable), ``page``/``page_size`` (1-based; a page past the
  end is empty, which is how the SDK stops auto-paginating).
* ``POST .../jobs``   create from a LeptonJob ``{"metadata": {"name"},
  "spec": {...}}`` -> 201 with the stored job (``metadata.id`` assigned,
  ``status.state`` "Starting").
* ``GET/PATCH/DELETE .../jobs/<id>``  get, update spec (``stopped: true``
  stops it), delete.
* ``GET/POST .../usersecrets``, ``DELETE .../usersecrets/<name>``  workspace
  secrets (SDK ``api/v2/secret.py``; ``api/v1/secret.py``, which older v2
  clients used, has the same bodies under ``.../secrets``; both paths are
  served, from one store). POST takes a JSON list of ``SecretItem``
  ``{"name", "value"}``; values are write-only: listings carry ``name``,
  ``owner``, ``visibility`` only. Names: letters, digits, ``-``, ``_``,
  ``.``, not starting with a digit, no ``LEPTON_`` prefix (``spec_utils.py``,
  ``lep secret``). An existing name -> 409.
* Job env (``spec.envs``, ``EnvVar``): each entry has a ``name`` and either a
  ``value`` or ``value_from.secret_name_ref``. This fake refuses (400) a
  reference to a secret the workspace does not have - the SDK leaves that
  check to the server ("TODO: sanity check if these secrets exist"), so the
  strictness is this fake's choice (``require_existing_secrets``).
* ``GET .../logs?job=<id>&q=&limit=<n>&direction=backward|forward``
  historical logs (SDK ``api/v2/log.py``): Loki-style ``{"data": {"result":
  [{"stream": {"job", "replica"}, "values": [["<unix ns>", "<line>"], ...]}]}}``;
  ``direction=backward`` gives the newest ``limit`` entries first. Lines come
  from ``add_job_logs``; they outlive the job (as archived logs do); a job id
  never seen -> 404.
* Job states: Starting Running Failed Completed Stopped Stopping Deleting
  Deleted Restarting Archived Queueing Awaiting PendingRetry (SDK
  ``LeptonJobState``).

Errors: the SDK treats error bodies as opaque text (``ClientError: <status>
<body>``); this fake answers ``{"code": "...", "message": "..."}``.
Order: no/unknown/expired token -> 401; unknown workspace -> 404; token of
another workspace -> 403; unknown job or node group -> 404; invalid job
spec -> 400; live job name taken -> 409; unknown path -> 404; wrong method
-> 405. Details the sources do not pin down (job id format, timestamps in
ms, 201 on create, the exact validation) are this fake's choices, stated
here so the launch code relies only on what the SDK relies on: use
``metadata.id`` from the create answer, accept any 2xx.

Fault injection: ``fail_next(status, times, path=..., body=...)`` answers the
next matching requests with ``status``; ``delay`` (seconds) holds every
answer back.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHTTPAPI", "FakeLeptonAPI", "RecordedCall", "JOB_STATES", "SECRET_PATHS"]

REDACTED = "<redacted>"

JOB_STATES = (
    "Starting",
    "Running",
    "Failed",
    "Completed",
    "Stopped",
    "Stopping",
    "Deleting",
    "Deleted",
    "Restarting",
    "Archived",
    "Queueing",
    "Awaiting",
    "PendingRetry",
)
WORKSPACE_STATES = ("normal", "paused", "all-pods-terminated", "terminated")
JOB_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,34}[a-z0-9])?$")  # <= 36 chars, starts with a letter
SECRET_NAME = re.compile(r"^[A-Za-z._-][A-Za-z0-9._-]*$")  # spec_utils.validate_environment_variable_name
SECRET_PATHS = ("/usersecrets", "/secrets")


# --------------------------------------------------------------------------- shared machinery


@dataclass
class RecordedCall:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # Authorization value replaced by <redacted>
    body: Any  # parsed JSON, else the raw text, else None
    status: int = 0  # what the fake answered
    at: float = field(default_factory=time.time)

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class _Fault:
    status: int
    remaining: int
    path: str | None
    method: str | None
    body: Any
    retry_after: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAPI/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _serve(self) -> None:
        fake: FakeHTTPAPI = self.server.fake  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        text = raw.decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(text) if text.strip() else None
        except ValueError:
            body = text
        headers = {}
        token = None
        for k, v in self.headers.items():
            if k.lower() == "authorization":
                scheme, _, value = v.partition(" ")
                if scheme.lower() == "bearer" and value.strip():
                    token = value.strip()
                headers[k] = f"{scheme} {REDACTED}" if value else REDACTED
            else:
                headers[k] = v
        call = RecordedCall(self.command, unquote(split.path), parse_qs(split.query), headers, body)
        with fake._lock:
            fake.calls.append(call)
        if fake.delay:
            time.sleep(fake.delay)
        extra: dict[str, str] = {}
        fault = fake._take_fault(call)
        if fault is not None:
            status = fault.status
            payload = fault.body if fault.body is not None else fake._error_body(status, "injected fault")
            if fault.retry_after:
                extra["Retry-After"] = fault.retry_after
        else:
            try:
                with fake._lock:
                    status, payload = fake._route(call, token)
            except Exception as exc:  # a bug in the fake must still answer, and be visible
                fake.errors.append(exc)
                status, payload = 500, fake._error_body(500, f"fake crashed: {type(exc).__name__}")
        call.status = status
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class FakeHTTPAPI:
    """An HTTP server on 127.0.0.1 (ephemeral port) that records calls and injects faults.

    Subclasses implement ``_route(call, token) -> (status, json_payload)`` and
    ``_error_body(status, message)``; both run under ``self._lock``.
    """

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self.errors: list[Exception] = []
        self.delay: float = 0.0
        self._faults: deque[_Fault] = deque()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # fault injection
    def fail_next(
        self,
        status: int = 503,
        times: int = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        body: Any = None,
        retry_after: str | None = None,
    ) -> None:
        """Answer the next `times` requests (whose path contains `path`, if given) with `status`."""
        with self._lock:
            self._faults.append(_Fault(status, times, path, method.upper() if method else None, body, retry_after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, call: RecordedCall) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is not None and fault.path not in call.path:
                    continue
                if fault.method is not None and fault.method != call.method:
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # call record
    def calls_to(self, method: str | None = None, path: str | None = None) -> list[RecordedCall]:
        """Recorded calls, optionally only those with this method and whose path contains `path`."""
        with self._lock:
            return [
                c
                for c in self.calls
                if (method is None or c.method == method.upper()) and (path is None or path in c.path)
            ]

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def _route(self, call: RecordedCall, token: str | None) -> tuple[int, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _error_body(self, status: int, message: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------- Lepton


def _now_ms() -> int:
    return int(time.time() * 1000)


def make_node_group(
    group_id: str,
    *,
    name: str | None = None,
    ready_nodes: int = 2,
    gpu_product: str = "NVIDIA-H100-80GB-HBM3",
    workspaces: Sequence[str] = (),
) -> dict:
    """A DedicatedNodeGroup object (SDK types/dedicated_node_group.py)."""
    return {
        "metadata": {"id": group_id, "name": name or group_id, "created_at": _now_ms(), "version": 1},
        "spec": {
            "workspaces": list(workspaces),
            "allocation_mode": "auto",
            "infini_band_enabled": True,
            "gpu_product": gpu_product,
            "desired_nodes": ready_nodes,
        },
        "status": {"ready_nodes": ready_nodes, "quota_enabled": False},
    }


def make_shape(shape_id: str, *, accelerator_type: str | None = "H100-SXM", accelerator_num: int = 1) -> dict:
    """A resource shape as the `/shapes` endpoint lists them (TAO Lepton handler's reading)."""
    return {
        "metadata": {"id": shape_id, "name": shape_id},
        "spec": {
            "description": shape_id,
            "cpu": 16 * max(accelerator_num, 1) if accelerator_type else 4,
            "memory_in_mb": 196608 * max(accelerator_num, 1) if accelerator_type else 16384,
            "ephemeral_storage_in_gb": 500,
            "accelerator_type": accelerator_type,
            "accelerator_num": accelerator_num if accelerator_type else 0,
            "accelerator_memory_in_mb": 81920 if accelerator_type else 0,
            "listable_in": ["job", "deployment", "pod"],
        },
    }


DEFAULT_SHAPES = (
    ("cpu.small", None, 0),
    ("gpu.h100-sxm", "H100-SXM", 1),
    ("gpu.2xh100-sxm", "H100-SXM", 2),
    ("gpu.4xh100-sxm", "H100-SXM", 4),
    ("gpu.8xh100-sxm", "H100-SXM", 8),
)


@dataclass
class _Workspace:
    id: str
    tokens: set[str]
    name: str
    state: str
    node_groups: list[dict]
    shapes: list[dict]
    jobs: dict[str, dict] = field(default_factory=dict)
    secrets: dict[str, dict] = field(default_factory=dict)  # name -> {"name", "value", "owner", "visibility"}
    logs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # job id -> [(unix ns, line)]


class FakeLeptonAPI(FakeHTTPAPI):
    """The Lepton workspace API for one or more workspaces, each with its own valid token(s).

    Args:
        workspace_id, token: the main workspace and a token valid for it
            (``token`` may be a list of tokens).
        workspace_name / workspace_state: the workspace info answer
            (state one of normal, paused, all-pods-terminated, terminated).
        node_groups: node-group ids or ``make_node_group(...)`` dicts visible in
            the main workspace (default one, ``ng-h100``, 2 ready nodes);
            ``[]`` for none.
        shapes: shape ids or ``make_shape(...)`` dicts (default cpu.small,
            gpu.h100-sxm, gpu.{2,4,8}xh100-sxm).
        extra_workspaces: ``{workspace_id: token}`` more workspaces (their
            tokens get 403 on the main one, and vice versa).
        expired_tokens: tokens answered 401 "token expired".
        require_node_group: job creation needs
            ``spec.affinity.allowed_dedicated_node_groups`` naming a known group.
        require_existing_secrets: job creation refuses an env
            ``value_from.secret_name_ref`` naming no secret of the workspace.
        user: the ``created_by`` recorded on jobs.
    """

    def __init__(
        self,
        workspace_id: str = "tao-ws",
        token: str | Sequence[str] = "lep-test-token",
        *,
        workspace_name: str | None = None,
        workspace_state: str = "normal",
        node_groups: Sequence[str | dict] | None = None,
        shapes: Sequence[str | dict] | None = None,
        extra_workspaces: Mapping[str, str | Sequence[str]] | None = None,
        expired_tokens: Iterable[str] = (),
        require_node_group: bool = True,
        require_existing_secrets: bool = True,
        user: str = "tao-bot@example.com",
    ) -> None:
        super().__init__()
        self.workspace_id = workspace_id
        self.expired_tokens = set(expired_tokens)
        self.require_node_group = require_node_group
        self.require_existing_secrets = require_existing_secrets
        self.user = user
        self.workspaces: dict[str, _Workspace] = {}
        self.add_workspace(
            workspace_id, token, name=workspace_name, state=workspace_state, node_groups=node_groups, shapes=shapes
        )
        for ws, tok in (extra_workspaces or {}).items():
            self.add_workspace(ws, tok)

    # ------------------------------------------------------------------ state helpers

    def add_workspace(
        self,
        workspace_id: str,
        token: str | Sequence[str],
        *,
        name: str | None = None,
        state: str = "normal",
        node_groups: Sequence[str | dict] | None = None,
        shapes: Sequence[str | dict] | None = None,
    ) -> None:
        assert state in WORKSPACE_STATES, state
        groups = [make_node_group("ng-h100")] if node_groups is None else node_groups
        groups = [make_node_group(g) if isinstance(g, str) else copy.deepcopy(g) for g in groups]
        for g in groups:
            g.setdefault("spec", {}).setdefault("workspaces", [])
            if workspace_id not in g["spec"]["workspaces"]:
                g["spec"]["workspaces"].append(workspace_id)
        shape_list = (
            [make_shape(s, accelerator_type=t, accelerator_num=n) for s, t, n in DEFAULT_SHAPES]
            if shapes is None
            else [make_shape(s) if isinstance(s, str) else copy.deepcopy(s) for s in shapes]
        )
        tokens = {token} if isinstance(token, str) else set(token)
        with self._lock:
            self.workspaces[workspace_id] = _Workspace(
                workspace_id, tokens, name or workspace_id, state, groups, shape_list
            )

    def set_workspace_state(self, state: str, workspace_id: str | None = None) -> None:
        assert state in WORKSPACE_STATES, state
        with self._lock:
            self.workspaces[workspace_id or self.workspace_id].state = state

    def jobs(self, workspace_id: str | None = None) -> list[dict]:
        """Copies of the jobs stored in a workspace (default the main one)."""
        with self._lock:
            return copy.deepcopy(list(self.workspaces[workspace_id or self.workspace_id].jobs.values()))

    def job(self, job_id: str, workspace_id: str | None = None) -> dict | None:
        with self._lock:
            job = self.workspaces[workspace_id or self.workspace_id].jobs.get(job_id)
            return copy.deepcopy(job) if job else None

    def add_job(
        self, name: str, *, state: str = "Running", workspace_id: str | None = None, spec: dict | None = None
    ) -> dict:
        """Put a job in the workspace directly (not recorded as a call)."""
        ws = self.workspaces[workspace_id or self.workspace_id]
        with self._lock:
            job = self._new_job(ws, {"name": name}, spec or {"resource_shape": ws.shapes[0]["metadata"]["id"]})
            ws.jobs[job["metadata"]["id"]] = job
            self._set_state(job, state)
            return copy.deepcopy(job)

    def secrets(self, workspace_id: str | None = None) -> dict[str, str]:
        """The workspace's secrets, name -> value (what the job would receive)."""
        with self._lock:
            return {n: s["value"] for n, s in self.workspaces[workspace_id or self.workspace_id].secrets.items()}

    def add_secret(self, name: str, value: str, workspace_id: str | None = None) -> None:
        with self._lock:
            self.workspaces[workspace_id or self.workspace_id].secrets[name] = {
                "name": name,
                "value": value,
                "owner": self.user,
                "visibility": "private",
            }

    def add_job_logs(self, job_id: str, lines: Sequence[str], workspace_id: str | None = None) -> None:
        """Append log lines for a job (each gets the next nanosecond timestamp)."""
        with self._lock:
            entries = self.workspaces[workspace_id or self.workspace_id].logs.setdefault(job_id, [])
            start = max([e[0] for e in entries], default=time.time_ns())
            entries.extend((start + i + 1, line) for i, line in enumerate(lines))

    def set_job_state(self, job_id: str, state: str, workspace_id: str | None = None) -> dict:
        """Move a job to `state` (one of JOB_STATES), updating its counters the way Lepton reports them."""
        with self._lock:
            job = self.workspaces[workspace_id or self.workspace_id].jobs[job_id]
            self._set_state(job, state)
            return copy.deepcopy(job)

    # ------------------------------------------------------------------ wire

    def _error_body(self, status: int, message: str) -> Any:
        codes = {
            400: "InvalidParameter",
            401: "Unauthorized",
            403: "Forbidden",
            404: "NotFound",
            405: "MethodNotAllowed",
            409: "AlreadyExists",
            429: "TooManyRequests",
            500: "InternalError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }
        return {"code": codes.get(status, f"HTTP{status}"), "message": message}

    def _err(self, status: int, message: str) -> tuple[int, Any]:
        return status, self._error_body(status, message)

    def _route(self, call: RecordedCall, token: str | None) -> tuple[int, Any]:
        m = re.match(r"^/api/v2/workspaces/([^/]+)(/.*)?$", call.path)
        if not m:
            return self._err(404, f"path {call.path} not found")
        ws_id, rest = m.group(1), (m.group(2) or "/").rstrip("/") or "/"
        if token is None:
            return self._err(401, "missing bearer token in the Authorization header")
        if token in self.expired_tokens:
            return self._err(401, "token expired")
        if not any(token in w.tokens for w in self.workspaces.values()):
            return self._err(401, "invalid token")
        ws = self.workspaces.get(ws_id)
        if ws is None:
            return self._err(404, f"workspace {ws_id} not found")
        if token not in ws.tokens:
            return self._err(403, f"token is not authorized for workspace {ws_id}")
        return self._workspace_route(ws, call, rest)

    def _workspace_route(self, ws: _Workspace, call: RecordedCall, rest: str) -> tuple[int, Any]:
        method = call.method
        if rest == "/workspace":
            return (200, self._info(ws)) if method == "GET" else self._err(405, f"{method} not allowed")
        if rest == "/dedicated-node-groups":
            return (200, copy.deepcopy(ws.node_groups)) if method == "GET" else self._err(405, f"{method} not allowed")
        m = re.match(r"^/dedicated-node-groups/([^/]+)$", rest)
        if m:
            if method != "GET":
                return self._err(405, f"{method} not allowed")
            group = self._node_group(ws, m.group(1))
            return (200, copy.deepcopy(group)) if group else self._err(404, f"node group {m.group(1)} not found")
        if rest == "/shapes":
            if method != "GET":
                return self._err(405, f"{method} not allowed")
            wanted = call.query.get("node_groups")
            if wanted and not all(self._node_group(ws, g) for g in wanted):
                return 200, []
            return 200, copy.deepcopy(ws.shapes)
        if rest == "/jobs":
            if method == "GET":
                return 200, {"jobs": self._list_jobs(ws, call.query)}
            if method == "POST":
                return self._create_job(ws, call.body)
            return self._err(405, f"{method} not allowed")
        if rest in SECRET_PATHS:
            if method == "GET":
                return 200, [{k: v for k, v in s.items() if k != "value"} for s in ws.secrets.values()]
            if method == "POST":
                return self._create_secrets(ws, call.body)
            return self._err(405, f"{method} not allowed")
        m = re.match(r"^(/usersecrets|/secrets)/([^/]+)$", rest)
        if m:
            if method != "DELETE":
                return self._err(405, f"{method} not allowed")
            if ws.secrets.pop(m.group(2), None) is None:
                return self._err(404, f"secret {m.group(2)} not found")
            return 200, None
        if rest == "/logs":
            return self._logs(ws, call.query) if method == "GET" else self._err(405, f"{method} not allowed")
        m = re.match(r"^/jobs/([^/]+)$", rest)
        if m:
            job = ws.jobs.get(m.group(1))
            if job is None:
                return self._err(404, f"job {m.group(1)} not found")
            if method == "GET":
                return 200, copy.deepcopy(job)
            if method == "DELETE":
                del ws.jobs[m.group(1)]
                return 200, None
            if method == "PATCH":
                return self._update_job(ws, job, call.body)
            return self._err(405, f"{method} not allowed")
        return self._err(404, f"path {call.path} not found")

    def _node_group(self, ws: _Workspace, key: str) -> dict | None:
        return next((g for g in ws.node_groups if key in (g["metadata"].get("id"), g["metadata"].get("name"))), None)

    def _info(self, ws: _Workspace) -> dict:
        gpus_used = sum(
            (j["spec"].get("parallelism") or 1) * self._shape_gpus(ws, j["spec"].get("resource_shape"))
            for j in ws.jobs.values()
            if j["status"]["state"] in ("Starting", "Running", "Restarting")
        )
        return {
            "build_time": "2025-06-01T00:00:00Z",
            "git_commit": "0.26.0",
            "workspace_name": ws.name,
            "workspace_tier": "enterprise",
            "workspace_state": ws.state,
            "supported_shapes": {
                s["metadata"]["id"]: {
                    k: s["spec"].get(k)
                    for k in ("description", "cpu", "memory_in_mb", "accelerator_type", "accelerator_num")
                }
                for s in ws.shapes
            },
            "workspace_disk_usage_bytes": 0,
            "workloads": {
                "num_photons": 0,
                "num_deployments": 0,
                "num_jobs": len(ws.jobs),
                "num_pods": 0,
                "num_secrets": 0,
                "num_image_pull_secrets": 0,
            },
            "resource_quota": {
                "limit": {"cpu": 0, "memory": 0, "accelerator_num": 0},
                "used": {"cpu": 0, "memory": 0, "accelerator_num": gpus_used},
            },
            "dedicated_node_group_only": bool(ws.node_groups),
        }

    def _shape_gpus(self, ws: _Workspace, shape_id: str | None) -> int:
        shape = next((s for s in ws.shapes if s["metadata"]["id"] == shape_id), None)
        return int(shape["spec"].get("accelerator_num") or 0) if shape else 0

    def _list_jobs(self, ws: _Workspace, query: dict[str, list[str]]) -> list[dict]:
        mode = (query.get("job_query_mode") or ["alive_only"])[0]
        jobs = list(ws.jobs.values())
        if mode == "archive_only":
            jobs = [j for j in jobs if j["status"]["state"] == "Archived"]
        elif mode == "alive_only":
            jobs = [j for j in jobs if j["status"]["state"] != "Archived"]
        if query.get("q"):
            jobs = [j for j in jobs if query["q"][0] in j["metadata"]["name"]]
        if query.get("status"):
            wanted = set(query["status"])
            jobs = [j for j in jobs if j["status"]["state"] in wanted]
        if query.get("node_groups"):
            wanted = set(query["node_groups"])
            jobs = [
                j
                for j in jobs
                if wanted & set(((j["spec"].get("affinity") or {}).get("allowed_dedicated_node_groups") or []))
            ]
        if "page" in query or "page_size" in query:
            try:
                page = max(int((query.get("page") or ["1"])[0]), 1)
                size = max(int((query.get("page_size") or ["50"])[0]), 1)
            except ValueError:
                page, size = 1, 50
            jobs = jobs[(page - 1) * size : page * size]
        return copy.deepcopy(jobs)

    def _create_job(self, ws: _Workspace, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return self._err(400, "request body must be a JSON LeptonJob object")
        meta = body.get("metadata")
        spec = body.get("spec")
        if not isinstance(meta, dict) or not meta.get("name"):
            return self._err(400, "metadata.name is required")
        name = meta["name"]
        if not isinstance(name, str) or not JOB_NAME.match(name):
            return self._err(
                400,
                f"invalid job name {name!r}: at most 36 lowercase letters, digits and dashes, starting with a letter",
            )
        if not isinstance(spec, dict):
            return self._err(400, "spec is required")
        container = spec.get("container") or {}
        if not isinstance(container, dict) or not container.get("image"):
            return self._err(400, "spec.container.image is required")
        shape = spec.get("resource_shape")
        if not shape:
            return self._err(400, "spec.resource_shape is required")
        if not any(s["metadata"]["id"] == shape for s in ws.shapes):
            return self._err(400, f"unknown resource shape {shape!r}")
        groups = ((spec.get("affinity") or {}).get("allowed_dedicated_node_groups")) or []
        for g in groups:
            if not self._node_group(ws, g):
                return self._err(400, f"node group {g!r} is not available in workspace {ws.id}")
        if self.require_node_group and ws.node_groups and not groups:
            return self._err(400, "spec.affinity.allowed_dedicated_node_groups must name a node group")
        for key in ("completions", "parallelism"):
            if spec.get(key) is not None and (not isinstance(spec[key], int) or spec[key] < 1):
                return self._err(400, f"spec.{key} must be a positive integer")
        envs = spec.get("envs") or []
        if not isinstance(envs, list):
            return self._err(400, "spec.envs must be a list")
        for env in envs:
            if not isinstance(env, dict) or not env.get("name"):
                return self._err(400, "every spec.envs entry needs a name")
            has_value = env.get("value") is not None
            ref = (
                (env.get("value_from") or {}).get("secret_name_ref")
                if isinstance(env.get("value_from"), dict)
                else None
            )
            if has_value == bool(ref):
                return self._err(400, f"env {env['name']}: give exactly one of value and value_from.secret_name_ref")
            if ref and self.require_existing_secrets and ref not in ws.secrets:
                return self._err(400, f"env {env['name']}: secret {ref} not found in workspace {ws.id}")
        if any(
            j["metadata"]["name"] == name and j["status"]["state"] not in ("Archived", "Deleted")
            for j in ws.jobs.values()
        ):
            return self._err(409, f"job {name} already exists")
        job = self._new_job(ws, meta, spec)
        ws.jobs[job["metadata"]["id"]] = job
        return 201, copy.deepcopy(job)

    def _new_job(self, ws: _Workspace, meta: dict, spec: dict) -> dict:
        suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))
        job_id = f"{meta['name']}-{suffix}"
        now = _now_ms()
        full_spec = {
            "completions": 1,
            "parallelism": 1,
            "envs": [],
            "mounts": [],
            "image_pull_secrets": [],
            "ttl_seconds_after_finished": 600,
            **copy.deepcopy(spec),
        }
        return {
            "metadata": {
                **{k: v for k, v in copy.deepcopy(meta).items() if k not in ("id", "created_at", "created_by")},
                "id": job_id,
                "name": meta["name"],
                "created_at": now,
                "created_by": self.user,
                "owner": self.user,
                "version": 1,
                "visibility": meta.get("visibility") or "private",
            },
            "spec": full_spec,
            "status": {
                "job_name": meta["name"],
                "state": "Starting",
                "ready": 0,
                "active": 0,
                "failed": 0,
                "succeeded": 0,
                "creation_time": now,
                "completion_time": None,
                "job_history": [],
            },
        }

    def _create_secrets(self, ws: _Workspace, body: Any) -> tuple[int, Any]:
        items = body if isinstance(body, list) else None
        if not items:
            return self._err(400, "request body must be a non-empty JSON list of secrets")
        for item in items:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or not isinstance(item.get("value"), str)
            ):
                return self._err(400, "every secret needs a string name and value")
            name = item["name"]
            if not SECRET_NAME.match(name) or name.upper().startswith("LEPTON_"):
                return self._err(400, f"invalid secret name {name!r}")
            if name in ws.secrets:
                return self._err(409, f"secret {name} already exists")
        if len({i["name"] for i in items}) != len(items):
            return self._err(400, "duplicate secret names in one request")
        for item in items:
            ws.secrets[item["name"]] = {
                "name": item["name"],
                "value": item["value"],
                "owner": self.user,
                "visibility": item.get("visibility") or "private",
            }
        return 200, None

    def _logs(self, ws: _Workspace, query: dict[str, list[str]]) -> tuple[int, Any]:
        job_id = (query.get("job") or [""])[0]
        if not job_id:
            return self._err(400, "this fake serves job logs only: give job=<id>")
        if job_id not in ws.logs and job_id not in ws.jobs:
            return self._err(404, f"job {job_id} not found")
        try:
            limit = int((query.get("limit") or ["5000"])[0])
        except ValueError:
            return self._err(400, "limit must be an integer")
        if limit <= 0:
            return self._err(400, "limit must be positive")
        direction = (query.get("direction") or ["backward"])[0]
        if direction not in ("backward", "forward"):
            return self._err(400, "direction must be forward or backward")
        entries = sorted(ws.logs.get(job_id, []))
        entries = list(reversed(entries))[:limit] if direction == "backward" else entries[:limit]
        values = [[str(ts), line] for ts, line in entries]
        result = [{"stream": {"job": job_id, "replica": f"{job_id}-0"}, "values": values}] if values else []
        return 200, {"status": "success", "data": {"resultType": "streams", "result": result}}

    def _update_job(self, ws: _Workspace, job: dict, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return self._err(400, "request body must be a JSON object")
        spec = body.get("spec", body)
        if not isinstance(spec, dict):
            return self._err(400, "spec must be an object")
        job["spec"].update(copy.deepcopy(spec))
        job["metadata"]["version"] += 1
        if spec.get("stopped") is True and job["status"]["state"] in (
            "Starting",
            "Running",
            "Queueing",
            "Awaiting",
            "Restarting",
        ):
            self._set_state(job, "Stopped")
        elif spec.get("stopped") is False and job["status"]["state"] == "Stopped":
            self._set_state(job, "Starting")
        return 200, copy.deepcopy(job)

    def _set_state(self, job: dict, state: str) -> None:
        assert state in JOB_STATES, state
        status = job["status"]
        previous = {k: v for k, v in status.items() if k != "job_history"}
        if previous["state"] != state:
            status["job_history"].append(previous)
        n = job["spec"].get("parallelism") or 1
        status["state"] = state
        status["active"] = n if state in ("Running", "Restarting") else 0
        status["ready"] = n if state == "Running" else 0
        if state == "Completed":
            status["succeeded"] = job["spec"].get("completions") or 1
        if state == "Failed":
            status["failed"] = max(status.get("failed") or 0, 1)
        if state in ("Completed", "Failed", "Stopped"):
            status["completion_time"] = _now_ms()
