"""Brev backend: the TAO container runs on a Brev instance, created through the Brev API.

What the Brev API offers, and the approach that follows from it (sources:
github.com/brevdev/brev-cli ``pkg/store/workspace.go``,
``pkg/store/secret.go``, ``pkg/cmd/exec/exec.go``, ``pkg/cmd/secret/secret.go``,
``pkg/entity/entity.go``; base URL and auth as in ``taobot.preflight.brev``):

* There is no "exec" endpoint. ``brev exec`` and ``brev shell`` run the command
  over SSH (``exec.go`` builds an ``ssh -T <alias> '<command>'`` line); the
  REST API has none. So the bot cannot start a command on an instance that
  already runs; it can only create instances.
* ``POST /api/organizations/<org>/workspaces`` creates an instance
  (``CreateWorkspacesOptions``: ``name``, ``workspaceGroupId`` (the cloud),
  ``instanceType``, ``workspaceClassId``, ``customContainer:
  {"containerUrl", "entryPoint"}`` for container mode - what ``brev start``
  does for a container launchable, clearing ``vmBuild`` - ``labels``,
  ``description``, ``isStoppable``, ``workspaceVersion``). Answered with the
  instance (``status`` DEPLOYING). ``GET /api/organizations/<org>/workspaces``
  lists the org's instances, ``DELETE /api/workspaces/<id>`` deletes one.
* So a launch **creates a new instance that is the job**: container mode,
  ``containerUrl`` = the TAO image, ``entryPoint`` = ``/bin/bash -c
  <script>``. ``BREV_INSTANCE`` (id or name) names the user's RUNNING instance
  whose organization, ``instanceType`` and ``workspaceGroupId`` the job
  instance copies: the job runs on the GPU type and cloud the user already
  uses. Missing, unknown or not RUNNING -> `LaunchFailed` listing the org's
  instances with their status.
* Secrets: only through Brev's secret mechanism. ``POST /api/secrets`` with
  ``{"name", "hierarchyType": "user", "hierarchyId": <user id from
  /api/me>, "src": {"type": "kv2", "config": {"value"}}, "dest": {"type":
  "env", "config": {"name": <ENV>}}}`` makes ``<ENV>`` an environment variable
  in the user's instances (the CLI warns it can take up to 2 minutes to load).
  Each launch uses its own names (``TAO_<LAUNCH>_HF_TOKEN``); the entry point
  only copies them by *name* (``export HF_TOKEN="${TAO_<LAUNCH>_HF_TOKEN:-}"``),
  so no value is in the instance object or its listing. The API documents no
  way to list or delete such a secret (the CLI only ever created them, and
  brev-cli removed its ``brev secret`` command in February 2026, #290, as
  "non-functioning"): it stays in the user's Brev account after the job
  (listed in ``details["secret_envs"]``; remove it in the Brev console).
  `cleanup` says so in the log, by name, once per launch.
* Cleanup: when the monitor sees the launch end, the job's instance is
  deleted if Brev still has it (a FAILURE instance stays otherwise; 404 and
  an instance already DELETING are fine). Cancel deletes it anyway.
* The spec (no secrets in it) travels base64-encoded inside the entry point
  and is written to ``/tmp/tao-spec.<ext>`` before the action runs.
* Poll: ONE ``GET /api/organizations/<org>/workspaces`` per org for all its
  jobs. DEPLOYING/STARTING -> Pending, RUNNING -> Running, STOPPING/STOPPED
  -> Paused, DELETING -> Cancelled, FAILURE -> Failed; an instance the org no
  longer lists -> Unknown.
* Limits, stated plainly: Brev reports an instance's status, not a
  container's exit. When the TAO command ends the entry point prints
  ``taobot: TAO command exited with <code>`` and keeps the container alive
  (``sleep infinity``, so a restart policy cannot run the training twice); the
  instance stays RUNNING - and billed - until it is cancelled (deleted). The
  API has no log endpoint either: `logs` returns [] and ``log_location`` says
  how to read the output (``brev shell <name>``).

Errors: 5xx, 429 (after honouring ``Retry-After`` once) and transport
failures raise `BackendUnreachable`; refusals raise `LaunchFailed` naming
the credential to fix. The token and job secrets never appear in a message.
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
    RESULTS_PLACEHOLDER,
    JobRef,
    JobState,
    JobStatus,
    LaunchSpec,
    Submitted,
)
from taobot.backends.tao_status import status_env, status_root
from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.preflight.base import quote
from taobot.render import render, render_args
from taobot.rest import Reply, RestClient, RetryRule, said

log = logging.getLogger(__name__)

TOKEN = "BREV_API_TOKEN"
INSTANCE = "BREV_INSTANCE"
RESULTS_DIR = "BREV_RESULTS_DIR"

MAX_ORGS = 10
NAMES_SHOWN = 10
MASTER_PORT = 29500

STATE_MAP = {
    "DEPLOYING": JobState.PENDING,
    "STARTING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "STOPPING": JobState.PAUSED,
    "STOPPED": JobState.PAUSED,
    "DELETING": JobState.CANCELLED,
    "FAILURE": JobState.FAILED,
}

TOKEN_FIX = (
    "Create an API key in the Brev console (keys start with `bak-`), or run `brev login` and copy a fresh token, "
    f"then give it as {TOKEN}."
)


def normalise(native: str) -> JobState:
    return STATE_MAP.get(native.upper(), JobState.UNKNOWN)


def env_name(launch_id: str, credential: str) -> str:
    """`TAO_A1B2C3D4_01234_HF_TOKEN`: the per-launch variable a Brev secret sets."""
    return re.sub(r"_{2,}", "_", re.sub(r"[^A-Z0-9_]", "_", f"TAO_{launch_id}_{credential}".upper()))


def instance_name(spec: LaunchSpec) -> str:
    """`tao-<model>-<action>-<launch id>`, the name the monitor tells people to look for."""
    raw = f"tao-{spec.model}-{spec.action}-{spec.launch_id}".lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")[:63]


def entry_script(spec: LaunchSpec, results_dir: str, secret_envs: Mapping[str, str]) -> str:
    """What the job container runs; secrets are referenced by variable name only."""
    ext = "toml" if spec.config_format == "toml" else "yaml"
    config_path = f"/tmp/tao-spec.{ext}"
    flat = {k: (results_dir if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
    command = spec.command.replace("{config_path}", quote(config_path))
    lines = ["set -uo pipefail"]
    for target, source in sorted(secret_envs.items()):
        lines.append(f'export {target}="${{{source}:-}}"')
        lines.append(
            f'[ -n "${{{source}:-}}" ] || echo "taobot: Brev secret {source} is not in this environment yet" >&2'
        )
    if spec.config_format == "args":
        command += " " + " ".join(quote(a) for a in render_args(flat))
    else:
        encoded = base64.b64encode(render(flat, spec.config_format).encode()).decode()
        lines.append(f"printf '%s' {quote(encoded)} | base64 -d > {quote(config_path)}")
    if results_dir.startswith("/"):
        lines.append(f"mkdir -p {quote(results_dir)}")
    lines += [
        f"export TAO_LAUNCH_ID={quote(spec.launch_id)}",
        f"export TAO_API_RESULTS_DIR={quote(results_dir)}",
        *(f"export {k}={quote(v)}" for k, v in status_env(spec.launch_id, status_root(results_dir)).items()),
        f"export NUM_GPU_PER_NODE={int(spec.num_gpus)} NUM_NODES=1 NODE_RANK=0 WORLD_SIZE={int(spec.num_gpus)}",
        f"export MASTER_ADDR=localhost MASTER_PORT={MASTER_PORT}",
        f'echo "taobot launch {spec.launch_id}: $(date -u +%FT%TZ) on $(hostname)"',
        f"( {command} )",
        "rc=$?",
        'echo "taobot: TAO command exited with $rc"',
        "# Keep the container up: a restart policy must not run the training twice.",
        "exec sleep infinity",
    ]
    return "\n".join(lines) + "\n"


def describe(instances: Iterable[dict]) -> str:
    shown = []
    items = list(instances)
    for w in items[:NAMES_SHOWN]:
        kind = w.get("instanceType") or w.get("workspaceClassId") or "?"
        shown.append(f"`{w.get('name') or w.get('id')}` ({w.get('status') or 'UNKNOWN'}, {kind})")
    more = f" and {len(items) - NAMES_SHOWN} more" if len(items) > NAMES_SHOWN else ""
    return (", ".join(shown) + more) if shown else "none"


class BrevBackend:
    name = "brev"

    def __init__(self, api_url: str, timeout: float = 10) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.requests_made = 0  # HTTP requests sent; the benchmark reads it
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    def _count(self) -> None:
        with self._lock:
            self.requests_made += 1

    def _client(self, creds: Mapping[str, str], secrets: Iterable[str] = ()) -> RestClient:
        # A 429 waits what Retry-After asks (capped) once; a 5xx is not repeated.
        return RestClient(
            self.api_url,
            (creds.get(TOKEN) or "").strip(),
            self.timeout,
            "the Brev API",
            secrets=(creds.get(TOKEN) or "", *secrets),
            retry=RetryRule(gateway=False),
            on_request=self._count,
        )

    def connection_key(self, job: JobRef) -> str:
        return f"{self.api_url}|brev|{job.details.get('org_id', '')}"

    @staticmethod
    def _refused(reply: Reply, what: str, secrets: Iterable[str]) -> str:
        words = said(reply, secrets)
        words = f": {words}" if words else ""
        if reply.status == 401:
            return f"Brev refused {TOKEN} (HTTP 401{words}); the token is wrong, expired or revoked. {TOKEN_FIX}"
        if reply.status == 403:
            return (
                f"Brev denied {TOKEN} {what} (HTTP 403{words}); Brev answers 403 for an expired login token or a "
                f"token without access to this organization. {TOKEN_FIX}"
            )
        if reply.status is not None and 300 <= reply.status < 400:
            return f"the Brev API URL answered {what} with a redirect (HTTP {reply.status}); not followed"
        return f"Brev refused {what} (HTTP {reply.status}{words})"

    def _get_list(self, client: RestClient, path: str, what: str) -> list[dict]:
        reply = client.request("GET", path)
        if not reply.ok:
            raise LaunchFailed(self._refused(reply, what, client.secrets))
        if not isinstance(reply.body, list):
            raise LaunchFailed(f"the Brev API answered {what} without a list; check the bot's Brev API URL")
        return [x for x in reply.body if isinstance(x, dict)]

    # ------------------------------------------------------------------ launch

    def launch(self, spec: LaunchSpec) -> Submitted:
        creds = dict(spec.platform_credentials)
        if not (creds.get(TOKEN) or "").strip():
            raise LaunchFailed(f"cannot launch on Brev: missing {TOKEN}")
        job_secrets = {k: v for k, v in spec.job_env.items() if v}
        client = self._client(creds, job_secrets.values())
        template, org_id = self._template(client, (creds.get(INSTANCE) or "").strip())

        me = client.request("GET", "/api/me")
        if not me.ok or not isinstance(me.body, dict) or not me.body.get("id"):
            raise LaunchFailed(self._refused(me, "reading the current user", client.secrets))
        user_id = str(me.body["id"])

        secret_envs = {k: env_name(spec.launch_id, k) for k in sorted(job_secrets)}
        for credential, env in secret_envs.items():
            self._create_secret(client, user_id, env, job_secrets[credential])

        results_dir = (
            spec.results_uri or f"{(creds.get(RESULTS_DIR) or '/tmp/tao-results').rstrip('/')}/{spec.launch_id}"
        )
        name = instance_name(spec)
        body: dict[str, Any] = {
            "name": name,
            "workspaceGroupId": template.get("workspaceGroupId") or "",
            "instanceType": template.get("instanceType") or "",
            "workspaceClassId": template.get("workspaceClassId") or "",
            "description": f"taobot launch {spec.launch_id}: {spec.model} {spec.action}",
            "isStoppable": True,
            "workspaceVersion": "v1",
            "customContainer": {
                "containerUrl": spec.image,
                "entryPoint": "/bin/bash -c " + quote(entry_script(spec, results_dir, secret_envs)),
            },
            "labels": {"taobot.launch": spec.launch_id, **{k: v for k, v in spec.labels.items()}},
        }
        path = f"/api/organizations/{urllib.parse.quote(org_id, safe='')}/workspaces"
        try:
            reply = client.request("POST", path, body=body)
        except BackendUnreachable as exc:
            raise BackendUnreachable(
                f"{exc.message} (creating instance `{name}`: it may or may not exist now; look for it with `brev ls`)"
            ) from None
        if not reply.ok:
            raise LaunchFailed(self._refused(reply, f"creating instance `{name}`", client.secrets))
        inst_id = str(reply.body.get("id") or "") if isinstance(reply.body, dict) else ""
        if not inst_id:
            raise LaunchFailed(
                f"Brev accepted instance `{name}` but its answer carried no id; look for it with `brev ls`"
            )
        log.info("brev instance created", extra={"launch": spec.launch_id, "job": inst_id, "org": org_id})
        return Submitted(
            job_id=inst_id,
            log_location=(
                f"Brev has no log API: run `brev shell {name}` (instance {inst_id}); the TAO output is the "
                "container's output, ending with `taobot: TAO command exited with <code>`"
            ),
            results_location=results_dir,
            details={
                "org_id": org_id,
                "instance_name": name,
                "template_instance": str(template.get("name") or template.get("id") or ""),
                "secret_envs": ",".join(secret_envs.values()),
            },
        )

    def _template(self, client: RestClient, wanted: str) -> tuple[dict, str]:
        orgs = self._get_list(client, "/api/organizations", "listing organizations")
        if not orgs:
            raise LaunchFailed(
                "the Brev token's user belongs to no organization; Brev instances live in an organization"
            )
        seen: list[dict] = []
        for org in orgs[:MAX_ORGS]:
            oid = str(org.get("id") or "")
            instances = self._get_list(
                client,
                f"/api/organizations/{urllib.parse.quote(oid, safe='')}/workspaces",
                f"listing the instances of organization `{org.get('name') or oid}`",
            )
            for inst in instances:
                inst.setdefault("organizationId", oid)
            seen += instances
            if wanted:
                match = next((i for i in instances if wanted in (i.get("id"), i.get("name"))), None)
                if match is not None:
                    if str(match.get("status") or "").upper() != "RUNNING":
                        raise LaunchFailed(
                            f"{INSTANCE} `{wanted}` is {match.get('status') or 'in an unknown state'}, not RUNNING; "
                            f"start it (`brev start {match.get('name') or wanted}`) or name a running one. "
                            f"Instances: {describe(instances)}"
                        )
                    return match, str(match.get("organizationId") or oid)
        if not wanted:
            raise LaunchFailed(
                f"{INSTANCE} is not set: give the name or id of your RUNNING Brev instance whose GPU "
                f"type the job should use. Instances: {describe(seen)}"
            )
        raise LaunchFailed(
            f"no Brev instance `{wanted}` in your organizations; set {INSTANCE} to one of: {describe(seen)}"
        )

    def _create_secret(self, client: RestClient, user_id: str, env: str, value: str) -> None:
        body = {
            "name": env,
            "hierarchyType": "user",
            "hierarchyId": user_id,
            "src": {"type": "kv2", "config": {"value": value}},
            "dest": {"type": "env", "config": {"name": env}},
        }
        reply = client.request("POST", "/api/secrets", body=body)
        if not reply.ok:
            raise LaunchFailed(self._refused(reply, f"creating the job secret `{env}`", client.secrets))

    # ------------------------------------------------------------------ status

    def poll(self, jobs: list[JobRef], tails_for: Iterable[str] = ()) -> dict[str, JobStatus]:
        """ONE `GET /api/organizations/<org>/workspaces` per org for all its jobs. Brev has no logs to tail."""
        if not jobs:
            return {}
        by_org: dict[str, list[JobRef]] = {}
        for job in jobs:
            by_org.setdefault(job.details.get("org_id", ""), []).append(job)
        result: dict[str, JobStatus] = {}
        for org_id, members in by_org.items():
            creds = next((j.platform_credentials for j in members if j.platform_credentials.get(TOKEN)), None)
            if not org_id or creds is None:
                raise BackendUnreachable(
                    f"cannot ask Brev: no {TOKEN if org_id else 'organization'} saved for these jobs"
                )
            client = self._client(creds)
            reply = client.request("GET", f"/api/organizations/{urllib.parse.quote(org_id, safe='')}/workspaces")
            if not reply.ok or not isinstance(reply.body, list):
                why = (
                    self._refused(reply, "listing instances", client.secrets)
                    if not reply.ok
                    else "the instance list was not a list"
                )
                raise BackendUnreachable(why + "; not a job failure")
            listed = {str(i.get("id")): i for i in reply.body if isinstance(i, dict) and i.get("id")}
            for job in members:
                inst = listed.get(job.job_id)
                if inst is None:
                    result[job.job_id] = JobStatus(
                        JobState.UNKNOWN, "not found", "the Brev organization no longer lists this instance"
                    )
                    continue
                native = str(inst.get("status") or "")
                state = normalise(native)
                reason = str(inst.get("statusMessage") or "") or None
                if state is JobState.UNKNOWN and reason is None:
                    reason = f"Brev reports status `{native or 'none'}`"
                health = inst.get("healthStatus")
                result[job.job_id] = JobStatus(state, native + (f" ({health})" if health else ""), reason)
        return result

    def logs(self, job: JobRef, lines: int = 20) -> list[str]:
        return []  # the Brev API has no log endpoint; log_location says how to read the output

    # ------------------------------------------------------------------ cancel

    def cancel(self, job: JobRef) -> None:
        """Delete the job's instance; an instance Brev does not know counts as cancelled."""
        self._delete_instance(job, "cancel")

    def cleanup(self, job: JobRef) -> None:
        """The launch ended: its instance goes if Brev still has it. Its Brev secrets cannot be deleted through the
        API; the log names them (names only) for the person to remove in the Brev console."""
        self._delete_instance(job, "clean up")
        left = [n for n in (job.details.get("secret_envs") or "").split(",") if n]
        if left:
            log.warning(
                "Brev keeps the launch's secrets %s in the user's account (the Brev API cannot delete them); "
                "remove them in the Brev console",
                ", ".join(left),
                extra={"launch": job.launch_id},
            )

    def _delete_instance(self, job: JobRef, doing: str) -> None:
        creds = job.platform_credentials
        if not creds.get(TOKEN):
            raise BackendUnreachable(f"cannot {doing} on Brev: no {TOKEN} saved")
        if not job.job_id:
            return
        client = self._client(creds)
        reply = client.request("DELETE", f"/api/workspaces/{urllib.parse.quote(job.job_id, safe='')}")
        if not reply.ok and reply.status != 404:
            raise BackendUnreachable(self._refused(reply, f"deleting instance `{job.job_id}`", client.secrets))
