"""Each person's own Kubernetes identity, operator cluster profiles, and confirmed mounts that really mount.

Against the real kube-apiserver of tests/services/setup.sh kube: an uploaded kubeconfig (a client
certificate minted for a fresh user by the test CA, embedded as `*-data`) is the identity the apiserver
sees; uploads that would reach the bot's host are refused before any request (a listener that counts
connections proves none was made); without a profile or an upload, a Slack person gets no identity at all;
a profile's claim, bound by the real volume controller, is mounted in the created Job.
"""

from __future__ import annotations

import time

import pytest
import yaml

from taobot.backends.base import RESULTS_PLACEHOLDER, LaunchSpec
from taobot.catalog.schema import ResourceDefaults
from taobot.config import PlatformSettings
from taobot.errors import LaunchFailed
from taobot.kube_profiles import OWN_KUBECONFIG, KubeProfile
from taobot.preflight import DatasetPath, PreflightRequest, run_preflight
from tests.kube import (  # noqa: F401 - admin, kenv and claim_binder are fixtures
    ConnectionRecorder,
    admin,
    bound_claim,
    claim_binder,
    delete_claim,
    grant_launch_role,
    ignore_404,
    kenv,
    person_kubeconfig,
    uid,
)

IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt"
SLACK = dict(connect_timeout_s=5.0, http_timeout_s=5.0)  # the bot in Slack: not on the person's machine


@pytest.fixture
def namespace(admin):
    from kubernetes import client

    name = f"tki-{uid()}"
    admin[0].create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    ignore_404(admin[0].delete_namespace, name)


@pytest.fixture
def gpu_node(admin):
    """A Node offering 8 GPUs, so the GPU check can pass."""
    from kubernetes import client

    name = f"tki-node-{uid()}"
    admin[0].create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
    res = {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "8"}
    admin[0].patch_node_status(name, {"status": {"capacity": res, "allocatable": res}})
    yield name
    ignore_404(admin[0].delete_node, name)


@pytest.fixture
def node_reader(admin):
    """grant(user): that user may list nodes (the GPU check), removed afterwards."""
    from kubernetes import client

    rbac = admin[1]
    made: list[str] = []

    def grant(user: str) -> None:
        name = f"tki-nodes-{uid()}"
        rbac.create_cluster_role(
            client.V1ClusterRole(
                metadata=client.V1ObjectMeta(name=name),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["nodes"], verbs=["get", "list"])],
            )
        )
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=name),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name),
                subjects=[client.RbacV1Subject(kind="User", name=user, api_group="rbac.authorization.k8s.io")],
            )
        )
        made.append(name)

    yield grant
    for name in made:
        ignore_404(rbac.delete_cluster_role_binding, name)
        ignore_404(rbac.delete_cluster_role, name)


@pytest.fixture
def recorder():
    r = ConnectionRecorder()
    yield r
    r.close()


def jobs_in(admin, namespace: str) -> list[str]:
    return [j.metadata.name for j in admin[2].list_namespaced_job(namespace).items]


def secrets_in(admin, namespace: str) -> list[str]:
    return [s.metadata.name for s in admin[0].list_namespaced_secret(namespace).items if s.type == "Opaque"]


def spec_for(namespace: str, creds: dict, datasets: dict | None = None) -> LaunchSpec:
    datasets = datasets or {"dataset.val.media": "s3://tao-datasets/val"}
    return LaunchSpec(
        launch_id=f"{uid()}-{int(time.time()) % 100000:05d}",
        platform="kubernetes",
        model="cosmos-predict2",
        action="train",
        image=IMAGE,
        command="cosmos-predict2 train -e {config_path}",
        config_format="yaml",
        spec={**datasets, "results_dir": RESULTS_PLACEHOLDER},
        datasets=datasets,
        num_gpus=1,
        num_nodes=1,
        resources=ResourceDefaults(num_gpus=1),
        platform_credentials={**creds, "TAO_K8S_NAMESPACE": namespace},
        job_env={"HF_TOKEN": f"hf_secret_{uid()}"},
        labels={"taobot.intake": "abc123", "taobot.owner": "U0SLACK"},
    )


def backend_for(settings: PlatformSettings):
    from taobot.backends.kubernetes import KubernetesBackend

    return KubernetesBackend(settings)


def preflight(creds: dict, settings: PlatformSettings, paths=(), confirmed=(), results_uri=None):
    request = PreflightRequest(
        "kubernetes",
        creds,
        paths=tuple(DatasetPath(k, v) for k, v in paths),
        results_uri=results_uri,
        compute={"num_gpus": 1},
        mount_confirmed=frozenset(confirmed),
        settings=settings,
    )
    return run_preflight(request, ("TAO_K8S_PROFILE",))


