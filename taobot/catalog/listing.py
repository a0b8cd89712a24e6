"""What `taobot platforms` prints: the catalog's platforms as text or JSON-ready data.

Pure: catalog in, strings and dicts out. Each platform says where its
definition came from (the embedded catalog or a skill bank file), and the
platforms a skill bank describes but taobot cannot run are listed as such.
"""

from __future__ import annotations

from taobot.catalog.schema import Catalog, Platform


def prompt_defaults(catalog: Catalog) -> dict[str, object]:
    return {
        "long_running_enabled": catalog.default_long_running,
        "status_interval_minutes": catalog.default_status_interval_minutes,
    }


def definition_of(catalog: Catalog, platform: Platform) -> str:
    """ "embedded" or the skill bank file the platform's definition was read from."""
    return catalog.platform_sources.get(platform.name, catalog.source)


def _catalog_info(catalog: Catalog) -> dict[str, object]:
    return {"source": catalog.source, "layout": catalog.layout, "description": catalog.description}


def platforms_data(catalog: Catalog) -> dict[str, object]:
    """Every platform (with its definition's origin), the ones taobot cannot run, and the loader's notes."""
    return {
        "catalog": _catalog_info(catalog),
        "prompt_defaults": prompt_defaults(catalog),
        "platforms": [
            {**p.model_dump(mode="json"), "definition": definition_of(catalog, p)} for p in catalog.platforms.values()
        ],
        "not_runnable": [e.model_dump(mode="json") for e in catalog.unsupported_platforms.values()],
        "notes": list(catalog.notes),
    }


def platform_data(catalog: Catalog, platform: Platform) -> dict[str, object]:
    """One platform with the definitions of every credential it names."""
    body = platform.model_dump(mode="json")
    body["definition"] = definition_of(catalog, platform)
    body["credential_definitions"] = {
        n: catalog.credentials[n].model_dump(mode="json")
        for n in [
            *platform.required_credentials,
            *(m for g in platform.credential_groups for m in g.one_of),
            *(o.name for o in platform.optional_credentials),
        ]
    }
    body["prompt_defaults"] = prompt_defaults(catalog)
    return body


def platforms_text(catalog: Catalog) -> str:
    defaults = prompt_defaults(catalog)
    lines = [
        f"Prompt defaults: long_running_enabled={str(defaults['long_running_enabled']).lower()}, "
        f"status_interval_minutes={defaults['status_interval_minutes']}",
        f"Catalog: {catalog.description}",
    ]
    for p in catalog.platforms.values():
        aliases = f" (aliases: {', '.join(p.aliases)})" if p.aliases else ""
        required = ", ".join(p.required_credentials) or "none"
        groups = "; ".join(f"one of {'/'.join(g.one_of)}" for g in p.credential_groups)
        lines.append(f"{p.name:<13} {p.display_name}{aliases}")
        lines.append(f"  {p.description}")
        lines.append(f"  required: {required}" + (f"; {groups}" if groups else ""))
        lines.append(f"  definition: {definition_of(catalog, p)}")
    if catalog.unsupported_platforms:
        lines.append("Not runnable (described by the skill bank, never offered):")
        for entry in catalog.unsupported_platforms.values():
            lines.append(f"{entry.name:<13} not runnable: {entry.reason}")
            lines.append(f"  definition: {entry.source}")
    if catalog.notes:
        lines.append("Not read:")
        lines += [f"  - {note}" for note in catalog.notes]
    return "\n".join(lines)


def platform_text(catalog: Catalog, platform: Platform) -> str:
    creds = catalog.credentials
    lines = [
        f"{platform.name} — {platform.display_name}"
        + (f" (aliases: {', '.join(platform.aliases)})" if platform.aliases else "")
    ]
    lines.append(platform.description)
    lines.append(f"Definition: {definition_of(catalog, platform)}")
    lines.append("Required credentials:" if platform.required_credentials else "Required credentials: none")
    for name in platform.required_credentials:
        lines.append(f"  {name}: {creds[name].description}\n    how to get it: {creds[name].how_to_get}")
    for group in platform.credential_groups:
        members = ", ".join(m + (" (preferred)" if m == group.preferred else "") for m in group.one_of)
        lines.append(
            f"Credential group {group.name}: one of {members}\n  {group.description}\n  how to get it: {group.how_to_get}"
        )
    if platform.optional_credentials:
        lines.append("Optional credentials:")
        for opt in platform.optional_credentials:
            when = f"only when {opt.when_text}" if opt.when_text else "any time"
            lines.append(f"  {opt.name} [{opt.only_when.value}] — {when}: {creds[opt.name].description}")
    lines.append(
        "S3 credentials (any platform, when a dataset or result URI uses s3://): "
        + ", ".join(catalog.s3_required)
        + "; optional "
        + ", ".join(catalog.s3_optional)
    )
    res = platform.resources.model_dump(exclude_none=True)
    lines.append("Resource defaults: " + ", ".join(f"{k}={v}" for k, v in res.items()))
    lines.append(f"Storage: {platform.storage.protocol}, {platform.storage.uri_form}")
    lines.append("Dataset examples:\n" + "\n".join(f"  {e}" for e in platform.dataset_examples))
    lines.append("Preflight checks:\n" + "\n".join(f"  - {c}" for c in platform.preflight_checks))
    return "\n".join(lines)
