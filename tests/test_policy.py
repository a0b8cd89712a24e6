"""The operator's policy file: a good file, every kind of bad file (named by its line), no file, and what it answers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from taobot.catalog import load_catalog
from taobot.errors import ConfigError
from taobot.policy import MountRules, Policy, default_policy, load_policy, protected_paths

CATALOG = load_catalog()

GOOD = """\
admins: [U012ADMIN]            # in addition to TAOBOT_ADMINS
approvers: [U034LEAD]
platforms:
  slurm: {users: [U0ALICE1, U0BOB001], channels: [C0GPUTEAM]}
  local-docker: {users: [U0ALICE1]}
  lepton: {}
images:
  allowed_prefixes: [nvcr.io/nvidia/tao/, "registry.example.com:5000/tao/"]
docker:
  mount_roots: [{root}/data, {root}/scratch/]
gpus:
  max_per_launch: 8
  max_per_person: 16
approvals:
  gpus_over: 8
  gpu_hours_over: 64
kubernetes_profiles:
  - name: team-a
    kubeconfig: /etc/taobot/kubeconfig
    namespaces: [team-a]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def bot_paths(tmp_path: Path) -> tuple:
    bot = tmp_path / "bot"
    return protected_paths(bot / "taobot.db", bot / "taobot.db.key", bot / "taobot-runs", None)


def test_a_good_file_loads_every_field(tmp_path):
    path = write(tmp_path, GOOD.replace("{root}", str(tmp_path)))
    policy = load_policy(path, CATALOG, bot_paths(tmp_path))
    assert policy.source == str(path)
    assert policy.admins == ["U012ADMIN"] and policy.approvers == ["U034LEAD"]
    assert policy.image_prefixes == ("nvcr.io/nvidia/tao/", "registry.example.com:5000/tao/")
    assert policy.mounts.roots == (f"{tmp_path}/data", f"{tmp_path}/scratch")
    assert policy.gpus.max_per_launch == 8 and policy.gpus.max_per_person == 16
    assert policy.approvals.gpus_over == 8 and policy.approvals.gpu_hours_over == 64
    assert [p.name for p in policy.kubernetes_profiles] == ["team-a"]
    # a listed user OR a listed channel; a platform with empty lists, or not listed, is everyone's
    assert policy.platform_refusal("slurm", "SLURM", "U0ALICE1", "C0OTHER01") is None
    assert policy.platform_refusal("slurm", "SLURM", "U0CAROL1", "C0GPUTEAM") is None
    refusal = policy.platform_refusal("slurm", "SLURM", "U0CAROL1", "C0OTHER01")
    assert "SLURM is not open to <@U0CAROL1> in <#C0OTHER01>" in refusal
    assert "<@U0ALICE1>, <@U0BOB001> and in <#C0GPUTEAM>" in refusal
    assert policy.platform_refusal("lepton", "Lepton", "U0CAROL1", None) is None
    assert policy.platform_refusal("brev", "Brev", "U0CAROL1", None) is None
    assert policy.open_platforms(CATALOG.platforms, "U0CAROL1", None) == ["lepton", "brev", "kubernetes"]
    assert policy.approvers_for("U034LEAD", ["U0TAOADMN"]) == {"U012ADMIN", "U0TAOADMN"}


def test_no_policy_file_is_the_documented_safe_default():
    policy = load_policy(None, CATALOG)
    assert "TAOBOT_POLICY is unset" in policy.source
    assert policy.open_platforms(CATALOG.platforms, "U0ANYONE1", "C0ANYWHERE") == list(CATALOG.platforms)
    assert policy.image_prefixes == ("nvcr.io/",)  # the registry of every catalog image
    assert policy.image_refusal("nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt") is None
    assert "`nvcr.io/`" in policy.image_refusal("docker.io/library/busybox:1")
    assert policy.mounts.roots == ()  # in Slack: no host folder at all
    assert "mounts no host folders" in policy.mounts.refusal("/data/train")
    assert default_policy(CATALOG, console=True).mounts.roots is None  # on a person's own machine: any folder
    assert default_policy(CATALOG, console=True).mounts.refusal("/etc") is not None  # but never the host's own
    assert policy.gpu_refusal(1000, 1000) is None and policy.approval_reason(1000, None, "SLURM") is None
    assert policy.approvers_for("U1X", []) == frozenset()


def test_a_policy_file_that_cannot_be_read_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_policy(tmp_path / "nope.yaml", CATALOG)
    assert err.value.setting == "TAOBOT_POLICY" and str(tmp_path / "nope.yaml") in err.value.message


