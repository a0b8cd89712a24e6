"""The SLURM preflight's login: which identity logs in, the checks before any login, and what to do when it fails.

The identity is the first of the SSH identity group the launch holds (a
taobot key, a key file, an agent) and is held to where it was given
(`taobot.identities`): from Slack a key file only inside the person's own
folder under TAOBOT_SSH_KEY_ROOT, never an agent, never the IdentityFile of
the bot's SSH config. A refused identity fails here, before any login is
tried.

A failed login gets one way, not a menu, with the real user and host filled
in: for a taobot key, its public half and the commands that install it for
SLURM_USER; for a key file, the five setup steps; for an unknown host key
in Slack, the operator's known_hosts (or, where the operator allows it,
trust on first use with the fingerprint shown).
"""

from __future__ import annotations

from taobot.identities import (
    LoginPlan,
    cluster_of,
    install_steps,
    key_folder,
    login_key,
    plan_login,
    public_half,
    public_line,
)
from taobot.preflight.base import CheckResult, PreflightRequest, quote
from taobot.ssh import Attempt, HostTarget, host_key_fingerprint, key_file_problem, resolve_targets

KEY = "~/.ssh/id_ed25519"  # the one key the setup steps make, and SSH_KEY_PATH then names
TRUST_CHECK = "slurm.host_key"  # a failed login whose host key may be trusted on first use (the card's button)


def _hop(t: HostTarget) -> str:
    return quote(f"{t.user}@{t.hostname}" + (f":{t.port}" if t.port != 22 else ""))


def setup_steps(target: HostTarget, key: str = KEY) -> str:
    """The five steps that give the bot's host key-only SSH to the login node, with its user and host filled in."""
    port = f" -p {target.port}" if target.port != 22 else ""
    who, host, qkey = quote(f"{target.user}@{target.hostname}"), quote(target.hostname), quote(key)
    if key == KEY:
        qkey = KEY  # `~` must stay unquoted for the shell to expand it
    via = f" -o ProxyJump={','.join(_hop(j) for j in target.jumps)}" if target.jumps else ""
    keyscan = f"ssh-keyscan -H{port} {host} >> ~/.ssh/known_hosts"
    if target.jumps:  # the login node is reachable only from the bastion: scan it from there
        last, earlier = target.jumps[-1], target.jumps[:-1]
        jump = f" -J {','.join(_hop(j) for j in earlier)}" if earlier else ""
        last_port = f" -p {last.port}" if last.port != 22 else ""
        keyscan = f"ssh{jump}{last_port} {quote(last.user + '@' + last.hostname)} ssh-keyscan -H{port} {host} >> ~/.ssh/known_hosts"
    return "\n".join(
        [
            "On the bot's host, as the user taobot runs as:",
            f'1. `ssh-keygen -t ed25519 -N "" -f {qkey}`',
            f"2. `ssh-copy-id -i {qkey}.pub{via}{port} {who}`",
            f"3. `{keyscan}`",
            f"4. `chmod 600 {qkey}`",
            f"5. `ssh -o BatchMode=yes -i {qkey}{via}{port} {who} 'hostname'` prints the login node's name",
            f"Then give `SSH_KEY_PATH={key}` with *Enter credentials* and run preflight again.",
        ]
    )


def _where(target: HostTarget) -> str:
    return target.hostname if target.port == 22 else target.address


def host_key_text(attempt: Attempt, tofu: bool) -> str:
    """An unknown host key seen from Slack: the operator's known_hosts, or trust on first use where allowed."""
    target = attempt.target
    offered = attempt.host_key
    seen = f" offered the host key `{offered[1]} {host_key_fingerprint(offered[2])}`," if offered else ""
    port = f" -p {target.port}" if target.port != 22 else ""
    text = (
        f"The login node {target.address}{seen} which is not in taobot's known_hosts. Host keys are the operator's "
        "to manage: ask the operator of taobot to check it with the cluster's admins and add it to "
        f"TAOBOT_SSH_KNOWN_HOSTS (`ssh-keyscan -H{port} {quote(target.hostname)} >> <that file>`)."
    )
    if tofu and offered and not target.jumps:
        text += (
            " This taobot also lets you trust it on first use: compare the fingerprint with the one your cluster's "
            "admins publish (on the login node, `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it) and "
            "only if they match press *Trust this host key*; from then on exactly that key is accepted."
        )
    return text


