"""Key-only SSH to SLURM login nodes with paramiko, shared by preflight and launch.

`connect_login_node` tries each host of SLURM_HOSTNAME in order and returns
the first session that logged in with a key (file or agent), with the host
key checked against known_hosts — an unknown host is refused, never added.
Every failed attempt is classified (unknown host key, changed host key,
password-only server, key refused, unreachable, name not resolved) so the
person gets the one remediation that fits.

The key is a file, an agent, or (`key_text`) the private key taobot made for
a person, handed to paramiko from memory and never written anywhere. For a
Slack person the IdentityFile entries of the bot's own SSH config are never
offered (`config_identities=False`): they are its operator's keys. HostName,
Port, User, ProxyJump and known hosts still apply.

A login node behind a bastion (`ProxyJump` in the operator's SSH config) is
reached the way OpenSSH does it: the jump host is logged in to under the
same rules (key only, known_hosts enforced, no agent forwarding), and a
`direct-tcpip` channel it opens to the login node is the socket of the
session that logs in there.
"""

from __future__ import annotations

import functools
import os
import socket
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class HostTarget:
    given: str  # as written in SLURM_HOSTNAME
    hostname: str  # after ~/.ssh/config HostName
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = ()
    jumps: tuple["HostTarget", ...] = ()  # ProxyJump hosts, in the order they are passed through

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"


@dataclass
class Attempt:
    target: HostTarget
    ok: bool
    # "ok", "resolve", "unreachable", "unknown_host_key", "host_key_changed", "password_only", "key_refused",
    # "key_unusable", "jump_refused" (a jump host would not open the connection onwards), "error"
    reason: str
    detail: str
    # For "unknown_host_key": what the host offered, as known_hosts would name it: (host entry, key type, base64).
    host_key: tuple[str, str, str] | None = None


def host_key_fingerprint(key_base64: str) -> str:
    """`SHA256:...` of a host key, as `ssh-keygen -lf` prints it."""
    import base64
    import hashlib

    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


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
    hostnames: str,
    user: str,
    key_path: str | None,
    ssh_config_path: str | None,
    known_hosts_path: str | None,
    config_identities: bool = True,
    extra_known_hosts: tuple[str, ...] = (),
) -> list[HostTarget]:
    """Apply the bot host's ~/.ssh/config (HostName, Port, User, IdentityFile, UserKnownHostsFile, ProxyJump).

    `config_identities=False` leaves its IdentityFile entries out: they are the operator's keys, never a Slack
    person's. `extra_known_hosts` are known_hosts files read after the others (host keys trusted on first use).
    """
    import paramiko

    config = paramiko.SSHConfig()
    path = Path(ssh_config_path or Path.home() / ".ssh" / "config").expanduser()
    if path.is_file():
        config = paramiko.SSHConfig.from_path(str(path))
    defaults_known = [known_hosts_path or str(Path.home() / ".ssh" / "known_hosts")]
    targets = []
    for host, port in split_hosts(hostnames):
        target = _target(config, host, port, user, key_path, defaults_known, config_identities, extra_known_hosts)
        jumps = (config.lookup(host).get("proxyjump") or "").strip()
        if jumps and jumps.lower() != "none":
            hops = []
            for spec in jumps.split(","):
                jump_user, jump_host, jump_port = _split_jump(spec.strip())
                # The bastion's own login: as the hop names it, else its User in the config, else SLURM_USER.
                jump_user = jump_user or config.lookup(jump_host).get("user") or user
                hops.append(
                    _target(
                        config, jump_host, jump_port, jump_user, key_path, defaults_known, config_identities,
                        extra_known_hosts,
                    )
                )  # fmt: skip
            target = replace(target, jumps=tuple(hops))
        targets.append(target)
    return targets


def _target(
    config,
    host: str,
    port: int | None,
    user: str,
    key_path: str | None,
    known: list[str],
    config_identities: bool = True,
    extra_known: tuple[str, ...] = (),
) -> HostTarget:
    entry = config.lookup(host)
    identities = [os.path.expanduser(key_path)] if key_path else []
    if config_identities:
        identities += [os.path.expanduser(p) for p in entry.get("identityfile", [])]
    known = list(known) + [os.path.expanduser(item) for item in (entry.get("userknownhostsfile") or "").split()]
    known += list(extra_known)
    return HostTarget(
        given=host if port is None else f"{host}:{port}",
        hostname=entry.get("hostname", host),
        port=port or int(entry.get("port", 22)),
        user=user or entry.get("user", ""),
        identity_files=tuple(dict.fromkeys(identities)),
        known_hosts_files=tuple(dict.fromkeys(known)),
    )


def _split_jump(spec: str) -> tuple[str, str, int | None]:
    """`[ssh://][user@]host[:port]` -> (user, host, port) as ProxyJump writes a hop."""
    spec = spec.removeprefix("ssh://")
    user, _, rest = spec.rpartition("@")
    host, sep, port = rest.rpartition(":")
    if sep and port.isdigit() and host:
        return user, host.strip("[]"), int(port)
    return user, rest.strip("[]"), None


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


def _load_pkey_text(text: str):
    """A private key from memory (the person's taobot key); the text never reaches an error or a log."""
    import io

    import paramiko

    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("the stored taobot key cannot be read as a private key; press *Use a taobot key* again")


