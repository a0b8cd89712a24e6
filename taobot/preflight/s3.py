"""Preflight for s3:// URIs: the key pair works, every input is readable, the results location is writable.

Read checks are `head_object` / `list_objects_v2(MaxKeys=1)` / `get_object`
(annotation files only). The write check creates nothing: it starts a
multipart upload on a unique key under the results location and aborts it at
once (an aborted multipart upload never becomes an object). The results
bucket is checked first with `head_bucket`, because some S3-compatible stores
(SeaweedFS among them) create a missing bucket on the first write.

Error codes need care: HEAD responses have no body, so a refused HEAD only
says 403 or 404. Whenever the code matters (wrong key vs wrong secret vs no
permission, missing bucket vs missing key) a body-carrying GET/LIST request
is made to learn it.

This module holds `check` and the access, input path and results location
checks; the boto3 client and its error kinds are in
`taobot.preflight.s3_client`, the annotation file check in
`taobot.preflight.s3_annotations`.
"""

from __future__ import annotations

import uuid

from taobot.preflight.base import CheckResult, DatasetPath, PreflightRequest, split_s3
from taobot.preflight.s3_annotations import annotation_result
from taobot.preflight.s3_client import IDENTITY_KINDS, S3Context, call, make_client

ANNOTATION_MAX_BYTES = 200 * 1024 * 1024  # annotation files bigger than this are not downloaded; passed on each check
DIRECTORY_CONTENT_TYPE = "application/x-directory"  # how SeaweedFS/MinIO present a "folder" on HEAD


def check(request: PreflightRequest) -> list[CheckResult]:
    s3_paths = [p for p in request.paths if p.path.startswith("s3://")]
    results_uri = request.results_uri if (request.results_uri or "").startswith("s3://") else None
    if not s3_paths and not results_uri:
        return []

    uris = [p.path for p in s3_paths] + ([results_uri] if results_uri else [])
    missing = [n for n in ("ACCESS_KEY", "SECRET_KEY") if not request.cred(n)]
    if missing:
        shown = ", ".join(f"`{u}`" for u in uris[:3]) + (f" and {len(uris) - 3} more" if len(uris) > 3 else "")
        return [
            CheckResult(
                "s3.access",
                "S3 access",
                False,
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set, and they are required because "
                f"these locations are s3:// URIs: {shown}",
                "Press *Enter credentials* (or set them in the environment for the CLI) and give ACCESS_KEY and "
                "SECRET_KEY for a key pair that can read the inputs"
                + (" and write the results location" if results_uri else "")
                + "; also give S3_ENDPOINT_URL for a non-AWS store (MinIO, SeaweedFS, Ceph) and CLOUD_REGION if the bucket needs one.",
            )
        ]

    client, failure = make_client(request)
    if failure is not None:
        return [failure]
    ctx = S3Context(request, client)

    access = identity_result(ctx)
    if not access.ok:
        return [access]
    results = [access]
    for p in s3_paths:
        results.extend(path_results(ctx, p))
    if results_uri:
        results.append(results_location_result(ctx, results_uri))
    return results


# --------------------------------------------------------------------------- identity


