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
