"""A person's App Home tab: their own launches, running ones first. Pure: view in, Home view out."""

from __future__ import annotations

from taobot.slack.blocks import MAX_MODAL_BLOCKS, MAX_SECTION, context, mrkdwn, pack, section
from taobot.view_text import entry_line
from taobot.views import HomeView

START_HINT = "Start a launch in any channel with `/tao launch <model> [action]` or `@taobot train <model>`."


def home_view(view: HomeView) -> dict:
    running = [e for e in view.entries if e.launch is not None and e.launch.state.active]
    open_intakes = [e for e in view.entries if e not in running and e.intake.status in ("collecting", "complete")]
    ended = [e for e in view.entries if e not in running and e not in open_intakes]
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": "Your TAO launches"}}]
    if not view.entries:
        blocks.append(section("You have no launches yet. " + START_HINT))
    for title, group in (("Running", running), ("Being set up", open_intakes), ("Ended", ended)):
        if not group:
            continue
        lines = [entry_line(e, view.now, channel=True, owner=False) for e in group]
        blocks.append(section(f"*{title}* ({len(group)})"))
        blocks += [section(chunk) for chunk in pack(lines, MAX_SECTION)]
    if view.total > len(view.entries):
        blocks.append(context(f"The newest {len(view.entries)} of your {view.total} launches."))
    blocks.append({"type": "context", "elements": [mrkdwn(START_HINT + " `/tao status <id>` shows one in detail.")]})
    return {"type": "home", "blocks": blocks[:MAX_MODAL_BLOCKS]}
