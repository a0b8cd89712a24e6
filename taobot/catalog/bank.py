"""Read an external TAO skill bank into the same `Catalog` the embedded data gives.

Used when `TAO_SKILL_BANK_PATH` is set. The bank is a folder holding
`platform/platforms.manifest.json`, `models/<network>/references/skill_info.yaml`
and `versions.yaml`, either directly or under a `skills/` prefix.

Whatever is wrong with the bank (a missing file, invalid JSON or YAML, a
missing or malformed field, an image key the versions table lacks) is raised as
one `CatalogError` whose message starts with the file and the field, e.g.
``.../models/dino/references/skill_info.yaml: field actions: ...``.

This module holds the layout reader: where the files are and how they make
one catalog. Turning their contents into schema objects does not depend on
the layout and lives in `bank_fields` (documents, fields, errors),
`bank_platforms` and `bank_models`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taobot.catalog.bank_fields import (
    as_list,
    as_mapping,
    build,
    fail,
    read_json,
    read_yaml,
)
from taobot.catalog.bank_models import model_from_skill_info
from taobot.catalog.bank_platforms import (
    credential_definitions,
    generic_credential,
    platform_from_entry,
)
from taobot.catalog.schema import Catalog, Model, Platform
from taobot.errors import CatalogError

__all__ = ["load_skill_bank"]

MANIFEST = Path("platform") / "platforms.manifest.json"
VERSIONS = Path("versions.yaml")
MODELS = Path("models")
SKILL_INFO = Path("references") / "skill_info.yaml"
PREFIXES = (Path("."), Path("skills"))


# ---------------------------------------------------------------------------
# files


def _locate(base: Path, relative: Path) -> Path:
    """The file in the bank root or under `skills/`; the first tried when neither exists."""
    for prefix in PREFIXES:
        candidate = base / prefix / relative
        if candidate.exists():
            return candidate
    return base / relative


# ---------------------------------------------------------------------------
# versions


def _flatten(images: dict[str, Any], file: Path, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in images.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, file, dotted))
        elif isinstance(value, str) and value:
            out[dotted] = value
        else:
            fail(file, f"images.{dotted}", f"expected an image reference or a mapping, got {value!r}")
    return out


def _versions(file: Path) -> dict[str, str]:
    raw = as_mapping(read_yaml(file), file, "(top level)", required=True)
    images = as_mapping(raw.get("images"), file, "images", required=True)
    return _flatten(images, file)


# ---------------------------------------------------------------------------
# entry point


def load_skill_bank(path: Path) -> Catalog:
    """Read the skill bank at `path` (plain or `skills/` layout) into a Catalog."""
    path = Path(path)
    if not path.is_dir():
        raise CatalogError(
            f"{path}: field (folder): the skill bank folder does not exist", file=str(path), field="(folder)"
        )

    manifest_file = _locate(path, MANIFEST)
    versions_file = _locate(path, VERSIONS)
    models_dir = _locate(path, MODELS)

    manifest = as_mapping(read_json(manifest_file), manifest_file, "(top level)", required=True)
    credentials = credential_definitions(manifest, manifest_file)

    platforms: dict[str, Platform] = {}
    for index, raw in enumerate(as_list(manifest.get("platforms"), manifest_file, "platforms")):
        platform = platform_from_entry(raw, manifest_file, f"platforms[{index}]", credentials)
        if platform.name in platforms:
            fail(manifest_file, f"platforms[{index}].name", f"platform {platform.name!r} is defined twice")
        platforms[platform.name] = platform
    if not platforms:
        fail(manifest_file, "platforms", "missing or empty")

    versions = _versions(versions_file)

    model_files = sorted(models_dir.glob(f"*/{SKILL_INFO.as_posix()}"))
    if not model_files:
        fail(models_dir, "(folder)", f"no models/<network>/{SKILL_INFO.as_posix()} files found")
    models: dict[str, Model] = {}
    for model_file in model_files:
        folder_name = model_file.parent.parent.name
        model = model_from_skill_info(read_yaml(model_file), model_file, folder_name, versions, versions_file)
        if model.name in models:
            fail(model_file, "name", f"model {model.name!r} is defined twice")
        for cred in model.credentials:
            if cred not in credentials:
                credentials[cred] = generic_credential(cred)
        models[model.name] = model

    s3_required = ("ACCESS_KEY", "SECRET_KEY")
    s3_optional = ("S3_ENDPOINT_URL", "CLOUD_REGION")
    for cred in (*s3_required, *s3_optional):
        if cred not in credentials:
            credentials[cred] = generic_credential(cred)

    interval = manifest.get("default_status_interval_minutes", 5)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0:
        fail(manifest_file, "default_status_interval_minutes", f"expected a positive whole number, got {interval!r}")
    return build(
        manifest_file,
        "",
        Catalog,
        source=str(path),
        credentials=credentials,
        platforms=platforms,
        models=models,
        versions=versions,
        s3_required=s3_required,
        s3_optional=s3_optional,
        default_long_running=bool(manifest.get("default_long_running_enabled", True)),
        default_status_interval_minutes=interval,
    )
