"""Each Slack person's SSH identity in a launch thread: their own taobot key, and nothing of the bot host's.

*Use a taobot key* makes the person's ed25519 key (or reuses the one made
before, per cluster when the operator asks for that), saves its private half
as their `TAOBOT_SSH_KEY` credential (encrypted; the intake records only its
fingerprint) and posts the public half with the exact commands that install
it for their SLURM_USER. A key file is accepted from Slack only inside the
person's own folder under TAOBOT_SSH_KEY_ROOT, an agent never: a form naming
either is refused field by field, and an `agent` answer is refused, each with
what is allowed instead. Preflight and launch refuse them again
(`taobot.identities`), before any login.

With TAOBOT_SSH_TOFU, *Trust this host key* records the host key the last
preflight showed, if the host still offers exactly that key, and writes the
known_hosts file every later login reads.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from taobot.identities import (
    AGENT_SOCK,
    KEY_PATH,
    TAOBOT_KEY,
    USE_KEY_BUTTON,
    agent_problem,
    cluster_of,
    install_steps,
    key_folder,
    key_message,
    key_path_problem,
    new_key_pair,
    public_line,
)
from taobot.intake import CredentialsStored, Event, IntakeState, UseSshAgent, platform_of
from taobot.services.desk import Desk
from taobot.store.identities import TrustedHostKey

log = logging.getLogger(__name__)

Answer = Callable[..., IntakeState]  # IntakeService.answer
# What a failed login with an unknown host key says (taobot.ssh): the address and the key it offered.
_UNKNOWN = re.compile(
    r"(\S+):(\d+) is not in known_hosts; its host key was not accepted \(it offered (\S+) (SHA256:\S+)\)"
)


class SshIdentities:
    def __init__(self, desk: Desk, settings) -> None:
        self.desk = desk
        self.settings = settings  # PlatformSettings

    # ------------------------------------------------------------------ what may be given, and where

    def refusals(self, state: IntakeState, values: Mapping[str, str], user: str | None = None) -> dict[str, str]:
        """Problems by credential name: a generated key is never typed; key files and agents only where allowed."""
        problems: dict[str, str] = {}
        for name, value in values.items():
            if not value or not value.strip():
                continue
            cred = self.desk.catalog.credentials.get(name)
            if cred is not None and cred.generated:
                problems[name] = f"{name} is made by taobot, never typed: close this form and press *{USE_KEY_BUTTON}*."
            elif name == KEY_PATH and (problem := key_path_problem(value.strip(), state.owner, self.settings)):
                problems[name] = problem
            elif name == AGENT_SOCK and (problem := agent_problem(state.owner, self.settings)):
                problems[name] = problem
        for name, problem in problems.items():
            self.desk.audit(user or state.owner, "ssh_identity", intake=state, allowed=False, reason=problem,
                            detail={"name": name})  # fmt: skip
        return problems

    def screen(self, state: IntakeState, user: str, events: list[Event]) -> tuple[list[Event], list[str]]:
        """The events that may apply here, and why the others were refused (an agent, from Slack)."""
        kept, refused = [], []
        for event in events:
            problem = (
                agent_problem(state.owner, self.settings) if isinstance(event, UseSshAgent) and event.enabled else None
            )
            if problem:
                refused.append(problem)
                self.desk.audit(user, "ssh_agent", intake=state, allowed=False, reason=problem)
            else:
                kept.append(event)
        return kept, refused

    def alternatives(self, state: IntakeState, needs) -> tuple:
        """(credential, hint) a person may give instead of the taobot key in this form: a key file in their folder."""
        folder = key_folder(state.owner, self.settings)
        generated = [n for n in needs if n.credential.generated and n.name not in state.credentials]
        if folder is None or not generated:
            return ()
        cred = self.desk.catalog.credentials[KEY_PATH]
        hint = (
            f"Instead of a taobot key: a private key file in your own key folder on the bot's host, `{folder}/`. "
            "Leave empty to use a taobot key."
        )
        return ((cred, hint),)

    # ------------------------------------------------------------------ the person's own key

    def use_key(self, state: IntakeState, user: str, answer: Answer) -> None:
        """Make or reuse the owner's key, save it as their TAOBOT_SSH_KEY and show its public half."""
        desk = self.desk
        platform = platform_of(state, desk.catalog)
        if platform is None or not any(TAOBOT_KEY in g.one_of for g in platform.credential_groups):
            where = platform.display_name if platform else "this launch (no platform chosen yet)"
            desk.reply(state, f"{where} logs in without an SSH key; a taobot key is for SLURM.")
            return
        values = desk.credential_values(state)
        hosts = values.get("SLURM_HOSTNAME")
        if self.settings.ssh_key_per_cluster and not hosts:
            why = "keys are made per cluster here, and SLURM_HOSTNAME is not given yet"
            desk.audit(user, "ssh_key", intake=state, allowed=False, reason=why)
            desk.reply(
                state,
                f"On this taobot each cluster gets its own key: give `SLURM_HOSTNAME` first (*Enter credentials*), "
                f"then press *{USE_KEY_BUTTON}* again.",
            )
            return
        cluster = cluster_of(hosts, self.settings.ssh_key_per_cluster)
        identity, made = desk.store.ssh_identity_for(state.owner, cluster, lambda: new_key_pair(state.owner, cluster))
        fingerprint = desk.store.put_secret(state.owner, TAOBOT_KEY, identity.private_key, secret=True)
        desk.audit(user, "ssh_key", intake=state, detail={"fingerprint": identity.fingerprint, "made": made})
        log.info("taobot key %s", "made" if made else "reused", extra={"intake": state.id})
        user_name, where = self._where(values)
        desk.reply(state, key_message(identity.public_key, identity.fingerprint, user_name, where, cluster, made))
        if state.credentials.get(TAOBOT_KEY) != fingerprint:
            answer(state, user, [CredentialsStored({TAOBOT_KEY: fingerprint})], "taobot_key",
                   {"fingerprint": identity.fingerprint})  # fmt: skip

    def after_credentials(self, state: IntakeState, user: str, stored: set[str], answer: Answer) -> None:
        """SLURM_USER or SLURM_HOSTNAME just given with a taobot key: the install steps, now with the real ones."""
        if TAOBOT_KEY not in state.credentials or not stored & {"SLURM_USER", "SLURM_HOSTNAME"}:
            return
        if self.settings.ssh_key_per_cluster and "SLURM_HOSTNAME" in stored:
            self.use_key(state, user, answer)  # another cluster: its own key
            return
        values = self.desk.credential_values(state)
        cluster = cluster_of(values.get("SLURM_HOSTNAME"), self.settings.ssh_key_per_cluster)
        half = public_line(values.get(TAOBOT_KEY, ""), state.owner, cluster)
        user_name, where = self._where(values)
        if half is None or not (user_name and where):
            return
        self.desk.reply(state, f":key: Your taobot key `{half[1]}`, for `{user_name}`:\n" + install_steps(
            half[0], half[1], user_name, where))  # fmt: skip

    def _where(self, values: Mapping[str, str]) -> tuple[str | None, list[str]]:
        """SLURM_USER and the login hosts as the bot reaches them (its SSH config's HostName and Port applied)."""
        from taobot.ssh import resolve_targets

        hosts, user = values.get("SLURM_HOSTNAME"), values.get("SLURM_USER")
        if not hosts:
            return user, []
        s = self.settings
        targets = resolve_targets(hosts, user or "", None, s.ssh_config_path, s.known_hosts_path, False)
        return user, [t.hostname if t.port == 22 else t.address for t in targets]

    # ------------------------------------------------------------------ host keys trusted on first use

    def trust_host_key(self, state: IntakeState, user: str) -> None:
        desk = self.desk
        if not self.settings.ssh_tofu:
            why = "host keys are trusted on first use only where the operator allows it (TAOBOT_SSH_TOFU)"
            desk.audit(user, "trust_host_key", intake=state, allowed=False, reason=why)
            desk.reply(state, f"Not trusted: {why}. Ask the operator of taobot to add the login node's host key to "
                       "TAOBOT_SSH_KNOWN_HOSTS.")  # fmt: skip
            return
        shown = self._unknown_host_key(state)
        if shown is None:
            desk.reply(state, "The last preflight of this launch met no unknown host key to trust; run preflight.")
            return
        host, port, key_type, fingerprint = shown
        from taobot.ssh import fetch_host_key, host_key_fingerprint

        try:
            entry, offered_type, key_base64 = fetch_host_key(host, port, self.settings.connect_timeout_s)
        except OSError as exc:
            desk.reply(state, f"Could not reach {host}:{port} to read its host key again ({exc}); nothing trusted.")
            return
        now_fingerprint = host_key_fingerprint(key_base64)
        if (offered_type, now_fingerprint) != (key_type, fingerprint):
            why = f"{host}:{port} now offers {offered_type} {now_fingerprint}, not the {key_type} {fingerprint} shown"
            desk.audit(user, "trust_host_key", intake=state, allowed=False, reason=why)
            desk.reply(state, f":warning: Not trusted: {why}. Run preflight again and compare the new fingerprint "
                       "with your cluster's admins before trusting anything.")  # fmt: skip
            return
        desk.store.trust_host_key(TrustedHostKey(entry, offered_type, key_base64, fingerprint, user, time.time()))
        self.write_trusted_hosts()
        desk.audit(user, "trust_host_key", intake=state, detail={"host": entry, "fingerprint": fingerprint})
        desk.reply(state, f"Trusted the host key `{offered_type} {fingerprint}` of `{entry}` (by <@{user}>). From "
                   "now on exactly this key is accepted for it; run preflight again.")  # fmt: skip

    def _unknown_host_key(self, state: IntakeState) -> tuple[str, int, str, str] | None:
        from taobot.preflight.slurm_login import TRUST_CHECK

        record = state.preflight
        for result in record.results if record else ():
            if result.get("check") == TRUST_CHECK and not result.get("ok"):
                match = _UNKNOWN.search(result.get("detail") or "")
                if match:
                    return match.group(1), int(match.group(2)), match.group(3), match.group(4)
        return None

    def write_trusted_hosts(self) -> None:
        """The known_hosts file of every host key people trusted, written whole (logins read it with the others)."""
        path = self.settings.trusted_hosts_path
        if not path:
            return
        lines = [f"{k.host} {k.key_type} {k.key_base64}\n" for k in self.desk.store.trusted_host_keys()]
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=".trusted_hosts-", dir=str(target.parent))
        with os.fdopen(fd, "w") as fh:
            fh.writelines(lines)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
