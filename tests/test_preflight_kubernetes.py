"""Kubernetes preflight against a real kube-apiserver (RBAC, etcd) from tests/services/setup.sh kube.

The admin kubeconfig arranges state (namespaces, Nodes with allocatable GPUs patched through the status
subresource, Roles, RoleBindings); the check under test runs with the kubeconfig of the identity being
tested. Every test uses its own namespace / node names and removes what it created. Without the env file
or the server these tests FAIL: they are the only proof the preflight works against a real cluster.
"""

from __future__ import annotations

import re
import shlex
import socket
import time
from pathlib import Path

import pytest
import yaml

from taobot.config import PlatformSettings
from taobot.preflight.base import CheckResult, PreflightRequest
from tests.kube import admin, ignore_404, kenv, uid  # noqa: F401 - admin and kenv are fixtures

PREFIX = "tpf"  # every object these tests create starts with this
GPU = "nvidia.com/gpu"
DURATIONS: list[float] = []


# --------------------------------------------------------------------------- environment


@pytest.fixture
def namespace(admin):
    from kubernetes import client

    core = admin[0]
    name = f"{PREFIX}-{uid()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    ignore_404(core.delete_namespace, name)


@pytest.fixture
def nodes(admin):
    """make(gpus, unschedulable=False) -> node name; a Node object whose status.allocatable offers `gpus`."""
    from kubernetes import client

    core = admin[0]
    made: list[str] = []

    def make(gpus: str | None, unschedulable: bool = False) -> str:
        name = f"{PREFIX}-node-{uid()}"
        core.create_node(
            client.V1Node(
                metadata=client.V1ObjectMeta(name=name), spec=client.V1NodeSpec(unschedulable=unschedulable or None)
            )
        )
        made.append(name)
        resources = {"cpu": "8", "memory": "32Gi", "pods": "110"}
        if gpus is not None:
            resources[GPU] = gpus
        core.patch_node_status(name, {"status": {"capacity": resources, "allocatable": resources}})
        got = core.read_node_status(name).status.allocatable or {}
        assert got.get(GPU) == gpus, f"arranging node {name}: allocatable is {got}"
        return name

    yield make
    for name in made:
        ignore_404(core.delete_node, name)


@pytest.fixture
def cluster_rbac(admin):
    """Cluster-scoped RBAC objects created by a test, removed afterwards: register(kind, name)."""
    rbac = admin[1]
    made: list[tuple[str, str]] = []
    yield lambda kind, name: made.append((kind, name))
    for kind, name in made:
        if kind == "ClusterRoleBinding":
            ignore_404(rbac.delete_cluster_role_binding, name)
        else:
            ignore_404(rbac.delete_cluster_role, name)


def foreign_gpu_nodes(admin) -> dict[str, int]:
    """Schedulable GPU nodes that this test did not create (other suites share the cluster)."""
    out = {}
    for n in admin[0].list_node().items:
        count = int((n.status.allocatable or {}).get(GPU, "0") or 0) if n.status else 0
        if count and not (n.spec and n.spec.unschedulable):
            out[n.metadata.name] = count
    return out


# --------------------------------------------------------------------------- running the check


def run(kenv, timeout: float = 5.0, compute=None, bot=None, **creds) -> list[CheckResult]:
    """The check under test, with the invariants every run must keep; `bot`: the bot's own settings (KUBECONFIG …)."""
    from taobot.preflight import kubernetes as kp

    request = PreflightRequest(
        "kubernetes",
        {k: v for k, v in creds.items() if v},
        compute=compute or {},
        settings=PlatformSettings(
            **{"connect_timeout_s": timeout, "http_timeout_s": timeout, "on_persons_machine": True, **(bot or {})}
        ),
    )
    t0 = time.monotonic()
    results = kp.check(request)
    DURATIONS.append(time.monotonic() - t0)
    assert results and all(isinstance(r, CheckResult) for r in results)
    for r in results:
        assert r.scope == "platform"
        if not r.ok:
            assert r.detail and r.remediation, f"{r.check} failed without detail + remediation"
        text = " ".join((r.check, r.label, r.detail, r.remediation))
        for token in (kenv["TAOBOT_TEST_KUBE_BOT_TOKEN"], kenv["TAOBOT_TEST_KUBE_ADMIN_TOKEN"]):
            assert token not in text, f"a token leaked into {r.check}"
    return results