@functools.cache
def _client_class():
    import paramiko

    class StrictClient(paramiko.SSHClient):
        """An SSHClient that also closes the jump hosts it was reached through."""

        hops: tuple = ()

        def close(self) -> None:
            super().close()
            for hop in reversed(self.hops):
                hop.close()

    return StrictClient


def _strict_client(target: HostTarget):
    """A client that knows only the known_hosts entries and refuses any other host key."""
    import paramiko

    class Refuse(paramiko.MissingHostKeyPolicy):
        """RejectPolicy that remembers what was offered, so a person can be shown its fingerprint."""

        def missing_host_key(self, client, hostname, key):
            client.offered_host_key = (hostname, key.get_name(), key.get_base64())
            raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")

    client = _client_class()()
    client.offered_host_key = None
    for known in target.known_hosts_files:
        if Path(known).is_file():
            client.load_host_keys(known)
    client.set_missing_host_key_policy(Refuse())
    return client


Via = tuple[object, HostTarget]  # a logged-in jump host's client, and which host it is


def _channel(via: Via, target: HostTarget, timeout: float):
    """A direct-tcpip channel from the jump host to the target: the socket its session runs over."""
    client, _hop = via
    return client.get_transport().open_channel(
        "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=timeout
    )


def _connect_one(
    target: HostTarget, agent_sock: str | None, timeout: float, via: Via | None = None, key_text: str | None = None
) -> tuple[object | None, Attempt]:
    """Log in to one host with a key, directly or (`via`) through a jump host that is logged in already."""
    import paramiko

    if via is None:  # behind a jump host the name is the jump host's to resolve
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
                    client.connect(pkey=key, sock=_channel(via, target, timeout) if via else None, **kwargs)
                    return client, Attempt(target, True, "ok", "logged in with a key from the agent")
                except paramiko.AuthenticationException as exc:
                    last_exc = exc
                    client.close()
                    client = _strict_client(target)
            raise last_exc or paramiko.AuthenticationException("no agent key accepted")
        pkeys = [(_load_pkey_text(key_text), "logged in with your taobot key")] if key_text else []
        for path in target.identity_files:
            if Path(path).is_file():
                pkeys.append((_load_pkey(path), "logged in with the key file"))
        if not pkeys:
            return None, Attempt(target, False, "key_unusable", "no private key file to offer")
        last: Exception | None = None
        for pkey, how in pkeys:
            try:
                client.connect(pkey=pkey, sock=_channel(via, target, timeout) if via else None, **kwargs)
                return client, Attempt(target, True, "ok", how)
            except paramiko.BadAuthenticationType:
                raise
            except paramiko.AuthenticationException as exc:
                last = exc
        raise last or paramiko.AuthenticationException("key refused")
    except paramiko.ChannelException as exc:
        client.close()
        hop = via[1].address if via else "the jump host"
        return None, Attempt(
            target,
            False,
            "jump_refused",
            f"the jump host {hop} would not connect to {target.address} ({exc.text or 'refused'})",
        )
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
            offered = getattr(client, "offered_host_key", None)
            shown = f" (it offered {offered[1]} {host_key_fingerprint(offered[2])})" if offered else ""
            return None, Attempt(
                target,
                False,
                "unknown_host_key",
                f"{target.hostname}:{target.port} is not in known_hosts; its host key was not accepted{shown}",
                host_key=offered,
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
    *,
    key_text: str | None = None,
    config_identities: bool = True,
    extra_known_hosts: tuple[str, ...] = (),
) -> LoginResult:
    """The first host of `hostnames` that accepts the key. `key_text`: a private key from memory (a taobot key);
    `config_identities=False`: the SSH config's IdentityFile entries are not offered (see `resolve_targets`)."""
    targets = resolve_targets(
        hostnames, user, key_path, ssh_config_path, known_hosts_path, config_identities, extra_known_hosts
    )
    result = LoginResult(None, None)
    for target in targets:
        client, attempt = _connect_through(target, agent_sock, timeout, key_text)
        result.attempts.append(attempt)
        if client is not None:
            result.client, result.target = client, target
            break
    return result


def _connect_through(
    target: HostTarget, agent_sock: str | None, timeout: float, key_text: str | None = None
) -> tuple[object | None, Attempt]:
    """Log in to each jump host in turn (same strict rules), then to the target over the last one's channel."""
    hops: list = []
    via: Via | None = None
    for hop in target.jumps:
        client, attempt = _connect_one(hop, agent_sock, timeout, via, key_text)
        if client is None:
            for opened in reversed(hops):
                opened.close()
            attempt.detail = f"jump host {hop.address} for {target.given}: {attempt.detail}"
            return None, attempt
        hops.append(client)
        via = (client, hop)
    client, attempt = _connect_one(target, agent_sock, timeout, via, key_text)
    if client is None:
        for opened in reversed(hops):
            opened.close()
        return None, attempt
    client.hops = tuple(hops)
    return client, attempt


def fetch_host_key(hostname: str, port: int, timeout: float = 10.0) -> tuple[str, str, str]:
    """The host key a server offers a fresh client, as known_hosts would name it: (entry, key type, base64).

    Only the key exchange runs: nothing is authenticated, nothing is written anywhere.
    """
    import paramiko

    sock = socket.create_connection((hostname, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except paramiko.SSHException as exc:
        raise OSError(f"no SSH key exchange with {hostname}:{port} ({exc})") from exc
    finally:
        transport.close()
    entry = hostname if port == 22 else f"[{hostname}]:{port}"
    return entry, key.get_name(), key.get_base64()
