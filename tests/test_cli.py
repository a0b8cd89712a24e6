"""The `taobot` console script as a user runs it: real processes, real stdin/stdout."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.skill_banks import write_seed_bank, write_skills_bank

ROOT = Path(__file__).resolve().parent.parent


def taobot(*args: str, stdin: str | None = None, env: dict | None = None, cwd: Path | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TAOBOT_", "TAO_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "taobot.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,
    )


def test_platforms_lists_all_five_with_prompt_defaults():
    out = taobot("platforms")
    assert out.returncode == 0
    assert "long_running_enabled=true, status_interval_minutes=5" in out.stdout
    assert "Catalog: embedded catalog" in out.stdout
    for name in ("lepton", "brev", "slurm", "local-docker", "kubernetes"):
        assert f"\n{name}" in "\n" + out.stdout
    assert out.stdout.count("definition: embedded") == 5
    assert "not runnable" not in out.stdout
    data = json.loads(taobot("platforms", "--format", "json").stdout)
    assert [p["name"] for p in data["platforms"]] == ["lepton", "brev", "slurm", "local-docker", "kubernetes"]
    assert {p["definition"] for p in data["platforms"]} == {"embedded"}
    assert data["catalog"]["layout"] == "embedded" and data["not_runnable"] == []


def test_one_platform_by_alias_shows_credentials_groups_resources_and_checks():
    out = taobot("platforms", "--platform", "cluster")
    assert out.returncode == 0
    text = out.stdout
    assert "SLURM_USER" in text and "how to get it" in text
    assert "one of TAOBOT_SSH_KEY (preferred), SSH_KEY_PATH, SSH_AUTH_SOCK" in text
    assert "SLURM_ACCOUNT [always] — only when your site requires --account" in text
    assert (
        "num_gpus=4" in text
        and "time_hours=4.0" in text
        and "timeout_hours=3.8" in text
        and "container_mounts=/lustre" in text
    )
    assert "lustre:///{absolute_path}" in text and "Preflight checks" in text
    assert "Definition: embedded" in text
    data = json.loads(taobot("platforms", "--platform", "k8s", "--format", "json").stdout)
    assert data["name"] == "kubernetes" and data["prompt_defaults"]["status_interval_minutes"] == 5
    assert "KUBECONFIG" in data["credential_definitions"] and data["definition"] == "embedded"


def test_image_reports_the_default_and_where_it_came_from():
    out = taobot("image", "--model", "cosmos-rl", "--action", "train", "--format", "json")
    data = json.loads(out.stdout)
    assert data["source"] == "image" and data["versions_key"] == "tao_toolkit.cosmos_rl"
    assert data["image"].startswith("nvcr.io/") and ":" in data["image"]
    assert "nvstaging" in data["access"] and data["catalog"] == "embedded catalog"
    text = taobot("image", "--model", "dino", "--action", "export").stdout
    assert text.startswith("Container image for dino/export: default=nvcr.io/nvidia/tao/")
    assert "access:" not in text
    text = taobot("image", "--model", "cosmos-reason", "--action", "train").stdout
    assert text.startswith("Container image for cosmos-rl/train:") and "\n  access: " in text


def test_unknown_names_exit_2_with_what_exists():
    out = taobot("image", "--model", "nope", "--action", "train")
    assert out.returncode == 2 and "Unknown model `nope`" in out.stderr and "cosmos-rl" in out.stderr
    out = taobot("platforms", "--platform", "aws")
    assert out.returncode == 2 and "local-docker" in out.stderr


def test_skill_bank_path_switches_the_catalog_and_a_broken_bank_names_the_file(tmp_path):
    seed = write_seed_bank(tmp_path / "seed")
    out = taobot("image", "--model", "cosmos-rl", "--action", "train", env={"TAO_SKILL_BANK_PATH": str(seed)})
    assert out.returncode == 0 and str(seed) in out.stdout and "seed-era layout" in out.stdout
    assert "cosmos-rl:9.1.0-rc4" in out.stdout
    (tmp_path / "broken" / "platform").mkdir(parents=True)
    (tmp_path / "broken" / "platform" / "platforms.manifest.json").write_text("{not json")
    out = taobot("platforms", env={"TAO_SKILL_BANK_PATH": str(tmp_path / "broken")})
    assert out.returncode == 2 and "platforms.manifest.json: field (document)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_platforms_from_a_bank_in_todays_layout_say_where_each_came_from(tmp_path):
    bank = write_skills_bank(tmp_path / "bank")
    env = {"TAO_SKILL_BANK_PATH": str(bank)}
    out = taobot("platforms", env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"Catalog: skill bank (2026-08 layout) at {bank}" in text
    assert "definition: embedded" in text  # Lepton: the bank has none
    assert f"definition: {bank}/skills/platform/tao-run-on-docker/references/skill_info.yaml" in text
    assert "virtualenv    not runnable: taobot has no backend for this platform" in text
    assert "tao-setup-nvidia-gpu-host" in text.split("Not read:", 1)[1]
    data = json.loads(taobot("platforms", "--format", "json", env=env).stdout)
    assert [p["name"] for p in data["platforms"]] == ["lepton", "brev", "slurm", "local-docker", "kubernetes"]
    assert [e["name"] for e in data["not_runnable"]] == ["virtualenv"]
    assert data["catalog"]["layout"] == "2026-08"
    out = taobot("platforms", "--platform", "virtualenv", env=env)
    assert out.returncode == 2 and "taobot cannot run" in out.stderr and "local-docker" in out.stderr
    out = taobot("image", "--model", "nv-tesseract-forecasting", "--action", "train", env=env)
    assert out.returncode == 2 and "without a container image" in out.stderr


def test_serve_without_tokens_names_what_is_missing_and_points_to_console(tmp_path):
    out = taobot("serve", env={"TAOBOT_DB": str(tmp_path / "t.db")})
    assert out.returncode == 2
    assert "SLACK_BOT_TOKEN" in out.stderr and "SLACK_APP_TOKEN" in out.stderr and "taobot console" in out.stderr
    out = taobot("serve", "--http", env={"SLACK_BOT_TOKEN": "xoxb-1", "TAOBOT_DB": str(tmp_path / "t.db")})
    assert out.returncode == 2 and "SLACK_SIGNING_SECRET" in out.stderr and "SLACK_BOT_TOKEN" not in out.stderr


def test_bad_setting_stops_with_one_line_naming_it(tmp_path):
    out = taobot("status", env={"TAOBOT_LOG_FORMAT": "xml", "TAOBOT_DB": str(tmp_path / "t.db")})
    assert out.returncode == 2 and "TAOBOT_LOG_FORMAT" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = taobot("status", env={"TAOBOT_SECRET_KEY": "short", "TAOBOT_DB": str(tmp_path / "t.db")})
    assert out.returncode == 2 and "TAOBOT_SECRET_KEY" in out.stderr


def test_console_runs_the_whole_intake_with_hidden_secret_and_can_resume(tmp_path):
    env = {"TAOBOT_DB": str(tmp_path / "c.db")}
    token = "hf_ConsoleSecretTokenValue0123456789abcd"
    first = "\n".join(["slurm", "", "2", "/home/jdoe/.ssh/id_ed25519", "jdoe", "login1.example.com", "gpu"]) + "\n"
    out = taobot("console", "--model", "cosmos-rl", stdin=first, env=env)
    assert out.returncode == 1 and "--resume" in out.stdout  # stdin ended mid-intake
    launch_id = out.stdout.split("Launch ", 1)[1].split(":", 1)[0]
    rest = (
        "\n".join([token, "", "train=/lustre/a/train eval=/lustre/a/val", "num_gpus=9", "num_gpus=8 num_nodes=2"])
        + "\n"
    )
    out = taobot("console", "--resume", launch_id, stdin=rest, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Intake complete." in out.stdout
    assert "Note: The bank pins a pre-release Cosmos-RL build" in out.stdout  # the image question says what it needs
    assert "num_gpus must be 1–8" in out.stdout
    assert "`custom.val_dataset.annotation_path` = `/lustre/a/val/annotations.json`" in out.stdout
    assert token not in out.stdout and token not in out.stderr
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("c.db*"))
    assert token.encode() not in raw
    key = tmp_path / "c.db.key"
    assert key.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert db.execute("SELECT status FROM intakes WHERE id = ?", [launch_id]).fetchone()[0] == "complete"


def test_console_unknown_model_lists_models(tmp_path):
    out = taobot("console", "--model", "resnet", stdin="", env={"TAOBOT_DB": str(tmp_path / "c.db")})
    assert out.returncode == 2 and "Unknown model `resnet`" in out.stdout and "dino" in out.stdout
