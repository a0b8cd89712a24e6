"""taobot.preflight.s3 against the real SeaweedFS S3 server from tests/services/setup.sh s3.

Two identities: admin (read + write) and read-only. After every test the
bucket list, the object keys of the test bucket and its multipart uploads
are compared with what was there before: preflight must create nothing.
"""

from __future__ import annotations

import socket
import time

import pytest

from taobot.preflight import run_preflight, s3
from taobot.preflight.base import CheckResult, DatasetPath, PreflightRequest
from tests.lab import require

S3_NAMES = (
    "TAOBOT_TEST_S3_ENDPOINT",
    "TAOBOT_TEST_S3_ACCESS_KEY",
    "TAOBOT_TEST_S3_SECRET_KEY",
    "TAOBOT_TEST_S3_RO_ACCESS_KEY",
    "TAOBOT_TEST_S3_RO_SECRET_KEY",
    "TAOBOT_TEST_S3_BUCKET",
    "TAOBOT_TEST_S3_PREFIX",
    "TAOBOT_TEST_S3_ANNOTATIONS_KEY",
    "TAOBOT_TEST_S3_ANNOTATIONS_NOFPS_KEY",
    "TAOBOT_TEST_S3_MEDIA_KEY",
)
WRONG_SECRET = "not-the-secret-Zq81"
MISSING_BUCKET = "taobot-no-such-bucket"


def services_env(*required: str) -> dict[str, str]:
    return require(*required)


class Lab:
    def __init__(self, env: dict[str, str]) -> None:
        self.endpoint = env["TAOBOT_TEST_S3_ENDPOINT"]
        self.region = env.get("TAOBOT_TEST_S3_REGION") or "us-east-1"
        self.admin = (env["TAOBOT_TEST_S3_ACCESS_KEY"], env["TAOBOT_TEST_S3_SECRET_KEY"])
        self.ro = (env["TAOBOT_TEST_S3_RO_ACCESS_KEY"], env["TAOBOT_TEST_S3_RO_SECRET_KEY"])
        self.bucket = env["TAOBOT_TEST_S3_BUCKET"]
        self.prefix = env["TAOBOT_TEST_S3_PREFIX"]
        self.annotations = env["TAOBOT_TEST_S3_ANNOTATIONS_KEY"]
        self.annotations_nofps = env["TAOBOT_TEST_S3_ANNOTATIONS_NOFPS_KEY"]
        self.media = env["TAOBOT_TEST_S3_MEDIA_KEY"]
        self.secrets = (self.admin[1], self.ro[1], WRONG_SECRET)

    def uri(self, key: str = "", bucket: str | None = None) -> str:
        return f"s3://{bucket or self.bucket}/{key}"

    def raw_client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.admin[0], aws_secret_access_key=self.admin[1],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=10),
        )  # fmt: skip

    def state(self) -> dict:
        """Everything preflight must leave untouched: buckets, object keys in the test bucket, multipart uploads."""
        c = self.raw_client()
        keys = []
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        uploads = c.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return {
            "buckets": sorted(b["Name"] for b in c.list_buckets()["Buckets"]),
            "keys": sorted(keys),
            "uploads": [(u["Key"], u["UploadId"]) for u in uploads],
        }

    def request(
        self, identity=None, paths=(), results_uri=None, endpoint=None, platform="kubernetes"
    ) -> PreflightRequest:
        key, secret = identity if identity is not None else self.admin
        creds = {
            "ACCESS_KEY": key,
            "SECRET_KEY": secret,
            "S3_ENDPOINT_URL": endpoint or self.endpoint,
            "CLOUD_REGION": self.region,
        }
        return PreflightRequest(platform, creds, paths=tuple(paths), results_uri=results_uri)


@pytest.fixture(scope="module")
def lab() -> Lab:
    lab = Lab(services_env(*S3_NAMES))
    try:
        lab.raw_client().head_object(Bucket=lab.bucket, Key=lab.media)
    except Exception as exc:
        pytest.fail(
            f"S3 lab at {lab.endpoint} not ready ({type(exc).__name__}: {exc}): run `bash tests/services/setup.sh s3`"
        )
    return lab


@pytest.fixture(autouse=True)
def creates_nothing(lab):
    """Around every test: no bucket, object or multipart upload may appear."""
    before = lab.state()
    assert before["uploads"] == [], f"multipart uploads left before this test: {before['uploads']}"
    yield
    after = lab.state()
    assert after == before, f"preflight changed the store: before={before} after={after}"


def run(lab: Lab, req: PreflightRequest) -> list[CheckResult]:
    results = s3.check(req)
    for r in results:  # never a secret value, in any result of any test
        text = f"{r.label} {r.detail} {r.remediation}"
        for secret in lab.secrets:
            assert secret not in text, f"secret leaked in {r}"
    return results


