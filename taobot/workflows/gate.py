"""The launch gate over a whole workflow (pure): every stage covered before the first one starts.

The intake's own gate (`taobot.gate`) holds for the thread's inputs: platform, credentials, the preflight,
compute. A workflow adds, per stage: its image resolved, shown and confirmed (or overridden); every input of
its action known (from the dataset roots, or from an override that an earlier stage's result fills); and every
dataset path it uses verified by that preflight from the platform's point of view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from taobot.catalog import Catalog, find_model
from taobot.gate import DATASET_SCOPES
from taobot.intake import IntakeState, dataset_inputs, missing_inputs
from taobot.intake.state import ImageChoice
from taobot.workflows.plan import Plan, PlannedStage


@dataclass(frozen=True)
class StageImage:
    default: str
    source: str
    chosen: str | None = None  # confirmed default or an override
    overridden: bool = False


@dataclass(frozen=True)
class StageCheck:
    stage: str
    ok: bool
    problems: tuple[str, ...]


def stage_state(state: IntakeState, stage: PlannedStage, image: StageImage, catalog: Catalog) -> IntakeState:
    """The thread's answers seen from one stage: its model, action and image; exact spec keys of its action only."""
    action = find_model(catalog, stage.model).actions[stage.action]
    keys = {i.key for i in action.inputs}
    return state.model_copy(
        update={
            "model": stage.model,
            "action": stage.action,
            "image": ImageChoice(
                default=image.default, source=image.source, chosen=image.chosen, overridden=image.overridden
            ),
            "spec_inputs": {k: v for k, v in state.spec_inputs.items() if k in keys},
        }
    )


def stage_paths(state: IntakeState, plan: Plan, catalog: Catalog) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The dataset paths later stages use beyond the thread's own action's, for the preflight to check too:
    label `<stage>: <spec key>` -> (path, the annotation fields its records must have). A path the thread's
    action already names is checked as the thread's and left out here."""
    own = set(dataset_inputs(state, catalog).values())
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for stage in plan.stages:
        seen = stage_state(state, stage, StageImage("", ""), catalog)
        model = find_model(catalog, stage.model)
        action = model.actions[stage.action]
        for key, path in dataset_inputs(seen, catalog).items():
            if key in stage.overrides or path in own or path in {p for p, _ in out.values()}:
                continue
            spec = action.input(key)
            fields = tuple(model.annotation_fields) if spec is not None and spec.annotation else ()
            out[f"{stage.base}: {key}"] = (path, fields)
    return out


def verified_paths(state: IntakeState, catalog: Catalog, extra: Mapping[str, str] | None = None) -> set[str]:
    """The dataset paths the thread's current preflight verified (by the spec key, or the `extra` label -> path
    of a later stage's path, each result names)."""
    record = state.preflight
    if record is None or record.status != "passed":
        return set()
    mapping = {**dataset_inputs(state, catalog), **(extra or {})}
    ok_keys = {r.get("key") for r in record.results if r.get("scope") in DATASET_SCOPES and r.get("ok")}
    failed = {r.get("key") for r in record.results if r.get("scope") in DATASET_SCOPES and not r.get("ok")}
    return {path for key, path in mapping.items() if key in ok_keys and key not in failed}


def check_stages(
    state: IntakeState, plan: Plan, images: Mapping[str, StageImage], catalog: Catalog, start: int = 0
) -> list[StageCheck]:
    """One check per stage from `start` on; a stage is ready when its problems are none."""
    extra = {label: path for label, (path, _fields) in stage_paths(state, plan, catalog).items()}
    verified = verified_paths(state, catalog, extra)
    out = []
    for stage in plan.stages[start:]:
        problems = []
        image = images.get(stage.base) or images.get(stage.name)
        if image is None or not image.chosen:
            shown = f" (default `{image.default}`)" if image else ""
            problems.append(
                f"image not confirmed{shown}: press *Confirm stage images* or reply `image.{stage.base}=<image>`"
            )
        seen = stage_state(state, stage, image or StageImage("", ""), catalog)
        unknown = [k for k in missing_inputs(seen, catalog) if k not in stage.overrides]
        if unknown:
            problems.append("inputs not known: " + ", ".join(f"`{k}`" for k in unknown))
        paths = {k: p for k, p in dataset_inputs(seen, catalog).items() if k not in stage.overrides}
        unchecked = [f"`{k}` ({p})" for k, p in paths.items() if p not in verified]
        if unchecked and stage.index >= start:
            problems.append("not verified by the preflight: " + ", ".join(unchecked))
        out.append(StageCheck(stage.name, not problems, tuple(problems)))
    return out
