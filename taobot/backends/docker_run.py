"""What one local-docker launch hands the daemon: its launch folder on the bot host and the container's options.

`stage_launch` writes `<work_root>/<launch-id>/{specs,results,logs}`, renders
the spec into `specs/` and returns the `containers.create` arguments: `specs/`
mounted read-only at /tao/specs, `results/` read-write at /tao/results (when the
intake names a local results location, `results/` links to `<location>/<launch>`,
which is what is mounted), every local dataset path read-only at the same path
(so the paths in the spec are valid inside the container), and a GPU device request. The job's secrets
reach the container only through its environment; they are never written
into the spec, the command or a label.

`host_paths` lists every host path a launch asks to mount (datasets and
HOST_SSH_PATH), for the backend to hold to the operator's mount rules
before anything is created; each is mounted from its resolved path, so the
folder checked is the folder mounted.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from taobot.backends.base import RESULTS_PLACEHOLDER, LaunchSpec
from taobot.backends.tao_status import status_env
from taobot.errors import LaunchFailed
from taobot.policy import MountRules
from taobot.preflight.base import local_path
from taobot.preflight.docker import is_remote_endpoint
from taobot.render import render, render_args

CONTAINER_SPECS = "/tao/specs"
CONTAINER_RESULTS = "/tao/results"
LAUNCH_LABEL = "taobot.launch"
MODEL_LABEL = "taobot.model"
ACTION_LABEL = "taobot.action"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_TRUE = ("1", "true", "yes", "on", "y")
_NO_GPU_RUNTIME = "could not select device driver"


def safe_name(launch_id: str) -> str:
    """A launch id as a container-name / folder-name component."""
    name = _SAFE_NAME.sub("-", launch_id).strip(".-") or "launch"
    return name


def flag(value: str | None) -> bool:
    return str(value or "").strip().lower() in _TRUE


def container_command(spec: LaunchSpec, flat: Mapping[str, object], config_path: str) -> list[str]:
    """The action's command as an argv list (no shell), `{config_path}` filled; args-style actions get `--key value`."""
    argv = shlex.split(spec.command.replace("{config_path}", shlex.quote(config_path)))
    if spec.config_format == "args":
        argv += render_args(flat)
    return argv


def dataset_mount_paths(datasets: Mapping[str, str]) -> list[str]:
    """Host paths to mount read-only: local ones only (s3:// is not mounted), nested ones folded into their parent dir."""
    paths = sorted({os.path.normpath(p) for p in (local_path(v) for v in datasets.values()) if p})
    out: list[str] = []
    for p in paths:
        if any(p.startswith(parent.rstrip("/") + "/") and os.path.isdir(parent) for parent in out):
            continue
        out.append(p)
    return out


def host_paths(spec: LaunchSpec) -> list[tuple[str, str]]:
    """(what, host path) for every host path the launch names: each local dataset, the results, HOST_SSH_PATH."""
    found = [(key, p) for key, p in ((k, local_path(v)) for k, v in spec.datasets.items()) if p]
    if spec.results_uri and local_path(spec.results_uri):
        found.append(("results", local_path(spec.results_uri)))
    if spec.platform_credentials.get("HOST_SSH_PATH"):
        found.append(("HOST_SSH_PATH", os.path.expanduser(spec.platform_credentials["HOST_SSH_PATH"])))
    return found


def refuse_mounts(spec: LaunchSpec, host: str, rules: MountRules) -> None:
    """LaunchFailed when a host path the container would mount breaks the mount rules (on the daemon at `host`)."""
    paths = host_paths(spec)
    if not paths:
        return
    if is_remote_endpoint(host) and rules.roots is not None:
        shown = ", ".join(f"`{p}`" for _what, p in paths)
        raise LaunchFailed(
            f"not mounting {shown}: DOCKER_HOST `{host}` is a remote daemon, where the bot cannot verify "
            "host paths; use the bot host's own daemon for host folders, or s3:// URIs"
        )
    if host.startswith("unix://"):
        rules = rules.with_protected((host[len("unix://") :], "the Docker socket of this launch"))
    for what, path in paths:
        refusal = rules.refusal(path)
        if refusal:
            raise LaunchFailed(f"not mounting {what}: {refusal}. {rules.remedy()}")


def registry_auth(creds: Mapping[str, str], job_env: Mapping[str, str], image: str) -> dict | None:
    """DOCKER_USERNAME with NGC_KEY as the password; `$oauthtoken` for nvcr.io when only NGC_KEY is given."""
    password = creds.get("NGC_KEY") or job_env.get("NGC_KEY")
    username = creds.get("DOCKER_USERNAME")
    if not username and password and image.startswith("nvcr.io/"):
        username = "$oauthtoken"
    if not (username and password):
        return None
    return {"username": username, "password": password}


