"""A model's skill_info document into the catalog schema: its actions, their
inputs, results key and dataset root conventions, and the image keys checked
against the versions table.

Layout-independent: the caller reads the document and passes the file it came
from, so error messages name that file and field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from taobot.catalog.bank_fields import (
    as_list,
    as_mapping,
    as_text,
    build,
    credential_ref,
    fail,
)
from taobot.catalog.schema import Action, InputSpec, Model

# data_sources `source` -> root role.
_SOURCE_ROLES = {
    "train_dataset": "train",
    "train_datasets": "train",
    "eval_dataset": "eval",
    "eval_datasets": "eval",
    "calibration_dataset": "calibration",
    "calibration_datasets": "calibration",
}

_ANNOTATION_TOKENS = frozenset({"json", "ann", "annotation", "annotations", "metadata"})
_PLACEHOLDER = re.compile(r"^\{([A-Za-z0-9_]+)\}$")


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
        fail(file, field, f"expected a type name, got {type_name!r}")
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
            items.append((str(key), as_mapping(spec, file, f"{field}.{key}")))
    elif isinstance(raw, list):
        for i, entry in enumerate(raw):
            if isinstance(entry, str):
                items.append((entry, {}))
            elif isinstance(entry, dict) and isinstance(entry.get("key"), str):
                items.append((entry["key"], entry))
            else:
                fail(file, f"{field}[{i}]", f"expected a spec key, got {entry!r}")
    else:
        fail(file, field, f"expected a mapping or a list, got {type(raw).__name__}")
    out = []
    for key, spec in items:
        kind = _kind(spec.get("type", spec.get("kind")), key, file, f"{field}.{key}.type")
        out.append(
            build(
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
    fail(file, field, f"expected a mapping or a list, got {type(raw).__name__}")


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
    for key, entry in as_mapping(raw, file, field).items():
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


def model_from_skill_info(
    raw: object, file: Path, folder_name: str, versions: dict[str, str], versions_file: Path
) -> Model:
    """A model's skill_info document (read from `file`) into a `Model`; image keys must be in `versions`."""
    body = as_mapping(raw, file, "(top level)", required=True)
    name = as_text(body.get("name"), file, "name", required=False) or folder_name

    def image_ref(value: object, field: str) -> str | None:
        ref = as_text(value, file, field, required=False)
        if ref and not _is_absolute_image(ref) and ref not in versions:
            fail(file, field, f"image key {ref!r} is not defined in {versions_file}")
        return ref

    actions_raw = body.get("actions")
    if not actions_raw:
        fail(file, "actions", "missing or empty; a model needs at least one action")
    actions_raw = as_mapping(actions_raw, file, "actions")
    data_sources = as_mapping(body.get("data_sources"), file, "data_sources")

    actions: dict[str, Action] = {}
    for action_name, spec in actions_raw.items():
        at = f"actions.{action_name}"
        spec = as_mapping(spec, file, at, required=True)
        config_format = "args" if spec.get("mode") == "args" else spec.get("config_format") or "yaml"
        actions[str(action_name)] = build(
            file,
            at,
            Action,
            name=str(action_name),
            command=as_text(spec.get("command"), file, f"{at}.command"),
            config_format=config_format,
            container_image=image_ref(spec.get("container_image"), f"{at}.container_image"),
            image=image_ref(spec.get("image"), f"{at}.image"),
            inputs=_inputs(spec.get("inputs"), file, f"{at}.inputs"),
            results_key=_results_key(spec.get("outputs"), file, f"{at}.outputs"),
            roots=_roots(data_sources.get(action_name), file, f"data_sources.{action_name}"),
        )

    credentials = [
        credential_ref(c, file, f"required_credentials[{i}]")[0]
        for i, c in enumerate(as_list(body.get("required_credentials"), file, "required_credentials"))
    ]
    shorthand = as_mapping(body.get("spec_shorthand_keys"), file, "spec_shorthand_keys")
    gpus_key = body.get("gpu_spec_key") if "gpu_spec_key" in body else shorthand.get("num_gpus")
    return build(
        file,
        "",
        Model,
        name=name,
        summary=_summary(body.get("summary") or body.get("description")),
        container_image=image_ref(body.get("container_image"), "container_image"),
        image=image_ref(body.get("image"), "image"),
        credentials=tuple(credentials),
        gpus_key=as_text(gpus_key, file, "gpu_spec_key", required=False),
        nodes_key=as_text(body.get("node_spec_key"), file, "node_spec_key", required=False),
        annotation_fields=tuple(as_list(body.get("annotation_fields"), file, "annotation_fields")),
        actions=actions,
    )