# --------------------------------------------------------------------------- an uploaded kubeconfig


def test_an_uploaded_kubeconfig_is_the_identity_the_apiserver_sees_in_preflight_and_launch(
    kenv, admin, namespace, gpu_node, node_reader
):
    from kubernetes.config import kube_config as library

    user = f"person-{uid()}"
    upload = person_kubeconfig(kenv, user)
    creds = {"TAO_K8S_PROFILE": OWN_KUBECONFIG, "KUBECONFIG_CONTENT": upload, "TAO_K8S_NAMESPACE": namespace}
    settings = PlatformSettings(**SLACK)

    # before any grant, the apiserver names the uploaded user in its denials: it authenticated the certificate
    denied = {r.check: r for r in preflight(creds, settings).results}
    assert not denied["kubernetes.rbac.jobs"].ok
    assert f"`{user}` may not create jobs" in denied["kubernetes.rbac.jobs"].detail
    assert f"--user={user}" in denied["kubernetes.rbac.jobs"].remediation

    grant_launch_role(admin, namespace, user)  # only this user may launch here; the bot's own identity may not
    node_reader(user)
    report = preflight(creds, settings)
    assert report.passed, [r.to_dict() for r in report.failures()]
    by = {r.check: r for r in report.results}
    assert "using your uploaded kubeconfig, context" in by["kubernetes.api"].detail

    backend = backend_for(settings)
    try:
        submitted = backend.launch(spec_for(namespace, creds))
    finally:
        backend.close()
    assert submitted.job_id in jobs_in(admin, namespace)
    # the client certificate and key never touched a file: the library's temp files for `*-data` stay unused
    assert library._temp_files == {}
    text = " ".join(r.detail + r.remediation for r in report.results)
    doc = yaml.safe_load(upload)
    assert doc["users"][0]["user"]["client-key-data"] not in text


def test_an_upload_with_several_contexts_uses_the_current_one_and_says_so(kenv):
    from taobot.kube_upload import read_uploaded_kubeconfig

    doc = yaml.safe_load(person_kubeconfig(kenv, "someone"))
    doc["contexts"].append({"name": "other", "context": {"cluster": "lab", "user": "someone", "namespace": "x"}})
    got = read_uploaded_kubeconfig(yaml.safe_dump(doc))
    assert got.context == "someone@lab"
    assert "2 contexts" in got.notes[0] and "current-context `someone@lab`" in got.notes[0]
    kept = yaml.safe_load(got.text)
    assert [c["name"] for c in kept["contexts"]] == ["someone@lab"]


