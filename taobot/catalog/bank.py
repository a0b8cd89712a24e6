"""Read an external TAO skill bank into the same `Catalog` the embedded data gives.

Used when `TAO_SKILL_BANK_PATH` is set. The bank is a folder holding
`platform/platforms.manifest.json`, `models/<network>/references/skill_info.yaml`
and `versions.yaml`, either directly or under a `skills/` prefix.

Whatever is wrong with the bank (a missing file, invalid JSON or YAML, a
missing or malformed field, an image key the versions table lacks) is raised as
one `CatalogError` whose message starts with the file and the field, e.g.
``.../models/dino/references/skill_info.yaml: field actions: ...``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml
from pydantic import ValidationError

from taobot.catalog.schema import (
    Action,
    Catalog,
    Condition,
    Credential,
    CredentialGroup,
    InputSpec,
    Model,
    OptionalCredential,
    Platform,
    ResourceDefaults,
    Storage,
)
from taobot.errors import CatalogError

__all__ = ["load_skill_bank"]

MANIFEST = Path("platform") / "platforms.manifest.json"
VERSIONS = Path("versions.yaml")
MODELS = Path("models")
SKILL_INFO = Path("references") / "skill_info.yaml"
PREFIXES = (Path("."), Path("skills"))

# Storage protocol -> (path forms, URI schemes accepted as absolute paths).
_PATH_FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lustre": (("absolute", "s3"), ("lustre",)),
    "local": (("absolute", "s3"), ("file",)),
    "aws": (("s3", "mounted"), ()),
}
_DEFAULT_PATH_FORMS: tuple[tuple[str, ...], tuple[str, ...]] = (("s3", "mounted"), ())

# data_sources `source` -> root role.
_SOURCE_ROLES = {
    "train_dataset": "train",
    "train_datasets": "train",
    "eval_dataset": "eval",
    "eval_datasets": "eval",
    "calibration_dataset": "calibration",
    "calibration_datasets": "calibration",
}

_RESOURCE_FIELDS = frozenset(ResourceDefaults.model_fields)
_ANNOTATION_TOKENS = frozenset({"json", "ann", "annotation", "annotations", "metadata"})
_PLACEHOLDER = re.compile(r"^\{([A-Za-z0-9_]+)\}$")

T = TypeVar("T")


# ---------------------------------------------------------------------------
# errors


def _fail(file: Path, field: str, detail: str) -> NoReturn:
    raise CatalogError(f"{file}: field {field}: {detail}", file=str(file), field=field)


def _build(file: Path, prefix: str, factory: Callable[..., T], /, **kwargs: Any) -> T:
    """Construct a schema object; a validation error becomes a CatalogError naming file and field."""
    try:
        return factory(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        field = ".".join(p for p in (prefix, loc) if p) or "(top level)"
        raise CatalogError(
            f"{file}: field {field}: {first['msg']}", file=str(file), field=field
        ) from exc
    except (TypeError, ValueError) as exc:
        _fail(file, prefix or "(top level)", str(exc))


def _mapping(value: object, file: Path, field: str, *, required: bool = False) -> dict[str, Any]:
    if value is None:
        if required:
            _fail(file, field, "missing")
        return {}
    if not isinstance(value, dict):
        _fail(file, field, f"expected a mapping, got {type(value).__name__}")
    return value


def _sequence(value: object, file: Path, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(file, field, f"expected a list, got {type(value).__name__}")
    return value


def _text(value: object, file: Path, field: str, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            _fail(file, field, "missing")
        return None
    if not isinstance(value, str):
        _fail(file, field, f"expected text, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------
# files


def _locate(base: Path, relative: Path) -> Path:
    """The file in the bank root or under `skills/`; the first tried when neither exists."""
    for prefix in PREFIXES:
        candidate = base / prefix / relative
        if candidate.exists():
            return candidate
    return base / relative


def _read_text(file: Path) -> str:
    if not file.is_file():
        _fail(file, "(file)", "not found (looked in the bank folder and under skills/)")
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(file, "(file)", f"cannot read: {exc}")


def _read_json(file: Path) -> object:
    text = _read_text(file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(file, "(document)", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")


def _read_yaml(file: Path) -> object:
    text = _read_text(file)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        _fail(file, "(document)", f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}")


# ---------------------------------------------------------------------------
# credentials and platforms


def _is_secret(name: str) -> bool:
    upper = name.upper()
    if upper in ("SSH_KEY_PATH", "ACCESS_KEY"):
        return False
    return any(word in upper for word in ("TOKEN", "KEY", "SECRET", "PASSWORD"))


def _generic_credential(name: str, description: str | None = None, how_to_get: str | None = None) -> Credential:
    return Credential(
        name=name,
        description=description or f"{name}, required by the skill bank.",
        how_to_get=how_to_get or f"Ask the owner of the skill bank what {name} should hold.",
        secret=_is_secret(name),
    )


def _credential_definitions(raw: dict[str, Any], file: Path) -> dict[str, Credential]:
    out: dict[str, Credential] = {}
    defs = _mapping(raw.get("credential_definitions"), file, "credential_definitions")
    for name, body in defs.items():
        field = f"credential_definitions.{name}"
        body = _mapping(body, file, field, required=True)
        out[name] = _build(
            file,
            field,
            Credential,
            name=name,
            description=_text(body.get("description"), file, f"{field}.description"),
            how_to_get=_text(body.get("how_to_get"), file, f"{field}.how_to_get"),
            secret=bool(body["secret"]) if "secret" in body else _is_secret(name),
            example=body.get("example"),
        )
    return out


def _credential_name(entry: object, file: Path, field: str) -> tuple[str, dict[str, Any]]:
    """A credential reference is a bare name or a mapping with `name` (and maybe inline prose)."""
    if isinstance(entry, str) and entry:
        return entry, {}
    if isinstance(entry, dict):
        return _text(entry.get("name"), file, f"{field}.name"), entry  # type: ignore[return-value]
    _fail(file, field, f"expected a credential name or a mapping with name, got {entry!r}")


def _condition(text: str) -> Condition:
    lowered = text.lower()
    if "s3://" in lowered:
        return Condition.S3_URI
    if "huggingface" in lowered or "hugging face" in lowered or "model" in lowered:
        return Condition.MODEL_REQUIRES
    return Condition.ALWAYS


def _platform(raw: object, index: int, file: Path, credentials: dict[str, Credential]) -> Platform:
    at = f"platforms[{index}]"
    body = _mapping(raw, file, at, required=True)
    name = _text(body.get("name"), file, f"{at}.name")
    assert name is not None

    def learn(cred: str, inline: dict[str, Any]) -> None:
        # A platform may carry a definition inline; one missing everywhere gets a generic one.
        if cred not in credentials:
            credentials[cred] = _generic_credential(cred, inline.get("description"), inline.get("how_to_get"))

    required: list[str] = []
    for i, entry in enumerate(_sequence(body.get("required_credentials"), file, f"{at}.required_credentials")):
        cred, inline = _credential_name(entry, file, f"{at}.required_credentials[{i}]")
        learn(cred, inline)
        required.append(cred)

    groups: list[CredentialGroup] = []
    for i, entry in enumerate(_sequence(body.get("credential_groups"), file, f"{at}.credential_groups")):
        gat = f"{at}.credential_groups[{i}]"
        g = _mapping(entry, file, gat, required=True)
        members = [
            _credential_name(m, file, f"{gat}.require_one_of[{j}]")[0]
            for j, m in enumerate(_sequence(g.get("require_one_of", g.get("one_of")), file, f"{gat}.require_one_of"))
        ]
        if not members:
            _fail(file, f"{gat}.require_one_of", "missing or empty")
        for m in members:
            learn(m, {})
        groups.append(
            _build(
                file,
                gat,
                CredentialGroup,
                name=_text(g.get("name"), file, f"{gat}.name"),
                one_of=tuple(members),
                preferred=g.get("preferred") or members[0],
                description=g.get("description") or f"One of {', '.join(members)}.",
                how_to_get=g.get("how_to_get") or f"Set any one of {', '.join(members)}.",
            )
        )

    optional: list[OptionalCredential] = []
    for i, entry in enumerate(_sequence(body.get("optional_credentials"), file, f"{at}.optional_credentials")):
        oat = f"{at}.optional_credentials[{i}]"
        cred, inline = _credential_name(entry, file, oat)
        learn(cred, inline)
        when = _text(inline.get("only_when"), file, f"{oat}.only_when", required=False) or ""
        optional.append(OptionalCredential(name=cred, only_when=_condition(when) if when else Condition.ALWAYS, when_text=when))

    defaults = _mapping(body.get("resource_defaults"), file, f"{at}.resource_defaults")
    resources = _build(
        file,
        f"{at}.resource_defaults",
        ResourceDefaults,
        **{k: v for k, v in defaults.items() if k in _RESOURCE_FIELDS},
    )

    storage_raw = _mapping(body.get("storage"), file, f"{at}.storage", required=True)
    protocol = _text(storage_raw.get("protocol"), file, f"{at}.storage.protocol")
    storage = _build(
        file,
        f"{at}.storage",
        Storage,
        protocol=protocol,
        uri_form=_text(storage_raw.get("uri_format", storage_raw.get("uri_form")), file, f"{at}.storage.uri_format"),
    )
    forms, schemes = _PATH_FORMS.get(str(protocol), _DEFAULT_PATH_FORMS)

    return _build(
        file,
        at,
        Platform,
        name=name,
        display_name=body.get("display_name") or name,
        aliases=tuple(_sequence(body.get("aliases"), file, f"{at}.aliases")),
        description=_text(body.get("description"), file, f"{at}.description"),
        required_credentials=tuple(required),
        credential_groups=tuple(groups),
        optional_credentials=tuple(optional),
        resources=resources,
        storage=storage,
        path_forms=forms,
        path_schemes=schemes,
        dataset_examples=tuple(_sequence(body.get("dataset_examples"), file, f"{at}.dataset_examples")),
        preflight_checks=tuple(_sequence(body.get("preflight_checks"), file, f"{at}.preflight_checks")),
    )


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
            _fail(file, f"images.{dotted}", f"expected an image reference or a mapping, got {value!r}")
    return out


def _versions(file: Path) -> dict[str, str]:
    raw = _mapping(_read_yaml(file), file, "(top level)", required=True)
    images = _mapping(raw.get("images"), file, "images", required=True)
    return _flatten(images, file)


# ---------------------------------------------------------------------------
# models


def _is_absolute_image(ref: str) -> bool:
    return "/" in ref or ":" in ref


def _guess_kind(key: str) -> str:
    """Kind of an input listed without a type: folders are named ...dir/...root, anything else is a file."""
    last = re.split(r"[.\]]", key.rstrip("]"))[-1].lower()
    return "folder" if last.endswith(("dir", "dirs", "folder", "root")) else "file"


def _kind(type_name: object, key: str, file: Path, field: str) -> str:
    if type_name is None:
        return _guess_kind(key)
    if not isinstance(type_name, str):
        _fail(file, field, f"expected a type name, got {type_name!r}")
    lowered = type_name.lower()
    if lowered in ("folder", "dir", "directory"):
        return "folder"
    # file, local_glob (a pattern matching files) and anything else file-like
    return "file"


def _is_annotation(key: str, kind: str) -> bool:
    if kind != "file":
        return False
    last = key.rsplit(".", 1)[-1].lower()
    return bool(_ANNOTATION_TOKENS & set(re.split(r"[_\-\[\]]+", last)))


def _inputs(raw: object, file: Path, field: str) -> tuple[InputSpec, ...]:
    if raw is None:
        return ()
    items: list[tuple[str, dict[str, Any]]] = []
    if isinstance(raw, dict):
        for key, spec in raw.items():
            items.append((str(key), _mapping(spec, file, f"{field}.{key}")))
    elif isinstance(raw, list):
        for i, entry in enumerate(raw):
            if isinstance(entry, str):
                items.append((entry, {}))
            elif isinstance(entry, dict) and isinstance(entry.get("key"), str):
                items.append((entry["key"], entry))
            else:
                _fail(file, f"{field}[{i}]", f"expected a spec key, got {entry!r}")
    else:
        _fail(file, field, f"expected a mapping or a list, got {type(raw).__name__}")
    out = []
    for key, spec in items:
        kind = _kind(spec.get("type", spec.get("kind")), key, file, f"{field}.{key}.type")
        out.append(
            _build(
                file,
                f"{field}.{key}",
                InputSpec,
                key=key,
                kind=kind,
                optional=bool(spec.get("optional", False)),
                annotation=bool(spec["annotation"]) if "annotation" in spec else _is_annotation(key, kind),
            )
        )
    return tuple(out)


def _results_key(raw: object, file: Path, field: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        return str(next(iter(raw))) if raw else None
    if isinstance(raw, list):
        first = raw[0] if raw else None
        if isinstance(first, dict):
            return first.get("key")
        return str(first) if first is not None else None
    _fail(file, field, f"expected a mapping or a list, got {type(raw).__name__}")


def _root_template(entry: dict[str, Any]) -> str | None:
    """Template for one data_sources entry, or None when it cannot be expressed with {root}."""
    if "path_from_format" in entry:
        return "{root}"
    path = entry.get("path")
    if not isinstance(path, str):
        return None
    if path == "":
        return "{root}"
    placeholder = _PLACEHOLDER.match(path)
    if placeholder:
        return "{root}/annotations.json" if placeholder.group(1).endswith("annotation") else None
    if "{" in path or path.startswith("/"):
        return None
    return "{root}/" + path.lstrip("./")


def _roots(raw: object, file: Path, field: str) -> dict[str, dict[str, str]]:
    roots: dict[str, dict[str, str]] = {}
    for key, entry in _mapping(raw, file, field).items():
        if not isinstance(entry, dict):
            continue
        role = _SOURCE_ROLES.get(str(entry.get("source", "")))
        if role is None:
            continue
        mapping = entry.get("mapping")
        if isinstance(mapping, dict):
            # A list of sources: conventions describe the first one; optional members are left out.
            for sub, sub_entry in mapping.items():
                if not isinstance(sub_entry, dict) or sub_entry.get("optional"):
                    continue
                template = _root_template(sub_entry)
                if template:
                    roots.setdefault(role, {})[f"{key}[0].{sub}"] = template
            continue
        template = _root_template(entry)
        if template:
            roots.setdefault(role, {})[str(key)] = template
    return roots


def _summary(description: object) -> str:
    if not isinstance(description, str):
        return ""
    text = " ".join(description.split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first


def _model(file: Path, folder_name: str, versions: dict[str, str], versions_file: Path) -> Model:
    body = _mapping(_read_yaml(file), file, "(top level)", required=True)
    name = _text(body.get("name"), file, "name", required=False) or folder_name

    def image_ref(value: object, field: str) -> str | None:
        ref = _text(value, file, field, required=False)
        if ref and not _is_absolute_image(ref) and ref not in versions:
            _fail(file, field, f"image key {ref!r} is not defined in {versions_file}")
        return ref

    actions_raw = body.get("actions")
    if not actions_raw:
        _fail(file, "actions", "missing or empty; a model needs at least one action")
    actions_raw = _mapping(actions_raw, file, "actions")
    data_sources = _mapping(body.get("data_sources"), file, "data_sources")

    actions: dict[str, Action] = {}
    for action_name, spec in actions_raw.items():
        at = f"actions.{action_name}"
        spec = _mapping(spec, file, at, required=True)
        config_format = "args" if spec.get("mode") == "args" else spec.get("config_format") or "yaml"
        actions[str(action_name)] = _build(
            file,
            at,
            Action,
            name=str(action_name),
            command=_text(spec.get("command"), file, f"{at}.command"),
            config_format=config_format,
            container_image=image_ref(spec.get("container_image"), f"{at}.container_image"),
            image=image_ref(spec.get("image"), f"{at}.image"),
            inputs=_inputs(spec.get("inputs"), file, f"{at}.inputs"),
            results_key=_results_key(spec.get("outputs"), file, f"{at}.outputs"),
            roots=_roots(data_sources.get(action_name), file, f"data_sources.{action_name}"),
        )

    credentials = [
        _credential_name(c, file, f"required_credentials[{i}]")[0]
        for i, c in enumerate(_sequence(body.get("required_credentials"), file, "required_credentials"))
    ]
    shorthand = _mapping(body.get("spec_shorthand_keys"), file, "spec_shorthand_keys")
    gpus_key = body.get("gpu_spec_key") if "gpu_spec_key" in body else shorthand.get("num_gpus")
    return _build(
        file,
        "",
        Model,
        name=name,
        summary=_summary(body.get("summary") or body.get("description")),
        container_image=image_ref(body.get("container_image"), "container_image"),
        image=image_ref(body.get("image"), "image"),
        credentials=tuple(credentials),
        gpus_key=_text(gpus_key, file, "gpu_spec_key", required=False),
        nodes_key=_text(body.get("node_spec_key"), file, "node_spec_key", required=False),
        annotation_fields=tuple(_sequence(body.get("annotation_fields"), file, "annotation_fields")),
        actions=actions,
    )


# ---------------------------------------------------------------------------
# entry point


def load_skill_bank(path: Path) -> Catalog:
    """Read the skill bank at `path` (plain or `skills/` layout) into a Catalog."""
    path = Path(path)
    if not path.is_dir():
        raise CatalogError(f"{path}: field (folder): the skill bank folder does not exist", file=str(path), field="(folder)")

    manifest_file = _locate(path, MANIFEST)
    versions_file = _locate(path, VERSIONS)
    models_dir = _locate(path, MODELS)

    manifest = _mapping(_read_json(manifest_file), manifest_file, "(top level)", required=True)
    credentials = _credential_definitions(manifest, manifest_file)

    platforms: dict[str, Platform] = {}
    for index, raw in enumerate(_sequence(manifest.get("platforms"), manifest_file, "platforms")):
        platform = _platform(raw, index, manifest_file, credentials)
        if platform.name in platforms:
            _fail(manifest_file, f"platforms[{index}].name", f"platform {platform.name!r} is defined twice")
        platforms[platform.name] = platform
    if not platforms:
        _fail(manifest_file, "platforms", "missing or empty")

    versions = _versions(versions_file)

    model_files = sorted(models_dir.glob(f"*/{SKILL_INFO.as_posix()}"))
    if not model_files:
        _fail(models_dir, "(folder)", f"no models/<network>/{SKILL_INFO.as_posix()} files found")
    models: dict[str, Model] = {}
    for model_file in model_files:
        folder_name = model_file.parent.parent.name
        model = _model(model_file, folder_name, versions, versions_file)
        if model.name in models:
            _fail(model_file, "name", f"model {model.name!r} is defined twice")
        for cred in model.credentials:
            if cred not in credentials:
                credentials[cred] = _generic_credential(cred)
        models[model.name] = model

    s3_required = ("ACCESS_KEY", "SECRET_KEY")
    s3_optional = ("S3_ENDPOINT_URL", "CLOUD_REGION")
    for cred in (*s3_required, *s3_optional):
        if cred not in credentials:
            credentials[cred] = _generic_credential(cred)

    interval = manifest.get("default_status_interval_minutes", 5)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0:
        _fail(manifest_file, "default_status_interval_minutes", f"expected a positive whole number, got {interval!r}")
    return _build(
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
