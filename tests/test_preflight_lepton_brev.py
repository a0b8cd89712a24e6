"""Lepton and Brev preflight against honest local fakes of their APIs.

Every test talks real HTTP to tests/fakes/{lepton,brev}_api.py. The preflight
must create nothing (GETs only), never raise, never show the token, and say
which failures are the person's credentials and which are retriable outages.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from taobot.config import PlatformSettings
from taobot.preflight import PreflightRequest, brev, lepton, run_preflight
from tests.fakes.brev_api import FakeBrevAPI
from tests.fakes.lepton_api import FakeLeptonAPI, make_node_group

WS = "tao-ws"
LEP_TOKEN = "lep-Synthetic-Tok3n-9f8e7d6c5b4a"
OTHER_TOKEN = "lep-Other-Workspace-T0ken-77aa"
BREV_TOKEN = "bak-Synthetic-T0ken-1a2b3c4d5e6f"


@pytest.fixture(autouse=True)
def quick_retry(monkeypatch):
    monkeypatch.setattr(lepton, "RETRY_PAUSE_S", 0.01)


@pytest.fixture
def lep():
    with FakeLeptonAPI(WS, LEP_TOKEN, extra_workspaces={"other-ws": OTHER_TOKEN}) as fake:
        yield fake


@pytest.fixture
def brv():
    instances = [
        {"name": "tao-a100", "status": "RUNNING", "instanceType": "a2-highgpu-1g"},
        {"name": "tao-l4", "status": "STOPPED", "instanceType": "g2-standard-4"},
    ]
    with FakeBrevAPI(BREV_TOKEN, instances=instances) as fake:
        yield fake


def lepton_request(
    url: str, ws: str | None = WS, token: str | None = LEP_TOKEN, timeout: float = 3.0
) -> PreflightRequest:
    creds = {k: v for k, v in (("LEPTON_WORKSPACE_ID", ws), ("LEPTON_AUTH_TOKEN", token)) if v is not None}
    return PreflightRequest("lepton", creds, settings=PlatformSettings(lepton_api_url=url, http_timeout_s=timeout))


def brev_request(
    url: str, token: str | None = BREV_TOKEN, timeout: float = 3.0, instance: str | None = "tao-a100"
) -> PreflightRequest:
    creds = {"BREV_API_TOKEN": token} if token is not None else {}
    if instance is not None:
        creds["BREV_INSTANCE"] = instance
    return PreflightRequest("brev", creds, settings=PlatformSettings(brev_api_url=url, http_timeout_s=timeout))


def by_id(results):
    return {r.check: r for r in results}


def text_of(results) -> str:
    return "\n".join(f"{r.label} {r.detail} {r.remediation}" for r in results)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def http(method: str, url: str, token: str | None = None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def assert_credential_failure(result):
    assert not result.ok
    assert "retriable" not in result.remediation.lower()
    assert "unreachable" not in result.detail


def assert_retriable(result, url: str):
    assert not result.ok
    assert url in result.detail
    assert "not a credential problem" in result.detail
    assert "retriable" in result.remediation.lower()
    assert "Enter credentials" not in result.remediation


# =========================================================================== Lepton


def test_lepton_pass_reports_workspace_and_node_groups_with_gets_only(lep):
    lep.add_job("earlier-train", state="Running")
    before = lep.jobs()

    results = lepton.check(lepton_request(lep.url))

    r = by_id(results)
    assert [x.check for x in results] == ["lepton.access", "lepton.node_groups"]
    assert all(x.ok and x.scope == "platform" for x in results)
    assert f"workspace `{WS}`" in r["lepton.access"].detail
    assert "1 job in the workspace" in r["lepton.access"].detail
    assert "`ng-h100` (2 ready nodes)" in r["lepton.node_groups"].detail
    # read-only: only GETs, exactly the two documented paths, nothing created
    assert [(c.method, c.path) for c in lep.calls] == [
        ("GET", f"/api/v2/workspaces/{WS}/workspace"),
        ("GET", f"/api/v2/workspaces/{WS}/dedicated-node-groups"),
    ]
    assert lep.jobs() == before
    call = lep.calls[0]
    assert call.header("Authorization") == "Bearer <redacted>"
    assert call.header("Origin") == lep.url
    assert all(c.status == 200 for c in lep.calls)


@pytest.mark.parametrize(
    "missing", [("LEPTON_WORKSPACE_ID",), ("LEPTON_AUTH_TOKEN",), ("LEPTON_WORKSPACE_ID", "LEPTON_AUTH_TOKEN")]
)
def test_lepton_missing_credentials_fail_without_calling(lep, missing):
    ws = None if "LEPTON_WORKSPACE_ID" in missing else WS
    token = None if "LEPTON_AUTH_TOKEN" in missing else LEP_TOKEN
    results = lepton.check(lepton_request(lep.url, ws=ws, token=token))
    assert len(results) == 1 and not results[0].ok
    for name in missing:
        assert name in results[0].detail and name in results[0].remediation
    assert lep.calls == []


def test_lepton_wrong_token_is_401_with_token_remediation(lep):
    results = lepton.check(lepton_request(lep.url, token="lep-not-a-real-token-0000"))
    assert len(results) == 1
    r = results[0]
    assert_credential_failure(r)
    assert "401" in r.detail and "invalid token" in r.detail
    assert f"workspace `{WS}` > Settings > Tokens" in r.remediation
    assert "LEPTON_AUTH_TOKEN" in r.remediation
    assert lep.calls[0].status == 401


def test_lepton_expired_token_is_a_credential_failure():
    with FakeLeptonAPI(WS, LEP_TOKEN, expired_tokens=["lep-expired-123456"]) as fake:
        r = lepton.check(lepton_request(fake.url, token="lep-expired-123456"))[0]
    assert_credential_failure(r)
    assert "401" in r.detail and "expired" in r.detail
    assert "Settings > Tokens" in r.remediation


def test_lepton_token_of_another_workspace_is_403_check_workspace_id(lep):
    r = lepton.check(lepton_request(lep.url, token=OTHER_TOKEN))[0]
    assert_credential_failure(r)
    assert "403" in r.detail and f"workspace `{WS}`" in r.detail
    assert "LEPTON_WORKSPACE_ID" in r.remediation and "Settings > General" in r.remediation
    assert "Settings > Tokens" in r.remediation


def test_lepton_unknown_workspace_is_404(lep):
    r = lepton.check(lepton_request(lep.url, ws="no-such-ws"))[0]
    assert_credential_failure(r)
    assert "404" in r.detail and "no workspace `no-such-ws`" in r.detail
    assert "LEPTON_WORKSPACE_ID" in r.remediation


def test_lepton_500_is_unreachable_and_retriable_not_credentials(lep):
    lep.fail_next(500)
    r = lepton.check(lepton_request(lep.url))
    assert len(r) == 1
    assert_retriable(r[0], lep.url)
    assert "HTTP 500" in r[0].detail
    assert len(lep.calls) == 1  # a 500 is not retried


def test_lepton_single_503_is_retried_once_and_passes(lep):
    lep.fail_next(503, times=1, path=f"{WS}/workspace")
    results = lepton.check(lepton_request(lep.url))
    assert all(r.ok for r in results)
    assert [c.status for c in lep.calls_to("GET", f"{WS}/workspace")] == [503, 200]
    assert [c.status for c in lep.calls_to("GET", "dedicated-node-groups")] == [200]


def test_lepton_persistent_503_fails_retriable_after_one_retry(lep):
    lep.fail_next(503, times=5)
    r = lepton.check(lepton_request(lep.url))
    assert len(r) == 1
    assert_retriable(r[0], lep.url)
    assert "HTTP 503" in r[0].detail
    assert len(lep.calls) == 2


def test_lepton_429_says_rate_limited_and_retriable(lep):
    lep.fail_next(429, retry_after="7")
    r = lepton.check(lepton_request(lep.url))[0]
    assert_retriable(r, lep.url)
    assert "rate limited" in r.detail and "7 s" in r.detail


def test_lepton_connection_refused_fails_fast():
    url = closed_port_url()
    start = time.monotonic()
    r = lepton.check(lepton_request(url, timeout=10))
    elapsed = time.monotonic() - start
    assert elapsed < 2.0
    assert len(r) == 1
    assert_retriable(r[0], url)
    assert "refused" in r[0].detail


def test_lepton_slow_api_times_out_as_retriable(lep):
    lep.delay = 1.5
    start = time.monotonic()
    r = lepton.check(lepton_request(lep.url, timeout=0.3))
    assert time.monotonic() - start < 1.2
    assert_retriable(r[0], lep.url)
    assert "within 0.3 s" in r[0].detail


def test_lepton_paused_workspace_fails_with_its_state():
    with FakeLeptonAPI(WS, LEP_TOKEN, workspace_state="paused") as fake:
        r = lepton.check(lepton_request(fake.url))
    assert len(r) == 1 and not r[0].ok
    assert "`paused`" in r[0].detail and "Resume" in r[0].remediation


def test_lepton_no_visible_node_group_fails_that_check_only():
    with FakeLeptonAPI(WS, LEP_TOKEN, node_groups=[]) as fake:
        r = by_id(lepton.check(lepton_request(fake.url)))
    assert r["lepton.access"].ok
    assert not r["lepton.node_groups"].ok
    assert "no node group" in r["lepton.node_groups"].detail


def test_lepton_lists_several_node_groups_with_ready_counts():
    groups = [make_node_group("ng-a", ready_nodes=4), make_node_group("ng-b", name="h100-pool", ready_nodes=1)]
    with FakeLeptonAPI(WS, LEP_TOKEN, node_groups=groups) as fake:
        r = by_id(lepton.check(lepton_request(fake.url)))["lepton.node_groups"]
    assert r.ok
    assert r.detail.startswith("2 node groups visible")
    assert "`ng-a` (4 ready nodes)" in r.detail and "`h100-pool` (1 ready node)" in r.detail


def test_lepton_answer_that_is_not_workspace_info_is_a_url_problem(lep):
    lep.fail_next(200, body=["this", "is", "not", "lepton"])
    r = lepton.check(lepton_request(lep.url))[0]
    assert not r.ok
    assert "not with Lepton workspace info" in r.detail
    assert "Lepton API URL" in r.remediation


def test_lepton_workspace_id_with_embedded_token_is_refused_without_showing_it(lep):
    r = lepton.check(lepton_request(lep.url, ws=f"{WS}:{LEP_TOKEN}"))
    assert len(r) == 1 and not r[0].ok
    assert f"`{WS}`" in r[0].remediation
    assert LEP_TOKEN not in text_of(r)
    assert lep.calls == []


def test_lepton_token_never_appears_in_any_result(lep):
    scenarios = []
    scenarios.append(lepton.check(lepton_request(lep.url)))
    scenarios.append(lepton.check(lepton_request(lep.url, token=OTHER_TOKEN)))
    scenarios.append(lepton.check(lepton_request(lep.url, ws="nope")))
    # a server that echoes the token back in its error body
    lep.fail_next(500, body={"code": "InternalError", "message": f"boom while checking {LEP_TOKEN}"})
    scenarios.append(lepton.check(lepton_request(lep.url)))
    lep.fail_next(401, body={"message": f"token {LEP_TOKEN} rejected"})
    scenarios.append(lepton.check(lepton_request(lep.url)))
    for results in scenarios:
        text = text_of(results)
        assert LEP_TOKEN not in text and OTHER_TOKEN not in text
        assert json.dumps([r.to_dict() for r in results]).count(LEP_TOKEN) == 0
    assert "***" in text_of(scenarios[3])  # the echoed token was scrubbed, the message kept


def test_lepton_through_run_preflight(lep):
    report = run_preflight(lepton_request(lep.url), ("LEPTON_WORKSPACE_ID", "LEPTON_AUTH_TOKEN"))
    checks = [r.check for r in report.results]
    assert checks == ["credentials", "lepton.access", "lepton.node_groups"]
    assert report.passed
    assert {c.method for c in lep.calls} == {"GET"}


def test_lepton_redirect_is_not_followed(lep):
    lep.fail_next(302, body={"location": "elsewhere"})
    r = lepton.check(lepton_request(lep.url))[0]
    assert not r.ok and "redirect" in r.detail
    assert len(lep.calls) == 1


# =========================================================================== Brev


def test_brev_pass_reports_user_and_instances_with_gets_only(brv):
    before = brv.list_instances()
    results = brev.check(brev_request(brv.url))
    r = by_id(results)
    assert [x.check for x in results] == ["brev.access", "brev.instances", "brev.instance"]
    assert all(x.ok and x.scope == "platform" for x in results)
    assert "user `tao-dev`" in r["brev.access"].detail
    assert (
        "organization `tao-team`: 2 instances (1 RUNNING, 1 STOPPED): `tao-a100`, `tao-l4`"
        == r["brev.instances"].detail
    )
    assert r["brev.instance"].detail == "`tao-a100` is RUNNING (a2-highgpu-1g); the job runs on the same type"
    assert [(c.method, c.path) for c in brv.calls] == [
        ("GET", "/api/me"),
        ("GET", "/api/organizations"),
        ("GET", "/api/organizations/org-tao0001/workspaces"),
    ]
    assert brv.calls[0].header("Authorization") == "Bearer <redacted>"
    assert brv.list_instances() == before


def test_brev_missing_token_fails_without_calling(brv):
    r = brev.check(brev_request(brv.url, token=None))
    assert len(r) == 1 and not r[0].ok
    assert "BREV_API_TOKEN" in r[0].detail and "BREV_API_TOKEN" in r[0].remediation
    assert brv.calls == []


def test_brev_wrong_token_is_401_with_remediation(brv):
    r = brev.check(brev_request(brv.url, token="bak-wrong-000000"))
    assert len(r) == 1
    assert_credential_failure(r[0])
    assert "401" in r[0].detail and "UnauthorizedError" in r[0].detail
    assert "bak-" in r[0].remediation and "BREV_API_TOKEN" in r[0].remediation


def test_brev_expired_token_is_403_credential_failure():
    with FakeBrevAPI(BREV_TOKEN, expired_tokens=["login-token-expired-1"]) as fake:
        r = brev.check(brev_request(fake.url, token="login-token-expired-1"))
    assert len(r) == 1
    assert_credential_failure(r[0])
    assert "403" in r[0].detail and "forbidden" in r[0].detail
    assert "BREV_API_TOKEN" in r[0].remediation


@pytest.mark.parametrize("status", [500, 502])
def test_brev_5xx_is_unreachable_and_retriable(brv, status):
    brv.fail_next(status, times=3)
    r = brev.check(brev_request(brv.url))
    assert len(r) == 1
    assert_retriable(r[0], brv.url)
    assert f"HTTP {status}" in r[0].detail


def test_brev_outage_after_login_fails_instances_as_retriable(brv):
    brv.fail_next(503, times=2, path="/api/organizations")
    r = by_id(brev.check(brev_request(brv.url)))
    assert r["brev.access"].ok
    assert_retriable(r["brev.instances"], brv.url)


def test_brev_connection_refused_fails_fast():
    url = closed_port_url()
    start = time.monotonic()
    r = brev.check(brev_request(url, timeout=10))
    assert time.monotonic() - start < 2.0
    assert_retriable(r[0], url)
    assert "refused" in r[0].detail


def test_brev_user_without_organization_fails_instances():
    with FakeBrevAPI(BREV_TOKEN, organizations=[]) as fake:
        r = by_id(brev.check(brev_request(fake.url)))
    assert r["brev.access"].ok
    assert not r["brev.instances"].ok and "no Brev organization" in r["brev.instances"].detail


def test_brev_url_that_is_not_brev_says_so(lep):
    r = brev.check(brev_request(lep.url))
    assert len(r) == 1 and not r[0].ok
    assert "not the Brev API" in r[0].detail and "Brev API URL" in r[0].remediation


def test_brev_token_never_appears_in_any_result(brv):
    outs = [
        brev.check(brev_request(brv.url)),
        brev.check(brev_request(brv.url, token="bak-wrong-000000")),
    ]
    brv.fail_next(500, body={"errors": [{"message": f"bad token {BREV_TOKEN}"}]})
    outs.append(brev.check(brev_request(brv.url)))
    for results in outs:
        assert BREV_TOKEN not in text_of(results)
        assert "bak-wrong-000000" not in text_of(results)


def test_brev_through_run_preflight(brv):
    report = run_preflight(brev_request(brv.url), ("BREV_API_TOKEN",))
    assert [r.check for r in report.results] == ["credentials", "brev.access", "brev.instances", "brev.instance"]
    assert report.passed
    assert {c.method for c in brv.calls} == {"GET"}


@pytest.mark.parametrize(
    "instance, detail, fix",
    [
        (None, "BREV_INSTANCE is not set", "give BREV_INSTANCE"),
        ("tao-missing", "no Brev instance `tao-missing`", "set BREV_INSTANCE to one of"),
        ("tao-l4", "`tao-l4` is STOPPED, not RUNNING", "brev start tao-l4"),
    ],
)
def test_brev_instance_that_a_launch_could_not_copy_fails_the_platform_check(brv, instance, detail, fix):
    r = by_id(brev.check(brev_request(brv.url, instance=instance)))
    assert r["brev.access"].ok and r["brev.instances"].ok
    named = r["brev.instance"]
    assert not named.ok and named.scope == "platform"
    assert detail in named.detail and fix in named.remediation
    if instance != "tao-l4":
        assert "`tao-a100` (RUNNING)" in named.remediation and "`tao-l4` (STOPPED)" in named.remediation
    assert {c.method for c in brv.calls} == {"GET"}


# =========================================================================== the fakes themselves


def test_fake_lepton_job_lifecycle_follows_the_sdk_paths(lep):
    base = f"{lep.url}/api/v2/workspaces/{WS}"
    spec = {
        "metadata": {"name": "tao-train-1"},
        "spec": {
            "container": {"image": "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt", "command": ["/bin/bash", "-c", "true"]},
            "resource_shape": "gpu.h100-sxm",
            "affinity": {"allowed_dedicated_node_groups": ["ng-h100"]},
        },
    }
    status, job = http("POST", f"{base}/jobs", LEP_TOKEN, spec)
    assert status == 201
    job_id = job["metadata"]["id"]
    assert job_id.startswith("tao-train-1-") and job["status"]["state"] == "Starting"
    assert http("POST", f"{base}/jobs", LEP_TOKEN, spec)[0] == 409
    lep.set_job_state(job_id, "Running")
    status, got = http("GET", f"{base}/jobs/{job_id}", LEP_TOKEN)
    assert status == 200 and got["status"]["state"] == "Running" and got["status"]["active"] == 1
    status, listed = http("GET", f"{base}/jobs?job_query_mode=alive_only&page=1&page_size=500", LEP_TOKEN)
    assert [j["metadata"]["id"] for j in listed["jobs"]] == [job_id]
    assert http("GET", f"{base}/jobs?page=2&page_size=500", LEP_TOKEN)[1] == {"jobs": []}
    assert http("GET", f"{base}/jobs?status=Failed", LEP_TOKEN)[1] == {"jobs": []}
    assert http("DELETE", f"{base}/jobs/{job_id}", LEP_TOKEN)[0] == 200
    status, err = http("GET", f"{base}/jobs/{job_id}", LEP_TOKEN)
    assert status == 404 and set(err) == {"code", "message"}
    # the token of another workspace cannot touch this one's jobs
    assert http("GET", f"{base}/jobs", OTHER_TOKEN)[0] == 403
    assert http("GET", f"{base}/jobs", None)[0] == 401


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"metadata": {"name": "Bad_Name"}}, "invalid job name"),
        ({"spec": {"resource_shape": "gpu.nope"}}, "unknown resource shape"),
        ({"spec": {"affinity": {"allowed_dedicated_node_groups": ["ng-missing"]}}}, "not available"),
        ({"spec": {"affinity": None}}, "must name a node group"),
        ({"spec": {"container": {}}}, "image is required"),
    ],
)
def test_fake_lepton_rejects_invalid_jobs_with_400(lep, patch, message):
    body = {
        "metadata": {"name": "tao-ok"},
        "spec": {
            "container": {"image": "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt"},
            "resource_shape": "gpu.h100-sxm",
            "affinity": {"allowed_dedicated_node_groups": ["ng-h100"]},
        },
    }
    for key, value in patch.items():
        body[key] = {**body[key], **value}
    status, err = http("POST", f"{lep.url}/api/v2/workspaces/{WS}/jobs", LEP_TOKEN, body)
    assert status == 400 and message in err["message"]
    assert lep.jobs() == []


def test_fake_brev_instance_lifecycle(brv):
    org = brv.org_ids[0]
    status, inst = http(
        "POST",
        f"{brv.url}/api/organizations/{org}/workspaces",
        BREV_TOKEN,
        {"name": "tao-h100", "instanceType": "hyperstack_H100"},
    )
    assert status == 200 and inst["status"] == "DEPLOYING" and inst["organizationId"] == org
    brv.set_instance_status(inst["id"], "RUNNING", health="HEALTHY")
    status, got = http("GET", f"{brv.url}/api/workspaces/{inst['id']}", BREV_TOKEN)
    assert status == 200 and got["status"] == "RUNNING" and got["instanceType"] == "hyperstack_H100"
    status, listed = http("GET", f"{brv.url}/api/organizations/{org}/workspaces?utm_source=cli", BREV_TOKEN)
    assert sorted(i["name"] for i in listed) == ["tao-a100", "tao-h100", "tao-l4"]
    assert http("DELETE", f"{brv.url}/api/workspaces/{inst['id']}", BREV_TOKEN)[1]["status"] == "DELETING"
    assert http("GET", f"{brv.url}/api/workspaces/nope", BREV_TOKEN)[0] == 404
    assert http("GET", f"{brv.url}/api/me", "bak-wrong")[1] == {"errors": [{"type": "UnauthorizedError"}]}
    # another user's token cannot see this organization
    brv.add_user("bak-stranger-token", {"username": "stranger"}, [{"id": "org-other", "name": "other"}])
    assert http("GET", f"{brv.url}/api/organizations/{org}/workspaces", "bak-stranger-token")[0] == 403
    assert [o["id"] for o in http("GET", f"{brv.url}/api/organizations", "bak-stranger-token")[1]] == ["org-other"]
