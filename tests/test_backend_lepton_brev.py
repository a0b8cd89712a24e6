"""Lepton and Brev backends against the honest local fakes of their APIs, over real HTTP.

Launch must put the job's credentials only into the platform's secret
mechanism (the plain value travels in exactly one request: the secret
create), poll must ask once per workspace/org, refusals are `LaunchFailed`
naming the credential, outages are `BackendUnreachable`, and the platform
token never appears in any exception.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import socket
import stat
import subprocess

import pytest
import yaml

from taobot.backends import lepton as lepton_backend
from taobot.backends.base import (
    RESULTS_PLACEHOLDER,
    JobRef,
    JobState,
    LaunchSpec,
)
from taobot.backends.brev import BrevBackend
from taobot.backends.lepton import LeptonBackend
from taobot.catalog.schema import ResourceDefaults
from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.render import render
from tests.fakes.brev_api import FakeBrevAPI
from tests.fakes.lepton_api import JOB_STATES, FakeLeptonAPI, make_node_group

WS = "tao-ws"
LEP_TOKEN = "lep-Synthetic-Tok3n-9f8e7d6c5b4a"
BREV_TOKEN = "bak-Synthetic-T0ken-1a2b3c4d5e6f"
HF_SECRET = "hf_Synthetic-Secret-Value-0123456789"
NGC_SECRET = "ngc-Synthetic-Key-abcdef987654"
LAUNCH = "a1b2c3d4-01234"


@pytest.fixture(autouse=True)
def quick_retry(monkeypatch):
    monkeypatch.setattr(lepton_backend, "MAX_RETRY_AFTER_S", 0.05)
    monkeypatch.setattr(lepton_backend, "DEFAULT_RETRY_AFTER_S", 0.01)


@pytest.fixture
def lep():
    with FakeLeptonAPI(WS, LEP_TOKEN) as fake:
        yield fake


@pytest.fixture
def brv():
    instances = [
        {
            "id": "inst-a100",
            "name": "tao-a100",
            "status": "RUNNING",
            "instanceType": "a2-highgpu-1g:nvidia-tesla-a100:1",
            "workspaceGroupId": "GCP",
        },
        {
            "id": "inst-h100",
            "name": "tao-h100",
            "status": "STOPPED",
            "instanceType": "hyperstack_H100x2",
            "workspaceGroupId": "hyperstack",
        },
    ]
    with FakeBrevAPI(BREV_TOKEN, instances=instances) as fake:
        yield fake


def make_spec(
    platform: str,
    creds: dict,
    *,
    launch_id: str = LAUNCH,
    num_gpus: int = 2,
    num_nodes: int = 1,
    config_format: str = "yaml",
    command: str = "detectron2 train -e {config_path}",
    job_env: dict | None = None,
    results_uri: str | None = None,
) -> LaunchSpec:
    spec = {
        "dataset.train_data_sources[0].image_dir": "s3://bucket/coco/train",
        "train.num_gpus": num_gpus,
        "train.results_dir": results_uri or RESULTS_PLACEHOLDER,
    }
    return LaunchSpec(
        launch_id=launch_id,
        platform=platform,
        model="rtdetr",
        action="train",
        image="nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt",
        command=command,
        config_format=config_format,
        spec=spec,
        datasets={"train": "s3://bucket/coco/train"},
        num_gpus=num_gpus,
        num_nodes=num_nodes,
        resources=ResourceDefaults(num_gpus=1, max_num_gpus_per_node=8, max_num_nodes=16),
        platform_credentials=creds,
        job_env={"HF_TOKEN": HF_SECRET, "NGC_KEY": NGC_SECRET} if job_env is None else job_env,
        results_uri=results_uri,
        labels={"taobot.intake": "a1b2c3d4", "taobot.owner": "U123"},
    )


def lep_creds(**extra) -> dict:
    return {"LEPTON_WORKSPACE_ID": WS, "LEPTON_AUTH_TOKEN": LEP_TOKEN, **extra}


def brev_creds(**extra) -> dict:
    return {"BREV_API_TOKEN": BREV_TOKEN, "BREV_INSTANCE": "tao-a100", **extra}


def ref_of(submitted, creds: dict, launch_id: str = LAUNCH) -> JobRef:
    return JobRef(launch_id, submitted.job_id, dict(submitted.details), creds)


def all_call_text(fake) -> list[tuple[str, str, str]]:
    return [(c.method, c.path, json.dumps(c.body) + json.dumps(c.query) + json.dumps(c.headers)) for c in fake.calls]


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def exception_text(exc: BaseException) -> str:
    return f"{exc} {getattr(exc, 'message', '')} {getattr(exc, 'context', '')} {exc!r}"


def run_script(argv: list[str], env: dict, tmp_path) -> subprocess.CompletedProcess:
    """Run a container command locally with a stub `sleep` (so `exec sleep infinity` returns)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    stub = bindir / "sleep"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    full_env = {"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp_path), **env}
    return subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=30, cwd=tmp_path)


