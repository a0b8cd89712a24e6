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
# An access key id of the shape people paste (AKIA + 16), made up; joined here so that secret scanners reading
# this file do not take it for a real one.
EXAMPLE_ACCESS_KEY = "AKIA" + "EXAMPLEKEY000001"


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


def test_the_console_on_the_persons_machine_takes_a_kubeconfig_path_for_the_identity(kenv, tmp_path):
    from taobot.catalog import load_catalog
    from taobot.console import ConsoleIO, run_console
    from taobot.secrets import SecretBox, load_or_create_key
    from taobot.store import Store

    answers = iter(["kubernetes", "n", kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"]])
    said: list[str] = []

    def ask(prompt: str) -> str:
        said.append(prompt)
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None

    store = Store(tmp_path / "c.db", SecretBox(load_or_create_key(None, tmp_path / "c.key")))
    try:
        assert run_console(store, load_catalog(), "dino", "train", io=ConsoleIO(ask=ask, say=said.append)) == 1
        assert any("Or type the path of your kubeconfig on this machine" in line for line in said)
        state = store.recent_intakes(limit=1)[0]
        assert "KUBECONFIG" in state.credentials and "TAO_K8S_PROFILE" not in state.credentials
    finally:
        store.close()


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


# --------------------------------------------------------------------------- the form


def test_the_credentials_form_offers_the_open_profiles_and_an_upload_within_slacks_limits(kenv):
    from slack_sdk.models.views import View

    from taobot import views as V
    from taobot.catalog import load_catalog
    from taobot.intake import Step
    from taobot.slack.kube_forms import PROFILE_BLOCK, UPLOAD_BLOCK
    from taobot.slack.render import render
    from tests.builders import drive_to
    from tests.fakes._blocks import validate_view

    catalog = load_catalog()
    state = drive_to(Step.CREDENTIALS, "kubernetes", "dino", "train")
    many = tuple(
        KubeProfile(
            name=f"lab-{n:03d}",
            in_cluster=True,
            namespaces=[f"team-{n}", "shared"],
            volumes=[{"claim": "coco", "mount_path": "/mnt/" + "long-folder-name" * 6}],
        )
        for n in range(120)
    )  # more than a select may hold, with texts longer than an option may show
    view = render(V.CredentialsForm(V.intake_facts(state, catalog), kube_profiles=many))
    View(**view).validate_json()
    assert validate_view(view) == []
    by_id = {b.get("block_id"): b for b in view["blocks"]}
    options = by_id[PROFILE_BLOCK]["element"]["options"]
    assert len(options) == 100 and options[-1]["value"] == OWN_KUBECONFIG
    assert all(len(o["text"]["text"]) <= 75 and len(o["description"]["text"]) <= 75 for o in options)
    upload = by_id[UPLOAD_BLOCK]
    assert upload["element"] == {"type": "file_input", "action_id": "value", "max_files": 1}
    assert upload["optional"] and by_id[PROFILE_BLOCK]["optional"]
    assert "`exec`" in upload["hint"]["text"] and "file paths are refused" in upload["hint"]["text"]


# --------------------------------------------------------------------------- in a Slack thread (the bot as a process)


def policy_file(tmp_path, profiles: list[dict]) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"kubernetes_profiles": profiles}))
    return str(path)


@pytest.fixture
def kube_bot(tmp_path, slack, kenv):
    """start(profiles) -> the bot, with its own KUBECONFIG (the cluster admin's) that no Slack person may reach."""
    from tests.harness import BotProcess

    made = []

    def start(profiles: list[dict]):
        env = {"KUBECONFIG": kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], "TAOBOT_POLICY": policy_file(tmp_path, profiles)}
        made.append(BotProcess(tmp_path, slack, extra_env=env).start())
        return made[-1]

    yield start
    for bot in made:
        bot.kill()


def kube_thread(person, model: str = "dino"):
    thread = person.launch(model)
    thread.say("platform=kubernetes monitor=no")
    thread.wait_card("Credentials needed")
    return thread


