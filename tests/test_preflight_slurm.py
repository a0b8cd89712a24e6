"""SLURM preflight against the real sshd + SLURM cluster on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from taobot.catalog import load_catalog
from taobot.config import PlatformSettings
from taobot.preflight import DatasetPath, PreflightRequest, run_preflight
from taobot.preflight.slurm import parse_slurm_time, remote_script
from tests.lab import services

pytestmark = pytest.mark.slurm  # the shared test cluster: see tests/conftest.py

LAB = services()
RES = load_catalog().platforms["slurm"].resources
REQUIRED = ("SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION", "SSH_KEY_PATH")


def creds(**over) -> dict[str, str]:
    base = {
        "SLURM_USER": LAB["TAOBOT_TEST_SSH_USER"],
        "SLURM_HOSTNAME": f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
        "SLURM_PARTITION": LAB["TAOBOT_TEST_SLURM_PARTITION"],
        "SSH_KEY_PATH": LAB["TAOBOT_TEST_SSH_KEY"],
        # The catalog's default of 16 CPUs per task is more than the test node has (see the job size test).
        "SLURM_CPUS_PER_TASK": LAB["TAOBOT_TEST_SLURM_CPUS_PER_NODE"],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def run(paths=(), known_hosts=None, ssh_config=None, compute=None, **over):
    request = PreflightRequest(
        "slurm",
        creds(**over),
        tuple(paths),
        compute=compute or {},
        resources=RES,
        settings=PlatformSettings(
            known_hosts_path=known_hosts or LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
            ssh_config_path=ssh_config or "/nonexistent/ssh_config",
            connect_timeout_s=5,
            on_persons_machine=True,  # as the `taobot preflight` CLI runs: the person's own keys and SSH config
        ),
    )
    return run_preflight(request, REQUIRED)


def by_label(report, label):
    return [r for r in report.results if r.label == label]


def test_key_only_login_paths_and_annotation_fields_pass():
    report = run(
        [
            DatasetPath("custom.train_dataset.annotation_path", LAB["TAOBOT_TEST_ANNOTATIONS"], ("video_fps",)),
            DatasetPath("custom.train_dataset.media_path", "lustre://" + LAB["TAOBOT_TEST_TRAIN_DIR"]),
        ]
    )
    assert report.passed, [r for r in report.results if not r.ok]
    login = by_label(report, "SSH login")[0]
    assert f"{LAB['TAOBOT_TEST_SSH_USER']}@127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}" in login.detail
    ann = [r for r in report.results if r.check == "annotation"][0]
    assert "all have `video_fps`" in ann.detail and ann.key == "custom.train_dataset.annotation_path"
    assert by_label(report, f"Partition {LAB['TAOBOT_TEST_SLURM_PARTITION']}")[0].ok


def test_missing_path_and_annotation_without_the_field_fail_per_path():
    report = run(
        [
            DatasetPath("train_ann", LAB["TAOBOT_TEST_ANNOTATIONS_NOFPS"], ("video_fps",)),
            DatasetPath("val_media", LAB["TAOBOT_TEST_LUSTRE_ROOT"] + "/does-not-exist"),
        ]
    )
    assert not report.passed
    missing = [r for r in report.results if r.key == "val_media"][0]
    assert not missing.ok and "does not exist on the login node" in missing.detail
    ann = [r for r in report.results if r.check == "annotation"][0]
    assert not ann.ok and "`video_fps` missing in" in ann.detail
    exists = [r for r in report.results if r.key == "train_ann" and r.check == "path"][0]
    assert exists.ok


def five_steps(user: str, host: str, port: int) -> list[str]:
    """The setup steps exactly as a person must read them, with the login node's real user and host."""
    p = f" -p {port}" if port != 22 else ""
    return [
        '1. `ssh-keygen -t ed25519 -N "" -f ~/.ssh/id_ed25519`',
        f"2. `ssh-copy-id -i ~/.ssh/id_ed25519.pub{p} {user}@{host}`",
        f"3. `ssh-keyscan -H{p} {host} >> ~/.ssh/known_hosts`",
        "4. `chmod 600 ~/.ssh/id_ed25519`",
        f"5. `ssh -o BatchMode=yes -i ~/.ssh/id_ed25519{p} {user}@{host} 'hostname'` prints the login node's name",
        "Then give `SSH_KEY_PATH=~/.ssh/id_ed25519` with *Enter credentials* and run preflight again.",
    ]


