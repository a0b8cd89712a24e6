"""Kubernetes backend: one batch/v1 Job per launch, in TAO_K8S_NAMESPACE (default `default`).

The ApiClient is the preflight's (`taobot.preflight.kubernetes.load_client`:
KUBECONFIG / TAO_K8S_CONTEXT / in-cluster service account, a private
configuration, no retries), cached per kubeconfig + context and dropped
after a connection error or a 401 so the next call loads it afresh.

Launch creates, in this order:

1. the Job `tao-<launch-id>` with `parallelism: 0`, so no Pod exists yet
   (`backoffLimit: 0`, `completions: 1`, no `ttlSecondsAfterFinished`);
2. the Secret `tao-<launch-id>-env` holding `spec.job_env` — the only way a
   credential reaches the job (`envFrom.secretRef`) — and
3. the ConfigMap `tao-<launch-id>-spec` with the rendered spec file (mounted
   read-only at /tao/specs; args-style actions get `--key value` arguments
   on the command instead and no ConfigMap),
   both created with an ownerReference to the Job (uid from step 1), so the
   garbage collector removes them with the Job;
4. a patch of the Job to `parallelism: 1`: the job controller now creates
   the Pod, whose Secret and ConfigMap already exist.

Creating the Job first means the owner references are set at creation:
the bot needs no update/patch permission on Secrets (which would let it
rewrite every Secret in the namespace). If any step fails, the Job is
deleted again and the garbage collector takes whatever it owned: nothing
is left behind (when even the delete is refused, the error names the Job
to delete; it never ran a Pod).

Poll asks each namespace ONE list of Jobs and ONE list of Pods (label
selector `app.kubernetes.io/managed-by=taobot` narrowed to the polled
launches), plus one log read per job in `tails_for`.

Cancel patches the Job (annotation `taobot/cancelled`, `parallelism: 0` so
the job controller stops its Pod and starts no other) and deletes it with
propagationPolicy Foreground: the Job stays visible, annotated, until its
Pod is gone, and the garbage collector then removes it with its Secret and
ConfigMap. A refused cancel (e.g. 403) raises BackendUnreachable with the
API server's message: the job was not cancelled. Poll reports an annotated Job as Cancelled, and a missing Job
this process cancelled as Cancelled; a missing Job the bot did not cancel
(or cancelled before a restart, once deletion has finished) is Unknown —
the cluster keeps no record of a deleted Job. A Job that had already
finished is left as it is (its Pod keeps the logs): cancelling it is a
no-op, as is cancelling a Job that no longer exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping

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
from taobot.preflight.base import PreflightSettings, quote
from taobot.preflight.kubernetes import namespace_for
from taobot.render import render, render_args

log = logging.getLogger(__name__)

CONTAINER = "tao"
CONTAINER_SPECS = "/tao/specs"
CONTAINER_RESULTS = "/tao/results"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_NAMESPACE = "default"
DEFAULT_KUBECONFIG = "~/.kube/config"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "taobot"
SELECTOR = f"{MANAGED_BY}={MANAGED_BY_VALUE}"
LAUNCH_LABEL = "taobot/launch"
MODEL_LABEL = "taobot/model"
ACTION_LABEL = "taobot/action"
CANCELLED_ANNOTATION = "taobot/cancelled"
LAUNCH_ID_ANNOTATION = "taobot/launch-id"
TAIL_LINES = 20
MAX_SELECTED_LAUNCHES = 50  # above this the list selects every taobot Job of the namespace (a long URL otherwise)
RESULTS_IN_POD = f"{CONTAINER_RESULTS} in the pod (emptyDir; copy out or set a results s3:// URI)"
_NAME_BODY = 40  # tao-<body>-spec stays well inside 63 characters, and so does the Pod name tao-<body>-xxxxx
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


# --------------------------------------------------------------------------- names and values


def object_name(launch_id: str) -> str:
    """`tao-<launch-id>` as a DNS-1123 label; a hash keeps it unique when the id had to be changed to fit."""
    body = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", launch_id.lower())).strip("-")
    if body != launch_id or len(body) > _NAME_BODY:
        digest = hashlib.sha1(launch_id.encode()).hexdigest()[:6]
        body = (body[: _NAME_BODY - 7].rstrip("-") + "-" + digest).lstrip("-")
    return f"tao-{body}"


def label_value(text: str) -> str:
    """A label value: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", str(text))[:63]
    value = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)
    return value or "none"