def start_hint(message: str) -> str:
    """What to do about a refused start, when the daemon's message says more than it seems to."""
    if _NO_GPU_RUNTIME in message:
        return (
            " — this Docker host has no NVIDIA GPU runtime: install the NVIDIA Container Toolkit, "
            "run `nvidia-ctk runtime configure --runtime=docker` and restart dockerd"
        )
    return ""


def results_root(results_uri: str | None) -> str | None:
    """The bot-host folder a launch's results go under when its intake names a local results location."""
    return local_path(results_uri) if results_uri else None


def results_folder(in_launch_dir: Path, results_uri: str | None, ident: str) -> Path:
    """Where the container's /tao/results is on the bot host: `<launch folder>/results`, or, when the intake
    names a local results location (which the mount rules checked), `<that location>/<launch>`, with
    `<launch folder>/results` a link to it. A later launch (a workflow's next stage) can then mount what this
    one wrote from a folder the rules allow, which the launch folder (under the protected work dir) is not."""
    root = results_root(results_uri)
    if root is None:
        in_launch_dir.mkdir(parents=True, exist_ok=True)
        return in_launch_dir
    real = Path(os.path.realpath(root)) / ident
    real.mkdir(parents=True, exist_ok=True)
    if not in_launch_dir.is_symlink():
        in_launch_dir.symlink_to(real, target_is_directory=True)
    return real


@dataclass(frozen=True)
class ContainerRun:
    """One launch, staged: `containers.create(image, command, **options)` starts it."""

    launch_dir: Path
    results: Path
    image: str
    command: list[str]
    options: dict
    auto_remove: bool


def stage_launch(work_root: Path, spec: LaunchSpec, gpu_request: bool = True) -> ContainerRun:
    """Make the launch folder, render the spec into it, and build the container's create options."""
    from docker.types import DeviceRequest, Mount

    creds = spec.platform_credentials
    ident = safe_name(spec.launch_id)
    launch_dir = (work_root / ident).resolve()
    specs, results, logs = launch_dir / "specs", launch_dir / "results", launch_dir / "logs"
    for d in (specs, logs):
        d.mkdir(parents=True, exist_ok=True)
    results = results_folder(results, spec.results_uri, ident)
    ext = "toml" if spec.config_format == "toml" else "yaml"
    file_name = f"{safe_name(spec.action)}.{ext}"
    given = (RESULTS_PLACEHOLDER, spec.results_uri) if results_root(spec.results_uri) else (RESULTS_PLACEHOLDER,)
    flat = {k: (CONTAINER_RESULTS if v in given else v) for k, v in spec.spec.items()}
    if spec.config_format != "args":
        (specs / file_name).write_text(render(flat, spec.config_format))
    command = container_command(spec, flat, f"{CONTAINER_SPECS}/{file_name}")

    mounts = [
        Mount(CONTAINER_SPECS, str(specs), type="bind", read_only=True),
        Mount(CONTAINER_RESULTS, str(results), type="bind", read_only=False),
    ]
    # Mounted from the resolved path (what the mount rules checked), seen at the path the spec names.
    mounts += [Mount(p, os.path.realpath(p), type="bind", read_only=True) for p in dataset_mount_paths(spec.datasets)]
    if creds.get("HOST_SSH_PATH"):
        ssh = os.path.realpath(os.path.expanduser(creds["HOST_SSH_PATH"]))
        mounts.append(Mount("/root/.ssh", ssh, type="bind", read_only=True))
    environment = {k: str(v) for k, v in spec.job_env.items()}  # the only way a secret reaches the job
    environment["TAO_API_RESULTS_DIR"] = CONTAINER_RESULTS
    environment.update(status_env(spec.launch_id, CONTAINER_RESULTS))
    environment["NUM_GPU_PER_NODE"] = str(spec.num_gpus)
    labels = {str(k): str(v) for k, v in spec.labels.items()}
    labels.update({LAUNCH_LABEL: spec.launch_id, MODEL_LABEL: spec.model, ACTION_LABEL: spec.action})
    auto_remove = flag(creds.get("DOCKER_AUTO_REMOVE"))
    options: dict = {
        "name": f"tao-{ident}",
        "detach": True,
        "environment": environment,
        "labels": labels,
        "mounts": mounts,
        "auto_remove": auto_remove,
    }
    if gpu_request and spec.num_gpus > 0:
        options["device_requests"] = [DeviceRequest(count=int(spec.num_gpus), capabilities=[["gpu"]])]
    if spec.resources.shm_size:
        options["shm_size"] = spec.resources.shm_size
    if creds.get("DOCKER_NETWORK"):
        options["network"] = creds["DOCKER_NETWORK"]
    return ContainerRun(launch_dir, results, spec.image, command, options, auto_remove)