def one(results: list[CheckResult], check: str, key: str | None = None) -> CheckResult:
    found = [r for r in results if r.check == check and (key is None or r.key == key)]
    assert len(found) == 1, f"expected one {check} result for {key}: {results}"
    return found[0]


def failed(r: CheckResult) -> CheckResult:
    assert not r.ok, r
    assert r.detail and r.remediation, r
    return r


# --------------------------------------------------------------------------- readable inputs


def test_readable_object_passes(lab):
    results = run(lab, lab.request(paths=[DatasetPath("media", lab.uri(lab.media))]))
    assert one(results, "s3.access").ok
    r = one(results, "s3.path", "media")
    assert r.ok and r.scope == "dataset" and r.label == "media"
    assert "readable object" in r.detail


def test_readable_prefix_passes(lab):
    r = one(run(lab, lab.request(paths=[DatasetPath("train", lab.uri(lab.prefix))])), "s3.path", "train")
    assert r.ok and "prefix with objects" in r.detail


def test_folder_given_without_trailing_slash_passes_as_prefix(lab):
    r = one(run(lab, lab.request(paths=[DatasetPath("train", lab.uri(lab.prefix.rstrip("/")))])), "s3.path", "train")
    assert r.ok and "prefix with objects" in r.detail


def test_missing_key_fails_as_missing_key(lab):
    key = lab.prefix + "no-such-file.json"
    r = failed(one(run(lab, lab.request(paths=[DatasetPath("ann", lab.uri(key))])), "s3.path", "ann"))
    assert r.scope == "dataset" and r.key == "ann"
    assert f"no object `{key}`" in r.detail and "bucket `" in r.detail and "does not exist" not in r.detail
    assert "aws s3 ls" in r.remediation and lab.endpoint in r.remediation


def test_missing_prefix_fails_as_empty_listing(lab):
    r = failed(one(run(lab, lab.request(paths=[DatasetPath("d", lab.uri("cosmos/nothing-here/"))])), "s3.path", "d"))
    assert "no objects under prefix `cosmos/nothing-here/`" in r.detail and "empty listing" in r.detail


def test_missing_bucket_fails_naming_the_bucket_and_is_not_created(lab):
    results = run(
        lab,
        lab.request(
            paths=[DatasetPath("a", lab.uri("x.json", MISSING_BUCKET)), DatasetPath("b", lab.uri("x/", MISSING_BUCKET))]
        ),
    )
    for key in ("a", "b"):
        r = failed(one(results, "s3.path", key))
        assert f"bucket `{MISSING_BUCKET}` does not exist" in r.detail and "NoSuchBucket" in r.detail
    assert MISSING_BUCKET not in lab.state()["buckets"]


# --------------------------------------------------------------------------- identity problems, once each


def test_wrong_access_key_is_reported_once(lab):
    req = lab.request(
        identity=("AKIDNOTKNOWNHERE", lab.admin[1]),
        paths=[DatasetPath("a", lab.uri(lab.media)), DatasetPath("b", lab.uri(lab.prefix))],
        results_uri=lab.uri("results/"),
    )
    results = run(lab, req)
    assert len(results) == 1, results
    r = failed(results[0])
    assert r.check == "s3.access" and r.scope == "platform"
    assert "does not know the access key id" in r.detail and "InvalidAccessKeyId" in r.detail
    assert "AKIDNOTKNOWNHERE" not in r.detail  # shown masked
    assert "ACCESS_KEY" in r.remediation


def test_wrong_secret_is_reported_once(lab):
    req = lab.request(
        identity=(lab.admin[0], WRONG_SECRET),
        paths=[DatasetPath("a", lab.uri(lab.media)), DatasetPath("b", lab.uri(lab.annotations), ("video_fps",))],
        results_uri=lab.uri("results/"),
    )
    results = run(lab, req)
    assert len(results) == 1, results
    r = failed(results[0])
    assert r.check == "s3.access" and "SECRET_KEY does not match" in r.detail and "SignatureDoesNotMatch" in r.detail
    assert "SECRET_KEY" in r.remediation


def test_unreachable_endpoint_is_reported_once(lab):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    results = run(
        lab,
        lab.request(
            paths=[DatasetPath("a", lab.uri(lab.media)), DatasetPath("b", lab.uri(lab.prefix))], endpoint=endpoint
        ),
    )
    assert time.monotonic() - t0 < 10
    assert len(results) == 1, results
    r = failed(results[0])
    assert r.check == "s3.access" and "cannot connect" in r.detail and endpoint in r.detail
    assert "S3_ENDPOINT_URL" in r.remediation


