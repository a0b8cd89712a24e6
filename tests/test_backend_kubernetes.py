"""Kubernetes backend against a real kube-apiserver 1.20 + etcd + kube-controller-manager (job, garbagecollector and
namespace controllers) from tests/services/setup.sh kube.

There is no scheduler and no kubelet: the job controller creates the Pods, and the tests act as the kubelet by
patching a Pod's status through the status subresource (Pending reasons, Running, Succeeded/Failed with an exit
code); the job controller then marks the Job Complete/Failed and the garbage collector removes what a deleted Job
owned. Each test uses its own namespace and removes it. Without the env file or the server these tests FAIL.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from taobot.backends.base import RESULTS_PLACEHOLDER, JobRef, JobState, LaunchSpec
from taobot.catalog.schema import ResourceDefaults
from taobot.config import PlatformSettings
from taobot.errors import BackendUnreachable, LaunchFailed
from tests.kube import admin, ignore_404, kenv, uid  # noqa: F401 - admin and kenv are fixtures
from tests.polling import wait_until

PREFIX = "tbk"
IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt"
GC_WAIT_S = 30
TTL_DROPPED = (
    "the API server dropped the Job's ttlSecondsAfterFinished: a 1.20 kube-apiserver keeps it only with "
    "--feature-gates=TTLAfterFinished=true; restart the test one: tests/services/stop.sh kube && "
    "tests/services/setup.sh kube"
)


# --------------------------------------------------------------------------- environment


@pytest.fixture
def new_namespace(admin):
    core = admin[0]
    made: list[str] = []

    def make() -> str:
        name = f"{PREFIX}-{uid()}"
        core.create_namespace({"metadata": {"name": name}})
        made.append(name)
        return name

    yield make
    for name in made:
        ignore_404(core.delete_namespace, name)


@pytest.fixture
def namespace(new_namespace):
    return new_namespace()


@pytest.fixture
def backend():
    from taobot.backends.kubernetes import KubernetesBackend

    b = KubernetesBackend(PlatformSettings(connect_timeout_s=5.0, http_timeout_s=5.0, on_persons_machine=True))
    yield b
    b.close()


def spec_for(kenv, namespace: str, kubeconfig: str | None = None, **over) -> LaunchSpec:
    creds = {"KUBECONFIG": kubeconfig or kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], "TAO_K8S_NAMESPACE": namespace}
    creds.update(over.pop("creds", {}))
    job_env = over.pop("job_env", {"NGC_KEY": f"ngc-secret-{uid()}", "HF_TOKEN": f"hf_secret_{uid()}"})
    fields = dict(
        launch_id=f"{uid()}-{int(time.time()) % 100000:05d}",
        platform="kubernetes",
        model="cosmos-predict2",
        action="train",
        image=IMAGE,
        command="cosmos-predict2 train -e {config_path}",
        config_format="yaml",
        spec={
            "dataset.train.annotations": "s3://tao-datasets/cosmos/train/annotations.json",
            "dataset.val.media": "/mnt/datasets/cosmos/val",
            "train.num_gpus": 2,
            "results_dir": RESULTS_PLACEHOLDER,
        },
        datasets={
            "dataset.train.annotations": "s3://tao-datasets/cosmos/train/annotations.json",
            "dataset.val.media": "/mnt/datasets/cosmos/val",
        },
        num_gpus=2,
        num_nodes=1,
        resources=ResourceDefaults(num_gpus=1, shm_size="16g"),
        platform_credentials={**creds, **job_env},
        job_env=job_env,
        labels={"taobot.intake": "abc123", "taobot.owner": "U0SLACK"},
    )
    fields.update(over)
    return LaunchSpec(**fields)


def ref_for(spec: LaunchSpec, submitted) -> JobRef:
    return JobRef(spec.launch_id, submitted.job_id, dict(submitted.details), dict(spec.platform_credentials))


def wait_for(fn, timeout: float = 20.0, what: str = "condition", show=None):
    """fn() until truthy; on timeout the message shows show() (what was seen last)."""
    return wait_until(fn, timeout, what, show=show, every=0.1)


def pod_of(admin, namespace: str, job_name: str):
    core = admin[0]
    return wait_for(
        lambda: next(
            (p for p in core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items), None
        ),
        what=f"the job controller to create the Pod of {job_name}",
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def kubelet(
    admin,
    namespace: str,
    pod: str,
    phase: str,
    exit_code: int | None = None,
    waiting: str | None = None,
    reason: str | None = None,
    conditions: list | None = None,
) -> None:
    """Write a Pod's status the way a kubelet would (status subresource)."""
    cs: dict = {"name": "tao", "ready": phase == "Running", "restartCount": 0, "image": IMAGE, "imageID": ""}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting, "message": f'Back-off pulling image "{IMAGE}"'}}
    elif phase == "Running":
        cs["state"] = {"waiting": None, "running": {"startedAt": _now()}}
    elif phase in ("Succeeded", "Failed"):
        cs["state"] = {
            "waiting": None,
            "running": None,
            "terminated": {
                "exitCode": exit_code,
                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                "startedAt": _now(),
                "finishedAt": _now(),
            },
        }
    status: dict = {"phase": phase}
    if waiting or phase != "Pending":
        status["containerStatuses"] = [cs]
    if conditions:
        status["conditions"] = conditions
    admin[0].patch_namespaced_pod_status(pod, namespace, {"status": status})