def shm_quantity(size: str | None) -> str | None:
    """Docker's `16g` / `512m` (binary units) as a Kubernetes quantity (`16Gi`); Kubernetes quantities pass through."""
    if not size:
        return None
    text = str(size).strip()
    match = re.fullmatch(r"(\d+)\s*([bkmgtBKMGT]?)[bB]?", text)
    if not match:
        return text  # already a quantity such as 16Gi, or the apiserver says what is wrong with it
    number, unit = match.groups()
    unit = unit.lower()
    return number if unit in ("", "b") else f"{number}{unit.upper()}i"


def kubeconfig_of(creds: Mapping[str, str]) -> str:
    return creds.get("KUBECONFIG") or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG


def namespace_of(job: JobRef) -> str:
    return job.details.get("namespace") or namespace_for(job.platform_credentials)


def context_of(job: JobRef) -> str:
    return job.details.get("context") or job.platform_credentials.get("TAO_K8S_CONTEXT") or ""


def container_command(spec: LaunchSpec, flat: Mapping[str, object], config_path: str) -> str:
    """The action's command for `/bin/sh -c`: `{config_path}` filled, args-style actions get `--key value`."""
    command = spec.command.replace("{config_path}", quote(config_path))
    if spec.config_format == "args":
        command += " " + " ".join(quote(a) for a in render_args(flat))
    return command.strip()


def job_manifest(spec: LaunchSpec, namespace: str, name: str, secret: str, configmap: str | None,
                 labels: Mapping[str, str], file_name: str | None, flat: Mapping[str, object]) -> dict:
    """The batch/v1 Job, created with parallelism 0 (no Pod until the launch releases it)."""
    creds = spec.platform_credentials
    config_path = f"{CONTAINER_SPECS}/{file_name}" if file_name else ""
    container: dict = {
        "name": CONTAINER,
        "image": spec.image,
        "command": ["/bin/sh", "-c", container_command(spec, flat, config_path)],
        "envFrom": [{"secretRef": {"name": secret}}],
        "env": [
            {"name": "TAO_API_RESULTS_DIR", "value": CONTAINER_RESULTS},
            {"name": "NUM_GPU_PER_NODE", "value": str(int(spec.num_gpus))},
        ],
        "volumeMounts": [
            {"name": "results", "mountPath": CONTAINER_RESULTS},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    volumes: list[dict] = [
        {"name": "results", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", **({"sizeLimit": shm_quantity(spec.resources.shm_size)}
                                                             if spec.resources.shm_size else {})}},
    ]
    if configmap:
        container["volumeMounts"].insert(0, {"name": "specs", "mountPath": CONTAINER_SPECS, "readOnly": True})
        volumes.insert(0, {"name": "specs", "configMap": {"name": configmap}})
    pod_spec: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the TAO container has no business with the cluster API
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": volumes,
    }
    if spec.num_gpus > 0:
        gpus = str(int(spec.num_gpus))
        container["resources"] = {"limits": {GPU_RESOURCE: gpus}, "requests": {GPU_RESOURCE: gpus}}
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule; tolerate that (and only that)
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    if creds.get("TAO_K8S_IMAGE_PULL_SECRET"):  # an existing docker-registry Secret, e.g. for nvcr.io
        pod_spec["imagePullSecrets"] = [{"name": creds["TAO_K8S_IMAGE_PULL_SECRET"]}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                     "annotations": {LAUNCH_ID_ANNOTATION: spec.launch_id}},
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 0,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def launch_labels(spec: LaunchSpec) -> dict[str, str]:
    labels = {}
    for key, value in spec.labels.items():  # e.g. taobot.intake / taobot.owner; keys that are not label keys are skipped
        if _LABEL_KEY.match(str(key)) and len(str(key)) <= 253:
            labels[str(key)] = label_value(str(value))
    labels.update({
        MANAGED_BY: MANAGED_BY_VALUE,
        LAUNCH_LABEL: label_value(spec.launch_id),
        MODEL_LABEL: label_value(spec.model),
        ACTION_LABEL: label_value(spec.action),
    })
    return labels


