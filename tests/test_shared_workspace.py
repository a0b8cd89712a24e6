"""One bot, many people: status is scoped to where it is asked, and every action is in the audit trail.

Driven over real HTTP against the bot process and the fake Slack Web API;
the database is the bot's real SQLite file.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from taobot.slack import blocks as B
from tests.fakes import ids
from tests.harness import SlackUser

OTHER_USER = "U0TAOOTHER"
OTHER_CHANNEL = "C0TAOPRIV2"
DM_OF_OWNER = "D0TAOOWNER"
DM_OF_OTHER = "D0TAOOTHER"
HF_SECRET = "hf_AuditTrailSecret0123456789abcdefXYZ"


def audit_rows(bot) -> list[dict]:
    with sqlite3.connect(bot.db) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM audit ORDER BY id")]


def cli(bot, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TAOBOT_DB": str(bot.db)}
    return subprocess.run(
        [sys.executable, "-m", "taobot.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_status_shows_only_this_channel_and_a_dm_only_the_askers_own(bot):
    owner = SlackUser(bot)  # in the shared channel
    thread = owner.launch("dino")
    thread.say("platform=slurm")
    thread.wait_card("*Platform:* SLURM")

    # Someone in another (private) channel: no listing, no lookup by id, no wildcard trick.
    elsewhere = SlackUser(bot, OTHER_USER, OTHER_CHANNEL)
    assert thread.intake_id not in elsewhere.slash("status").text
    assert (
        f"No launch `{thread.intake_id}` is known in this channel" in elsewhere.slash(f"status {thread.intake_id}").text
    )
    for wildcard in ("%", "_", "%%", "\\%"):
        assert thread.intake_id not in elsewhere.slash(f"status {wildcard}").text

    # In the channel it lives in, anyone there sees it.
    assert thread.intake_id in SlackUser(bot, OTHER_USER).slash("status").text
    assert f"Launch `{thread.intake_id}`" in SlackUser(bot, OTHER_USER).slash(f"status {thread.intake_id}").text

    # In a DM: the asker's own launches, from every channel; nobody else's.
    mine = SlackUser(bot, ids.USER_ID, DM_OF_OWNER)
    assert thread.intake_id in mine.slash("status").text
    assert f"Launch `{thread.intake_id}`" in mine.slash(f"status {thread.intake_id[:4]}").text
    theirs = SlackUser(bot, OTHER_USER, DM_OF_OTHER)
    assert thread.intake_id not in theirs.slash("status").text
    assert "No launch" in theirs.slash(f"status {thread.intake_id}").text


def test_every_action_and_refusal_is_audited_without_secrets_and_printed_by_the_cli(bot):
    owner = SlackUser(bot)
    thread = owner.launch("cosmos-rl")
    thread.press(B.PLATFORM_SELECT, select="slurm")
    thread.wait_card("*Platform:* SLURM")
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    thread.submit(view, {"cred_HF_TOKEN": HF_SECRET, "cred_SLURM_USER": "jdoe"})
    thread.wait_card("`HF_TOKEN` set")
    # Someone else tries to change the owner's launch: refused, and recorded as refused.
    thread.press(B.MONITOR_YES, as_user=OTHER_USER)
    bot.slack.wait_for(lambda c: c.method == "chat.postEphemeral" and "Only <@" in c.params.get("text", ""))

    rows = audit_rows(bot)
    by_action = [(r["actor"], r["action"], r["allowed"]) for r in rows]
    assert (ids.USER_ID, "start", 1) in by_action
    assert (ids.USER_ID, "Answer", 1) in by_action
    assert (ids.USER_ID, "SubmitCredentials", 1) in by_action
    refused = [r for r in rows if r["actor"] == OTHER_USER]
    assert len(refused) == 1 and refused[0]["allowed"] == 0
    assert refused[0]["intake_id"] == thread.intake_id and refused[0]["channel"] == ids.CHANNEL_ID
    assert "Only <@" in refused[0]["reason"]
    submitted = next(r for r in rows if r["action"] == "SubmitCredentials")
    assert "HF_TOKEN" in submitted["detail"]  # the names were given…
    # …never a value: not in any audit row, nor anywhere in the database file in plaintext.
    assert all(HF_SECRET not in str(r) for r in rows)
    for path in bot.db.parent.glob("taobot.db*"):
        assert HF_SECRET.encode() not in path.read_bytes()

    printed = cli(bot, "audit", "--user", OTHER_USER)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.strip().splitlines()
    assert len(lines) == 1 and OTHER_USER in lines[0] and "REFUSED: Only <@" in lines[0]
    assert thread.intake_id in lines[0]
    everyone = cli(bot, "audit", "--since", "1h").stdout
    assert "SubmitCredentials" in everyone and HF_SECRET not in everyone
    assert cli(bot, "audit", "--since", "2999-01-01").stdout == ""
    bad = cli(bot, "audit", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "expected 30m, 2h, 7d or a date" in bad.stderr