def submit_state(thread, view: dict, state: dict):
    """Submit the modal with Slack's own state values (selects and file inputs as Slack sends them)."""
    from tests.fakes import post_view_submission
    from tests.harness import SIGNING_SECRET

    fields = {b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"}
    assert set(state) <= fields, f"{sorted(set(state) - fields)} are not fields of {view['callback_id']}"
    resp = post_view_submission(
        thread.person.bot.url,
        SIGNING_SECRET,
        thread.person.user,
        view["callback_id"],
        view["private_metadata"],
        {block: {"value": value} for block, value in state.items()},
        view=view,
    )
    assert resp.status_code == 200, resp
    return resp


def upload_state(file: dict) -> dict:
    from taobot.slack.kube_forms import UPLOAD_BLOCK

    return {UPLOAD_BLOCK: {"type": "file_input", "files": [file]}}


def select_state(value: str) -> dict:
    from taobot.slack.kube_forms import PROFILE_BLOCK

    return {
        PROFILE_BLOCK: {
            "type": "static_select",
            "selected_option": {"value": value, "text": {"type": "plain_text", "text": value}},
        }
    }


def everything_said(slack) -> str:
    """Every argument the bot sent to Slack, as text."""
    import json

    return "\n".join(json.dumps(c.params) for c in slack.calls)


def stored_bytes(bot) -> bytes:
    return b"".join(p.read_bytes() for p in bot.db.parent.glob(bot.db.name + "*") if p.is_file())


def test_a_slack_person_uploads_a_kubeconfig_that_preflight_uses_and_nothing_shows_it(kube_bot, kenv, admin, namespace):
    import base64

    from taobot.intake.intents import OPEN_SETTINGS
    from taobot.slack import blocks as B

    bot = kube_bot([])
    from tests.harness import SlackUser

    person = SlackUser(bot)
    user = f"person-{uid()}"
    grant_launch_role(admin, namespace, user)
    upload = person_kubeconfig(kenv, user)
    key_data = yaml.safe_load(upload)["users"][0]["user"]["client-key-data"]
    key_pem = base64.b64decode(key_data).decode().strip().splitlines()[1]  # a line of the private key itself

    thread = kube_thread(person)
    assert "`TAO_K8S_PROFILE`" in thread.card_text()  # no fallback identity: the intake asks for one
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    assert "No cluster profile of the operator's is open to you" in json_text(view)
    file = bot.slack.add_file(person.user, "kubeconfig.yaml", upload.encode())
    submit_state(thread, view, upload_state(file))
    saved = thread.wait_reply("Your kubeconfig `kubeconfig.yaml` is saved, encrypted")
    assert f"context `{user}@lab` → `{kenv['TAOBOT_TEST_KUBE_API']}` as user `{user}` (client certificate)" in saved
    thread.wait_card("`TAO_K8S_PROFILE` set")
    assert [d["bot_token"] for d in bot.slack.file_downloads()] == [True]

    thread.submit(thread.open_modal(OPEN_SETTINGS), {"cred_TAO_K8S_NAMESPACE": namespace})
    thread.wait_reply("TAO_K8S_NAMESPACE is set.")
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.say("train=s3://tao-datasets/dino/train eval=s3://tao-datasets/dino/val num_gpus=1")
    thread.wait_card("`ACCESS_KEY`")  # s3:// datasets: the S3 key pair is asked next
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    thread.submit(view, {"cred_ACCESS_KEY": EXAMPLE_ACCESS_KEY, "cred_SECRET_KEY": "s3-secret-value-for-test-0001"})
    thread.wait_card("status: *complete*")
    thread.press(B.RUN_PREFLIGHT)
    card = wait_preflight(thread)
    assert "using your uploaded kubeconfig, context" in card
    assert f"may create jobs (batch) in namespace `{namespace}`" in card  # RBAC evaluated for the uploaded user
    assert f'User "{user}" cannot list resource "nodes"' in card  # the apiserver's own words name that user
    assert jobs_in(admin, namespace) == []  # preflight creates nothing

    for call in bot.slack.calls:
        said = json_text(call.params)
        assert key_data not in said and key_pem not in said, (call.method, said[:3000])
    log = bot.log_text()
    assert key_data not in log and key_pem not in log and "client-key-data" not in log
    raw = stored_bytes(bot)
    assert key_data.encode() not in raw and key_pem.encode() not in raw and b"client-key-data" not in raw


def json_text(view: dict) -> str:
    import json

    return json.dumps(view)


def wait_preflight(thread) -> str:
    from tests.harness import blocks_text
    from tests.polling import wait_until

    def finished() -> str | None:
        for m in thread.replies():
            text = blocks_text(m)
            if "Preflight" in text and ("passed" in text or "failed" in text) and "running" not in text.lower():
                return text
        return None

    return wait_until(
        finished, 60, "the preflight card to finish", show=lambda: [blocks_text(m)[:300] for m in thread.replies()]
    )


def test_an_upload_with_exec_is_refused_in_the_thread_and_nothing_is_stored(kube_bot, kenv, admin, namespace):
    from taobot.slack import blocks as B
    from tests.harness import SlackUser

    bot = kube_bot([])
    person = SlackUser(bot)
    thread = kube_thread(person)
    upload = person_kubeconfig(kenv, "someone", exec={"apiVersion": "client.authentication.k8s.io/v1", "command": "id"})
    file = bot.slack.add_file(person.user, "config", upload.encode())
    submit_state(thread, thread.open_modal(B.OPEN_CREDENTIALS), upload_state(file))
    refused = thread.wait_reply("Your kubeconfig was not saved: nothing changed.")
    assert "`exec` in user `someone`: runs a program on the bot's host" in refused
    store = bot.store()
    try:
        assert store.secret_fingerprints(person.user) == {}
        rows = [r for r in store.audit_rows(actor=person.user) if r["action"] == "kubernetes identity"]
        assert rows and rows[-1]["allowed"] == 0 and "`exec`" in rows[-1]["reason"]
    finally:
        store.close()
    assert "TAO_K8S_PROFILE` set" not in thread.card_text()
    assert jobs_in(admin, namespace) == [] and secrets_in(admin, namespace) == []


def test_a_profile_the_person_may_not_use_is_refused_in_the_form_and_again_at_preflight(
    kube_bot, kenv, admin, namespace
):
    from taobot.slack import blocks as B
    from tests.fakes import ids
    from tests.harness import SlackUser

    lab = {"name": "lab", "kubeconfig": kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], "namespaces": [namespace]}
    bot = kube_bot([{**lab, "channels": [ids.CHANNEL_ID]}, {**lab, "name": "ops", "users": ["U0SOMEONE2"]}])
    person = SlackUser(bot)
    thread = kube_thread(person)
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    offered = [o["value"] for b in view["blocks"] for o in (b.get("element") or {}).get("options", [])]
    assert offered == ["lab", "own-kubeconfig"]  # `ops` is not open to this person here
    resp = submit_state(thread, view, select_state("ops"))  # a forged choice
    errors = resp.json()["errors"]
    assert "Cluster profile `ops` is not open to" in errors["cred_TAO_K8S_PROFILE"]
    assert "profiles open to you here: `lab`" in errors["cred_TAO_K8S_PROFILE"]

    submit_state(thread, thread.open_modal(B.OPEN_CREDENTIALS), select_state("lab"))
    thread.wait_card("`TAO_K8S_PROFILE` set")
    # the same person in another channel, where `lab` is not open: the remembered choice is refused before preflight
    elsewhere = SlackUser(bot, channel="C0TAOCHAN2")
    other = elsewhere.launch("dino")
    other.say("platform=kubernetes monitor=no")
    other.wait_card("Container image for dino/train: default=")  # the remembered profile answers the credentials
    other.press(B.IMAGE_USE_DEFAULT)
    other.say("train=s3://tao-datasets/dino/train eval=s3://tao-datasets/dino/val num_gpus=1")
    other.wait_card("`ACCESS_KEY`")
    view = other.open_modal(B.OPEN_CREDENTIALS)
    other.submit(view, {"cred_ACCESS_KEY": EXAMPLE_ACCESS_KEY, "cred_SECRET_KEY": "s3-secret-value-for-test-0001"})
    other.wait_card("status: *complete*")
    other.press(B.RUN_PREFLIGHT)
    said = other.wait_reply("Preflight did not start: this launch's Kubernetes identity may not be used")
    assert "Cluster profile `lab` is not open to" in said
    store = bot.store()
    try:
        rows = [r for r in store.audit_rows(actor=person.user) if r["allowed"] == 0]
        assert any(r["action"] == "kubernetes identity" and "`ops`" in r["reason"] for r in rows)
        assert any(r["action"] == "preflight" and "`lab`" in r["reason"] for r in rows)
    finally:
        store.close()
    assert jobs_in(admin, namespace) == [] and secrets_in(admin, namespace) == []


