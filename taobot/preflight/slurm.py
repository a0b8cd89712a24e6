"""SLURM preflight, from the login node's point of view, in one SSH session.

Order: variables present; the SSH identity held to where it was given and
a key file private (taobot.preflight.slurm_login); runtime limits sane; each
login host resolved and tried until one accepts key-only login with a
known host key; then ONE remote shell script checks every dataset path
with `test -e`, reads each partition's time limit with `sinfo` and its
node sizes with one more `sinfo` (taobot.preflight.slurm_limits), and samples
annotation files for the model's required fields. Paths reach the shell
only through shlex quoting and the Python part only as base64 data, so a
path like `/data/x; touch /tmp/pwned` is tested literally.
"""

from __future__ import annotations

import base64
import json

from taobot.identities import TAOBOT_KEY, log_in
from taobot.preflight.base import (
    RECORD_KEYS,
    CheckResult,
    PreflightRequest,
    check_annotation_document,
    local_path,
    quote,
)
from taobot.preflight.slurm_limits import LIMITS_COMMAND, job_size_result, parse_limits
from taobot.preflight.slurm_login import (  # noqa: F401 - the setup texts live there; tests and callers import them here
    KEY,
    identity_checks,
    login_result,
    remediation_for,
    setup_steps,
)

REQUIRED = ("SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION")
MAX_ANNOTATION_BYTES = 512 * 1024 * 1024

# Runs on the login node with python3: prints, per annotation file, the keys of
# the first N records (not their values), so the bot judges them with the same
# code it uses everywhere else.
_REMOTE_ANNOTATION_PROGRAM = r"""
import base64, json, os, sys
spec = json.loads(base64.b64decode(sys.argv[2]))
for idx, path in spec["files"]:
    out = {"idx": idx}
    try:
        if os.path.getsize(path) > spec["max_bytes"]:
            out["error"] = "larger than %d MB; not sampled" % (spec["max_bytes"] // 1048576)
        else:
            with open(path, "rb") as fh:
                doc = json.load(fh)
            records = doc if isinstance(doc, list) else None
            if isinstance(doc, dict):
                for key in spec["record_keys"]:
                    if isinstance(doc.get(key), list):
                        records = doc[key]
                        out["under"] = key
                        break
            if records is None:
                out["records"] = None
            else:
                out["records"] = [sorted(r) if isinstance(r, dict) else None for r in records[: spec["sample"]]]
                out["total"] = len(records)
    except ValueError as exc:
        out["error"] = "not valid JSON (%s)" % str(exc)[:120]
    except OSError as exc:
        out["error"] = "cannot read (%s)" % exc.strerror
    print("ANN\t" + json.dumps(out))
"""


def parse_slurm_time(value: str) -> float | None:
    """SLURM time limit text -> hours; None for infinite/unknown."""
    value = value.strip()
    if not value or value.upper() in ("INFINITE", "UNLIMITED", "NONE", "N/A"):
        return None
    days = 0
    if "-" in value:
        d, value = value.split("-", 1)
        days = int(d)
    parts = [int(p) for p in value.split(":")]
    if len(parts) == 3:
        h, m, s = parts
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = 0, parts[0], 0
    return days * 24 + h + m / 60 + s / 3600


def _hours(request: PreflightRequest, name: str, default: float | None) -> tuple[float | None, str | None]:
    raw = request.cred(name)
    if raw is None:
        return default, None
    try:
        return float(raw), None
    except ValueError:
        return None, f"{name} must be a number of hours; got `{raw}`"


def limits_check(request: PreflightRequest) -> CheckResult:
    res = request.resources
    wall, err1 = _hours(request, "SLURM_TIME_HOURS", res.time_hours or 4.0)
    inner, err2 = _hours(request, "SLURM_TIMEOUT_HOURS", res.timeout_hours or 3.8)
    if err1 or err2:
        return CheckResult(
            "slurm.limits",
            "Runtime limits",
            False,
            err1 or err2 or "",
            "Give the hours as a number, e.g. 4 or 3.8.",
            scope="limits",
        )
    assert wall is not None and inner is not None
    if res.max_time_hours and wall > res.max_time_hours:
        return CheckResult(
            "slurm.limits",
            "Runtime limits",
            False,
            f"requested wall time {wall:g} h is above the platform maximum {res.max_time_hours:g} h",
            f"Set SLURM_TIME_HOURS to at most {res.max_time_hours:g}.",
            scope="limits",
        )
    if inner >= wall:
        return CheckResult(
            "slurm.limits",
            "Runtime limits",
            False,
            f"internal timeout {inner:g} h is not below the wall time {wall:g} h; the job would be killed before it saves",
            f"Set SLURM_TIMEOUT_HOURS below {wall:g} (e.g. {wall * 0.95:.2g}).",
            scope="limits",
        )
    return CheckResult(
        "slurm.limits", "Runtime limits", True, f"wall time {wall:g} h, internal timeout {inner:g} h", scope="limits"
    )


