"""An AutoML thread's own answers: algorithm, metric, budget and the parameters to search.

The rest of what a search needs (platform, credentials, image, datasets, compute per trial) is the thread's
ordinary train intake. A plan is a value kept in its own table, keyed by the intake id; changing it is pure
(`with_changes`), and it can be changed until the search starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from taobot.catalog.automl import AutomlSupport, SearchRange

Scalar = str | int | float | bool

# The engine's search algorithms taobot drives: each recommendation is a new trial with its own id, and the
# engine recommends the same values again when it is rebuilt from the same calls (see `engine`). Bayesian
# optimisation asks for one trial at a time; ASHA hands out several at once and stops weak ones early. (The
# engine's other algorithms either re-issue earlier recommendations, which a trial-per-recommendation search
# cannot follow, or need a model endpoint.)
ALGORITHMS = ("asha", "bayesian")
SERIAL_ALGORITHMS = ("bayesian",)
DEFAULT_TRIALS = 4
DEFAULT_PARALLEL = 2
MAX_TRIALS = 50
MAX_PARALLEL = 16
MAX_EPOCHS = 10000


def default_algorithm(parallel: int) -> str:
    """ASHA when trials run side by side (it hands out several and stops weak ones early), else Bayesian."""
    return "asha" if parallel > 1 else "bayesian"


class SearchParam(BaseModel):
    """One searched spec key: a number in [low, high] (whole numbers when `whole`), or one of `choices`."""

    key: str
    low: float | None = None
    high: float | None = None
    whole: bool = False
    choices: tuple[Scalar, ...] = ()
    default: Scalar | None = None

    @property
    def text(self) -> str:
        if self.choices:
            return "|".join(str(c) for c in self.choices)
        return f"{_number(self.low, self.whole)}..{_number(self.high, self.whole)}"


def _number(value: float | None, whole: bool) -> str:
    if value is None:
        return "?"
    return str(int(value)) if whole else f"{value:g}"


def param_from(key: str, rng: SearchRange) -> SearchParam:
    if rng.choices:
        return SearchParam(key=key, choices=rng.choices, default=rng.default)
    return SearchParam(key=key, low=rng.min, high=rng.max, whole=rng.whole, default=rng.default)


class AutomlPlan(BaseModel):
    intake_id: str
    model: str
    network: str
    algorithm: str = "asha"
    algorithm_given: bool = False  # the person chose it (else it follows `parallel`)
    metric: str
    higher_is_better: bool
    trials: int = DEFAULT_TRIALS
    parallel: int = DEFAULT_PARALLEL
    epochs: int | None = None
    epochs_key: str | None = None
    params: dict[str, SearchParam] = Field(default_factory=dict)
    status: Literal["planning", "running", "done", "cancelled"] = "planning"

    def with_changes(self, **changes) -> "AutomlPlan":
        plan = self.model_copy(update=changes, deep=True)
        if not plan.algorithm_given:
            plan.algorithm = default_algorithm(plan.parallel)
        return plan

    @property
    def base_spec(self) -> dict[str, Scalar]:
        """The values every trial starts from (each parameter's default), flat by spec key."""
        spec: dict[str, Scalar] = {k: p.default for k, p in self.params.items() if p.default is not None}
        if self.epochs_key and self.epochs:
            spec[self.epochs_key] = self.epochs
        return spec

    def better(self, a: float, b: float) -> bool:
        """Whether metric `a` beats `b`."""
        return a > b if self.higher_is_better else a < b


def default_plan(support: AutomlSupport, intake_id: str) -> AutomlPlan:
    return AutomlPlan(
        intake_id=intake_id,
        model=support.model,
        network=support.network,
        algorithm=default_algorithm(DEFAULT_PARALLEL),
        metric=support.metric,
        higher_is_better=support.higher_is_better,
        epochs_key=support.epochs_key,
        params={key: param_from(key, rng) for key, rng in support.search.items()},
    )
