"""Read an external TAO skill bank into the same `Catalog` the embedded data gives.

Used when `TAO_SKILL_BANK_PATH` is set. Two layouts are read, each either
directly in the folder or under a `skills/` prefix:

- the seed-era layout: `platform/platforms.manifest.json` (every platform and
  credential definition in one file), `models/<network>/references/skill_info.yaml`
  and `versions.yaml`;
- the 2026-08 layout: one skill per platform and per network,
  `platform/tao-run-on-<platform>/references/skill_info.yaml`,
  `models/tao-<verb>-<network>/references/skill_info.yaml`, and `versions.yaml`
  (see `bank_skills`).

The catalog says which layout it came from (`Catalog.layout`). Whatever is wrong
with the bank (a missing file, invalid JSON or YAML, a missing or malformed
field, an image key the versions table lacks) is raised as one `CatalogError`
whose message starts with the file and the field, e.g.
``.../models/dino/references/skill_info.yaml: field actions: ...``.

This module finds the layout and reads the seed-era one. Turning file contents
into schema objects does not depend on the layout and lives in `bank_fields`
(documents, fields, versions, errors), `bank_platforms` and `bank_models`.
What taobot itself knows (its own platforms, names and value rules) is added
afterwards by `merge`.
"""

from __future__ import annotations

from pathlib import Path

from taobot.catalog.bank_fields import (
    PREFIXES,
    as_list,
    as_mapping,
    build,
    fail,
    locate,
    read_json,
    read_versions,
    read_yaml,
)
from taobot.catalog.bank_models import model_from_skill_info, split_container_free
from taobot.catalog.bank_platforms import (
    credential_definitions,
    generic_credential,
    platform_from_entry,
)
from taobot.catalog.schema import Catalog, Credential, Model, Platform
from taobot.errors import CatalogError

__all__ = ["load_skill_bank", "layout_of"]

MANIFEST = Path("platform") / "platforms.manifest.json"
VERSIONS = Path("versions.yaml")
MODELS = Path("models")
SKILL_INFO = Path("references") / "skill_info.yaml"
S3_REQUIRED = ("ACCESS_KEY", "SECRET_KEY")
S3_OPTIONAL = ("S3_ENDPOINT_URL", "CLOUD_REGION")


def layout_of(path: Path) -> str:
    """ "2026-08" when the bank has per-platform skills (`platform/tao-run-on-*`), else "seed"."""
    for prefix in PREFIXES:
        if any((path / prefix / "platform").glob(f"tao-run-on-*/{SKILL_INFO.as_posix()}")):
            return "2026-08"
    return "seed"


def finish_credentials(credentials: dict[str, Credential], models: dict[str, Model], generic: set[str]) -> None:
    """Define what models and S3 name but nothing described, generically (recorded in `generic`)."""
    names = [c for m in models.values() for c in m.credentials] + [*S3_REQUIRED, *S3_OPTIONAL]
    for cred in names:
        if cred not in credentials:
            credentials[cred] = generic_credential(cred)
            generic.add(cred)


def load_skill_bank(path: Path) -> Catalog:
    """Read the skill bank at `path` (either layout, plain or under `skills/`) into a Catalog."""
    path = Path(path)
    if not path.is_dir():
        raise CatalogError(
            f"{path}: field (folder): the skill bank folder does not exist", file=str(path), field="(folder)"
        )
    if layout_of(path) == "2026-08":
        from taobot.catalog.bank_skills import load_skills_layout

        return load_skills_layout(path)
    return _load_seed_layout(path)


def _load_seed_layout(path: Path) -> Catalog:
    manifest_file = locate(path, MANIFEST)
    versions_file = locate(path, VERSIONS)
    models_dir = locate(path, MODELS)

    manifest = as_mapping(read_json(manifest_file), manifest_file, "(top level)", required=True)
    credentials = credential_definitions(manifest, manifest_file)
    generic: set[str] = set()

    platforms: dict[str, Platform] = {}
    for index, raw in enumerate(as_list(manifest.get("platforms"), manifest_file, "platforms")):
        platform = platform_from_entry(raw, manifest_file, f"platforms[{index}]", credentials, generic=generic)
        if platform.name in platforms:
            fail(manifest_file, f"platforms[{index}].name", f"platform {platform.name!r} is defined twice")
        platforms[platform.name] = platform
    if not platforms:
        fail(manifest_file, "platforms", "missing or empty")

    versions = read_versions(versions_file)

    model_files = sorted(models_dir.glob(f"*/{SKILL_INFO.as_posix()}"))
    if not model_files:
        fail(models_dir, "(folder)", f"no models/<network>/{SKILL_INFO.as_posix()} files found")
    models: dict[str, Model] = {}
    sources: dict[str, str] = {}
    for model_file in model_files:
        folder_name = model_file.parent.parent.name
        model = model_from_skill_info(read_yaml(model_file), model_file, folder_name, versions, versions_file)
        if model.name in models:
            fail(model_file, "name", f"model {model.name!r} is defined twice")
        models[model.name] = model
        sources[model.name] = str(model_file)
    models, not_runnable = split_container_free(unique_aliases(models), sources)
    finish_credentials(credentials, models, generic)

    interval = manifest.get("default_status_interval_minutes", 5)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0:
        fail(manifest_file, "default_status_interval_minutes", f"expected a positive whole number, got {interval!r}")
    return build(
        manifest_file,
        "",
        Catalog,
        source=str(path),
        layout="seed",
        credentials=credentials,
        platforms=platforms,
        models=models,
        unsupported_models=not_runnable,
        versions=versions,
        s3_required=S3_REQUIRED,
        s3_optional=S3_OPTIONAL,
        default_long_running=bool(manifest.get("default_long_running_enabled", True)),
        default_status_interval_minutes=interval,
        platform_sources={name: str(manifest_file) for name in platforms},
        generic_credentials=tuple(sorted(generic)),
    )


def unique_aliases(models: dict[str, Model]) -> dict[str, Model]:
    """Each model's aliases without the names that are another model's name or alias too (they name no one model)."""
    claims: dict[str, int] = {}
    for m in models.values():
        for a in {m.name, *m.aliases}:
            claims[a] = claims.get(a, 0) + 1
    return {
        name: m.model_copy(update={"aliases": tuple(a for a in m.aliases if claims[a] == 1)})
        for name, m in models.items()
    }
