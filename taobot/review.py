"""The review before launch: what a plan runs, where, on which image, and what it costs in time and GPU-hours.

Pure: no Slack, store, network or clock. A service gathers the facts of a plan and hands them over as a list
of `ReviewUnit`s; `build_review` estimates each unit's runtime and GPU-hours, says where every number comes
from, and flags a stated limit the plan exceeds together with concrete reductions. `slack/` renders the
`Review` (the console can print it the same way).

What a unit is, for each kind of launch:

- a single launch: one unit (`count=1`);
- an AutoML search: one unit for its trials, `count` = trials, `at_once` = trials run at the same time,
  `epochs` = epochs per trial (a unit per distinct trial shape, if trials differ);
- a workflow: one unit per stage, in the order the stages run (one after another).

Units of one plan run one after another; the runs inside a unit run `at_once` at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# A review's texts stay well inside one Block Kit section (3,000 characters) each.
MAX_UNITS_SHOWN = 20
MAX_UNIT_FLAGS = 5  # units over their own time limit flagged one by one; the rest are counted


@dataclass(frozen=True)
class ReviewUnit:
    """One kind of job a plan runs, `count` times, `at_once` at a time. Everything a reviewer should see of it."""

    label: str  # "cosmos-rl train", "trial", "stage 2: evaluate"
    platform: str  # display name
    image: str  # the exact image reference that will run
    gpus_per_node: int
    nodes: int = 1
    count: int = 1  # how many runs of this unit (AutoML: trials)
    at_once: int = 1  # how many of them run at the same time
    time_limit_hours: float | None = None  # one run's stated wall-time limit; None: the platform sets none
    time_limit_source: str = ""  # where that limit comes from, e.g. "SLURM_TIME_HOURS=4" or "SLURM's default"
    time_limit_setting: str = ""  # the setting that changes it, e.g. "SLURM_TIME_HOURS" (offered in reductions)
    typical_hours: float | None = None  # the catalog's typical duration of one run, when it has one
    typical_epochs: int | None = None  # the epochs that typical duration is for (scaled to `epochs`)
    epochs: int | None = None  # epochs one run trains, when the plan says
    datasets: tuple[tuple[str, str], ...] = ()  # (spec key or root role, path) as the job will get them
    overrides: tuple[tuple[str, str, str], ...] = ()  # (what, default, given): only what differs from defaults
    notes: tuple[str, ...] = ()  # anything else the reviewer should know of this unit

    @property
    def gpus(self) -> int:
        """GPUs one run holds: per node × nodes."""
        return self.gpus_per_node * self.nodes

    @property
    def waves(self) -> int:
        """How many times the runs of this unit start one after another."""
        return math.ceil(self.count / max(1, self.at_once))


@dataclass(frozen=True)
class Estimate:
    """One run's wall hours, and where that number comes from."""

    hours: float | None  # None: nothing to estimate from
    basis: str
    upper_bound: bool = False  # the number is the time limit (a run ends by then), not an expected duration
    per_epoch_hours: float | None = None  # from a typical duration and its epochs


@dataclass(frozen=True)
class Review:
    """What `build_review` found: per unit its estimate, the plan's totals, the assumptions and the flags."""

    title: str
    units: tuple[ReviewUnit, ...]
    estimates: tuple[Estimate, ...]  # one per unit, same order
    runtime_hours: float | None  # the plan's wall time, units one after another; None: unknown
    gpu_hours: float | None  # GPUs × hours over every run; None: unknown
    upper_bound: bool  # the totals are bounds from time limits, not expectations
    assumptions: tuple[str, ...]
    flags: tuple[str, ...]  # a stated limit the plan exceeds, each with concrete reductions
    monitoring: str  # how the plan is watched, e.g. "status every 10 min in this thread"
    hidden_units: int = 0  # units beyond MAX_UNITS_SHOWN, summarised only
    extra: tuple[str, ...] = field(default_factory=tuple)  # lines the caller adds (e.g. AutoML's search)


def hours_text(hours: float) -> str:
    """`45 min`, `4 h`, `2.5 h`: the way a person says a duration."""
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    return f"{hours:.3g} h"