def remote_script(
    paths: list[tuple[int, str]], partitions: list[str], annotations: list[tuple[int, str]], sample: int
) -> str:
    """The one shell script the login node runs. Every value is quoted or base64."""
    lines = [
        'p() { if test -e "$2"; then printf \'PATH\\t%s\\t1\\n\' "$1"; else printf \'PATH\\t%s\\t0\\n\' "$1"; fi; }',
    ]
    lines += [f"p {idx} {quote(path)}" for idx, path in paths]
    lines.append(LIMITS_COMMAND)
    for part in partitions:
        lines.append(
            f"printf 'PART\\t%s\\t%s\\n' {quote(part)} \"$(sinfo -h -p {quote(part)} -o %l 2>/dev/null | head -n 1)\""
        )
    if annotations:
        spec = {
            "files": annotations,
            "sample": sample,
            "record_keys": list(RECORD_KEYS),
            "max_bytes": MAX_ANNOTATION_BYTES,
        }
        program = base64.b64encode(_REMOTE_ANNOTATION_PROGRAM.encode()).decode()
        data = base64.b64encode(json.dumps(spec).encode()).decode()
        lines.append("if command -v python3 >/dev/null 2>&1; then")
        lines.append(f"  python3 -c 'import base64,sys;exec(base64.b64decode(sys.argv[1]))' {program} {data}")
        lines.append("else printf 'NOPY\\n'; fi")
    return "\n".join(lines) + "\n"


def run_remote(client, script: str, timeout: float) -> str:
    stdin, stdout, _stderr = client.exec_command("/bin/sh -s", timeout=timeout)
    stdin.write(script)
    stdin.channel.shutdown_write()
    return stdout.read().decode("utf-8", "replace")


def static_checks(request: PreflightRequest) -> tuple[list[CheckResult], bool]:
    """Checks that need no network: variables, the SSH identity, runtime limits. Returns (results, can_continue)."""
    results, _plan, can_continue = _static_checks(request)
    return results, can_continue


def _static_checks(request: PreflightRequest):
    results: list[CheckResult] = []
    missing = [n for n in REQUIRED if not request.cred(n)]
    if not any(request.cred(n) for n in (TAOBOT_KEY, "SSH_KEY_PATH", "SSH_AUTH_SOCK")):
        missing.append("SSH_KEY_PATH" if request.settings.on_persons_machine else TAOBOT_KEY)
    if missing:
        results.append(
            CheckResult(
                "slurm.variables",
                "SLURM settings",
                False,
                "missing: " + ", ".join(missing),
                "Press *Enter credentials* and give " + ", ".join(missing) + ".",
                scope="platform",
            )
        )
        return results, None, False
    user, hosts, partition = request.cred("SLURM_USER"), request.cred("SLURM_HOSTNAME"), request.cred("SLURM_PARTITION")
    results.append(
        CheckResult(
            "slurm.variables",
            "SLURM settings",
            True,
            f"user {user}, hosts {hosts}, partition {partition}",
            scope="platform",
        )
    )
    identity, plan = identity_checks(request)
    results += identity
    if plan is None:
        return results, None, False
    results.append(limits_check(request))
    return results, plan, True


def check(request: PreflightRequest) -> list[CheckResult]:
    results, plan, can_continue = _static_checks(request)
    if not can_continue:
        return results
    login = log_in(plan, request.cred("SLURM_HOSTNAME") or "", request.cred("SLURM_USER") or "", request.settings)
    results.append(login_result(login, request))
    if not login.ok:
        return results
    try:
        results += _remote_checks(login.client, request)
    finally:
        login.client.close()
    return results