def by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check: r for r in results}


def write_kubeconfig(tmp_path: Path, base: str, name: str = "kubeconfig", **edit) -> str:
    """A copy of kubeconfig `base`; edit: server=, token=, drop_ca=True, extra_contexts=[...]."""
    doc = yaml.safe_load(Path(base).read_text())
    cluster = doc["clusters"][0]["cluster"]
    if "server" in edit:
        cluster["server"] = edit["server"]
    if edit.get("drop_ca"):
        cluster.pop("certificate-authority", None)
    if "token" in edit:
        doc["users"][0]["user"]["token"] = edit["token"]
    for ctx in edit.get("extra_contexts", []):
        doc["contexts"].append({"name": ctx, "context": dict(doc["contexts"][0]["context"])})
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def apply_kubectl_create(admin, namespace_or_none, remediation: str, suffix: str, cluster_rbac=None) -> None:
    """Apply the `kubectl create role|rolebinding|clusterrole|clusterrolebinding` lines of a remediation through
    the API, exactly as kubectl would (object names get `suffix` so parallel runs do not collide)."""
    from kubernetes import client

    rbac = admin[1]
    lines = re.findall(r"`(kubectl create [^`]+)`", remediation)
    assert lines, f"no kubectl create command in: {remediation}"
    for line in lines:
        argv = shlex.split(line)
        kind, name = argv[2], argv[3] + suffix
        flags = dict(a[2:].split("=", 1) for a in argv[4:] if a.startswith("--"))
        if kind in ("role", "clusterrole"):
            rules = []
            for res in flags["resource"].split(","):
                base, _, sub = res.partition("/")
                resource, _, group = base.partition(".")
                rules.append(
                    client.V1PolicyRule(
                        api_groups=[group],
                        resources=[f"{resource}/{sub}" if sub else resource],
                        verbs=flags["verb"].split(","),
                    )
                )
            if kind == "role":
                assert flags["namespace"] == namespace_or_none
                rbac.create_namespaced_role(
                    namespace_or_none, client.V1Role(metadata=client.V1ObjectMeta(name=name), rules=rules)
                )
            else:
                rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name=name), rules=rules))
                cluster_rbac("ClusterRole", name)
        else:
            if "user" in flags:
                subject = client.RbacV1Subject(kind="User", name=flags["user"], api_group="rbac.authorization.k8s.io")
            else:
                sa_ns, sa_name = flags["serviceaccount"].split(":")
                subject = client.RbacV1Subject(kind="ServiceAccount", name=sa_name, namespace=sa_ns)
            if kind == "rolebinding":
                assert flags["namespace"] == namespace_or_none
                ref = client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=flags["role"] + suffix)
                rbac.create_namespaced_role_binding(
                    namespace_or_none,
                    client.V1RoleBinding(metadata=client.V1ObjectMeta(name=name), role_ref=ref, subjects=[subject]),
                )
            else:
                ref = client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=flags["clusterrole"] + suffix
                )
                rbac.create_cluster_role_binding(
                    client.V1ClusterRoleBinding(
                        metadata=client.V1ObjectMeta(name=name), role_ref=ref, subjects=[subject]
                    )
                )
                cluster_rbac("ClusterRoleBinding", name)


def grant_bot_launch_role(admin, kenv, ns: str) -> None:
    from kubernetes import client

    rbac = admin[1]
    rules = [
        client.V1PolicyRule(
            api_groups=["batch"], resources=["jobs"], verbs=["create", "get", "list", "patch", "delete"]
        ),
        client.V1PolicyRule(api_groups=[""], resources=["secrets", "configmaps"], verbs=["create"]),
        client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"]),
        client.V1PolicyRule(api_groups=[""], resources=["pods/log"], verbs=["get"]),
    ]
    rbac.create_namespaced_role(ns, client.V1Role(metadata=client.V1ObjectMeta(name="taobot-launch"), rules=rules))
    rbac.create_namespaced_role_binding(
        ns,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="taobot-launch"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="taobot-launch"),
            subjects=[
                client.RbacV1Subject(
                    kind="User", name=kenv["TAOBOT_TEST_KUBE_BOT_USER"], api_group="rbac.authorization.k8s.io"
                )
            ],
        ),
    )