@pytest.mark.parametrize(
    "field,value,named",
    [
        ("exec", {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh", "args": ["-c", "id"]}, "exec"),
        ("auth-provider", {"name": "oidc", "config": {"idp-issuer-url": "https://x"}}, "auth-provider"),
        ("client-key", "/etc/ssl/private/bot.key", "client-key"),
        ("client-certificate", "/etc/ssl/certs/bot.crt", "client-certificate"),
        ("tokenFile", "/var/run/secrets/kubernetes.io/serviceaccount/token", "tokenFile"),
    ],
)
def test_an_upload_that_would_reach_the_bots_host_is_refused_before_any_request(
    kenv, admin, namespace, recorder, field, value, named
):
    upload = person_kubeconfig(kenv, f"person-{uid()}", server=recorder.url, **{field: value})
    creds = {"TAO_K8S_PROFILE": OWN_KUBECONFIG, "KUBECONFIG_CONTENT": upload, "TAO_K8S_NAMESPACE": namespace}
    settings = PlatformSettings(**SLACK)

    report = preflight(creds, settings)
    config = next(r for r in report.results if r.check == "kubernetes.config")
    assert not config.ok and f"`{named}`" in config.detail
    assert "bot's host" in config.detail
    backend = backend_for(settings)
    try:
        with pytest.raises(LaunchFailed) as refused:
            backend.launch(spec_for(namespace, creds))
    finally:
        backend.close()
    assert f"`{named}`" in refused.value.message
    time.sleep(0.3)
    assert recorder.accepted == 0  # no request to the server the upload names
    assert jobs_in(admin, namespace) == [] and secrets_in(admin, namespace) == []


def test_a_cluster_file_path_is_refused_and_so_is_a_plain_http_server(kenv, recorder):
    from taobot.kube_upload import UploadRefused, read_uploaded_kubeconfig

    doc = yaml.safe_load(person_kubeconfig(kenv, "someone"))
    doc["clusters"][0]["cluster"]["certificate-authority"] = "/etc/kubernetes/pki/ca.crt"
    with pytest.raises(UploadRefused, match="`certificate-authority` in cluster `lab`: names a file"):
        read_uploaded_kubeconfig(yaml.safe_dump(doc))
    doc = yaml.safe_load(person_kubeconfig(kenv, "someone", server=recorder.url.replace("https", "http")))
    with pytest.raises(UploadRefused, match="`server` in cluster `lab`: must be an https://"):
        read_uploaded_kubeconfig(yaml.safe_dump(doc))


# --------------------------------------------------------------------------- no identity of the bot's in Slack


def test_a_slack_person_without_profile_or_upload_cannot_use_the_bots_kubeconfig(
    kenv, admin, namespace, recorder, tmp_path
):
    # the bot's own kubeconfig, pointed at a listener: any use of it would show as a connection
    doc = yaml.safe_load(open(kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"]).read())
    doc["clusters"][0]["cluster"]["server"] = recorder.url
    bots_own = tmp_path / "bot.kubeconfig"
    bots_own.write_text(yaml.safe_dump(doc))
    settings = PlatformSettings(kubeconfig=str(bots_own), **SLACK)

    for creds in ({}, {"KUBECONFIG": str(bots_own)}, {"KUBECONFIG": kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"]}):
        report = preflight({**creds, "TAO_K8S_NAMESPACE": namespace}, settings)
        config = next(r for r in report.results if r.check == "kubernetes.config")
        assert not config.ok
        assert "profile" in config.remediation and "upload" in config.remediation
        backend = backend_for(settings)
        try:
            with pytest.raises(LaunchFailed):
                backend.launch(spec_for(namespace, creds))
        finally:
            backend.close()
    time.sleep(0.3)
    assert recorder.accepted == 0
    assert jobs_in(admin, namespace) == [] and secrets_in(admin, namespace) == []  # the real admin kubeconfig made none


def test_on_the_persons_machine_a_kubeconfig_path_still_works(kenv, admin, namespace):
    settings = PlatformSettings(on_persons_machine=True, **SLACK)
    creds = {"KUBECONFIG": kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], "TAO_K8S_NAMESPACE": namespace}
    by = {
        r.check: r
        for r in preflight(
            creds,
            settings,
        ).results
    }
    assert by["kubernetes.api"].ok and "(KUBECONFIG)" in by["kubernetes.api"].detail


# --------------------------------------------------------------------------- operator profiles


def admin_profile(kenv, namespaces, **over) -> KubeProfile:
    return KubeProfile(
        name=over.pop("name", f"lab-{uid()}"),
        kubeconfig=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"],
        namespaces=namespaces,
        **over,
    )


def test_a_profile_s_namespaces_bound_tao_k8s_namespace(kenv, admin, namespace):
    profile = admin_profile(kenv, [namespace])
    settings = PlatformSettings(kube_profiles=(profile,), **SLACK)
    other = f"tki-{uid()}"
    report = preflight({"TAO_K8S_PROFILE": profile.name, "TAO_K8S_NAMESPACE": other}, settings)
    config = next(r for r in report.results if r.check == "kubernetes.config")
    assert not config.ok
    assert f"namespace `{other}` is not one of cluster profile `{profile.name}`'s namespaces (`{namespace}`)" in (
        config.detail
    )
    backend = backend_for(settings)
    try:
        with pytest.raises(LaunchFailed, match="is not one of cluster profile"):
            backend.launch(spec_for(other, {"TAO_K8S_PROFILE": profile.name}))
        # without TAO_K8S_NAMESPACE the profile's first namespace is used
        by = {r.check: r for r in preflight({"TAO_K8S_PROFILE": profile.name}, settings).results}
        assert by["kubernetes.namespace"].ok and namespace in by["kubernetes.namespace"].detail
        assert f"cluster profile `{profile.name}`" in by["kubernetes.api"].detail
        assert (
            kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"] not in by["kubernetes.api"].detail
        )  # the operator's path stays hidden
    finally:
        backend.close()
    assert jobs_in(admin, namespace) == []


def test_an_unknown_profile_and_a_context_other_than_the_profile_s_are_refused(kenv, namespace):
    profile = admin_profile(kenv, [namespace])
    settings = PlatformSettings(kube_profiles=(profile,), **SLACK)
    report = preflight({"TAO_K8S_PROFILE": "nope"}, settings)
    assert f"there is no cluster profile `nope` (the operator's profiles: `{profile.name}`)" in report.results[1].detail
    report = preflight({"TAO_K8S_PROFILE": profile.name, "TAO_K8S_CONTEXT": "bot@taobot-test"}, settings)
    assert "a profile fixes its own context" in report.results[1].remediation


def test_a_profile_s_claim_is_mounted_in_the_created_job_at_its_mount_path(kenv, admin, namespace, claim_binder):
    claim = f"coco-{uid()}"
    pv = bound_claim(admin, namespace, claim)
    try:
        profile = admin_profile(
            kenv,
            [namespace],
            volumes=[
                {"claim": claim, "mount_path": "/mnt/coco", "sub_path": "v1"},
                {"claim": claim, "mount_path": "/mnt/out", "read_only": False, "sub_path": "results"},
            ],
        )
        settings = PlatformSettings(kube_profiles=(profile,), **SLACK)
        creds = {"TAO_K8S_PROFILE": profile.name}
        paths = [("dataset.val.media", "/mnt/coco/val")]
        report = preflight(creds, settings, paths=paths, confirmed=["/mnt/coco/val"], results_uri="/mnt/out/run1")
        by = {(r.check, r.label): r for r in report.results}
        assert by[(f"kubernetes.claim.{claim}", f"Volume claim {claim}")].ok
        assert f"is Bound to `{pv}`" in by[(f"kubernetes.claim.{claim}", f"Volume claim {claim}")].detail
        mounted = by[("kubernetes.mount", "dataset.val.media")]
        assert mounted.ok and f"claim `{claim}` (its folder `v1`), mounted read-only at `/mnt/coco`" in mounted.detail
        assert by[("kubernetes.mount", "results")].ok

        backend = backend_for(settings)
        try:
            submitted = backend.launch(spec_for(namespace, creds, {"dataset.val.media": "/mnt/coco/val"}))
        finally:
            backend.close()
        job = admin[2].read_namespaced_job(submitted.job_id, namespace)
        pod = job.spec.template.spec
        claims = {v.name: v.persistent_volume_claim for v in pod.volumes if v.persistent_volume_claim}
        assert {c.claim_name for c in claims.values()} == {claim}
        mounts = {m.mount_path: m for m in pod.containers[0].volume_mounts if m.name in claims}
        assert set(mounts) == {"/mnt/coco", "/mnt/out"}
        assert mounts["/mnt/coco"].read_only and mounts["/mnt/coco"].sub_path == "v1"
        assert not mounts["/mnt/out"].read_only and mounts["/mnt/out"].sub_path == "results"
        assert claims[mounts["/mnt/coco"].name].read_only is True
    finally:
        admin[2].delete_collection_namespaced_job(namespace, propagation_policy="Background")
        delete_claim(admin, namespace, claim, pv)


def test_a_confirmed_path_outside_the_profile_s_mounts_fails_preflight_naming_them(kenv, admin, namespace):
    profile = admin_profile(kenv, [namespace], volumes=[{"claim": "coco", "mount_path": "/mnt/coco"}])
    settings = PlatformSettings(kube_profiles=(profile,), **SLACK)
    report = preflight(
        {"TAO_K8S_PROFILE": profile.name},
        settings,
        paths=[("dataset.val.media", "/data/elsewhere/val")],
        confirmed=["/data/elsewhere/val"],
        results_uri="/mnt/coco/out",
    )
    assert not report.passed
    by = {(r.check, r.label): r for r in report.results}
    outside = by[("kubernetes.mount", "dataset.val.media")]
    assert not outside.ok and outside.key == "dataset.val.media"
    assert "`/data/elsewhere/val` is not under a volume of cluster profile" in outside.detail
    assert "`/mnt/coco` (claim `coco`, read-only)" in outside.detail
    assert by[("mount", "dataset.val.media")].ok  # the person's confirmation alone does not make it mounted
    read_only = by[("kubernetes.mount", "results")]
    assert not read_only.ok and "read-only" in read_only.detail
    missing_claim = by[("kubernetes.claim.coco", "Volume claim coco")]
    assert not missing_claim.ok and "does not exist in namespace" in missing_claim.detail


def test_with_an_uploaded_kubeconfig_a_confirmed_path_is_not_mounted(kenv):
    upload = person_kubeconfig(kenv, "someone")
    report = preflight(
        {"TAO_K8S_PROFILE": OWN_KUBECONFIG, "KUBECONFIG_CONTENT": upload},
        PlatformSettings(**SLACK),
        paths=[("dataset.val.media", "/mnt/shared/val")],
        confirmed=["/mnt/shared/val"],
    )
    mount = next(r for r in report.results if r.check == "kubernetes.mount")
    assert not mount.ok and "mounts no volume" in mount.detail and "s3://" in mount.remediation