def test_missing_credentials_give_one_result_naming_both(lab):
    req = PreflightRequest(
        "kubernetes", {"S3_ENDPOINT_URL": lab.endpoint},
        paths=(DatasetPath("a", lab.uri(lab.media)), DatasetPath("local", "/data/x")), results_uri=lab.uri("results/"),
    )  # fmt: skip
    results = run(lab, req)
    assert len(results) == 1
    r = failed(results[0])
    assert r.check == "s3.access" and "ACCESS_KEY and SECRET_KEY" in r.detail and "s3://" in r.detail
    assert lab.uri(lab.media) in r.detail


def test_no_s3_uri_means_no_s3_results(lab):
    assert run(lab, PreflightRequest("kubernetes", {}, paths=(DatasetPath("local", "/data/x"),))) == []


# --------------------------------------------------------------------------- read-only vs admin


def test_read_only_identity_reads_inputs(lab):
    results = run(
        lab,
        lab.request(
            identity=lab.ro,
            paths=[
                DatasetPath("media", lab.uri(lab.media)),
                DatasetPath("train", lab.uri(lab.prefix)),
                DatasetPath("ann", lab.uri(lab.annotations), ("video_fps",)),
            ],
        ),  # fmt: skip
    )
    assert all(r.ok for r in results), results
    assert {r.key for r in results if r.scope == "dataset"} == {"media", "train", "ann"}


def test_read_only_identity_cannot_write_results(lab):
    uri = lab.uri("results/run-ro/")
    r = failed(one(run(lab, lab.request(identity=lab.ro, results_uri=uri)), "s3.results"))
    assert r.detail.startswith(f"cannot write results to `{uri}`") and "AccessDenied" in r.detail
    assert "s3:PutObject" in r.remediation and f"arn:aws:s3:::{lab.bucket}/results/run-ro/*" in r.remediation


def test_admin_can_write_results_without_creating_anything(lab):
    uri = lab.uri("results/run-admin")  # no trailing slash: the probe still goes under it
    r = one(run(lab, lab.request(results_uri=uri)), "s3.results")
    assert r.ok and "writable" in r.detail and "nothing created" in r.detail
    # creates_nothing (autouse) asserts: same keys, same buckets, no multipart upload left


def test_results_in_a_missing_bucket_fail_and_the_bucket_is_not_created(lab):
    # SeaweedFS creates a missing bucket on CreateMultipartUpload: the bucket must be checked first
    uri = lab.uri("results/", MISSING_BUCKET)
    for identity in (lab.admin, lab.ro):
        r = failed(one(run(lab, lab.request(identity=identity, results_uri=uri)), "s3.results"))
        assert (
            f"bucket `{MISSING_BUCKET}` does not exist" in r.detail
            and f"aws s3 mb s3://{MISSING_BUCKET}" in r.remediation
        )
    assert MISSING_BUCKET not in lab.state()["buckets"]


# --------------------------------------------------------------------------- annotation files on S3


def test_annotation_on_s3_with_the_field_passes_and_without_fails(lab):
    results = run(
        lab,
        lab.request(
            paths=[
                DatasetPath("with", lab.uri(lab.annotations), ("video_fps",)),
                DatasetPath("without", lab.uri(lab.annotations_nofps), ("video_fps",)),
            ]
        ),  # fmt: skip
    )
    ok = one(results, "s3.annotation", "with")
    assert ok.ok and ok.scope == "dataset" and "all have `video_fps`" in ok.detail
    bad = failed(one(results, "s3.annotation", "without"))
    assert bad.scope == "dataset" and bad.key == "without" and "`video_fps` missing in" in bad.detail
    assert one(results, "s3.path", "without").ok  # readable, just lacks the field


def test_annotation_on_a_prefix_or_missing_object_fails(lab):
    results = run(
        lab,
        lab.request(
            paths=[
                DatasetPath("dir", lab.uri(lab.prefix), ("video_fps",)),
                DatasetPath("gone", lab.uri(lab.prefix + "gone.json"), ("video_fps",)),
            ]
        ),  # fmt: skip
    )
    assert "is a prefix" in failed(one(results, "s3.annotation", "dir")).detail
    assert "not checked" in failed(one(results, "s3.annotation", "gone")).detail


def test_non_json_annotation_on_s3_fails(lab):
    r = failed(
        one(
            run(lab, lab.request(paths=[DatasetPath("ann", lab.uri(lab.media), ("video_fps",))])),
            "s3.annotation",
            "ann",
        )
    )
    assert "not UTF-8" in r.detail or "not valid JSON" in r.detail


def test_oversized_annotation_on_s3_is_not_downloaded(lab, monkeypatch):
    monkeypatch.setattr(s3, "ANNOTATION_MAX_BYTES", 100)
    r = failed(
        one(
            run(lab, lab.request(paths=[DatasetPath("ann", lab.uri(lab.annotations), ("video_fps",))])),
            "s3.annotation",
            "ann",
        )
    )
    assert "over the 100 bytes preflight reads" in r.detail


