"""Questions asked of an intake state against the catalog: pure look-ups, no changes.

What the chosen platform and model need, which dataset inputs are mapped,
what is still missing and which step comes next. Transitions, the gate,
the services and the views all ask these same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from taobot.catalog import (
    Action,
    Catalog,
    Condition,
    Credential,
    Model,
    Platform,
    find_action,
    find_model,
    find_platform,
)
from taobot.intake.state import STEP_ORDER, IntakeState, Step
from taobot.intake.values import path_kind


def model_of(state: IntakeState, catalog: Catalog) -> Model:
    return find_model(catalog, state.model)


def action_of(state: IntakeState, catalog: Catalog) -> Action:
    return find_action(model_of(state, catalog), state.action)


def platform_of(state: IntakeState, catalog: Catalog) -> Platform | None:
    return find_platform(catalog, state.platform) if state.platform else None


@dataclass(frozen=True)
class CredentialNeed:
    credential: Credential
    reason: str  # why it is needed: "platform", "model", "s3" or a group name

    @property
    def name(self) -> str:
        return self.credential.name


def dataset_inputs(state: IntakeState, catalog: Catalog) -> dict[str, str]:
    """Concrete spec key -> path: roots expanded by the model's conventions, then exact keys on top."""
    action = action_of(state, catalog)
    mapping: dict[str, str] = {}
    for role, root in state.roots.items():
        for key, template in action.roots.get(role, {}).items():
            mapping[key] = template.replace("{root}", root.rstrip("/") or "/")
    mapping.update(state.spec_inputs)
    return mapping


def uses_s3(state: IntakeState, catalog: Catalog) -> bool:
    uris = list(dataset_inputs(state, catalog).values())
    if state.results_uri:
        uris.append(state.results_uri)
    return any(u.startswith("s3://") for u in uris)


def credential_needs(state: IntakeState, catalog: Catalog) -> list[CredentialNeed]:
    """Every credential this launch requires, in the order they are asked.

    The platform's credential groups come first: a group is how the bot
    proves who it is (for SLURM, the SSH identity), and the settings that
    use that identity (user, login hosts, partition) follow it.
    """
    platform = platform_of(state, catalog)
    if platform is None:
        return []
    needs = []
    for group in platform.credential_groups:
        member = group.preferred
        if state.ssh_agent and "SSH_AUTH_SOCK" in group.one_of:
            member = "SSH_AUTH_SOCK"
        present = [m for m in group.one_of if m in state.credentials]
        needs.append(CredentialNeed(catalog.credentials[present[0] if present else member], group.name))
    needs += [CredentialNeed(catalog.credentials[n], "platform") for n in platform.required_credentials]
    for name in model_of(state, catalog).credentials:
        needs.append(CredentialNeed(catalog.credentials[name], "model"))
    if uses_s3(state, catalog):
        needs += [CredentialNeed(catalog.credentials[n], "s3") for n in catalog.s3_required]
    seen: set[str] = set()
    return [n for n in needs if not (n.name in seen or seen.add(n.name))]


def optional_credentials(
    state: IntakeState, catalog: Catalog, needs: list[CredentialNeed] | tuple[CredentialNeed, ...] | None = None
) -> list[tuple[Credential, str]]:
    """Optional credentials whose condition applies now, with the wording of when to give them.

    These are offered beside the required ones. Those that apply `always`
    are not among them: they may be given any time but are never asked for
    unprompted (see `extra_settings`).
    """
    platform = platform_of(state, catalog)
    if platform is None:
        return []
    required = {n.name for n in (credential_needs(state, catalog) if needs is None else needs)}
    s3 = uses_s3(state, catalog)
    model = model_of(state, catalog)
    out: list[tuple[Credential, str]] = []
    for opt in platform.optional_credentials:
        applies = (opt.only_when is Condition.S3_URI and s3) or (
            opt.only_when is Condition.MODEL_REQUIRES and opt.name in model.credentials
        )
        if applies and opt.name not in required:
            out.append((catalog.credentials[opt.name], opt.when_text))
    if s3:
        for name in catalog.s3_optional:
            if name not in required and all(c.name != name for c, _ in out):
                out.append((catalog.credentials[name], "your S3 store needs it"))
    return out