def _remote_checks(client, request: PreflightRequest) -> list[CheckResult]:
    results: list[CheckResult] = []
    paths: list[tuple[int, str]] = []
    annotations: list[tuple[int, str]] = []
    for idx, item in enumerate(request.paths):
        local = local_path(item.path)
        if local is None:
            continue  # s3:// inputs are checked by the S3 module
        paths.append((idx, local))
        if item.annotation_fields:
            annotations.append((idx, local))
    partitions = [p.strip() for p in (request.cred("SLURM_PARTITION") or "").split(",") if p.strip()]
    script = remote_script(paths, partitions, annotations, request.settings.annotation_sample)
    try:
        output = run_remote(client, script, timeout=max(30.0, request.settings.connect_timeout_s * 3))
    except Exception as exc:  # noqa: BLE001 - any transport failure is a failed check
        return [
            CheckResult(
                "slurm.remote",
                "Login node checks",
                False,
                f"the check script failed: {type(exc).__name__}",
                "Run preflight again; if it keeps failing, check the login node's load.",
                scope="platform",
            )
        ]
    exists: dict[int, bool] = {}
    part_limits: dict[str, str] = {}
    ann: dict[int, dict] = {}
    nopy = False
    for line in output.splitlines():
        fields = line.split("\t")
        if fields[0] == "PATH" and len(fields) == 3 and fields[1].isdigit():
            exists[int(fields[1])] = fields[2] == "1"
        elif fields[0] == "PART" and len(fields) >= 2:
            part_limits[fields[1]] = fields[2] if len(fields) > 2 else ""
        elif fields[0] == "ANN" and len(fields) == 2:
            try:
                record = json.loads(fields[1])
                ann[int(record["idx"])] = record
            except (ValueError, KeyError):
                pass
        elif fields[0] == "NOPY":
            nopy = True
    results += _partition_results(request, partitions, part_limits)
    results += job_size_result(request, partitions, parse_limits(output))
    for idx, local in paths:
        item = request.paths[idx]
        if idx not in exists:
            results.append(
                CheckResult(
                    "path",
                    item.label,
                    False,
                    f"`{local}` was not checked (the script stopped early)",
                    "Run preflight again.",
                    scope="dataset",
                    key=item.label,
                )
            )
            continue
        ok = exists[idx]
        results.append(
            CheckResult(
                "path",
                item.label,
                ok,
                f"`{local}` exists on the login node" if ok else f"`{local}` does not exist on the login node",
                ""
                if ok
                else "Fix the path (checked with `test -e` as the SLURM user), or create it on the shared filesystem.",
                scope="dataset",
                key=item.label,
            )
        )
    for idx, local in annotations:
        item = request.paths[idx]
        if not exists.get(idx):
            continue
        results.append(_annotation_result(item, local, ann.get(idx), nopy, request.settings.annotation_sample))
    return results


def _partition_results(request: PreflightRequest, partitions: list[str], limits: dict[str, str]) -> list[CheckResult]:
    results = []
    wall, _ = _hours(request, "SLURM_TIME_HOURS", request.resources.time_hours or 4.0)
    for part in partitions:
        raw = limits.get(part, "")
        if not raw:
            results.append(
                CheckResult(
                    "slurm.partition",
                    f"Partition {part}",
                    False,
                    f"partition `{part}` does not exist on this cluster",
                    "Run `sinfo -s` on the login node and set SLURM_PARTITION to one of its partitions.",
                    scope="platform",
                )
            )
            continue
        try:
            max_hours = parse_slurm_time(raw)
        except ValueError:
            max_hours = None
        if max_hours is not None and wall is not None and wall > max_hours + 1e-9:
            results.append(
                CheckResult(
                    "slurm.partition",
                    f"Partition {part}",
                    False,
                    f"requested wall time {wall:g} h is above the partition maximum {raw} ({max_hours:g} h)",
                    f"Set SLURM_TIME_HOURS to at most {max_hours:g}, or choose a partition with a longer limit.",
                    scope="platform",
                )
            )
        else:
            results.append(
                CheckResult("slurm.partition", f"Partition {part}", True, f"time limit {raw}", scope="platform")
            )
    return results


def _annotation_result(item, local: str, record: dict | None, nopy: bool, sample: int) -> CheckResult:
    label, fields = item.label, item.annotation_fields
    if nopy:
        return CheckResult(
            "annotation",
            label,
            False,
            "python3 is not available on the login node to read annotations",
            "Install python3 on the login node, or check the fields by hand and ask an admin.",
            scope="dataset",
            key=label,
        )
    if record is None:
        return CheckResult(
            "annotation", label, False, f"`{local}` was not sampled", "Run preflight again.", scope="dataset", key=label
        )
    if "error" in record:
        return CheckResult(
            "annotation",
            label,
            False,
            f"`{local}`: {record['error']}",
            "Point the input at a JSON annotation file.",
            scope="dataset",
            key=label,
        )
    records = record.get("records")
    document = (
        None if records is None else [dict.fromkeys(keys or ()) if keys is not None else None for keys in records]
    )
    ok, detail = check_annotation_document(document, fields, sample)
    fix = (
        ""
        if ok
        else "Every record needs " + ", ".join(f"`{f}`" for f in fields) + "; regenerate the annotations with them."
    )
    return CheckResult("annotation", label, ok, f"`{local}`: {detail}", fix, scope="dataset", key=label)
