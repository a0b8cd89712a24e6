"""Skill bank credentials and platforms into the catalog schema: the
credential definitions, and one platform entry into a `Platform`, whether
the entry sits in the seed-era manifest or in its own platform skill file.

Layout-independent: the caller reads the file and says where in it the entry
sits, so error messages name that file and field.
"""

from __future__ import annotations

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
from taobot.catalog.schema import (
    Condition,
    Credential,
    CredentialGroup,
    OptionalCredential,
    Platform,
    ResourceDefaults,
    Storage,
)

# Storage protocol -> (path forms, URI schemes accepted as absolute paths).
_PATH_FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lustre": (("absolute", "s3"), ("lustre",)),
    "local": (("absolute", "s3"), ("file",)),
    "aws": (("s3", "mounted"), ()),
}
_DEFAULT_PATH_FORMS: tuple[tuple[str, ...], tuple[str, ...]] = (("s3", "mounted"), ())

_RESOURCE_FIELDS = frozenset(ResourceDefaults.model_fields)


def _is_secret(name: str) -> bool:
    upper = name.upper()
    if upper in ("SSH_KEY_PATH", "ACCESS_KEY"):
        return False
    return any(word in upper for word in ("TOKEN", "KEY", "SECRET", "PASSWORD"))


def generic_credential(name: str, description: str | None = None, how_to_get: str | None = None) -> Credential:
    return Credential(
        name=name,
        description=description or f"{name}, named by the skill bank without a description.",
        how_to_get=how_to_get or f"Ask the owner of the skill bank what {name} should hold.",
        secret=_is_secret(name),
    )


def credential_definitions(raw: dict[str, Any], file: Path) -> dict[str, Credential]:
    out: dict[str, Credential] = {}
    defs = as_mapping(raw.get("credential_definitions"), file, "credential_definitions")
    for name, body in defs.items():
        field = f"credential_definitions.{name}"
        body = as_mapping(body, file, field, required=True)
        out[name] = build(
            file,
            field,
            Credential,
            name=name,
            description=as_text(body.get("description"), file, f"{field}.description"),
            how_to_get=as_text(body.get("how_to_get"), file, f"{field}.how_to_get"),
            secret=bool(body["secret"]) if "secret" in body else _is_secret(name),
            example=body.get("example"),
        )
    return out


def _condition(text: str) -> Condition:
    lowered = text.lower()
    if "s3://" in lowered:
        return Condition.S3_URI
    if "huggingface" in lowered or "hugging face" in lowered or "model" in lowered:
        return Condition.MODEL_REQUIRES
    return Condition.ALWAYS


def platform_from_entry(
    raw: object,
    file: Path,
    at: str,
    credentials: dict[str, Credential],
    *,
    name: str | None = None,
    generic: set[str] | None = None,
) -> Platform:
    """One platform entry (found at field `at` of `file`) into a `Platform`.

    Credentials it names but nobody defines are added to `credentials`, with a
    generic text where the bank gives none; their names go into `generic`.
    `name` is given when the layout names the platform by its folder, and then
    the entry's own prose (display name, description) is optional.
    """
    pre = f"{at}." if at else ""  # a platform skill file holds one entry at its top level
    body = as_mapping(raw, file, at or "(top level)", required=True)
    named_by_folder = name is not None
    if name is None:
        name = as_text(body.get("name"), file, f"{pre}name")
    assert name is not None

    def learn(cred: str, inline: dict[str, Any]) -> None:
        # A platform may carry a definition inline; one missing everywhere gets a generic one.
        if cred not in credentials:
            credentials[cred] = generic_credential(cred, inline.get("description"), inline.get("how_to_get"))
            if generic is not None and not (inline.get("description") and inline.get("how_to_get")):
                generic.add(cred)

    required: list[str] = []
    for i, entry in enumerate(as_list(body.get("required_credentials"), file, f"{pre}required_credentials")):
        cred, inline = credential_ref(entry, file, f"{pre}required_credentials[{i}]")
        learn(cred, inline)
        required.append(cred)

    groups: list[CredentialGroup] = []
    for i, entry in enumerate(as_list(body.get("credential_groups"), file, f"{pre}credential_groups")):
        gat = f"{pre}credential_groups[{i}]"
        g = as_mapping(entry, file, gat, required=True)
        members = [
            credential_ref(m, file, f"{gat}.require_one_of[{j}]")[0]
            for j, m in enumerate(as_list(g.get("require_one_of", g.get("one_of")), file, f"{gat}.require_one_of"))
        ]
        if not members:
            fail(file, f"{gat}.require_one_of", "missing or empty")
        for m in members:
            learn(m, {})
        groups.append(
            build(
                file,
                gat,
                CredentialGroup,
                name=as_text(g.get("name"), file, f"{gat}.name"),
                one_of=tuple(members),
                preferred=g.get("preferred") or members[0],
                description=g.get("description") or f"One of {', '.join(members)}.",
                how_to_get=g.get("how_to_get") or f"Set any one of {', '.join(members)}.",
            )
        )

    optional: list[OptionalCredential] = []
    for i, entry in enumerate(as_list(body.get("optional_credentials"), file, f"{pre}optional_credentials")):
        oat = f"{pre}optional_credentials[{i}]"
        cred, inline = credential_ref(entry, file, oat)
        learn(cred, inline)
        when = as_text(inline.get("only_when"), file, f"{oat}.only_when", required=False) or ""
        optional.append(
            OptionalCredential(name=cred, only_when=_condition(when) if when else Condition.ALWAYS, when_text=when)
        )

    defaults = as_mapping(body.get("resource_defaults"), file, f"{pre}resource_defaults")
    resources = build(
        file,
        f"{pre}resource_defaults",
        ResourceDefaults,
        # "runtime-supplied": the bank sets no default; the launch supplies it (e.g. SLURM_CONTAINER_MOUNTS).
        **{k: v for k, v in defaults.items() if k in _RESOURCE_FIELDS and v != "runtime-supplied"},
    )

    # The manifest calls it `storage`, a platform skill file `cloud_storage`.
    storage_field = (
        "cloud_storage" if "cloud_storage" in body or (named_by_folder and "storage" not in body) else "storage"
    )
    sat = f"{pre}{storage_field}"
    storage_raw = as_mapping(body.get(storage_field), file, sat, required=True)
    protocol = as_text(storage_raw.get("protocol"), file, f"{sat}.protocol")
    storage = build(
        file,
        sat,
        Storage,
        protocol=protocol,
        uri_form=as_text(storage_raw.get("uri_format", storage_raw.get("uri_form")), file, f"{sat}.uri_format"),
    )
    forms, schemes = _PATH_FORMS.get(str(protocol), _DEFAULT_PATH_FORMS)
    description = as_text(body.get("description"), file, f"{pre}description", required=not named_by_folder)

    return build(
        file,
        at,
        Platform,
        name=name,
        display_name=body.get("display_name") or name,
        aliases=tuple(as_list(body.get("aliases"), file, f"{pre}aliases")),
        description=description or "",  # a platform skill file has none; taobot's own description fills in
        required_credentials=tuple(required),
        credential_groups=tuple(groups),
        optional_credentials=tuple(optional),
        resources=resources,
        storage=storage,
        path_forms=forms,
        path_schemes=schemes,
        dataset_examples=tuple(as_list(body.get("dataset_examples"), file, f"{pre}dataset_examples")),
        preflight_checks=tuple(as_list(body.get("preflight_checks"), file, f"{pre}preflight_checks")),
    )
