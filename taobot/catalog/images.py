"""The default container image of a model's action, and who can pull it.

`resolve_image` applies the fixed precedence of the image fields; a dotted key
resolves through the versions table. `registry_access` says, for an image
reference, what pulling it needs when not everyone can: NVIDIA's public
`nvcr.io/nvidia/...` images need nothing, its pre-release (`nvstaging`) and
other organisations' images need an NGC key with access to that organisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from taobot.catalog.schema import Action, Catalog, Model
from taobot.errors import CatalogError

PUBLIC_NGC_ORG = "nvidia"
NGC_REGISTRY = "nvcr.io"


@dataclass(frozen=True)
class ImageResolution:
    image: str
    source: str  # which field supplied it, e.g. "actions.train.image"
    key: str | None = None  # the versions-table key, when one was used
    access: str | None = None  # what pulling it needs, when not everyone can


def registry_access(ref: str) -> str | None:
    """What pulling `ref` needs, in one sentence; None for a public NGC image or a registry taobot knows nothing of."""
    registry, _, rest = ref.partition("/")
    if registry != NGC_REGISTRY or not rest:
        return None
    org = rest.split("/", 1)[0]
    if org == PUBLIC_NGC_ORG:
        return None
    if org == "nvstaging":
        return (
            "This is a pre-release image in NGC's `nvstaging` organisation: pulling it needs an NGC key "
            "with access to that organisation. Without one, override it with a released `nvcr.io/nvidia/...` image."
        )
    return (
        f"This image is in NGC's `{org}` organisation, which is not public: pulling it needs an NGC key "
        "with access to that organisation."
    )


def resolve_image(catalog: Catalog, model: Model, action: Action) -> ImageResolution:
    """Resolve the default container image in the fixed precedence order.

    actions.<action>.container_image, actions.<action>.image, container_image,
    image. A value without "/" is a dotted key into the versions table. The
    access note is the one recorded beside the field that supplied the image,
    or else what its registry needs.
    """
    candidates = [
        (f"actions.{action.name}.container_image", action.container_image, action.image_access),
        (f"actions.{action.name}.image", action.image, action.image_access),
        ("container_image", model.container_image, model.image_access),
        ("image", model.image, model.image_access),
    ]
    for source, ref, access in candidates:
        if not ref:
            continue
        if "/" in ref or ":" in ref:
            return ImageResolution(image=ref, source=source, access=access or registry_access(ref))
        if ref in catalog.versions:
            image = catalog.versions[ref]
            return ImageResolution(image=image, source=source, key=ref, access=access or registry_access(image))
        raise CatalogError(
            f"model {model.name}: {source} names image key {ref!r}, which the versions table does not define",
            field=source,
        )
    if model.container_free:
        raise CatalogError(
            f"model {model.name} runs without a container image, and taobot launches containers only", field="image"
        )
    raise CatalogError(f"model {model.name} defines no container image for action {action.name}", field="image")