def identity_failure(ctx: S3Context, kind: str, code: str) -> CheckResult:
    k = ctx.key_hint
    fixes = {
        "invalid_key": (
            f"{ctx.where} does not know the access key id ACCESS_KEY `{k}` ({code})",
            "Give the access key id that belongs to this store in ACCESS_KEY (press *Enter credentials*); "
            "for a non-AWS store also check S3_ENDPOINT_URL points at the store that issued the key.",
        ),
        "bad_secret": (
            f"{ctx.where} knows ACCESS_KEY `{k}` but SECRET_KEY does not match it ({code})",
            "Give the secret that was issued with this ACCESS_KEY in SECRET_KEY (press *Enter credentials*); "
            "paste it without spaces or quotes.",
        ),
        "expired": (
            f"{ctx.where} rejected the session credentials for ACCESS_KEY `{k}` as expired or invalid ({code})",
            "Issue a fresh key pair (or session token) and give it with *Enter credentials*.",
        ),
        "clock": (
            f"{ctx.where} rejected the request because the bot host's clock is off ({code})",
            "Sync the bot host's clock (`sudo timedatectl set-ntp true` or `chronyc makestep`) and run preflight again.",
        ),
        "region": (
            f"{ctx.where} says the request went to the wrong region ({code})",
            "Set CLOUD_REGION to the bucket's region (shown with the bucket in the storage console).",
        ),
        "unreachable": (
            f"cannot connect to {ctx.where} from the bot host ({code})",
            (
                f"Check that S3_ENDPOINT_URL `{ctx.endpoint}` is right (scheme, host and port) and that the store is up "
                f"and reachable from the bot host: `curl -sS -o /dev/null -w '%{{http_code}}\\n' {ctx.endpoint}/` must print a status."
                if ctx.endpoint
                else "Check the bot host's network access to AWS S3 (proxy, firewall, DNS) and CLOUD_REGION."
            ),
        ),
        "endpoint": (
            f"TLS with {ctx.where} failed ({code})",
            "Use the store's correct https URL in S3_ENDPOINT_URL, or make its certificate trusted on the bot host "
            "(AWS_CA_BUNDLE=/path/to/ca.pem for the bot).",
        ),
    }
    detail, remediation = fixes[kind]
    return CheckResult("s3.access", "S3 access", False, detail, remediation)


def identity_result(ctx: S3Context) -> CheckResult:
    """One ListBuckets call: a refused key, a wrong secret or a dead endpoint is reported here, once."""
    _, err = call(ctx.client.list_buckets)
    if err is None:
        return CheckResult("s3.access", "S3 access", True, f"ACCESS_KEY `{ctx.key_hint}` accepted by {ctx.where}")
    kind, code = err
    if kind == "denied":  # the identity is valid; it just may not list all buckets, which preflight does not need
        return CheckResult(
            "s3.access",
            "S3 access",
            True,
            f"ACCESS_KEY `{ctx.key_hint}` accepted by {ctx.where} (ListBuckets not permitted, which is fine)",
        )
    if kind in IDENTITY_KINDS:
        ctx.identity_reported = True
        return identity_failure(ctx, kind, code)
    return CheckResult(
        "s3.access",
        "S3 access",
        False,
        f"{ctx.where} answered ListBuckets with an unexpected error ({code})",
        "Check S3_ENDPOINT_URL and CLOUD_REGION, and that the store is an S3 API endpoint.",
    )


# --------------------------------------------------------------------------- inputs


def _not_checked_identity(check: str, label: str, key: str, uri: str) -> CheckResult:
    return CheckResult(
        check,
        label,
        False,
        f"`{uri}` not checked: S3 access failed (see S3 access)",
        "Fix S3 access (above), then run preflight again.",
        scope="dataset",
        key=key,
    )


def path_results(ctx: S3Context, p: DatasetPath) -> list[CheckResult]:
    out: list[CheckResult] = []
    found, path_result = object_or_prefix(ctx, p)
    if isinstance(path_result, tuple):  # an identity error met late: report it once, path as not checked
        if not ctx.identity_reported:
            ctx.identity_reported = True
            out.append(identity_failure(ctx, *path_result))
        path_result = _not_checked_identity("s3.path", p.label, p.label, p.path)
    out.append(path_result)
    if p.annotation_fields:
        out.append(annotation_result(ctx, p, found, ANNOTATION_MAX_BYTES))
    return out


def _fail(p: DatasetPath, detail: str, remediation: str) -> CheckResult:
    return CheckResult("s3.path", p.label, False, detail, remediation, scope="dataset", key=p.label)


