"""The monitor's cleanup step: once a launch has ended, what holds its secrets on the platform is removed, once.

Real parts: SQLite (the store and its migrations), the kube-apiserver + kube-controller-manager of
tests/services/setup.sh kube (Secrets really deleted), the honest Lepton fake over HTTP (for failures on
demand). SLURM's env file is proven in tests/test_backend_slurm_outcomes.py (it needs the cluster lock).
The monitor's clock is a variable here, so waits between tries are stepped through, never slept.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from cryptography.fernet import Fernet

from taobot.backends.base import JobState
from taobot.backends.lepton import LeptonBackend
from taobot.catalog import load_catalog
from taobot.cleanup import CLEANUP_ATTEMPTS, CLEANUP_FIRST_WAIT_S, CLEANUP_MAX_WAIT_S
from taobot.config import PlatformSettings
from taobot.intake import start_intake
from taobot.monitor import Monitor
from taobot.secrets import SecretBox
from taobot.store import Store
from tests.builders import launch_record
from tests.fakes.lepton_api import FakeLeptonAPI
from tests.kube import admin, ignore_404, kenv, uid  # noqa: F401 - admin and kenv are fixtures
from tests.test_backend_kubernetes import kubelet, pod_of, spec_for, wait_for

OWNER = "U0CLEANUP"
WS = "tao-ws"


def token(prefix: str) -> str:
    return prefix + uid() + uid() + uid()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "taobot.db", SecretBox(Fernet.generate_key()))
    yield s
    s.close()


def record(store: Store, creds: dict[str, str], **fields) -> str:
    """A launch row (and its intake) for OWNER, whose saved credentials are `creds`."""
    for name, value in creds.items():
        store.put_secret(OWNER, name, value)
    fields.setdefault("thread_ts", f"1700000000.{uid()[:6]}")  # one thread per launch
    launch = launch_record(owner=OWNER, monitor=False, **fields)
    intake = start_intake(load_catalog(), "dino", "train", OWNER, launch.channel, launch.thread_ts)
    intake.id = launch.intake_id
    intake.status = "launched"
    store.save_intake(intake, OWNER, "start")
    store.add_launch(launch, intake, OWNER)
    return launch.id


# --------------------------------------------------------------------------- Kubernetes, for real


def test_the_monitor_deletes_the_secret_of_a_job_it_sees_end_and_a_restart_does_not_again(kenv, admin, store):
    from kubernetes.client import ApiClient

    from taobot.backends.kubernetes import KubernetesBackend

    core = admin[0]
    namespace = f"tbc-{uid()}"
    core.create_namespace({"metadata": {"name": namespace}})
    backend = KubernetesBackend(PlatformSettings(connect_timeout_s=5.0, http_timeout_s=5.0, on_persons_machine=True))
    try:
        spec = spec_for(kenv, namespace)
        sub = backend.launch(spec)
        launch_id = record(
            store,
            dict(spec.platform_credentials),
            id=spec.launch_id,
            intake_id=spec.launch_id.split("-")[0],
            platform="kubernetes",
            job_id=sub.job_id,
            details=json.dumps(dict(sub.details)),
            state=JobState.PENDING,
            native="submitted",
        )
        pod = pod_of(admin, namespace, sub.job_id).metadata.name
        monitor = Monitor(store, load_catalog(), {"kubernetes": backend}, None)
        assert monitor.cycle().cleaned == 0  # running jobs keep their Secret
        kubelet(admin, namespace, pod, "Succeeded", exit_code=0)
        wait_for(
            lambda: (
                backend.poll([monitor.ref(store.get_launch(launch_id), spec.platform_credentials)])[
                    sub.job_id
                ].state.terminal
            ),
            what="the job controller to mark the Job Complete",
        )

        stats = monitor.cycle()

        assert stats.cleaned == 1 and stats.cleanup_failed == 0
        row = store.get_launch(launch_id)
        assert row.state is JobState.SUCCEEDED and row.cleaned_at is not None
        secrets = [s.metadata.name for s in core.list_namespaced_secret(namespace).items]
        assert f"{sub.job_id}-env" not in secrets
        # a restarted monitor sends no delete for it
        deletes: list[str] = []
        real = ApiClient.call_api

        def watching(self, method, url, *args, **kwargs):
            if method == "DELETE":
                deletes.append(url)
            return real(self, method, url, *args, **kwargs)

        ApiClient.call_api = watching
        try:
            again = Monitor(store, load_catalog(), {"kubernetes": backend}, None).cycle()
        finally:
            ApiClient.call_api = real
        assert again.cleaned == 0 and deletes == []
    finally:
        backend.close()
        ignore_404(core.delete_namespace, namespace)


# --------------------------------------------------------------------------- failures, retried a bounded number of times


LEP_TOKEN = token("lep-")


@pytest.fixture
def lep():
    with FakeLeptonAPI(WS, LEP_TOKEN) as fake:
        yield fake


def lepton_row(store: Store, lep: FakeLeptonAPI, launch_id: str, hf: str) -> str:
    """An ended Lepton launch whose per-launch secret is still in the workspace."""
    name = f"tao-{launch_id}-hf-token"
    lep.add_secret(name, hf)
    return record(
        store,
        {"LEPTON_WORKSPACE_ID": WS, "LEPTON_AUTH_TOKEN": LEP_TOKEN, "HF_TOKEN": hf},
        id=launch_id,
        intake_id=launch_id.split("-")[0],
        platform="lepton",
        job_id="tao-job-1",
        details=json.dumps({"workspace_id": WS, "secrets": name}),
        state=JobState.FAILED,
        native="Failed",
        ended_at=time.time() - 5,
        final_posted=True,
    )


def test_a_failed_cleanup_is_retried_after_growing_waits_and_given_up_after_the_last_attempt(store, lep, caplog):
    hf = token("hf_")
    launch_id = lepton_row(store, lep, f"{uid()}-00001", hf)
    lep.fail_next(500, times=100, path="usersecrets", body={"message": f"cannot delete {hf}"})
    clock = {"now": time.time()}
    monitor = Monitor(store, load_catalog(), {"lepton": LeptonBackend(lep.url)}, None, clock=lambda: clock["now"])
    waits = []
    with caplog.at_level(logging.WARNING):
        for attempt in range(1, CLEANUP_ATTEMPTS + 1):
            assert monitor.cycle().cleanup_failed == 1
            row = store.get_launch(launch_id)
            assert row.cleanup_attempts == attempt and row.cleaned_at is None
            assert row.cleanup_error == f"Lepton secrets not deleted yet: tao-{launch_id}-hf-token"
            waits.append(round(row.cleanup_retry_at - clock["now"]))
            assert monitor.cycle().cleanup_failed == 0  # not due yet: nothing is tried
            clock["now"] = row.cleanup_retry_at
        for _ in range(3):  # given up: no more requests, however long it waits
            clock["now"] += CLEANUP_MAX_WAIT_S
            stats = monitor.cycle()
            assert stats.cleaned == stats.cleanup_failed == 0
    assert waits == [min(CLEANUP_MAX_WAIT_S, CLEANUP_FIRST_WAIT_S * 2**i) for i in range(CLEANUP_ATTEMPTS)]
    assert len(lep.calls_to("DELETE", "usersecrets")) == CLEANUP_ATTEMPTS
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "cleanup gave up after 8 attempts" in logged and logged.count("cleanup failed (attempt") == 7
    assert hf not in logged and LEP_TOKEN not in logged
    assert hf not in json.dumps(store.get_launch(launch_id).model_dump())


def test_a_cleanup_that_failed_before_a_restart_is_done_after_it_and_counted_on(store, lep):
    hf = token("hf_")
    launch_id = lepton_row(store, lep, f"{uid()}-00002", hf)
    lep.fail_next(503, times=2, path="usersecrets")
    clock = {"now": time.time()}
    first = Monitor(store, load_catalog(), {"lepton": LeptonBackend(lep.url)}, None, clock=lambda: clock["now"])
    assert first.cycle().cleanup_failed == 1
    clock["now"] = store.get_launch(launch_id).cleanup_retry_at
    assert first.cycle().cleanup_failed == 1
    assert store.get_launch(launch_id).cleanup_attempts == 2

    clock["now"] = store.get_launch(launch_id).cleanup_retry_at
    restarted = Monitor(store, load_catalog(), {"lepton": LeptonBackend(lep.url)}, None, clock=lambda: clock["now"])
    assert restarted.cycle().cleaned == 1

    row = store.get_launch(launch_id)
    assert row.cleaned_at == clock["now"] and row.cleanup_attempts == 2 and row.cleanup_error is None
    assert lep.secrets() == {}
    assert restarted.cycle().cleaned == 0 and len(lep.calls_to("DELETE", "usersecrets")) == 3


def test_a_launch_whose_backend_is_unknown_fails_alone_and_the_others_are_cleaned(store, lep):
    hf = token("hf_")
    good = lepton_row(store, lep, f"{uid()}-00003", hf)
    odd = record(store, {}, id=f"{uid()}-00004", intake_id="oddintak", platform="nowhere", ended_at=time.time())
    stats = Monitor(store, load_catalog(), {"lepton": LeptonBackend(lep.url)}, None).cycle()
    assert stats.cleaned == 1 and stats.cleanup_failed == 1
    assert store.get_launch(good).cleaned_at is not None and lep.secrets() == {}
    assert store.get_launch(odd).cleanup_error == "UnknownNameError finding the nowhere backend"
