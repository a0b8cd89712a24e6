"""The console's SSH identity step: the same choice the Slack card offers, and on the person's own machine more.

Enter takes a taobot key (made, or reused, exactly as *Use a taobot key*
does in Slack, with its public half and the install steps shown); a path is
a key file of the person's own; `agent` is their SSH agent. The console runs
on the person's machine, so all three are theirs to use.
"""

from __future__ import annotations

from taobot.catalog import Catalog
from taobot.config import PlatformSettings
from taobot.identities import TAOBOT_KEY, cluster_of, install_steps, key_message, new_key_pair, public_line
from taobot.intake import Cancel, CredentialsStored, Event, IntakeState, UseSshAgent, check_credential_value
from taobot.store import Store


def _plain(text: str) -> str:
    return text.replace(":key: ", "").replace("*", "")


def console_identity(
    state: IntakeState, catalog: Catalog, store: Store, io, settings: PlatformSettings
) -> list[Event] | None:
    cred = catalog.credentials[TAOBOT_KEY]
    io.say(f"SSH identity: {_plain(cred.description)}")
    io.say("  Press Enter for a taobot key, type the path of a key file of yours, or `agent` for your SSH agent.")
    answer = io.ask("SSH identity [taobot key]: ").strip()
    if answer.lower() in ("agent", "cancel"):
        return [UseSshAgent(True)] if answer.lower() == "agent" else [Cancel()]
    if answer:
        problem = check_credential_value(catalog, "SSH_KEY_PATH", answer)
        if problem:
            io.say("  ✗ " + problem)
            return None
        return [
            CredentialsStored({"SSH_KEY_PATH": store.put_secret(state.owner, "SSH_KEY_PATH", answer, secret=False)})
        ]
    events: list[Event] = []
    hosts = store.get_secret(state.owner, "SLURM_HOSTNAME") if "SLURM_HOSTNAME" in state.credentials else None
    if settings.ssh_key_per_cluster and not hosts:
        hosts = io.ask("SLURM_HOSTNAME (each cluster gets its own key here): ").strip()
        problem = check_credential_value(catalog, "SLURM_HOSTNAME", hosts) if hosts else "SLURM_HOSTNAME is needed."
        if problem:
            io.say("  ✗ " + problem)
            return None
        events.append(
            CredentialsStored({"SLURM_HOSTNAME": store.put_secret(state.owner, "SLURM_HOSTNAME", hosts, False)})
        )
    cluster = cluster_of(hosts, settings.ssh_key_per_cluster)
    identity, made = store.ssh_identity_for(state.owner, cluster, lambda: new_key_pair(state.owner, cluster))
    events.append(CredentialsStored({TAOBOT_KEY: store.put_secret(state.owner, TAOBOT_KEY, identity.private_key)}))
    user = store.get_secret(state.owner, "SLURM_USER") if "SLURM_USER" in state.credentials else None
    io.say(_plain(key_message(identity.public_key, identity.fingerprint, user, _hosts(hosts), cluster, made)))
    return events


def _hosts(hosts: str | None) -> list[str]:
    return [h.strip() for h in (hosts or "").split(",") if h.strip()]


def show_install_steps(state: IntakeState, store: Store, io, settings: PlatformSettings, given: dict[str, str]) -> None:
    """SLURM_USER or SLURM_HOSTNAME just given with a taobot key: the install steps with the real user and host."""
    if TAOBOT_KEY not in state.credentials:
        return
    known = {n: store.get_secret(state.owner, n) for n in ("SLURM_USER", "SLURM_HOSTNAME") if n in state.credentials}
    known.update(given)
    cluster = cluster_of(known.get("SLURM_HOSTNAME"), settings.ssh_key_per_cluster)
    half = public_line(store.get_secret(state.owner, TAOBOT_KEY) or "", state.owner, cluster)
    if half is None or not (known.get("SLURM_USER") and known.get("SLURM_HOSTNAME")):
        return
    steps = install_steps(half[0], half[1], known["SLURM_USER"], _hosts(known["SLURM_HOSTNAME"]))
    io.say(_plain(f"Your taobot key {half[1]}, for {known['SLURM_USER']}:\n" + steps))
