"""manifest.yml declares every command, event, scope and interactivity the code uses, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from taobot.slack import app as slack_app
from taobot.slack import blocks as B

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())
SOURCES = "\n".join(p.read_text() for p in (ROOT / "taobot").rglob("*.py"))


def used_methods() -> set[str]:
    methods = set(re.findall(r'_call\(\s*"([a-z]+\.[A-Za-z]+)"', SOURCES))
    if re.search(r"\bsay\(", SOURCES):
        methods.add("chat.postMessage")  # Bolt's say() posts with chat.postMessage
    return methods


def used_events() -> set[str]:
    events = set(re.findall(r'app\.event\("([a-z_]+)"\)', SOURCES))
    # A "message" listener receives channel and private-channel messages.
    return {e for e in events if e != "message"} | (
        {"message.channels", "message.groups"} if "message" in events else set()
    )


def test_manifest_commands_match_the_registered_commands():
    declared = {c["command"] for c in MANIFEST["features"]["slash_commands"]}
    registered = set(re.findall(r'app\.command\("(/[a-z]+)"\)', SOURCES))
    assert declared == registered == set(slack_app.SLASH_COMMANDS)


def test_manifest_events_match_the_listeners():
    assert set(MANIFEST["settings"]["event_subscriptions"]["bot_events"]) == used_events()


def test_manifest_scopes_are_exactly_what_the_code_needs():
    methods = used_methods()
    unknown = methods - set(slack_app.SCOPES_FOR_METHOD)
    assert not unknown, f"Web API methods without a scope entry: {unknown}"
    needed: set[str] = set()
    for method in methods:
        scopes = slack_app.SCOPES_FOR_METHOD[method]  # one scope, several, or None
        needed |= {scopes} if isinstance(scopes, str) else set(scopes or ())
    needed |= {scope for e in used_events() if (scope := slack_app.SCOPES_FOR_EVENT[e])}
    needed.add(slack_app.COMMAND_SCOPE)
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == needed


def test_manifest_enables_the_home_tab_the_app_home_listener_publishes():
    assert "app_home_opened" in used_events() and "views.publish" in used_methods()
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True


def test_manifest_enables_interactivity_because_the_card_has_buttons_and_modals():
    assert B.ACTION_IDS and B.CALLBACK_IDS
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True


def test_manifest_is_well_formed_for_slack():
    info = MANIFEST["display_information"]
    assert 1 <= len(info["name"]) <= 35 and len(info["description"]) <= 140
    assert MANIFEST["features"]["bot_user"]["display_name"]
    for command in MANIFEST["features"]["slash_commands"]:
        assert re.fullmatch(r"/[a-z0-9_-]{1,31}", command["command"]) and len(command["description"]) <= 2000
    assert MANIFEST["settings"]["socket_mode_enabled"] is True  # `taobot serve` defaults to Socket Mode
