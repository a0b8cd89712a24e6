"""Key-only SSH to SLURM login nodes with paramiko, shared by preflight and launch.

`connect_login_node` tries each host of SLURM_HOSTNAME in order and returns
the first session that logged in with a key (file or agent), with the host
key checked against known_hosts — an unknown host is refused, never added.
Every failed attempt is classified (unknown host key, changed host key,
password-only server, key refused, unreachable, name not resolved) so the
person gets the one remediation that fits.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

SSH_SETUP_STEPS = (
    "1. Create a key if you have none: `ssh-keygen -t ed25519 -f ~/.ssh/tao_slurm -N ''`\n"
    "2. Install it on the login node: `ssh-copy-id -i ~/.ssh/tao_slurm.pub {user}@{host}`\n"
    "3. Trust the host key: `ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts`\n"
    "4. Keep the private key private: `chmod 600 ~/.ssh/tao_slurm`\n"
    "5. Verify: `ssh -o BatchMode=yes -i ~/.ssh/tao_slurm {user}@{host} 'hostname'` prints the host name\n"
    "Then enter `SSH_KEY_PATH=/path/to/private_key` with *Enter credentials*."
)


@dataclass(frozen=True)
class HostTarget:
    given: str  # as written in SLURM_HOSTNAME
    hostname: str  # after ~/.ssh/config HostName
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = ()


@dataclass
class Attempt:
    target: HostTarget
    ok: bool
    reason: str  # "ok", "resolve", "unreachable", "unknown_host_key", "host_key_changed", "password_only", "key_refused", "key_unusable", "error"
    detail: str


@dataclass
class LoginResult:
    client: object | None  # paramiko.SSHClient when ok
    target: HostTarget | None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.client is not None


def split_hosts(value: str) -> list[tuple[str, int | None]]:
    """`a.example.com, b:2222` -> [("a.example.com", None), ("b", 2222)]."""
    hosts = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if sep and port.isdigit() and host:
            hosts.append((host, int(port)))
        else:
            hosts.append((item, None))
    return hosts


def resolve_targets(
    hostnames: str, user: str, key_path: str | None, ssh_config_path: str | None, known_hosts_path: str | None
) -> list[HostTarget]:
    """Apply the bot host's ~/.ssh/config (HostName, Port, User, IdentityFile, UserKnownHostsFile)."""
    import paramiko

    config = paramiko.SSHConfig()
    path = Path(ssh_config_path or Path.home() / ".ssh" / "config").expanduser()
    if path.is_file():
        config = paramiko.SSHConfig.from_path(str(path))
    defaults_known = [known_hosts_path or str(Path.home() / ".ssh" / "known_hosts")]
    targets = []
    for host, port in split_hosts(hostnames):
        entry = config.lookup(host)
        identities = ([os.path.expanduser(key_path)] if key_path else []) + [
            os.path.expanduser(p) for p in entry.get("identityfile", [])
        ]
        known = list(defaults_known)
        for item in (entry.get("userknownhostsfile") or "").split():
            known.append(os.path.expanduser(item))
        targets.append(
            HostTarget(
                given=host if port is None else f"{host}:{port}",
                hostname=entry.get("hostname", host),
                port=port or int(entry.get("port", 22)),
                user=user or entry.get("user", ""),
                identity_files=tuple(dict.fromkeys(identities)),
                known_hosts_files=tuple(dict.fromkeys(known)),
            )
        )
    return targets


def key_file_problem(key_path: str) -> str | None:
    """Why the private key file cannot be used as is, or None."""
    path = Path(key_path).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"`{key_path}` does not exist on the bot's host"
    except OSError as exc:
        return f"`{key_path}` cannot be read: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return f"`{key_path}` is not a regular file"
    if st.st_mode & 0o077:
        return f"`{key_path}` is readable by group or others (mode {stat.S_IMODE(st.st_mode):o}); run `chmod 600 {key_path}`"
    if not os.access(path, os.R_OK):
        return f"`{key_path}` is not readable by the bot's user"
    return None


def _agent_keys(sock_path: str) -> list:
    """Keys held by the agent at this socket (without touching os.environ)."""
    import paramiko
    from paramiko.agent import AgentSSH

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(sock_path)
    agent = paramiko.Agent.__new__(paramiko.Agent)
    AgentSSH.__init__(agent)
    agent._connect(sock)
    return list(agent.get_keys())


def _load_pkey(path: str):
    import paramiko

    last = None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(path)
        except paramiko.PasswordRequiredException as exc:
            raise ValueError(
                f"`{path}` is protected by a passphrase; use an agent (SSH_AUTH_SOCK) or a key without one"
            ) from exc
        except (paramiko.SSHException, ValueError) as exc:
            last = exc
    raise ValueError(f"`{path}` is not a private key paramiko can read ({type(last).__name__})")


