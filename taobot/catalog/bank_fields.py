"""Reading a skill bank's files and fields, whatever the bank's layout: the
JSON/YAML documents, the typed field readers, the versions table, and the
one error form.

Every problem is raised as a `CatalogError` whose message starts with the file
and the field (``.../skill_info.yaml: field actions: ...``), so whoever
publishes the bank sees where to look without reading taobot's code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml
from pydantic import ValidationError

from taobot.errors import CatalogError

T = TypeVar("T")


# ---------------------------------------------------------------------------
# errors and field readers


def fail(file: Path, field: str, detail: str) -> NoReturn:
    raise CatalogError(f"{file}: field {field}: {detail}", file=str(file), field=field)


def build(file: Path, prefix: str, factory: Callable[..., T], /, **kwargs: Any) -> T:
    """Construct a schema object; a validation error becomes a CatalogError naming file and field."""
    try:
        return factory(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        field = ".".join(p for p in (prefix, loc) if p) or "(top level)"
        raise CatalogError(f"{file}: field {field}: {first['msg']}", file=str(file), field=field) from exc
    except (TypeError, ValueError) as exc:
        fail(file, prefix or "(top level)", str(exc))


def as_mapping(value: object, file: Path, field: str, *, required: bool = False) -> dict[str, Any]:
    if value is None:
        if required:
            fail(file, field, "missing")
        return {}
    if not isinstance(value, dict):
        fail(file, field, f"expected a mapping, got {type(value).__name__}")
    return value


def as_list(value: object, file: Path, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        fail(file, field, f"expected a list, got {type(value).__name__}")
    return value


def as_text(value: object, file: Path, field: str, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            fail(file, field, "missing")
        return None
    if not isinstance(value, str):
        fail(file, field, f"expected text, got {type(value).__name__}")
    return value


def credential_ref(entry: object, file: Path, field: str) -> tuple[str, dict[str, Any]]:
    """A credential reference is a bare name or a mapping with `name` (and maybe inline prose)."""
    if isinstance(entry, str) and entry:
        return entry, {}
    if isinstance(entry, dict):
        return as_text(entry.get("name"), file, f"{field}.name"), entry  # type: ignore[return-value]
    fail(file, field, f"expected a credential name or a mapping with name, got {entry!r}")


# ---------------------------------------------------------------------------
# documents


def _read_text(file: Path) -> str:
    if not file.is_file():
        fail(file, "(file)", "not found (looked in the bank folder and under skills/)")
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(file, "(file)", f"cannot read: {exc}")


def read_json(file: Path) -> object:
    text = _read_text(file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(file, "(document)", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")


def read_yaml(file: Path) -> object:
    text = _read_text(file)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        fail(file, "(document)", f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}")


# ---------------------------------------------------------------------------
# where files are

# A bank keeps its files in its root folder or under `skills/` (versions.yaml may sit in either).
PREFIXES = (Path("."), Path("skills"))


def locate(base: Path, relative: Path) -> Path:
    """The file in the bank root or under `skills/`; the first tried when neither exists."""
    for prefix in PREFIXES:
        candidate = base / prefix / relative
        if candidate.exists():
            return candidate
    return base / relative


# ---------------------------------------------------------------------------
# the versions table


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


def read_versions(file: Path) -> dict[str, str]:
    """`images:` of a versions.yaml, flattened to dotted keys (`tao_toolkit.pyt`); wheels and the rest are not images."""
    raw = as_mapping(read_yaml(file), file, "(top level)", required=True)
    images = as_mapping(raw.get("images"), file, "images", required=True)
    return _flatten(images, file)


# `container_image: nvcr.io/...:7.1.0-pyt  # versions-key: images.tao_toolkit.pyt`: a stamped
# literal with the versions key it came from, in a comment that YAML parsing drops.
_STAMP = re.compile(r"^\s*(?:container_image|image):\s*(\S+)\s*#\s*versions-key:\s*(?:images\.)?(\S+)", re.M)


def versions_stamps(file: Path) -> dict[str, str]:
    """Stamped image literal -> the versions key its comment names, for one document."""
    return {literal.strip("'\""): key for literal, key in _STAMP.findall(_read_text(file))}