RBAC_IDS = (
    "kubernetes.rbac.jobs",
    "kubernetes.rbac.secrets",
    "kubernetes.rbac.configmaps",
    "kubernetes.rbac.jobs-read",
    "kubernetes.rbac.jobs-patch",
    "kubernetes.rbac.jobs-delete",
    "kubernetes.rbac.pods",
    "kubernetes.rbac.pods-log",
)


# --------------------------------------------------------------------------- pass path


def test_admin_with_an_8_gpu_node_passes_every_check_and_reports_8_gpus(kenv, admin, namespace, nodes):
    nodes("8")
    foreign = foreign_gpu_nodes(admin)  # includes ours; anything else comes from another suite
    total, count = sum(foreign.values()), len(foreign)

    results = run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], TAO_K8S_NAMESPACE=namespace)

    assert [r.check for r in results] == ["kubernetes.api", "kubernetes.namespace", *RBAC_IDS, "kubernetes.gpus"]
    assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
    r = by_id(results)
    assert kenv["TAOBOT_TEST_KUBE_API"] in r["kubernetes.api"].detail
    assert f"namespace `{namespace}` exists" in r["kubernetes.namespace"].detail
    assert r["kubernetes.gpus"].detail.startswith(f"{total} GPUs allocatable on {count} node")
    if count == 1:  # the usual case: ours is the only GPU node
        assert r["kubernetes.gpus"].detail.startswith("8 GPUs allocatable on 1 node ")


