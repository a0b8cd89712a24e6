"""The published skill bank snapshots: both load, and the embedded catalog follows the newest.

The snapshots are not part of the repository. CI places them beside it
(`../shared/tao-skill-bank` for the seed-era layout, `../shared/tao-skill-bank-2026-08`
for today's), or points at them with TAO_SKILL_BANK_TEST_PATH and
TAO_SKILL_BANK_2026_TEST_PATH. tests/run.sh sets TAOBOT_SKILL_BANK_SNAPSHOTS=required
when it finds them; then a missing snapshot fails. Without them (a clone
alone) run.sh leaves this module out and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taobot.catalog import Catalog, find_model, find_platform, load_catalog, registry_access, resolve_image
from taobot.catalog.bank import load_skill_bank

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("TAOBOT_SKILL_BANK_SNAPSHOTS") == "required"
SEED = Path(os.environ.get("TAO_SKILL_BANK_TEST_PATH") or REPO_ROOT.parent / "shared" / "tao-skill-bank").resolve()
TODAY = Path(
    os.environ.get("TAO_SKILL_BANK_2026_TEST_PATH") or REPO_ROOT.parent / "shared" / "tao-skill-bank-2026-08"
).resolve()

# tests/conftest.py collects this module only when the snapshots are there or required; required and
# missing is a failure, never a skip.
if not (SEED.is_dir() and TODAY.is_dir()):
    raise AssertionError(f"skill bank snapshots required but not found at {SEED} and {TODAY}")

RUNNABLE = ["lepton", "brev", "slurm", "local-docker", "kubernetes"]

# Networks the embedded catalog keeps although today's bank dropped them (the seed-era bank had
# them, and their images are still in the bank's versions table).
KEPT = {"vila", "cosmos-predict-2-5"}

# Deliberate differences from today's bank, each with its reason.
# cosmos-rl: taobot asks for HF_TOKEN, which the bank makes conditional ("only when fetching
# a gated checkpoint"): the intake cannot tell a complete local checkpoint from one to fetch.
CREDENTIALS = {"cosmos-rl": ("HF_TOKEN",)}
# cosmos-rl: the bank runs these actions through multi-line wrapper scripts; taobot's are one
# line each (the same config keys, read from the rendered TOML).
COMMANDS = {("cosmos-rl", "train"), ("cosmos-rl", "inference"), ("cosmos-rl", "quantize")}
# COCO detectors: taobot adds `{root}/images` + `{root}/annotations.json` conventions the bank lacks.
COCO = {"dino", "deformable-detr", "rtdetr"}


def _kind_differs_on_purpose(key: str, ours: str, theirs: str) -> bool:
    """The bank types some image folders (`..._dir`) as files; taobot calls them folders."""
    return (ours, theirs) == ("folder", "file") and key.rsplit(".", 1)[-1].endswith("dir")


@pytest.fixture(scope="module")
def seed() -> Catalog:
    return load_skill_bank(SEED)


@pytest.fixture(scope="module")
def today() -> Catalog:
    return load_catalog(str(TODAY))


@pytest.fixture(scope="module")
def embedded() -> Catalog:
    return load_catalog()


def test_the_snapshots_are_there() -> None:
    assert (SEED / "platform" / "platforms.manifest.json").is_file(), f"seed-era skill bank snapshot missing at {SEED}"
    assert (TODAY / "skills" / "platform").is_dir(), f"2026-08 skill bank snapshot missing at {TODAY}"


# ---------------------------------------------------------------------------
# the seed-era snapshot


def test_seed_snapshot_loads_33_models_and_5_platforms(seed: Catalog) -> None:
    assert (seed.layout, seed.source) == ("seed", str(SEED))
    assert len(seed.models) == 33 and list(seed.platforms) == RUNNABLE
    for alias, name in {
        "dgx-cloud": "lepton",
        "cluster": "slurm",
        "docker": "local-docker",
        "k8s": "kubernetes",
    }.items():
        assert find_platform(seed, alias).name == name
    assert not any(k.startswith(("wheels", "tao_sdk")) for k in seed.versions)
    for model in seed.models.values():
        for action in model.actions.values():
            assert "/" in resolve_image(seed, model, action).image, (model.name, action.name)


def test_seed_snapshot_mapping(seed: Catalog) -> None:
    slurm = seed.platforms["slurm"]
    assert slurm.required_credentials == ("SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION")
    assert (slurm.resources.num_gpus, slurm.resources.container_mounts) == (4, "/lustre")
    rl = seed.models["cosmos-rl"]
    assert rl.credentials == ("HF_TOKEN",) and rl.actions["train"].results_key == "train.output_dir"
    assert seed.models["cosmos-predict-2-5"].actions["generate"].config_format == "args"
    for cred in seed.credentials.values():
        assert cred.description and cred.how_to_get, cred.name


# ---------------------------------------------------------------------------
# today's snapshot


def test_todays_snapshot_loads_in_its_layout(today: Catalog) -> None:
    bank = load_skill_bank(TODAY)
    assert bank.layout == "2026-08" and today.description == f"skill bank (2026-08 layout) at {TODAY}"
    assert set(bank.platforms) == {"brev", "docker", "kubernetes", "slurm", "virtualenv"}
    assert any("tao-setup-nvidia-gpu-host" in note for note in bank.notes)
    assert len(bank.models) + len(bank.unsupported_models) == 36
    assert set(bank.unsupported_models) == {"nv-tesseract-ad-diffusion", "nv-tesseract-forecasting"}


def test_todays_snapshot_offers_what_taobot_runs(today: Catalog) -> None:
    assert list(today.platforms) == RUNNABLE
    assert today.platform_sources["lepton"] == "embedded"
    assert today.platform_sources["local-docker"].endswith("tao-run-on-docker/references/skill_info.yaml")
    assert set(today.unsupported_platforms) == {"virtualenv"}
    assert find_model(today, "cosmos-reason").name == "cosmos-rl"
    for model in today.models.values():
        for action in model.actions.values():
            assert action.command.strip() and action.results_key, (model.name, action.name)
            assert "/" in resolve_image(today, model, action).image, (model.name, action.name)


def test_todays_snapshot_through_the_command_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TAOBOT_", "TAO_"))}
    env["TAO_SKILL_BANK_PATH"] = str(TODAY)
    run = [sys.executable, "-m", "taobot.cli"]
    out = subprocess.run([*run, "platforms"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "virtualenv    not runnable: taobot has no backend" in out.stdout
    assert "definition: embedded" in out.stdout and "tao-run-on-slurm" in out.stdout
    out = subprocess.run(
        [*run, "image", "--model", "cosmos-rl", "--action", "train"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0 and "2026-08 layout" in out.stdout and "nvstaging" in out.stdout


# ---------------------------------------------------------------------------
# the embedded catalog follows today's bank


def test_embedded_has_every_network_of_todays_bank(today: Catalog, embedded: Catalog) -> None:
    theirs = set(today.models) | set(today.unsupported_models)
    ours = set(embedded.models) | set(embedded.unsupported_models)
    assert ours == theirs | KEPT
    assert len(ours) == 38
    assert set(embedded.unsupported_models) == set(today.unsupported_models)


def test_embedded_agrees_on_actions_and_images(today: Catalog, embedded: Catalog) -> None:
    assert embedded.versions == today.versions
    for name, model in today.models.items():
        mine = embedded.models[name]
        assert set(mine.actions) == set(model.actions), name
        for action in model.actions.values():
            theirs = resolve_image(today, model, action)
            ours = resolve_image(embedded, mine, mine.actions[action.name])
            assert (ours.image, ours.key) == (theirs.image, theirs.key), (name, action.name)


def test_embedded_agrees_on_commands_inputs_and_conventions(today: Catalog, embedded: Catalog) -> None:
    for name, model in today.models.items():
        mine = embedded.models[name]
        assert (mine.gpus_key, mine.nodes_key) == (model.gpus_key, model.nodes_key), name
        assert mine.credentials == CREDENTIALS.get(name, model.credentials), name
        for action in model.actions.values():
            ours, where = mine.actions[action.name], (name, action.name)
            if where not in COMMANDS:
                assert ours.command == action.command, where
            assert (ours.config_format, ours.results_key) == (action.config_format, action.results_key), where
            assert [i.key for i in ours.inputs] == [i.key for i in action.inputs], where
            for a, b in zip(ours.inputs, action.inputs, strict=True):
                assert (a.optional, a.annotation) == (b.optional, b.annotation), (*where, a.key)
                assert a.kind == b.kind or _kind_differs_on_purpose(a.key, a.kind, b.kind), (*where, a.key)
            if name in COCO:
                for role, keys in action.roots.items():
                    assert ours.roots[role] == keys, (*where, role)
            else:
                assert ours.roots == action.roots, where


def test_embedded_notes_every_image_not_everyone_can_pull(today: Catalog, embedded: Catalog) -> None:
    needing = set()
    for model in embedded.models.values():
        for action in model.actions.values():
            resolved = resolve_image(embedded, model, action)
            if registry_access(resolved.image):
                needing.add(model.name)
                assert model.image_access or action.image_access, (model.name, action.name)
    assert needing == {"cosmos-rl", "video-clip"}


def test_embedded_platforms_ask_at_least_what_the_bank_requires(today: Catalog, embedded: Catalog) -> None:
    bank = load_skill_bank(TODAY)
    for name, platform in bank.platforms.items():
        if name in today.unsupported_platforms:
            continue
        mine = find_platform(embedded, name)
        assert set(platform.required_credentials) <= set(mine.required_credentials), name
        # Every group the bank states is asked the same way; taobot may add groups of its own, and members only it
        # has (the SSH key it makes for a person), which come first and are preferred, and the bank never names.
        ours = {g.name: g for g in mine.credential_groups}
        for group in platform.credential_groups:
            own = ours.get(group.name)
            assert own is not None, (name, group.name)
            extra = tuple(m for m in own.one_of if m not in group.one_of)
            assert own.one_of == (*extra, *group.one_of), (name, group.name)
            assert not set(extra) & set(bank.credentials), (name, extra)
            assert own.preferred == (extra[0] if extra else group.preferred), (name, group.name)
