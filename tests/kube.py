"""The test kube-apiserver (tests/services/setup.sh kube): its env, an admin client, and small helpers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.lab import require

NEEDED = (
    "TAOBOT_TEST_KUBE_API",
    "TAOBOT_TEST_KUBECONFIG_ADMIN",
    "TAOBOT_TEST_KUBECONFIG_BOT",
    "TAOBOT_TEST_KUBE_ADMIN_TOKEN",
    "TAOBOT_TEST_KUBE_BOT_TOKEN",
    "TAOBOT_TEST_KUBE_BOT_USER",
)


@pytest.fixture(scope="module")
def kenv() -> dict[str, str]:
    """The services env, failing (never skipping) when the kube part is missing."""
    env = require(*NEEDED)
    absent = [
        env[n] for n in ("TAOBOT_TEST_KUBECONFIG_ADMIN", "TAOBOT_TEST_KUBECONFIG_BOT") if not Path(env[n]).is_file()
    ]
    if absent:
        pytest.fail(f"kubeconfig {', '.join(absent)} is missing: run `bash tests/services/setup.sh kube`")
    return env


@pytest.fixture(scope="module")
def admin(kenv):
    """(CoreV1Api, RbacAuthorizationV1Api, BatchV1Api) as cluster admin; fails if the server does not answer."""
    from kubernetes import client, config

    cfg = type.__call__(client.Configuration)
    cfg.retries = 0
    api = config.new_client_from_config(
        config_file=kenv["TAOBOT_TEST_KUBECONFIG_ADMIN"], persist_config=False, client_configuration=cfg
    )
    try:
        client.VersionApi(api).get_code(_request_timeout=(5.0, 10.0))
    except Exception as exc:
        pytest.fail(
            f"kube-apiserver {kenv['TAOBOT_TEST_KUBE_API']} does not answer ({type(exc).__name__}): "
            "run `bash tests/services/setup.sh kube`"
        )
    yield client.CoreV1Api(api), client.RbacAuthorizationV1Api(api), client.BatchV1Api(api)
    api.close()


def uid() -> str:
    return uuid.uuid4().hex[:8]


def ignore_404(fn, *args, **kwargs):
    from kubernetes.client.exceptions import ApiException

    try:
        fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise


# --------------------------------------------------------------------------- a person's own identity


def person_certificate(kenv, user: str, groups: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for `user`, signed by the test cluster's CA: the apiserver authenticates it as `user`."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_dir = Path(kenv["TAOBOT_TEST_KUBE_CA"]).parent
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    names += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def person_kubeconfig(kenv, user: str, namespace: str | None = None, server: str | None = None, **user_fields) -> str:
    """A kubeconfig a person would upload: one context, the CA, a client certificate and key, all as `*-data`.

    `user_fields` replace or add entries of its `user:` (e.g. exec=..., **{"client-key": "/path"}); a value None drops one.
    """
    import base64

    import yaml

    cert, key = person_certificate(kenv, user)
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    body = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    for name, value in user_fields.items():
        name = name.replace("_", "-")
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    context = {"cluster": "lab", "user": user, **({"namespace": namespace} if namespace else {})}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lab",
                "cluster": {
                    "server": server or kenv["TAOBOT_TEST_KUBE_API"],
                    "certificate-authority-data": b64(Path(kenv["TAOBOT_TEST_KUBE_CA"]).read_bytes()),
                },
            }
        ],
        "users": [{"name": user, "user": body}],
        "contexts": [{"name": f"{user}@lab", "context": context}],
        "current-context": f"{user}@lab",
    }
    return yaml.safe_dump(doc, sort_keys=False)


# --------------------------------------------------------------------------- volumes that bind


def _running_controllers(kenv) -> tuple[str | None, str]:
    """(binary, --controllers value) of the test setup's kube-controller-manager, read from its /proc entry."""
    pid_file = Path(kenv.get("TAOBOT_SERVICES_DIR", "/tmp/taobot-services")) / "kube" / "kcm.pid"
    try:
        args = Path(f"/proc/{pid_file.read_text().strip()}/cmdline").read_bytes().decode().split("\0")
    except (OSError, ValueError):
        return None, ""
    wanted = next((a.split("=", 1)[1] for a in args if a.startswith("--controllers=")), "")
    return args[0], wanted


