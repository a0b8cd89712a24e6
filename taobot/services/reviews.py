"""The review of what a thread's Launch runs (one launch, an AutoML search's trials, a workflow's stages), from
the stored state: the facts `taobot.review.build_review` needs.

Shown on the card once preflight passed, where *Launch* is, so that nothing is created before a person has
seen the platform, the exact image, the shape, the datasets, what differs from the defaults, and the time
and GPU-hours the run may take. The time limit is the one the launch will ask for (SLURM_TIME_HOURS, else
the platform's default), read from the thread's held values like the launch itself.
"""

from __future__ import annotations

from dataclasses import replace

from taobot.intake import IntakeState, compute_defaults, dataset_inputs, platform_of, status_interval
from taobot.review import Review, ReviewUnit, build_review
from taobot.services.policy_checks import SLURM_TIME, wall_hours
from taobot.services.workflow_runs import plan_from_json
from taobot.store.automl import AutomlRows


def monitoring_text(state: IntakeState, catalog) -> str:
    if state.monitor is False:
        return "no status updates in the thread (the final reply still comes)"
    return f"a status update in this thread every {status_interval(state, catalog)} min until the job ends"


def single_unit(desk, state: IntakeState) -> ReviewUnit | None:
    """The one unit of a single launch, or None before a platform is chosen."""
    catalog = desk.catalog
    platform = platform_of(state, catalog)
    if platform is None:
        return None
    given = desk.credential_values(state).get(SLURM_TIME) if SLURM_TIME in state.credentials else None
    limit = wall_hours(state, catalog, given)
    if platform.name == "slurm":
        source = (
            f"{SLURM_TIME}={given}" if given else f"{platform.display_name}'s default; set {SLURM_TIME} to change it"
        )
    else:
        source = f"{platform.display_name}'s default" if limit is not None else ""
    defaults = compute_defaults(state, catalog)
    overrides = []
    if state.image.overridden:
        overrides.append(("image", state.image.default, state.image.chosen or ""))
    for name, default in defaults.items():
        if state.compute.get(name, default) != default:
            overrides.append((name, str(default), str(state.compute[name])))
    if state.monitor is not False and state.interval_minutes not in (None, catalog.default_status_interval_minutes):
        overrides.append(
            ("interval", f"{catalog.default_status_interval_minutes} min", f"{state.interval_minutes} min")
        )
    if state.results_uri:
        overrides.append(("results", "the platform's results folder", state.results_uri))
    if state.retry_infra:
        overrides.append(("retry", "off", f"infra:{state.retry_infra}"))
    return ReviewUnit(
        label=f"{state.model} {state.action}",
        platform=platform.display_name,
        image=state.image.chosen or state.image.default,
        gpus_per_node=state.compute.get("num_gpus", defaults.get("num_gpus", 1)),
        nodes=state.compute.get("num_nodes", 1),
        time_limit_hours=limit,
        time_limit_source=source,
        time_limit_setting=SLURM_TIME if platform.name == "slurm" else "",
        datasets=tuple(dataset_inputs(state, catalog).items()),
        overrides=tuple(overrides),
    )


def plan_units(desk, state: IntakeState) -> list[ReviewUnit]:
    """What the thread's Launch will run, as review units: one launch; an AutoML search's trials (each the
    launch's shape, `parallel` at once); a workflow's stages from where this run starts, one after another."""
    unit = single_unit(desk, state)
    if unit is None:
        return []
    if state.kind == "automl":
        plan = AutomlRows(desk.store).plan(state.id)
        if plan is None:
            return [unit]
        best = "highest" if plan.higher_is_better else "lowest"
        searched = ", ".join(f"`{key}`" for key in plan.params) or "no parameter yet"
        note = f"{plan.algorithm} search over {searched} for the {best} `{plan.metric}`"
        return [
            replace(unit, label="trial", count=plan.trials, at_once=plan.parallel, epochs=plan.epochs, notes=(note,))
        ]
    if state.kind == "workflow":
        run = desk.store.workflow_run(state.id)
        if run is None:
            return [unit]
        units = []
        for stage in plan_from_json(run.plan).stages[run.start_index :]:
            image = run.images.get(stage.base) or {}
            on_gpus = stage.device == "gpu"
            units.append(
                replace(
                    unit,
                    label=f"stage {stage.index + 1}: {stage.name} ({stage.model} {stage.action})",
                    image=image.get("chosen") or image.get("default") or unit.image,
                    gpus_per_node=unit.gpus_per_node if on_gpus else 0,
                    nodes=unit.nodes if on_gpus else 1,
                    notes=tuple(f"sets `{key}={value}`" for key, value in stage.overrides.items()),
                )
            )
        return units or [unit]
    return [unit]


def launch_review(desk, state: IntakeState) -> Review | None:
    """The review for the card of a launch whose preflight passed; None before that (nothing to review yet)."""
    record = state.preflight
    if state.status != "complete" or record is None or record.status != "passed":
        return None
    units = plan_units(desk, state)
    if not units:
        return None
    what = {"automl": "AutoML search", "workflow": "workflow"}.get(state.kind, state.action)
    threshold = desk.policy.approvals.gpu_hours_over
    return build_review(
        units,
        title=f"{state.model} {what} on {units[0].platform}",
        monitoring=monitoring_text(state, desk.catalog),
        gpu_hours_limit=threshold,
        gpu_hours_limit_source="the operator's approval threshold (policy `approvals.gpu_hours_over`)",
    )