BAD = {
    "unknown top-level field": ("admins: [U012ADMIN]\napprover: [U034LEAD]\n", 2, "approver", "unknown field"),
    "unknown nested field": (
        "platforms:\n  slurm:\n    users: [U0ALICE1]\n    usres: [U0BOB001]\n",
        4,
        "platforms.slurm.usres",
        "the fields here are: users, channels",
    ),
    "a name for a user id": (
        "approvers:\n  - U034LEAD\n  - '@alice'\n",
        3,
        "approvers[1]",
        "is not a Slack user id",
    ),
    "a channel name": (
        "platforms:\n  slurm:\n    channels: ['#gpu']\n",
        3,
        "platforms.slurm.channels[0]",
        "channel id",
    ),
    "a number out of range": ("gpus:\n  max_per_launch: 0\n", 2, "gpus.max_per_launch", "greater than or equal to 1"),
    "a word for a number": (
        "approvals:\n  gpus_over: eight\n",
        2,
        "approvals.gpus_over",
        "valid integer",
    ),
    "a list where a mapping goes": ("gpus: [8]\n", 1, "gpus", "valid dictionary"),
    "an open image prefix": (
        "images:\n  allowed_prefixes:\n    - nvcr.io/nvidia/tao\n",
        3,
        "images.allowed_prefixes[0]",
        "must end with '/'",
    ),
    "a relative mount root": ("docker:\n  mount_roots: [data]\n", 2, "docker.mount_roots[0]", "absolute path"),
    "a mount root over the Docker socket": (
        "docker:\n  mount_roots:\n    - /srv\n    - /var/run\n",
        4,
        "docker.mount_roots[1]",
        "covers the Docker socket",
    ),
    "a mount root of /": ("docker:\n  mount_roots: [/]\n", 2, "docker.mount_roots[0]", "the whole host"),
    "a mount root in /etc": ("docker:\n  mount_roots: [/etc/taobot]\n", 2, "docker.mount_roots[0]", "configuration"),
    "a mount root over the bot's data": (
        "docker:\n  mount_roots: ['{root}']\n",
        2,
        "docker.mount_roots[0]",
        "the bot's data folder",
    ),
    "an unknown platform": (
        "platforms:\n  local-docker: {}\n  slurmm: {}\n",
        3,
        "platforms.slurmm",
        "no such platform",
    ),
    "a broken kubernetes profile": (
        "kubernetes_profiles:\n  - name: a\n    namespaces: [x]\n",
        2,
        "kubernetes_profiles[0]",
        "give either `kubeconfig`",
    ),
    "a key given twice": ("gpus:\n  max_per_launch: 8\ngpus:\n  max_per_person: 8\n", 3, "(YAML)", "given twice"),
    "broken YAML": ("admins: [U012ADMIN\napprovers: []\n", 2, "(YAML)", "expected ','"),
    "a list for the file": ("- admins\n", 1, "(the whole file)", "must be a mapping"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_names_the_file_the_line_and_the_field(tmp_path, case):
    text, line, field, says = BAD[case]
    path = write(tmp_path, text.replace("{root}", str(tmp_path / "bot")))
    with pytest.raises(ConfigError) as err:
        load_policy(path, CATALOG, bot_paths(tmp_path))
    message = err.value.message
    assert message.startswith(f"TAOBOT_POLICY {path}, line {line}, `{field}`: "), message
    assert says in message, message


def test_a_mount_root_reached_through_a_symlink_is_judged_by_where_it_leads(tmp_path):
    (tmp_path / "data").symlink_to("/etc")
    path = write(tmp_path, f"docker:\n  mount_roots: [{tmp_path}/data]\n")
    with pytest.raises(ConfigError) as err:
        load_policy(path, CATALOG)
    assert "line 2" in err.value.message and "(resolves to /etc)" in err.value.message


def test_an_empty_file_is_the_default_policy(tmp_path):
    policy = load_policy(write(tmp_path, "# nothing set yet\n"), CATALOG)
    assert policy.image_prefixes == ("nvcr.io/",) and policy.mounts.roots == ()


def test_the_bot_stops_on_a_bad_policy_before_it_opens_anything(tmp_path, monkeypatch):
    from taobot.cli import main

    path = write(tmp_path, "gpus:\n  max_per_launch: -1\n")
    for name, value in {
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s",
        "TAOBOT_POLICY": str(path),
        "TAOBOT_DB": str(tmp_path / "bot" / "taobot.db"),
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "bot").mkdir()
    assert main(["serve", "--http", "--port", "1"]) == 2
    assert not (tmp_path / "bot" / "taobot.db").exists() and not (tmp_path / "bot" / "taobot.db.key").exists()


# --------------------------------------------------------------------------- what the policy answers


def test_gpu_limits_and_approval_thresholds():
    policy = Policy.model_validate({"gpus": {"max_per_launch": 8, "max_per_person": 12}, "approvals": {"gpus_over": 4}})
    assert policy.gpu_refusal(8, 4) is None
    assert "over the policy's limit of 8 per launch" in policy.gpu_refusal(9)
    assert "8 GPUs with the 5 of your active launches is 13, over the policy's limit of 12" in policy.gpu_refusal(8, 5)
    assert policy.approval_reason(4, None, "Local Docker") is None
    assert "5 GPUs is over the policy's 4" in policy.approval_reason(5, 1.0, "SLURM")
    hours = Policy.model_validate({"approvals": {"gpu_hours_over": 64}})
    assert hours.approval_reason(8, 8.0, "SLURM") is None
    assert "8 GPUs × 8.5 h = 68 GPU hours is over the policy's 64" in hours.approval_reason(8, 8.5, "SLURM")
    assert "Local Docker jobs have no wall-time limit" in hours.approval_reason(1, None, "Local Docker")


def test_mount_rules_resolve_before_they_compare(tmp_path):
    root, other = tmp_path / "data", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    (root / "out").symlink_to(other)
    rules = MountRules((str(root),), bot_paths(tmp_path))
    assert rules.refusal(str(root)) is None and rules.refusal(f"{root}/sub/dir") is None
    assert "resolves to" in rules.refusal(f"{root}/../other") and "outside" in rules.refusal(f"{root}/../other")
    assert f"resolves to `{other}`" in rules.refusal(f"{root}/out")
    assert "the bot's data folder" in rules.refusal(str(tmp_path / "bot" / "x"))
    assert "covers the bot's data folder" in rules.refusal(str(tmp_path))
    assert rules.refusal(f"{root}-evil") is not None  # a root is a folder, not a string prefix
    own = rules.with_protected((f"{root}/d.sock", "the Docker socket of this launch"))
    assert "the Docker socket of this launch" in own.refusal(f"{root}/d.sock")


def test_the_example_policy_loads_and_shows_every_field():
    import yaml

    path = Path(__file__).resolve().parents[1] / "deploy" / "policy.example.yaml"
    policy = load_policy(path, CATALOG)
    assert policy.mounts.roots == ("/data", "/scratch") and policy.approvals.gpu_hours_over == 64
    shown = yaml.safe_load(path.read_text())
    assert set(shown) == set(Policy.model_fields)
    for name in ("images", "docker", "gpus", "approvals"):
        assert set(shown[name]) == set(Policy.model_fields[name].annotation.model_fields), name


def test_the_policys_cluster_profiles_reach_the_backends_and_the_preflight(tmp_path, monkeypatch):
    from taobot.backends import Backends
    from taobot.config import load_settings
    from taobot.policy import policy_for

    path = write(tmp_path, GOOD.replace("{root}", str(tmp_path)))
    monkeypatch.setenv("TAOBOT_POLICY", str(path))
    monkeypatch.setenv("TAOBOT_DB", str(tmp_path / "bot" / "taobot.db"))
    settings = load_settings()
    backends = Backends(settings, policy_for(settings, CATALOG))
    assert [p.name for p in backends.platform_settings().kube_profiles] == ["team-a"]
    assert backends["local-docker"].mounts.roots == (f"{tmp_path}/data", f"{tmp_path}/scratch")
    assert Backends(settings).platform_settings().kube_profiles == ()


def test_the_console_holds_answers_to_the_policy_too(tmp_path):
    from taobot.console import ConsoleIO, run_console
    from taobot.secrets import SecretBox, load_or_create_key
    from taobot.store import Store

    policy = load_policy(
        write(
            tmp_path, "platforms:\n  slurm: {users: [U0ALICE1]}\nimages:\n  allowed_prefixes: [nvcr.io/nvidia/tao/]\n"
        ),
        CATALOG,
        console=True,
    )
    answers = iter(["slurm", "local-docker", "n", "image=docker.io/library/busybox:1"])
    said: list[str] = []

    def ask(prompt: str) -> str:
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None

    store = Store(tmp_path / "c.db", SecretBox(load_or_create_key(None, tmp_path / "c.key")))
    try:
        code = run_console(store, CATALOG, "dino", "train", io=ConsoleIO(ask=ask, say=said.append), policy=policy)
        assert code == 1  # stopped at the end of the answers; resumable
        text = "\n".join(said)
        assert "✗ SLURM is not open to" in text and "Platforms open to you here:" in text
        assert "✗ Image `docker.io/library/busybox:1` is not allowed here" in text and "`nvcr.io/nvidia/tao/`" in text
        state = store.recent_intakes(limit=1)[0]
        assert state.platform == "local-docker" and state.image.chosen is None
    finally:
        store.close()