# --------------------------------------------------------------------------- through run_preflight, and the whole battery


def test_run_preflight_runs_s3_next_to_docker(lab):
    req = lab.request(
        paths=[DatasetPath("media", lab.uri(lab.media))], results_uri=lab.uri("results/"), platform="local-docker"
    )
    report = run_preflight(req)
    checks = [r.check for r in report.results]
    assert "docker.daemon" in checks and "s3.access" in checks and "s3.results" in checks
    assert next(r for r in report.results if r.check == "s3.path").ok
    for r in report.results:
        assert all(secret not in f"{r.detail} {r.remediation}" for secret in lab.secrets)


def test_every_scenario_together_creates_no_object_bucket_or_upload(lab):
    before = lab.state()
    paths = [
        DatasetPath("media", lab.uri(lab.media)),
        DatasetPath("train", lab.uri(lab.prefix)),
        DatasetPath("ann", lab.uri(lab.annotations), ("video_fps",)),
        DatasetPath("nofps", lab.uri(lab.annotations_nofps), ("video_fps",)),
        DatasetPath("gone", lab.uri("cosmos/none.json")),
        DatasetPath("nobucket", lab.uri("x/", MISSING_BUCKET)),
    ]
    seen = []
    for identity in (lab.admin, lab.ro, ("AKIDNOTKNOWNHERE", lab.admin[1]), (lab.admin[0], WRONG_SECRET)):
        for results_uri in (lab.uri("results/all/"), lab.uri("results/", MISSING_BUCKET)):
            seen.extend(run(lab, lab.request(identity=identity, paths=paths, results_uri=results_uri)))
    assert any(r.check == "s3.results" and r.ok for r in seen)  # the admin write probe really ran
    after = lab.state()
    assert after["keys"] == before["keys"], "an object was created"
    assert after["buckets"] == before["buckets"], "a bucket was created"
    assert after["uploads"] == [], "a multipart upload was left"


# --------------------------------------------------------------------------- answers the lab cannot give (stubbed)
# The lab has no identity that lacks read permission, and its identities never fail after ListBuckets passes;
# these two feed the exact responses SeaweedFS/AWS give (HEAD: bare 403, GET: coded body) through botocore's Stubber.


def _stubbed(monkeypatch, lab, script):
    from botocore.stub import Stubber

    client = lab.raw_client()
    stub = Stubber(client)
    for method, code, status in script:
        if code is None:
            stub.add_response(method, {"Buckets": []} if method == "list_buckets" else {})
        else:
            stub.add_client_error(method, service_error_code=code, http_status_code=status)
    stub.activate()
    monkeypatch.setattr(s3, "make_client", lambda request: (client, None))
    return stub


def test_no_read_permission_is_its_own_message_stubbed(lab, monkeypatch):
    stub = _stubbed(monkeypatch, lab, [
        ("list_buckets", "AccessDenied", 403),   # the identity may not list buckets: still a valid identity
        ("head_object", "403", 403),             # HEAD: no body, just 403
        ("get_object", "AccessDenied", 403),     # the 1-byte GET tells it is permission
        ("list_objects_v2", "AccessDenied", 403),
    ])  # fmt: skip
    results = run(
        lab, lab.request(paths=[DatasetPath("obj", lab.uri(lab.media)), DatasetPath("pre", lab.uri(lab.prefix))])
    )
    stub.assert_no_pending_responses()
    assert one(results, "s3.access").ok
    obj = failed(one(results, "s3.path", "obj"))
    assert "no permission to read" in obj.detail and "AccessDenied" in obj.detail
    assert f"s3:GetObject on `arn:aws:s3:::{lab.bucket}/{lab.media}`" in obj.remediation
    pre = failed(one(results, "s3.path", "pre"))
    assert "no permission to read" in pre.detail and f"s3:ListBucket on `arn:aws:s3:::{lab.bucket}`" in pre.remediation


def test_identity_error_met_on_paths_is_reported_once_stubbed(lab, monkeypatch):
    stub = _stubbed(monkeypatch, lab, [
        ("list_buckets", "AccessDenied", 403),
        ("head_object", "403", 403),
        ("get_object", "SignatureDoesNotMatch", 403),
        ("head_object", "403", 403),
        ("get_object", "SignatureDoesNotMatch", 403),
    ])  # fmt: skip
    results = run(
        lab, lab.request(paths=[DatasetPath("a", lab.uri(lab.media)), DatasetPath("b", lab.uri(lab.annotations))])
    )
    stub.assert_no_pending_responses()
    access = [r for r in results if r.check == "s3.access" and not r.ok]
    assert len(access) == 1 and "SECRET_KEY does not match" in access[0].detail
    for key in ("a", "b"):
        r = failed(one(results, "s3.path", key))
        assert "not checked: S3 access failed" in r.detail