def objects(admin, namespace: str) -> dict[str, list[str]]:
    core, _rbac, batch = admin
    return {
        "jobs": sorted(j.metadata.name for j in batch.list_namespaced_job(namespace).items),
        "secrets": sorted(
            s.metadata.name
            for s in core.list_namespaced_secret(namespace).items
            if s.type != "kubernetes.io/service-account-token"
        ),
        "configmaps": sorted(
            c.metadata.name
            for c in core.list_namespaced_config_map(namespace).items
            if c.metadata.name != "kube-root-ca.crt"
        ),
        "pods": sorted(p.metadata.name for p in core.list_namespaced_pod(namespace).items),
    }


NOTHING = {"jobs": [], "secrets": [], "configmaps": [], "pods": []}


def grant_bot(admin, kenv, namespace: str, skip: tuple[str, ...] = ()) -> None:
    """A Role built from the preflight's PERMISSIONS (minus the check ids in `skip`), bound to the bot user."""
    from kubernetes import client

    from taobot.preflight.kubernetes import PERMISSIONS

    rules = []
    for check_id, _label, verbs, group, resource, sub, _why in PERMISSIONS:
        if check_id in skip:
            continue
        rules.append(
            client.V1PolicyRule(
                api_groups=[group], resources=[f"{resource}/{sub}" if sub else resource], verbs=verbs.split(",")
            )
        )
    rbac = admin[1]
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=client.V1ObjectMeta(name="taobot"), rules=rules))
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="taobot"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="taobot"),
            subjects=[
                client.RbacV1Subject(
                    kind="User", name=kenv["TAOBOT_TEST_KUBE_BOT_USER"], api_group="rbac.authorization.k8s.io"
                )
            ],
        ),
    )
    # RBAC is cached by the authorizer's informer: wait until the grant is visible
    wait_for(
        lambda: _bot_may(kenv, namespace, "create", "batch", "jobs") if "kubernetes.rbac.jobs" not in skip else True,
        what="the bot's Role to take effect",
    )


def _bot_may(kenv, namespace, verb, group, resource) -> bool:
    from kubernetes import client, config

    cfg = type.__call__(client.Configuration)
    api = config.new_client_from_config(
        config_file=kenv["TAOBOT_TEST_KUBECONFIG_BOT"], persist_config=False, client_configuration=cfg
    )
    try:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        namespace=namespace, verb=verb, group=group, resource=resource
                    )
                )
            )
        )
        return bool(review.status.allowed)
    finally:
        api.close()


def closed_port_kubeconfig(kenv, tmp_path: Path) -> tuple[str, str]:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    doc = yaml.safe_load(Path(kenv["TAOBOT_TEST_KUBECONFIG_BOT"]).read_text())
    doc["clusters"][0]["cluster"]["server"] = url
    path = tmp_path / "closed.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path), url


@pytest.fixture
def api_calls(monkeypatch):
    """Every request any kubernetes ApiClient sends: (method, path, query)."""
    from urllib.parse import parse_qs, urlsplit

    from kubernetes.client import ApiClient

    calls: list[tuple[str, str, dict]] = []
    real = ApiClient.call_api

    def counting(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        calls.append((method, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}))
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(ApiClient, "call_api", counting)
    return calls


# --------------------------------------------------------------------------- launch


