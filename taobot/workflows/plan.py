"""A workflow fitted to one model: the stages that run, those left out and why, references resolved (pure).

`fit` keeps the stages whose action the model has (an optional stage the model lacks is left out and named;
a required one makes the workflow not fit), and unrolls iterations: the repeated stages run again as
`train_2`, `evaluate_2`, …, where `{stages.train.checkpoint}` means the latest `train` before the stage.
`resolve` fills a stage's overrides from the inputs and the results earlier stages recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from taobot.catalog import Catalog, find_model
from taobot.errors import TaobotError, UnknownNameError
from taobot.workflows.schema import REFERENCE, RunIf, Workflow


@dataclass(frozen=True)
class PlannedStage:
    index: int  # position in the run, from 0: what makes "start the next stage" idempotent
    name: str  # unique in the run: `train`, then `train_2` in the second iteration
    base: str  # the stage's name in the workflow (what references use)
    action: str
    model: str
    device: str
    overrides: Mapping[str, str]
    run_if: RunIf | None = None


@dataclass(frozen=True)
class Plan:
    workflow: str
    model: str
    stages: tuple[PlannedStage, ...]
    left_out: tuple[str, ...] = ()  # one sentence per stage that does not run for this model

    def stage(self, name: str) -> PlannedStage | None:
        return next((s for s in self.stages if s.name == name), None)


@dataclass(frozen=True)
class StageResult:
    """What an ended stage left for later ones."""

    results: str | None = None
    checkpoint: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


class NotFitting(TaobotError):
    """The workflow cannot run for this model; the message says why and what fits."""


def find_workflow(flows: Mapping[str, Workflow], name: str) -> Workflow:
    """The workflow of that name; UnknownNameError lists the ones there are."""
    if name.lower() in flows:
        return flows[name.lower()]
    raise UnknownNameError("workflow", name, sorted(flows))


def fitting_models(workflow: Workflow, catalog: Catalog) -> list[str]:
    """The models a workflow runs for: those it names, or every model with each required stage's action."""
    out = []
    for name, model in sorted(catalog.models.items()):
        if workflow.models and name not in workflow.models:
            continue
        needed = [s.action for s in workflow.stages if s.action and not s.optional and s.model is None]
        if all(a in model.actions for a in needed) and any(s.action in model.actions for s in workflow.stages):
            out.append(name)
    return out


def fit(workflow: Workflow, model_name: str, catalog: Catalog) -> Plan:
    model = find_model(catalog, model_name)
    fits = fitting_models(workflow, catalog)
    if model.name not in fits:
        shown = ", ".join(fits[:30]) + (f" and {len(fits) - 30} more" if len(fits) > 30 else "")
        raise NotFitting(
            f"Workflow `{workflow.name}` does not fit `{model.name}`"
            + (
                f" (it is written for {', '.join(workflow.models)})"
                if workflow.models
                else " (it lacks a stage's action)"
            )
            + f". Models it fits: {shown or 'none in this catalog'}."
        )
    kept, left_out = [], []
    for stage in workflow.stages:
        owner = model
        if stage.model:
            try:
                owner = find_model(catalog, stage.model)
            except UnknownNameError:
                left_out.append(f"{stage.name}: its model `{stage.model}` is not in the catalog")
                continue
        if stage.action is None:
            left_out.append(f"{stage.name}: taobot cannot run it ({stage.note or 'it runs no TAO action'})")
        elif stage.action not in owner.actions:
            left_out.append(f"{stage.name}: {owner.name} has no `{stage.action}` action")
        else:
            kept.append((stage, owner.name))
    names = {s.name for s, _ in kept}
    planned: list[PlannedStage] = []
    passes = [(1, [s for s in kept])] + [
        (n, [s for s in kept if s[0].name in workflow.repeat]) for n in range(2, workflow.iterations + 1)
    ]
    for number, stages in passes:
        for stage, owner in stages:
            if stage.run_if and stage.run_if.stage not in names:
                left_out.append(f"{stage.name}: its condition names {stage.run_if.stage}, which does not run")
                continue
            name = stage.name if number == 1 else f"{stage.name}_{number}"
            overrides = {k.replace("{action}", stage.action or ""): v for k, v in stage.overrides.items()}
            planned.append(
                PlannedStage(
                    len(planned), name, stage.name, stage.action or "", owner, stage.device, overrides, stage.run_if
                )
            )
    return Plan(workflow.name, model.name, tuple(planned), tuple(dict.fromkeys(left_out)))


def latest(plan: Plan, base: str, before: int) -> PlannedStage | None:
    """The last run of workflow stage `base` before position `before` (the current iteration's)."""
    found = [s for s in plan.stages[:before] if s.base == base]
    return found[-1] if found else None


class Unresolved(ValueError):
    """A reference whose value is not known (yet)."""


def resolve(
    plan: Plan, stage: PlannedStage, inputs: Mapping[str, str], results: Mapping[str, StageResult]
) -> dict[str, str]:
    """The stage's overrides with every reference filled. Raises Unresolved naming what is missing."""

    def value(ref: str) -> str:
        head, _, rest = ref.partition(".")
        if head == "inputs":
            if rest not in inputs:
                raise Unresolved(f"input `{rest}` was not given")
            return inputs[rest]
        base, _, what = rest.partition(".")
        source = latest(plan, base, stage.index)
        if source is None:
            raise Unresolved(f"stage `{base}` does not run before `{stage.name}`")
        done = results.get(source.name)
        if done is None:
            raise Unresolved(f"stage `{source.name}` has not ended yet")
        if what == "results":
            found = done.results
        elif what == "checkpoint":
            found = done.checkpoint
        elif what.startswith("metric."):
            metric = what.split(".", 1)[1]
            found = None if metric not in done.metrics else f"{done.metrics[metric]:g}"
        else:
            raise Unresolved(f"`{ref}`: a stage offers results, checkpoint and metric.<name>")
        if not found:
            raise Unresolved(f"stage `{source.name}` recorded no {what}")
        return found

    return {key: REFERENCE.sub(lambda m: value(m.group(1)), text) for key, text in stage.overrides.items()}


def condition_holds(plan: Plan, stage: PlannedStage, results: Mapping[str, StageResult]) -> tuple[bool, str]:
    """(run it?, why): a stage without a condition runs; one whose metric is missing does not, and says so."""
    cond = stage.run_if
    if cond is None:
        return True, ""
    source = latest(plan, cond.stage, stage.index)
    done = results.get(source.name) if source else None
    if done is None or cond.metric not in done.metrics:
        return False, f"skipped: `{cond.metric}` of {cond.stage} is unknown (the condition is {cond.text})"
    measured = done.metrics[cond.metric]
    if cond.holds(measured):
        return True, f"{cond.text} holds ({cond.metric} = {measured:g})"
    return False, f"skipped: {cond.text} does not hold ({cond.metric} = {measured:g})"


def input_references(plan: Plan) -> list[str]:
    """The workflow inputs any stage refers to."""
    refs = [m.group(1) for s in plan.stages for v in s.overrides.values() for m in REFERENCE.finditer(v)]
    return list(dict.fromkeys(r.split(".", 1)[1] for r in refs if r.startswith("inputs.")))
