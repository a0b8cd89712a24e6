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