# --------------------------------------------------------------------------- mapping status


def _conditions(job: Mapping) -> dict[str, dict]:
    out = {}
    for c in (job.get("status") or {}).get("conditions") or []:
        if str(c.get("status")) == "True":
            out[c.get("type")] = c
    return out


def _container_status(pod: Mapping | None) -> dict:
    if not pod:
        return {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == CONTAINER:
            return cs
    return statuses[0] if statuses else {}


def _terminated(pod: Mapping | None) -> dict:
    cs = _container_status(pod)
    return (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}


def _exit_code(pod: Mapping | None) -> int | None:
    code = _terminated(pod).get("exitCode")
    return int(code) if isinstance(code, int) else None


def _one_line(text: object, limit: int = 300) -> str:
    value = " ".join(str(text or "").split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def pending_reason(pod: Mapping | None, job: Mapping) -> tuple[str, str]:
    """(native, reason) of a Job whose Pod has not started."""
    if pod is None:
        if int((job.get("spec") or {}).get("parallelism") or 0) == 0:
            return "Job not started", "the Job was created but never released (parallelism 0): the launch did not finish"
        return "Job waiting for its Pod", "waiting for the job controller to create the Pod"
    waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason"):
        reason = waiting["reason"]
        message = _one_line(waiting.get("message"))
        return f"Pod Pending ({reason})", f"{reason}: {message}" if message else reason
    status = pod.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled":
            if str(c.get("status")) == "False":
                reason = c.get("reason") or "Unschedulable"
                message = _one_line(c.get("message"))
                return f"Pod Pending ({reason})", f"{reason}: {message}" if message else reason
            node = (pod.get("spec") or {}).get("nodeName")
            return "Pod Pending (ContainerCreating)", f"ContainerCreating: scheduled on {node or 'a node'}, starting the container"
    if (pod.get("spec") or {}).get("nodeName"):
        return "Pod Pending (ContainerCreating)", f"ContainerCreating: scheduled on {pod['spec']['nodeName']}, starting the container"
    return "Pod Pending", "waiting for the scheduler to place the Pod"


def _failure_reason(condition: Mapping, pod: Mapping | None) -> str:
    parts = [str(condition.get("reason") or "Failed")]
    if condition.get("message"):
        parts[0] += f": {_one_line(condition['message'])}"
    term = _terminated(pod)
    code = _exit_code(pod)
    if term.get("reason") == "OOMKilled":
        parts.append(f"the container ran out of memory (OOMKilled, exit code {code})")
    elif code is not None:
        parts.append(f"the container exited with code {code}" + (f" ({term['reason']})" if term.get("reason") else ""))
    if term.get("message"):
        parts.append(_one_line(term["message"], 200))
    status = (pod or {}).get("status") or {}
    if status.get("reason"):  # e.g. Evicted: The node was low on resource: memory
        parts.append(f"the Pod was {status['reason']}" + (f": {_one_line(status['message'], 200)}" if status.get("message") else ""))
    return "; ".join(parts)


def job_status(job: Mapping | None, pods: list[Mapping], cancelled_here: bool = False) -> JobStatus:
    """Map one Job (an item of the list answer, None when it is gone) and its Pods (oldest first) to a JobStatus."""
    if job is None:
        if cancelled_here:
            return JobStatus(JobState.CANCELLED, "deleted", "cancelled from taobot (the Job was deleted)")
        return JobStatus(JobState.UNKNOWN, "not found",
                         "the Job no longer exists (deleted outside taobot, or cancelled before taobot restarted)")
    pod = pods[-1] if pods else None
    conditions = _conditions(job)
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    deleting = bool((job.get("metadata") or {}).get("deletionTimestamp"))
    if "Complete" in conditions:
        return JobStatus(JobState.SUCCEEDED, "Job Complete", None, _exit_code(pod) if pod else 0)
    if annotations.get(CANCELLED_ANNOTATION) or (cancelled_here and deleting):
        native = "Job cancelled (deleting)" if deleting else "Job cancelled"
        return JobStatus(JobState.CANCELLED, native, "cancelled from taobot", _exit_code(pod))
    if "Failed" in conditions:
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        culprit = failed_pods[-1] if failed_pods else pod
        cond = conditions["Failed"]
        return JobStatus(JobState.FAILED, f"Job Failed ({cond.get('reason') or 'Failed'})", _failure_reason(cond, culprit),
                         _exit_code(culprit))
    if (job.get("spec") or {}).get("suspend"):
        return JobStatus(JobState.PAUSED, "Job suspended", "the Job is suspended (spec.suspend)")
    if deleting:
        return JobStatus(JobState.UNKNOWN, "Job deleting", "the Job is being deleted outside taobot")
    phase = (pod.get("status") or {}).get("phase") if pod else None
    if phase == "Running":
        return JobStatus(JobState.RUNNING, "Pod Running")
    if phase == "Succeeded":  # the job controller marks the Job Complete next
        return JobStatus(JobState.RUNNING, "Pod Succeeded (Job completing)", None, _exit_code(pod))
    if phase == "Failed":  # the job controller marks the Job Failed next (backoffLimit 0)
        return JobStatus(JobState.RUNNING, "Pod Failed (Job failing)", None, _exit_code(pod))
    if phase == "Unknown":
        return JobStatus(JobState.UNKNOWN, "Pod Unknown", "the Pod's node does not report its state")
    native, reason = pending_reason(pod, job)
    return JobStatus(JobState.PENDING, native, reason)


def _owner_job(pod: Mapping) -> str | None:
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return ref.get("name")
    return (meta.get("labels") or {}).get("job-name")


# --------------------------------------------------------------------------- errors


def _api_message(exc) -> str:
    from taobot.preflight.kubernetes import _api_message as message

    return message(exc)


def _network_text(exc: BaseException) -> str:
    from taobot.preflight.kubernetes import _describe_network_error

    return _describe_network_error(exc)


def _is_api_error(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None) if _is_api_error(exc) else None


def _could_not_ask(exc: BaseException) -> bool:
    """Connection errors, TLS, timeouts, 5xx and 429: the platform could not be asked (never a refusal)."""
    if not _is_api_error(exc):
        return True
    status = _status(exc)
    return status in (0, None, 429) or status >= 500


class _Conn:
    def __init__(self, client, secrets: frozenset[str]) -> None:
        self.client = client  # taobot.preflight.kubernetes.KubeClient
        self.secrets = secrets

    @property
    def api(self):
        return self.client.api


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: PreflightSettings | None = None, read_timeout_s: float = 30.0) -> None:
        self.settings = settings or PreflightSettings()
        self.read_timeout_s = read_timeout_s
        self._conns: dict[tuple[str, str], _Conn] = {}
        self._lock = threading.Lock()
        self._cancelled: dict[tuple[str, str, str], bool] = {}  # (connection, namespace, job) cancelled by this process
        self.list_calls = 0  # Job/Pod list queries issued by poll; the benchmark reads it

    @property
    def timeout(self) -> tuple[float, float]:
        connect = float(self.settings.connect_timeout_s)
        return (connect, float(max(self.read_timeout_s, self.settings.http_timeout_s, connect)))

    # ------------------------------------------------------------------ connections

    def connection_key(self, job: JobRef) -> str:
        return f"{kubeconfig_of(job.platform_credentials)}|{context_of(job)}|{namespace_of(job)}"

    def _conn(self, creds: Mapping[str, str], context: str) -> _Conn:
        """The cached client for this kubeconfig + context; raises _ConfigUnusable when it cannot be built."""
        from taobot.preflight.kubernetes import load_client

        key = (kubeconfig_of(creds), context)
        with self._lock:
            conn = self._conns.get(key)
            if conn is not None:
                return conn
        wanted = {"KUBECONFIG": creds.get("KUBECONFIG") or "", "TAO_K8S_CONTEXT": context}
        client, failure, secrets = load_client(wanted, self.settings)
        if client is None:
            raise _ConfigUnusable(failure.detail if failure else "no usable Kubernetes configuration",
                                  failure.remediation if failure else "")
        conn = _Conn(client, secrets)
        with self._lock:
            old = self._conns.get(key)
            if old is not None:  # another thread built one meanwhile: keep that
                _close(client)
                return old
            self._conns[key] = conn
            if client.context and not context:  # jobs record the context actually used: poll finds this one too
                self._conns.setdefault((key[0], client.context), conn)
        return conn

    def _drop(self, conn: _Conn) -> None:
        with self._lock:
            for key, value in list(self._conns.items()):
                if value is conn:
                    del self._conns[key]
        _close(conn.client)

    def close_connection(self, creds: Mapping[str, str], context: str = "") -> None:
        with self._lock:
            conn = self._conns.pop((kubeconfig_of(creds), context or creds.get("TAO_K8S_CONTEXT") or ""), None)
        if conn is not None:
            _close(conn.client)

    def close(self) -> None:
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            _close(conn.client)

    def _redact(self, text: str, conn: _Conn | None, extra: Iterable[str] = ()) -> str:
        secrets = set(conn.secrets if conn else ()) | {s for s in extra if isinstance(s, str) and len(s) >= 4}
        for s in sorted(secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return text

    def _unreachable(self, conn: _Conn, exc: BaseException, doing: str, extra: Iterable[str] = ()) -> BackendUnreachable:
        """Could not ask: the cached client is dropped so the next call reloads the kubeconfig."""
        server = getattr(conn.client, "server", "?")
        if _is_api_error(exc) and _status(exc) not in (0, None):
            why = f"HTTP {_status(exc)} {_api_message(exc)}"
        elif _is_api_error(exc):
            why = _one_line(getattr(exc, "reason", "") or exc)
        else:
            why = _network_text(exc)
        self._drop(conn)
        return BackendUnreachable(self._redact(f"the Kubernetes API server at {server} did not answer while {doing}: {why}",
                                               conn, extra), server=server)

    def _refused(self, conn: _Conn, exc: BaseException, doing: str, extra: Iterable[str] = ()) -> str:
        status = _status(exc)
        if status == 401:
            self._drop(conn)  # a refreshed kubeconfig is picked up next time
        return self._redact(f"{doing} was refused: HTTP {status} {_api_message(exc)}", conn, extra)

    # ------------------------------------------------------------------ launch

    def launch(self, spec: LaunchSpec) -> Submitted:
        creds = dict(spec.platform_credentials)
        namespace = namespace_for(creds)
        if spec.num_nodes > 1:
            raise LaunchFailed(f"the Kubernetes backend runs one Pod per launch; num_nodes is {spec.num_nodes}, use 1")
        try:
            conn = self._conn(creds, creds.get("TAO_K8S_CONTEXT") or "")
        except _ConfigUnusable as exc:
            raise LaunchFailed(f"cannot use the Kubernetes configuration: {exc.detail}"
                               + (f" — {exc.remediation}" if exc.remediation else "")) from None
        secrets_of_job = [str(v) for v in spec.job_env.values()]
        name = object_name(spec.launch_id)
        secret_name, configmap_name = f"{name}-env", f"{name}-spec"
        labels = launch_labels(spec)
        flat = {k: (CONTAINER_RESULTS if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
        file_name = None
        if spec.config_format != "args":
            ext = "toml" if spec.config_format == "toml" else "yaml"
            file_name = f"{re.sub(r'[^A-Za-z0-9._-]', '-', spec.action)}.{ext}"
            rendered = render(flat, spec.config_format)
        manifest = job_manifest(spec, namespace, name, secret_name, configmap_name if file_name else None, labels,
                                file_name, flat)

        from kubernetes import client as k8s

        batch, core = k8s.BatchV1Api(conn.api), k8s.CoreV1Api(conn.api)
        t = self.timeout

        # 1. the Job, not yet allowed to run a Pod
        try:
            created = batch.create_namespaced_job(namespace, manifest, _request_timeout=t, _preload_content=False)
            uid = json.loads(created.data)["metadata"]["uid"]
        except Exception as exc:  # noqa: BLE001
            if _could_not_ask(exc):
                # the Job may exist even though the answer was lost: remove it so no launch runs unrecorded
                self._cleanup(conn, namespace, name)
                raise self._unreachable(conn, exc, f"creating Job `{name}` in namespace `{namespace}`", secrets_of_job) from None
            raise LaunchFailed(self._refused(conn, exc, f"creating Job `{name}` in namespace `{namespace}`", secrets_of_job)) from None
        owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}]
        meta = {"labels": dict(labels), "ownerReferences": owner}

        # 2. + 3. the Secret and the ConfigMap, owned by the Job; 4. release the Job
        steps: list[tuple[str, object]] = [
            (f"creating Secret `{secret_name}`", lambda: core.create_namespaced_secret(namespace, {
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
                "metadata": {"name": secret_name, **meta},
                "stringData": {str(k): str(v) for k, v in spec.job_env.items()},
            }, _request_timeout=t, _preload_content=False)),
        ]
        if file_name:
            steps.append((f"creating ConfigMap `{configmap_name}`", lambda: core.create_namespaced_config_map(namespace, {
                "apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
                "metadata": {"name": configmap_name, **meta},
                "data": {file_name: rendered},
            }, _request_timeout=t, _preload_content=False)))
        steps.append((f"starting Job `{name}` (parallelism 1)", lambda: batch.patch_namespaced_job(
            name, namespace, {"spec": {"parallelism": 1}}, _request_timeout=t, _preload_content=False)))
        for doing, call in steps:
            try:
                call()
            except Exception as exc:  # noqa: BLE001
                left = self._cleanup(conn, namespace, name)
                if _could_not_ask(exc):
                    raise self._unreachable(conn, exc, doing + left, secrets_of_job) from None
                raise LaunchFailed(self._refused(conn, exc, doing, secrets_of_job) + left) from None

        context = conn.client.context or ""
        return Submitted(
            job_id=name,
            log_location=f"kubectl -n {namespace} logs job/{name}",
            results_location=spec.results_uri or RESULTS_IN_POD,
            details={"namespace": namespace, "context": context},
        )

    def _cleanup(self, conn: _Conn, namespace: str, name: str) -> str:
        """Delete the half-made launch's Job; the garbage collector removes the Secret/ConfigMap it owns.

        Returns "" when nothing is left behind, else a sentence for the error message.
        """
        from kubernetes import client as k8s

        try:
            k8s.BatchV1Api(conn.api).delete_namespaced_job(
                name, namespace, body={"propagationPolicy": "Background"}, _request_timeout=self.timeout,
                _preload_content=False)
        except Exception as exc:  # noqa: BLE001
            if _status(exc) == 404:
                return ""
            log.warning("could not delete the half-made Job", extra={"job": name, "namespace": namespace})
            return (f"; the Job `{name}` (which never ran a Pod) could not be deleted again "
                    f"({'HTTP ' + str(_status(exc)) if _is_api_error(exc) else _network_text(exc)}): "
                    f"delete it with `kubectl -n {namespace} delete job {name}`")
        return ""

    # ------------------------------------------------------------------ status

    def poll(self, jobs: list[JobRef], tails_for: Iterable[str] = ()) -> dict[str, JobStatus]:
        """One Job list and one Pod list per namespace for all jobs (callers group by connection_key)."""
        if not jobs:
            return {}
        tails = set(tails_for)
        groups: dict[tuple[str, str, str], list[JobRef]] = {}
        for job in jobs:
            groups.setdefault((kubeconfig_of(job.platform_credentials), context_of(job), namespace_of(job)), []).append(job)
        result: dict[str, JobStatus] = {}
        for (_kc, context, namespace), members in groups.items():
            result.update(self._poll_namespace(members, context, namespace, tails))
        return result

    def _poll_namespace(self, jobs: list[JobRef], context: str, namespace: str, tails: set[str]) -> dict[str, JobStatus]:
        from kubernetes import client as k8s

        creds = jobs[0].platform_credentials
        try:
            conn = self._conn(creds, context)
        except _ConfigUnusable as exc:
            raise BackendUnreachable(f"cannot use the Kubernetes configuration: {exc.detail}") from None
        values = sorted({label_value(j.launch_id) for j in jobs})
        selector = SELECTOR
        if len(values) <= MAX_SELECTED_LAUNCHES:
            selector += f",{LAUNCH_LABEL} in ({','.join(values)})"
        t = self.timeout
        try:
            self.list_calls += 1
            job_list = json.loads(k8s.BatchV1Api(conn.api).list_namespaced_job(
                namespace, label_selector=selector, _request_timeout=t, _preload_content=False).data)
            self.list_calls += 1
            pod_list = json.loads(k8s.CoreV1Api(conn.api).list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=t, _preload_content=False).data)
        except Exception as exc:  # noqa: BLE001 - nothing here is a job failure: "could not ask"
            if _could_not_ask(exc) or _status(exc) == 401:
                raise self._unreachable(conn, exc, f"listing the Jobs in namespace `{namespace}`") from None
            raise BackendUnreachable(self._refused(conn, exc, f"listing Jobs and Pods in namespace `{namespace}`")) from None

        by_name = {(j.get("metadata") or {}).get("name"): j for j in job_list.get("items") or []}
        pods_of: dict[str, list[dict]] = {}
        for pod in pod_list.get("items") or []:
            owner = _owner_job(pod)
            if owner:
                pods_of.setdefault(owner, []).append(pod)
        for pods in pods_of.values():
            pods.sort(key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "", (p.get("metadata") or {}).get("name") or ""))

        conn_key = self.connection_key(jobs[0])
        out: dict[str, JobStatus] = {}
        for ref in jobs:
            job = by_name.get(ref.job_id)
            pods = pods_of.get(ref.job_id, [])
            status = job_status(job, pods, self._cancelled.get((conn_key, namespace, ref.job_id), False))
            if ref.job_id in tails and pods:
                lines = self._tail(conn, namespace, pods[-1], TAIL_LINES)
                if lines:
                    status = JobStatus(status.state, status.native, status.reason, status.exit_code, tuple(lines))
            out[ref.job_id] = status
        return out

    def _tail(self, conn: _Conn, namespace: str, pod: Mapping, lines: int) -> list[str]:
        """The Pod's last lines; a Pod without logs (not started, no kubelet, gone) gives none, never an error."""
        from kubernetes import client as k8s

        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Running", "Succeeded", "Failed"):
            return []
        name = (pod.get("metadata") or {}).get("name")
        try:
            resp = k8s.CoreV1Api(conn.api).read_namespaced_pod_log(
                name, namespace, container=CONTAINER, tail_lines=int(lines), _request_timeout=self.timeout,
                _preload_content=False)
            text = resp.data.decode("utf-8", "replace")
        except Exception as exc:  # noqa: BLE001
            log.info("no log tail", extra={"pod": name, "namespace": namespace, "error": type(exc).__name__,
                                            "status": _status(exc)})
            return []
        return text.splitlines()[-int(lines):] if text else []

    def logs(self, job: JobRef, lines: int = TAIL_LINES) -> list[str]:
        from kubernetes import client as k8s

        namespace = namespace_of(job)
        try:
            conn = self._conn(job.platform_credentials, context_of(job))
        except _ConfigUnusable as exc:
            raise BackendUnreachable(f"cannot use the Kubernetes configuration: {exc.detail}") from None
        try:
            pods = json.loads(k8s.CoreV1Api(conn.api).list_namespaced_pod(
                namespace, label_selector=f"{SELECTOR},{LAUNCH_LABEL}={label_value(job.launch_id)}",
                _request_timeout=self.timeout, _preload_content=False).data).get("items") or []
        except Exception as exc:  # noqa: BLE001
            if _could_not_ask(exc) or _status(exc) == 401:
                raise self._unreachable(conn, exc, f"listing the Pods of Job `{job.job_id}`") from None
            raise BackendUnreachable(self._refused(conn, exc, f"listing the Pods of Job `{job.job_id}`")) from None
        pods = sorted((p for p in pods if _owner_job(p) == job.job_id),
                      key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
        return self._tail(conn, namespace, pods[-1], lines) if pods else []

    # ------------------------------------------------------------------ cancel

    def cancel(self, job: JobRef) -> None:
        """Mark the Job cancelled, stop its Pod (parallelism 0) and delete it; finished or missing Jobs are left alone."""
        from kubernetes import client as k8s

        namespace = namespace_of(job)
        try:
            conn = self._conn(job.platform_credentials, context_of(job))
        except _ConfigUnusable as exc:
            raise BackendUnreachable(f"cannot use the Kubernetes configuration: {exc.detail}") from None
        batch = k8s.BatchV1Api(conn.api)
        key = (self.connection_key(job), namespace, job.job_id)
        doing = f"cancelling Job `{job.job_id}` in namespace `{namespace}`"
        try:
            current = json.loads(batch.read_namespaced_job(job.job_id, namespace, _request_timeout=self.timeout,
                                                           _preload_content=False).data)
            if {"Complete", "Failed"} & set(_conditions(current)):
                return  # already finished: nothing to stop, and its Pod keeps the logs
            self._remember_cancel(key)
            batch.patch_namespaced_job(job.job_id, namespace, {
                "metadata": {"annotations": {CANCELLED_ANNOTATION: "true"}},
                "spec": {"parallelism": 0},
            }, _request_timeout=self.timeout, _preload_content=False)
            batch.delete_namespaced_job(job.job_id, namespace, body={"propagationPolicy": "Foreground"},
                                        _request_timeout=self.timeout, _preload_content=False)
        except Exception as exc:  # noqa: BLE001
            if _status(exc) == 404:  # gone already (or between our calls): counts as cancelled
                self._remember_cancel(key)
                return
            if _could_not_ask(exc) or _status(exc) == 401:
                raise self._unreachable(conn, exc, doing) from None
            # e.g. 403: the Job keeps running, so this must not read as "cancelled"; callers report
            # BackendUnreachable messages to the person who asked
            raise BackendUnreachable(self._refused(conn, exc, doing)) from None

    def _remember_cancel(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._cancelled[key] = True
            while len(self._cancelled) > 10000:  # a long-running bot: forget the oldest
                self._cancelled.pop(next(iter(self._cancelled)))


class _ConfigUnusable(Exception):
    def __init__(self, detail: str, remediation: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.remediation = remediation


def _close(client) -> None:
    try:
        client.api.close()
    except Exception:  # noqa: BLE001 - closing a pool must not turn a result into a crash
        pass