def assert_the_five_steps(remediation: str, host: str = "127.0.0.1", port: int | None = None) -> None:
    lines = remediation.splitlines()
    steps = five_steps(LAB["TAOBOT_TEST_SSH_USER"], host, port or int(LAB["TAOBOT_TEST_SSH_PORT"]))
    assert lines[-len(steps) :] == steps, remediation
    for placeholder in ("<login-host>", "<user>", "<SLURM_USER>", "/path/to", "tao_slurm", " or "):
        assert placeholder not in remediation, placeholder


def test_wrong_key_fails_with_one_remediation_and_the_five_steps():
    report = run(SSH_KEY_PATH=LAB["TAOBOT_TEST_SSH_WRONG_KEY"])
    login = by_label(report, "SSH login")[0]
    assert not login.ok and "refused the key" in login.detail
    assert_the_five_steps(login.remediation)
    assert not [r for r in report.results if r.scope == "dataset"]


def test_the_five_steps_name_the_real_login_node_when_the_key_file_itself_is_bad(tmp_path):
    report = run(SSH_KEY_PATH=str(tmp_path / "no-such-key"))
    key = by_label(report, "SSH key file")[0]
    assert not key.ok and "does not exist" in key.detail
    assert_the_five_steps(key.remediation)
    # through the operator's ssh config, the steps name the host it resolves to
    config = tmp_path / "config"
    config.write_text(f"Host tao-login\n  HostName 127.0.0.1\n  Port {LAB['TAOBOT_TEST_SSH_PORT']}\n")
    report = run(SLURM_HOSTNAME="tao-login", SSH_KEY_PATH=str(tmp_path / "no-such-key"), ssh_config=str(config))
    assert_the_five_steps(by_label(report, "SSH key file")[0].remediation)


def test_the_five_steps_on_the_default_port_are_exactly_the_documented_ones():
    from taobot.preflight.slurm import setup_steps
    from taobot.ssh import HostTarget

    text = setup_steps(HostTarget("login-01", "login-01.example.com", 22, "jdoe"))
    assert text.splitlines()[1:] == five_steps("jdoe", "login-01.example.com", 22)
    assert "-p " not in text