def estimate(unit: ReviewUnit) -> Estimate:
    """One run's hours: the catalog's typical duration (scaled to the epochs), else the time limit as a bound."""
    if unit.typical_hours is not None:
        if unit.typical_epochs and unit.epochs:
            per_epoch = unit.typical_hours / unit.typical_epochs
            return Estimate(
                per_epoch * unit.epochs,
                f"the catalog's typical duration of {hours_text(unit.typical_hours)} for {unit.typical_epochs} "
                f"epochs, scaled to {unit.epochs} epochs",
                per_epoch_hours=per_epoch,
            )
        per_epoch = unit.typical_hours / unit.typical_epochs if unit.typical_epochs else None
        return Estimate(
            unit.typical_hours, f"the catalog's typical duration ({hours_text(unit.typical_hours)})", False, per_epoch
        )
    if unit.time_limit_hours is not None:
        source = f" ({unit.time_limit_source})" if unit.time_limit_source else ""
        return Estimate(
            unit.time_limit_hours,
            f"at most the requested time limit of {hours_text(unit.time_limit_hours)}{source}; "
            "the catalog gives no typical duration, so a run may well end sooner",
            upper_bound=True,
        )
    return Estimate(None, "no estimate: the catalog gives no typical duration and the platform sets no time limit")


def build_review(
    units: list[ReviewUnit] | tuple[ReviewUnit, ...],
    *,
    title: str,
    monitoring: str,
    runtime_limit_hours: float | None = None,
    runtime_limit_source: str = "",
    gpu_hours_limit: float | None = None,
    gpu_hours_limit_source: str = "",
    extra: tuple[str, ...] = (),
) -> Review:
    """The review of a plan of `units` (see the module's docstring for what a unit is per kind of launch).

    `runtime_limit_hours` is a limit on the whole plan's wall time (e.g. an AutoML budget), `gpu_hours_limit`
    one on its GPU-hours (e.g. the policy's approval threshold); each limit the plan exceeds is flagged with
    the reductions that would bring it inside.
    """
    units = tuple(units)
    estimates = tuple(estimate(u) for u in units)
    known = all(e.hours is not None for e in estimates)
    runtime = sum(u.waves * e.hours for u, e in zip(units, estimates, strict=True)) if known and units else None
    gpu_hours = sum(u.count * u.gpus * e.hours for u, e in zip(units, estimates, strict=True)) if known else None
    bound = any(e.upper_bound for e in estimates)
    assumptions = _assumptions(units, estimates)
    flags = []  # the plan's own limits first: they matter whatever the units
    if runtime is not None and runtime_limit_hours is not None and runtime > runtime_limit_hours:
        flags.append(_over_runtime(units, estimates, runtime, runtime_limit_hours, runtime_limit_source))
    if gpu_hours is not None and gpu_hours_limit is not None and gpu_hours > gpu_hours_limit:
        flags.append(_over_gpu_hours(units, estimates, gpu_hours, gpu_hours_limit, gpu_hours_limit_source))
    over = [f for u, e in zip(units, estimates, strict=True) if (f := _over_time_limit(u, e))]
    flags += over[:MAX_UNIT_FLAGS]
    if len(over) > MAX_UNIT_FLAGS:
        flags.append(f"… and {len(over) - MAX_UNIT_FLAGS} more units estimated above their time limits.")
    return Review(
        title=title,
        units=units[:MAX_UNITS_SHOWN],
        estimates=estimates[:MAX_UNITS_SHOWN],
        runtime_hours=runtime,
        gpu_hours=gpu_hours,
        upper_bound=bound,
        assumptions=tuple(assumptions),
        flags=tuple(flags),
        monitoring=monitoring,
        hidden_units=max(0, len(units) - MAX_UNITS_SHOWN),
        extra=tuple(extra),
    )


def _assumptions(units: tuple[ReviewUnit, ...], estimates: tuple[Estimate, ...]) -> list[str]:
    out = []
    for unit, est in zip(units, estimates, strict=True):
        who = unit.label if len(units) > 1 else "The run"
        line = f"{who}: {est.basis}."
        if unit.count > 1:
            line += f" {unit.count} runs, {unit.at_once} at a time ({unit.waves} after one another)."
        out.append(line)
    if len(units) > 1:
        out.append("Units run one after another; their times add up.")
    return out


