"""Preflight: every launch-gate condition checked from the platform's point of view.

`run_preflight(request, progress)` runs the credential presence check, the
platform's own module (SSH + SLURM, Docker, Kubernetes, Lepton, Brev), S3
readability for every s3:// URI and the mount confirmations for paths a
remote platform mounts, calling `progress` after each stage so the Slack
card can fill in as checks finish. It creates nothing anywhere.
"""

from __future__ import annotations

import importlib
import logging

from taobot.config import PlatformSettings
from taobot.preflight.base import (
    CheckResult,
    DatasetPath,
    PreflightReport,
    PreflightRequest,
    Progress,
    local_path,
)

__all__ = [
    "CheckResult",
    "DatasetPath",
    "PreflightReport",
    "PreflightRequest",
    "run_preflight",
]

log = logging.getLogger(__name__)

PLATFORM_MODULES = {
    "slurm": "taobot.preflight.slurm",
    "local-docker": "taobot.preflight.docker",
    "kubernetes": "taobot.preflight.kubernetes",
    "lepton": "taobot.preflight.lepton",
    "brev": "taobot.preflight.brev",
}
# Platforms whose jobs cannot read the bot host's filesystem: a non-s3 path
# there is a mount inside the job environment that only the person can vouch for.
MOUNTED_PATH_PLATFORMS = ("lepton", "brev", "kubernetes")


def request_for_intake(
    state, catalog, credentials: dict[str, str], settings: PlatformSettings
) -> tuple[PreflightRequest, tuple[str, ...]]:
    """The preflight request for an intake thread, and the credentials it must find."""
    from taobot.intake import action_of, credential_needs, dataset_inputs, model_of, platform_of

    model, action, platform = model_of(state, catalog), action_of(state, catalog), platform_of(state, catalog)
    paths = []
    for key, path in dataset_inputs(state, catalog).items():
        spec = action.input(key)
        fields = model.annotation_fields if spec is not None and spec.annotation else ()
        paths.append(DatasetPath(key, path, tuple(fields)))
    request = PreflightRequest(
        platform=platform.name,
        credentials=credentials,
        paths=tuple(paths),
        results_uri=state.results_uri,
        compute=dict(state.compute),
        resources=platform.resources,
        mount_confirmed=frozenset(state.mount_confirmations),
        settings=settings,
        owner=state.owner,
    )
    return request, tuple(n.name for n in credential_needs(state, catalog))


def credential_checks(request: PreflightRequest, required: tuple[str, ...]) -> list[CheckResult]:
    missing = [n for n in required if not request.cred(n)]
    if missing:
        return [
            CheckResult(
                "credentials",
                "Credentials",
                False,
                "missing: " + ", ".join(missing),
                "Press *Enter credentials* (or set them in the environment for the CLI) and give "
                + ", ".join(missing)
                + ".",
                scope="credentials",
            )
        ]
    shown = ", ".join(required) if required else "none needed"
    return [CheckResult("credentials", "Credentials", True, f"present: {shown}", scope="credentials")]


def mount_checks(request: PreflightRequest) -> list[CheckResult]:
    results = []
    items = list(request.paths)
    if request.results_uri:
        items.append(DatasetPath("results", request.results_uri))
    for p in items:
        if p.path.startswith("s3://"):
            continue
        if p.path in request.mount_confirmed:
            results.append(
                CheckResult(
                    "mount",
                    p.label,
                    True,
                    f"`{p.path}` confirmed mounted in the job environment",
                    scope="dataset",
                    key=p.label,
                )
            )
        else:
            results.append(
                CheckResult(
                    "mount",
                    p.label,
                    False,
                    f"`{p.path}` cannot be verified from the bot's host",
                    f"If `{p.path}` is mounted in the {request.platform} job environment, reply `confirm mounted` in "
                    "this thread (your confirmation is recorded), or use an s3:// URI that preflight can read.",
                    scope="dataset",
                    key=p.label,
                )
            )
    return results


def _safe(stage: str, fn, *args) -> list[CheckResult]:
    try:
        return list(fn(*args))
    except Exception as exc:  # a bug in a check must still leave a failed, visible result
        log.exception("preflight stage %s crashed", stage)
        return [
            CheckResult(
                stage, stage, False, f"check crashed: {type(exc).__name__}", "Report this to the taobot maintainers."
            )
        ]


def run_preflight(
    request: PreflightRequest, required_credentials: tuple[str, ...] = (), progress: Progress | None = None
) -> PreflightReport:
    results: list[CheckResult] = []

    def stage(name: str, fn, *args) -> None:
        if progress:
            progress(list(results), name)
        results.extend(_safe(name, fn, *args))

    stage("credentials", credential_checks, request, required_credentials)
    if request.skip_platform_access:
        if request.platform == "slurm":
            from taobot.preflight import slurm

            stage("slurm settings", lambda r: slurm.static_checks(r)[0], request)
        for p in request.paths:
            local = local_path(p.path)
            if request.platform == "local-docker" and local:
                from pathlib import Path

                exists = Path(local).exists()
                results.append(
                    CheckResult(
                        "path",
                        p.label,
                        exists,
                        f"`{local}` {'exists' if exists else 'does not exist'} on this host",
                        "" if exists else f"Create `{local}` or fix the path.",
                        scope="dataset",
                        key=p.label,
                    )
                )
    else:
        module = importlib.import_module(PLATFORM_MODULES[request.platform])
        stage(request.platform, module.check, request)
        s3_paths = [p for p in request.paths if p.path.startswith("s3://")]
        if s3_paths or (request.results_uri or "").startswith("s3://"):
            from taobot.preflight import s3

            stage("s3", s3.check, request)
    if request.platform in MOUNTED_PATH_PLATFORMS:
        stage("mounts", mount_checks, request)
    if progress:
        progress(list(results), None)
    return PreflightReport(request.platform, results, skipped_platform_access=request.skip_platform_access)
