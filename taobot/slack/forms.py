"""The private forms (modals): credentials, image override, datasets; and the ids of their fields.

The field ids are how a submission's values come back; `form_values`
turns a submitted view into values by field, and `slack/listeners/views.py`
into intents.
"""

from __future__ import annotations

from taobot.intake.intents import Relaunch
from taobot.slack.blocks import MAX_INPUT, MAX_MODAL_BLOCKS, MAX_TITLE, context, fit, plain, section
from taobot.views import CredentialsForm, DatasetsForm, ImageForm, RelaunchForm

# callback ids (view_submission)
CREDENTIALS_MODAL = "credentials_modal"
SETTINGS_MODAL = "settings_modal"
IMAGE_MODAL = "image_modal"
DATASETS_MODAL = "datasets_modal"
RELAUNCH_MODAL = "relaunch_modal"
CALLBACK_IDS = (CREDENTIALS_MODAL, SETTINGS_MODAL, IMAGE_MODAL, DATASETS_MODAL, RELAUNCH_MODAL)
# Forms whose fields are credentials (`cred_<NAME>`), submitted the same way.
CREDENTIAL_FORMS = (CREDENTIALS_MODAL, SETTINGS_MODAL)

# block / input ids inside modals
CRED_BLOCK_PREFIX = "cred_"
IMAGE_BLOCK = "image_ref"
ROOT_BLOCK_PREFIX = "root_"
SPEC_BLOCK = "spec_pairs"
RESULTS_BLOCK = "results"
VALUE_ID = "value"
RELAUNCH_BLOCK_PREFIX = "relaunch_"


def _input(
    block_id: str,
    label: str,
    optional: bool,
    hint: str = "",
    initial: str | None = None,
    placeholder: str | None = None,
    multiline: bool = False,
) -> dict:
    element: dict = {"type": "plain_text_input", "action_id": VALUE_ID, "multiline": multiline}
    if initial and len(initial) <= MAX_INPUT:
        element["initial_value"] = initial
    elif initial:
        # A shortened prefill would be submitted back as a shortened path; an
        # empty field keeps the current value instead.
        hint = "The current value is too long to show here; leave this empty to keep it. " + hint
    if placeholder:
        element["placeholder"] = plain(placeholder, 150)
    block: dict = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label, 2000),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def modal(callback_id: str, title: str, blocks: list[dict], private_metadata: str, submit: str = "Save") -> dict:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, MAX_TITLE),
        "submit": plain(submit, MAX_TITLE),
        "close": plain("Cancel", MAX_TITLE),
        "private_metadata": private_metadata[:3000],
        "blocks": fit(blocks, MAX_MODAL_BLOCKS),
    }


def credentials_modal(form: CredentialsForm) -> dict:
    """One field per needed credential, then the optional ones that apply now (or the *More settings* form)."""
    from taobot.slack.kube_forms import IDENTITY_GROUP, NOT_IN_SLACK, identity_blocks  # built on this module

    if form.more:
        return settings_modal(form)
    state, platform = form.facts.state, form.facts.platform
    blocks: list[dict] = [
        context(
            f"For launch `{state.id}` on {platform.display_name if platform else '—'}. "
            "Values are encrypted at rest, remembered for your next launch and never shown in Slack. "
            "Leave a field empty to keep what is already set."
        )
    ]
    for need in form.facts.needs:
        cred = need.credential
        is_set = need.name in state.credentials
        if need.reason == IDENTITY_GROUP:  # Kubernetes: a profile to pick or a kubeconfig to upload
            blocks += identity_blocks(form)
            continue
        if cred.generated:  # made by taobot (the person's SSH key): a button on the card, never a field
            done = "set" if is_set else "not set yet"
            blocks.append(section(f"*{cred.name}* ({done}): {cred.description} {cred.how_to_get}"))
            for alternative, hint in form.alternatives:
                blocks.append(
                    _input(
                        CRED_BLOCK_PREFIX + alternative.name,
                        f"{alternative.name} (instead)",
                        optional=True,
                        hint=hint,
                        placeholder=alternative.example,
                    )
                )
            continue
        blocks.append(
            _input(
                CRED_BLOCK_PREFIX + cred.name,
                f"{cred.name}" + (" (set)" if is_set else ""),
                optional=is_set,
                hint=f"{cred.description} How to get it: {cred.how_to_get}",
                placeholder=("already set — leave empty to keep" if is_set else (cred.example or "")) or None,
            )
        )
    for cred, when in form.facts.optional:
        if cred.name in NOT_IN_SLACK:
            continue
        is_set = cred.name in state.credentials
        blocks.append(
            _input(
                CRED_BLOCK_PREFIX + cred.name,
                f"{cred.name} (optional{', set' if is_set else ''})",
                optional=True,
                hint=f"Only if {when}. {cred.description}" if when else cred.description,
                placeholder=cred.example,
            )
        )
    return modal(CREDENTIALS_MODAL, "Launch credentials", blocks, state.id)


