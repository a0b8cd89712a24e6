"""What Lepton's wire objects hold, as pure functions: the names a launch uses,
the `LeptonJob` body it sends, how job, node group and log answers are read,
and how a refused request is worded.

Nothing here sends a request; `taobot.backends.lepton` does, and its module
docstring describes the API these shapes follow.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any

from taobot.backends.base import RESULTS_PLACEHOLDER, JobState, JobStatus, LaunchSpec
from taobot.backends.tao_status import status_env, status_root, with_progress
from taobot.errors import LaunchFailed
from taobot.preflight.base import quote
from taobot.render import render, render_args
from taobot.rest import Reply, said

WORKSPACE_ID = "LEPTON_WORKSPACE_ID"
AUTH_TOKEN = "LEPTON_AUTH_TOKEN"
RESOURCE_SHAPE = "LEPTON_RESOURCE_SHAPE"
NODE_GROUP = "LEPTON_NODE_GROUP"
MOUNTS = "LEPTON_MOUNTS"
IMAGE_PULL_SECRET = "LEPTON_IMAGE_PULL_SECRET"
RESULTS_DIR = "LEPTON_RESULTS_DIR"

JOB_NAME_MAX = 36
TTL_AFTER_FINISHED_S = 3600  # long enough for the monitor to see the final state before Lepton archives the job
SPEC_ENV = "TAO_SPEC_B64"
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


# =========================================================================== names


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


# =========================================================================== the job body


def parse_mounts(text: str) -> list[dict]:
    """`FROM_PATH:MOUNT_PATH:VOLUME[,...]` (the `lep job create --mount` form) -> Mount objects."""
    mounts = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split(":", 2)
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise LaunchFailed(
                f"{MOUNTS} entry `{item}` is not FROM_PATH:MOUNT_PATH:VOLUME (e.g. /shared/tao:/mnt/tao:node-nfs:my-nfs)"
            )
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
        *(f"export {k}={quote(v)}" for k, v in status_env(spec.launch_id, status_root(results_dir)).items()),
        f"export NUM_GPU_PER_NODE={int(spec.num_gpus)}",
        "export NUM_NODES=${LEPTON_JOB_TOTAL_WORKERS:-1}",
        "export NODE_RANK=${LEPTON_JOB_WORKER_INDEX:-0}",
        f"export WORLD_SIZE=$(( ${{LEPTON_JOB_TOTAL_WORKERS:-1}} * {int(spec.num_gpus)} ))",
        'if [ "${LEPTON_JOB_TOTAL_WORKERS:-1}" -gt 1 ]; then '
        'export MASTER_ADDR="${LEPTON_JOB_SERVICE_PREFIX:-$LEPTON_JOB_NAME}-0.${LEPTON_SUBDOMAIN:-$LEPTON_JOB_NAME-job-svc}"; '
        "else export MASTER_ADDR=localhost; fi",
        f"export MASTER_PORT={MASTER_PORT}",
        f'echo "taobot launch {spec.launch_id}: $(date -u +%FT%TZ) on $(hostname)"',
        command,
    ]
    return "\n".join(lines) + "\n"


def job_body(
    spec: LaunchSpec,
    name: str,
    creds: Mapping[str, str],
    *,
    shape: str,
    node_group: str | None,
    results_dir: str,
    secret_refs: Mapping[str, str],
) -> dict[str, Any]:
    """The `POST /jobs` body: the spec travels in `SPEC_ENV`, each job secret as a reference to its Lepton secret."""
    ext = "toml" if spec.config_format == "toml" else "yaml"
    config_path = f"/tmp/tao-spec.{ext}"

    envs: list[dict] = [{"name": "TAO_LAUNCH_ID", "value": spec.launch_id}]
    if spec.config_format != "args":
        flat = {k: (results_dir if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
        envs.append({"name": SPEC_ENV, "value": base64.b64encode(render(flat, spec.config_format).encode()).decode()})
    envs += [{"name": k, "value_from": {"secret_name_ref": ref}} for k, ref in secret_refs.items()]

    job_spec: dict[str, Any] = {
        "container": {
            "image": spec.image,
            "command": ["/bin/bash", "-c", container_script(spec, results_dir, config_path)],
        },
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
    return {"metadata": {"name": name}, "spec": job_spec}


# =========================================================================== answers


def _as_list(body: Any, key: str) -> list | None:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        if isinstance(body.get(key), list):
            return body[key]
        return next((v for v in body.values() if isinstance(v, list)), None)
    return None


def choose_node_group(body: Any, ws: str, wanted: str) -> str | None:
    """The node group id from a `GET /dedicated-node-groups` answer: `wanted` (id or name), else the only one."""
    groups = [g for g in (_as_list(body, "node_groups") or []) if isinstance(g, dict)]
    described = []
    for g in groups:
        meta = g.get("metadata") or {}
        described.append((str(meta.get("id") or ""), str(meta.get("name") or meta.get("id") or "")))
    listing = ", ".join(f"`{n}`" + (f" (id `{i}`)" if i and i != n else "") for i, n in described) or "none"
    if wanted:
        for gid, gname in described:
            if wanted in (gid, gname):
                return gid or gname
        raise LaunchFailed(
            f"{NODE_GROUP} `{wanted}` is not a node group visible in workspace `{ws}`; visible: {listing}"
        )
    if not described:
        return None  # no dedicated node group: let the workspace place the job
    if len(described) == 1:
        return described[0][0] or described[0][1]
    raise LaunchFailed(f"workspace `{ws}` has several node groups ({listing}); give {NODE_GROUP} to choose one")


def jobs_by_id(body: Any) -> dict[str, dict]:
    """The jobs of a `GET /jobs` answer by `metadata.id`."""
    listed = {}
    for j in _as_list(body, "jobs") or []:
        if isinstance(j, dict):
            jid = (j.get("metadata") or {}).get("id")
            if jid:
                listed[str(jid)] = j
    return listed


def _history_state(job: dict) -> str | None:
    history = (job.get("status") or {}).get("job_history") or []
    for entry in reversed(history):
        state = entry.get("state") if isinstance(entry, dict) else None
        if state and state != "Archived":
            return state
    return None


def job_status(job: dict, tail: tuple[str, ...] = ()) -> JobStatus:
    """A `GET /jobs` entry as a JobStatus; `tail` (the log lines read, if any) gives the last lines and progress."""
    status = job.get("status") or {}
    native = str(status.get("state") or "")
    judged = native
    if native == "Archived":
        judged = _history_state(job) or native
    state = normalise(judged)
    reason = None
    if state is JobState.FAILED:
        failed = status.get("failed")
        reason = (
            f"{failed} replica{'s' if failed != 1 else ''} failed"
            if isinstance(failed, int) and failed
            else "the job failed"
        )
    elif state is JobState.CANCELLED:
        reason = f"the job is {judged.lower()}"
    elif native == "Archived" and judged != native:
        reason = f"archived after {judged.lower()}"
    elif state is JobState.UNKNOWN:
        reason = f"Lepton reports state `{native or 'none'}`"
    shown = native if judged == native else f"{native} ({judged})"
    return with_progress(JobStatus(state, shown, reason, None), tail)


def merge_log_lines(body: Any, lines: int) -> list[str]:
    """The newest `lines` log lines of a Loki-style /logs answer, oldest first."""
    entries: list[tuple[int, str]] = []
    result = (
        body.get("data", {}).get("result") if isinstance(body, dict) and isinstance(body.get("data"), dict) else None
    )
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


# =========================================================================== refusals


def refused(reply: Reply, ws: str, what: str, secrets: Iterable[str]) -> str:
    """Why a 3xx/4xx answer refused `what`, naming the credential to fix."""
    words = said(reply, secrets)
    words = f": {words}" if words else ""
    if reply.status == 401:
        return (
            f"Lepton refused {AUTH_TOKEN} for workspace `{ws}` (HTTP 401{words}); the token is wrong, expired "
            f"or revoked. Create a new one in the dashboard (workspace `{ws}` > Settings > Tokens) and give it "
            f"as {AUTH_TOKEN}."
        )
    if reply.status == 403:
        return (
            f"Lepton denied {AUTH_TOKEN} access to workspace `{ws}` (HTTP 403{words}); check {WORKSPACE_ID} "
            "and create the token inside that workspace."
        )
    if reply.status is not None and 300 <= reply.status < 400:
        return f"the Lepton API URL answered {what} with a redirect (HTTP {reply.status}); not followed"
    return f"Lepton refused {what} (HTTP {reply.status}{words})"