def remediation_for(attempts: list[Attempt], request: PreflightRequest) -> str:
    """One way, not a menu: the steps for the login host that failed (and a changed key's warning)."""
    user = request.cred("SLURM_USER") or ""
    settings = request.settings
    if attempts and all(a.reason == "jump_refused" for a in attempts):
        where = attempts[0].target
        return (
            f"Check that HostName and Port of `{where.given}` in the bot's SSH config (TAOBOT_SSH_CONFIG) are the login "
            f"node's address as the jump host sees it; if they are, the jump host's admin must allow forwarding to "
            f"{where.address} (sshd `AllowTcpForwarding`, `PermitOpen`)."
        )
    reached = [a for a in attempts if a.reason not in ("resolve", "unreachable")]
    if attempts:
        target = (reached or attempts)[0].target
    else:
        targets = resolve_targets(
            request.cred("SLURM_HOSTNAME") or "", user, None, settings.ssh_config_path, settings.known_hosts_path
        )
        target = targets[0] if targets else HostTarget("", "<login-host>", 22, user)
    key = login_key(request.credentials)
    in_slack = not settings.on_persons_machine
    lines = []
    changed = next((a.target for a in attempts if a.reason == "host_key_changed"), None)
    if changed is not None:
        entry = changed.hostname if changed.port == 22 else f"[{changed.hostname}]:{changed.port}"
        trust = "ask the operator of taobot to trust the new key" if in_slack else "trust the new key (step 3)"
        lines.append(
            f"The host key of {changed.address} changed. Ask your cluster admin whether it was reinstalled; only "
            f"then remove the old entry with `ssh-keygen -R {quote(entry)}` and {trust}."
        )
    unknown = next((a for a in attempts if a.reason == "unknown_host_key"), None)
    if in_slack and unknown is not None:
        lines.append(host_key_text(unknown, settings.ssh_tofu))
    if key is not None and key.kind == "taobot_key":
        cluster = cluster_of(request.cred("SLURM_HOSTNAME"), settings.ssh_key_per_cluster)
        half = public_line(key.value, request.owner, cluster)
        if half is not None and (unknown is None or len(reached) > 1):
            lines.append(f"Your taobot key is `{half[1]}`: `{half[0]}`.")
            lines.append(install_steps(half[0], half[1], target.user or user, [_where(target)], again=True))
        elif half is not None:
            lines.append(f"Your taobot key `{half[1]}` is tried once the host key is known.")
        return "\n".join(lines)
    if in_slack and unknown is not None and changed is None:
        return "\n".join(lines)
    folder = key_folder(request.owner, settings) if in_slack else None
    lines.append(setup_steps(target, f"{folder}/id_ed25519" if folder else KEY))
    return "\n".join(lines)


def identity_checks(request: PreflightRequest) -> tuple[list[CheckResult], LoginPlan | None]:
    """The identity this preflight logs in with, checked before any login; (results, plan or None to stop)."""
    plan, problem = plan_login(request.credentials, request.owner, request.settings)
    if problem:
        return [
            CheckResult(
                "slurm.identity",
                "SSH identity",
                False,
                "refused; no login was tried with it",
                problem,
                scope="platform",
            )
        ], None
    assert plan is not None  # static_checks named a missing identity already
    if plan.key.kind == "taobot_key":
        half = public_half(plan.key.value)
        return [
            CheckResult(
                "slurm.identity",
                "SSH identity",
                True,
                f"your taobot key `{half[1] if half else '?'}`",
                scope="platform",
            )
        ], plan
    if plan.key.kind == "key_file":
        shown = plan.key.value
        problem = key_file_problem(plan.key_path or shown)
        result = CheckResult(
            "slurm.key",
            "SSH key file",
            problem is None,
            (problem or f"`{shown}` exists and is private").replace(plan.key_path or shown, shown),
            "" if problem is None else remediation_for([], request),
            scope="platform",
        )
        return [result], plan if problem is None else None
    return [], plan


def login_result(login, request: PreflightRequest) -> CheckResult:
    """The SSH login check from a `LoginResult`: which host took the key, or every attempt and the one way out."""
    tried = "; ".join(a.detail for a in login.attempts if not a.ok)
    if not login.ok:
        unknown = next((a for a in login.attempts if a.reason == "unknown_host_key"), None)
        settings = request.settings
        trustable = (
            settings.ssh_tofu and not settings.on_persons_machine and unknown is not None and unknown.host_key
        ) and not unknown.target.jumps
        return CheckResult(
            TRUST_CHECK if trustable else "slurm.login",
            "SSH login",
            False,
            tried or "no login host given",
            remediation_for(login.attempts, request),
            scope="platform",
        )
    target = login.target
    note = f" (after: {tried})" if tried else ""
    through = f" through jump host {', '.join(j.address for j in target.jumps)}" if target.jumps else ""
    how = next((a.detail for a in login.attempts if a.ok), "")
    detail = f"key-only login to {target.user}@{target.address}{through}{note}"
    if "taobot key" in how:
        detail += " with your taobot key"
    return CheckResult("slurm.login", "SSH login", True, detail, scope="platform")
