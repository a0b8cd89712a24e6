"""Short commands start fast: settings come from the environment without pydantic-settings, and `taobot
preflight` loads only what its platform's checks need (no Slack, database, scheduler or other platforms, and
paramiko's invoke only when an ssh_config's `Match exec` line needs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taobot.config import load_settings
from taobot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# Nothing of these serves a SLURM preflight from the command line.
NOT_FOR_PREFLIGHT = (
    "pydantic_settings",
    "slack_bolt",
    "slack_sdk",
    "waitress",
    "apscheduler",
    "sqlite_utils",
    "prometheus_client",
    "boto3",
    "botocore",
    "docker",
    "kubernetes",
    "taobot.store",
    "taobot.services",
    "taobot.slack",
    "taobot.scheduler",
    "taobot.policy",
    "taobot.backends",
    "invoke.",  # paramiko's, for `Match exec` lines only: loaded when one is met
    "asyncio",
    "unittest",
)


def test_settings_come_from_their_variables_and_overrides_win(monkeypatch, tmp_path):
    monkeypatch.setenv("TAOBOT_DB", str(tmp_path / "from-env.db"))
    monkeypatch.setenv("taobot_log_level", "debug")  # names match regardless of case, as pydantic-settings did
    monkeypatch.setenv("TAO_SKILL_BANK_PATH", str(tmp_path / "bank"))
    settings = load_settings()
    assert settings.db_path == tmp_path / "from-env.db"
    assert settings.log_level == "DEBUG" and settings.skill_bank_path == str(tmp_path / "bank")
    assert load_settings(db_path=tmp_path / "given.db").db_path == tmp_path / "given.db"


def test_a_bad_variable_is_named_and_nothing_else_is_read(monkeypatch):
    monkeypatch.setenv("TAOBOT_HEALTH_PORT", "99999")
    monkeypatch.setenv("TAOBOT_NOT_A_SETTING", "ignored")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.setting == "TAOBOT_HEALTH_PORT" and "99999" in err.value.message


def test_the_slurm_preflight_command_loads_only_what_its_checks_need(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(
        SLURM_USER="jdoe",
        SLURM_HOSTNAME="127.0.0.1:1",  # nothing listens: the login is tried, refused, and nothing else happens
        SLURM_PARTITION="gpu",
        SSH_KEY_PATH=str(key),
        TAOBOT_SSH_KNOWN_HOSTS=str(tmp_path / "known_hosts"),
        TAOBOT_SSH_CONFIG="/nonexistent",
        TAOBOT_DB=str(tmp_path / "taobot.db"),
    )
    code = (
        "import json, sys\n"
        "from taobot import cli\n"
        "rc = cli.main(['preflight', '--platform', 'slurm', '--path', 'train=/lustre/data/train'])\n"
        "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    *report, last = out.stdout.strip().splitlines()
    result = json.loads(last)
    assert result["rc"] == 2 and any(line.startswith("FAIL  SSH login") for line in report), out.stdout
    modules = set(result["modules"])
    assert "paramiko" in modules  # the checks ran as far as the login
    loaded = sorted(
        m for m in modules if any(m == name or m.startswith(name.rstrip(".") + ".") for name in NOT_FOR_PREFLIGHT)
    )
    assert not loaded, f"`taobot preflight --platform slurm` imported {loaded}"
    assert not (tmp_path / "taobot.db").exists()  # a check from the command line opens no database


def test_an_ssh_config_match_exec_line_still_runs_when_invoke_loads_late(tmp_path):
    code = (
        "import sys\n"
        "from taobot.cli import _defer_import\n"
        "_defer_import('invoke')\n"
        "import paramiko\n"
        "print('invoke.tasks' in sys.modules)\n"
        "config = paramiko.SSHConfig.from_text('Match exec \"test -d /\"\\n  HostName via-exec.example\\n')\n"
        "print(config.lookup('login')['hostname'], 'invoke.tasks' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "via-exec.example", "True"], out.stdout + out.stderr