def settings_modal(form: CredentialsForm) -> dict:
    """The platform's optional settings, each with when it matters; none is needed to launch."""
    from taobot.slack.kube_forms import NOT_IN_SLACK

    state, platform = form.facts.state, form.facts.platform
    blocks: list[dict] = [
        context(
            f"Optional settings for launch `{state.id}` on {platform.display_name if platform else '—'}. "
            "None is needed to launch: leave a field empty to keep what is set, or the platform's default. "
            "Values are encrypted at rest, remembered for your next launch and never shown in Slack."
        )
    ]
    for cred, when in form.facts.settings:
        if cred.name in NOT_IN_SLACK:
            continue
        is_set = cred.name in state.credentials
        blocks.append(
            _input(
                CRED_BLOCK_PREFIX + cred.name,
                cred.name + (" (set)" if is_set else ""),
                optional=True,
                hint=(f"Only if {when}. " if when else "") + f"{cred.description} How to get it: {cred.how_to_get}",
                placeholder=("already set — leave empty to keep" if is_set else cred.example) or None,
            )
        )
    return modal(SETTINGS_MODAL, "More settings", blocks, state.id)


def image_modal(form: ImageForm) -> dict:
    state = form.state
    blocks = [
        section(
            f"Default for {state.model}/{state.action}: `{state.image.default}`"
            + (f"\n:warning: {state.image.access}" if state.image.access else "")
        ),
        _input(
            IMAGE_BLOCK,
            "Container image",
            optional=False,
            hint="A full reference: registry/path/name:tag (optionally @sha256:digest).",
            initial=state.image.chosen or state.image.default,
        ),
    ]
    return modal(IMAGE_MODAL, "Override image", blocks, state.id)


def datasets_modal(form: DatasetsForm) -> dict:
    state = form.state
    blocks: list[dict] = [section(form.help)]
    for role, templates in form.roots.items():
        keys = ", ".join(f"`{k}`" for k in templates)
        blocks.append(
            _input(
                ROOT_BLOCK_PREFIX + role,
                f"{role} root (root mode)",
                optional=True,
                hint=f"Expands to {keys}"[:2000],
                initial=state.roots.get(role),
            )
        )
    pairs = "\n".join(f"{k}={v}" for k, v in state.spec_inputs.items())
    blocks.append(
        _input(
            SPEC_BLOCK,
            "Exact spec keys (spec mode), one key=path per line",
            optional=True,
            hint="Kept exactly as given. Inputs: " + ", ".join(form.inputs)[:1900],
            initial=pairs or None,
            multiline=True,
        )
    )
    blocks.append(_input(RESULTS_BLOCK, "Results location (optional)", optional=True, initial=state.results_uri))
    return modal(DATASETS_MODAL, "Dataset inputs", blocks, state.id)


RELAUNCH_LABELS = {
    "platform": ("Platform", "slurm, local-docker, kubernetes, lepton or brev"),
    "image": ("Container image", "registry/path/name:tag, or `default` for the catalog's image"),
    "num_gpus": ("GPUs per node", "a whole number"),
    "num_nodes": ("Nodes", "a whole number"),
    "interval": ("Status interval (minutes)", "1–60, or `off` for no updates"),
}


def relaunch_modal(form: RelaunchForm) -> dict:
    """The answers a relaunch may change, each prefilled with what the finished launch ran with."""
    blocks: list[dict] = [
        context(
            f"Relaunch after `{form.launch_id}`: every answer is kept; change only what should differ. "
            "A fresh preflight runs before anything is created."
        )
    ]
    for key, value in form.values.items():
        label, hint = RELAUNCH_LABELS.get(key, (f"{key} dataset root", "an absolute path or s3:// URI"))
        blocks.append(_input(RELAUNCH_BLOCK_PREFIX + key, label, optional=True, hint=hint, initial=value or None))
    return modal(RELAUNCH_MODAL, "Relaunch with changes", blocks, form.state.id, submit="Relaunch")


def relaunch_intent(values: dict[str, str]) -> Relaunch:
    """A submitted relaunch form: its fields by answer key (the service reads only those that changed)."""
    fields = tuple(
        (b.removeprefix(RELAUNCH_BLOCK_PREFIX), v) for b, v in values.items() if b.startswith(RELAUNCH_BLOCK_PREFIX)
    )
    return Relaunch(changes=(), fields=fields)
