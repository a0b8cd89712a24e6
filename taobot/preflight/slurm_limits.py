"""Whether the requested job fits the SLURM partitions at all: nodes, GPUs and CPUs per task.

A job asking for more than any node of its partitions has is not refused by
every cluster: where partition limits are not enforced at submission it waits
as PENDING (`PartitionConfig`) forever. One `sinfo` line per node group of
every partition, read in the preflight's SSH session, tells before launch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from taobot.preflight.base import CheckResult, PreflightRequest

# One line per group of like nodes in each partition: name, CPUs per node, generic resources,
# node count, job size in nodes (min-max) and availability.
LIMITS_COMMAND = "sinfo -h -o 'LIM|%R|%c|%G|%D|%s|%a' 2>/dev/null"
_GPU = re.compile(r"gpu(?::[^:,(]+)?:(\d+)")


@dataclass(frozen=True)
class NodeGroup:
    cpus: int
    gpus: int
    nodes: int
    max_job_nodes: int | None  # None: no limit
    available: str  # up, down, drain, inact


@dataclass(frozen=True)
class Ask:
    cpus_per_task: int
    gpus_per_node: int
    nodes: int


def _int(text: str) -> int:
    digits = re.match(r"\d+", text.strip())
    return int(digits.group(0)) if digits else 0


def parse_limits(output: str) -> dict[str, list[NodeGroup]]:
    groups: dict[str, list[NodeGroup]] = {}
    for line in output.splitlines():
        fields = line.split("|")
        if fields[0] != "LIM" or len(fields) < 7:
            continue
        _, part, cpus, gres, nodes, size, available = fields[:7]
        top = size.rsplit("-", 1)[-1].strip()
        gpus = sum(int(n) for n in _GPU.findall(gres))
        groups.setdefault(part.strip().rstrip("*"), []).append(
            NodeGroup(_int(cpus), gpus, _int(nodes), int(top) if top.isdigit() else None, available.strip().lower())
        )
    return groups


def ask_of(request: PreflightRequest) -> Ask | None:
    """What sbatch will ask for; None when a setting is not a number (the runtime checks say so)."""
    res = request.resources
    raw_cpus = request.cred("SLURM_CPUS_PER_TASK") or res.cpus_per_task or 1
    try:
        cpus = int(raw_cpus)
    except ValueError:
        return None
    gpus = int(request.compute.get("num_gpus", res.num_gpus) or 0)
    nodes = int(request.compute.get("num_nodes", res.num_nodes) or 1)
    return Ask(cpus, gpus, nodes)


def _misfit(part: str, ask: Ask, groups: list[NodeGroup]) -> list[str]:
    """Why the job cannot run in this partition, with the setting to change; empty when it can."""
    up = [g for g in groups if g.available in ("up", "")]
    if not up:
        states = ", ".join(sorted({g.available for g in groups}))
        return [f"partition `{part}` is {states}: choose another partition in SLURM_PARTITION"]
    most_cpus = max(g.cpus for g in up)
    most_gpus = max(g.gpus for g in up)
    why = []
    if ask.cpus_per_task > most_cpus:
        why.append(
            f"{ask.cpus_per_task} CPUs per task, but its largest node has {most_cpus}: "
            f"set SLURM_CPUS_PER_TASK to at most {most_cpus} (More settings)"
        )
    if ask.gpus_per_node > most_gpus:
        why.append(
            f"{ask.gpus_per_node} GPUs per node, but its nodes have at most {most_gpus}: "
            f"set num_gpus to at most {most_gpus}"
        )
    fitting = sum(g.nodes for g in up if g.cpus >= ask.cpus_per_task and g.gpus >= ask.gpus_per_node)
    limits = [g.max_job_nodes for g in up if g.max_job_nodes is not None]
    most_nodes = min([fitting, *limits]) if limits else fitting
    if not why and ask.nodes > most_nodes:
        why.append(f"{ask.nodes} nodes, but at most {most_nodes} can run it: set num_nodes to at most {most_nodes}")
    return why


def job_size_result(
    request: PreflightRequest, partitions: list[str], limits: dict[str, list[NodeGroup]]
) -> list[CheckResult]:
    """One result for the job's size: it passes when at least one given partition can run it."""
    ask = ask_of(request)
    known = [p for p in partitions if p in limits]  # an unknown partition has its own failing check
    if ask is None or not known:
        return []
    label = "Job size"
    asked = f"{ask.nodes} node(s) × {ask.gpus_per_node} GPU(s), {ask.cpus_per_task} CPUs per task"
    misfits = {p: _misfit(p, ask, limits[p]) for p in known}
    fits = [p for p, why in misfits.items() if not why]
    if fits:
        return [CheckResult("slurm.size", label, True, f"{asked} fits partition {', '.join(fits)}", scope="platform")]
    detail = f"{asked} can never start: " + "; ".join(f"`{p}` " + "; ".join(why) for p, why in misfits.items())
    first = next(iter(misfits.values()))[0]
    return [
        CheckResult(
            "slurm.size",
            label,
            False,
            detail,
            "Change the setting named: " + first.split(": ", 1)[-1] + ".",
            scope="platform",
        )
    ]
