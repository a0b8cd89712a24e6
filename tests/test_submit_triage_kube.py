"""A submit the real kube-apiserver refuses is triaged from its own words.

Two refusals of a real API server: the ResourceQuota admission (a namespace whose quota allows no Jobs) and RBAC (an identity that may not create
Jobs). Both are the request's doing, configuration: no Retry; the deciding line is the server's.
"""

from __future__ import annotations

import pytest

from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.triage import FailureKind, submit_triage
from tests.kube import admin, kenv  # noqa: F401 - fixtures
from tests.polling import wait_until
from tests.test_backend_kubernetes import NOTHING, backend, namespace, new_namespace, objects, spec_for  # noqa: F401


def refusal_of(backend, spec) -> tuple[str, bool]:
    with pytest.raises((LaunchFailed, BackendUnreachable)) as err:
        backend.launch(spec)
    return err.value.message, isinstance(err.value, BackendUnreachable)


def test_a_quota_that_allows_no_jobs_is_an_admission_refusal_without_retry(kenv, admin, namespace, backend):
    core = admin[0]
    hard = {"count/jobs.batch": "0"}
    core.create_namespaced_resource_quota(namespace, {"metadata": {"name": "no-jobs"}, "spec": {"hard": hard}})
    # The quota admits nothing until its status says what the namespace holds. The lab's controller manager
    # runs without the resourcequota controller, so its status is written here, as that controller would.
    core.patch_namespaced_resource_quota_status(
        "no-jobs", namespace, {"status": {"hard": hard, "used": {"count/jobs.batch": "0"}}}
    )
    wait_until(
        lambda: (core.read_namespaced_resource_quota("no-jobs", namespace).status.hard or {}).get("count/jobs.batch"),
        30,
        "the quota's status",
    )
    message, unreachable = refusal_of(backend, spec_for(kenv, namespace))
    found = submit_triage(message, unreachable)
    assert "exceeded quota" in message, message
    assert (found.kind, found.cause) == (FailureKind.CONFIGURATION, "refused by admission"), (found, message)
    assert "exceeded quota" in found.evidence and not found.retriable
    assert objects(admin, namespace) == NOTHING


def test_an_identity_that_may_not_create_jobs_is_refused_as_configuration(kenv, admin, namespace, backend):
    message, unreachable = refusal_of(backend, spec_for(kenv, namespace, kubeconfig=kenv["TAOBOT_TEST_KUBECONFIG_BOT"]))
    found = submit_triage(message, unreachable)
    assert (found.kind, found.cause) == (FailureKind.CONFIGURATION, "identity not permitted"), (found, message)
    assert "cannot create resource" in found.evidence and not found.retriable
    assert objects(admin, namespace) == NOTHING
