"""`taobot console`: the same launch intake in a terminal, without Slack.

Prompts replace Block Kit; credentials are read with hidden input and go to
the same encrypted store. Every answer is saved as it is given, so
`taobot console --resume ID` continues an interrupted intake. The
operator's policy (TAOBOT_POLICY) screens answers here as in Slack.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable

from taobot.catalog import Catalog, find_platform
from taobot.config import PlatformSettings
from taobot.console_identity import console_identity, show_install_steps
from taobot.errors import TaobotError
from taobot.intake import (
    INTERVAL_ADVICE,
    AcceptComputeDefaults,
    Cancel,
    ChoosePlatform,
    ConfirmImage,
    CredentialsStored,
    Event,
    IntakeState,
    SetMonitoring,
    Step,
    UseSshAgent,
    apply_all,
    check_credential_value,
    compute_defaults,
    dataset_help,
    missing_credentials,
    next_step,
    parse_reply,
    start_intake,
)
from taobot.intake.intents import Answer, ShowHelp, ShowStatus
from taobot.policy import Policy, default_policy
from taobot.secrets import REDACTOR
from taobot.services.policy_checks import screen_events
from taobot.store import Store
from taobot.view_text import intake_detail_text
from taobot.views import IntakeDetail, intake_facts

CONSOLE_CHANNEL = "console"


class ConsoleIO:
    def __init__(
        self,
        ask: Callable[[str], str] = input,
        ask_secret: Callable[[str], str] = getpass.getpass,
        say: Callable[[str], None] = print,
    ) -> None:
        self.ask, self.ask_secret, self.say = ask, ask_secret, say


def _owner() -> str:
    return "console:" + (getpass.getuser() or "local")


def _detail(state: IntakeState, catalog: Catalog) -> str:
    """The intake's status as plain text: the same view Slack shows, without mrkdwn emphasis; redacted here, at the edge."""
    return REDACTOR.redact(intake_detail_text(IntakeDetail(intake_facts(state, catalog), time.time())).replace("*", ""))


def run_console(
    store: Store,
    catalog: Catalog,
    model: str | None,
    action: str | None,
    resume: str | None = None,
    io: ConsoleIO | None = None,
    policy: Policy | None = None,
    settings: PlatformSettings | None = None,
) -> int:
    io = io or ConsoleIO()
    # The console runs on the person's own machine: their key files, agent and SSH config are theirs to use.
    settings = settings or PlatformSettings(on_persons_machine=True)
    policy = policy or default_policy(catalog, console=True)
    owner = _owner()
    if resume:
        found = store.find_intake_by_prefix(resume)
        if not found:
            io.say(f"No console intake {resume} in {store.path}.")
            return 2
        state = found[0]
        io.say(f"Resuming launch {state.id}: {state.model} {state.action}.")
    else:
        if not model:
            io.say("Models: " + ", ".join(sorted(catalog.models)))
            model = io.ask("Model: ").strip()
        try:
            state = start_intake(catalog, model, action or "train", owner, CONSOLE_CHANNEL)
        except TaobotError as exc:
            io.say(exc.message)
            return 2
        state.thread_ts = state.id
        store.save_intake(state, owner, "start", {"model": state.model, "action": state.action})
        io.say(
            f"Launch {state.id}: {state.model} {state.action}. Type `help` for keys, `cancel` to stop; "
            f"resume later with `taobot console --resume {state.id}`."
        )

    while state.status == "collecting":
        step = next_step(state, catalog)
        try:
            events = _ask_step(state, catalog, step, store, io, settings)
        except EOFError:
            io.say(f"\nStopped. Resume with `taobot console --resume {state.id}`.")
            return 1
        if events is None:
            continue
        events, refused = screen_events(policy, catalog, state, events)
        for _event, reason in refused:
            io.say("  ✗ " + reason[0].upper() + reason[1:] + ".")
        outcome = apply_all(state, events, catalog)
        for note in outcome.notes:
            io.say("  " + note)
        for err in outcome.errors:
            io.say("  ✗ " + err)
        if outcome.changed:
            state = outcome.state
            store.save_intake(state, owner, "console", {"events": [type(e).__name__ for e in events]})
    io.say(_detail(state, catalog))
    if state.status == "cancelled":
        return 1
    io.say("Intake complete.")
    return 0


