"""The skill bank's 2026-08 layout: one skill folder per platform and per network.

- `platform/tao-run-on-<platform>/references/skill_info.yaml`: one platform each,
  named by its folder (the bank's `docker` is taobot's `local-docker`, matched by
  alias in `merge`). Other folders there (a GPU-host setup skill) are not
  platforms and are left out, with a note.
- `models/tao-<verb>-<network>/references/skill_info.yaml`: one network each,
  named by its folder (`tao-train-dino` is `dino`). Images are stamped literals
  with their versions key in a comment; they are recorded by that key.
- `versions.yaml`: the image table (the bank keeps it in its root).
- `models/automl_support.json` and `applications/`: AutoML support and workflow
  skills, which the launch intake does not use; noted, not read.

The bank describes credentials only by name here; those get a generic text,
which `merge` replaces with the embedded definition where taobot has one.
"""

from __future__ import annotations

import re
from pathlib import Path

from taobot.catalog.bank import (
    MODELS,
    S3_OPTIONAL,
    S3_REQUIRED,
    SKILL_INFO,
    VERSIONS,
    finish_credentials,
    unique_aliases,
)
from taobot.catalog.bank_fields import build, fail, locate, read_versions, read_yaml, versions_stamps
from taobot.catalog.bank_models import model_from_skill_info, split_container_free
from taobot.catalog.bank_platforms import platform_from_entry
from taobot.catalog.schema import Catalog, Credential, Model, Platform

__all__ = ["load_skills_layout"]

PLATFORMS = Path("platform")
PLATFORM_FOLDER = "tao-run-on-"
MODEL_FOLDER = re.compile(r"^tao-[a-z0-9]+-(?P<network>[a-z0-9].*)$")
AUTOML = Path("automl_support.json")
APPLICATIONS = Path("applications")


def network_of(folder: str) -> str:
    """`tao-train-dino` -> `dino`, `tao-finetune-cosmos-embed` -> `cosmos-embed`; another folder name as it is."""
    match = MODEL_FOLDER.match(folder)
    return match.group("network") if match else folder


def _platforms(
    platform_dir: Path, credentials: dict[str, Credential], generic: set[str], notes: list[str]
) -> dict[str, Platform]:
    platforms: dict[str, Platform] = {}
    folders = sorted(p for p in platform_dir.iterdir() if p.is_dir()) if platform_dir.is_dir() else []
    for folder in folders:
        file = folder / SKILL_INFO
        if not folder.name.startswith(PLATFORM_FOLDER):
            if file.is_file():
                notes.append(f"{file}: a platform setup skill, not an execution platform; not read.")
            continue
        name = folder.name[len(PLATFORM_FOLDER) :]
        platforms[name] = platform_from_entry(read_yaml(file), file, "", credentials, name=name, generic=generic)
    if not platforms:
        fail(platform_dir, "(folder)", f"no {PLATFORM_FOLDER}<platform>/{SKILL_INFO.as_posix()} files found")
    return platforms


def _models(models_dir: Path, versions: dict[str, str], versions_file: Path) -> tuple[dict[str, Model], dict[str, str]]:
    files = sorted(models_dir.glob(f"*/{SKILL_INFO.as_posix()}"))
    if not files:
        fail(models_dir, "(folder)", f"no tao-<verb>-<network>/{SKILL_INFO.as_posix()} files found")
    models: dict[str, Model] = {}
    sources: dict[str, str] = {}
    for file in files:
        folder = file.parent.parent.name
        network = network_of(folder)
        model = model_from_skill_info(
            read_yaml(file), file, folder, versions, versions_file, name=network, stamps=versions_stamps(file)
        )
        if network in models:
            fail(file, "(folder)", f"network {network!r} has two skills")
        models[network] = model
        sources[network] = str(file)
    return unique_aliases(models), sources


def load_skills_layout(path: Path) -> Catalog:
    """Read a bank in the 2026-08 layout at `path` (a `skills/` folder inside it, or the skills themselves)."""
    platform_dir = locate(path, PLATFORMS)
    models_dir = locate(path, MODELS)
    versions_file = locate(path, VERSIONS)

    credentials: dict[str, Credential] = {}
    generic: set[str] = set()
    notes: list[str] = []
    platforms = _platforms(platform_dir, credentials, generic, notes)
    versions = read_versions(versions_file)
    models, not_runnable = split_container_free(*_models(models_dir, versions, versions_file))
    finish_credentials(credentials, models, generic)

    if (models_dir / AUTOML).is_file():
        notes.append(f"{models_dir / AUTOML}: AutoML support per network; the launch intake does not use it.")
    applications = locate(path, APPLICATIONS)
    workflows = sorted(applications.glob(f"*/{SKILL_INFO.as_posix()}")) if applications.is_dir() else []
    if workflows:
        notes.append(f"{applications}: {len(workflows)} workflow skills; the launch intake does not use them.")

    return build(
        platform_dir,
        "",
        Catalog,
        source=str(path),
        layout="2026-08",
        credentials=credentials,
        platforms=platforms,
        models=models,
        unsupported_models=not_runnable,
        versions=versions,
        s3_required=S3_REQUIRED,
        s3_optional=S3_OPTIONAL,
        platform_sources={name: str(platform_dir / f"{PLATFORM_FOLDER}{name}" / SKILL_INFO) for name in platforms},
        generic_credentials=tuple(sorted(generic)),
        notes=tuple(notes),
    )