def test_context_named_by_tao_k8s_context_is_used_instead_of_the_current_one(kenv, admin, namespace, nodes, tmp_path):
    nodes("8")
    # one file: the bot's context is current, the admin's is only named by TAO_K8S_CONTEXT
    bot = yaml.safe_load(Path(kenv["TAOBOT_TEST_KUBECONFIG_BOT"]).read_text())
    adm = yaml.safe_load(Path(kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"]).read_text())
    bot["users"] += adm["users"]
    bot["contexts"] += adm["contexts"]
    path = tmp_path / "both.kubeconfig"
    path.write_text(yaml.safe_dump(bot))

    as_bot = by_id(run(kenv, KUBECONFIG=str(path), TAO_K8S_NAMESPACE=namespace))
    as_admin = by_id(
        run(kenv, KUBECONFIG=str(path), TAO_K8S_NAMESPACE=namespace, TAO_K8S_CONTEXT=adm["contexts"][0]["name"])
    )

    assert not as_bot["kubernetes.rbac.jobs"].ok
    assert all(r.ok for r in as_admin.values())
    assert f"context `{adm['contexts'][0]['name']}`" in as_admin["kubernetes.api"].detail


def test_default_kubeconfig_location_is_used_when_kubeconfig_is_unset(
    kenv, admin, namespace, nodes, monkeypatch, tmp_path
):
    nodes("8")
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(Path(kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"]).read_text())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)

    results = run(kenv, TAO_K8S_NAMESPACE=namespace)

    assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
    assert f"{home}/.kube/config" in by_id(results)["kubernetes.api"].detail


def test_the_bots_own_kubeconfig_is_used_when_no_credential_names_one(
    kenv, admin, namespace, nodes, monkeypatch, tmp_path
):
    nodes("8")
    monkeypatch.setenv("HOME", str(tmp_path))  # nothing at the default location
    admin_kubeconfig = kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"]

    results = run(kenv, bot={"kubeconfig": admin_kubeconfig}, TAO_K8S_NAMESPACE=namespace)

    assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
    assert f"kubeconfig `{admin_kubeconfig}` (default location)" in by_id(results)["kubernetes.api"].detail


# --------------------------------------------------------------------------- RBAC


def test_bot_without_rbac_is_denied_job_creation_with_a_role_remediation(kenv, admin, namespace):
    user = kenv["TAOBOT_TEST_KUBE_BOT_USER"]
    r = by_id(run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace))

    jobs = r["kubernetes.rbac.jobs"]
    assert not jobs.ok
    assert f"`{user}` may not create jobs (batch) in namespace `{namespace}`" in jobs.detail
    assert (
        f"kubectl create role taobot-create-jobs --namespace={namespace} --verb=create --resource=jobs.batch"
        in jobs.remediation
    )
    assert (
        f"kubectl create rolebinding taobot-create-jobs --namespace={namespace} --role=taobot-create-jobs --user={user}"
    ) in jobs.remediation
    assert (
        not r["kubernetes.rbac.secrets"].ok
        and "--verb=create --resource=secrets`" in r["kubernetes.rbac.secrets"].remediation
    )
    assert (
        not r["kubernetes.rbac.pods-log"].ok
        and "--verb=get --resource=pods/log`" in r["kubernetes.rbac.pods-log"].remediation
    )
    assert (
        not r["kubernetes.rbac.configmaps"].ok
        and "--verb=create --resource=configmaps`" in r["kubernetes.rbac.configmaps"].remediation
    )
    read = r["kubernetes.rbac.jobs-read"]
    assert not read.ok and f"`{user}` may not get/list jobs (batch) in namespace `{namespace}`" in read.detail
    assert (
        f"kubectl create role taobot-get-list-jobs --namespace={namespace} --verb=get,list --resource=jobs.batch"
        in read.remediation
    )
    assert "--verb=patch --resource=jobs.batch`" in r["kubernetes.rbac.jobs-patch"].remediation
    assert "--verb=delete --resource=jobs.batch`" in r["kubernetes.rbac.jobs-delete"].remediation
    assert "--verb=get,list --resource=pods`" in r["kubernetes.rbac.pods"].remediation
    # reading the namespace is forbidden to the bot: noted, not fatal
    assert r["kubernetes.namespace"].ok and "may not read namespaces" in r["kubernetes.namespace"].detail


def test_applying_the_role_remediations_grants_exactly_the_missing_permissions(kenv, admin, namespace):
    denied = [
        r
        for r in run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace)
        if r.check in RBAC_IDS
    ]
    assert [r.ok for r in denied] == [False] * len(RBAC_IDS)
    for r in denied:
        apply_kubectl_create(admin, namespace, r.remediation, suffix="")

    # the API server's RBAC authorizer learns of new Roles/RoleBindings through an informer: allow it a moment
    deadline = time.monotonic() + 10
    while True:
        after = by_id(run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace))
        if all(after[i].ok for i in RBAC_IDS) or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert all(after[i].ok for i in RBAC_IDS), [after[i].detail for i in RBAC_IDS]
    # exactly: the roles hold one verb on one resource each, nothing more
    rules = sorted(
        (tuple(rule.api_groups), tuple(rule.resources), tuple(rule.verbs))
        for role in admin[1].list_namespaced_role(namespace).items
        for rule in role.rules
    )
    assert rules == [
        (("",), ("configmaps",), ("create",)),
        (("",), ("pods",), ("get", "list")),
        (("",), ("pods/log",), ("get",)),
        (("",), ("secrets",), ("create",)),
        (("batch",), ("jobs",), ("create",)),
        (("batch",), ("jobs",), ("delete",)),
        (("batch",), ("jobs",), ("get", "list")),
        (("batch",), ("jobs",), ("patch",)),
    ]


def test_a_partly_granted_multi_verb_permission_names_only_the_missing_verb(kenv, admin, namespace):
    from kubernetes import client

    rbac = admin[1]
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="taobot-get-jobs"),
            rules=[client.V1PolicyRule(api_groups=["batch"], resources=["jobs"], verbs=["get"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="taobot-get-jobs"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="taobot-get-jobs"),
            subjects=[
                client.RbacV1Subject(
                    kind="User", name=kenv["TAOBOT_TEST_KUBE_BOT_USER"], api_group="rbac.authorization.k8s.io"
                )
            ],
        ),
    )

    read = by_id(run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace))[
        "kubernetes.rbac.jobs-read"
    ]

    assert not read.ok
    assert f"may not list jobs (batch) in namespace `{namespace}`" in read.detail
    assert (
        f"kubectl create role taobot-list-jobs --namespace={namespace} --verb=list --resource=jobs.batch"
        in read.remediation
    )