VOLUME_CONTROLLERS = ("persistentvolume-binder", "pv-protection", "pvc-protection")


@pytest.fixture(scope="module")
def claim_binder(kenv, tmp_path_factory):
    """The persistent volume controllers (binding, and the protection finalizers' removal, without which a deleted
    claim and its namespace never go): the test setup's controller manager runs them (tests/services/lib/kube.sh);
    one started before they were added does not, and then this starts one running only those, for the module.
    """
    import subprocess

    binary, controllers = _running_controllers(kenv)
    if binary is None:
        pytest.fail("the test setup's kube-controller-manager is not running: run `bash tests/services/setup.sh kube`")
    if set(VOLUME_CONTROLLERS) <= set(controllers.split(",")):
        yield None
        return
    log = tmp_path_factory.mktemp("pv-binder") / "kcm.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--kubeconfig={kenv['TAOBOT_TEST_KUBECONFIG_ADMIN']}",
                "--leader-elect=false",
                "--controllers=" + ",".join(VOLUME_CONTROLLERS),
                "--use-service-account-credentials=false",
                "--secure-port=0",
                "--port=0",
                "--v=1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        from tests.polling import wait_until

        # a claim made before the controller's caches are synced may wait a resync period or more
        wait_until(
            lambda: proc.poll() is not None or "Caches are synced for persistent volume" in log.read_text(),
            30,
            "the persistent volume controller to start",
        )
        assert proc.poll() is None, log.read_text()[-2000:]
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def bound_claim(admin, namespace: str, claim: str, size: str = "1Gi", timeout: float = 30.0) -> str:
    """A PersistentVolume (hostPath, no StorageClass) and the claim `claim` on it in `namespace`, waited for until
    the volume controller has bound them; returns the PV's name (the caller deletes it)."""
    from kubernetes import client

    from tests.polling import wait_until

    core = admin[0]
    pv = f"tkv-{uid()}"
    core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=pv),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": size},
                access_modes=["ReadWriteOnce", "ReadOnlyMany"],
                host_path=client.V1HostPathVolumeSource(path=f"/srv/taobot-test/{pv}"),
                storage_class_name="",
                persistent_volume_reclaim_policy="Retain",
            ),
        )
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=claim),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources={"requests": {"storage": size}},
                storage_class_name="",
                volume_name=pv,
            ),
        ),
    )

    def bound() -> bool:
        pvc = core.read_namespaced_persistent_volume_claim(claim, namespace)
        return bool(pvc.status and pvc.status.phase == "Bound")

    wait_until(bound, timeout, f"claim {claim} in {namespace} to be bound by the volume controller")
    return pv


def delete_claim(admin, namespace: str, claim: str, pv: str, timeout: float = 30.0) -> None:
    """Delete the claim and its volume, and wait until both are gone (their protection finalizers removed)."""
    from kubernetes.client.exceptions import ApiException

    from tests.polling import wait_until

    core = admin[0]
    ignore_404(core.delete_namespaced_persistent_volume_claim, claim, namespace)
    ignore_404(core.delete_persistent_volume, pv)

    def gone() -> bool:
        try:
            core.read_persistent_volume(pv)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_until(gone, timeout, f"volume {pv} and its claim to be deleted")


def grant_launch_role(admin, namespace: str, user: str, name: str = "taobot-launch") -> None:
    """A Role with what a launch, its preflight and its monitoring need in `namespace`, bound to the user `user`."""
    from kubernetes import client

    rbac = admin[1]
    rules = [
        client.V1PolicyRule(
            api_groups=["batch"], resources=["jobs"], verbs=["create", "get", "list", "patch", "delete"]
        ),
        client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["create", "delete"]),
        client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["create"]),
        client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"]),
        client.V1PolicyRule(api_groups=[""], resources=["pods/log"], verbs=["get"]),
        client.V1PolicyRule(api_groups=[""], resources=["persistentvolumeclaims"], verbs=["get"]),
    ]
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=client.V1ObjectMeta(name=name), rules=rules))
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[client.RbacV1Subject(kind="User", name=user, api_group="rbac.authorization.k8s.io")],
        ),
    )


class ConnectionRecorder:
    """A TCP listener on 127.0.0.1 that counts connections and answers none: proof that nothing was asked."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
