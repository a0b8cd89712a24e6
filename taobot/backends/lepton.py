"""Lepton (DGX Cloud Lepton) backend over the workspace REST API v2.

Wire behaviour followed (the official ``leptonai`` SDK: ``api/v2/job.py``,
``api/v2/types/job.py``, ``api/v2/types/deployment.py`` for ``EnvVar``/
``EnvValue``/``Mount``/``LeptonContainer``, ``api/v2/secret.py`` and
``api/v1/secret.py``, ``api/v2/log.py``, ``api/v2/spec_utils.py``; the CLI's
``lep secret`` docs), all under ``<gateway>/api/v2/workspaces/<workspace id>``
with ``Authorization: Bearer <token>`` and ``Origin`` (see
``taobot.preflight.lepton`` for the base URL and auth):

* Secrets: ``POST /usersecrets`` with a JSON list of ``{"name", "value"}``
  (``SecretItem``; the value is write-only, never returned), ``DELETE
  /usersecrets/<name>``. The current SDK's ``SecretAPI`` uses ``/usersecrets``;
  older clients used ``/secrets`` with the same bodies (``SECRETS_PATH``).
  Names: letters, digits, ``-``, ``_``, ``.``, not starting with a digit, no
  ``LEPTON_`` prefix. Each launch creates its own secrets, named
  ``tao-<launch id>-<credential>`` (``tao-a1b2c3d4-01234-hf-token``); the job
  env refers to them with ``{"name": "HF_TOKEN", "value_from":
  {"secret_name_ref": "tao-…-hf-token"}}``. A plain value never appears in
  the job object. If a secret of that name exists (a retried launch) it is
  deleted and created again.
* Job: ``POST /jobs`` with a ``LeptonJob`` ``{"metadata": {"name"}, "spec":
  {"container": {"image", "command": [...]}, "resource_shape",
  "completions", "parallelism", "envs", "mounts", "affinity":
  {"allowed_dedicated_node_groups": [...]}, "intra_job_communication",
  "image_pull_secrets", "ttl_seconds_after_finished"}}``; the id to keep is
  ``metadata.id`` of the answer. Nodes map to ``completions = parallelism =
  num_nodes``; the workers find each other through ``LEPTON_JOB_WORKER_INDEX``,
  ``LEPTON_JOB_TOTAL_WORKERS``, ``LEPTON_JOB_SERVICE_PREFIX`` and
  ``LEPTON_SUBDOMAIN``, which Lepton sets in every replica.
* Resource shape: ``gpu.h100-sxm`` for 1 GPU, ``gpu.<n>xh100-sxm`` for n,
  ``cpu.small`` for none; ``LEPTON_RESOURCE_SHAPE`` overrides it. Node group:
  ``LEPTON_NODE_GROUP`` (id or name, resolved through ``GET
  /dedicated-node-groups``); without it the only visible group is used, and
  several visible groups are a refusal that lists them. Optional
  ``LEPTON_MOUNTS`` (comma-separated ``FROM_PATH:MOUNT_PATH:VOLUME``, the CLI's
  ``--mount`` form), ``LEPTON_IMAGE_PULL_SECRET`` (an existing image pull
  secret) and ``LEPTON_RESULTS_DIR``.
* The TAO spec: Lepton jobs have no file upload, so the rendered YAML/TOML
  travels base64-encoded in the ``TAO_SPEC_B64`` env var; the container
  command is ``/bin/bash -c <script>`` whose first lines write it to
  ``/tmp/tao-spec.<ext>``, then run the action command with ``{config_path}``
  replaced by that (shell-quoted) path.
* Poll: ONE ``GET /jobs?job_query_mode=alive_and_archive&q=tao-&page=1
  &page_size=500`` per workspace for all its jobs (an explicit page makes the
  SDK, and so the server, answer in one request). ``status.state`` is one of
  ``LeptonJobState``; ``Archived`` jobs are judged by the last state in
  ``status.job_history``. A job the list does not have is Unknown. Log tails
  asked for (``tails_for``) cost one ``GET /logs`` each. When a job is seen
  finished, its per-launch secrets are deleted (best effort).
* Logs: ``GET /logs?job=<id>&q=&limit=<n>&direction=backward
  &job_query_mode=alive_and_archive`` answers Loki-style ``{"data":
  {"result": [{"stream": {...}, "values": [[<ns>, <line>], ...]}]}}``.
* Cancel: ``DELETE /jobs/<id>`` (404: already gone, fine), then the
  per-launch secrets are deleted (404 fine).

Errors: 5xx, 429 (after honouring ``Retry-After`` once) and transport
failures raise `BackendUnreachable` ("could not ask"); 4xx refusals raise
`LaunchFailed` from `launch` with the API's message. Redirects are never
followed, so the token stays on the gateway host. The token and every job
secret are scrubbed from every message.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

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
from taobot.preflight.base import quote
from taobot.render import render, render_args
from taobot.rest import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, Reply, RestClient, RetryRule, said, scrub

log = logging.getLogger(__name__)

WORKSPACE_ID = "LEPTON_WORKSPACE_ID"
AUTH_TOKEN = "LEPTON_AUTH_TOKEN"
RESOURCE_SHAPE = "LEPTON_RESOURCE_SHAPE"
NODE_GROUP = "LEPTON_NODE_GROUP"
MOUNTS = "LEPTON_MOUNTS"
IMAGE_PULL_SECRET = "LEPTON_IMAGE_PULL_SECRET"
RESULTS_DIR = "LEPTON_RESULTS_DIR"

DASHBOARD_URL = "https://dashboard.dgxc-lepton.nvidia.com"
SECRETS_PATH = "/usersecrets"
JOB_PREFIX = "tao-"
JOB_NAME_MAX = 36
LIST_PAGE_SIZE = 500
TTL_AFTER_FINISHED_S = 3600  # long enough for the monitor to see the final state before Lepton archives the job
SPEC_ENV = "TAO_SPEC_B64"
TAIL_LINES = 20
MASTER_PORT = 29500

STATE_MAP = {
    "Starting": JobState.PENDING,
    "Queueing": JobState.PENDING,
    "Awaiting": JobState.PENDING,
    "PendingRetry": JobState.PENDING,
    "Restarting": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Stopped": JobState.CANCELLED,
    "Stopping": JobState.CANCELLED,
    "Deleting": JobState.CANCELLED,
    "Deleted": JobState.CANCELLED,
    "Terminating": JobState.CANCELLED,
}


def normalise(native: str) -> JobState:
    return STATE_MAP.get(native, JobState.UNKNOWN)


# =========================================================================== helpers


def secret_name(launch_id: str, credential: str) -> str:
    """`tao-<launch id>-hf-token`: letters, digits and dashes only."""
    raw = f"tao-{launch_id}-{credential}".lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9.-]", "-", raw)).strip("-")


def job_name(spec: LaunchSpec) -> str:
    """A Lepton job name (<= 36 lowercase letters, digits, dashes; starts with a letter) that keeps the launch id."""

    def clean(text: str) -> str:
        return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")

    launch = clean(spec.launch_id)
    for candidate in (f"tao-{spec.model}-{spec.action}-{launch}", f"tao-{spec.action}-{launch}", f"tao-{launch}"):
        name = clean(candidate)
        if len(name) <= JOB_NAME_MAX:
            return name
    return clean(f"tao-{launch}"[:JOB_NAME_MAX])


def resource_shape(num_gpus: int) -> str:
    if num_gpus <= 0:
        return "cpu.small"
    return "gpu.h100-sxm" if num_gpus == 1 else f"gpu.{num_gpus}xh100-sxm"


def parse_mounts(text: str) -> list[dict]:
    """`FROM_PATH:MOUNT_PATH:VOLUME[,...]` (the `lep job create --mount` form) -> Mount objects."""
    mounts = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split(":", 2)
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise LaunchFailed(f"{MOUNTS} entry `{item}` is not FROM_PATH:MOUNT_PATH:VOLUME (e.g. /shared/tao:/mnt/tao:node-nfs:my-nfs)")
        mounts.append({"path": parts[0].strip(), "mount_path": parts[1].strip(), "from": parts[2].strip()})
    return mounts


def container_script(spec: LaunchSpec, results_dir: str, config_path: str) -> str:
    """The bash script the container runs: write the spec from its env var, set the topology, run the action."""
    command = spec.command.replace("{config_path}", quote(config_path))
    if spec.config_format == "args":
        flat = {k: (results_dir if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
        command += " " + " ".join(quote(a) for a in render_args(flat))
    lines = ["set -euo pipefail"]
    if spec.config_format != "args":
        lines.append(f"printf '%s' \"${{{SPEC_ENV}}}\" | base64 -d > {quote(config_path)}")
    if results_dir.startswith("/"):
        lines.append(f"mkdir -p {quote(results_dir)}")
    lines += [
        f"export TAO_API_RESULTS_DIR={quote(results_dir)}",
        f"export NUM_GPU_PER_NODE={int(spec.num_gpus)}",
        "export NUM_NODES=${LEPTON_JOB_TOTAL_WORKERS:-1}",
        "export NODE_RANK=${LEPTON_JOB_WORKER_INDEX:-0}",
        f"export WORLD_SIZE=$(( ${{LEPTON_JOB_TOTAL_WORKERS:-1}} * {int(spec.num_gpus)} ))",
        "if [ \"${LEPTON_JOB_TOTAL_WORKERS:-1}\" -gt 1 ]; then "
        "export MASTER_ADDR=\"${LEPTON_JOB_SERVICE_PREFIX:-$LEPTON_JOB_NAME}-0.${LEPTON_SUBDOMAIN:-$LEPTON_JOB_NAME-job-svc}\"; "
        "else export MASTER_ADDR=localhost; fi",
        f"export MASTER_PORT={MASTER_PORT}",
        f"echo \"taobot launch {spec.launch_id}: $(date -u +%FT%TZ) on $(hostname)\"",
        command,
    ]
    return "\n".join(lines) + "\n"


def merge_log_lines(body: Any, lines: int) -> list[str]:
    """The newest `lines` log lines of a Loki-style /logs answer, oldest first."""
    entries: list[tuple[int, str]] = []
    result = body.get("data", {}).get("result") if isinstance(body, dict) and isinstance(body.get("data"), dict) else None
    for stream in result or ():
        for value in (stream.get("values") or []) if isinstance(stream, dict) else ():
            if isinstance(value, (list, tuple)) and len(value) >= 2:
                try:
                    ts = int(value[0])
                except (TypeError, ValueError):
                    ts = 0
                for part in str(value[1]).splitlines() or [""]:
                    entries.append((ts, part))
    entries.sort(key=lambda e: e[0])
    return [text for _, text in entries][-lines:] if lines > 0 else []


def _history_state(job: dict) -> str | None:
    history = (job.get("status") or {}).get("job_history") or []
    for entry in reversed(history):
        state = entry.get("state") if isinstance(entry, dict) else None
        if state and state != "Archived":
            return state
    return None


def job_status(job: dict, tail: tuple[str, ...] = ()) -> JobStatus:
    status = job.get("status") or {}
    native = str(status.get("state") or "")
    judged = native
    if native == "Archived":
        judged = _history_state(job) or native
    state = normalise(judged)
    reason = None
    if state is JobState.FAILED:
        failed = status.get("failed")
        reason = f"{failed} replica{'s' if failed != 1 else ''} failed" if isinstance(failed, int) and failed else "the job failed"
    elif state is JobState.CANCELLED:
        reason = f"the job is {judged.lower()}"
    elif native == "Archived" and judged != native:
        reason = f"archived after {judged.lower()}"
    elif state is JobState.UNKNOWN:
        reason = f"Lepton reports state `{native or 'none'}`"
    shown = native if judged == native else f"{native} ({judged})"
    return JobStatus(state, shown, reason, None, tail)


def _as_list(body: Any, key: str) -> list | None:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        if isinstance(body.get(key), list):
            return body[key]
        return next((v for v in body.values() if isinstance(v, list)), None)
    return None


# =========================================================================== the backend


class LeptonBackend:
    name = "lepton"

    def __init__(self, api_url: str, timeout: float = 10, dashboard_url: str = DASHBOARD_URL) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.dashboard_url = dashboard_url.rstrip("/")
        self.requests_made = 0  # HTTP requests sent; the benchmark reads it
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    def _count(self) -> None:
        with self._lock:
            self.requests_made += 1

    def _workspace(self, creds: Mapping[str, str], details: Mapping[str, str] | None = None) -> str:
        return ((details or {}).get("workspace_id") or creds.get(WORKSPACE_ID) or "").strip()

    def _client(self, creds: Mapping[str, str], ws: str, secrets: Iterable[str] = ()) -> RestClient:
        base = f"{self.api_url}/api/v2/workspaces/{urllib.parse.quote(ws, safe='')}"
        parts = urllib.parse.urlsplit(self.api_url)
        return RestClient(
            base,
            (creds.get(AUTH_TOKEN) or "").strip(),
            self.timeout,
            "the Lepton API",
            headers={"Origin": f"{parts.scheme}://{parts.netloc}"},
            secrets=(creds.get(AUTH_TOKEN) or "", *secrets),
            # A 429 waits what Retry-After asks (at most MAX_RETRY_AFTER_S) once; a 5xx is not repeated.
            retry=RetryRule(gateway=False, max_wait_s=MAX_RETRY_AFTER_S, default_wait_s=DEFAULT_RETRY_AFTER_S),
            on_request=self._count,
        )

    def connection_key(self, job: JobRef) -> str:
        return f"{self.api_url}|lepton|{self._workspace(job.platform_credentials, job.details)}"

    def dashboard_job_url(self, ws: str, job_id: str) -> str:
        return f"{self.dashboard_url}/workspace/{ws}/compute/jobs/detail/{job_id}/replicas/list"

    @staticmethod
    def _refused(reply: Reply, ws: str, what: str, secrets: Iterable[str]) -> str:
        """Why a 3xx/4xx answer refused `what`, naming the credential to fix."""
        words = said(reply, secrets)
        words = f": {words}" if words else ""
        if reply.status == 401:
            return (f"Lepton refused {AUTH_TOKEN} for workspace `{ws}` (HTTP 401{words}); the token is wrong, expired "
                    f"or revoked. Create a new one in the dashboard (workspace `{ws}` > Settings > Tokens) and give it "
                    f"as {AUTH_TOKEN}.")
        if reply.status == 403:
            return (f"Lepton denied {AUTH_TOKEN} access to workspace `{ws}` (HTTP 403{words}); check {WORKSPACE_ID} "
                    "and create the token inside that workspace.")
        if reply.status is not None and 300 <= reply.status < 400:
            return f"the Lepton API URL answered {what} with a redirect (HTTP {reply.status}); not followed"
        return f"Lepton refused {what} (HTTP {reply.status}{words})"

    # ------------------------------------------------------------------ launch

    def launch(self, spec: LaunchSpec) -> Submitted:
        creds = dict(spec.platform_credentials)
        missing = [n for n in (WORKSPACE_ID, AUTH_TOKEN) if not (creds.get(n) or "").strip()]
        if missing:
            raise LaunchFailed("cannot launch on Lepton: missing " + ", ".join(missing))
        ws = creds[WORKSPACE_ID].strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", ws):
            raise LaunchFailed(f"{WORKSPACE_ID} is not a workspace id (letters, digits, `-`, `_`, `.`)")
        job_secrets = {k: v for k, v in spec.job_env.items() if v}
        client = self._client(creds, ws, job_secrets.values())

        node_group = self._node_group(client, ws, creds.get(NODE_GROUP, "").strip())
        shape = (creds.get(RESOURCE_SHAPE) or "").strip() or resource_shape(spec.num_gpus)
        name = job_name(spec)
        ext = "toml" if spec.config_format == "toml" else "yaml"
        config_path = f"/tmp/tao-spec.{ext}"
        results_dir = spec.results_uri or f"{(creds.get(RESULTS_DIR) or '/tmp/tao-results').rstrip('/')}/{spec.launch_id}"

        envs: list[dict] = [{"name": "TAO_LAUNCH_ID", "value": spec.launch_id}]
        if spec.config_format != "args":
            flat = {k: (results_dir if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
            envs.append({"name": SPEC_ENV, "value": base64.b64encode(render(flat, spec.config_format).encode()).decode()})
        refs = {k: secret_name(spec.launch_id, k) for k in sorted(job_secrets)}
        envs += [{"name": k, "value_from": {"secret_name_ref": ref}} for k, ref in refs.items()]

        job_spec: dict[str, Any] = {
            "container": {"image": spec.image, "command": ["/bin/bash", "-c", container_script(spec, results_dir, config_path)]},
            "resource_shape": shape,
            "completions": max(1, int(spec.num_nodes)),
            "parallelism": max(1, int(spec.num_nodes)),
            "envs": envs,
            "mounts": parse_mounts(creds.get(MOUNTS, "")),
            "ttl_seconds_after_finished": TTL_AFTER_FINISHED_S,
        }
        if spec.num_nodes > 1:
            job_spec["intra_job_communication"] = True
        if node_group:
            job_spec["affinity"] = {"allowed_dedicated_node_groups": [node_group]}
        if (creds.get(IMAGE_PULL_SECRET) or "").strip():
            job_spec["image_pull_secrets"] = [creds[IMAGE_PULL_SECRET].strip()]

        self._create_secrets(client, ws, {refs[k]: job_secrets[k] for k in refs})
        try:
            reply = client.request("POST", "/jobs", body={"metadata": {"name": name}, "spec": job_spec})
        except BackendUnreachable as exc:
            # The job may or may not exist; keep the secrets it would need and say what to look for.
            raise BackendUnreachable(f"{exc.message} (creating job `{name}`: it may or may not exist now; "
                                     f"look for it in workspace `{ws}`)") from None
        if not reply.ok:
            self._delete_secrets(client, refs.values())
            raise LaunchFailed(self._refused(reply, ws, f"job `{name}`", client.secrets))
        job_id = str(((reply.body or {}).get("metadata") or {}).get("id") or "") if isinstance(reply.body, dict) else ""
        if not job_id:
            raise LaunchFailed(f"Lepton accepted job `{name}` but its answer carried no metadata.id; look for it in workspace `{ws}`")
        log.info("lepton job created", extra={"launch": spec.launch_id, "job": job_id, "workspace": ws})
        return Submitted(
            job_id=job_id,
            log_location=self.dashboard_job_url(ws, job_id),
            results_location=results_dir,
            details={
                "workspace_id": ws,
                "job_name": name,
                "secrets": ",".join(refs.values()),
                "resource_shape": shape,
                "node_group": node_group or "",
            },
        )

    def _node_group(self, client: RestClient, ws: str, wanted: str) -> str | None:
        reply = client.request("GET", "/dedicated-node-groups")
        if reply.status == 404:
            raise LaunchFailed(f"Lepton has no workspace `{ws}` (HTTP 404); check {WORKSPACE_ID}")
        if not reply.ok:
            raise LaunchFailed(self._refused(reply, ws, "listing node groups", client.secrets))
        groups = [g for g in (_as_list(reply.body, "node_groups") or []) if isinstance(g, dict)]
        described = []
        for g in groups:
            meta = g.get("metadata") or {}
            described.append((str(meta.get("id") or ""), str(meta.get("name") or meta.get("id") or "")))
        listing = ", ".join(f"`{n}`" + (f" (id `{i}`)" if i and i != n else "") for i, n in described) or "none"
        if wanted:
            for gid, gname in described:
                if wanted in (gid, gname):
                    return gid or gname
            raise LaunchFailed(f"{NODE_GROUP} `{wanted}` is not a node group visible in workspace `{ws}`; visible: {listing}")
        if not described:
            return None  # no dedicated node group: let the workspace place the job
        if len(described) == 1:
            return described[0][0] or described[0][1]
        raise LaunchFailed(f"workspace `{ws}` has several node groups ({listing}); give {NODE_GROUP} to choose one")

    def _create_secrets(self, client: RestClient, ws: str, secrets: dict[str, str]) -> None:
        if not secrets:
            return
        items = [{"name": n, "value": v} for n, v in secrets.items()]
        reply = client.request("POST", SECRETS_PATH, body=items)
        if reply.status == 409:  # left from an earlier attempt of this launch: replace
            self._delete_secrets(client, secrets)
            reply = client.request("POST", SECRETS_PATH, body=items)
        if not reply.ok:
            raise LaunchFailed(self._refused(reply, ws, "creating the job's secrets (" + ", ".join(secrets) + ")", client.secrets))

    @staticmethod
    def _delete_secrets(client: RestClient, names: Iterable[str]) -> None:
        """Best effort: 404 is fine, anything else is logged and left."""
        for name in names:
            if not name:
                continue
            try:
                reply = client.request("DELETE", f"{SECRETS_PATH}/{urllib.parse.quote(name, safe='')}")
            except BackendUnreachable as exc:
                log.warning("could not delete Lepton secret %s: %s", name, exc.message)
                continue
            if not reply.ok and reply.status != 404:
                log.warning("could not delete Lepton secret %s: HTTP %s", name, reply.status)

    # ------------------------------------------------------------------ status

    def poll(self, jobs: list[JobRef], tails_for: Iterable[str] = ()) -> dict[str, JobStatus]:
        """ONE `GET /jobs` per workspace for every job in it (plus one `/logs` per tail asked for)."""
        if not jobs:
            return {}
        tails = set(tails_for)
        by_ws: dict[str, list[JobRef]] = {}
        for job in jobs:
            by_ws.setdefault(self._workspace(job.platform_credentials, job.details), []).append(job)
        result: dict[str, JobStatus] = {}
        for ws, members in by_ws.items():
            creds = next((j.platform_credentials for j in members if j.platform_credentials.get(AUTH_TOKEN)), {})
            if not ws or not creds:
                raise BackendUnreachable(f"cannot ask Lepton: no {WORKSPACE_ID if not ws else AUTH_TOKEN} saved for these jobs")
            client = self._client(creds, ws)
            reply = client.request(
                "GET", "/jobs",
                query={"job_query_mode": "alive_and_archive", "q": JOB_PREFIX, "page": 1, "page_size": LIST_PAGE_SIZE},
            )
            if not reply.ok:
                raise BackendUnreachable(self._refused(reply, ws, "listing jobs", client.secrets) + "; not a job failure")
            listed = {}
            for j in _as_list(reply.body, "jobs") or []:
                if isinstance(j, dict):
                    jid = (j.get("metadata") or {}).get("id")
                    if jid:
                        listed[str(jid)] = j
            for job in members:
                found = listed.get(job.job_id)
                tail: tuple[str, ...] = ()
                if job.job_id in tails:
                    tail = tuple(self._tail(client, job.job_id, TAIL_LINES))
                if found is None:
                    result[job.job_id] = JobStatus(JobState.UNKNOWN, "not found", "the Lepton workspace no longer lists this job", log_tail=tail)
                    continue
                status = job_status(found, tail)
                result[job.job_id] = status
                if status.state.terminal and job.details.get("secrets"):
                    self._delete_secrets(client, job.details["secrets"].split(","))
        return result

    def _tail(self, client: RestClient, job_id: str, lines: int) -> list[str]:
        try:
            return self._fetch_logs(client, job_id, lines)
        except BackendUnreachable:
            return []  # a missing tail never fails a poll

    def _fetch_logs(self, client: RestClient, job_id: str, lines: int) -> list[str]:
        reply = client.request(
            "GET", "/logs",
            query={"job": job_id, "q": "", "limit": max(1, int(lines)), "direction": "backward",
                   "job_query_mode": "alive_and_archive"},
        )
        if reply.status in (401, 403):
            raise BackendUnreachable(self._refused(reply, "?", "reading logs", client.secrets))
        if not reply.ok:
            return []
        return [scrub(line, client.secrets) for line in merge_log_lines(reply.body, int(lines))]

    def logs(self, job: JobRef, lines: int = TAIL_LINES) -> list[str]:
        ws = self._workspace(job.platform_credentials, job.details)
        if not ws or not job.platform_credentials.get(AUTH_TOKEN):
            raise BackendUnreachable(f"cannot read Lepton logs: no {WORKSPACE_ID if not ws else AUTH_TOKEN} saved")
        return self._fetch_logs(self._client(job.platform_credentials, ws), job.job_id, lines)

    # ------------------------------------------------------------------ cancel

    def cancel(self, job: JobRef) -> None:
        """Delete the job (a job Lepton does not know counts as cancelled), then its secrets."""
        ws = self._workspace(job.platform_credentials, job.details)
        if not ws or not job.platform_credentials.get(AUTH_TOKEN):
            raise BackendUnreachable(f"cannot cancel on Lepton: no {WORKSPACE_ID if not ws else AUTH_TOKEN} saved")
        client = self._client(job.platform_credentials, ws)
        if job.job_id:
            reply = client.request("DELETE", f"/jobs/{urllib.parse.quote(job.job_id, safe='')}")
            if not reply.ok and reply.status != 404:
                raise BackendUnreachable(self._refused(reply, ws, f"deleting job `{job.job_id}`", client.secrets))
        names = (job.details.get("secrets") or "").split(",")
        self._delete_secrets(client, names)