def test_bot_granted_jobs_secrets_and_pod_logs_in_one_namespace_passes_there_but_cannot_list_nodes(
    kenv, admin, namespace
):
    grant_bot_launch_role(admin, kenv, namespace)
    user = kenv["TAOBOT_TEST_KUBE_BOT_USER"]

    r = by_id(run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace))
    elsewhere = by_id(run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=f"{namespace}-other"))

    assert all(r[i].ok for i in RBAC_IDS), [r[i].detail for i in RBAC_IDS]
    assert r["kubernetes.rbac.jobs"].detail == f"may create jobs (batch) in namespace `{namespace}`"
    gpus = r["kubernetes.gpus"]
    assert not gpus.ok
    assert f"`{user}` may not list nodes" in gpus.detail and "forbidden" in gpus.detail
    assert "kubectl create clusterrole taobot-read-nodes --verb=get,list --resource=nodes" in gpus.remediation
    assert f"--clusterrole=taobot-read-nodes --user={user}" in gpus.remediation
    assert "confirms that nodes offer allocatable nvidia.com/gpu" in gpus.remediation
    # the grant is scoped to that one namespace
    assert not any(elsewhere[i].ok for i in RBAC_IDS)


def test_applying_the_nodes_remediation_lets_the_bot_count_gpus(kenv, admin, namespace, nodes, cluster_rbac):
    grant_bot_launch_role(admin, kenv, namespace)
    nodes("8")
    before = by_id(run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace))
    assert not before["kubernetes.gpus"].ok

    apply_kubectl_create(
        admin, None, before["kubernetes.gpus"].remediation, suffix=f"-{uid()}", cluster_rbac=cluster_rbac
    )
    after = run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace)

    assert all(r.ok for r in after), [r.detail for r in after if not r.ok]
    assert re.match(r"\d+ GPUs allocatable on \d+ node", by_id(after)["kubernetes.gpus"].detail)


def test_denied_service_account_gets_a_serviceaccount_rolebinding(kenv, admin, namespace, tmp_path):
    from kubernetes import client

    core = admin[0]
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tao-runner"))
    )
    token = core.create_namespaced_service_account_token(
        "tao-runner",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc"], expiration_seconds=600)
        ),
    ).status.token
    path = write_kubeconfig(tmp_path, kenv["TAOBOT_TEST_KUBECONFIG_BOT"], token=token)

    r = by_id(run(kenv, KUBECONFIG=path, TAO_K8S_NAMESPACE=namespace))

    jobs = r["kubernetes.rbac.jobs"]
    assert not jobs.ok
    assert f"`system:serviceaccount:{namespace}:tao-runner` may not create jobs" in jobs.detail
    assert f"--serviceaccount={namespace}:tao-runner" in jobs.remediation
    for result in r.values():
        assert token not in result.detail + result.remediation
    apply_kubectl_create(admin, namespace, jobs.remediation, suffix="")
    assert by_id(run(kenv, KUBECONFIG=path, TAO_K8S_NAMESPACE=namespace))["kubernetes.rbac.jobs"].ok


# --------------------------------------------------------------------------- GPUs


def test_cluster_without_gpu_nodes_fails_with_device_plugin_remediation(kenv, admin, namespace, nodes):
    nodes("0")
    nodes(None)  # a CPU node: no nvidia.com/gpu at all
    nodes("4", unschedulable=True)  # cordoned: cannot take the Job
    foreign = foreign_gpu_nodes(admin)
    assert not foreign, f"another suite left schedulable GPU nodes on the shared cluster: {foreign}"

    gpus = by_id(run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], TAO_K8S_NAMESPACE=namespace))[
        "kubernetes.gpus"
    ]

    assert not gpus.ok
    assert gpus.detail.startswith("no node offers nvidia.com/gpu: 0 GPUs allocatable on ")
    assert "4 more on cordoned nodes, ignored" in gpus.detail
    assert "NVIDIA device plugin" in gpus.remediation and "gpu-operator" in gpus.remediation


def test_job_wanting_more_gpus_than_the_largest_node_offers_fails(kenv, admin, namespace, nodes):
    nodes("8")
    largest = max(foreign_gpu_nodes(admin).values())

    gpus = by_id(
        run(
            kenv,
            compute={"num_gpus": largest + 1},
            KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"],
            TAO_K8S_NAMESPACE=namespace,
        )
    )["kubernetes.gpus"]

    assert not gpus.ok
    assert f"asks for {largest + 1} GPUs on one node but the largest node offers {largest}" in gpus.detail
    assert f"Lower num_gpus to at most {largest}" in gpus.remediation


