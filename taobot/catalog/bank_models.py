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
from taobot.catalog.schema import Action, InputSpec, Model, NotRunnable

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
_VALUE_TYPES = frozenset({"list", "text", "string", "number", "bool"})
# Names a model is also known by must look like a model name someone types.
_ALIAS = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
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
        if str(spec.get("type", "")).lower() in _VALUE_TYPES:
            continue  # a list of words (e.g. captions) is a spec value, not a path taobot maps and checks
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
    """Template for one data_sources entry, or None when it cannot be expressed with {root}.

    An entry the bank extracts at run time (`runtime: extracted_folder`, an
    archive in the dataset root) has no path taobot can hand over as it is.
    """
    if entry.get("runtime") == "extracted_folder":
        return None
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


def _roots(raw: object, file: Path, field: str, declared: set[str]) -> dict[str, dict[str, str]]:
    """Root conventions of one action: role -> spec key -> template, for keys the action declares as inputs.

    A role with a required member the bank extracts from an archive at run time
    gets no conventions at all: half a mapping would leave the rest of that
    dataset unasked, so its spec keys are given one by one instead.
    """
    roots: dict[str, dict[str, str]] = {}
    packed: set[str] = set()

    def add(role: str, key: str, entry: dict[str, Any]) -> None:
        if entry.get("runtime") == "extracted_folder" and not entry.get("optional"):
            packed.add(role)
        template = _root_template(entry)
        if template and key in declared:
            roots.setdefault(role, {})[key] = template

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
                if isinstance(sub_entry, dict) and not sub_entry.get("optional"):
                    add(role, f"{key}[0].{sub}", sub_entry)
            continue
        add(role, str(key), entry)
    return {role: keys for role, keys in roots.items() if role not in packed}


def _summary(description: object) -> str:
    if not isinstance(description, str):
        return ""
    text = " ".join(description.split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first


def normal_name(name: str) -> str:
    """A network name as people type it: lower case, `-` between words."""
    return name.strip().lower().replace("_", "-")


def _aliases(body: dict[str, Any], name: str, file: Path) -> tuple[str, ...]:
    """Other names of the network: its `network_arch` and its `aliases` that look like model names."""
    found = [normal_name(a) for a in as_list(body.get("aliases"), file, "aliases") if isinstance(a, str)]
    arch = body.get("network_arch")
    if isinstance(arch, str) and arch:
        found.insert(0, normal_name(arch))
    return tuple(dict.fromkeys(a for a in found if _ALIAS.match(a) and a != normal_name(name)))


def _has_image(body: dict[str, Any], actions: dict[str, Any]) -> bool:
    fields = ("container_image", "image")
    return any(body.get(f) for f in fields) or any(
        isinstance(spec, dict) and any(spec.get(f) for f in fields) for spec in actions.values()
    )


def model_from_skill_info(
    raw: object,
    file: Path,
    folder_name: str,
    versions: dict[str, str],
    versions_file: Path,
    *,
    name: str | None = None,
    stamps: dict[str, str] | None = None,
) -> Model:
    """A model's skill_info document (read from `file`) into a `Model`; image keys must be in `versions`.

    `name` is given when the layout names the network by its folder. `stamps`
    maps the stamped image literals of the document to the versions keys their
    comments name: such an image is recorded by its key, and must equal the
    versions table's value (a bank whose stamps drifted is broken).
    """
    body = as_mapping(raw, file, "(top level)", required=True)
    if name is None:
        name = as_text(body.get("name"), file, "name", required=False) or folder_name
    stamps = stamps or {}

    def image_ref(value: object, field: str) -> str | None:
        ref = as_text(value, file, field, required=False)
        if ref and ref in stamps:
            key = stamps[ref]
            if key not in versions:
                fail(file, field, f"versions key {key!r} in the comment is not defined in {versions_file}")
            if versions[key] != ref:
                fail(file, field, f"stamped image {ref} differs from {versions_file} images.{key} = {versions[key]}")
            return key
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
        inputs = _inputs(spec.get("inputs"), file, f"{at}.inputs")
        declared = {i.key for i in inputs}
        actions[str(action_name)] = build(
            file,
            at,
            Action,
            name=str(action_name),
            command=as_text(spec.get("command"), file, f"{at}.command"),
            config_format=config_format,
            container_image=image_ref(spec.get("container_image"), f"{at}.container_image"),
            image=image_ref(spec.get("image"), f"{at}.image"),
            inputs=inputs,
            results_key=_results_key(spec.get("outputs"), file, f"{at}.outputs"),
            roots=_roots(data_sources.get(action_name), file, f"data_sources.{action_name}", declared),
        )

    credentials = [
        credential_ref(c, file, f"required_credentials[{i}]")[0]
        for i, c in enumerate(as_list(body.get("required_credentials"), file, "required_credentials"))
    ]
    shorthand = as_mapping(body.get("spec_shorthand_keys"), file, "spec_shorthand_keys")
    gpus_key = body.get("gpu_spec_key") if "gpu_spec_key" in body else shorthand.get("num_gpus")
    # `container_image: null` and no image anywhere: the bank runs it without a container.
    container_free = "container_image" in body and not _has_image(body, actions_raw)
    return build(
        file,
        "",
        Model,
        name=name,
        aliases=_aliases(body, name, file),
        container_free=container_free,
        summary=_summary(body.get("summary") or body.get("description")),
        container_image=image_ref(body.get("container_image"), "container_image"),
        image=image_ref(body.get("image"), "image"),
        credentials=tuple(credentials),
        gpus_key=as_text(gpus_key, file, "gpu_spec_key", required=False),
        nodes_key=as_text(body.get("node_spec_key"), file, "node_spec_key", required=False),
        annotation_fields=tuple(as_list(body.get("annotation_fields"), file, "annotation_fields")),
        actions=actions,
    )


CONTAINER_FREE_REASON = (
    "runs in a Python environment without a container image (the skill bank's virtualenv platform); "
    "taobot launches containers only"
)


def split_container_free(
    models: dict[str, Model], sources: dict[str, str]
) -> tuple[dict[str, Model], dict[str, NotRunnable]]:
    """(the models taobot can launch, the container-free ones as not runnable, with the file each came from)."""
    runnable = {n: m for n, m in models.items() if not m.container_free}
    others = {
        n: NotRunnable(name=n, reason=CONTAINER_FREE_REASON, source=sources[n])
        for n, m in models.items()
        if m.container_free
    }
    return runnable, others