def _strict_client(target: HostTarget):
    """A client that knows only the known_hosts entries and refuses any other host key."""
    import paramiko

    client = paramiko.SSHClient()
    for known in target.known_hosts_files:
        if Path(known).is_file():
            client.load_host_keys(known)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _connect_one(target: HostTarget, agent_sock: str | None, timeout: float) -> tuple[object | None, Attempt]:
    import paramiko

    try:
        socket.getaddrinfo(target.hostname, target.port)
    except socket.gaierror as exc:
        return None, Attempt(target, False, "resolve", f"{target.hostname} does not resolve ({exc.strerror})")
    client = _strict_client(target)
    kwargs: dict = {
        "hostname": target.hostname,
        "port": target.port,
        "username": target.user,
        "timeout": timeout,
        "banner_timeout": timeout,
        "auth_timeout": timeout,
        "allow_agent": False,
        "look_for_keys": False,
    }
    try:
        if agent_sock:
            keys = _agent_keys(agent_sock)
            if not keys:
                return None, Attempt(target, False, "key_unusable", "the SSH agent holds no keys; run `ssh-add KEY`")
            last_exc: Exception | None = None
            for key in keys:
                try:
                    client.connect(pkey=key, **kwargs)
                    return client, Attempt(target, True, "ok", "logged in with a key from the agent")
                except paramiko.AuthenticationException as exc:
                    last_exc = exc
                    client.close()
                    client = _strict_client(target)
            raise last_exc or paramiko.AuthenticationException("no agent key accepted")
        pkeys = []
        for path in target.identity_files:
            if Path(path).is_file():
                pkeys.append(_load_pkey(path))
        if not pkeys:
            return None, Attempt(target, False, "key_unusable", "no private key file to offer")
        last: Exception | None = None
        for pkey in pkeys:
            try:
                client.connect(pkey=pkey, **kwargs)
                return client, Attempt(target, True, "ok", "logged in with the key file")
            except paramiko.BadAuthenticationType:
                raise
            except paramiko.AuthenticationException as exc:
                last = exc
        raise last or paramiko.AuthenticationException("key refused")
    except paramiko.BadHostKeyException:
        client.close()
        return None, Attempt(
            target,
            False,
            "host_key_changed",
            f"the host key of {target.hostname}:{target.port} does not match known_hosts",
        )
    except paramiko.BadAuthenticationType as exc:
        client.close()
        allowed = ", ".join(exc.allowed_types) or "none"
        return None, Attempt(
            target,
            False,
            "password_only",
            f"{target.hostname}:{target.port} does not accept key login (it allows: {allowed})",
        )
    except paramiko.AuthenticationException:
        client.close()
        return None, Attempt(
            target, False, "key_refused", f"{target.user}@{target.hostname}:{target.port} refused the key"
        )
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            return None, Attempt(
                target,
                False,
                "unknown_host_key",
                f"{target.hostname}:{target.port} is not in known_hosts; its host key was not accepted",
            )
        return None, Attempt(target, False, "error", f"SSH error with {target.hostname}:{target.port}: {exc}")
    except ValueError as exc:
        client.close()
        return None, Attempt(target, False, "key_unusable", str(exc))
    except OSError as exc:
        client.close()
        why = exc.strerror or type(exc).__name__
        return None, Attempt(target, False, "unreachable", f"{target.hostname}:{target.port} unreachable ({why})")


def connect_login_node(
    hostnames: str,
    user: str,
    key_path: str | None,
    agent_sock: str | None,
    ssh_config_path: str | None = None,
    known_hosts_path: str | None = None,
    timeout: float = 10.0,
) -> LoginResult:
    targets = resolve_targets(hostnames, user, key_path, ssh_config_path, known_hosts_path)
    result = LoginResult(None, None)
    for target in targets:
        client, attempt = _connect_one(target, agent_sock, timeout)
        result.attempts.append(attempt)
        if client is not None:
            result.client, result.target = client, target
            break
    return result


def remediation_for(attempts: list[Attempt], user: str) -> str:
    """One message, not a menu: what went wrong per host, then the five setup steps."""
    first = attempts[0].target if attempts else None
    host = first.hostname if first else "<login-host>"
    port = first.port if first else 22
    lines = []
    reasons = {a.reason for a in attempts}
    if "host_key_changed" in reasons:
        lines.append(
            "A login node's host key changed. Ask your cluster admin whether it was reinstalled; only then remove the old "
            f"entry with `ssh-keygen -R '[{host}]:{port}'` and trust the new key (step 3)."
        )
    lines.append(SSH_SETUP_STEPS.format(user=user or "<user>", host=host, port=port))
    return "\n".join(lines)
