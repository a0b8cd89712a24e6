"""The AutoML answers of a thread reply: `search.<key>=…`, `trials=`, `parallel=`, `epochs=`, `algorithm=`, `metric=`.

Pure: `key=value` pairs and a plan in, the changed plan (and what to say) out. Every refusal names the value,
why it was refused and the shape that is expected; a reply with any refused value changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from taobot.automl.plan import ALGORITHMS, MAX_EPOCHS, MAX_PARALLEL, MAX_TRIALS, AutomlPlan, Scalar, SearchParam

BUDGET_KEYS = ("trials", "parallel", "epochs")
PLAN_KEYS = (*BUDGET_KEYS, "algorithm", "metric", "higher_is_better")
SEARCH_PREFIX = "search."
_SPEC_KEY = re.compile(r"^[A-Za-z_][\w-]*(?:\[\d+\])?(?:\.[A-Za-z_][\w-]*(?:\[\d+\])?)*$")
_METRIC = re.compile(r"^[A-Za-z][\w./-]{0,63}$")
_INTEGER = re.compile(r"^[-+]?\d+$")
_TRUE, _FALSE = {"yes", "true", "on", "1", "max", "higher"}, {"no", "false", "off", "0", "min", "lower"}

SEARCH_SHAPE = (
    "`search.<spec key>=LOW..HIGH` (a number range, e.g. `search.train.optim.lr=1e-5..1e-2`), "
    "`search.<spec key>=a|b|c` (choices) or `search.<spec key>=off` (stop searching it)"
)


def is_automl_key(key: str) -> bool:
    lower = key.lower()
    return lower in PLAN_KEYS or lower.startswith(SEARCH_PREFIX)


@dataclass
class PlanChange:
    plan: AutomlPlan
    said: list[str] = field(default_factory=list)  # what changed, one line each
    errors: list[str] = field(default_factory=list)


def apply_settings(plan: AutomlPlan, pairs: list[tuple[str, str]]) -> PlanChange:
    """The plan with every pair applied, or (with errors) the plan unchanged."""
    changes: dict = {}
    params = dict(plan.params)
    said: list[str] = []
    errors: list[str] = []
    for key, value in pairs:
        lower, value = key.lower(), value.strip()
        if lower.startswith(SEARCH_PREFIX):
            error = _search(key[len(SEARCH_PREFIX) :], value, params, said)
        elif lower in BUDGET_KEYS:
            error = _budget(lower, value, changes, said)
        elif lower == "algorithm":
            error = _algorithm(value, changes, said)
        elif lower == "metric":
            error = _metric(value, changes, said)
        else:
            error = _direction(value, changes, said)
        if error:
            errors.append(error)
    if errors:
        return PlanChange(plan, [], errors)
    new = plan.with_changes(**changes, params=params)
    if new.algorithm != plan.algorithm and "algorithm" not in changes:
        said.append(f"algorithm follows `parallel={new.parallel}`: `{new.algorithm}`")
    return PlanChange(new, said, [])


def _search(key: str, value: str, params: dict[str, SearchParam], said: list[str]) -> str | None:
    if not _SPEC_KEY.match(key):
        return f"`search.{key}` does not name a spec key (dots between names, e.g. `train.optim.lr`). {SEARCH_SHAPE}."
    if value.lower() in ("off", "none", "no"):
        if key not in params:
            searched = ", ".join(f"`{k}`" for k in params) or "none"
            return f"`{key}` is not searched, so it cannot be turned off. Searched now: {searched}."
        del params[key]
        said.append(f"`{key}` is no longer searched")
        return None
    if ".." in value:
        low_text, _, high_text = value.partition("..")
        low, high = _float(low_text), _float(high_text)
        if low is None or high is None or not low < high:
            return f"`search.{key}={value}`: a range is two numbers, the smaller first, e.g. `1e-5..1e-2`."
        whole = bool(_INTEGER.match(low_text.strip()) and _INTEGER.match(high_text.strip()))
        old = params.get(key)
        default = old.default if old is not None and not old.choices else None
        if default is None or not (isinstance(default, (int, float)) and low <= float(default) <= high):
            default = int(low) if whole else low
        params[key] = SearchParam(key=key, low=low, high=high, whole=whole, default=default)
        said.append(f"`{key}` searched in {params[key].text}")
        return None
    if "|" in value:
        choices = tuple(_scalar(c.strip()) for c in value.split("|") if c.strip())
        if len(choices) < 2 or len(set(map(str, choices))) != len(choices):
            return f"`search.{key}={value}`: choices are two or more different values, e.g. `adam|sgd`."
        params[key] = SearchParam(key=key, choices=choices, default=choices[0])
        said.append(f"`{key}` chosen from {params[key].text}")
        return None
    return f"`search.{key}={value}` is neither a range nor choices. Expected {SEARCH_SHAPE}."


def _budget(key: str, value: str, changes: dict, said: list[str]) -> str | None:
    most = {"trials": MAX_TRIALS, "parallel": MAX_PARALLEL, "epochs": MAX_EPOCHS}[key]
    what = {"trials": "trials in all", "parallel": "trials at once", "epochs": "epochs per trial"}[key]
    if not _INTEGER.match(value) or not 1 <= int(value) <= most:
        return f"`{key}` takes a whole number from 1 to {most} ({what}), e.g. `{key}=4`; got `{value}`."
    changes[key] = int(value)
    said.append(f"{what}: {int(value)}")
    return None


def _algorithm(value: str, changes: dict, said: list[str]) -> str | None:
    name = value.lower()
    if name not in ALGORITHMS:
        return f"`algorithm` takes one of {', '.join(f'`{a}`' for a in ALGORITHMS)}; got `{value}`."
    changes.update(algorithm=name, algorithm_given=True)
    said.append(f"algorithm: `{name}`")
    return None


def _metric(value: str, changes: dict, said: list[str]) -> str | None:
    name, _, direction = value.partition(":")
    if not _METRIC.match(name):
        return f"`metric` takes a metric name as the run reports it, e.g. `metric=val_loss` or `metric=val_acc:max`; got `{value}`."
    if direction and _direction(direction, changes, said):
        return f"`metric={value}`: after the colon comes `max` (higher is better) or `min` (lower is better)."
    changes["metric"] = name
    said.append(f"metric: `{name}`")
    return None


def _direction(value: str, changes: dict, said: list[str]) -> str | None:
    word = value.lower()
    if word not in _TRUE | _FALSE:
        return f"`higher_is_better` takes yes or no; got `{value}`."
    changes["higher_is_better"] = word in _TRUE
    said.append("higher is better" if word in _TRUE else "lower is better")
    return None


def _float(text: str) -> float | None:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _scalar(text: str) -> Scalar:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INTEGER.match(text):
        return int(text)
    number = _float(text)
    return number if number is not None else text
