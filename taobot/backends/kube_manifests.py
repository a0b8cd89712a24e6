"""The Kubernetes objects one launch creates: its Job, Secret and ConfigMap, as plain dicts.

Pure: no cluster is asked, so the manifests are exactly what tests inspect.
Names are DNS-1123 labels derived from the launch id (`object_name`), label
values are squeezed into what the API server accepts (`label_value`), and
every object carries `app.kubernetes.io/managed-by=taobot` plus the launch,
model and action labels, which is how poll finds the bot's Jobs and Pods.

The Job is built with `parallelism: 0` (no Pod until the launch releases
it) and `ttlSecondsAfterFinished: JOB_TTL_AFTER_FINISHED_S`; the Secret and
the ConfigMap are built once the Job's uid is known, so they are created
with an ownerReference to it and the garbage collector removes them with
the Job (`LaunchObjects.secret` / `.configmap`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taobot.backends.base import RESULTS_PLACEHOLDER, LaunchSpec
from taobot.backends.tao_status import status_env
from taobot.kube_profiles import KubeVolume
from taobot.preflight.base import quote
from taobot.render import render, render_args

CONTAINER = "tao"
CONTAINER_SPECS = "/tao/specs"
CONTAINER_RESULTS = "/tao/results"
GPU_RESOURCE = "nvidia.com/gpu"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "taobot"
SELECTOR = f"{MANAGED_BY}={MANAGED_BY_VALUE}"
LAUNCH_LABEL = "taobot/launch"
MODEL_LABEL = "taobot/model"
ACTION_LABEL = "taobot/action"
CANCELLED_ANNOTATION = "taobot/cancelled"
LAUNCH_ID_ANNOTATION = "taobot/launch-id"
# A finished Job (with its Pod, logs and ConfigMap) stays this long, then Kubernetes' TTL controller deletes it
# and the garbage collector what it owns. Its Secret does not wait: taobot deletes it when the job has ended.
JOB_TTL_AFTER_FINISHED_S = 3600
MAX_SELECTED_LAUNCHES = 50  # above this the list selects every taobot Job of the namespace (a long URL otherwise)
_NAME_BODY = 40  # tao-<body>-spec stays well inside 63 characters, and so does the Pod name tao-<body>-xxxxx
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


# --------------------------------------------------------------------------- names and values


def object_name(launch_id: str) -> str:
    """`tao-<launch-id>` as a DNS-1123 label; a hash keeps it unique when the id had to be changed to fit."""
    body = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", launch_id.lower())).strip("-")
    if body != launch_id or len(body) > _NAME_BODY:
        digest = hashlib.sha1(launch_id.encode()).hexdigest()[:6]
        body = (body[: _NAME_BODY - 7].rstrip("-") + "-" + digest).lstrip("-")
    return f"tao-{body}"


def secret_name(job_name: str) -> str:
    """The launch's Secret, named after its Job."""
    return f"{job_name}-env"


def label_value(text: str) -> str:
    """A label value: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", str(text))[:63]
    value = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)
    return value or "none"


def shm_quantity(size: str | None) -> str | None:
    """Docker's `16g` / `512m` (binary units) as a Kubernetes quantity (`16Gi`); Kubernetes quantities pass through."""
    if not size:
        return None
    text = str(size).strip()
    match = re.fullmatch(r"(\d+)\s*([bkmgtBKMGT]?)[bB]?", text)
    if not match:
        return text  # already a quantity such as 16Gi, or the apiserver says what is wrong with it
    number, unit = match.groups()
    unit = unit.lower()
    return number if unit in ("", "b") else f"{number}{unit.upper()}i"


def container_command(spec: LaunchSpec, flat: Mapping[str, object], config_path: str) -> str:
    """The action's command for `/bin/sh -c`: `{config_path}` filled, args-style actions get `--key value`."""
    command = spec.command.replace("{config_path}", quote(config_path))
    if spec.config_format == "args":
        command += " " + " ".join(quote(a) for a in render_args(flat))
    return command.strip()


