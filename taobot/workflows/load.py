"""Workflows from the embedded data, and from a skill bank's `applications/*/references/skill_info.yaml`.

The bank writes a workflow as prerequisites (its inputs), `stages.init` and `stages.iteration` (repeated
`iteration_defaults.count` times); a stage names an `action` and a `skill` (the model), or a `script` with an
image of its own, which taobot does not run: such a stage is kept, marked as not runnable, and named on the
card. A bank placeholder that is one of its prerequisites becomes `{inputs.<name>}`; any other (the bank's
storage roots) makes the stage not runnable, since taobot has no such value to give.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from taobot.errors import CatalogError
from taobot.workflows.schema import STAGE_NAME, Workflow

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _parsed(text: str, where: str) -> dict:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{where}: not YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise CatalogError(f"{where}: expected a mapping")
    return doc


def _checked(doc: dict, where: str) -> Workflow:
    try:
        return Workflow.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise CatalogError(f"{where}, `{field}`: {first['msg']}") from exc


def embedded_workflows() -> dict[str, Workflow]:
    out = {}
    folder = resources.files("taobot.catalog").joinpath("data", "workflows")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            flow = _checked(_parsed(entry.read_text(encoding="utf-8"), entry.name), entry.name)
            out[flow.name] = flow
    return out


def bank_workflow(name: str, doc: dict, where: str) -> Workflow | None:
    """One bank workflow in our schema; None when it describes no stages (the bank's `normal-train` is prose)."""
    prereq = doc.get("prerequisites") or {}
    inputs = []
    for required, items in ((True, prereq.get("required") or []), (False, prereq.get("optional") or [])):
        for item in items:
            if isinstance(item, dict) and item.get("name"):
                inputs.append(
                    {"name": str(item["name"]), "description": str(item.get("description", "")), "required": required}
                )
    names = {i["name"] for i in inputs}
    raw = doc.get("stages") or {}
    if not isinstance(raw, dict) or not any(raw.get(k) for k in ("init", "iteration")):
        return None
    stages, repeat, models = [], [], []
    for part in ("init", "iteration"):
        for i, item in enumerate(raw.get(part) or []):
            if not isinstance(item, dict) or not item.get("name"):
                raise CatalogError(f"{where}, `stages.{part}[{i}]`: a stage needs a name")
            stage_name = re.sub(r"[^a-z0-9_]", "_", str(item["name"]).lower())
            if not STAGE_NAME.match(stage_name):
                stage_name = f"s_{stage_name}"
            skill, action = item.get("skill"), item.get("action")
            overrides, unknown = {}, []
            for key, value in (item.get("spec_overrides") or {}).items():
                text = str(value)
                unknown += [p for p in _PLACEHOLDER.findall(text) if p not in names]
                overrides[str(key)] = _PLACEHOLDER.sub(
                    lambda m: "{inputs." + m.group(1) + "}" if m.group(1) in names else m.group(0), text
                )
            note = ""
            if item.get("script") or not (action and skill):
                note = f"a script of the bank's ({item.get('script')})" if item.get("script") else "no TAO action"
            elif unknown:
                note = "it refers to " + ", ".join(f"{{{p}}}" for p in dict.fromkeys(unknown)) + ", which taobot lacks"
            runnable = not note
            if runnable and skill not in models:
                models.append(str(skill))
            stages.append(
                {
                    "name": stage_name if stage_name not in {s["name"] for s in stages} else f"{stage_name}_{part}",
                    "action": str(action) if runnable else None,
                    "model": str(skill) if runnable and skill else None,
                    "device": "cpu" if str(item.get("type", "gpu")).lower() == "cpu" else "gpu",
                    "overrides": overrides if runnable else {},
                    "optional": bool(item.get("conditional")),
                    "note": note,
                }
            )
            if part == "iteration":
                repeat.append(stages[-1]["name"])
    count = int((doc.get("iteration_defaults") or {}).get("count", 1) or 1) if repeat else 1
    # A workflow whose prerequisites name a `model` runs for any fitting model; otherwise for the ones it names.
    own = [] if "model" in names else models[:1]
    for stage in stages:
        if stage["model"] in own:
            stage["model"] = None  # the workflow's own model, whatever alias the person used
    body = {
        "name": name,
        "summary": str(doc.get("description") or f"the skill bank's {name} workflow"),
        "source": where,
        "models": own,
        "inputs": inputs,
        "stages": stages,
        "repeat": repeat,
        "iterations": max(1, min(count, 20)),
    }
    return _checked(body, where)


def bank_workflows(root: Path) -> tuple[dict[str, Workflow], list[str]]:
    """The bank's workflows (seed-era `applications/`, or the same under `skills/`), and a note per one skipped."""
    found, notes = {}, []
    for base in (root, root / "skills"):
        for path in sorted((base / "applications").glob("*/references/skill_info.yaml")):
            where = str(path)
            doc = _parsed(path.read_text(encoding="utf-8"), where)
            if doc.get("type") != "workflow":
                continue
            name = path.parent.parent.name
            flow = bank_workflow(name, doc, where)
            if flow is None:
                notes.append(f"{name}: the bank describes no stages for it ({where})")
            else:
                found[name] = flow
    return found, notes


def load_workflows(bank: Path | None = None) -> tuple[dict[str, Workflow], list[str]]:
    """Embedded workflows, joined by the bank's (a bank workflow of the same name wins) when a bank is given."""
    flows = embedded_workflows()
    if bank is None:
        return flows, []
    from_bank, notes = bank_workflows(bank)
    flows.update(from_bank)
    return flows, notes
