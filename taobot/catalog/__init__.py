"""The catalog: which platforms and TAO networks exist and what each needs.

`load_catalog()` returns the embedded catalog, or the one read from an
external skill bank when a path is given (see `bank.py`), joined with what
taobot itself knows (see `merge.py`). Lookups accept aliases and answer
unknown names with the list of names that do exist; a name the catalog lists
as not runnable is answered with the reason.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from taobot.catalog.bank_models import normal_name, split_container_free
from taobot.catalog.images import ImageResolution, registry_access, resolve_image
from taobot.catalog.merge import with_embedded_knowledge, with_value_rules
from taobot.catalog.schema import (
    EMBEDDED,
    ROOT_ROLES,
    Action,
    Catalog,
    Condition,
    Credential,
    CredentialGroup,
    InputSpec,
    Model,
    NotRunnable,
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
    "NotRunnable",
    "NotRunnableError",
    "OptionalCredential",
    "Platform",
    "find_action",
    "find_model",
    "find_platform",
    "load_catalog",
    "registry_access",
    "resolve_image",
    "with_embedded_knowledge",
    "with_operator_defaults",
    "with_value_rules",
]


# libyaml's parser when PyYAML has it: the catalog is some forty files, read at every start.
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
    model_files: dict[str, str] = {}
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
        model_files[model.name] = EMBEDDED
    models, not_runnable = split_container_free(models, model_files)

    versions_file = data / "versions.yaml"
    versions = (_read_yaml(versions_file) or {}).get("images") or {}
    defaults = raw.get("defaults") or {}
    s3 = raw.get("s3") or {}
    try:
        return Catalog(
            source=EMBEDDED,
            credentials=credentials,
            platforms=platforms,
            platform_sources={name: EMBEDDED for name in platforms},
            models=models,
            unsupported_models=not_runnable,
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
    """The embedded catalog, or the one read from the skill bank at that path, joined with taobot's own knowledge."""
    if skill_bank_path:
        from taobot.catalog.bank import load_skill_bank

        embedded = _load_embedded()
        return with_value_rules(with_embedded_knowledge(load_skill_bank(Path(skill_bank_path)), embedded), embedded)
    return _load_embedded()


def with_operator_defaults(catalog: Catalog, status_interval_minutes: int | None) -> Catalog:
    """`catalog` with the operator's default status interval, when one is set."""
    if status_interval_minutes is None:
        return catalog
    return catalog.model_copy(update={"default_status_interval_minutes": status_interval_minutes})


class NotRunnableError(UnknownNameError):
    """A platform or model the catalog lists but taobot cannot run; the message says why."""

    def __init__(self, kind: str, entry: NotRunnable, known: list[str]) -> None:
        super().__init__(kind, entry.name, known)
        self.reason = entry.reason
        self.message = f"`{entry.name}` is a {kind} taobot cannot run: {entry.reason}. Known: {', '.join(known)}."
        self.args = (self.message,)


def _not_runnable(entries: dict[str, NotRunnable], wanted: str) -> NotRunnable | None:
    return next((e for n, e in entries.items() if normal_name(n) == wanted), None)


def find_platform(catalog: Catalog, name: str) -> Platform:
    wanted = normal_name(name)
    for p in catalog.platforms.values():
        if wanted == p.name or wanted in p.aliases:
            return p
    entry = _not_runnable(catalog.unsupported_platforms, wanted)
    if entry is not None:
        raise NotRunnableError("platform", entry, sorted(catalog.platforms))
    raise UnknownNameError("platform", name, sorted(catalog.platforms))


def find_model(catalog: Catalog, name: str) -> Model:
    wanted = normal_name(name)
    for m in catalog.models.values():
        if wanted == normal_name(m.name):
            return m
    for m in catalog.models.values():
        if wanted in {normal_name(a) for a in m.aliases}:
            return m
    entry = _not_runnable(catalog.unsupported_models, wanted)
    if entry is not None:
        raise NotRunnableError("model", entry, sorted(catalog.models))
    raise UnknownNameError("model", name, sorted(catalog.models))


def find_action(model: Model, name: str) -> Action:
    wanted = name.strip().lower().replace("-", "_")
    if wanted in model.actions:
        return model.actions[wanted]
    raise UnknownNameError(f"action of {model.name}", name, list(model.actions))