def test_unknown_host_key_is_refused_never_added(tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    report = run(known_hosts=str(empty))
    login = by_label(report, "SSH login")[0]
    assert not login.ok and "not in known_hosts" in login.detail and "ssh-keyscan" in login.remediation
    assert empty.read_text() == ""


def test_changed_host_key_is_reported_as_such():
    report = run(known_hosts=LAB["TAOBOT_TEST_SSH_MISMATCH_KNOWN_HOSTS"])
    login = by_label(report, "SSH login")[0]
    assert not login.ok and "does not match known_hosts" in login.detail and "ssh-keygen -R" in login.remediation


def test_password_only_server_is_a_failure_not_a_prompt():
    report = run(SLURM_HOSTNAME=f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PASSWORD_PORT']}")
    login = by_label(report, "SSH login")[0]
    assert not login.ok and "does not accept key login" in login.detail and "password" in login.detail


def test_comma_separated_hosts_fail_over_to_the_first_that_accepts_the_key():
    hosts = f"login-a.invalid,127.0.0.1:{LAB['TAOBOT_TEST_SSH_PASSWORD_PORT']},127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}"
    report = run(SLURM_HOSTNAME=hosts)
    login = by_label(report, "SSH login")[0]
    assert login.ok and "does not resolve" in login.detail and "does not accept key login" in login.detail


def test_ssh_config_hostname_port_identityfile_and_known_hosts_are_honoured(tmp_path):
    config = tmp_path / "config"
    config.write_text(
        "Host tao-login\n"
        "  HostName 127.0.0.1\n"
        f"  Port {LAB['TAOBOT_TEST_SSH_PORT']}\n"
        f"  IdentityFile {LAB['TAOBOT_TEST_SSH_KEY']}\n"
        f"  UserKnownHostsFile {LAB['TAOBOT_TEST_SSH_KNOWN_HOSTS']}\n"
    )
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    # SSH_KEY_PATH is refused; the IdentityFile from the config logs in; known_hosts comes only from the config.
    report = run(
        SLURM_HOSTNAME="tao-login",
        SSH_KEY_PATH=LAB["TAOBOT_TEST_SSH_WRONG_KEY"],
        known_hosts=str(empty),
        ssh_config=str(config),
    )
    login = by_label(report, "SSH login")[0]
    assert login.ok, login.detail
    assert f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}" in login.detail


def test_key_file_readable_by_others_is_refused(tmp_path):
    key = tmp_path / "id"
    shutil.copy(LAB["TAOBOT_TEST_SSH_KEY"], key)
    key.chmod(0o644)
    report = run(SSH_KEY_PATH=str(key))
    result = by_label(report, "SSH key file")[0]
    assert not result.ok and "chmod 600" in result.detail
    assert not by_label(report, "SSH login")  # no login attempted with a leaky key


def test_missing_variables_are_named():
    report = run(SLURM_PARTITION=None, SSH_KEY_PATH=None)
    assert not report.passed
    text = " ".join(r.detail for r in report.results)
    assert "SLURM_PARTITION" in text and "SSH_KEY_PATH" in text


def test_runtime_limits_refuse_too_long_and_inverted_timeouts():
    report = run(SLURM_TIME_HOURS="6")
    limits = by_label(report, "Runtime limits")[0]
    assert not limits.ok and "above the platform maximum 4 h" in limits.detail
    report = run(SLURM_TIME_HOURS="3", SLURM_TIMEOUT_HOURS="3")
    limits = by_label(report, "Runtime limits")[0]
    assert not limits.ok and "not below the wall time" in limits.detail
    report = run(SLURM_TIME_HOURS="2", SLURM_TIMEOUT_HOURS="1.5")
    assert by_label(report, "Runtime limits")[0].ok


def test_partition_that_does_not_exist_fails():
    report = run(SLURM_PARTITION="nosuchpartition")
    part = by_label(report, "Partition nosuchpartition")[0]
    assert not part.ok and "does not exist" in part.detail and "sinfo" in part.remediation


def test_hostile_paths_are_tested_literally_and_create_nothing():
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    marker2 = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    report = run(
        [
            DatasetPath("a", f"/data/x; touch {marker}"),
            DatasetPath("b", f"/data/$(touch {marker2})"),
            DatasetPath("c", f"/data/`touch {marker2}`", ("f'\"; touch {marker}",)),
            DatasetPath("d", '/tmp/it\'s "quoted"\n'),
        ]
    )
    assert [r.ok for r in report.results if r.scope == "dataset"] == [False, False, False, False]
    assert not marker.exists() and not marker2.exists()


def test_all_path_checks_share_one_ssh_session():
    # The script for many paths is one program for one `sh -s`; nothing is interpolated unquoted.
    paths = [(i, f"/lustre/x/{i} $(reboot)") for i in range(10)]
    script = remote_script(paths, ["gpu"], [(0, "/a'b.json")], 20)
    assert script.count("\np ") == 10 and "'/lustre/x/3 $(reboot)'" in script and "/a'b.json" not in script


def test_a_job_no_node_of_the_partition_can_hold_fails_with_the_limit_and_the_setting():
    cpus = int(LAB["TAOBOT_TEST_SLURM_CPUS_PER_NODE"])
    part = LAB["TAOBOT_TEST_SLURM_PARTITION"]
    # the catalog's default CPUs per task (16) on nodes with fewer: it would wait as PartitionConfig forever
    report = run(SLURM_CPUS_PER_TASK=None)
    size = by_label(report, "Job size")[0]
    assert RES.cpus_per_task > cpus and not report.passed and not size.ok
    assert f"{RES.cpus_per_task} CPUs per task, but its largest node has {cpus}" in size.detail, size.detail
    assert "can never start" in size.detail and f"`{part}`" in size.detail
    assert f"SLURM_CPUS_PER_TASK to at most {cpus}" in size.remediation
    report = run(compute={"num_gpus": 64, "num_nodes": 1})
    size = by_label(report, "Job size")[0]
    assert not size.ok and "64 GPUs per node" in size.detail and "set num_gpus to at most" in size.remediation
    report = run(compute={"num_gpus": 1, "num_nodes": 5})
    size = by_label(report, "Job size")[0]
    assert not size.ok and "5 nodes, but at most 1 can run it" in size.detail
    assert "set num_nodes to at most 1" in size.remediation
    # within every limit: passes and says so; with a partition list, one that fits is enough
    report = run(compute={"num_gpus": 1, "num_nodes": 1}, SLURM_PARTITION=f"{part},cpu")
    size = by_label(report, "Job size")[0]
    assert size.ok and f"fits partition {part}" in size.detail, size.detail


def test_job_size_limits_are_one_more_command_in_the_same_script():
    from taobot.preflight.slurm_limits import LIMITS_COMMAND, NodeGroup, parse_limits

    script = remote_script([(0, "/a")], ["gpu", "cpu"], [], 20)
    assert script.count(LIMITS_COMMAND) == 1 and script.count("sinfo") == 3  # two time limits, one size listing
    got = parse_limits(
        "LIM|gpu|64|gpu:a100:8(S:0-1)|4|1-2|up\nLIM|gpu|32|(null)|2|1-2|up\nLIM|old|8|gpu:2|1|1-infinite|down\n"
    )
    assert got["gpu"] == [NodeGroup(64, 8, 4, 2, "up"), NodeGroup(32, 0, 2, 2, "up")]
    assert got["old"] == [NodeGroup(8, 2, 1, None, "down")]


def test_a_down_partition_fails_job_size_unless_another_given_partition_fits():
    from taobot.preflight.slurm_limits import job_size_result, parse_limits

    limits = parse_limits("LIM|old|64|gpu:8|2|1-infinite|down\nLIM|new|64|gpu:8|2|1-infinite|up\n")
    request = PreflightRequest("slurm", creds(SLURM_CPUS_PER_TASK="4"), compute={"num_gpus": 8}, resources=RES)
    (down,) = job_size_result(request, ["old"], limits)
    assert not down.ok and "partition `old` is down" in down.detail and "SLURM_PARTITION" in down.remediation
    (either,) = job_size_result(request, ["old", "new"], limits)
    assert either.ok and "fits partition new" in either.detail
    assert job_size_result(request, ["nosuch"], limits) == []  # the partition check already fails it


def test_partition_time_formats():
    assert parse_slurm_time("4:00:00") == 4
    assert parse_slurm_time("1-00:00:00") == 24
    assert parse_slurm_time("30") == 0.5
    assert parse_slurm_time("infinite") is None


def test_cli_preflight_prints_one_line_per_check_and_exits_0_or_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SSH_", "TAOBOT_"))}
    env.update(
        creds(),
        TAOBOT_SSH_KNOWN_HOSTS=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
        TAOBOT_SSH_CONFIG="/nonexistent",
        TAOBOT_DB=str(tmp_path / "t.db"),
    )
    cmd = [
        os.sys.executable,
        "-m",
        "taobot.cli",
        "preflight",
        "--platform",
        "cluster",
        "--path",
        f"ann={LAB['TAOBOT_TEST_ANNOTATIONS']}",
        "--path",
        f"media={LAB['TAOBOT_TEST_MEDIA_TARBALL']}",
        "--json-required-field",
        "ann=video_fps",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("TAO launch preflight passed")
    assert "PASS  SSH login" in out.stdout and "PASS  ann:" in out.stdout
    bad = cmd[:-4] + ["--path", f"ann={LAB['TAOBOT_TEST_ANNOTATIONS_NOFPS']}", "--json-required-field", "ann=video_fps"]
    out = subprocess.run(bad, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and out.stdout.strip().endswith("TAO launch preflight failed")
    assert "FAIL  ann:" in out.stdout and "video_fps" in out.stdout
    dry = subprocess.run(cmd + ["--skip-platform-access"], capture_output=True, text=True, env=env, timeout=60)
    assert dry.returncode == 0 and "NOT a launch preflight" in dry.stdout and "SSH login" not in dry.stdout
    assert "TAO launch preflight passed" not in dry.stdout


@pytest.mark.parametrize("flag", ["--path", "--json-required-field"])
def test_cli_preflight_rejects_malformed_label_values(flag, tmp_path):
    out = subprocess.run(
        [os.sys.executable, "-m", "taobot.cli", "preflight", "--platform", "slurm", flag, "novalue"],
        capture_output=True,
        text=True,
        env={**os.environ, "TAOBOT_DB": str(tmp_path / "t.db")},
        timeout=60,
    )
    assert out.returncode == 2 and "LABEL=VALUE" in out.stderr


# --------------------------------------------------------------------------- bastions (ProxyJump)


def bastion_config(tmp_path, inner_port: str | None = None, bastion_known: str | None = None) -> Path:
    """The test sshd as a bastion in front of a login node (itself, under another name)."""
    config = tmp_path / "config"
    config.write_text(
        "Host tao-bastion\n"
        "  HostName 127.0.0.1\n"
        f"  Port {LAB['TAOBOT_TEST_SSH_PORT']}\n"
        f"  UserKnownHostsFile {bastion_known or LAB['TAOBOT_TEST_SSH_KNOWN_HOSTS']}\n"
        "Host tao-inner\n"
        "  HostName localhost\n"
        f"  Port {inner_port or LAB['TAOBOT_TEST_SSH_PORT']}\n"
        "  ProxyJump tao-bastion\n"
        f"  UserKnownHostsFile {LAB['TAOBOT_TEST_SSH_KNOWN_HOSTS']}\n"
    )
    return config


def test_login_node_behind_a_proxyjump_bastion_is_reached_through_it(tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = bastion_config(tmp_path)
    report = run(
        [DatasetPath("ann", LAB["TAOBOT_TEST_ANNOTATIONS"], ("video_fps",))],
        known_hosts=str(empty),
        ssh_config=str(config),
        SLURM_HOSTNAME="tao-inner",
    )
    assert report.passed, [r for r in report.results if not r.ok]
    login = by_label(report, "SSH login")[0]
    assert f"@localhost:{LAB['TAOBOT_TEST_SSH_PORT']} through jump host 127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}" in (
        login.detail
    )
    assert empty.read_text() == ""  # nothing was added to known_hosts on the way


def test_the_session_to_a_jumped_login_node_runs_over_a_direct_tcpip_channel(tmp_path):
    import paramiko

    from taobot.ssh import connect_login_node

    login = connect_login_node(
        "tao-inner", LAB["TAOBOT_TEST_SSH_USER"], LAB["TAOBOT_TEST_SSH_KEY"], None, str(bastion_config(tmp_path))
    )
    assert login.ok, [a.detail for a in login.attempts]
    transport = login.client.get_transport()
    assert isinstance(transport.sock, paramiko.Channel)  # not a TCP socket of its own
    (bastion,) = login.client.hops
    assert bastion.get_transport().getpeername()[1] == int(LAB["TAOBOT_TEST_SSH_PORT"])
    through = bastion.get_transport()
    assert transport.sock.get_transport() is through and through.is_authenticated()
    _, out, _ = login.client.exec_command("id -un")
    assert out.read().decode().strip() == LAB["TAOBOT_TEST_SSH_USER"]
    login.client.close()
    assert not through.is_active()  # closing the session closes the bastion behind it too


def test_a_bastion_is_held_to_the_same_rules_as_the_login_node(tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    # The bastion's host key is unknown: refused, never added, and the steps name the bastion.
    config = bastion_config(tmp_path, bastion_known=str(empty))
    report = run(known_hosts=str(empty), ssh_config=str(config), SLURM_HOSTNAME="tao-inner")
    login = by_label(report, "SSH login")[0]
    assert not login.ok and "jump host 127.0.0.1:" in login.detail and "not in known_hosts" in login.detail
    assert_the_five_steps(login.remediation)
    assert empty.read_text() == ""
    # A key the bastion refuses: refused at the bastion, no password or agent tried.
    report = run(
        ssh_config=str(bastion_config(tmp_path)),
        SLURM_HOSTNAME="tao-inner",
        SSH_KEY_PATH=LAB["TAOBOT_TEST_SSH_WRONG_KEY"],
    )
    login = by_label(report, "SSH login")[0]
    assert not login.ok and "jump host" in login.detail and "refused the key" in login.detail


def test_a_bastion_that_will_not_forward_to_the_login_node_says_so(tmp_path):
    # The test bastion forwards only to its own port; the password-only server's port is not allowed.
    config = bastion_config(tmp_path, inner_port=LAB["TAOBOT_TEST_SSH_PASSWORD_PORT"])
    report = run(ssh_config=str(config), SLURM_HOSTNAME="tao-inner")
    login = by_label(report, "SSH login")[0]
    assert not login.ok
    assert f"would not connect to localhost:{LAB['TAOBOT_TEST_SSH_PASSWORD_PORT']}" in login.detail, login.detail
    assert "`tao-inner`" in login.remediation and "PermitOpen" in login.remediation
    assert "ssh-keygen" not in login.remediation  # a new key would not help here


def test_the_five_steps_run_as_written_give_a_key_only_login_that_preflight_accepts():
    """A fresh user on the bot's host follows the remediation word for word, then preflight passes with that key."""
    report = run(SSH_KEY_PATH=LAB["TAOBOT_TEST_SSH_WRONG_KEY"])
    steps = [
        line
        for line in by_label(report, "SSH login")[0].remediation.splitlines()
        if line[:2] in ("1.", "2.", "3.", "4.", "5.")
    ]
    commands = [line.split("`", 2)[1] for line in steps]
    assert len(commands) == 5
    name = f"taostep{uuid.uuid4().hex[:6]}"
    authorized = Path(f"~{LAB['TAOBOT_TEST_SSH_USER']}/.ssh/authorized_keys").expanduser()
    before = authorized.read_bytes()
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    try:
        home = Path(f"~{name}").expanduser()
        # Step 2 must log in once to install the key: the person's existing login, held in an agent.
        shutil.copy(LAB["TAOBOT_TEST_SSH_KEY"], home / "existing_login")
        shutil.chown(home / "existing_login", name, name)
        (home / "existing_login").chmod(0o600)
        script = "\n".join(
            [
                "set -e",
                'eval "$(ssh-agent -s)" >/dev/null',
                "trap 'ssh-agent -k >/dev/null 2>&1 || true' EXIT",
                "ssh-add -q ~/existing_login",
                "mkdir -p -m 700 ~/.ssh",
                commands[0],
                # Step 2 meets the login node's host key first and asks; the person answers "yes" (kept apart,
                # so the bot's known_hosts below holds only what step 3 wrote).
                "printf 'StrictHostKeyChecking accept-new\\nUserKnownHostsFile ~/.ssh/answered_yes\\n' > ~/.ssh/config",
                commands[1],
                "rm ~/.ssh/config",
                "ssh-agent -k >/dev/null; unset SSH_AUTH_SOCK SSH_AGENT_PID",  # from here on only the new key
                *commands[2:],
            ]
        )
        env = {"PATH": os.environ["PATH"], "HOME": str(home)}
        out = subprocess.run(
            ["runuser", "-u", name, "--", "bash", "-c", script], capture_output=True, text=True, env=env, timeout=60
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert (
            out.stdout.strip().splitlines()[-1]
            == subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
        )
        # Now the bot, with nothing but that key and that known_hosts: key-only login passes.
        report = run(SSH_KEY_PATH=str(home / ".ssh/id_ed25519"), known_hosts=str(home / ".ssh/known_hosts"))
        assert by_label(report, "SSH login")[0].ok, by_label(report, "SSH login")[0].detail
        assert report.passed, [r for r in report.results if not r.ok]
    finally:
        authorized.write_bytes(before)
        # whatever the steps left running (they ran as this user only), by pid
        left = subprocess.run(["pgrep", "-u", name], capture_output=True, text=True).stdout.split()
        for pid in left:
            os.kill(int(pid), 9)
        subprocess.run(["userdel", "-r", name], check=False, capture_output=True)


def test_proxyjump_hops_are_read_as_openssh_writes_them(tmp_path):
    from taobot.ssh import resolve_targets

    config = tmp_path / "config"
    config.write_text(
        "Host login\n  HostName login.internal\n  ProxyJump ops@gw.example.com:2022,inner-gw\n"
        "Host inner-gw\n  HostName 10.0.0.5\n  User gwuser\n  Port 2200\n  IdentityFile ~/.ssh/gw_key\n"
        "Host direct\n  HostName direct.example.com\n  ProxyJump none\n"
    )
    login, direct = resolve_targets("login,direct", "jdoe", "/keys/id", str(config), "/kh")
    assert [(j.user, j.hostname, j.port) for j in login.jumps] == [
        ("ops", "gw.example.com", 2022),
        ("gwuser", "10.0.0.5", 2200),
    ]
    assert login.jumps[1].identity_files == ("/keys/id", str(Path("~/.ssh/gw_key").expanduser()))
    assert all(j.known_hosts_files[0] == "/kh" for j in login.jumps)  # the same known_hosts rule on every hop
    assert (login.user, login.hostname, login.port) == ("jdoe", "login.internal", 22)
    assert direct.jumps == ()