# =========================================================================== Lepton: launch


def test_lepton_launch_creates_job_with_image_shape_command_and_secret_refs(lep, tmp_path):
    backend = LeptonBackend(lep.url, timeout=5)
    submitted = backend.launch(make_spec("lepton", lep_creds()))

    job = lep.job(submitted.job_id)
    assert job is not None and job["status"]["state"] == "Starting"
    spec = job["spec"]
    assert job["metadata"]["name"] == f"tao-rtdetr-train-{LAUNCH}"
    assert spec["container"]["image"] == "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt"
    assert spec["resource_shape"] == "gpu.2xh100-sxm"
    assert spec["completions"] == spec["parallelism"] == 1
    assert spec["affinity"] == {"allowed_dedicated_node_groups": ["ng-h100"]}
    command = spec["container"]["command"]
    assert command[:2] == ["/bin/bash", "-c"]
    assert "base64 -d > /tmp/tao-spec.yaml" in command[2]
    assert "detectron2 train -e /tmp/tao-spec.yaml" in command[2]

    envs = {e["name"]: e for e in spec["envs"]}
    assert envs["HF_TOKEN"] == {"name": "HF_TOKEN", "value_from": {"secret_name_ref": f"tao-{LAUNCH}-hf-token"}}
    assert envs["NGC_KEY"] == {"name": "NGC_KEY", "value_from": {"secret_name_ref": f"tao-{LAUNCH}-ngc-key"}}
    results = f"/tmp/tao-results/{LAUNCH}"
    assert f"export TAO_STATUS_FILE={results}/status.json" in command[2]
    assert f"export TAO_API_JOB_ID={LAUNCH}" in command[2]
    rendered = base64.b64decode(envs["TAO_SPEC_B64"]["value"]).decode()
    assert rendered == render(
        {
            "dataset.train_data_sources[0].image_dir": "s3://bucket/coco/train",
            "train.num_gpus": 2,
            "train.results_dir": results,
        },
        "yaml",
    )
    assert yaml.safe_load(rendered)["train"]["results_dir"] == results

    # the secrets exist in the workspace, under the names the job refers to
    assert lep.secrets() == {f"tao-{LAUNCH}-hf-token": HF_SECRET, f"tao-{LAUNCH}-ngc-key": NGC_SECRET}
    # ...and the plain values appear nowhere else
    job_json = json.dumps(lep.jobs())
    assert HF_SECRET not in job_json and NGC_SECRET not in job_json
    carrying = [(m, p) for m, p, text in all_call_text(lep) if HF_SECRET in text or NGC_SECRET in text]
    assert carrying == [("POST", f"/api/v2/workspaces/{WS}/usersecrets")]
    assert all(c.header("Authorization") == "Bearer <redacted>" for c in lep.calls)
    assert all(c.header("Origin") == lep.url for c in lep.calls)

    assert submitted.results_location == results
    assert (
        submitted.log_location
        == f"https://dashboard.dgxc-lepton.nvidia.com/workspace/{WS}/compute/jobs/detail/{submitted.job_id}/replicas/list"
    )
    assert submitted.details["workspace_id"] == WS
    assert LEP_TOKEN not in json.dumps(dict(submitted.details)) + submitted.log_location
    assert backend.requests_made == len(lep.calls) == 3  # node groups, secrets, job

    # the command really writes the spec and runs the action with it
    out = run_script(
        ["/bin/bash", "-c", command[2].replace("detectron2 train -e", "cat")],
        {"TAO_SPEC_B64": envs["TAO_SPEC_B64"]["value"]},
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert rendered in out.stdout


def test_lepton_launch_uses_shape_node_group_mounts_and_nodes_from_settings():
    groups = [make_node_group("ng-1", name="h100-pool"), make_node_group("ng-2", name="a100-pool")]
    with FakeLeptonAPI(WS, LEP_TOKEN, node_groups=groups) as fake:
        creds = lep_creds(
            LEPTON_RESOURCE_SHAPE="gpu.8xh100-sxm",
            LEPTON_NODE_GROUP="a100-pool",
            LEPTON_MOUNTS="/shared/tao:/mnt/tao:node-nfs:my-nfs",
            LEPTON_IMAGE_PULL_SECRET="ngc-pull",
        )
        submitted = LeptonBackend(fake.url).launch(
            make_spec("lepton", creds, num_gpus=8, num_nodes=2, results_uri="s3://bucket/results/run1")
        )
        spec = fake.job(submitted.job_id)["spec"]
    assert spec["resource_shape"] == "gpu.8xh100-sxm"
    assert spec["affinity"] == {"allowed_dedicated_node_groups": ["ng-2"]}
    assert spec["completions"] == spec["parallelism"] == 2 and spec["intra_job_communication"] is True
    assert spec["mounts"] == [{"path": "/shared/tao", "mount_path": "/mnt/tao", "from": "node-nfs:my-nfs"}]
    assert spec["image_pull_secrets"] == ["ngc-pull"]
    assert submitted.results_location == "s3://bucket/results/run1"
    assert "LEPTON_JOB_WORKER_INDEX" in spec["container"]["command"][2]


def test_lepton_shape_follows_gpu_count():
    assert lepton_backend.resource_shape(1) == "gpu.h100-sxm"
    assert lepton_backend.resource_shape(4) == "gpu.4xh100-sxm"
    assert lepton_backend.resource_shape(0) == "cpu.small"


def test_lepton_several_node_groups_without_choice_is_refused_with_the_list():
    groups = [make_node_group("ng-1", name="h100-pool"), make_node_group("ng-2", name="a100-pool")]
    with FakeLeptonAPI(WS, LEP_TOKEN, node_groups=groups) as fake:
        with pytest.raises(LaunchFailed) as info:
            LeptonBackend(fake.url).launch(make_spec("lepton", lep_creds()))
        assert fake.jobs() == [] and fake.secrets() == {}
    assert "LEPTON_NODE_GROUP" in info.value.message
    assert "`h100-pool`" in info.value.message and "`a100-pool`" in info.value.message


def test_lepton_unknown_node_group_is_refused(lep):
    with pytest.raises(LaunchFailed) as info:
        LeptonBackend(lep.url).launch(make_spec("lepton", lep_creds(LEPTON_NODE_GROUP="nope")))
    assert "`nope`" in info.value.message and "`ng-h100`" in info.value.message


def test_lepton_args_actions_get_arguments_and_no_spec_env(lep):
    spec = make_spec("lepton", lep_creds(), config_format="args", command="tao-convert --config {config_path}")
    submitted = LeptonBackend(lep.url).launch(spec)
    job = lep.job(submitted.job_id)["spec"]
    assert "TAO_SPEC_B64" not in {e["name"] for e in job["envs"]}
    script = job["container"]["command"][2]
    assert f"--train.results_dir /tmp/tao-results/{LAUNCH}" in script
    assert "base64 -d" not in script


def test_lepton_api_refusal_of_the_job_is_launch_failed_with_its_message_and_cleans_secrets(lep):
    with pytest.raises(LaunchFailed) as info:
        LeptonBackend(lep.url).launch(make_spec("lepton", lep_creds(LEPTON_RESOURCE_SHAPE="gpu.nope")))
    assert "HTTP 400" in info.value.message and "unknown resource shape" in info.value.message
    assert lep.jobs() == [] and lep.secrets() == {}


def test_lepton_launch_replaces_secrets_left_by_an_earlier_attempt(lep):
    lep.add_secret(f"tao-{LAUNCH}-hf-token", "stale-value-0000")
    submitted = LeptonBackend(lep.url).launch(make_spec("lepton", lep_creds(), job_env={"HF_TOKEN": HF_SECRET}))
    assert lep.secrets() == {f"tao-{LAUNCH}-hf-token": HF_SECRET}
    assert lep.job(submitted.job_id) is not None
    assert [c.status for c in lep.calls_to("POST", "usersecrets")] == [409, 200]


def test_lepton_401_on_launch_names_the_credential_and_never_the_token(lep):
    with pytest.raises(LaunchFailed) as info:
        LeptonBackend(lep.url).launch(make_spec("lepton", lep_creds(LEPTON_AUTH_TOKEN="lep-wrong-token-000000")))
    text = exception_text(info.value)
    assert "LEPTON_AUTH_TOKEN" in text and "HTTP 401" in text
    assert "lep-wrong-token-000000" not in text and HF_SECRET not in text
    assert lep.jobs() == [] and lep.secrets() == {}


def test_lepton_missing_credentials_fail_without_calling(lep):
    with pytest.raises(LaunchFailed) as info:
        LeptonBackend(lep.url).launch(make_spec("lepton", {"LEPTON_WORKSPACE_ID": WS}))
    assert "LEPTON_AUTH_TOKEN" in info.value.message
    assert lep.calls == []


def test_lepton_unknown_workspace_names_the_workspace_id(lep):
    with pytest.raises(LaunchFailed) as info:
        LeptonBackend(lep.url).launch(make_spec("lepton", lep_creds(LEPTON_WORKSPACE_ID="no-such-ws")))
    assert "LEPTON_WORKSPACE_ID" in info.value.message


def test_lepton_outage_during_launch_is_unreachable(lep):
    lep.fail_next(503, times=1, path="/jobs", method="POST")
    with pytest.raises(BackendUnreachable) as info:
        LeptonBackend(lep.url).launch(make_spec("lepton", lep_creds()))
    assert "HTTP 503" in info.value.message and "may or may not exist" in info.value.message


# =========================================================================== Lepton: poll, logs, cancel


def launch_jobs(fake, n: int, backend=None, creds=None) -> tuple[LeptonBackend, list[JobRef]]:
    backend = backend or LeptonBackend(fake.url)
    creds = creds or lep_creds()
    refs = []
    for i in range(n):
        launch_id = f"a1b2c3d4-0000{i}"
        submitted = backend.launch(make_spec("lepton", creds, launch_id=launch_id))
        refs.append(ref_of(submitted, creds, launch_id))
    return backend, refs


def test_lepton_poll_of_several_jobs_is_one_request(lep):
    backend, refs = launch_jobs(lep, 3)
    lep.set_job_state(refs[0].job_id, "Running")
    lep.set_job_state(refs[1].job_id, "Queueing")
    lep.add_job("someone-elses-job", state="Running")
    lep.reset_calls()
    statuses = backend.poll(refs)
    assert len(lep.calls) == 1
    call = lep.calls[0]
    assert (call.method, call.path) == ("GET", f"/api/v2/workspaces/{WS}/jobs")
    assert call.query["job_query_mode"] == ["alive_and_archive"] and call.query["page"] == ["1"]
    assert [statuses[r.job_id].state for r in refs] == [JobState.RUNNING, JobState.PENDING, JobState.PENDING]
    assert statuses[refs[0].job_id].native == "Running"
    assert len({backend.connection_key(r) for r in refs}) == 1
    assert backend.connection_key(refs[0]) == f"{lep.url}|lepton|{WS}"


EXPECTED = {
    "Starting": JobState.PENDING,
    "Queueing": JobState.PENDING,
    "Awaiting": JobState.PENDING,
    "PendingRetry": JobState.PENDING,
    "Restarting": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Stopped": JobState.CANCELLED,
    "Stopping": JobState.CANCELLED,
    "Deleting": JobState.CANCELLED,
    "Deleted": JobState.CANCELLED,
    "Archived": JobState.UNKNOWN,  # archived with no history to judge by
}


def test_every_fake_job_state_has_an_expected_mapping():
    assert set(EXPECTED) == set(JOB_STATES)


@pytest.mark.parametrize("native", JOB_STATES)
def test_lepton_state_transitions_map(native, lep):
    backend, (ref,) = launch_jobs(lep, 1)
    lep.set_job_state(ref.job_id, native)
    status = backend.poll([ref])[ref.job_id]
    if native == "Archived":  # Starting -> Archived: judged by the history, still not finished
        assert status.state is JobState.PENDING and status.native == "Archived (Starting)"
    else:
        assert status.state is EXPECTED[native] and status.native == native
    if status.state is JobState.FAILED:
        assert status.reason == "1 replica failed"


def test_lepton_archived_job_is_judged_by_its_last_state(lep):
    backend, refs = launch_jobs(lep, 2)
    lep.set_job_state(refs[0].job_id, "Completed")
    lep.set_job_state(refs[0].job_id, "Archived")
    lep.set_job_state(refs[1].job_id, "Failed")
    lep.set_job_state(refs[1].job_id, "Archived")
    statuses = backend.poll(refs)
    assert statuses[refs[0].job_id].state is JobState.SUCCEEDED
    assert statuses[refs[1].job_id].state is JobState.FAILED


def test_lepton_missing_job_is_unknown(lep):
    backend, (ref,) = launch_jobs(lep, 1)
    gone = JobRef("x", "tao-gone-1234", {"workspace_id": WS}, lep_creds())
    statuses = backend.poll([ref, gone])
    assert statuses["tao-gone-1234"].state is JobState.UNKNOWN
    assert statuses[ref.job_id].state is JobState.PENDING


def test_lepton_cleanup_of_a_finished_job_deletes_its_secrets_and_a_refused_delete_raises_to_be_retried(lep):
    backend, (ref,) = launch_jobs(lep, 1)
    launch = ref.launch_id
    lep.set_job_state(ref.job_id, "Completed")
    assert backend.poll([ref])[ref.job_id].state is JobState.SUCCEEDED
    assert set(lep.secrets()) == {f"tao-{launch}-hf-token", f"tao-{launch}-ngc-key"}  # polling never deletes
    lep.fail_next(500, path=f"usersecrets/tao-{launch}-ngc-key")
    with pytest.raises(BackendUnreachable) as info:
        backend.cleanup(ref)
    assert info.value.message == f"Lepton secrets not deleted yet: tao-{launch}-ngc-key"
    assert set(lep.secrets()) == {f"tao-{launch}-ngc-key"}
    backend.cleanup(ref)  # the retry; the hf-token secret's 404 counts as deleted
    assert lep.secrets() == {}
    deletes = [(c.path.rsplit("/", 1)[-1], c.status) for c in lep.calls_to("DELETE", "usersecrets")]
    assert deletes == [
        (f"tao-{launch}-hf-token", 200),
        (f"tao-{launch}-ngc-key", 500),
        (f"tao-{launch}-hf-token", 404),
        (f"tao-{launch}-ngc-key", 200),
    ]


def test_lepton_cleanup_of_a_submit_that_never_answered_deletes_the_secrets_it_made(lep):
    backend = LeptonBackend(lep.url)
    lep.fail_next(503, path="jobs")
    with pytest.raises(BackendUnreachable):
        backend.launch(make_spec("lepton", lep_creds()))
    assert set(lep.secrets()) == {f"tao-{LAUNCH}-hf-token", f"tao-{LAUNCH}-ngc-key"}
    # the launch row has no details then: the names come from the launch id and the credentials it holds
    creds = lep_creds(HF_TOKEN=HF_SECRET, NGC_KEY=NGC_SECRET)
    backend.cleanup(JobRef(LAUNCH, "", {}, creds))
    assert lep.secrets() == {}


def test_lepton_503_on_poll_is_unreachable_not_a_failure(lep):
    backend, refs = launch_jobs(lep, 2)
    lep.reset_calls()
    lep.fail_next(503, times=1, path="/jobs")
    with pytest.raises(BackendUnreachable) as info:
        backend.poll(refs)
    assert "HTTP 503" in info.value.message and "not a job failure" in info.value.message
    assert len(lep.calls) == 1


def test_lepton_429_is_retried_once_after_retry_after_then_unreachable(lep):
    backend, refs = launch_jobs(lep, 1)
    lep.reset_calls()
    lep.fail_next(429, times=1, path="/jobs", retry_after="1")
    assert backend.poll(refs)[refs[0].job_id].state is JobState.PENDING
    assert [c.status for c in lep.calls] == [429, 200]
    lep.reset_calls()
    lep.fail_next(429, times=2, path="/jobs", retry_after="1")
    with pytest.raises(BackendUnreachable) as info:
        backend.poll(refs)
    assert "HTTP 429" in info.value.message
    assert [c.status for c in lep.calls] == [429, 429]


def test_lepton_expired_token_on_poll_is_unreachable_naming_the_credential(lep):
    backend, (ref,) = launch_jobs(lep, 1)
    lep.expired_tokens.add(LEP_TOKEN)
    with pytest.raises(BackendUnreachable) as info:
        backend.poll([ref])
    assert "LEPTON_AUTH_TOKEN" in info.value.message and LEP_TOKEN not in exception_text(info.value)


def test_lepton_connection_refused_is_unreachable():
    ref = JobRef("x", "tao-job-1", {"workspace_id": WS}, lep_creds())
    with pytest.raises(BackendUnreachable) as info:
        LeptonBackend(closed_port_url(), timeout=3).poll([ref])
    assert "refused" in info.value.message


def test_lepton_logs_and_poll_tails(lep):
    backend, refs = launch_jobs(lep, 2)
    lep.set_job_state(refs[0].job_id, "Running")
    lep.add_job_logs(refs[0].job_id, [f"epoch {i}" for i in range(30)])
    assert backend.logs(refs[0], lines=5) == [f"epoch {i}" for i in range(25, 30)]
    lep.reset_calls()
    statuses = backend.poll(refs, tails_for=[refs[0].job_id])
    assert statuses[refs[0].job_id].log_tail == tuple(f"epoch {i}" for i in range(10, 30))
    assert statuses[refs[1].job_id].log_tail == ()
    assert [(c.method, c.path.rsplit("/", 1)[-1]) for c in lep.calls] == [("GET", "jobs"), ("GET", "logs")]
    assert lep.calls[1].query["job"] == [refs[0].job_id]


def test_lepton_cancel_running_job_deletes_it_and_its_secrets(lep):
    backend, (ref,) = launch_jobs(lep, 1)
    lep.set_job_state(ref.job_id, "Running")
    backend.cancel(ref)
    assert lep.job(ref.job_id) is None
    assert lep.secrets() == {}
    assert backend.poll([ref])[ref.job_id].state is JobState.UNKNOWN


def test_lepton_cancel_of_unknown_or_finished_job_is_fine(lep):
    backend = LeptonBackend(lep.url)
    backend.cancel(JobRef("x", "tao-never-existed", {"workspace_id": WS, "secrets": "tao-x-hf-token"}, lep_creds()))
    _, (ref,) = launch_jobs(lep, 1, backend)
    lep.set_job_state(ref.job_id, "Completed")
    backend.cancel(ref)
    backend.cancel(ref)  # twice: already gone
    assert lep.jobs() == []


def test_lepton_token_and_secrets_never_appear_in_exceptions(lep):
    backend = LeptonBackend(lep.url)
    errors: list[BaseException] = []
    lep.fail_next(500, body={"code": "InternalError", "message": f"boom {LEP_TOKEN} {HF_SECRET}"})
    lep.fail_next(400, body={"message": f"bad secret value {HF_SECRET} for token {LEP_TOKEN}"}, path="usersecrets")
    for _ in range(2):
        with pytest.raises((LaunchFailed, BackendUnreachable)) as info:
            backend.launch(make_spec("lepton", lep_creds()))
        errors.append(info.value)
    lep.fail_next(503, body={"message": f"echo {LEP_TOKEN}"})
    with pytest.raises(BackendUnreachable) as info:
        backend.poll([JobRef("x", "j", {"workspace_id": WS}, lep_creds())])
    errors.append(info.value)
    for exc in errors:
        text = exception_text(exc)
        assert LEP_TOKEN not in text and HF_SECRET not in text
        assert "***" in text


# =========================================================================== Brev: launch


def brev_launch(fake, creds=None, **kw):
    backend = BrevBackend(fake.url, timeout=5)
    creds = creds or brev_creds()
    submitted = backend.launch(make_spec("brev", creds, **kw))
    return backend, submitted, ref_of(submitted, creds, kw.get("launch_id", LAUNCH))


def test_brev_launch_creates_a_container_instance_like_the_named_one(brv, tmp_path):
    backend, submitted, ref = brev_launch(brv)
    inst = brv.instance(submitted.job_id)
    assert inst["status"] == "DEPLOYING" and inst["organizationId"] == "org-tao0001"
    assert inst["name"] == f"tao-rtdetr-train-{LAUNCH}"  # the name the monitor tells people to look for
    # same GPU type and cloud as BREV_INSTANCE
    assert inst["instanceType"] == "a2-highgpu-1g:nvidia-tesla-a100:1" and inst["workspaceGroupId"] == "GCP"
    container = inst["customContainer"]
    assert container["containerUrl"] == "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt"
    entry = container["entryPoint"]
    hf_env = f"TAO_{LAUNCH.upper().replace('-', '_')}_HF_TOKEN"
    assert f'export HF_TOKEN="${{{hf_env}:-}}"' in entry
    assert "exec sleep infinity" in entry
    assert f"export TAO_API_JOB_ID={LAUNCH}" in entry and "/status.json" in entry.split("TAO_STATUS_FILE=", 1)[1]

    # the secret went through Brev's secret API, scoped to the token's user, as an env var
    assert [
        (s["name"], s["hierarchyType"], s["hierarchyId"], s["dest"], s["src"]["config"]["value"]) for s in brv.secrets
    ] == [
        (hf_env, "user", "usr-tao0001", {"type": "env", "config": {"name": hf_env}}, HF_SECRET),
        (
            hf_env.replace("HF_TOKEN", "NGC_KEY"),
            "user",
            "usr-tao0001",
            {"type": "env", "config": {"name": hf_env.replace("HF_TOKEN", "NGC_KEY")}},
            NGC_SECRET,
        ),
    ]
    listing = json.dumps(brv.list_instances())
    assert HF_SECRET not in listing and NGC_SECRET not in listing
    carrying = [(m, p) for m, p, text in all_call_text(brv) if HF_SECRET in text]
    assert carrying == [("POST", "/api/secrets")]
    assert sum(NGC_SECRET in text for _, _, text in all_call_text(brv)) == 1

    assert submitted.details["org_id"] == "org-tao0001"
    assert submitted.details["template_instance"] == "tao-a100"
    assert "brev shell" in submitted.log_location
    assert backend.connection_key(ref) == f"{brv.url}|brev|org-tao0001"
    assert BREV_TOKEN not in json.dumps(dict(submitted.details)) + submitted.log_location

    # the entry point really writes the spec, maps the secret by name and runs the action
    argv = shlex.split(entry.replace("detectron2 train -e", "cat"))
    out = run_script(argv, {hf_env: "value-from-brev"}, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "image_dir: s3://bucket/coco/train" in out.stdout
    assert "taobot: TAO command exited with 0" in out.stdout


def test_brev_instance_by_id_works(brv):
    _, submitted, _ = brev_launch(brv, brev_creds(BREV_INSTANCE="inst-a100"))
    assert brv.instance(submitted.job_id)["instanceType"] == "a2-highgpu-1g:nvidia-tesla-a100:1"


@pytest.mark.parametrize(
    "instance, needle",
    [
        (None, "BREV_INSTANCE is not set"),
        ("tao-missing", "no Brev instance `tao-missing`"),
        ("tao-h100", "is STOPPED, not RUNNING"),
    ],
)
def test_brev_launch_without_a_running_named_instance_lists_the_instances(brv, instance, needle):
    creds = {"BREV_API_TOKEN": BREV_TOKEN} if instance is None else brev_creds(BREV_INSTANCE=instance)
    before = brv.list_instances()
    with pytest.raises(LaunchFailed) as info:
        BrevBackend(brv.url).launch(make_spec("brev", creds))
    msg = info.value.message
    assert needle in msg
    assert "`tao-a100` (RUNNING, a2-highgpu-1g:nvidia-tesla-a100:1)" in msg
    assert "`tao-h100` (STOPPED, hyperstack_H100x2)" in msg
    assert brv.list_instances() == before and brv.secrets == []


@pytest.mark.parametrize("instance", [None, "tao-missing", "tao-h100", "tao-a100", "inst-a100"])
def test_brev_preflight_passes_exactly_when_the_launch_can_run(brv, instance):
    """The gate opens on a passed preflight, so preflight and launch must agree on every BREV_INSTANCE."""
    from taobot.config import PlatformSettings
    from taobot.preflight import PreflightRequest, run_preflight

    creds = {"BREV_API_TOKEN": BREV_TOKEN} if instance is None else brev_creds(BREV_INSTANCE=instance)
    request = PreflightRequest("brev", creds, settings=PlatformSettings(brev_api_url=brv.url, http_timeout_s=5))
    report = run_preflight(request, ("BREV_API_TOKEN", "BREV_INSTANCE"))
    try:
        BrevBackend(brv.url).launch(make_spec("brev", creds))
        launched = True
    except LaunchFailed:
        launched = False
    assert report.passed is launched, [r.detail for r in report.results if not r.ok]
    assert launched is (instance in ("tao-a100", "inst-a100"))


def test_brev_401_on_launch_names_the_credential_and_never_the_token(brv):
    with pytest.raises(LaunchFailed) as info:
        BrevBackend(brv.url).launch(make_spec("brev", brev_creds(BREV_API_TOKEN="bak-wrong-token-000000")))
    text = exception_text(info.value)
    assert "BREV_API_TOKEN" in text and "HTTP 401" in text
    assert "bak-wrong-token-000000" not in text and HF_SECRET not in text


def test_brev_refused_instance_creation_is_launch_failed_with_the_api_message(brv):
    brv.fail_next(
        409, path="/workspaces", method="POST", body={"errors": [{"message": "duplicate environment with name"}]}
    )
    with pytest.raises(LaunchFailed) as info:
        BrevBackend(brv.url).launch(make_spec("brev", brev_creds()))
    assert "HTTP 409" in info.value.message and "duplicate environment" in info.value.message


def test_brev_token_and_secrets_never_appear_in_exceptions(brv):
    brv.fail_next(
        500, path="/api/secrets", body={"errors": [{"message": f"cannot store {HF_SECRET} for {BREV_TOKEN}"}]}
    )
    with pytest.raises(BackendUnreachable) as info:
        BrevBackend(brv.url).launch(make_spec("brev", brev_creds()))
    text = exception_text(info.value)
    assert BREV_TOKEN not in text and HF_SECRET not in text and "***" in text


# =========================================================================== Brev: poll, cancel


def test_brev_poll_of_several_jobs_is_one_request(brv):
    backend, _, ref1 = brev_launch(brv, launch_id="a1b2c3d4-00001")
    _, _, ref2 = brev_launch(brv, launch_id="a1b2c3d4-00002")
    brv.set_instance_status(ref1.job_id, "RUNNING", health="HEALTHY")
    brv.reset_calls()
    statuses = backend.poll([ref1, ref2])
    assert [(c.method, c.path) for c in brv.calls] == [("GET", "/api/organizations/org-tao0001/workspaces")]
    assert statuses[ref1.job_id].state is JobState.RUNNING and statuses[ref1.job_id].native == "RUNNING (HEALTHY)"
    assert statuses[ref2.job_id].state is JobState.PENDING


@pytest.mark.parametrize(
    "native, expected",
    [
        ("DEPLOYING", JobState.PENDING),
        ("STARTING", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("STOPPING", JobState.PAUSED),
        ("STOPPED", JobState.PAUSED),
        ("DELETING", JobState.CANCELLED),
        ("FAILURE", JobState.FAILED),
    ],
)
def test_brev_status_transitions_map(brv, native, expected):
    backend, _, ref = brev_launch(brv)
    brv.set_instance_status(ref.job_id, native)
    assert backend.poll([ref])[ref.job_id].state is expected


def test_brev_missing_instance_is_unknown(brv):
    backend, _, ref = brev_launch(brv)
    brv.remove_instance(ref.job_id)
    assert backend.poll([ref])[ref.job_id].state is JobState.UNKNOWN


def test_brev_503_on_poll_is_unreachable(brv):
    backend, _, ref = brev_launch(brv)
    brv.reset_calls()
    brv.fail_next(503)
    with pytest.raises(BackendUnreachable) as info:
        backend.poll([ref])
    assert "HTTP 503" in info.value.message and len(brv.calls) == 1


def test_brev_429_twice_is_unreachable(brv):
    backend, _, ref = brev_launch(brv)
    brv.fail_next(429, times=2, retry_after="1")
    with pytest.raises(BackendUnreachable) as info:
        backend.poll([ref])
    assert "HTTP 429" in info.value.message


def test_brev_cancel_running_instance_deletes_it(brv):
    backend, _, ref = brev_launch(brv)
    brv.set_instance_status(ref.job_id, "RUNNING")
    backend.cancel(ref)
    assert brv.instance(ref.job_id)["status"] == "DELETING"
    assert backend.poll([ref])[ref.job_id].state is JobState.CANCELLED
    assert brv.instance("inst-a100")["status"] == "RUNNING"  # the named instance is never touched


def test_brev_cancel_of_unknown_instance_is_fine(brv):
    backend = BrevBackend(brv.url)
    backend.cancel(JobRef("x", "no-such-instance", {"org_id": "org-tao0001"}, brev_creds()))
    assert backend.logs(JobRef("x", "no-such-instance", {"org_id": "org-tao0001"}, brev_creds())) == []


def test_brev_cleanup_deletes_an_ended_instance_and_names_the_secrets_brev_keeps(brv, caplog):
    backend, submitted, ref = brev_launch(brv)
    brv.set_instance_status(ref.job_id, "FAILURE")
    assert backend.poll([ref])[ref.job_id].state is JobState.FAILED
    with caplog.at_level("WARNING", logger="taobot.backends.brev"):
        backend.cleanup(ref)
    assert brv.instance(ref.job_id)["status"] == "DELETING"  # the failed instance does not stay behind
    assert brv.instance("inst-a100")["status"] == "RUNNING"
    # Brev's API has no way to delete a secret (nor has the fake): the log names them, never their values
    names = submitted.details["secret_envs"].split(",")
    assert sorted(names) == sorted(s["name"] for s in brv.secrets) and len(names) == 2
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(n in logged for n in names) and "Brev console" in logged
    assert HF_SECRET not in logged and NGC_SECRET not in logged
    brv.remove_instance(ref.job_id)
    backend.cleanup(ref)  # again, with the instance gone: a 404 is fine
    assert [c.status for c in brv.calls_to("DELETE", ref.job_id)] == [200, 404]
