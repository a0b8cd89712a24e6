"""A Kubernetes Job and its Pods, as the list answers show them, mapped to a `JobStatus`.

Pure: `job_status` reads the dicts of one Job list and one Pod list (poll
asks each namespace once for both), so every state it can report is
testable without a cluster. The Job's conditions decide the terminal
states; before that the newest Pod's phase and its container's waiting
reason say what is happening (ImagePullBackOff, Unschedulable, …). A Job
annotated `taobot/cancelled` is Cancelled; a missing Job is Cancelled only
when this process cancelled it, and Unknown otherwise (the cluster keeps
no record of a deleted Job).
"""

from __future__ import annotations

from collections.abc import Mapping

from taobot.backends.base import JobState, JobStatus
from taobot.backends.kube_manifests import CANCELLED_ANNOTATION, CONTAINER


def true_conditions(job: Mapping) -> dict[str, dict]:
    """The Job's conditions whose status is True, by type (Complete, Failed, …)."""
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
            return (
                "Job not started",
                "the Job was created but never released (parallelism 0): the launch did not finish",
            )
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
            return (
                "Pod Pending (ContainerCreating)",
                f"ContainerCreating: scheduled on {node or 'a node'}, starting the container",
            )
    if (pod.get("spec") or {}).get("nodeName"):
        return (
            "Pod Pending (ContainerCreating)",
            f"ContainerCreating: scheduled on {pod['spec']['nodeName']}, starting the container",
        )
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
        parts.append(
            f"the Pod was {status['reason']}"
            + (f": {_one_line(status['message'], 200)}" if status.get("message") else "")
        )
    return "; ".join(parts)


def job_status(job: Mapping | None, pods: list[Mapping], cancelled_here: bool = False) -> JobStatus:
    """Map one Job (an item of the list answer, None when it is gone) and its Pods (oldest first) to a JobStatus."""
    if job is None:
        if cancelled_here:
            return JobStatus(JobState.CANCELLED, "deleted", "cancelled from taobot (the Job was deleted)")
        return JobStatus(
            JobState.UNKNOWN,
            "not found",
            "the Job no longer exists (deleted outside taobot, or cancelled before taobot restarted)",
        )
    pod = pods[-1] if pods else None
    conditions = true_conditions(job)
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
        return JobStatus(
            JobState.FAILED,
            f"Job Failed ({cond.get('reason') or 'Failed'})",
            _failure_reason(cond, culprit),
            _exit_code(culprit),
        )
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


def owner_job(pod: Mapping) -> str | None:
    """The name of the Job that owns this Pod (ownerReferences, else the job-name label)."""
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return ref.get("name")
    return (meta.get("labels") or {}).get("job-name")


def pods_by_job(pod_list: Mapping) -> dict[str, list[dict]]:
    """The Pods of a list answer grouped by the Job that owns them, oldest first."""
    pods_of: dict[str, list[dict]] = {}
    for pod in pod_list.get("items") or []:
        owner = owner_job(pod)
        if owner:
            pods_of.setdefault(owner, []).append(pod)
    for pods in pods_of.values():
        pods.sort(
            key=lambda p: (
                (p.get("metadata") or {}).get("creationTimestamp") or "",
                (p.get("metadata") or {}).get("name") or "",
            )
        )
    return pods_of
