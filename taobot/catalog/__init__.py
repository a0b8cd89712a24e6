"""The catalog: which platforms and TAO networks exist and what each needs.

`load_catalog()` returns the embedded catalog, or the one read from an
external skill bank when a path is given (see `bank.py`). Lookups accept
aliases and answer unknown names with the list of names that do exist.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from taobot.catalog.schema import (
    ROOT_ROLES,
    Action,
    Catalog,
    Condition,
    Credential,
    CredentialGroup,
    InputSpec,
    Model,
    OptionalCredential,
    Platform,
)
from taobot.errors import CatalogError, UnknownNameError

__all__ = [
    "ROOT_ROLES",
    "Action",
    "Catalog",
    "Condition",
    "Credential",
    "CredentialGroup",
    "ImageResolution",
    "InputSpec",
    "Model",
    "OptionalCredential",
    "Platform",
    "find_action",
    "find_model",
    "find_platform",
    "load_catalog",
    "resolve_image",
    "with_operator_defaults",
    "with_value_rules",
]


# libyaml's parser when PyYAML has it: the catalog is 35 files, read at every start.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> object:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"cannot read {path}: {exc}", file=str(path)) from exc


def _validation_error(path: Path, exc: ValidationError) -> CatalogError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return CatalogError(f"{path}: field {field}: {first['msg']}", file=str(path), field=field)


def _embedded_dir() -> Path:
    return Path(str(resources.files("taobot.catalog") / "data"))


def _load_embedded() -> Catalog:
    data = _embedded_dir()
    platforms_file = data / "platforms.yaml"
    raw = _read_yaml(platforms_file)
    if not isinstance(raw, dict):
        raise CatalogError(f"{platforms_file}: expected a mapping", file=str(platforms_file))
    try:
        credentials = {name: Credential(name=name, **body) for name, body in (raw.get("credentials") or {}).items()}
        platforms = {p["name"]: Platform(**p) for p in raw.get("platforms") or []}
    except (ValidationError, TypeError, KeyError) as exc:
        if isinstance(exc, ValidationError):
            raise _validation_error(platforms_file, exc) from exc
        raise CatalogError(f"{platforms_file}: {exc}", file=str(platforms_file)) from exc

    models: dict[str, Model] = {}
    for model_file in sorted((data / "models").glob("*.yaml")):
        body = _read_yaml(model_file)
        if not isinstance(body, dict):
            raise CatalogError(f"{model_file}: expected a mapping", file=str(model_file))
        try:
            actions = {
                name: Action(name=name, **(spec or {})) for name, spec in (body.pop("actions", None) or {}).items()
            }
            model = Model(actions=actions, **body)
        except ValidationError as exc:
            raise _validation_error(model_file, exc) from exc
        models[model.name] = model

    versions_file = data / "versions.yaml"
    versions = (_read_yaml(versions_file) or {}).get("images") or {}
    defaults = raw.get("defaults") or {}
    s3 = raw.get("s3") or {}
    try:
        return Catalog(
            source="embedded",
            credentials=credentials,
            platforms=platforms,
            models=models,
            versions=versions,
            s3_required=tuple(s3.get("required", ("ACCESS_KEY", "SECRET_KEY"))),
            s3_optional=tuple(s3.get("optional", ("S3_ENDPOINT_URL", "CLOUD_REGION"))),
            default_long_running=bool(defaults.get("long_running_enabled", True)),
            default_status_interval_minutes=int(defaults.get("status_interval_minutes", 5)),
        )
    except ValidationError as exc:
        raise _validation_error(platforms_file, exc) from exc


@functools.lru_cache(maxsize=8)
def load_catalog(skill_bank_path: str | None = None) -> Catalog:
    """The embedded catalog, or the one read from the skill bank at that path."""
    if skill_bank_path:
        from taobot.catalog.bank import load_skill_bank

        return with_value_rules(load_skill_bank(Path(skill_bank_path)), _load_embedded())
    return _load_embedded()


def with_value_rules(catalog: Catalog, rules_from: Catalog) -> Catalog:
    """`catalog` with the value rules of `rules_from` for credentials it defines without one.

    A skill bank describes credentials but has no value rules; the embedded
    catalog's keep applying, so a bank never loosens what a value may be.
    """
    credentials = {}
    for name, cred in catalog.credentials.items():
        known = rules_from.credentials.get(name)
        if cred.pattern is None and known is not None and known.pattern:
            cred = cred.model_copy(update={"pattern": known.pattern, "shape": known.shape})
        credentials[name] = cred
    return catalog.model_copy(update={"credentials": credentials})


def with_operator_defaults(catalog: Catalog, status_interval_minutes: int | None) -> Catalog:
    """`catalog` with the operator's default status interval, when one is set."""
    if status_interval_minutes is None:
        return catalog
    return catalog.model_copy(update={"default_status_interval_minutes": status_interval_minutes})


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def find_platform(catalog: Catalog, name: str) -> Platform:
    wanted = _normal(name)
    for p in catalog.platforms.values():
        if wanted == p.name or wanted in p.aliases:
            return p
    raise UnknownNameError("platform", name, sorted(catalog.platforms))


def find_model(catalog: Catalog, name: str) -> Model:
    wanted = _normal(name)
    for m in catalog.models.values():
        if wanted == _normal(m.name):
            return m
    raise UnknownNameError("model", name, sorted(catalog.models))


def find_action(model: Model, name: str) -> Action:
    wanted = name.strip().lower().replace("-", "_")
    if wanted in model.actions:
        return model.actions[wanted]
    raise UnknownNameError(f"action of {model.name}", name, list(model.actions))


@dataclass(frozen=True)
class ImageResolution:
    image: str
    source: str  # which field supplied it, e.g. "actions.train.image"
    key: str | None = None  # the versions-table key, when one was used


def resolve_image(catalog: Catalog, model: Model, action: Action) -> ImageResolution:
    """Resolve the default container image in the fixed precedence order.

    actions.<action>.container_image, actions.<action>.image, container_image,
    image. A value without "/" is a dotted key into the versions table.
    """
    candidates = [
        (f"actions.{action.name}.container_image", action.container_image),
        (f"actions.{action.name}.image", action.image),
        ("container_image", model.container_image),
        ("image", model.image),
    ]
    for source, ref in candidates:
        if not ref:
            continue
        if "/" in ref or ":" in ref:
            return ImageResolution(image=ref, source=source)
        if ref in catalog.versions:
            return ImageResolution(image=catalog.versions[ref], source=source, key=ref)
        raise CatalogError(
            f"model {model.name}: {source} names image key {ref!r}, which the versions table does not define",
            field=source,
        )
    raise CatalogError(f"model {model.name} defines no container image for action {action.name}", field="image")