def _read_failure(ctx: S3Context, p: DatasetPath, kind: str, code: str, what: str, bucket: str, key: str):
    """The per-path message for a failed read; identity kinds come back as (kind, code) for once-only reporting."""
    if kind in IDENTITY_KINDS:
        return (kind, code)
    uri = p.path
    ls = f"`aws s3 ls s3://{bucket}/{key}{ctx.cli_opts}`"
    if kind == "denied":
        need = "s3:ListBucket" if what == "prefix" else "s3:GetObject"
        return _fail(
            p,
            f"no permission to read `{uri}` with ACCESS_KEY `{ctx.key_hint}` ({code})",
            f"Grant this key pair {need} on `arn:aws:s3:::{bucket}"
            + ("`" if what == "prefix" else f"/{key}`")
            + f" (for a {what}), or give a key pair that can read it; {ls} must succeed with it.",
        )
    if kind == "no_bucket":
        return _fail(
            p,
            f"bucket `{bucket}` does not exist on {ctx.where} ({code})",
            f"Fix the bucket name in `{p.label}` (`aws s3 ls{ctx.cli_opts}` lists the buckets this key can see), "
            "or check S3_ENDPOINT_URL/CLOUD_REGION point at the store that holds it.",
        )
    if kind == "not_found":
        return _fail(
            p,
            f"nothing at `{uri}`: no object `{key}` and no objects under `{key.rstrip('/')}/` in bucket `{bucket}` ({code})"
            if what == "object"
            else f"nothing at `{uri}`: no objects under prefix `{key}` in bucket `{bucket}` ({code})",
            f"Upload the data (`aws s3 cp --recursive LOCAL_DIR s3://{bucket}/{key.rstrip('/')}/{ctx.cli_opts}`) "
            f"or fix the key in `{p.label}`; {ls} must list it.",
        )
    return _fail(
        p,
        f"reading `{uri}` failed on {ctx.where} ({code})",
        f"Check the URI in `{p.label}` and that {ls} works with this key pair.",
    )


def _list_prefix(ctx: S3Context, p: DatasetPath, bucket: str, prefix: str, via_missing_object: bool):
    resp, err = call(ctx.client.list_objects_v2, Bucket=bucket, Prefix=prefix, MaxKeys=1)
    what = "object" if via_missing_object else "prefix"
    if err:
        return None, _read_failure(ctx, p, *err, what, bucket, prefix if not via_missing_object else prefix.rstrip("/"))
    contents = resp.get("Contents") or []
    if not contents:
        code = "no object, empty listing" if via_missing_object else "empty listing"
        return None, _read_failure(
            ctx, p, "not_found", code, what, bucket, prefix if not via_missing_object else prefix.rstrip("/")
        )
    first = contents[0].get("Key", "")
    return "prefix", CheckResult(
        "s3.path",
        p.label,
        True,
        f"`s3://{bucket}/{prefix}` is readable: a prefix with objects (first: `{first}`)",
        scope="dataset",
        key=p.label,
    )


def object_or_prefix(ctx: S3Context, p: DatasetPath):
    """('object'|'prefix'|None, CheckResult or (identity kind, code))."""
    bucket, key = split_s3(p.path)
    if not bucket:
        return None, _fail(p, f"`{p.path}` names no bucket", f"Write `{p.label}` as `s3://BUCKET/KEY`.")
    if key == "" or key.endswith("/"):
        return _list_prefix(ctx, p, bucket, key, via_missing_object=False)

    head, err = call(ctx.client.head_object, Bucket=bucket, Key=key)
    if err is None:
        if head.get("ContentType") == DIRECTORY_CONTENT_TYPE:
            return _list_prefix(ctx, p, bucket, key + "/", via_missing_object=False)
        size = head.get("ContentLength", 0)
        return "object", CheckResult(
            "s3.path", p.label, True, f"`{p.path}` is a readable object ({size:,} bytes)", scope="dataset", key=p.label
        )
    kind, code = err
    if kind == "not_found":
        # a 404 HEAD is either a missing key (then try it as a folder) or a missing bucket: the listing tells which
        return _list_prefix(ctx, p, bucket, key + "/", via_missing_object=True)
    if kind == "denied" and code in ("403", "Forbidden"):
        # HEAD carries no error body: ask with a 1-byte GET to learn whether it is the key, the secret or permission
        _, err2 = call(ctx.client.get_object, Bucket=bucket, Key=key, Range="bytes=0-0")
        if err2 is None:
            return "object", CheckResult(
                "s3.path", p.label, True, f"`{p.path}` is a readable object", scope="dataset", key=p.label
            )
        kind, code = err2
        if kind == "not_found":
            return _list_prefix(ctx, p, bucket, key + "/", via_missing_object=True)
    return None, _read_failure(ctx, p, kind, code, "object", bucket, key)


