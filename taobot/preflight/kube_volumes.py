"""Kubernetes volumes: what a Job really mounts, and whether the paths a person confirmed lie on it.

A Job gets the PersistentVolumeClaims of the cluster profile it is launched with
(`KubeProfile.volumes`, mounted by `backends/kube_manifests.py`) and nothing else from
outside the container. So a dataset or results path that is not s3:// must lie under one
of those mount paths, whatever the person confirmed: with an uploaded kubeconfig, or a
profile without volumes, no such path exists in the Pod. `path_results` says so per input
(pure); `claim_results` asks the cluster that every claim exists in the namespace and is
Bound (a Pending claim would keep the Pod from starting).
"""

from __future__ import annotations

from taobot.kube import KubeClient, api_message, describe_network_error
from taobot.kube_profiles import KubeProfile
from taobot.preflight.base import CheckResult, DatasetPath, PreflightRequest, quote
from taobot.preflight.kube_rbac import role_remediation, user_from, who


def mounts_text(profile: KubeProfile) -> str:
    """The profile's mount paths in words, e.g. "`/data` (claim `coco`, read-only), `/scratch` (claim `tmp`)"."""
    return ", ".join(
        f"`{v.mount_path}` (claim `{v.claim}`{', read-only' if v.read_only else ''})" for v in profile.volumes
    )


def path_results(request: PreflightRequest, profile: KubeProfile | None) -> list[CheckResult]:
    """One result per non-s3 dataset input (and results folder): it lies on a volume the Job mounts, or it fails."""
    items = list(request.paths)
    if request.results_uri:
        items.append(DatasetPath("results", request.results_uri))
    out = []
    for item in items:
        if item.path.startswith("s3://"):
            continue
        out.append(_path_result(item, profile, writes=item.label == "results"))
    return out


def _path_result(item: DatasetPath, profile: KubeProfile | None, writes: bool) -> CheckResult:
    def result(ok: bool, detail: str, remediation: str = "") -> CheckResult:
        return CheckResult("kubernetes.mount", item.label, ok, detail, remediation, scope="dataset", key=item.label)

    path = item.path
    if profile is None or not profile.volumes:
        what = "your own kubeconfig" if profile is None else f"cluster profile `{profile.name}`"
        return result(
            False,
            f"`{path}` does not exist in the Job's Pod: a Job launched with {what} mounts no volume",
            "Use an s3:// URI, or choose a cluster profile whose volumes hold this path (the operator lists them "
            "under `kubernetes_profiles` in the policy file).",
        )
    volume = profile.volume_for(path)
    if volume is None:
        return result(
            False,
            f"`{path}` is not under a volume of cluster profile `{profile.name}`; its Jobs mount {mounts_text(profile)}",
            f"Give a path under {', '.join(f'`{m}`' for m in profile.mount_paths)}, or use an s3:// URI.",
        )
    if writes and volume.read_only:
        return result(
            False,
            f"`{path}` lies on claim `{volume.claim}`, which the Job mounts read-only at `{volume.mount_path}`: "
            "the job could not write its results there",
            "Choose a results location on a writable volume of the profile, or an s3:// URI.",
        )
    inside = f" (its folder `{volume.sub_path}`)" if volume.sub_path else ""
    mode = "read-only" if volume.read_only else "read-write"
    return result(True, f"`{path}` lies on claim `{volume.claim}`{inside}, mounted {mode} at `{volume.mount_path}`")


def claim_results(client: KubeClient, profile: KubeProfile, namespace: str, timeout) -> list[CheckResult]:
    """Every claim of the profile exists in `namespace` and is Bound."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    core = k8s.CoreV1Api(client.api)
    out: list[CheckResult] = []
    for claim in dict.fromkeys(v.claim for v in profile.volumes):
        check, label = f"kubernetes.claim.{claim}", f"Volume claim {claim}"
        try:
            pvc = core.read_namespaced_persistent_volume_claim(claim, namespace, _request_timeout=timeout)
        except ApiException as exc:
            message = api_message(exc)
            if exc.status == 404:
                out.append(
                    CheckResult(
                        check,
                        label,
                        False,
                        f"cluster profile `{profile.name}` mounts claim `{claim}`, which does not exist in namespace "
                        f"`{namespace}`",
                        f"Tell the operator: create the PersistentVolumeClaim `{claim}` in `{namespace}` "
                        f"(`kubectl -n {quote(namespace)} get pvc` lists those there), or fix the profile.",
                    )
                )
            elif exc.status == 403:
                user = user_from(message)
                out.append(
                    CheckResult(
                        check,
                        label,
                        False,
                        f"{who(user)} may not read PersistentVolumeClaims in `{namespace}`, so whether claim `{claim}` "
                        f"exists and is bound is unknown ({message})",
                        role_remediation(namespace, user, "get", "", "persistentvolumeclaims", ""),
                    )
                )
            else:
                out.append(
                    CheckResult(
                        check,
                        label,
                        False,
                        f"reading claim `{claim}` failed: HTTP {exc.status} {message}",
                        "Retry; check the API server's health.",
                    )
                )
            continue
        except Exception as exc:  # noqa: BLE001
            out.append(
                CheckResult(
                    check,
                    label,
                    False,
                    f"reading claim `{claim}` failed: {describe_network_error(exc)}",
                    "Retry; check that the API server stays reachable.",
                )
            )
            continue
        phase = getattr(pvc.status, "phase", None) if pvc.status else None
        if phase != "Bound":
            out.append(
                CheckResult(
                    check,
                    label,
                    False,
                    f"claim `{claim}` in `{namespace}` is {phase or 'not bound'}: the Job's Pod would wait for it",
                    f"Tell the operator: `kubectl -n {quote(namespace)} describe pvc {quote(claim)}` says why it is not "
                    "bound (no matching PersistentVolume, or a StorageClass that provisions none).",
                )
            )
            continue
        volume = getattr(pvc.spec, "volume_name", None) if pvc.spec else None
        out.append(CheckResult(check, label, True, f"claim `{claim}` is Bound" + (f" to `{volume}`" if volume else "")))
    return out
