"""Which models an AutoML search can run for, and what it searches by default (embedded `data/automl.yaml`).

Plain data, read once: the network's name for the engine, the metric a trial is judged by and its direction,
the spec key of the epoch count, and the default search space (ranges or choices per spec key).
"""

from __future__ import annotations

import functools
from importlib import resources

import yaml
from pydantic import Field, model_validator

from taobot.catalog.schema import Catalog, Frozen
from taobot.errors import CatalogError

Scalar = str | int | float | bool


class SearchRange(Frozen):
    """One parameter's search space: a number between `min` and `max`, or one of `choices`."""

    min: float | None = None
    max: float | None = None
    choices: tuple[Scalar, ...] = ()
    default: Scalar | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> "SearchRange":
        numeric = self.min is not None or self.max is not None
        if numeric == bool(self.choices):
            raise ValueError("a search range is either min and max, or choices")
        if numeric and (self.min is None or self.max is None or self.min >= self.max):
            raise ValueError(f"a search range needs min < max (got {self.min}..{self.max})")
        return self

    @property
    def whole(self) -> bool:
        """A range of whole numbers (both ends integers, and the default too when there is one)."""
        ends = (self.min, self.max) + ((self.default,) if isinstance(self.default, (int, float)) else ())
        return self.min is not None and all(float(v).is_integer() for v in ends if v is not None)


class AutomlSupport(Frozen):
    model: str
    network: str
    metric: str
    higher_is_better: bool
    epochs_key: str | None = None
    search: dict[str, SearchRange] = Field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def embedded_automl() -> dict[str, AutomlSupport]:
    text = resources.files("taobot.catalog").joinpath("data/automl.yaml").read_text(encoding="utf-8")
    raw = (yaml.safe_load(text) or {}).get("models") or {}
    try:
        return {name: AutomlSupport(model=name, **body) for name, body in raw.items()}
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"catalog data/automl.yaml: {exc}") from exc


def automl_support(catalog: Catalog, model_name: str) -> AutomlSupport | None:
    """The AutoML facts of a catalog model (by its name or an alias), or None when it cannot be searched."""
    table = embedded_automl()
    model = catalog.models.get(model_name) or next(
        (m for m in catalog.models.values() if model_name in m.aliases), None
    )
    names = [model_name] + ([model.name, *model.aliases] if model is not None else [])
    found = next((table[n] for n in names if n in table), None)
    if found is None or (model is not None and "train" not in model.actions):
        return None
    return found


def automl_models(catalog: Catalog) -> list[str]:
    """The catalog's models an AutoML search can run for, sorted."""
    return sorted(name for name in catalog.models if automl_support(catalog, name) is not None)
