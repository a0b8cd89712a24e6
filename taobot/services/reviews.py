"""The review of a single launch, from its stored state: the facts `taobot.review.build_review` needs.

Shown on the card once preflight passed, where *Launch* is, so that nothing is created before a person has
seen the platform, the exact image, the shape, the datasets, what differs from the defaults, and the time
and GPU-hours the run may take. The time limit is the one the launch will ask for (SLURM_TIME_HOURS, else
the platform's default), read from the thread's held values like the launch itself.
"""

from __future__ import annotations

from taobot.intake import IntakeState, compute_defaults, dataset_inputs, platform_of, status_interval
from taobot.review import Review, ReviewUnit, build_review
from taobot.services.policy_checks import SLURM_TIME, wall_hours


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


def launch_review(desk, state: IntakeState) -> Review | None:
    """The review for the card of a launch whose preflight passed; None before that (nothing to review yet)."""
    record = state.preflight
    if state.status != "complete" or record is None or record.status != "passed":
        return None
    unit = single_unit(desk, state)
    if unit is None:
        return None
    threshold = desk.policy.approvals.gpu_hours_over
    return build_review(
        [unit],
        title=f"{state.model} {state.action} on {unit.platform}",
        monitoring=monitoring_text(state, desk.catalog),
        gpu_hours_limit=threshold,
        gpu_hours_limit_source="the operator's approval threshold (policy `approvals.gpu_hours_over`)",
    )