# --------------------------------------------------------------------------- namespace


def test_missing_namespace_fails_with_the_create_command(kenv, admin):
    ns = f"{PREFIX}-absent-{uid()}"
    results = run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], TAO_K8S_NAMESPACE=ns)
    r = by_id(results)

    assert not r["kubernetes.namespace"].ok
    assert r["kubernetes.namespace"].detail == f"namespace `{ns}` does not exist on {kenv['TAOBOT_TEST_KUBE_API']}"
    assert f"`kubectl create namespace {ns}`" in r["kubernetes.namespace"].remediation
    assert all(i in r for i in RBAC_IDS) and "kubernetes.gpus" in r  # still worth knowing


def test_terminating_namespace_fails(kenv, admin, namespace):
    from kubernetes import client

    core = admin[0]
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="hold", finalizers=["taobot.test/hold"]))
    )
    core.delete_namespace(namespace)
    try:
        deadline = time.monotonic() + 10
        while core.read_namespace(namespace).status.phase != "Terminating" and time.monotonic() < deadline:
            time.sleep(0.1)
        ns = by_id(run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], TAO_K8S_NAMESPACE=namespace))[
            "kubernetes.namespace"
        ]
        assert not ns.ok
        assert "is being deleted (phase Terminating)" in ns.detail
    finally:
        core.patch_namespaced_config_map("hold", namespace, {"metadata": {"finalizers": None}})


# --------------------------------------------------------------------------- configuration


def test_wrong_context_name_lists_the_available_contexts(kenv, tmp_path):
    path = write_kubeconfig(tmp_path, kenv["TAOBOT_TEST_KUBECONFIG_BOT"], extra_contexts=["gpu-east"])
    current = yaml.safe_load(Path(path).read_text())["current-context"]

    results = run(kenv, KUBECONFIG=path, TAO_K8S_CONTEXT="gpu-west")

    assert [r.check for r in results] == ["kubernetes.config"]
    assert not results[0].ok
    assert (
        results[0].detail
        == f"context `gpu-west` is not in kubeconfig `{path}`; contexts there: `{current}`, `gpu-east`"
    )
    assert "Set TAO_K8S_CONTEXT to one of" in results[0].remediation


def test_missing_kubeconfig_file_fails(kenv, tmp_path):
    path = str(tmp_path / "nope" / "config")
    results = run(kenv, KUBECONFIG=path)

    assert [(r.check, r.ok) for r in results] == [("kubernetes.config", False)]
    assert f"kubeconfig `{path}` (from KUBECONFIG) does not exist" in results[0].detail
    assert "Point KUBECONFIG at your kubeconfig file" in results[0].remediation


def test_no_kubeconfig_and_not_in_a_cluster_fails(kenv, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    results = run(kenv)

    assert [(r.check, r.ok) for r in results] == [("kubernetes.config", False)]
    assert results[0].detail.startswith(f"no Kubernetes configuration: `{tmp_path}/.kube/config` does not exist")


def _exec_kubeconfig(tmp_path: Path, base: str, command: list[str]) -> str:
    doc = yaml.safe_load(Path(base).read_text())
    doc["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": command[0],
            "args": command[1:],
            "env": [{"name": "PLUGIN_SECRET", "value": "plugin-secret-value"}],
        }
    }
    path = tmp_path / "exec.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_hanging_exec_credential_plugin_is_cut_off(kenv, tmp_path):
    path = _exec_kubeconfig(tmp_path, kenv["TAOBOT_TEST_KUBECONFIG_BOT"], ["sh", "-c", "sleep 14"])

    t0 = time.monotonic()
    results = run(kenv, timeout=1.0, KUBECONFIG=path)
    took = time.monotonic() - t0

    assert took < 13, f"took {took:.1f}s"
    assert [(r.check, r.ok) for r in results] == [("kubernetes.config", False)]
    assert "did not finish within 10 s (its exec credential plugin hangs)" in results[0].detail


