"""Kubernetes backend: one batch/v1 Job per launch, in TAO_K8S_NAMESPACE (default `default`).

The ApiClient is the preflight's (`taobot.kube.load_client`: KUBECONFIG /
TAO_K8S_CONTEXT / in-cluster service account, a private configuration, no
retries), cached per kubeconfig + context and dropped after a connection
error or a 401 so the next call loads it afresh. The objects a launch
creates are built in `taobot.backends.kube_manifests`; what the list
answers mean is decided in `taobot.backends.kube_status`.

Launch creates, in this order:

1. the Job `tao-<launch-id>` with `parallelism: 0`, so no Pod exists yet
   (`backoffLimit: 0`, `completions: 1`, `ttlSecondsAfterFinished` 3600:
   an hour after it finished, Kubernetes deletes the Job and the garbage
   collector what it owns; on clusters before 1.21 only where the
   TTLAfterFinished feature gate is on, else the API server drops the field);
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
launches), plus one log read per job in `tails_for`: its last lines, and
the run's progress from them (the results folder is in the Pod, a PVC or
s3, which the bot cannot read: the progress says it came from the log).

The Secret lives only as long as the job needs it: `cleanup` deletes it
(404 counts as deleted) when the monitor sees the launch end, and `cancel`
does after stopping the Job; the garbage collector would take it with the
Job anyway. Deleting it needs `delete` on secrets (deploy/'s Role has it).

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

import json
import logging
import threading
from collections.abc import Iterable, Mapping

from taobot.backends.base import JobRef, JobStatus, LaunchSpec, Submitted
from taobot.backends.kube_manifests import (
    CANCELLED_ANNOTATION,
    CONTAINER,
    CONTAINER_RESULTS,
    LaunchObjects,
    launch_objects,
    launch_selector,
    object_name,
    poll_selector,
    secret_name,
)
from taobot.backends.kube_status import job_status, owner_job, pods_by_job, true_conditions
from taobot.backends.tao_status import PROGRESS_LOG_LINES, with_progress
from taobot.config import PlatformSettings
from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.kube import (
    ClientCache,
    KubeClient,
    KubeConfigUnusable,
    api_message,
    could_not_ask,
    describe_network_error,
    is_api_error,
    kubeconfig_of,
    namespace_for,
    profile_of,
    redact,
    short,
    status_of,
)

log = logging.getLogger(__name__)

TAIL_LINES = 20
RESULTS_IN_POD = f"{CONTAINER_RESULTS} in the pod (emptyDir; copy out or set a results s3:// URI)"


def context_of(job: JobRef) -> str:
    return job.details.get("context") or job.platform_credentials.get("TAO_K8S_CONTEXT") or ""


def _config_text(exc: KubeConfigUnusable) -> str:
    return f"cannot use the Kubernetes configuration: {exc.detail}"


def list_objects(conn: KubeClient, kind: str, namespace: str, selector: str, timeout) -> dict:
    """One list call for "jobs" or "pods", as the API's JSON: the client library's model objects are slow on long lists."""
    from kubernetes import client as k8s

    if kind == "jobs":
        api = k8s.BatchV1Api(conn.api).list_namespaced_job
    else:
        api = k8s.CoreV1Api(conn.api).list_namespaced_pod
    return json.loads(api(namespace, label_selector=selector, _request_timeout=timeout, _preload_content=False).data)


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: PlatformSettings | None = None, read_timeout_s: float = 30.0) -> None:
        self.settings = settings or PlatformSettings()
        self.read_timeout_s = read_timeout_s
        self.clients = ClientCache(self.settings)
        self._lock = threading.Lock()
        self._cancelled: dict[tuple[str, str, str], bool] = {}  # (connection, namespace, job) cancelled by this process
        self.list_calls = 0  # Job/Pod list queries issued by poll; the benchmark reads it

    @property
    def timeout(self) -> tuple[float, float]:
        connect = float(self.settings.connect_timeout_s)
        return (connect, float(max(self.read_timeout_s, self.settings.http_timeout_s, connect)))

    # ------------------------------------------------------------------ connections

    def namespace_of(self, job: JobRef) -> str:
        return job.details.get("namespace") or namespace_for(job.platform_credentials, self.settings)

    def connection_key(self, job: JobRef) -> str:
        return f"{kubeconfig_of(job.platform_credentials, self.settings)}|{context_of(job)}|{self.namespace_of(job)}"

    def close_connection(self, creds: Mapping[str, str], context: str = "") -> None:
        self.clients.close_for(creds, context or creds.get("TAO_K8S_CONTEXT") or "")

    def close(self) -> None:
        self.clients.close()

    def _unreachable(
        self, conn: KubeClient, exc: BaseException, doing: str, extra: Iterable[str] = ()
    ) -> BackendUnreachable:
        """Could not ask: the cached client is dropped so the next call reloads the kubeconfig."""
        server = getattr(conn, "server", "?")
        if is_api_error(exc) and status_of(exc) not in (0, None):
            why = f"HTTP {status_of(exc)} {api_message(exc)}"
        elif is_api_error(exc):
            why = short(getattr(exc, "reason", "") or exc)
        else:
            why = describe_network_error(exc)
        self.clients.drop(conn)
        text = f"the Kubernetes API server at {server} did not answer while {doing}: {why}"
        return BackendUnreachable(_redacted(text, conn, extra), server=server)

    def _connect(self, creds: Mapping[str, str], context: str) -> KubeClient:
        try:
            return self.clients.get(creds, context)
        except KubeConfigUnusable as exc:
            raise BackendUnreachable(_config_text(exc)) from None

    def _not_done(self, conn: KubeClient, exc: BaseException, doing: str) -> BackendUnreachable:
        """No answer (or 401): could not ask. A refusal (e.g. 403) is BackendUnreachable too, with the server's
        words: the thing was not done, and callers report the message to the person who asked."""
        if could_not_ask(exc) or status_of(exc) == 401:
            return self._unreachable(conn, exc, doing)
        return BackendUnreachable(self._refused(conn, exc, doing))

    def _refused(self, conn: KubeClient, exc: BaseException, doing: str, extra: Iterable[str] = ()) -> str:
        status = status_of(exc)
        if status == 401:
            self.clients.drop(conn)  # a refreshed kubeconfig is picked up next time
        return _redacted(f"{doing} was refused: HTTP {status} {api_message(exc)}", conn, extra)

    # ------------------------------------------------------------------ launch

    def launch(self, spec: LaunchSpec) -> Submitted:
        creds = dict(spec.platform_credentials)
        namespace = namespace_for(creds, self.settings)
        if spec.num_nodes > 1:
            raise LaunchFailed(f"the Kubernetes backend runs one Pod per launch; num_nodes is {spec.num_nodes}, use 1")
        try:
            conn = self.clients.get(creds, creds.get("TAO_K8S_CONTEXT") or "")
        except KubeConfigUnusable as exc:
            raise LaunchFailed(_config_text(exc) + (f" — {exc.remediation}" if exc.remediation else "")) from None
        secrets_of_job = [str(v) for v in spec.job_env.values()]
        profile = profile_of(creds, self.settings)  # its claims are the only outside data the Pod sees
        objects = launch_objects(spec, namespace, profile.volumes if profile else ())
        name = objects.name

        from kubernetes import client as k8s

        batch, core = k8s.BatchV1Api(conn.api), k8s.CoreV1Api(conn.api)
        t = self.timeout

        # 1. the Job, not yet allowed to run a Pod
        doing = f"creating Job `{name}` in namespace `{namespace}`"
        try:
            created = batch.create_namespaced_job(namespace, objects.job, _request_timeout=t, _preload_content=False)
            uid = json.loads(created.data)["metadata"]["uid"]
        except Exception as exc:  # noqa: BLE001
            if could_not_ask(exc):
                # the Job may exist even though the answer was lost: remove it so no launch runs unrecorded
                delete_half_made(conn, namespace, name, self.timeout)
                raise self._unreachable(conn, exc, doing, secrets_of_job) from None
            raise LaunchFailed(self._refused(conn, exc, doing, secrets_of_job)) from None

        # 2. + 3. the Secret and the ConfigMap, owned by the Job; 4. release the Job
        steps = release_steps(core, batch, objects, uid, t)
        for doing, call in steps:
            try:
                call()
            except Exception as exc:  # noqa: BLE001
                left = delete_half_made(conn, namespace, name, self.timeout)
                if could_not_ask(exc):
                    raise self._unreachable(conn, exc, doing + left, secrets_of_job) from None
                raise LaunchFailed(self._refused(conn, exc, doing, secrets_of_job) + left) from None

        return Submitted(
            job_id=name,
            log_location=f"kubectl -n {namespace} logs job/{name}",
            results_location=spec.results_uri or RESULTS_IN_POD,
            details={"namespace": namespace, "context": conn.context or ""},
        )

    # ------------------------------------------------------------------ status

    def poll(self, jobs: list[JobRef], tails_for: Iterable[str] = ()) -> dict[str, JobStatus]:
        """One Job list and one Pod list per namespace for all jobs (callers group by connection_key)."""
        if not jobs:
            return {}
        tails = set(tails_for)
        groups: dict[tuple[str, str, str], list[JobRef]] = {}
        for job in jobs:
            key = (kubeconfig_of(job.platform_credentials, self.settings), context_of(job), self.namespace_of(job))
            groups.setdefault(key, []).append(job)
        result: dict[str, JobStatus] = {}
        for (_kc, context, namespace), members in groups.items():
            result.update(self._poll_namespace(members, context, namespace, tails))
        return result

    def _poll_namespace(
        self, jobs: list[JobRef], context: str, namespace: str, tails: set[str]
    ) -> dict[str, JobStatus]:
        conn = self._connect(jobs[0].platform_credentials, context)
        selector = poll_selector(j.launch_id for j in jobs)
        try:
            self.list_calls += 2
            job_list = list_objects(conn, "jobs", namespace, selector, self.timeout)
            pod_list = list_objects(conn, "pods", namespace, selector, self.timeout)
        except Exception as exc:  # noqa: BLE001 - nothing here is a job failure: "could not ask"
            if could_not_ask(exc) or status_of(exc) == 401:
                raise self._unreachable(conn, exc, f"listing the Jobs in namespace `{namespace}`") from None
            raise BackendUnreachable(
                self._refused(conn, exc, f"listing Jobs and Pods in namespace `{namespace}`")
            ) from None

        by_name = {(j.get("metadata") or {}).get("name"): j for j in job_list.get("items") or []}
        pods_of = pods_by_job(pod_list)
        conn_key = self.connection_key(jobs[0])
        out: dict[str, JobStatus] = {}
        for ref in jobs:
            pods = pods_of.get(ref.job_id, [])
            status = job_status(
                by_name.get(ref.job_id), pods, self._cancelled.get((conn_key, namespace, ref.job_id), False)
            )
            if ref.job_id in tails and pods:  # the results are in the Pod, a PVC or s3: progress from the log only
                lines = pod_log_tail(conn, namespace, pods[-1], PROGRESS_LOG_LINES, self.timeout)
                status = with_progress(status, lines)
            out[ref.job_id] = status
        return out

    def logs(self, job: JobRef, lines: int = TAIL_LINES) -> list[str]:
        namespace = self.namespace_of(job)
        conn = self._connect(job.platform_credentials, context_of(job))
        doing = f"listing the Pods of Job `{job.job_id}`"
        try:
            pods = (
                list_objects(conn, "pods", namespace, launch_selector(job.launch_id), self.timeout).get("items") or []
            )
        except Exception as exc:  # noqa: BLE001
            raise self._not_done(conn, exc, doing) from None
        pods = sorted(
            (p for p in pods if owner_job(p) == job.job_id),
            key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "",
        )
        return pod_log_tail(conn, namespace, pods[-1], lines, self.timeout) if pods else []

    # ------------------------------------------------------------------ cancel

    def cancel(self, job: JobRef) -> None:
        """Mark the Job cancelled, stop its Pod (parallelism 0) and delete it; finished or missing Jobs are left alone."""
        from kubernetes import client as k8s

        namespace = self.namespace_of(job)
        conn = self._connect(job.platform_credentials, context_of(job))
        batch = k8s.BatchV1Api(conn.api)
        key = (self.connection_key(job), namespace, job.job_id)
        doing = f"cancelling Job `{job.job_id}` in namespace `{namespace}`"
        try:
            current = json.loads(
                batch.read_namespaced_job(
                    job.job_id, namespace, _request_timeout=self.timeout, _preload_content=False
                ).data
            )
            if {"Complete", "Failed"} & set(true_conditions(current)):
                self._cleanup_after_cancel(job)
                return  # already finished: nothing to stop, and its Pod keeps the logs
            self._remember_cancel(key)
            batch.patch_namespaced_job(
                job.job_id,
                namespace,
                {
                    "metadata": {"annotations": {CANCELLED_ANNOTATION: "true"}},
                    "spec": {"parallelism": 0},
                },
                _request_timeout=self.timeout,
                _preload_content=False,
            )
            batch.delete_namespaced_job(
                job.job_id,
                namespace,
                body={"propagationPolicy": "Foreground"},
                _request_timeout=self.timeout,
                _preload_content=False,
            )
        except Exception as exc:  # noqa: BLE001
            if status_of(exc) == 404:  # gone already (or between our calls): counts as cancelled
                self._remember_cancel(key)
                self._cleanup_after_cancel(job)
                return
            # e.g. 403: the Job keeps running, so this must not read as "cancelled"; callers report
            # BackendUnreachable messages to the person who asked
            raise self._not_done(conn, exc, doing) from None
        self._cleanup_after_cancel(job)

    # ------------------------------------------------------------------ cleanup

    def cleanup(self, job: JobRef) -> None:
        """Delete the launch's Secret; one already gone (the garbage collector's doing, or ours) is fine."""
        namespace = self.namespace_of(job)
        name = secret_name(job.job_id or object_name(job.launch_id))
        conn = self._connect(job.platform_credentials, context_of(job))
        try:
            delete_secret(conn, namespace, name, self.timeout)
        except Exception as exc:  # noqa: BLE001
            raise self._not_done(conn, exc, f"deleting Secret `{name}` in namespace `{namespace}`") from None

    def _cleanup_after_cancel(self, job: JobRef) -> None:
        """The cancel stands even when the Secret could not go yet: the monitor's cleanup tries again at the end."""
        try:
            self.cleanup(job)
        except BackendUnreachable as exc:
            log.warning("Secret not deleted after cancel: %s", exc.message, extra={"job": job.job_id})

    def _remember_cancel(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            remember(self._cancelled, key)


def remember(flags: dict, key: tuple, limit: int = 10000) -> None:
    """Set a flag, forgetting the oldest past `limit`: a long-running bot must not grow without bound."""
    flags[key] = True
    while len(flags) > limit:
        flags.pop(next(iter(flags)))


def _redacted(text: str, conn: KubeClient | None, extra: Iterable[str] = ()) -> str:
    """`text` without the kubeconfig's credential values or the job's own secrets (`extra`)."""
    secrets = set(conn.secrets if conn else ()) | {s for s in extra if isinstance(s, str) and len(s) >= 4}
    return redact(text, secrets)


def delete_half_made(conn: KubeClient, namespace: str, name: str, timeout: tuple[float, float]) -> str:
    """Delete the half-made launch's Job; the garbage collector removes the Secret/ConfigMap it owns.

    Returns "" when nothing is left behind, else a sentence for the error message.
    """
    from kubernetes import client as k8s

    try:
        k8s.BatchV1Api(conn.api).delete_namespaced_job(
            name, namespace, body={"propagationPolicy": "Background"}, _request_timeout=timeout, _preload_content=False
        )
    except Exception as exc:  # noqa: BLE001
        if status_of(exc) == 404:
            return ""
        log.warning("could not delete the half-made Job", extra={"job": name, "namespace": namespace})
        return (
            f"; the Job `{name}` (which never ran a Pod) could not be deleted again "
            f"({'HTTP ' + str(status_of(exc)) if is_api_error(exc) else describe_network_error(exc)}): "
            f"delete it with `kubectl -n {namespace} delete job {name}`"
        )
    return ""


def release_steps(core, batch, objects: LaunchObjects, uid: str, t: tuple[float, float]) -> list[tuple[str, object]]:
    """(what it does, the call) for the launch's steps after the Job exists: its Secret, its ConfigMap, its release."""
    ns, name = objects.namespace, objects.name
    steps: list[tuple[str, object]] = [
        (
            f"creating Secret `{objects.secret_name}`",
            lambda: core.create_namespaced_secret(ns, objects.secret(uid), _request_timeout=t, _preload_content=False),
        ),
    ]
    if objects.configmap_name:
        steps.append(
            (
                f"creating ConfigMap `{objects.configmap_name}`",
                lambda: core.create_namespaced_config_map(
                    ns, objects.configmap(uid), _request_timeout=t, _preload_content=False
                ),
            )
        )
    steps.append(
        (
            f"starting Job `{name}` (parallelism 1)",
            lambda: batch.patch_namespaced_job(
                name, ns, {"spec": {"parallelism": 1}}, _request_timeout=t, _preload_content=False
            ),
        )
    )
    return steps


def delete_secret(conn: KubeClient, namespace: str, name: str, timeout: tuple[float, float]) -> None:
    """Delete a Secret; one that is gone already is fine. Raises what the client raised otherwise."""
    from kubernetes import client as k8s

    try:
        k8s.CoreV1Api(conn.api).delete_namespaced_secret(
            name, namespace, _request_timeout=timeout, _preload_content=False
        )
    except Exception as exc:  # noqa: BLE001
        if status_of(exc) != 404:
            raise


def pod_log_tail(conn: KubeClient, namespace: str, pod: Mapping, lines: int, timeout: tuple[float, float]) -> list[str]:
    """The Pod's last lines; a Pod without logs (not started, no kubelet, gone) gives none, never an error."""
    from kubernetes import client as k8s

    phase = (pod.get("status") or {}).get("phase")
    if phase not in ("Running", "Succeeded", "Failed"):
        return []
    name = (pod.get("metadata") or {}).get("name")
    try:
        resp = k8s.CoreV1Api(conn.api).read_namespaced_pod_log(
            name,
            namespace,
            container=CONTAINER,
            tail_lines=int(lines),
            _request_timeout=timeout,
            _preload_content=False,
        )
        text = resp.data.decode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001
        log.info(
            "no log tail",
            extra={"pod": name, "namespace": namespace, "error": type(exc).__name__, "status": status_of(exc)},
        )
        return []
    return text.splitlines()[-int(lines) :] if text else []