def _over_time_limit(unit: ReviewUnit, est: Estimate) -> str | None:
    """A run expected to take longer than its own time limit: it would be stopped before it ends."""
    if est.hours is None or est.upper_bound or unit.time_limit_hours is None or est.hours <= unit.time_limit_hours:
        return None
    limit = unit.time_limit_hours
    ways = []
    if est.per_epoch_hours and unit.epochs:
        fit = math.floor(limit / est.per_epoch_hours)
        if fit >= 1:
            ways.append(f"train {fit} epochs instead of {unit.epochs}")
    setting = unit.time_limit_setting or "the time limit"
    ways.append(f"raise {setting} to at least {math.ceil(est.hours * 10) / 10:g}")
    source = f" ({unit.time_limit_source})" if unit.time_limit_source else ""
    return (
        f"{unit.label}: one run is estimated at {hours_text(est.hours)}, above its time limit of "
        f"{hours_text(limit)}{source}; it would be stopped before it ends. To fit: " + "; or ".join(ways) + "."
    )


def _over_runtime(units, estimates, runtime: float, limit: float, source: str) -> str:
    ways = []
    for unit, est in zip(units, estimates, strict=True):
        others = runtime - unit.waves * est.hours
        room = limit - others
        if unit.count > 1 and room > 0:
            waves = math.floor(room / est.hours) if est.hours else 0
            if waves >= 1:
                ways.append(f"{unit.label}: {min(unit.count, waves * unit.at_once)} runs instead of {unit.count}")
            need = (
                math.ceil(unit.count / max(1, math.floor(room / est.hours)))
                if est.hours and room >= est.hours
                else None
            )
            if need and need > unit.at_once:
                ways.append(f"{unit.label}: {need} at a time instead of {unit.at_once}")
        if est.per_epoch_hours and unit.epochs and room > 0:
            epochs = math.floor(room / unit.waves / est.per_epoch_hours)
            if 1 <= epochs < unit.epochs:
                ways.append(f"{unit.label}: {epochs} epochs per run instead of {unit.epochs}")
    where = f" ({source})" if source else ""
    text = f"The plan takes about {hours_text(runtime)}, above the limit of {hours_text(limit)}{where}."
    return text + (" To fit: " + "; or ".join(ways) + "." if ways else " Shorten it before launching.")


def _over_gpu_hours(units, estimates, gpu_hours: float, limit: float, source: str) -> str:
    ways = []
    for unit, est in zip(units, estimates, strict=True):
        mine = unit.count * unit.gpus * est.hours
        room = limit - (gpu_hours - mine)
        if room <= 0 or not est.hours:
            continue
        per_node = math.floor(room / (unit.count * unit.nodes * est.hours))
        if 1 <= per_node < unit.gpus_per_node:
            ways.append(f"{unit.label}: num_gpus={per_node} instead of {unit.gpus_per_node}")
        if unit.nodes > 1 and (nodes := math.floor(room / (unit.count * unit.gpus_per_node * est.hours))) >= 1:
            ways.append(f"{unit.label}: num_nodes={nodes} instead of {unit.nodes}")
        hours = math.floor(room / (unit.count * unit.gpus) * 10) / 10
        if est.upper_bound and unit.time_limit_setting and 0 < hours < est.hours:
            ways.append(f"{unit.label}: {unit.time_limit_setting}={hours:g} instead of {est.hours:g}")
        elif est.per_epoch_hours and unit.epochs:
            epochs = math.floor(room / (unit.count * unit.gpus * est.per_epoch_hours))
            if 1 <= epochs < unit.epochs:
                ways.append(f"{unit.label}: {epochs} epochs per run instead of {unit.epochs}")
        if unit.count > 1 and (runs := math.floor(room / (unit.gpus * est.hours))) >= 1:
            ways.append(f"{unit.label}: {runs} runs instead of {unit.count}")
    where = f" ({source})" if source else ""
    bound = "up to " if any(e.upper_bound for e in estimates) else "about "
    text = f"The plan uses {bound}{gpu_hours:.3g} GPU-hours, above the limit of {limit:g}{where}."
    return text + (" To stay inside: " + "; or ".join(ways) + "." if ways else "")
