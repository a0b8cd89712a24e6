"""Everything still missing from an intake, each with a concrete example."""

from __future__ import annotations

from dataclasses import dataclass

from taobot.catalog import Catalog
from taobot.intake.help import dataset_help
from taobot.intake.queries import (
    compute_defaults,
    compute_fields,
    missing_credentials,
    missing_inputs,
    platform_of,
    step_done,
)
from taobot.intake.state import IntakeState, Step
from taobot.intake.values import INTERVAL_ADVICE


@dataclass(frozen=True)
class MissingItem:
    step: Step
    label: str
    example: str


def missing_items(state: IntakeState, catalog: Catalog, needs=None) -> list[MissingItem]:
    """Every missing input with a concrete example, in the order they are asked."""
    items: list[MissingItem] = []
    platform = platform_of(state, catalog)
    if platform is None:
        names = ", ".join(catalog.platforms)
        items.append(MissingItem(Step.PLATFORM, "Execution platform", f"one of {names} — `platform=slurm`"))
    if not step_done(state, catalog, Step.MONITORING):
        items.append(
            MissingItem(
                Step.MONITORING,
                "Monitoring in this thread and status interval",
                f"`monitor=yes interval=5` (default yes, 5 min; {INTERVAL_ADVICE}) or `monitor=no`",
            )
        )
    for need in missing_credentials(state, catalog, needs):
        # A generated credential (the SSH key taobot makes) is asked for by its button, never typed.
        where = "" if need.credential.generated else " (enter it with *Enter credentials*, never in the thread)"
        items.append(
            MissingItem(
                Step.CREDENTIALS,
                f"Credential {need.name}",
                f"{need.credential.description} How to get it: {need.credential.how_to_get}{where}",
            )
        )
    if state.image.chosen is None:
        items.append(
            MissingItem(
                Step.IMAGE,
                f"Container image for {state.model}/{state.action}",
                f"default=`{state.image.default}` — press *Use default* or reply `image=<registry/name:tag>`",
            )
        )
    missing = missing_inputs(state, catalog)
    if missing:
        items.append(MissingItem(Step.DATASETS, "Dataset inputs", dataset_help(state, catalog, missing)))
    for name in compute_fields(state, catalog):
        if name not in state.compute:
            default = compute_defaults(state, catalog)[name]
            limit = ""
            if platform:
                cap = (
                    platform.resources.max_num_gpus_per_node if name == "num_gpus" else platform.resources.max_num_nodes
                )
                limit = f", at most {cap}"
            items.append(
                MissingItem(Step.COMPUTE, f"Compute: {name}", f"`{name}={default}` (default {default}{limit})")
            )
    return items


# The answers a relaunch form offers to change, by the reply key that changes each one.
RELAUNCH_FIELDS = ("platform", "image", "num_gpus", "num_nodes", "interval")


def answer_values(state: IntakeState, catalog: Catalog) -> dict[str, str]:
    """The intake's answers as `key -> value` in reply keys (what a relaunch compares and its form shows)."""
    values = {
        "platform": state.platform or "",
        "image": state.image.chosen or "",
        "num_gpus": str(state.compute.get("num_gpus", "")),
        "num_nodes": str(state.compute.get("num_nodes", "")),
        "interval": str(state.interval_minutes or "") if state.monitor is not False else "off",
        "results": state.results_uri or "",
    }
    values.update(state.roots)  # dataset roots as given (their expansion follows them)
    values.update(state.spec_inputs)
    return values


def changed_answers(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key, before, after) for every answer that differs, in a stable order."""
    keys = list(dict.fromkeys([*before, *after]))
    return [(k, before.get(k, ""), after.get(k, "")) for k in keys if before.get(k, "") != after.get(k, "")]