# --------------------------------------------------------------------------- results location


def results_location_result(ctx: S3Context, uri: str) -> CheckResult:
    bucket, prefix = split_s3(uri)

    def result(ok: bool, detail: str, remediation: str = "") -> CheckResult:
        return CheckResult("s3.results", "Results location", ok, detail, remediation)

    if not bucket:
        return result(False, f"`{uri}` names no bucket", "Give the results location as `s3://BUCKET/PREFIX/`.")

    # 1. the bucket exists (before any write: some stores create a missing bucket on the first write)
    _, err = call(ctx.client.head_bucket, Bucket=bucket)
    if err:
        kind, code = err
        if kind in IDENTITY_KINDS:
            return result(
                False,
                f"cannot write results to `{uri}`: S3 access failed ({code}, see S3 access)",
                "Fix S3 access (above), then run preflight again.",
            )
        if kind in ("not_found", "no_bucket"):
            return result(
                False,
                f"cannot write results to `{uri}`: bucket `{bucket}` does not exist on {ctx.where} ({code})",
                f"Create it (`aws s3 mb s3://{bucket}{ctx.cli_opts}`) or give a results location in a bucket that exists.",
            )
        if kind != "denied":  # 403 on HEAD bucket: it exists, we just may not list it; the write test decides
            return result(
                False,
                f"cannot check bucket `{bucket}` for `{uri}` ({code})",
                "Check the results location and S3_ENDPOINT_URL.",
            )

    # 2. writable: start a multipart upload on a unique key and abort it at once (no object is ever created)
    base = prefix if (not prefix or prefix.endswith("/")) else prefix + "/"
    probe_key = f"{base}.taobot-preflight-{uuid.uuid4().hex}"
    resp, err = call(ctx.client.create_multipart_upload, Bucket=bucket, Key=probe_key)
    if err:
        kind, code = err
        if kind in IDENTITY_KINDS:
            return result(
                False,
                f"cannot write results to `{uri}`: S3 access failed ({code}, see S3 access)",
                "Fix S3 access (above), then run preflight again.",
            )
        if kind == "no_bucket":
            return result(
                False,
                f"cannot write results to `{uri}`: bucket `{bucket}` does not exist on {ctx.where} ({code})",
                f"Create it (`aws s3 mb s3://{bucket}{ctx.cli_opts}`) or give a results location in a bucket that exists.",
            )
        if kind == "denied":
            return result(
                False,
                f"cannot write results to `{uri}`: ACCESS_KEY `{ctx.key_hint}` may not write there ({code} on a test upload, "
                "which was not created)",
                f"Grant this key pair s3:PutObject and s3:AbortMultipartUpload on `arn:aws:s3:::{bucket}/{base}*`, "
                "or give a results location (or a key pair) that can be written.",
            )
        return result(
            False,
            f"cannot write results to `{uri}` ({code})",
            "Check the results location, S3_ENDPOINT_URL and the key pair's write permission.",
        )

    upload_id = resp["UploadId"]
    abort_err = None
    for _ in range(2):
        _, abort_err = call(ctx.client.abort_multipart_upload, Bucket=bucket, Key=probe_key, UploadId=upload_id)
        if abort_err is None:
            break
    if abort_err is not None:
        return result(
            False,
            f"`{uri}` is writable, but aborting the test upload failed ({abort_err[1]}): an incomplete upload of "
            f"`{probe_key}` may remain",
            f"Abort it: `aws s3api abort-multipart-upload --bucket {bucket} --key {probe_key} --upload-id {upload_id}{ctx.cli_opts}`, "
            "and grant s3:AbortMultipartUpload to this key pair.",
        )
    return result(
        True, f"`{uri}` is writable by ACCESS_KEY `{ctx.key_hint}` (test upload started and aborted; nothing created)"
    )
