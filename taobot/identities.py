"""Each Slack person's own SSH identity for SLURM, and where key files and agents are accepted.

taobot runs as one service for a whole team, so every key on its host (a
key file, an agent, the IdentityFile entries of its ~/.ssh/config) is its
operator's, not a channel member's. In Slack a person therefore logs in with
a key taobot made for them (`TAOBOT_SSH_KEY`): an ed25519 pair whose private
half stays encrypted in the database and is only ever handed to paramiko in
memory, and whose public half the person installs on the login node for
their SLURM_USER. A key file is accepted from Slack only inside that person's
own folder under `TAOBOT_SSH_KEY_ROOT`; an agent socket never.

`taobot console` and the `taobot preflight` CLI run on the person's own
machine (`PlatformSettings.on_persons_machine`): there their own key files,
agent and ~/.ssh/config are theirs to use.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from taobot.config import PlatformSettings

TAOBOT_KEY = "TAOBOT_SSH_KEY"
KEY_PATH = "SSH_KEY_PATH"
AGENT_SOCK = "SSH_AUTH_SOCK"
USE_KEY_BUTTON = "Use a taobot key"
# A person's folder under TAOBOT_SSH_KEY_ROOT is named by their Slack user id; nothing else may name a folder.
_OWNER_FOLDER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class KeyPair:
    private_key: str = field(repr=False)  # OpenSSH private key text; never shown, never logged
    public_key: str  # one authorized_keys line: `ssh-ed25519 AAAA... comment`
    fingerprint: str  # `SHA256:...`, as `ssh-keygen -lf` prints it


def fingerprint_of(public_key: str) -> str:
    """`SHA256:<base64 of the key blob's digest, unpadded>` for an authorized_keys line, as OpenSSH prints it."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _comment(owner: str, cluster: str) -> str:
    text = f"taobot-{owner}" + (f"@{cluster}" if cluster else "")
    return re.sub(r"[^A-Za-z0-9_.:@,-]", "_", text)[:120]


def new_key_pair(owner: str, cluster: str = "") -> KeyPair:
    """A fresh ed25519 key pair for one person (and cluster); the comment names them, so the line is findable."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    line = f"{public} {_comment(owner, cluster)}"
    return KeyPair(private, line, fingerprint_of(line))


def public_half(private_key: str) -> tuple[str, str] | None:
    """(public key without comment, SHA256 fingerprint) of an OpenSSH private key text; None if it is not one."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_ssh_private_key(private_key.encode(), password=None)
        public = (
            key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        )
    except (ValueError, TypeError, AttributeError):
        return None
    return public, fingerprint_of(public)


def public_line(private_key: str, owner: str | None, cluster: str = "") -> tuple[str, str] | None:
    """(authorized_keys line, SHA256 fingerprint) of a taobot key, with the comment it was made with."""
    half = public_half(private_key)
    if half is None:
        return None
    return (f"{half[0]} {_comment(owner, cluster)}" if owner else half[0]), half[1]


def cluster_of(hostnames: str | None, per_cluster: bool) -> str:
    """The cluster a key belongs to: "" (one key per person), or the SLURM_HOSTNAME value, normalised."""
    if not per_cluster:
        return ""
    return ",".join(h.strip().lower() for h in (hostnames or "").split(",") if h.strip())


# --------------------------------------------------------------------------- which identity a login uses


@dataclass(frozen=True)
class LoginKey:
    """The one identity a login to a SLURM cluster uses, in the SSH identity group's order."""

    kind: Literal["taobot_key", "key_file", "agent"]
    value: str = field(repr=False)  # the private key text, the key file path or the agent socket

    @property
    def tag(self) -> str:
        """Tells two identities apart (connection caches) without saying anything about either."""
        return hashlib.sha256(f"{self.kind}\0{self.value}".encode()).hexdigest()[:12]


def login_key(credentials: Mapping[str, str]) -> LoginKey | None:
    """The identity these credentials name: a taobot key, else a key file, else an agent; None if none."""
    for name, kind in ((TAOBOT_KEY, "taobot_key"), (KEY_PATH, "key_file"), (AGENT_SOCK, "agent")):
        value = credentials.get(name)
        if value:
            return LoginKey(kind, value)  # type: ignore[arg-type]
    return None


def key_folder(owner: str | None, settings: PlatformSettings) -> Path | None:
    """This person's own folder for key files on the bot's host (TAOBOT_SSH_KEY_ROOT/<user id>), resolved.

    `owner=None` is a job launched earlier being polled or cancelled (a job reference names no person): its
    launch held the key to its owner's folder already, so anywhere under the root is what is checked then.
    """
    if not settings.ssh_key_root:
        return None
    root = Path(settings.ssh_key_root).expanduser().resolve()
    if owner is None:
        return root
    return root / owner if _OWNER_FOLDER.match(owner) else None


def key_paths_accepted(owner: str | None, settings: PlatformSettings) -> bool:
    return settings.on_persons_machine or key_folder(owner, settings) is not None