def test_failing_exec_credential_plugin_is_reported_as_anonymous(kenv, tmp_path):
    path = _exec_kubeconfig(tmp_path, kenv["TAOBOT_TEST_KUBECONFIG_BOT"], ["sh", "-c", "echo nope >&2; exit 3"])

    results = run(kenv, KUBECONFIG=path, TAO_K8S_NAMESPACE="default")

    failed = [r for r in results if not r.ok]
    assert len(failed) == 1 and results[-1] is failed[0], [r.to_dict() for r in results]
    assert failed[0].check in ("kubernetes.api", "kubernetes.namespace")
    assert "anonymous" in failed[0].detail or "rejected the credentials" in failed[0].detail
    assert all("plugin-secret-value" not in r.detail + r.remediation for r in results)


def test_in_cluster_service_account_is_used_when_there_is_no_kubeconfig(kenv, admin, namespace, tmp_path, monkeypatch):
    from taobot import kube_identity

    # what a Pod sees: KUBERNETES_SERVICE_HOST/PORT and a mounted token + CA; here the bot's token and the test CA
    token_file, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token_file.write_text(kenv["TAOBOT_TEST_KUBE_BOT_TOKEN"])
    ca_file.write_text(Path(kenv["TAOBOT_TEST_KUBE_CA"]).read_text())
    host, port = re.match(r"https://([^:/]+):(\d+)", kenv["TAOBOT_TEST_KUBE_API"]).groups()
    monkeypatch.setattr(kube_identity, "INCLUSTER_TOKEN_FILE", str(token_file))
    monkeypatch.setattr(kube_identity, "INCLUSTER_CA_FILE", str(ca_file))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    grant_bot_launch_role(admin, kenv, namespace)
    from taobot.config import load_settings

    in_pod = load_settings().platform_settings()  # the service address arrives through the bot's settings
    assert (in_pod.kubernetes_service_host, in_pod.kubernetes_service_port, in_pod.in_cluster) == (host, port, True)
    bot = {"kubernetes_service_host": host, "kubernetes_service_port": port}

    r = by_id(run(kenv, bot=bot, TAO_K8S_NAMESPACE=namespace))

    assert "using in-cluster service account" in r["kubernetes.api"].detail
    assert all(r[i].ok for i in RBAC_IDS), [r[i].detail for i in RBAC_IDS]
    assert not r["kubernetes.gpus"].ok and "may not list nodes" in r["kubernetes.gpus"].detail

    token_file.unlink()
    broken = run(kenv, bot=bot, TAO_K8S_NAMESPACE=namespace)
    assert [(x.check, x.ok) for x in broken] == [("kubernetes.config", False)]
    assert "in-cluster service account configuration is unusable: Service token file does not exist" in broken[0].detail


# --------------------------------------------------------------------------- reaching the server


