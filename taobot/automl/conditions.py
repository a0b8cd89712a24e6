"""What an AutoML search needs beyond the launch gate: the engine, something to search, a sane budget, GPUs.

Pure: the caller says whether the engine imports and what the operator's policy says about the GPUs the
trials hold at once. The launch gate itself (`gate.require_open`) is asked as for any launch.
"""

from __future__ import annotations

from dataclasses import dataclass

from taobot.automl.plan import SERIAL_ALGORITHMS, AutomlPlan


@dataclass(frozen=True)
class SearchCondition:
    name: str
    ok: bool
    detail: str


def search_conditions(
    plan: AutomlPlan, engine_missing: str | None, gpus_per_trial: int | None, gpu_refusal: str | None
) -> list[SearchCondition]:
    at_once = plan.parallel * gpus_per_trial if gpus_per_trial else None
    serial = plan.algorithm in SERIAL_ALGORITHMS and plan.parallel > 1
    budget_ok = plan.parallel <= plan.trials
    budget = (
        f"{plan.trials} trials, {plan.parallel} at once"
        + (f", {plan.epochs} epochs each" if plan.epochs else "")
        + (f" (`{plan.algorithm}` asks for one trial at a time)" if serial else "")
        if budget_ok
        else f"`parallel={plan.parallel}` is more than `trials={plan.trials}`; lower `parallel` or raise `trials`"
    )
    return [
        SearchCondition("AutoML engine installed", engine_missing is None, engine_missing or "nvidia-tao-automl"),
        SearchCondition(
            "parameters to search",
            bool(plan.params),
            ", ".join(f"`{k}`" for k in plan.params) if plan.params else "none; add one with `search.<key>=LOW..HIGH`",
        ),
        SearchCondition("budget", budget_ok, budget),
        SearchCondition(
            "GPUs of the trials at once",
            gpu_refusal is None and at_once is not None,
            gpu_refusal
            or (
                f"{plan.parallel} × {gpus_per_trial} = {at_once} GPUs" if at_once else "compute per trial not known yet"
            ),
        ),
    ]