def key_path_problem(path: str, owner: str | None, settings: PlatformSettings) -> str | None:
    """Why this SSH_KEY_PATH may not be used for this person here, or None. Symlinks and `..` are resolved first."""
    if settings.on_persons_machine:
        return None
    folder = key_folder(owner, settings)
    if folder is None:
        return (
            f"`{KEY_PATH}` is not accepted from Slack here: a key file on the bot's host belongs to its operator, "
            f"not to you. Press *{USE_KEY_BUTTON}* (taobot makes a key for you and shows the public half to install "
            "on the login node), or run `taobot console` on your own machine, where your own key files are allowed."
        )
    resolved = Path(path).expanduser().resolve()
    if resolved == folder or not resolved.is_relative_to(folder):
        return (
            f"`{KEY_PATH}` must name a file in your own key folder on the bot's host, `{folder}/` (symlinks and `..` "
            f"are resolved first); `{path}` is outside it. Put your key there, or press *{USE_KEY_BUTTON}*."
        )
    return None


def agent_problem(owner: str | None, settings: PlatformSettings) -> str | None:
    """Why an SSH agent socket may not be used here, or None (only on the person's own machine)."""
    if settings.on_persons_machine:
        return None
    folder = key_folder(owner, settings)
    instead = f", give `{KEY_PATH}` in your key folder `{folder}/`" if folder else ""
    return (
        f"`{AGENT_SOCK}` is not accepted from Slack: an SSH agent on the bot's host holds its operator's keys, not "
        f"yours. Press *{USE_KEY_BUTTON}*{instead}, or run `taobot console` on your own machine to use your agent."
    )


def identity_problem(key: LoginKey, owner: str | None, settings: PlatformSettings) -> str | None:
    """Why this identity may not log in for this person here, or None."""
    if key.kind == "key_file":
        return key_path_problem(key.value, owner, settings)
    if key.kind == "agent":
        return agent_problem(owner, settings)
    if public_half(key.value) is None:
        return f"the stored {TAOBOT_KEY} is not an OpenSSH private key; press *{USE_KEY_BUTTON}* again"
    return None


@dataclass(frozen=True)
class LoginPlan:
    """How one login to a SLURM cluster is made: with exactly one identity, held to where it was given."""

    key: LoginKey
    config_identities: bool  # whether the SSH config's IdentityFile entries may be offered too (the person's own)
    extra_known_hosts: tuple[str, ...] = ()

    @property
    def key_path(self) -> str | None:
        """The key file, as resolved when it was checked (a symlink swapped later is not followed again)."""
        return str(Path(self.key.value).expanduser().resolve()) if self.key.kind == "key_file" else None


def plan_login(
    credentials: Mapping[str, str], owner: str | None, settings: PlatformSettings
) -> tuple[LoginPlan | None, str | None]:
    """(plan, None), or (None, why this identity may not log in here); (None, None) when no identity is given."""
    key = login_key(credentials)
    if key is None:
        return None, None
    problem = identity_problem(key, owner, settings)
    if problem:
        return None, problem
    extra = (settings.trusted_hosts_path,) if settings.ssh_tofu and settings.trusted_hosts_path else ()
    return LoginPlan(key, settings.on_persons_machine, extra), None


def log_in(plan: LoginPlan, hostnames: str, user: str, settings: PlatformSettings):
    """Log in to the first host of `hostnames` that accepts the plan's key (a `taobot.ssh.LoginResult`)."""
    from taobot.ssh import connect_login_node

    return connect_login_node(
        hostnames,
        user,
        plan.key_path,
        plan.key.value if plan.key.kind == "agent" else None,
        settings.ssh_config_path,
        settings.known_hosts_path,
        settings.connect_timeout_s,
        key_text=plan.key.value if plan.key.kind == "taobot_key" else None,
        config_identities=plan.config_identities,
        extra_known_hosts=plan.extra_known_hosts,
    )


# --------------------------------------------------------------------------- what the person reads


def install_steps(public_key: str, fingerprint: str, user: str | None, hosts: list[str], again: bool = False) -> str:
    """The public key and the exact steps that install it for the person's SLURM_USER, then what taobot checks."""
    where = ", ".join(f"`{h}`" for h in hosts)
    if user and hosts:
        intro = f"Install it for `{user}` on {where}: log in there as you do today, then run"
        check = (
            f"taobot logs in as `{user}` to {where} with this key only (no password, no agent, the host key "
            "checked against the operator's known_hosts) and runs its checks there."
        )
    else:
        intro = "Install it for your SLURM_USER on the login node: log in there as you do today, then run"
        check = (
            "taobot logs in as your SLURM_USER to SLURM_HOSTNAME with this key only (no password, no agent, the host "
            "key checked against the operator's known_hosts); it names both here once you have given them."
        )
    return "\n".join(
        [
            f"{intro}:",
            f"1. `mkdir -p ~/.ssh && echo {shlex.quote(public_key)} >> ~/.ssh/authorized_keys`",
            "2. `chmod 700 ~/.ssh; chmod 600 ~/.ssh/authorized_keys`",
            f"3. `ssh-keygen -lf ~/.ssh/authorized_keys | grep -F {fingerprint}` prints the key's line",
            ("Then run preflight again: " if again else "Then run preflight: ") + check,
        ]
    )


def key_message(pair_public: str, fingerprint: str, user: str | None, hosts: list[str], cluster: str, new: bool) -> str:
    """The thread message that shows a person their taobot key: public half only, with the install steps."""
    which = f" for `{cluster}`" if cluster else ""
    made = "made" if new else "reused"
    head = (
        f":key: *Your taobot SSH key*{which} (`{fingerprint}`, ed25519, {made} for you). taobot keeps its private "
        "half encrypted and never shows it; this public half is all that leaves taobot."
    )
    return head + "\n" + install_steps(pair_public, fingerprint, user, hosts)
