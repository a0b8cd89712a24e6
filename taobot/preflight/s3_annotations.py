"""The S3 annotation check: download an annotation object (bounded in size),
parse it as JSON and look for the fields the model reads in a sample of its
records.
"""

from __future__ import annotations

from taobot.preflight.base import (
    CheckResult,
    DatasetPath,
    check_annotation_document,
    split_s3,
)
from taobot.preflight.docker import human_size, parse_json_bytes
from taobot.preflight.s3_client import S3Context, call


def annotation_result(ctx: S3Context, p: DatasetPath, found: str | None, max_bytes: int) -> CheckResult:
    """`found` is what the path check saw at `p` ('object', 'prefix' or None); files over `max_bytes` are not read."""
    fields = tuple(p.annotation_fields)
    wanted = ", ".join(f"`{f}`" for f in fields)
    label = f"{p.label} fields"

    def result(ok: bool, detail: str, remediation: str = "") -> CheckResult:
        return CheckResult("s3.annotation", label, ok, detail, remediation, scope="dataset", key=p.label)

    if found is None:
        return result(
            False,
            f"not checked: `{p.path}` is not readable",
            f"Fix `{p.label}` (above) so preflight can read it and check for {wanted}.",
        )
    if found == "prefix":
        return result(
            False,
            f"`{p.path}` is a prefix (folder), but {wanted} must be checked in an annotation file",
            f"Point `{p.label}` at the annotation JSON object itself, e.g. `{p.path.rstrip('/')}/annotations.json`.",
        )
    bucket, key = split_s3(p.path)
    resp, err = call(ctx.client.get_object, Bucket=bucket, Key=key)
    if err:
        code = err[1]
        return result(
            False,
            f"`{p.path}` could not be downloaded ({code})",
            f"Check that this key pair can `s3:GetObject` `{p.path}`.",
        )
    body = resp["Body"]
    try:
        size = int(resp.get("ContentLength") or 0)
        if size > max_bytes:
            return result(
                False,
                f"`{p.path}` is {human_size(size)}, over the {human_size(max_bytes)} preflight reads",
                f"Split the annotations or point `{p.label}` at a smaller file whose records have {wanted}.",
            )
        raw = body.read(max_bytes + 1)
    except Exception as exc:  # a broken stream mid-download
        return result(
            False,
            f"`{p.path}` could not be downloaded ({type(exc).__name__})",
            "Run preflight again; if it repeats, check the store.",
        )
    finally:
        body.close()
    doc, why = parse_json_bytes(raw, f"`{p.path}`", max_bytes)
    if why:
        return result(
            False,
            why,
            f"Point `{p.label}` at a UTF-8 JSON file (a list of records, or a list under `annotations`/`data`/`samples`/`items`) "
            f"whose records have {wanted}.",
        )
    ok, detail = check_annotation_document(doc, fields, ctx.request.settings.annotation_sample)
    return result(
        ok,
        f"`{p.path}`: {detail}",
        ""
        if ok
        else f"Add {wanted} to every record of `{p.path}` (the model reads it), or point `{p.label}` at the annotation file that has it.",
    )
