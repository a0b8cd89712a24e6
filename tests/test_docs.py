"""The README's configuration and command tables are checked against the code, so they cannot drift."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pydantic import AliasChoices

from taobot.cli import build_parser
from taobot.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
# Options every command that opens the database takes; the README says so once, under the table.
COMMON_OPTIONS = {"--db", "--help"}


def table_after(heading: str) -> list[str]:
    """The rows of the first Markdown table under `## heading`."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    rows, started = [], False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            rows.append(line)
        elif started:
            break
    return rows[2:]  # header and separator


def settings_variables() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.add(alias.choices[0] if isinstance(alias, AliasChoices) else alias)
    return names


def test_configuration_table_lists_exactly_the_settings():
    documented = {re.match(r"\| `([A-Z0-9_]+)` \|", row).group(1) for row in table_after("Configuration")}
    assert documented == settings_variables(), (
        f"in the README only: {sorted(documented - settings_variables())}; "
        f"read by Settings only: {sorted(settings_variables() - documented)}"
    )


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_command_table_lists_every_command_and_its_options():
    rows = {re.match(r"\| `taobot ([a-z-]+)", row).group(1): row for row in table_after("Command line")}
    commands = subcommands()
    assert set(rows) == set(commands)
    for name, sub in commands.items():
        options = {o for a in sub._actions for o in a.option_strings if o.startswith("--")} - COMMON_OPTIONS
        missing = sorted(o for o in options if o not in rows[name])
        assert not missing, f"`taobot {name}` options not in the README row: {missing}"
        named = set(re.findall(r"--[a-z][a-z-]+", rows[name]))
        assert named <= options, f"the README names options `taobot {name}` does not have: {sorted(named - options)}"


def test_common_options_are_documented_once():
    assert "`--db PATH`" in README.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
