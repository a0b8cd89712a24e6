"""Kubernetes preflight: the launch conditions as the cluster itself sees them.

In order, stopping when a failure makes the rest meaningless:

1. identity - the person's uploaded kubeconfig, or the operator's cluster profile
   they chose (TAO_K8S_PROFILE), loads into a private ApiClient; in Slack there is
   no fallback to the bot's own kubeconfig or service account, and a KUBECONFIG path
   counts only on the person's own machine (`taobot.kube_identity`, the same step
   the Kubernetes backend uses); with a profile, TAO_K8S_NAMESPACE must be one of
   its namespaces;
2. API server and namespace - the server answers and accepts the credentials
   (GET /version), and the namespace (TAO_K8S_NAMESPACE, else the profile's first)
   exists and is not being deleted; a 403 on reading the namespace is noted, not fatal;
3. permissions - SelfSubjectAccessReviews (evaluated, never persisted) for
   everything the launch and the monitor do in the namespace (`PERMISSIONS`):
   create jobs.batch, secrets and configmaps; get/list, patch and delete
   jobs.batch; get/list pods and get pods/log;
4. volumes - every PersistentVolumeClaim of the profile exists in the namespace
   and is Bound (`kube_volumes`);
5. GPUs - nodes offer allocatable nvidia.com/gpu.

Apart from these, every dataset or results path that is not s3:// must lie on a
volume the profile mounts: the Job's Pod has nothing else from outside.

Nothing is created on the cluster. Every request has a connect/read timeout
and no retries, so an unreachable server fails in about connect_timeout_s.
Tokens and other credential values from the kubeconfig are redacted from
every text this module returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from taobot.kube import (
    KubeClient,
    KubeConfigUnusable,
    api_message,
    describe_network_error,
    load_client,
    namespace_for,
    profile_of,
    redact,
    short,
    tls_text,
)
from taobot.preflight.base import CheckResult, PreflightRequest, quote
from taobot.preflight.kube_rbac import (
    ROLE_PREFIX,
    anonymous,
    can_i_resource,
    permission_words,
    role_remediation,
    subject_flag,
    unknown_user_note,
    user_from,
    who,
)
from taobot.preflight.kube_volumes import claim_results, path_results

GPU_RESOURCE = "nvidia.com/gpu"
# (check id, label, verb(s, comma-separated), API group, resource, subresource, why the launch needs it);
# a check with several verbs passes when every one is allowed, and its remediation grants the denied ones.
PERMISSIONS = (
    ("kubernetes.rbac.jobs", "Create Jobs", "create", "batch", "jobs", "", "the launch creates a batch/v1 Job"),
    (
        "kubernetes.rbac.secrets",
        "Create Secrets",
        "create",
        "",
        "secrets",
        "",
        "the launch passes credentials in a per-launch Secret",
    ),
    (
        "kubernetes.rbac.configmaps",
        "Create ConfigMaps",
        "create",
        "",
        "configmaps",
        "",
        "the launch puts the rendered spec file in a per-launch ConfigMap",
    ),
    ("kubernetes.rbac.jobs-read", "Read Jobs", "get,list", "batch", "jobs", "", "monitoring lists the bot's Jobs"),
    (
        "kubernetes.rbac.jobs-patch",
        "Patch Jobs",
        "patch",
        "batch",
        "jobs",
        "",
        "the launch starts the Job once its Secret and ConfigMap exist, and cancel marks it cancelled",
    ),
    (
        "kubernetes.rbac.jobs-delete",
        "Delete Jobs",
        "delete",
        "batch",
        "jobs",
        "",
        "cancel deletes the Job (with its Pod, Secret and ConfigMap)",
    ),
    ("kubernetes.rbac.pods", "Read Pods", "get,list", "", "pods", "", "monitoring lists the Jobs' Pods"),
    ("kubernetes.rbac.pods-log", "Read Pod logs", "get", "", "pods", "log", "monitoring reads the job's Pod logs"),
)


@dataclass
class _Run:
    request: PreflightRequest
    secrets: set[str] = field(default_factory=set)
    user: str | None = None  # the identity, as the API server names it in 403s
    results: list[CheckResult] = field(default_factory=list)

    @property
    def timeout(self) -> tuple[float, float]:
        s = self.request.settings
        return (float(s.connect_timeout_s), float(max(s.http_timeout_s, s.connect_timeout_s)))

    @property
    def namespace(self) -> str:
        return namespace_for(self.request.credentials, self.request.settings)

    def add(self, check: str, label: str, ok: bool, detail: str, remediation: str = "") -> CheckResult:
        result = CheckResult(check, label, ok, detail, remediation, scope="platform")
        self.results.append(result)
        return result


def check(request: PreflightRequest) -> list[CheckResult]:
    run = _Run(request)
    profile = profile_of(request.credentials, request.settings)
    paths = path_results(request, profile)  # no I/O: what the Job mounts is the profile's
    try:
        client = load_client(request.credentials, request.settings)
    except KubeConfigUnusable as exc:  # already redacted
        label = "Kubernetes identity"
        return [CheckResult("kubernetes.config", label, False, exc.detail, exc.remediation, scope="platform"), *paths]
    run.secrets.update(client.secrets)
    try:
        if _api_and_namespace(run, client):
            _permissions(run, client)
            if profile is not None and profile.volumes:
                run.results += claim_results(client, profile, run.namespace, run.timeout)
            _gpus(run, client)
    finally:
        client.close()
    return [_redact(r, run.secrets) for r in run.results] + paths


# --------------------------------------------------------------------------- 2. API server and namespace


def _api_and_namespace(run: _Run, client: KubeClient) -> bool:
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    label = "API server"
    try:
        version = k8s.VersionApi(client.api).get_code(_request_timeout=run.timeout)
        reached = f"{client.server} answered (Kubernetes {version.git_version}) using {client.source}"
    except ApiException as exc:
        if exc.status == 401:
            run.add(
                "kubernetes.api",
                label,
                False,
                f"{client.server} rejected the credentials of {client.source} (401 Unauthorized)",
                "The token or client certificate is wrong or expired: refresh the kubeconfig with your cluster's "
                "setup command (e.g. `aws eks update-kubeconfig`, `gcloud container clusters get-credentials`) and retry.",
            )
            return False
        if exc.status == 403:  # authenticated, but /version is not public here: still reachable
            reached = f"{client.server} answered (version not readable by this identity) using {client.source}"
        elif exc.status == 0 or exc.status is None:  # the client turns bare TLS errors into status 0
            reason = str(exc.reason or "")
            _unreachable(
                run, client, f"TLS handshake failed ({tls_text(reason)})" if "SSL" in reason else short(reason)
            )
            return False
        else:
            run.add(
                "kubernetes.api",
                label,
                False,
                f"{client.server} answered HTTP {exc.status}: {api_message(exc)}",
                f"Check that {client.server} is the Kubernetes API server (`kubectl cluster-info`) and that it is healthy.",
            )
            return False
    except Exception as exc:  # connection refused, DNS, timeouts, TLS from urllib3
        _unreachable(run, client, describe_network_error(exc))
        return False
    run.add("kubernetes.api", label, True, reached)

    ns = run.namespace
    label = f"Namespace {ns}"
    try:
        obj = k8s.CoreV1Api(client.api).read_namespace(ns, _request_timeout=run.timeout)
    except ApiException as exc:
        message = api_message(exc)
        if exc.status == 404:
            run.add(
                "kubernetes.namespace",
                label,
                False,
                f"namespace `{ns}` does not exist on {client.server}",
                f"Create it: `kubectl create namespace {quote(ns)}`, or set TAO_K8S_NAMESPACE to an existing namespace "
                "(`kubectl get namespaces`).",
            )
            return True  # permissions and GPUs are still worth knowing
        if exc.status == 403:
            run.user = run.user or user_from(message)
            if anonymous(run.user):
                run.add(
                    "kubernetes.namespace",
                    label,
                    False,
                    f"{client.server} treated the request as anonymous ({run.user}): the context's user sent no credentials",
                    "Give the kubeconfig user a token or client certificate (an exec credential plugin may have failed; "
                    "run `kubectl get --raw /version -v=6` with the same kubeconfig to see why).",
                )
                return False
            run.add(
                "kubernetes.namespace",
                label,
                True,
                f"namespace `{ns}`: this identity may not read namespaces ({message}); its existence is not verified, "
                "the permission checks below show what may be done in it",
            )
            return True
        if exc.status == 401:
            run.add(
                "kubernetes.namespace",
                label,
                False,
                f"{client.server} rejected the credentials (401 Unauthorized)",
                "Refresh the kubeconfig with your cluster's setup command and retry.",
            )
            return False
        run.add(
            "kubernetes.namespace",
            label,
            False,
            f"reading namespace `{ns}` failed: HTTP {exc.status} {message}",
            f"Check the API server's health (`kubectl get namespace {quote(ns)}`).",
        )
        return False
    except Exception as exc:
        _unreachable(run, client, describe_network_error(exc))
        return False
    phase = getattr(obj.status, "phase", None) if obj.status else None
    if phase == "Terminating":
        run.add(
            "kubernetes.namespace",
            label,
            False,
            f"namespace `{ns}` is being deleted (phase Terminating); new Jobs are refused",
            f"Wait for the deletion to finish and recreate it (`kubectl create namespace {quote(ns)}`), or set "
            "TAO_K8S_NAMESPACE to another namespace.",
        )
        return True
    run.add("kubernetes.namespace", label, True, f"namespace `{ns}` exists ({phase or 'Active'})")
    return True


def _unreachable(run: _Run, client: KubeClient, why: str) -> None:
    run.add(
        "kubernetes.api",
        "API server",
        False,
        f"cannot reach the API server at {client.server}: {why}",
        f"Check that {client.server} is the right address and reachable from the bot's host (VPN, firewall, "
        "cluster running; `kubectl cluster-info` with the same kubeconfig), and that the kubeconfig's "
        "certificate-authority matches the server.",
    )


# --------------------------------------------------------------------------- 3. permissions


def _permissions(run: _Run, client: KubeClient) -> None:
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    ns = run.namespace
    authz = k8s.AuthorizationV1Api(client.api)
    # one entry per permission, in order: a finished result, or (permission, denied verbs, server's reason) when denied
    outcomes: list[CheckResult | tuple[tuple, str, str]] = []
    for perm in PERMISSIONS:
        check_id, label, verbs, group, resource, sub, why = perm
        what = permission_words(verbs, group, resource, sub)
        denied: list[str] = []
        reasons: list[str] = []
        failed: CheckResult | None = None
        for verb in verbs.split(","):
            attrs = k8s.V1ResourceAttributes(
                namespace=ns, verb=verb, group=group, resource=resource, subresource=sub or None
            )
            review = k8s.V1SelfSubjectAccessReview(
                api_version="authorization.k8s.io/v1",
                kind="SelfSubjectAccessReview",
                spec=k8s.V1SelfSubjectAccessReviewSpec(resource_attributes=attrs),
            )
            try:
                status = authz.create_self_subject_access_review(review, _request_timeout=run.timeout).status
            except ApiException as exc:
                message = api_message(exc)
                run.user = run.user or user_from(message)
                failed = CheckResult(
                    check_id,
                    label,
                    False,
                    f"could not ask whether this identity may {what} in `{ns}`: HTTP {exc.status} {message}",
                    "The identity may not create SelfSubjectAccessReviews (normally granted to every authenticated user "
                    f"by the system:basic-user ClusterRole); ask a cluster admin to confirm `kubectl auth can-i {verb} "
                    f"{can_i_resource(group, resource, sub)} -n {quote(ns)}` for the bot's identity.",
                )
                break
            except Exception as exc:
                failed = CheckResult(
                    check_id,
                    label,
                    False,
                    f"could not ask whether this identity may {what}: {describe_network_error(exc)}",
                    "Retry; check that the API server stays reachable.",
                )
                break
            if status is None or not status.allowed:
                denied.append(verb)
                extra = "; ".join(
                    x for x in (getattr(status, "reason", None), getattr(status, "evaluation_error", None)) if x
                )
                if extra and extra not in reasons:
                    reasons.append(extra)
        if failed is not None:
            outcomes.append(failed)
        elif denied:
            outcomes.append((perm, ",".join(denied), "; ".join(reasons)))
        else:
            outcomes.append(CheckResult(check_id, label, True, f"may {what} in namespace `{ns}`"))

    user = _identity(run, client) if any(isinstance(o, tuple) for o in outcomes) else run.user
    for outcome in outcomes:
        if isinstance(outcome, CheckResult):
            run.results.append(outcome)
            continue
        (check_id, label, _verbs, group, resource, sub, why), denied_verbs, extra = outcome
        detail = f"denied: {who(user)} may not {permission_words(denied_verbs, group, resource, sub)} in namespace `{ns}` ({why})"
        if extra:
            detail += f"; the API server says: {extra}"
        run.add(check_id, label, False, detail, role_remediation(ns, user, denied_verbs, group, resource, sub))


def _identity(run: _Run, client: KubeClient) -> str | None:
    """The user name for remediations: from a 403 already seen, else a SelfSubjectReview (Kubernetes 1.28+)."""
    if run.user:
        return run.user
    from kubernetes import client as k8s

    try:
        review = k8s.AuthenticationV1Api(client.api).create_self_subject_review(
            k8s.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"),
            _request_timeout=run.timeout,
        )
        name = review.status.user_info.username if review.status and review.status.user_info else None
    except Exception:  # older servers have no SelfSubjectReview; the remediation says how to fill the name in
        name = None
    run.user = name
    return name


# --------------------------------------------------------------------------- 4. GPUs


def _gpus(run: _Run, client: KubeClient) -> None:
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException
    from kubernetes.utils import parse_quantity

    label = "GPU nodes"
    try:
        nodes = k8s.CoreV1Api(client.api).list_node(_request_timeout=run.timeout).items or []
    except ApiException as exc:
        message = api_message(exc)
        if exc.status == 403:
            run.user = run.user or user_from(message)
            user = run.user
            run.add(
                "kubernetes.gpus",
                label,
                False,
                f"cannot check GPUs: {who(user)} may not list nodes, so whether any node offers {GPU_RESOURCE} is "
                f"unknown (the API server says: {message})",
                "A cluster admin either grants read access to nodes with a ClusterRole and a ClusterRoleBinding:\n"
                f"`kubectl create clusterrole {ROLE_PREFIX}-read-nodes --verb=get,list --resource=nodes`\n"
                f"`kubectl create clusterrolebinding {ROLE_PREFIX}-read-nodes --clusterrole={ROLE_PREFIX}-read-nodes "
                f"{subject_flag(user)}`\n"
                f"or confirms that nodes offer allocatable {GPU_RESOURCE} "
                "(`kubectl get nodes -o custom-columns=NAME:.metadata.name,GPU:.status.allocatable.nvidia\\.com/gpu`)."
                + unknown_user_note(user),
            )
            return
        run.add(
            "kubernetes.gpus",
            label,
            False,
            f"listing nodes failed: HTTP {exc.status} {message}",
            "Check the API server's health (`kubectl get nodes`).",
        )
        return
    except Exception as exc:
        run.add(
            "kubernetes.gpus",
            label,
            False,
            f"listing nodes failed: {describe_network_error(exc)}",
            "Retry; check that the API server stays reachable.",
        )
        return

    total, with_gpus, largest, cordoned = 0, 0, 0, 0
    for node in nodes:
        alloc = (node.status.allocatable if node.status else None) or {}
        raw = alloc.get(GPU_RESOURCE)
        try:
            count = int(parse_quantity(raw)) if raw is not None else 0
        except Exception:
            count = 0
        if count <= 0:
            continue
        if node.spec and node.spec.unschedulable:
            cordoned += count
            continue
        total += count
        with_gpus += 1
        largest = max(largest, count)

    ignored = f"; {cordoned} more on cordoned nodes, ignored" if cordoned else ""
    if total <= 0:
        run.add(
            "kubernetes.gpus",
            label,
            False,
            f"no node offers {GPU_RESOURCE}: 0 GPUs allocatable on {len(nodes)} node{'s' if len(nodes) != 1 else ''}{ignored}",
            "Install the NVIDIA device plugin on the GPU nodes, or the NVIDIA GPU Operator, which includes it: "
            "`helm repo add nvidia https://helm.ngc.nvidia.com/nvidia && helm install --wait gpu-operator "
            "-n gpu-operator --create-namespace nvidia/gpu-operator`; or add GPU nodes to the cluster, "
            f"or uncordon them; `kubectl describe nodes | grep {GPU_RESOURCE}` must show a non-zero allocatable count.",
        )
        return
    detail = (
        f"{total} GPU{'s' if total != 1 else ''} allocatable on {with_gpus} node{'s' if with_gpus != 1 else ''} "
        f"(largest: {largest} on one node; {len(nodes)} node{'s' if len(nodes) != 1 else ''} in the cluster{ignored})"
    )
    wanted = int(run.request.compute.get("num_gpus") or 0)
    if wanted > largest:  # the Job's single Pod needs all its GPUs on one node
        run.add(
            "kubernetes.gpus",
            label,
            False,
            f"the job asks for {wanted} GPUs on one node but the largest node offers {largest}: {detail}",
            f"Lower num_gpus to at most {largest}, or add a node with {wanted} allocatable {GPU_RESOURCE}.",
        )
        return
    run.add("kubernetes.gpus", label, True, detail)


# --------------------------------------------------------------------------- helpers


def _redact(result: CheckResult, secrets: set[str]) -> CheckResult:
    if not secrets:
        return result
    return replace(result, detail=redact(result.detail, secrets), remediation=redact(result.remediation, secrets))
