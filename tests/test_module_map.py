"""The module map holds: imports point down, the pure core stays pure, and no module grows past reading size.

Read from the source with `ast` (every import, including those inside
functions), so a lazy import cannot slip past the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "taobot"
CORE = ("taobot.intake", "taobot.gate", "taobot.catalog", "taobot.secret_shapes", "taobot.launches")
# What the core may never reach: I/O, keys, platforms, the process's services.
NOT_FROM_CORE = (
    "taobot.slack",
    "taobot.store",
    "taobot.preflight",
    "taobot.backends",
    "taobot.monitor",
    "taobot.scheduler",
    "taobot.services",
    "taobot.secrets",
    "taobot.launcher",
    "taobot.config",
    "taobot.ssh",
    "taobot.rest",
    "taobot.kube",
    "taobot.cli",
    "taobot.console",
)
# The entry point is where Slack is wired to the services; it is the one module outside slack/ that may import it.
SLACK_WIRING = {"taobot.cli": {"taobot.slack.app", "taobot.slack.serve"}}
MAX_FILE_LINES = 500
MAX_CLASS_LINES = 250


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return {m for m in found if m == "taobot" or m.startswith("taobot.")}


def under(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


MODULES = modules()


def test_the_map_finds_the_core_and_slack():
    assert "taobot.intake.transitions" in MODULES and "taobot.slack.render" in MODULES
    assert imports_of("taobot.services", MODULES["taobot.services"]) >= {"taobot.services.intake", "taobot.store"}


@pytest.mark.parametrize("name", [m for m in MODULES if under(m, CORE)])
def test_the_core_imports_no_io_keys_or_platforms(name):
    bad = sorted(m for m in imports_of(name, MODULES[name]) if under(m, NOT_FROM_CORE))
    assert not bad, f"{name} is part of the pure core but imports {bad}"


@pytest.mark.parametrize("name", [m for m in MODULES if not under(m, ("taobot.slack",))])
def test_nothing_outside_slack_imports_slack(name):
    allowed = SLACK_WIRING.get(name, set())
    bad = sorted(m for m in imports_of(name, MODULES[name]) if under(m, ("taobot.slack",)) and not under(m, allowed))
    assert not bad, f"{name} imports {bad}; only slack/ renders and talks to Slack"


@pytest.mark.parametrize(
    "name", [m for m in MODULES if under(m, ("taobot.services", "taobot.views", "taobot.view_text"))]
)
def test_services_and_views_never_import_slack_or_block_kit(name):
    bad = sorted(m for m in imports_of(name, MODULES[name]) if under(m, ("taobot.slack",)))
    assert not bad


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "x.py"
    module.write_text("def f():\n    from taobot.slack import blocks\n    from .y import z\n")
    assert imports_of("taobot.intake.x", module) >= {"taobot.slack", "taobot.slack.blocks", "taobot.intake.y"}


@pytest.mark.parametrize("name", list(MODULES))
def test_files_and_classes_stay_small_enough_to_read_at_once(name):
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path} has {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"class {node.name} in {path} has {size} lines"