def test_unreachable_server_fails_fast_with_the_url(kenv, tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    path = write_kubeconfig(tmp_path, kenv["TAOBOT_TEST_KUBECONFIG_BOT"], server=url)

    t0 = time.monotonic()
    results = run(kenv, timeout=10.0, KUBECONFIG=path)
    took = time.monotonic() - t0

    assert took < 15, f"took {took:.1f}s"
    assert [(r.check, r.ok) for r in results] == [("kubernetes.api", False)]
    assert (
        results[0].detail
        == f"cannot reach the API server at {url}: connection refused (nothing listens on that address)"
    )
    assert url in results[0].remediation


def test_server_with_untrusted_certificate_fails_as_tls_error(kenv, tmp_path):
    path = write_kubeconfig(tmp_path, kenv["TAOBOT_TEST_KUBECONFIG_BOT"], drop_ca=True)

    results = run(kenv, KUBECONFIG=path)

    assert [(r.check, r.ok) for r in results] == [("kubernetes.api", False)]
    assert f"cannot reach the API server at {kenv['TAOBOT_TEST_KUBE_API']}: TLS handshake failed" in results[0].detail
    assert "certificate verify failed" in results[0].detail


def test_rejected_token_is_reported_as_credentials_rejected_without_echoing_it(kenv, tmp_path):
    wrong = f"wrong-token-{uid()}"
    path = write_kubeconfig(tmp_path, kenv["TAOBOT_TEST_KUBECONFIG_BOT"], token=wrong)

    results = run(kenv, KUBECONFIG=path)

    assert [(r.check, r.ok) for r in results] == [("kubernetes.api", False)]
    assert "rejected the credentials" in results[0].detail and "401 Unauthorized" in results[0].detail
    assert wrong not in results[0].detail + results[0].remediation


# --------------------------------------------------------------------------- secrets and side effects


def test_bot_token_never_appears_in_any_result_text(kenv, admin, namespace, tmp_path):
    token = kenv["TAOBOT_TEST_KUBE_BOT_TOKEN"]
    bot = kenv["TAOBOT_TEST_KUBECONFIG_BOT"]
    assert token in Path(bot).read_text()  # the kubeconfig does hold it
    runs = [
        run(kenv, KUBECONFIG=bot, TAO_K8S_NAMESPACE=namespace),  # denied everywhere
        run(kenv, KUBECONFIG=bot, TAO_K8S_NAMESPACE=f"{PREFIX}-absent-{uid()}"),
        run(kenv, KUBECONFIG=bot, TAO_K8S_CONTEXT="no-such-context"),
        run(kenv, KUBECONFIG=write_kubeconfig(tmp_path, bot, "closed", server="https://127.0.0.1:9")),
        run(kenv, KUBECONFIG=write_kubeconfig(tmp_path, bot, "noca", drop_ca=True)),
    ]
    # a server URL that carries the token (some auth proxies do this) is echoed in the result: redacted there
    leaky = run(kenv, KUBECONFIG=write_kubeconfig(tmp_path, bot, "leaky", server=f"https://127.0.0.1:9/{token}"))
    assert "https://127.0.0.1:9/***" in leaky[0].detail
    runs.append(leaky)
    grant_bot_launch_role(admin, kenv, namespace)
    runs.append(run(kenv, KUBECONFIG=bot, TAO_K8S_NAMESPACE=namespace))
    texts = [repr(r.to_dict()) for results in runs for r in results]
    assert len(texts) >= 15
    assert not [t for t in texts if token in t]


def test_preflight_creates_no_job_secret_or_pod(kenv, admin, namespace, nodes):
    core, rbac, batch = admin
    nodes("8")
    grant_bot_launch_role(admin, kenv, namespace)

    def state():
        return {
            "jobs": [j.metadata.name for j in batch.list_namespaced_job(namespace).items],
            "secrets": [s.metadata.name for s in core.list_namespaced_secret(namespace).items],
            "pods": [p.metadata.name for p in core.list_namespaced_pod(namespace).items],
            "configmaps": [c.metadata.name for c in core.list_namespaced_config_map(namespace).items],
            "serviceaccounts": [s.metadata.name for s in core.list_namespaced_service_account(namespace).items],
            "roles": sorted(r.metadata.name for r in rbac.list_namespaced_role(namespace).items),
            "rolebindings": sorted(r.metadata.name for r in rbac.list_namespaced_role_binding(namespace).items),
        }

    before = state()
    assert before["jobs"] == before["secrets"] == before["pods"] == []

    admin_run = run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], TAO_K8S_NAMESPACE=namespace)
    bot_run = run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace)

    assert all(r.ok for r in admin_run)
    assert all(by_id(bot_run)[i].ok for i in RBAC_IDS)  # the bot could have created them, and did not
    assert state() == before


def test_typical_check_duration_is_well_under_a_second(kenv, admin, namespace, nodes):
    nodes("8")
    took = []
    for _ in range(3):
        t0 = time.monotonic()
        results = run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], TAO_K8S_NAMESPACE=namespace)
        took.append(time.monotonic() - t0)
        assert all(r.ok for r in results)
    print(f"kubernetes preflight durations: {', '.join(f'{t * 1000:.0f} ms' for t in took)}")
    assert sorted(took)[1] < 1.0


def test_the_client_librarys_global_default_configuration_is_left_alone(kenv, admin, namespace):
    from kubernetes import client

    before = client.Configuration.get_default_copy().host
    run(kenv, KUBECONFIG=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], TAO_K8S_NAMESPACE=namespace)
    assert client.Configuration.get_default_copy().host == before != kenv["TAOBOT_TEST_KUBE_API"]