def test_a_slack_person_cannot_name_the_bots_kubeconfig(kube_bot, kenv, admin, namespace):
    from taobot.slack import blocks as B
    from tests.harness import SlackUser

    bot = kube_bot([])
    person = SlackUser(bot)
    thread = kube_thread(person)
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    shown = {b.get("block_id") for b in view["blocks"]}
    assert "cred_KUBECONFIG" not in shown and "cred_TAO_K8S_CONTEXT" not in shown  # never offered in Slack
    view["blocks"].append(
        {"type": "input", "block_id": "cred_KUBECONFIG", "label": {"type": "plain_text", "text": "x"},
         "element": {"type": "plain_text_input", "action_id": "value"}}
    )  # fmt: skip
    resp = submit_state(
        thread, view, {"cred_KUBECONFIG": {"type": "plain_text_input", "value": kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"]}}
    )
    assert "KUBECONFIG names a kubeconfig on the bot's host" in resp.json()["errors"]["cred_KUBECONFIG"]
    # a kubeconfig typed into the upload's field instead of a file is refused too: uploads are read and checked
    typed = {"type": "plain_text_input", "value": person_kubeconfig(kenv, "someone")}
    resp = submit_state(thread, thread.open_modal(B.OPEN_CREDENTIALS), {"cred_KUBECONFIG_CONTENT": typed})
    assert "Upload your kubeconfig as a file" in resp.json()["errors"]["cred_KUBECONFIG_CONTENT"]
    store = bot.store()
    try:
        assert store.secret_fingerprints(person.user) == {}
    finally:
        store.close()
    thread.say("preflight")
    assert "Credential TAO_K8S_PROFILE" in thread.wait_reply("Preflight runs once the intake is complete")
    made = admin[2].list_job_for_all_namespaces(label_selector=f"taobot.intake={thread.intake_id}").items
    assert made == []  # nothing anywhere with the bot's (admin) kubeconfig
