"""A person's App Home tab: their own launches, running ones first, each with a link to its thread and the
buttons that person may press. Pure: view (and the workspace's URL) in, Home view out.

Thread links are built from the workspace URL (`auth.test`, asked once per process) rather than asked of
`chat.getPermalink` per launch: that method is Tier 4 (about 100 a minute), and a Home of 50 launches is
republished on every state change of any of them, so a permalink per launch would run into the limit.
"""

from __future__ import annotations

from taobot.launches import Launch
from taobot.slack.blocks import MAX_MODAL_BLOCKS, actions, button, context, mrkdwn, plain, section
from taobot.view_text import entry_line
from taobot.views import ChannelEntry, HomeView

START_HINT = "Start a launch in any channel with `/tao launch <model> [action]` or `@taobot train <model>`."

# The Home's own action ids: the same intents as the thread's buttons, told apart so the Home re-publishes.
HOME_CANCEL_JOB = "home_cancel_job"
HOME_DETACH = "home_detach"
HOME_ATTACH = "home_attach"
HOME_ACTION_IDS = (HOME_CANCEL_JOB, HOME_DETACH, HOME_ATTACH)

# Blocks kept back from the launches for the header, the group titles, the notice and the footer.
FRAME_BLOCKS = 8


def thread_link(workspace_url: str, channel: str, thread_ts: str | None) -> str | None:
    """`https://<team>.slack.com/archives/<channel>/p<ts without the dot>`: the thread's root message."""
    if not workspace_url or not channel or not thread_ts:
        return None
    return f"{workspace_url.rstrip('/')}/archives/{channel}/p{thread_ts.replace('.', '')}"


def home_buttons(launch: Launch | None) -> list[dict]:
    """Cancel while the job has not ended; stop or resume updates of a monitored job that runs."""
    if launch is None or launch.state.terminal or launch.ended_at is not None:
        return []
    elements = []
    if launch.job_id:
        elements.append(
            button(
                "Cancel job",
                HOME_CANCEL_JOB,
                launch.id,
                "danger",
                confirm={
                    "title": plain("Cancel this job?"),
                    "text": plain(f"Job {launch.job_id} ({launch.id}) is cancelled on the platform.", 300),
                    "confirm": plain("Cancel job"),
                    "deny": plain("Keep it running"),
                },
            )
        )
    if launch.watched:
        elements.append(button("Stop updates", HOME_DETACH, launch.id))
    elif launch.monitor and launch.detached:
        elements.append(button("Resume updates", HOME_ATTACH, launch.id))
    return elements


def _entry_blocks(entry: ChannelEntry, now: float, workspace_url: str) -> list[dict]:
    line = entry_line(entry, now, channel=True, owner=False)
    link = thread_link(workspace_url, entry.intake.channel, entry.intake.thread_ts)
    blocks = [section(line + (f" · <{link}|open thread>" if link else ""))]
    if elements := home_buttons(entry.launch):
        blocks.append(actions(f"h_{entry.launch.id}", elements))
    return blocks


def home_view(view: HomeView, workspace_url: str = "") -> dict:
    running = [e for e in view.entries if e.launch is not None and e.launch.state.active]
    open_intakes = [e for e in view.entries if e not in running and e.intake.status in ("collecting", "complete")]
    ended = [e for e in view.entries if e not in running and e not in open_intakes]
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": "Your TAO launches"}}]
    if view.notice:
        blocks.append(section(view.notice))
    if not view.entries:
        blocks.append(section("You have no launches yet. " + START_HINT))
    budget = MAX_MODAL_BLOCKS - FRAME_BLOCKS
    shown = 0
    for title, group in (("Running", running), ("Being set up", open_intakes), ("Ended", ended)):
        if not group:
            continue
        rows = []
        for entry in group:
            got = _entry_blocks(entry, view.now, workspace_url)
            if len(got) > budget:
                break
            rows += got
            budget -= len(got)
            shown += 1
        if rows:
            blocks.append(section(f"*{title}* ({len(group)})"))
            blocks += rows
    not_shown = view.total - shown
    if not_shown > 0:
        blocks.append(context(f"The newest {shown} of your {view.total} launches; {not_shown} more are not shown."))
    blocks.append({"type": "context", "elements": [mrkdwn(START_HINT + " `/tao status <id>` shows one in detail.")]})
    return {"type": "home", "blocks": blocks[:MAX_MODAL_BLOCKS]}