def test_launch_creates_an_owned_job_secret_and_configmap_and_the_secret_value_is_nowhere_else(
    kenv, admin, namespace, backend
):
    core, _rbac, batch = admin
    spec = spec_for(kenv, namespace)
    secret_values = list(spec.job_env.values())

    sub = backend.launch(spec)

    name = f"tao-{spec.launch_id}"
    assert sub.job_id == name
    assert sub.log_location == f"kubectl -n {namespace} logs job/{name}"
    assert sub.results_location == "/tao/results in the pod (emptyDir; copy out or set a results s3:// URI)"
    current = yaml.safe_load(Path(kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"]).read_text())["current-context"]
    assert dict(sub.details) == {"namespace": namespace, "context": current}  # the context used, not just the one named

    job = batch.read_namespaced_job(name, namespace)
    labels = job.metadata.labels
    assert labels["app.kubernetes.io/managed-by"] == "taobot"
    assert labels["taobot/launch"] == spec.launch_id
    assert labels["taobot/model"] == "cosmos-predict2" and labels["taobot/action"] == "train"
    assert job.spec.template.metadata.labels["taobot/launch"] == spec.launch_id  # the Pod carries them too
    assert job.spec.backoff_limit == 0
    assert job.spec.ttl_seconds_after_finished == 3600, TTL_DROPPED
    assert job.spec.parallelism == 1 and job.spec.completions == 1  # released after its Secret/ConfigMap existed
    pod_spec = job.spec.template.spec
    assert pod_spec.restart_policy == "Never"
    assert pod_spec.automount_service_account_token is False
    (c,) = pod_spec.containers
    assert c.image == IMAGE
    assert c.command == ["/bin/sh", "-c", "cosmos-predict2 train -e /tao/specs/train.yaml"]
    assert c.resources.limits == {"nvidia.com/gpu": "2"} and c.resources.requests == {"nvidia.com/gpu": "2"}
    assert [e.secret_ref.name for e in c.env_from] == [f"{name}-env"]
    assert {e.name: e.value for e in c.env}["TAO_API_RESULTS_DIR"] == "/tao/results"
    # TAO's status logger writes where the results go, under this launch's id
    assert {e.name: e.value for e in c.env}["TAO_STATUS_FILE"] == "/tao/results/status.json"
    assert {e.name: e.value for e in c.env}["TAO_API_JOB_ID"] == spec.launch_id
    mounts = {m.mount_path: m for m in c.volume_mounts}
    assert set(mounts) == {"/tao/specs", "/tao/results", "/dev/shm"}  # no volume for the user-mounted dataset path
    assert mounts["/tao/specs"].read_only is True
    volumes = {v.name: v for v in pod_spec.volumes}
    assert volumes[mounts["/tao/specs"].name].config_map.name == f"{name}-spec"
    assert volumes[mounts["/tao/results"].name].empty_dir is not None
    shm = volumes[mounts["/dev/shm"].name].empty_dir
    assert shm.medium == "Memory" and shm.size_limit == "16Gi"

    owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job.metadata.uid}]
    secret = core.read_namespaced_secret(f"{name}-env", namespace)
    assert [
        {"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid}
        for o in secret.metadata.owner_references
    ] == owner
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == dict(spec.job_env)
    cm = core.read_namespaced_config_map(f"{name}-spec", namespace)
    assert [(o.kind, o.name, o.uid) for o in cm.metadata.owner_references] == [("Job", name, job.metadata.uid)]
    rendered = yaml.safe_load(cm.data["train.yaml"])
    assert rendered["results_dir"] == "/tao/results"
    assert rendered["dataset"]["train"]["annotations"] == "s3://tao-datasets/cosmos/train/annotations.json"
    assert rendered["dataset"]["val"]["media"] == "/mnt/datasets/cosmos/val"
    assert rendered["train"]["num_gpus"] == 2

    # the credentials travel only in the Secret
    api = core.api_client
    texts = [
        json.dumps(api.sanitize_for_serialization(job)),
        json.dumps(api.sanitize_for_serialization(cm)),
        json.dumps(api.sanitize_for_serialization(pod_of(admin, namespace, name))),
        repr(sub),
    ]
    for value in secret_values:
        assert not [t for t in texts if value in t]
        assert not [t for t in texts if base64.b64encode(value.encode()).decode() in t]


def test_args_action_gets_quoted_arguments_and_no_configmap_and_a_results_uri_is_reported(
    kenv, admin, namespace, backend
):
    spec = spec_for(
        kenv,
        namespace,
        config_format="args",
        command="tao-run evaluate",
        spec={"model_path": "/mnt/models/it's here", "results_dir": "s3://results/run1", "verbose": True},
        results_uri="s3://results/run1",
        num_gpus=0,
    )

    sub = backend.launch(spec)

    job = admin[2].read_namespaced_job(sub.job_id, namespace)
    (c,) = job.spec.template.spec.containers
    assert c.command == [
        "/bin/sh",
        "-c",
        "tao-run evaluate --model_path '/mnt/models/it'\"'\"'s here' --results_dir s3://results/run1 --verbose",
    ]
    assert not (c.resources and c.resources.limits)  # no GPU asked, none requested
    assert "/tao/specs" not in {m.mount_path for m in c.volume_mounts}
    assert objects(admin, namespace)["configmaps"] == []
    assert sub.results_location == "s3://results/run1"


# --------------------------------------------------------------------------- monitoring


def test_pending_reasons_then_running_then_succeeded(kenv, admin, namespace, backend):
    spec = spec_for(kenv, namespace)
    sub = backend.launch(spec)
    ref = ref_for(spec, sub)
    pod = pod_of(admin, namespace, sub.job_id).metadata.name

    first = backend.poll([ref])[sub.job_id]
    assert first.state is JobState.PENDING and first.reason == "waiting for the scheduler to place the Pod"

    kubelet(
        admin,
        namespace,
        pod,
        "Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    unschedulable = backend.poll([ref])[sub.job_id]
    assert unschedulable.state is JobState.PENDING
    assert unschedulable.reason == "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."

    kubelet(
        admin,
        namespace,
        pod,
        "Pending",
        waiting="ImagePullBackOff",
        conditions=[{"type": "PodScheduled", "status": "True"}],
    )
    pulling = backend.poll([ref])[sub.job_id]
    assert pulling.state is JobState.PENDING and pulling.native == "Pod Pending (ImagePullBackOff)"
    assert pulling.reason.startswith("ImagePullBackOff: Back-off pulling image")

    kubelet(admin, namespace, pod, "Running")
    running = backend.poll([ref], tails_for=[sub.job_id])[sub.job_id]
    assert running.state is JobState.RUNNING and running.native == "Pod Running"
    assert running.log_tail == ()  # no kubelet serves logs here: no lines, not a failure
    assert backend.logs(ref) == []

    kubelet(admin, namespace, pod, "Succeeded", exit_code=0)
    done = wait_for(lambda: (s := backend.poll([ref])[sub.job_id]).state.terminal and s, what="a terminal state")
    assert done.state is JobState.SUCCEEDED and done.native == "Job Complete" and done.exit_code == 0
    assert any(c.type == "Complete" for c in admin[2].read_namespaced_job(sub.job_id, namespace).status.conditions)


def test_failed_pod_with_exit_code_3_fails_the_job_with_that_code(kenv, admin, namespace, backend):
    spec = spec_for(kenv, namespace)
    sub = backend.launch(spec)
    ref = ref_for(spec, sub)
    pod = pod_of(admin, namespace, sub.job_id).metadata.name
    kubelet(admin, namespace, pod, "Running")
    assert backend.poll([ref])[sub.job_id].state is JobState.RUNNING

    kubelet(admin, namespace, pod, "Failed", exit_code=3)
    failed = wait_for(lambda: (s := backend.poll([ref])[sub.job_id]).state.terminal and s, what="a terminal state")

    assert failed.state is JobState.FAILED
    assert failed.exit_code == 3
    assert failed.native == "Job Failed (BackoffLimitExceeded)"
    assert failed.reason.startswith("BackoffLimitExceeded: Job has reached the specified backoff limit")
    assert "the container exited with code 3 (Error)" in failed.reason


def test_out_of_memory_and_deadline_exceeded_are_failures_with_their_reason(kenv, admin, namespace, backend):
    oom_spec, late_spec = spec_for(kenv, namespace), spec_for(kenv, namespace)
    oom, late = backend.launch(oom_spec), backend.launch(late_spec)
    kubelet(
        admin,
        namespace,
        pod_of(admin, namespace, oom.job_id).metadata.name,
        "Failed",
        exit_code=137,
        reason="OOMKilled",
    )
    pod_of(admin, namespace, late.job_id)
    # the 1.20 job controller arms the deadline timer on this change only once the Job has a startTime
    wait_for(lambda: admin[2].read_namespaced_job_status(late.job_id, namespace).status.start_time, what="a startTime")
    admin[2].patch_namespaced_job(late.job_id, namespace, {"spec": {"activeDeadlineSeconds": 1}})

    refs = [ref_for(oom_spec, oom), ref_for(late_spec, late)]
    got = wait_for(
        lambda: (s := backend.poll(refs)) and all(x.state.terminal for x in s.values()) and s,
        what="both jobs to end",
        show=lambda: backend.poll(refs),
    )

    assert got[oom.job_id].state is JobState.FAILED and got[oom.job_id].exit_code == 137
    assert "ran out of memory (OOMKilled, exit code 137)" in got[oom.job_id].reason
    assert got[late.job_id].state is JobState.FAILED
    assert got[late.job_id].native == "Job Failed (DeadlineExceeded)"
    assert got[late.job_id].reason.startswith("DeadlineExceeded: ")


def test_poll_of_several_jobs_is_one_job_list_and_one_pod_list_per_namespace(
    kenv, admin, new_namespace, backend, api_calls
):
    ns1, ns2 = new_namespace(), new_namespace()
    specs = [spec_for(kenv, ns1) for _ in range(3)] + [spec_for(kenv, ns2)]
    subs = [backend.launch(s) for s in specs]
    refs = [ref_for(s, sub) for s, sub in zip(specs, subs)]
    running = pod_of(admin, ns1, subs[0].job_id).metadata.name
    kubelet(admin, ns1, running, "Running")
    gone = JobRef("feedbeef-00001", "tao-feedbeef-00001", dict(refs[0].details), refs[0].platform_credentials)

    api_calls.clear()
    statuses = backend.poll(refs[:3] + [gone])

    assert [(m, p) for m, p, _q in api_calls] == [
        ("GET", f"/apis/batch/v1/namespaces/{ns1}/jobs"),
        ("GET", f"/api/v1/namespaces/{ns1}/pods"),
    ]
    wanted = ",".join(sorted([s.launch_id for s in specs[:3]] + [gone.launch_id]))
    assert [q["labelSelector"] for _m, _p, q in api_calls] == [
        f"app.kubernetes.io/managed-by=taobot,taobot/launch in ({wanted})"
    ] * 2
    assert set(statuses) == {r.job_id for r in refs[:3]} | {gone.job_id}
    assert statuses[subs[0].job_id].state is JobState.RUNNING
    assert {statuses[s.job_id].state for s in subs[1:3]} == {JobState.PENDING}
    assert statuses[gone.job_id].state is JobState.UNKNOWN and "no longer exists" in statuses[gone.job_id].reason

    api_calls.clear()
    both = backend.poll(refs)  # two namespaces: two lists each
    assert len(api_calls) == 4 and len(both) == 4
    assert backend.connection_key(refs[0]) == backend.connection_key(refs[1]) != backend.connection_key(refs[3])


# --------------------------------------------------------------------------- cancel


def test_cancel_deletes_the_job_and_the_garbage_collector_removes_its_pod_secret_and_configmap(
    kenv, admin, namespace, backend
):
    from taobot.backends.kubernetes import KubernetesBackend

    spec = spec_for(kenv, namespace)
    sub = backend.launch(spec)
    ref = ref_for(spec, sub)
    kubelet(admin, namespace, pod_of(admin, namespace, sub.job_id).metadata.name, "Running")
    assert objects(admin, namespace)["secrets"] == [f"{sub.job_id}-env"]

    backend.cancel(ref)

    assert objects(admin, namespace)["secrets"] == []  # taobot's own delete, before the garbage collector's
    status = backend.poll([ref])[sub.job_id]
    assert status.state is JobState.CANCELLED and status.reason.startswith("cancelled from taobot")
    wait_for(
        lambda: objects(admin, namespace) == NOTHING,
        GC_WAIT_S,
        "the Job, Pod, Secret and ConfigMap to be deleted",
        show=lambda: objects(admin, namespace),
    )
    assert backend.poll([ref])[sub.job_id].state is JobState.CANCELLED  # remembered by this process
    backend.cancel(ref)  # again: already gone, no error

    restarted = KubernetesBackend(PlatformSettings(connect_timeout_s=5.0, http_timeout_s=5.0, on_persons_machine=True))
    try:  # after a restart the cluster has no record of a deleted Job: Unknown, as documented
        after = restarted.poll([ref])[sub.job_id]
    finally:
        restarted.close()
    assert after.state is JobState.UNKNOWN and "no longer exists" in after.reason


def test_a_cancelled_job_still_being_deleted_is_cancelled_even_after_a_restart(kenv, admin, namespace, backend):
    from taobot.backends.kubernetes import KubernetesBackend

    batch = admin[2]
    spec = spec_for(kenv, namespace)
    sub = backend.launch(spec)
    ref = ref_for(spec, sub)
    pod_of(admin, namespace, sub.job_id)
    # a finalizer holds the Job in "deleting", as a Pod that takes its grace period to stop does on a real cluster
    batch.patch_namespaced_job(sub.job_id, namespace, {"metadata": {"finalizers": ["taobot.test/hold"]}})
    try:
        backend.cancel(ref)
        job = batch.read_namespaced_job(sub.job_id, namespace)
        assert job.metadata.deletion_timestamp is not None
        assert job.metadata.annotations["taobot/cancelled"] == "true" and job.spec.parallelism == 0
        assert objects(admin, namespace)["secrets"] == []  # gone although its owner is held: taobot deleted it

        restarted = KubernetesBackend(
            PlatformSettings(connect_timeout_s=5.0, http_timeout_s=5.0, on_persons_machine=True)
        )
        try:
            status = restarted.poll([ref])[sub.job_id]
        finally:
            restarted.close()
        assert status.state is JobState.CANCELLED and status.native == "Job cancelled (deleting)"
        # parallelism 0 stops the Pod while the Job is still there (the Secret and ConfigMap may stay until the Job
        # goes: the garbage collector deletes non-blocking dependents of a held owner only if it had seen them first)
        wait_for(
            lambda: objects(admin, namespace)["pods"] == [],
            GC_WAIT_S,
            "the Pod to go",
            show=lambda: objects(admin, namespace),
        )
        assert objects(admin, namespace)["jobs"] == [sub.job_id]
    finally:
        batch.patch_namespaced_job(sub.job_id, namespace, {"metadata": {"finalizers": None}})
    wait_for(
        lambda: objects(admin, namespace) == NOTHING,
        GC_WAIT_S,
        "the Job and all it owned to go",
        show=lambda: objects(admin, namespace),
    )


@pytest.mark.parametrize(
    "phase, exit_code, state", [("Succeeded", 0, JobState.SUCCEEDED), ("Failed", 2, JobState.FAILED)]
)
def test_cleanup_of_an_ended_job_deletes_its_secret_and_leaves_the_job_to_its_ttl(
    kenv, admin, namespace, backend, phase, exit_code, state
):
    core, _rbac, batch = admin
    spec = spec_for(kenv, namespace)
    sub = backend.launch(spec)
    ref = ref_for(spec, sub)
    pod = pod_of(admin, namespace, sub.job_id).metadata.name
    kubelet(admin, namespace, pod, "Running")
    assert backend.poll([ref])[sub.job_id].state is JobState.RUNNING
    kubelet(admin, namespace, pod, phase, exit_code=exit_code)
    wait_for(lambda: backend.poll([ref])[sub.job_id].state is state, what=f"the Job to end {state.value}")
    assert objects(admin, namespace)["secrets"] == [f"{sub.job_id}-env"]  # ending alone removes nothing

    backend.cleanup(ref)

    with pytest.raises(Exception) as gone:
        core.read_namespaced_secret(f"{sub.job_id}-env", namespace)
    assert getattr(gone.value, "status", None) == 404
    # the Job, its Pod (logs) and its ConfigMap stay until the TTL controller deletes the Job
    left = objects(admin, namespace)
    assert left["jobs"] == [sub.job_id] and left["configmaps"] == [f"{sub.job_id}-spec"] and left["secrets"] == []
    assert batch.read_namespaced_job(sub.job_id, namespace).spec.ttl_seconds_after_finished == 3600, TTL_DROPPED
    backend.cleanup(ref)  # again: already gone, no error
    assert backend.poll([ref])[sub.job_id].state is state


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_the_garbage_collector_removes_the_owned_secret_when_the_job_is_deleted(
    kenv, admin, namespace, backend, propagation
):
    core, _rbac, batch = admin
    spec = spec_for(kenv, namespace)
    sub = backend.launch(spec)
    uid = batch.read_namespaced_job(sub.job_id, namespace).metadata.uid
    owners = core.read_namespaced_secret(f"{sub.job_id}-env", namespace).metadata.owner_references
    assert [(o.kind, o.name, o.uid) for o in owners] == [("Job", sub.job_id, uid)]

    batch.delete_namespaced_job(sub.job_id, namespace, body={"propagationPolicy": propagation})

    wait_for(
        lambda: objects(admin, namespace) == NOTHING,
        GC_WAIT_S,
        "the garbage collector to remove the Job's Secret, ConfigMap and Pod",
        show=lambda: objects(admin, namespace),
    )


def test_a_cleanup_the_bot_may_not_do_is_reported_without_secrets_and_done_once_allowed(
    kenv, admin, namespace, backend
):
    grant_bot(admin, kenv, namespace)  # the preflight's permissions: create Secrets, not delete them
    spec = spec_for(kenv, namespace, kubeconfig=kenv["TAOBOT_TEST_KUBECONFIG_BOT"])
    sub = backend.launch(spec)
    ref = ref_for(spec, sub)

    with pytest.raises(BackendUnreachable) as refused:
        backend.cleanup(ref)

    text = refused.value.message
    assert text.startswith(f"deleting Secret `{sub.job_id}-env` in namespace `{namespace}` was refused: HTTP 403")
    assert not any(v in text for v in spec.job_env.values()) and kenv["TAOBOT_TEST_KUBE_BOT_TOKEN"] not in text
    assert objects(admin, namespace)["secrets"] == [f"{sub.job_id}-env"]
    admin[1].patch_namespaced_role(
        "taobot",
        namespace,
        {"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}]},
    )
    wait_for(lambda: _bot_may(kenv, namespace, "delete", "", "secrets"), what="the delete grant to take effect")
    backend.cleanup(ref)
    assert objects(admin, namespace)["secrets"] == []


def test_cancel_of_a_missing_job_is_no_error_and_a_finished_job_is_left_alone(kenv, admin, namespace, backend):
    spec = spec_for(kenv, namespace)
    missing = JobRef(
        "0badc0de-00001", "tao-0badc0de-00001", {"namespace": namespace, "context": ""}, dict(spec.platform_credentials)
    )
    backend.cancel(missing)  # no error
    assert backend.poll([missing])[missing.job_id].state is JobState.CANCELLED

    sub = backend.launch(spec)
    ref = ref_for(spec, sub)
    kubelet(admin, namespace, pod_of(admin, namespace, sub.job_id).metadata.name, "Succeeded", exit_code=0)
    wait_for(lambda: backend.poll([ref])[sub.job_id].state is JobState.SUCCEEDED, what="the Job to complete")

    backend.cancel(ref)

    assert admin[2].read_namespaced_job(sub.job_id, namespace).metadata.deletion_timestamp is None
    assert backend.poll([ref])[sub.job_id].state is JobState.SUCCEEDED


# --------------------------------------------------------------------------- refusals and outages


def test_rbac_denied_launch_raises_launch_failed_403_and_leaves_nothing(kenv, admin, namespace, backend):
    spec = spec_for(kenv, namespace, kubeconfig=kenv["TAOBOT_TEST_KUBECONFIG_BOT"])

    with pytest.raises(LaunchFailed) as err:
        backend.launch(spec)

    text = err.value.message
    assert "HTTP 403" in text and "forbidden" in text and f'User "{kenv["TAOBOT_TEST_KUBE_BOT_USER"]}"' in text
    assert kenv["TAOBOT_TEST_KUBE_BOT_TOKEN"] not in text
    assert objects(admin, namespace) == NOTHING


@pytest.mark.parametrize(
    "missing, step",
    [
        ("kubernetes.rbac.secrets", "creating Secret `tao-{id}-env` was refused"),  # after the Job
        (
            "kubernetes.rbac.configmaps",
            "creating ConfigMap `tao-{id}-spec` was refused",
        ),  # after the Job and the Secret
        ("kubernetes.rbac.jobs-patch", "starting Job `tao-{id}` (parallelism 1) was refused"),  # after all three
    ],
)
def test_a_launch_refused_halfway_removes_what_it_created(kenv, admin, namespace, backend, missing, step):
    grant_bot(admin, kenv, namespace, skip=(missing,))
    spec = spec_for(kenv, namespace, kubeconfig=kenv["TAOBOT_TEST_KUBECONFIG_BOT"])

    with pytest.raises(LaunchFailed) as err:
        backend.launch(spec)

    assert err.value.message.startswith(step.format(id=spec.launch_id) + ": HTTP 403"), err.value.message
    assert "could not be deleted" not in err.value.message
    assert not any(v in err.value.message for v in spec.job_env.values())
    wait_for(
        lambda: objects(admin, namespace) == NOTHING,
        GC_WAIT_S,
        "the half-made launch to be cleaned up",
        show=lambda: objects(admin, namespace),
    )


def test_the_preflight_permissions_are_enough_to_launch_monitor_and_cancel(kenv, admin, namespace, backend):
    grant_bot(admin, kenv, namespace)
    spec = spec_for(kenv, namespace, kubeconfig=kenv["TAOBOT_TEST_KUBECONFIG_BOT"])

    sub = backend.launch(spec)
    ref = ref_for(spec, sub)
    kubelet(admin, namespace, pod_of(admin, namespace, sub.job_id).metadata.name, "Running")
    assert backend.poll([ref], tails_for=[sub.job_id])[sub.job_id].state is JobState.RUNNING
    assert backend.logs(ref) == []
    assert (
        len(backend.clients) == 2 and len(set(map(id, backend.clients.values()))) == 1
    )  # one client, current + named context
    backend.cancel(ref)
    assert backend.poll([ref])[sub.job_id].state is JobState.CANCELLED
    wait_for(
        lambda: objects(admin, namespace) == NOTHING,
        GC_WAIT_S,
        "the cancelled launch to be removed",
        show=lambda: objects(admin, namespace),
    )


def test_unreachable_api_server_is_backend_unreachable_fast_and_never_a_job_failure(kenv, namespace, backend, tmp_path):
    path, url = closed_port_kubeconfig(kenv, tmp_path)
    spec = spec_for(kenv, namespace, kubeconfig=path)
    ref = JobRef(
        spec.launch_id,
        f"tao-{spec.launch_id}",
        {"namespace": namespace, "context": ""},
        dict(spec.platform_credentials),
    )

    t0 = time.monotonic()
    with pytest.raises(BackendUnreachable) as polled:
        backend.poll([ref])
    with pytest.raises(BackendUnreachable) as launched:
        backend.launch(spec)
    with pytest.raises(BackendUnreachable):
        backend.cancel(ref)
    with pytest.raises(BackendUnreachable):
        backend.logs(ref)
    took = time.monotonic() - t0

    assert took < 10, f"took {took:.1f}s"
    assert polled.value.message == (
        f"the Kubernetes API server at {url} did not answer while listing the Jobs in namespace "
        f"`{namespace}`: connection refused (nothing listens on that address)"
    )
    assert url in launched.value.message
    for exc in (polled.value, launched.value):
        assert kenv["TAOBOT_TEST_KUBE_BOT_TOKEN"] not in exc.message


def test_unusable_kubeconfig_refuses_the_launch_and_cannot_ask_for_status(kenv, namespace, backend, tmp_path):
    spec = spec_for(kenv, namespace, kubeconfig=str(tmp_path / "nope"))
    ref = JobRef(
        spec.launch_id,
        f"tao-{spec.launch_id}",
        {"namespace": namespace, "context": ""},
        dict(spec.platform_credentials),
    )

    with pytest.raises(LaunchFailed) as launched:
        backend.launch(spec)
    with pytest.raises(BackendUnreachable) as polled:
        backend.poll([ref])

    assert f"kubeconfig `{tmp_path / 'nope'}` (from KUBECONFIG) does not exist" in launched.value.message
    assert "does not exist" in polled.value.message


def test_launch_into_a_namespace_that_does_not_exist_is_refused_with_the_servers_message(kenv, admin, backend):
    ns = f"{PREFIX}-absent-{uid()}"
    spec = spec_for(kenv, ns)

    with pytest.raises(LaunchFailed) as err:
        backend.launch(spec)

    assert err.value.message == (
        f'creating Job `tao-{spec.launch_id}` in namespace `{ns}` was refused: HTTP 404 namespaces "{ns}" not found'
    )


def test_an_evicted_pod_fails_the_job_with_the_eviction_reason(kenv, admin, namespace, backend):
    spec = spec_for(kenv, namespace)
    sub = backend.launch(spec)
    pod = pod_of(admin, namespace, sub.job_id).metadata.name
    admin[0].patch_namespaced_pod_status(
        pod,
        namespace,
        {"status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}},
    )

    failed = wait_for(
        lambda: (s := backend.poll([ref_for(spec, sub)])[sub.job_id]).state.terminal and s, what="the failure"
    )

    assert failed.state is JobState.FAILED and failed.exit_code is None
    assert failed.reason.endswith("the Pod was Evicted: The node was low on resource: memory.")


def test_names_and_quantities():
    from taobot.backends.kube_manifests import label_value, object_name, shm_quantity

    assert object_name("a1b2c3d4-12345") == "tao-a1b2c3d4-12345"
    long = object_name("Intake_" * 20)
    assert re.fullmatch(r"tao-[a-z0-9-]+", long) and len(long) + len("-spec") <= 63
    assert object_name("Intake_" * 20) != object_name("intake_" * 20)  # changed ids keep a distinguishing hash
    assert label_value("-a b/c.") == "a-b-c" and len(label_value("x" * 100)) == 63
    assert [shm_quantity(s) for s in ("16g", "512m", "16Gi", "1024", None)] == ["16Gi", "512Mi", "16Gi", "1024", None]