def extra_settings(
    state: IntakeState, catalog: Catalog, needs: list[CredentialNeed] | tuple[CredentialNeed, ...] | None = None
) -> list[tuple[Credential, str]]:
    """The platform's optional settings that may be given any time (`always`), for the *More settings* form."""
    platform = platform_of(state, catalog)
    if platform is None:
        return []
    needs = credential_needs(state, catalog) if needs is None else needs
    taken = {n.name for n in needs} | {c.name for c, _ in optional_credentials(state, catalog, needs)}
    out: list[tuple[Credential, str]] = []
    for opt in platform.optional_credentials:
        if opt.only_when is Condition.ALWAYS and opt.name not in taken and all(c.name != opt.name for c, _ in out):
            out.append((catalog.credentials[opt.name], opt.when_text))
    return out


def missing_credentials(
    state: IntakeState, catalog: Catalog, needs: list[CredentialNeed] | tuple[CredentialNeed, ...] | None = None
) -> list[CredentialNeed]:
    return [
        n for n in (credential_needs(state, catalog) if needs is None else needs) if n.name not in state.credentials
    ]


def missing_inputs(state: IntakeState, catalog: Catalog) -> list[str]:
    mapped = dataset_inputs(state, catalog)
    return [i.key for i in action_of(state, catalog).required_inputs if i.key not in mapped]


def compute_fields(state: IntakeState, catalog: Catalog) -> list[str]:
    fields = ["num_gpus"]
    if model_of(state, catalog).nodes_key:
        fields.append("num_nodes")
    return fields


def compute_defaults(state: IntakeState, catalog: Catalog) -> dict[str, int]:
    platform = platform_of(state, catalog)
    res = platform.resources if platform else None
    defaults = {"num_gpus": res.num_gpus if res else 1, "num_nodes": res.num_nodes if res else 1}
    return {f: defaults[f] for f in compute_fields(state, catalog)}


def unset_compute_defaults(state: IntakeState, catalog: Catalog) -> dict[str, int]:
    """The platform defaults of the compute fields not given yet: exactly what *Use defaults* fills in."""
    return {f: v for f, v in compute_defaults(state, catalog).items() if f not in state.compute}


def step_done(
    state: IntakeState,
    catalog: Catalog,
    step: Step,
    needs: list[CredentialNeed] | tuple[CredentialNeed, ...] | None = None,
) -> bool:
    if step is Step.PLATFORM:
        return state.platform is not None
    if step is Step.MONITORING:
        return state.monitor is not None and (state.monitor is False or state.interval_minutes is not None)
    if step is Step.CREDENTIALS:
        return state.platform is not None and not missing_credentials(state, catalog, needs)
    if step is Step.IMAGE:
        return state.image.chosen is not None
    if step is Step.DATASETS:
        return not missing_inputs(state, catalog)
    if step is Step.COMPUTE:
        return all(f in state.compute for f in compute_fields(state, catalog))
    return False


def next_step(
    state: IntakeState, catalog: Catalog, needs: list[CredentialNeed] | tuple[CredentialNeed, ...] | None = None
) -> Step:
    """The first step not done. `needs`, when the caller has them, saves asking `credential_needs` again."""
    for step in STEP_ORDER:
        if not step_done(state, catalog, step, needs):
            return step
    return Step.COMPLETE


def mounted_paths(state: IntakeState, catalog: Catalog) -> list[str]:
    """Dataset/result paths the platform cannot verify from the bot's host (they need the person's word)."""
    platform = platform_of(state, catalog)
    if platform is None:
        return []
    values = list(dataset_inputs(state, catalog).values()) + ([state.results_uri] if state.results_uri else [])
    return [v for v in dict.fromkeys(values) if path_kind(platform, v)[0] == "mounted"]


def wanted_credentials(
    state: IntakeState, catalog: Catalog, needs: list[CredentialNeed] | tuple[CredentialNeed, ...] | None = None
) -> set[str]:
    """Names of every credential this launch uses now: required, optional that apply, and the extra settings.

    Where taobot makes the group's preferred member itself (the person's SSH key), the other members stay
    wanted too: a key file the person saved still counts on their next launch, as every saved value does.
    """
    needs = credential_needs(state, catalog) if needs is None else needs
    platform = platform_of(state, catalog)
    alternatives = {
        m
        for g in (platform.credential_groups if platform else ())
        if catalog.credentials[g.preferred].generated
        for m in g.one_of
    }
    return (
        {n.name for n in needs}
        | {c.name for c, _ in optional_credentials(state, catalog, needs)}
        | {c.name for c, _ in extra_settings(state, catalog, needs)}
        | alternatives
    )


def status_interval(state: IntakeState, catalog: Catalog) -> int:
    """Minutes between status posts for this launch: the person's answer, else the operator's default."""
    return state.interval_minutes or catalog.default_status_interval_minutes


def may_act(state: IntakeState, user: str, admins: frozenset[str]) -> bool:
    return user == state.owner or user in admins