def _free_text(answer: str, state: IntakeState, catalog: Catalog, io: ConsoleIO) -> list[Event] | None:
    parsed = parse_reply(answer, state, catalog)
    if parsed.secret_warning:
        io.say(parsed.secret_warning.replace("*", ""))
        return None
    intent = parsed.intent
    if isinstance(intent, ShowHelp):
        io.say(dataset_help(state, catalog))
        return None
    if isinstance(intent, ShowStatus):
        io.say(_detail(state, catalog))
        return None
    for err in parsed.errors:
        io.say("  ✗ " + err)
    if intent is not None and not isinstance(intent, Answer):
        io.say(f"  ✗ `{answer.strip()}` is for a launch thread in Slack; the console runs the intake only.")
        return None
    return list(intent.events) if intent else None


def _ask_step(
    state: IntakeState, catalog: Catalog, step: Step, store: Store, io: ConsoleIO, settings: PlatformSettings
) -> list[Event] | None:
    if step is Step.PLATFORM:
        names = list(catalog.platforms)
        for i, p in enumerate(catalog.platforms.values(), 1):
            io.say(f"  {i}. {p.name:<13} {p.display_name} — {p.description}")
        answer = io.ask("Platform (name or number): ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(names):
            return [ChoosePlatform(names[int(answer) - 1])]
        if "=" in answer or answer.lower() in ("cancel", "help", "status"):
            return _free_text(answer, state, catalog, io)
        return [ChoosePlatform(answer)]
    if step is Step.MONITORING:
        answer = io.ask("Post status updates until the job ends? [Y/n]: ").strip().lower()
        if answer in ("", "y", "yes"):
            default = catalog.default_status_interval_minutes
            interval = io.ask(f"Status interval in minutes ({INTERVAL_ADVICE}) [{default}]: ").strip()
            if not interval:
                return [SetMonitoring(True)]  # the transition fills in the default
            if not interval.isdigit():
                io.say("  ✗ Give a whole number of minutes, 1–60.")
                return None
            return [SetMonitoring(True, int(interval))]
        if answer in ("n", "no"):
            return [SetMonitoring(False)]
        return _free_text(answer, state, catalog, io)
    if step is Step.CREDENTIALS:
        need = missing_credentials(state, catalog)[0]
        cred = need.credential
        if cred.generated:
            return console_identity(state, catalog, store, io, settings)
        io.say(f"{cred.name}: {cred.description}\n  How to get it: {cred.how_to_get}")
        if need.name == "SSH_KEY_PATH":
            io.say("  (Type `agent` if you keep the key in an SSH agent instead.)")
        if need.reason == "kubernetes_identity":  # on this machine the person's own kubeconfig is theirs
            io.say("  (Or type the path of your kubeconfig on this machine, e.g. `~/.kube/config`.)")
        reader = io.ask_secret if cred.secret else io.ask
        value = reader(f"{cred.name}{' (hidden)' if cred.secret else ''}: ").strip()
        if value.lower() in ("agent", "cancel") and not cred.secret:
            return [UseSshAgent(True)] if value.lower() == "agent" else [Cancel()]
        if need.reason == "kubernetes_identity" and value.startswith(("/", "~")):
            cred = catalog.credentials["KUBECONFIG"]
        problem = check_credential_value(catalog, cred.name, value)
        if problem:
            io.say("  ✗ " + problem)
            return None
        stored = CredentialsStored({cred.name: store.put_secret(state.owner, cred.name, value, secret=cred.secret)})
        if cred.name in ("SLURM_USER", "SLURM_HOSTNAME"):
            show_install_steps(state, store, io, settings, {cred.name: value})
        return [stored]
    if step is Step.IMAGE:
        io.say(f"Container image for {state.model}/{state.action}: default={state.image.default}")
        if state.image.access:
            io.say(f"  Note: {state.image.access}")
        answer = io.ask("Press Enter to use it, or type image=<registry/name:tag>: ").strip()
        if not answer:
            return [ConfirmImage()]
        return _free_text(answer, state, catalog, io)
    if step is Step.DATASETS:
        io.say(dataset_help(state, catalog))
        answer = io.ask("Datasets (key=value ...): ").strip()
        return _free_text(answer, state, catalog, io) if answer else None
    if step is Step.COMPUTE:
        defaults = compute_defaults(state, catalog)
        platform = find_platform(catalog, state.platform) if state.platform else None
        shown = ", ".join(f"{k}={v}" for k, v in defaults.items())
        cap = f" (at most {platform.resources.max_num_gpus_per_node} GPUs per node)" if platform else ""
        answer = io.ask(f"Compute shape{cap} — Enter for {shown}, or num_gpus=N num_nodes=N: ").strip()
        if not answer:
            return [AcceptComputeDefaults()]
        return _free_text(answer, state, catalog, io)
    return None