def job_manifest(
    spec: LaunchSpec,
    namespace: str,
    name: str,
    secret: str,
    configmap: str | None,
    labels: Mapping[str, str],
    file_name: str | None,
    flat: Mapping[str, object],
) -> dict:
    """The batch/v1 Job, created with parallelism 0 (no Pod until the launch releases it)."""
    creds = spec.platform_credentials
    config_path = f"{CONTAINER_SPECS}/{file_name}" if file_name else ""
    container: dict = {
        "name": CONTAINER,
        "image": spec.image,
        "command": ["/bin/sh", "-c", container_command(spec, flat, config_path)],
        "envFrom": [{"secretRef": {"name": secret}}],
        "env": [
            {"name": "TAO_API_RESULTS_DIR", "value": CONTAINER_RESULTS},
            {"name": "NUM_GPU_PER_NODE", "value": str(int(spec.num_gpus))},
            *({"name": k, "value": v} for k, v in status_env(spec.launch_id, CONTAINER_RESULTS).items()),
        ],
        "volumeMounts": [
            {"name": "results", "mountPath": CONTAINER_RESULTS},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    volumes: list[dict] = [
        {"name": "results", "emptyDir": {}},
        {
            "name": "dshm",
            "emptyDir": {
                "medium": "Memory",
                **({"sizeLimit": shm_quantity(spec.resources.shm_size)} if spec.resources.shm_size else {}),
            },
        },
    ]
    if configmap:
        container["volumeMounts"].insert(0, {"name": "specs", "mountPath": CONTAINER_SPECS, "readOnly": True})
        volumes.insert(0, {"name": "specs", "configMap": {"name": configmap}})
    pod_spec: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the TAO container has no business with the cluster API
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": volumes,
    }
    if spec.num_gpus > 0:
        gpus = str(int(spec.num_gpus))
        container["resources"] = {"limits": {GPU_RESOURCE: gpus}, "requests": {GPU_RESOURCE: gpus}}
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule; tolerate that (and only that)
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    if creds.get("TAO_K8S_IMAGE_PULL_SECRET"):  # an existing docker-registry Secret, e.g. for nvcr.io
        pod_spec["imagePullSecrets"] = [{"name": creds["TAO_K8S_IMAGE_PULL_SECRET"]}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": {LAUNCH_ID_ANNOTATION: spec.launch_id},
        },
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 0,
            "ttlSecondsAfterFinished": JOB_TTL_AFTER_FINISHED_S,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def claim_volumes(volumes: Sequence[KubeVolume]) -> tuple[list[dict], list[dict]]:
    """A cluster profile's PersistentVolumeClaims as Pod volumes (`claim-<n>`) and the container's mounts of them."""
    pod: list[dict] = []
    mounts: list[dict] = []
    for number, volume in enumerate(volumes):
        name = f"claim-{number}"
        pod.append({"name": name, "persistentVolumeClaim": {"claimName": volume.claim, "readOnly": volume.read_only}})
        mount = {"name": name, "mountPath": volume.mount_path, "readOnly": volume.read_only}
        if volume.sub_path:
            mount["subPath"] = volume.sub_path
        mounts.append(mount)
    return pod, mounts


def mount_claims(job: dict, volumes: Sequence[KubeVolume]) -> dict:
    """`job` with the profile's claims mounted in its TAO container: the only outside data its Pod sees."""
    pod_spec = job["spec"]["template"]["spec"]
    pod, mounts = claim_volumes(volumes)
    pod_spec["volumes"].extend(pod)
    for container in pod_spec["containers"]:
        if container["name"] == CONTAINER:
            container["volumeMounts"].extend(mounts)
    return job


def launch_labels(spec: LaunchSpec) -> dict[str, str]:
    labels = {}
    for (
        key,
        value,
    ) in spec.labels.items():  # e.g. taobot.intake / taobot.owner; keys that are not label keys are skipped
        if _LABEL_KEY.match(str(key)) and len(str(key)) <= 253:
            labels[str(key)] = label_value(str(value))
    labels.update(
        {
            MANAGED_BY: MANAGED_BY_VALUE,
            LAUNCH_LABEL: label_value(spec.launch_id),
            MODEL_LABEL: label_value(spec.model),
            ACTION_LABEL: label_value(spec.action),
        }
    )
    return labels


def poll_selector(launch_ids) -> str:
    """The label selector for polling these launches: the bot's objects, narrowed to them unless there are many."""
    values = sorted({label_value(i) for i in launch_ids})
    selector = SELECTOR
    if len(values) <= MAX_SELECTED_LAUNCHES:
        selector += f",{LAUNCH_LABEL} in ({','.join(values)})"
    return selector


def launch_selector(launch_id: str) -> str:
    """The label selector for one launch's Pods."""
    return f"{SELECTOR},{LAUNCH_LABEL}={label_value(launch_id)}"


# --------------------------------------------------------------------------- one launch


@dataclass(frozen=True)
class LaunchObjects:
    """Everything one launch creates in `namespace`, named after the launch id."""

    namespace: str
    name: str  # the Job's, and the stem of the Secret's and the ConfigMap's
    labels: Mapping[str, str]
    job: dict  # parallelism 0: no Pod until the launch releases it
    job_env: Mapping[str, str]
    file_name: str | None  # the spec file in the ConfigMap; None for args-style actions (no ConfigMap)
    rendered: str | None

    @property
    def secret_name(self) -> str:
        return secret_name(self.name)

    @property
    def configmap_name(self) -> str | None:
        return f"{self.name}-spec" if self.file_name else None

    def _owned_metadata(self, name: str, job_uid: str) -> dict:
        owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": self.name, "uid": job_uid}]
        return {"name": name, "labels": dict(self.labels), "ownerReferences": owner}

    def secret(self, job_uid: str) -> dict:
        """The Secret holding `spec.job_env`, the only way a credential reaches the job (`envFrom.secretRef`)."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "immutable": True,
            "metadata": self._owned_metadata(self.secret_name, job_uid),
            "stringData": {str(k): str(v) for k, v in self.job_env.items()},
        }

    def configmap(self, job_uid: str) -> dict:
        """The ConfigMap with the rendered spec file, mounted read-only at CONTAINER_SPECS."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "immutable": True,
            "metadata": self._owned_metadata(self.configmap_name, job_uid),
            "data": {self.file_name: self.rendered},
        }


def launch_objects(spec: LaunchSpec, namespace: str, volumes: Sequence[KubeVolume] = ()) -> LaunchObjects:
    """The Job (and what the Secret and ConfigMap will hold) for one launch; the results folder is CONTAINER_RESULTS.

    `volumes`: the claims of the launch's cluster profile, mounted in the TAO container.
    """
    name = object_name(spec.launch_id)
    labels = launch_labels(spec)
    flat = {k: (CONTAINER_RESULTS if v == RESULTS_PLACEHOLDER else v) for k, v in spec.spec.items()}
    file_name = rendered = None
    if spec.config_format != "args":
        ext = "toml" if spec.config_format == "toml" else "yaml"
        file_name = f"{re.sub(r'[^A-Za-z0-9._-]', '-', spec.action)}.{ext}"
        rendered = render(flat, spec.config_format)
    job = job_manifest(
        spec, namespace, name, secret_name(name), f"{name}-spec" if file_name else None, labels, file_name, flat
    )
    mount_claims(job, volumes)
    return LaunchObjects(namespace, name, labels, job, dict(spec.job_env), file_name, rendered)
