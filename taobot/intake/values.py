"""Whether one given value can be right: image references, dataset paths, credential values.

Credential value rules (pattern and the shape to show when it does not
match) are catalog data; this module only applies them.
"""

from __future__ import annotations

import re

from taobot.catalog import Catalog, Platform

MIN_INTERVAL, MAX_INTERVAL = 1, 60
INTERVAL_ADVICE = "1–2 min for smoke tests, 5 for normal training, 10–15 for long runs"
# Words people use for a dataset role, and the role they mean.
ROLE_ALIASES = {
    "train": "train",
    "train_root": "train",
    "eval": "eval",
    "eval_root": "eval",
    "val": "eval",
    "val_root": "eval",
    "calibration": "calibration",
    "calibration_root": "calibration",
    "calib": "calibration",
}


_IMAGE_REF = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def check_image_ref(ref: str) -> str | None:
    """Why this is not a usable image reference, or None."""
    if not ref.strip():
        return (
            "The image override is empty. Give a full reference, e.g. `image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt`."
        )
    if len(ref) > 255 or not _IMAGE_REF.match(ref):
        return (
            f"`{ref}` is not a valid image reference. Expected `registry/path/name:tag` "
            "(lowercase path, optional `@sha256:<digest>`), e.g. `image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt`."
        )
    return None


def path_kind(platform: Platform, value: str) -> tuple[str | None, str | None]:
    """Classify a dataset or result path for this platform: (kind, error).

    kind is "s3", "absolute" (verifiable from the platform) or "mounted"
    (cannot be verified from the bot's host; needs the person's word).
    """
    examples = ", ".join(f"`{e}`" for e in platform.dataset_examples[:2])
    if any(ch in value for ch in "\n\r\t\0"):
        return None, "Paths cannot contain tabs, newlines or NUL characters."
    if value.startswith("s3://"):
        bucket = value[5:].split("/", 1)[0]
        if not bucket:
            return None, f"`{value}` has no bucket. Expected `s3://bucket/path`."
        return "s3", None
    scheme = re.match(r"^([a-z][a-z0-9+.-]*)://(.*)$", value)
    if scheme:
        name, rest = scheme.group(1), scheme.group(2)
        if name in platform.path_schemes:
            if not rest.startswith("/"):
                return None, f"`{value}` must hold an absolute path, e.g. `{name}:///lustre/...`."
            return "absolute", None
        if name == "file":
            return None, (
                f"`{value}` is a path on the bot's host; {platform.display_name} jobs cannot read it. "
                f"Expected: {examples}."
            )
        return None, f"`{name}://` paths are not supported on {platform.display_name}. Expected: {examples}."
    if value.startswith("/"):
        if "absolute" in platform.path_forms:
            return "absolute", None
        return "mounted", None
    return None, f"`{value}` is not an absolute path. Expected: {examples}."


def check_input_path(platform: Platform | None, value: str) -> str | None:
    if platform is None:
        if not (value.startswith(("/", "s3://")) or "://" in value):
            return f"`{value}` is not an absolute path or URI."
        return None
    return path_kind(platform, value)[1]


def check_credential_value(catalog: Catalog, name: str, value: str) -> str | None:
    """Why this value cannot be right for the credential, or None. Never echoes the value."""
    if not value.strip():
        return f"{name} is empty."
    if any(ch in value for ch in "\n\r\0"):
        return f"{name} must be a single line."
    credential = catalog.credentials.get(name)
    if credential is not None and credential.pattern and not re.match(credential.pattern, value.strip()):
        return f"{name} should be {credential.shape}."
    return None
