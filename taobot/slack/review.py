"""The review before launch as Block Kit: a few sections inside Slack's limits, for any kind of plan.

`review_blocks` never returns more than `MAX_REVIEW_BLOCKS` blocks, and no section over 3,000 characters,
so a card that holds it keeps room for its own blocks and buttons.
"""

from __future__ import annotations

from taobot.review import Review, ReviewUnit, hours_text
from taobot.slack.blocks import MAX_SECTION, clip, pack, section

MAX_REVIEW_BLOCKS = 12
MAX_DATASETS_SHOWN = 12


def _unit_text(unit: ReviewUnit, several: bool) -> str:
    shape = f"{unit.gpus_per_node} GPU{'s' if unit.gpus_per_node != 1 else ''} × {unit.nodes} node"
    shape += "s" if unit.nodes != 1 else ""
    if unit.count > 1:
        shape += f" per run · {unit.count} runs, {unit.at_once} at a time ({unit.gpus * unit.at_once} GPUs at once)"
    lines = [
        (f"*{unit.label}*" if several else f"*Platform:* {unit.platform}")
        + (f" on {unit.platform}" if several else ""),
        f"*Image:* `{unit.image}`",
        f"*GPUs and nodes:* {shape}",
    ]
    if unit.epochs:
        lines.append(f"*Epochs:* {unit.epochs}")
    if unit.datasets:
        shown = unit.datasets[:MAX_DATASETS_SHOWN]
        lines.append("*Datasets:*\n" + "\n".join(f"• `{k}` = `{v}`" for k, v in shown))
        if len(unit.datasets) > len(shown):
            lines.append(f"… and {len(unit.datasets) - len(shown)} more")
    if unit.overrides:
        lines.append(
            "*Differs from the defaults:* "
            + ", ".join(f"{what} `{given}` (default {d})" for what, d, given in unit.overrides)
        )
    else:
        lines.append("*Differs from the defaults:* nothing")
    lines += list(unit.notes)
    return clip("\n".join(lines), MAX_SECTION)


def review_blocks(review: Review) -> list[dict]:
    """The review as sections: what runs (one per unit), the estimate and its assumptions, then any flags."""
    several = len(review.units) > 1
    units = [_unit_text(u, several) for u in review.units]
    if review.hidden_units:
        units.append(f"… and {review.hidden_units} more")
    blocks = [section(f":mag: *Review before launch: {review.title}*")]
    blocks += [section(chunk) for chunk in pack(units, MAX_SECTION)][: MAX_REVIEW_BLOCKS - 4]
    if review.runtime_hours is None:
        numbers = "*Estimate:* no runtime or GPU-hours estimate"
    else:
        word = "at most " if review.upper_bound else "about "
        numbers = (
            f"*Estimate:* runtime {word}{hours_text(review.runtime_hours)} · {word}{review.gpu_hours:.3g} GPU-hours"
        )
    lines = [numbers, *(f"_{a}_" for a in review.assumptions), f"*Monitoring:* {review.monitoring}", *review.extra]
    blocks.append(section(clip("\n".join(lines), MAX_SECTION)))
    flags = [clip(f":warning: {f}", MAX_SECTION // 2) for f in review.flags]
    blocks += [section(chunk) for chunk in pack(flags, MAX_SECTION)][:2]
    return blocks
