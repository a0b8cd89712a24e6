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
  asked for (``tails_for``) cost one ``GET /logs`` each; the run's progress is
  read from those lines (its status file is on Lepton's storage).
* Cleanup: the per-launch secrets are the only thing holding a value on
  Lepton (the job object refers to them by name, and Lepton archives it
  ``ttl_seconds_after_finished`` after it ends); `cleanup` deletes them
  (``DELETE /usersecrets/<name>``, 404 counts as deleted) when the monitor
  sees the launch end, and raises when one could not go, so the monitor
  tries again.
* Logs: ``GET /logs?job=<id>&q=&limit=<n>&direction=backward
  &job_query_mode=alive_and_archive`` answers Loki-style ``{"data":
  {"result": [{"stream": {...}, "values": [[<ns>, <line>], ...]}]}}``.
* Cancel: ``DELETE /jobs/<id>`` (404: already gone, fine), then the
  per-launch secrets are deleted (404 fine; a failure is left to the
  monitor's cleanup).

Errors: 5xx, 429 (after honouring ``Retry-After`` once) and transport
failures raise `BackendUnreachable` ("could not ask"); 4xx refusals raise
`LaunchFailed` from `launch` with the API's message. Redirects are never
followed, so the token stays on the gateway host. The token and every job
secret are scrubbed from every message.

This module holds `LeptonBackend`, which makes the requests; the names, the
job body, the reading of answers and the wording of refusals are pure
functions in `taobot.backends.lepton_jobs`.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping

from taobot.backends.base import JOB_ENV_CREDENTIALS, JobRef, JobState, JobStatus, LaunchSpec, Submitted
from taobot.backends.lepton_jobs import (
    AUTH_TOKEN,
    NODE_GROUP,
    RESOURCE_SHAPE,
    RESULTS_DIR,
    WORKSPACE_ID,
    choose_node_group,
    job_body,
    job_name,
    job_status,
    jobs_by_id,
    merge_log_lines,
    refused,
    resource_shape,
    secret_name,
)
from taobot.backends.tao_status import PROGRESS_LOG_LINES, with_progress
from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.rest import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, RestClient, RetryRule, scrub

log = logging.getLogger(__name__)

DASHBOARD_URL = "https://dashboard.dgxc-lepton.nvidia.com"
SECRETS_PATH = "/usersecrets"
JOB_PREFIX = "tao-"
LIST_PAGE_SIZE = 500
TAIL_LINES = 20


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
        results_dir = (
            spec.results_uri or f"{(creds.get(RESULTS_DIR) or '/tmp/tao-results').rstrip('/')}/{spec.launch_id}"
        )
        refs = {k: secret_name(spec.launch_id, k) for k in sorted(job_secrets)}
        body = job_body(
            spec, name, creds, shape=shape, node_group=node_group, results_dir=results_dir, secret_refs=refs
        )

        self._create_secrets(client, ws, {refs[k]: job_secrets[k] for k in refs})
        try:
            reply = client.request("POST", "/jobs", body=body)
        except BackendUnreachable as exc:
            # The job may or may not exist; keep the secrets it would need and say what to look for.
            raise BackendUnreachable(
                f"{exc.message} (creating job `{name}`: it may or may not exist now; look for it in workspace `{ws}`)"
            ) from None
        if not reply.ok:
            self._delete_secrets(client, refs.values())
            raise LaunchFailed(refused(reply, ws, f"job `{name}`", client.secrets))
        job_id = str(((reply.body or {}).get("metadata") or {}).get("id") or "") if isinstance(reply.body, dict) else ""
        if not job_id:
            raise LaunchFailed(
                f"Lepton accepted job `{name}` but its answer carried no metadata.id; look for it in workspace `{ws}`"
            )
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
            raise LaunchFailed(refused(reply, ws, "listing node groups", client.secrets))
        return choose_node_group(reply.body, ws, wanted)

    def _create_secrets(self, client: RestClient, ws: str, secrets: dict[str, str]) -> None:
        if not secrets:
            return
        items = [{"name": n, "value": v} for n, v in secrets.items()]
        reply = client.request("POST", SECRETS_PATH, body=items)
        if reply.status == 409:  # left from an earlier attempt of this launch: replace
            self._delete_secrets(client, secrets)
            reply = client.request("POST", SECRETS_PATH, body=items)
        if not reply.ok:
            raise LaunchFailed(
                refused(reply, ws, "creating the job's secrets (" + ", ".join(secrets) + ")", client.secrets)
            )

    @staticmethod
    def _delete_secrets(client: RestClient, names: Iterable[str]) -> list[str]:
        """Delete every named secret (404 is fine); the names that could not be deleted, each logged."""
        left = []
        for name in names:
            if not name:
                continue
            try:
                reply = client.request("DELETE", f"{SECRETS_PATH}/{urllib.parse.quote(name, safe='')}")
            except BackendUnreachable as exc:
                log.warning("could not delete Lepton secret %s: %s", name, exc.message)
                left.append(name)
                continue
            if not reply.ok and reply.status != 404:
                log.warning("could not delete Lepton secret %s: HTTP %s", name, reply.status)
                left.append(name)
        return left

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
                raise BackendUnreachable(
                    f"cannot ask Lepton: no {WORKSPACE_ID if not ws else AUTH_TOKEN} saved for these jobs"
                )
            client = self._client(creds, ws)
            reply = client.request(
                "GET",
                "/jobs",
                query={"job_query_mode": "alive_and_archive", "q": JOB_PREFIX, "page": 1, "page_size": LIST_PAGE_SIZE},
            )
            if not reply.ok:
                raise BackendUnreachable(refused(reply, ws, "listing jobs", client.secrets) + "; not a job failure")
            listed = jobs_by_id(reply.body)
            for job in members:
                found = listed.get(job.job_id)
                tail: tuple[str, ...] = ()
                if job.job_id in tails:  # its status file is on Lepton's storage: progress from the log only
                    tail = tuple(self._tail(client, job.job_id, PROGRESS_LOG_LINES))
                if found is None:
                    result[job.job_id] = with_progress(
                        JobStatus(JobState.UNKNOWN, "not found", "the Lepton workspace no longer lists this job"), tail
                    )
                    continue
                result[job.job_id] = job_status(found, tail)
        return result

    def _tail(self, client: RestClient, job_id: str, lines: int) -> list[str]:
        try:
            return self._fetch_logs(client, job_id, lines)
        except BackendUnreachable:
            return []  # a missing tail never fails a poll

    def _fetch_logs(self, client: RestClient, job_id: str, lines: int) -> list[str]:
        reply = client.request(
            "GET",
            "/logs",
            query={
                "job": job_id,
                "q": "",
                "limit": max(1, int(lines)),
                "direction": "backward",
                "job_query_mode": "alive_and_archive",
            },
        )
        if reply.status in (401, 403):
            raise BackendUnreachable(refused(reply, "?", "reading logs", client.secrets))
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
                raise BackendUnreachable(refused(reply, ws, f"deleting job `{job.job_id}`", client.secrets))
        try:
            self.cleanup(job)
        except BackendUnreachable as exc:  # the job is gone; the monitor's cleanup tries the secrets again
            log.warning("secrets not deleted after cancel: %s", exc.message, extra={"job": job.job_id})

    # ------------------------------------------------------------------ cleanup

    def cleanup(self, job: JobRef) -> None:
        """Delete the launch's secrets: those recorded at submit, or (a submit that never answered) the names the
        launch gives the job credentials it holds. Raises BackendUnreachable naming those still there."""
        ws = self._workspace(job.platform_credentials, job.details)
        if not ws or not job.platform_credentials.get(AUTH_TOKEN):
            raise BackendUnreachable(f"cannot delete Lepton secrets: no {WORKSPACE_ID if not ws else AUTH_TOKEN} saved")
        names = [n for n in (job.details.get("secrets") or "").split(",") if n]
        if "secrets" not in job.details:
            names = [secret_name(job.launch_id, k) for k in JOB_ENV_CREDENTIALS if job.platform_credentials.get(k)]
        # the job's credential values are scrubbed from whatever the API says back, as at launch
        held = [v for k, v in job.platform_credentials.items() if k in JOB_ENV_CREDENTIALS and v]
        left = self._delete_secrets(self._client(job.platform_credentials, ws, held), names)
        if left:
            raise BackendUnreachable(f"Lepton secrets not deleted yet: {', '.join(left)}")
