"""Block Kit builders: every card, modal and reply is valid and inside Slack's limits."""

from __future__ import annotations

import json
import re
import time

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from taobot import views as V
from taobot.catalog import load_catalog
from taobot.intake import (
    STEP_ORDER,
    Cancel,
    ChoosePlatform,
    CredentialsStored,
    IntakeState,
    SetMonitoring,
    SetResults,
    SetRoot,
    SetSpecInput,
    Step,
    UseSshAgent,
    apply,
    credential_needs,
    help_text,
    missing_credentials,
    optional_credentials,
)
from taobot.intake.intents import OPEN_SETTINGS, USE_TAOBOT_KEY
from taobot.slack import blocks as B
from taobot.slack import forms as F
from taobot.slack.render import render
from taobot.view_text import STEP_TITLES
from tests.builders import PLATFORMS, drive_to, new, ok, store_missing_credentials
from tests.fakes._blocks import validate_message_blocks, validate_view

CATALOG = load_catalog()
MODELS = [
    ("cosmos-rl", "train"),
    ("cosmos-predict-2-5", "generate"),
    ("dino", "train"),
    ("classification-pyt", "train"),
    ("mask2former", "train"),
]
STEPS = [*STEP_ORDER, Step.COMPLETE]
LONG_PATH = "/lustre/fsw/" + "deep/" * 998 + "x"  # 5,000+ characters


def channel_status(intakes, now=None):
    entries = tuple(V.ChannelEntry(s, s.platform or "—", None) for s in intakes[:40])
    return render(V.ChannelStatus(entries, len(intakes), now if now is not None else time.time()))


def _reachable() -> list[tuple[str, str, str, Step]]:
    out = []
    for platform in PLATFORMS:
        for model, action in MODELS:
            for step in STEPS:
                if step is Step.CREDENTIALS:
                    probe = ok(new(model, action), ChoosePlatform(platform), SetMonitoring(True, 5))
                    if not credential_needs(probe, CATALOG):
                        continue  # nothing to ask on this platform for this model: the step never shows
                out.append((platform, model, action, step))
    return out


CASES = _reachable()


# --------------------------------------------------------------------------- validation helpers


def _section_texts(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]


def _selects(blocks: list[dict]) -> list[dict]:
    found = []
    for b in blocks:
        for el in [b.get("accessory"), b.get("element"), *(b.get("elements") or [])]:
            if isinstance(el, dict) and el.get("type", "").endswith("select"):
                found.append(el)
    return found


def assert_message_ok(message: dict) -> None:
    assert isinstance(message.get("text"), str) and message["text"].strip()
    assert len(message["text"]) <= B.MAX_TEXT
    blocks = message["blocks"]
    assert 0 < len(blocks) <= 50
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
    assert validate_message_blocks(blocks) == []
    for text in _section_texts(blocks):
        assert len(text) <= 3000
    for select in _selects(blocks):
        assert len(select["options"]) <= 100


def assert_view_ok(view: dict) -> None:
    View(**view).validate_json()
    assert validate_view(view) == []
    assert view["type"] == "modal"
    assert len(view["blocks"]) <= 100
    assert len(view["title"]["text"]) <= 24
    for key in ("submit", "close"):
        assert len(view[key]["text"]) <= 24
    for text in _section_texts(view["blocks"]):
        assert len(text) <= 3000
    for select in _selects(view["blocks"]):
        assert len(select["options"]) <= 100
    ids = [b["block_id"] for b in view["blocks"] if "block_id" in b]
    assert len(ids) == len(set(ids))


def _card_text(card: dict) -> str:
    parts = []
    for block in card["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        for el in block.get("elements") or []:
            if "text" in el:
                parts.append(el["text"] if isinstance(el["text"], str) else el["text"]["text"])
    return "\n".join(parts)


def _unformatted(text: str) -> str:
    return re.sub(r"[*`]", "", text)


def _state(platform: str, model: str, action: str, step: Step) -> IntakeState:
    return drive_to(step, platform, model, action)


# --------------------------------------------------------------------------- every platform × model × step


@pytest.mark.parametrize("platform,model,action,step", CASES, ids=lambda v: getattr(v, "value", v))
def test_every_builder_is_valid_at_every_step(platform, model, action, step):
    state = _state(platform, model, action, step)
    card = render(V.intake_card(state, CATALOG))
    assert_message_ok(card)
    assert STEP_TITLES[step] in card["text"]
    assert_view_ok(render(V.CredentialsForm(V.intake_facts(state, CATALOG))))
    assert_view_ok(render(V.CredentialsForm(V.intake_facts(state, CATALOG), more=True)))
    assert_view_ok(render(V.datasets_form(state, CATALOG)))
    assert_view_ok(render(V.ImageForm(state)))
    assert_message_ok(render(V.IntakeDetail(V.intake_facts(state, CATALOG), state.created_at + 3600)))
    assert_message_ok(channel_status([state]))
    # the card asks the question of the current step, in the block identified for it
    question = next(b for b in card["blocks"] if b.get("block_id") == f"q_{state.id}")
    assert question["type"] == "section"


@pytest.mark.parametrize("model,action", MODELS)
def test_card_before_a_platform_offers_every_platform(model, action):
    card = render(V.intake_card(new(model, action), CATALOG))
    assert_message_ok(card)
    select = next(s for s in _selects(card["blocks"]) if s["action_id"] == B.PLATFORM_SELECT)
    assert [o["value"] for o in select["options"]] == list(CATALOG.platforms)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("model,action", MODELS)
def test_card_shows_the_default_image_at_the_image_step(platform, model, action):
    state = _state(platform, model, action, Step.IMAGE)
    card = render(V.intake_card(state, CATALOG))
    text = _unformatted(_card_text(card))
    assert f"Container image for {model}/{action}: default={state.image.default}" in text
    action_ids = {el["action_id"] for b in card["blocks"] if b["type"] == "actions" for el in b["elements"]}
    assert {B.IMAGE_USE_DEFAULT, B.IMAGE_OVERRIDE} <= action_ids


def test_monitoring_question_offers_interval_choices_within_range():
    card = render(V.intake_card(_state("slurm", "dino", "train", Step.MONITORING), CATALOG))
    assert_message_ok(card)
    select = next(s for s in _selects(card["blocks"]) if s["action_id"] == B.INTERVAL_SELECT)
    values = [int(o["value"]) for o in select["options"]]
    assert all(1 <= v <= 60 for v in values) and 5 in values


def test_cancelled_card_is_valid_and_says_so():
    state = ok(_state("slurm", "cosmos-rl", "train", Step.DATASETS), Cancel())
    card = render(V.intake_card(state, CATALOG))
    assert_message_ok(card)
    assert "Cancelled" in _card_text(card)
    assert not any(b["type"] == "actions" for b in card["blocks"])


# --------------------------------------------------------------------------- credentials modal


def _cred_inputs(view: dict) -> list[str]:
    return [
        b["block_id"].removeprefix(F.CRED_BLOCK_PREFIX)
        for b in view["blocks"]
        if b["type"] == "input" and b["block_id"].startswith(F.CRED_BLOCK_PREFIX)
    ]


def _owned(platform: str) -> set[str]:
    p = CATALOG.platforms[platform]
    return (
        set(p.required_credentials)
        | {m for g in p.credential_groups for m in g.one_of}
        | {o.name for o in p.optional_credentials}
    )


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("model,action", MODELS)
@pytest.mark.parametrize("s3", [False, True])
def test_credentials_modal_has_one_input_per_needed_credential(platform, model, action, s3):
    state = _state(platform, model, action, Step.IMAGE)
    if s3:
        state = ok(state, SetResults("s3://bucket/results"))
    view = render(V.CredentialsForm(V.intake_facts(state, CATALOG)))
    assert_view_ok(view)
    inputs = _cred_inputs(view)
    assert len(inputs) == len(set(inputs))
    # Kubernetes asks for its identity with blocks of its own: a profile choice (none is open here) or an upload
    inputs = ["TAO_K8S_PROFILE" if i == "KUBECONFIG_CONTENT" else i for i in inputs]
    needs = credential_needs(state, CATALOG)
    # a credential taobot makes (the person's SSH key) is said in the form, never a field to type into
    needed = [n.name for n in needs if not n.credential.generated]
    optional = [c.name for c, _ in optional_credentials(state, CATALOG)]
    assert inputs == needed + optional
    for need in needs:
        if need.credential.generated:
            assert need.name in json.dumps(view) and "Use a taobot key" in json.dumps(view)
    assert ("HF_TOKEN" in inputs) is model.startswith("cosmos-")
    assert ({"ACCESS_KEY", "SECRET_KEY"} <= set(inputs)) is s3
    # required ones that are missing are not optional in the form
    by_id = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    for need in missing_credentials(state, CATALOG):
        if need.reason == "kubernetes_identity":
            continue  # a profile or an upload: either does, so neither field is required
        if not need.credential.generated:
            assert by_id[F.CRED_BLOCK_PREFIX + need.name]["optional"] is False
    foreign = set().union(*(_owned(q) for q in PLATFORMS if q != platform)) - _owned(platform)
    foreign -= set(CATALOG.s3_required) | set(CATALOG.s3_optional)
    assert not set(inputs) & foreign


def test_slurm_card_offers_the_persons_taobot_key_never_an_agent_and_the_form_follows_the_choice():
    state = _state("slurm", "dino", "train", Step.CREDENTIALS)
    card = render(V.intake_card(state, CATALOG))
    buttons = {el["action_id"] for b in card["blocks"] if b["type"] == "actions" for el in b["elements"]}
    # an agent on the bot's host holds its operator's keys: Slack never offers one
    assert USE_TAOBOT_KEY in buttons and B.USE_SSH_AGENT not in buttons
    assert "`TAOBOT_SSH_KEY` (press *Use a taobot key*" in json.dumps(card)
    form = render(V.CredentialsForm(V.intake_facts(state, CATALOG)))
    inputs = _cred_inputs(form)
    assert not {"TAOBOT_SSH_KEY", "SSH_KEY_PATH", "SSH_AUTH_SOCK"} & set(inputs)
    assert not {"LEPTON_AUTH_TOKEN", "LEPTON_WORKSPACE_ID", "BREV_API_TOKEN", "KUBECONFIG"} & set(inputs)
    # where the operator gives people a key folder, a key file there may be given instead, optionally
    hint = "Instead of a taobot key: a private key file in your own key folder"
    facts = V.intake_facts(state, CATALOG)
    form = render(V.CredentialsForm(facts, alternatives=((CATALOG.credentials["SSH_KEY_PATH"], hint),)))
    by_id = {b["block_id"]: b for b in form["blocks"] if b["type"] == "input"}
    assert by_id[F.CRED_BLOCK_PREFIX + "SSH_KEY_PATH"]["optional"] is True
    assert hint in by_id[F.CRED_BLOCK_PREFIX + "SSH_KEY_PATH"]["hint"]["text"]
    # the console's agent choice (Slack refuses it before it reaches the state): the form asks for the socket
    state = ok(state, UseSshAgent(True))
    inputs = _cred_inputs(render(V.CredentialsForm(V.intake_facts(state, CATALOG))))
    assert "SSH_AUTH_SOCK" in inputs and "SSH_KEY_PATH" not in inputs


@pytest.mark.parametrize("platform", [p for p in PLATFORMS if p != "slurm"])
def test_no_agent_button_off_slurm(platform):
    state = _state(platform, "cosmos-rl", "train", Step.CREDENTIALS)
    card = render(V.intake_card(state, CATALOG))
    buttons = {el["action_id"] for b in card["blocks"] if b["type"] == "actions" for el in b["elements"]}
    assert B.USE_SSH_AGENT not in buttons and USE_TAOBOT_KEY not in buttons


def test_credentials_already_set_are_optional_and_marked():
    state = _state("lepton", "cosmos-rl", "train", Step.CREDENTIALS)
    state = ok(state, CredentialsStored({"HF_TOKEN": "fp"}))
    view = render(V.CredentialsForm(V.intake_facts(state, CATALOG)))
    block = next(b for b in view["blocks"] if b.get("block_id") == F.CRED_BLOCK_PREFIX + "HF_TOKEN")
    assert block["optional"] is True and "(set)" in block["label"]["text"]


def test_card_and_modal_never_contain_a_secret_value():
    secret = "hf_Zq8Xw2Lp9Rt4Vb7Nm1Kc6Jd3Hf5Gs0Ya"
    state = _state("lepton", "cosmos-rl", "train", Step.CREDENTIALS)
    # The store keeps the value; the state only learns a fingerprint.
    state = ok(
        state,
        CredentialsStored(
            {
                "HF_TOKEN": "3f2a9c1d4e5b6a70",
                "LEPTON_AUTH_TOKEN": "aa11bb22cc33dd44",
                "LEPTON_WORKSPACE_ID": "ff00ee11dd22cc33",
            }
        ),
    )
    dumped = state.model_dump_json()
    assert secret not in dumped
    assert set(state.credentials.values()) == {"3f2a9c1d4e5b6a70", "aa11bb22cc33dd44", "ff00ee11dd22cc33"}
    rendered = [
        render(V.intake_card(state, CATALOG)),
        render(V.CredentialsForm(V.intake_facts(state, CATALOG))),
        render(V.IntakeDetail(V.intake_facts(state, CATALOG), time.time())),
    ]
    for payload in rendered:
        text = repr(payload)
        assert secret not in text
        for fingerprint in state.credentials.values():
            assert fingerprint not in text  # not even the fingerprint is shown
    assert "`HF_TOKEN` set" in _card_text(rendered[0])


# --------------------------------------------------------------------------- long values


@pytest.mark.parametrize("platform", ["slurm", "local-docker", "lepton"])
def test_very_long_paths_still_produce_valid_blocks(platform):
    state = _state(platform, "cosmos-rl", "train", Step.DATASETS)
    long = {"slurm": LONG_PATH, "local-docker": "/data/tao/" + "x" * 5000, "lepton": "s3://bucket/" + "y" * 5000}[
        platform
    ]
    assert len(long) >= 5000
    state = ok(
        state,
        SetRoot("train", long),
        SetSpecInput("custom.val_dataset.annotation_path", long + "/ann.json"),
        SetSpecInput("custom.val_dataset.media_path", long),
        SetResults(long),
    )
    for step_state in (state, store_missing_credentials(state)):
        assert_message_ok(render(V.intake_card(step_state, CATALOG)))
        assert_view_ok(render(V.datasets_form(step_state, CATALOG)))
        assert_view_ok(render(V.CredentialsForm(V.intake_facts(step_state, CATALOG))))
        assert_message_ok(render(V.IntakeDetail(V.intake_facts(step_state, CATALOG), time.time())))


def test_very_long_image_reference_in_the_modal():
    state = _state("slurm", "dino", "train", Step.IMAGE)
    state = state.model_copy(
        update={"image": state.image.model_copy(update={"default": "nvcr.io/" + "a" * 5000 + ":1"})}
    )
    assert_view_ok(render(V.ImageForm(state)))
    assert_message_ok(render(V.intake_card(state, CATALOG)))


@pytest.mark.parametrize("length", [0, 1, 2999, 3000, 3001, 10_000, 50_000])
def test_reply_of_any_length_is_valid(length):
    text = "x" * length if length else "ok"
    message = B.reply(text)
    assert_message_ok(message)
    assert "".join(_section_texts(message["blocks"])).startswith(text[:3000])


def test_a_very_long_error_is_valid():
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    out = apply(state, SetRoot("train", "relative/" + "z" * 6000), CATALOG)
    assert out.errors
    message = B.reply("\n".join(out.errors))
    assert_message_ok(message)


def test_help_message_is_valid_and_lists_platforms_and_models():
    message = render(V.Reply(help_text(CATALOG)))
    assert_message_ok(message)
    text = "".join(_section_texts(message["blocks"]))
    for name in [*CATALOG.platforms, *CATALOG.models]:
        assert name in text
    for command in ("/tao automl <model>", "/tao workflow train-eval-export", "relaunch num_gpus=16", " on slurm "):
        assert command in text, command


def test_status_message_with_many_intakes_is_valid():
    states = [_state(*case) for case in CASES[::3]]
    assert len(states) > 40  # more than the message lists
    message = channel_status(states, now=states[0].created_at + 90_000)
    assert_message_ok(message)
    assert_message_ok(channel_status([]))


def test_modal_titles_fit():
    state = _state("slurm", "cosmos-rl", "train", Step.CREDENTIALS)
    for view in (
        render(V.CredentialsForm(V.intake_facts(state, CATALOG))),
        render(V.datasets_form(state, CATALOG)),
        render(V.ImageForm(state)),
    ):
        assert 0 < len(view["title"]["text"]) <= 24
        assert view["callback_id"] in F.CALLBACK_IDS
        assert view["private_metadata"] == state.id


def test_datasets_modal_offers_both_modes():
    state = _state("slurm", "cosmos-rl", "train", Step.DATASETS)
    view = render(V.datasets_form(state, CATALOG))
    ids = [b.get("block_id") for b in view["blocks"]]
    assert F.ROOT_BLOCK_PREFIX + "train" in ids and F.ROOT_BLOCK_PREFIX + "eval" in ids
    assert F.SPEC_BLOCK in ids and F.RESULTS_BLOCK in ids
    text = view["blocks"][0]["text"]["text"]
    assert "Root mode" in text and "Spec mode" in text and "/lustre/" in text


def test_fit_keeps_messages_within_fifty_blocks():
    blocks = [B.section(f"line {i}") for i in range(80)]
    fitted = B.fit(blocks)
    assert len(fitted) == 50
    assert validate_message_blocks(fitted) == []
    assert len(B.fit(blocks, B.MAX_MODAL_BLOCKS)) == 80
    assert len(B.fit([B.section("x")] * 150, B.MAX_MODAL_BLOCKS)) == 100


def test_clip_marks_shortened_text():
    assert B.clip("abc", 10) == "abc"
    clipped = B.clip("a" * 5000)
    assert len(clipped) == 3000 and clipped.endswith("(shortened)")


def test_datasets_modal_never_prefills_a_shortened_path():
    """A prefilled value is submitted back as is: a clipped path would replace the real one."""
    state = _state("slurm", "cosmos-rl", "train", Step.DATASETS)
    state = ok(
        state,
        SetRoot("train", LONG_PATH),
        SetRoot("eval", "/lustre/short/val"),
        SetSpecInput("custom.val_dataset.annotation_path", LONG_PATH + "/ann.json"),
        SetResults(LONG_PATH),
    )
    view = render(V.datasets_form(state, CATALOG))
    assert_view_ok(view)
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    current = {
        F.ROOT_BLOCK_PREFIX + "train": state.roots["train"],
        F.ROOT_BLOCK_PREFIX + "eval": state.roots["eval"],
        F.SPEC_BLOCK: "\n".join(f"{k}={v}" for k, v in state.spec_inputs.items()),
        F.RESULTS_BLOCK: state.results_uri,
    }
    for block_id, value in current.items():
        element = inputs[block_id]["element"]
        if "initial_value" in element:
            assert element["initial_value"] == value  # whole, or not at all
        else:
            assert len(value) > 3000
            assert "leave this empty to keep it" in inputs[block_id]["hint"]["text"]
    assert inputs[F.ROOT_BLOCK_PREFIX + "eval"]["element"]["initial_value"] == "/lustre/short/val"


# --------------------------------------------------------------------------- optional settings, compute, superseded


def _buttons(card: dict) -> dict[str, str]:
    return {
        el["action_id"]: el["text"]["text"] for b in card["blocks"] if b["type"] == "actions" for el in b["elements"]
    }


@pytest.mark.parametrize("platform", PLATFORMS)
def test_credentials_modal_leaves_the_always_settings_to_the_more_settings_form(platform):
    state = _state(platform, "cosmos-rl", "train", Step.CREDENTIALS)
    facts = V.intake_facts(state, CATALOG)
    always = {o.name for o in CATALOG.platforms[platform].optional_credentials if o.only_when.value == "always"}
    always -= {n.name for n in facts.needs}
    always -= {"KUBECONFIG_CONTENT", "TAO_K8S_CONTEXT"}  # in Slack: an upload element; no context of a file
    inputs = _cred_inputs(render(V.CredentialsForm(facts)))
    assert not set(inputs) & always, set(inputs) & always
    more = render(V.CredentialsForm(facts, more=True))
    assert_view_ok(more)
    assert more["callback_id"] == F.SETTINGS_MODAL and more["title"]["text"] == "More settings"
    assert set(_cred_inputs(more)) == always
    assert all(b["optional"] for b in more["blocks"] if b["type"] == "input")
    card = render(V.intake_card(state, CATALOG))
    assert (OPEN_SETTINGS in _buttons(card)) is bool(always)


def test_more_settings_form_marks_what_is_set_and_says_when_each_matters():
    state = _state("slurm", "cosmos-rl", "train", Step.IMAGE)
    state = ok(state, CredentialsStored({"SLURM_CPUS_PER_TASK": "fp"}))
    view = render(V.CredentialsForm(V.intake_facts(state, CATALOG), more=True))
    by_id = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    cpus = by_id[F.CRED_BLOCK_PREFIX + "SLURM_CPUS_PER_TASK"]
    assert cpus["label"]["text"] == "SLURM_CPUS_PER_TASK (set)"
    account = by_id[F.CRED_BLOCK_PREFIX + "SLURM_ACCOUNT"]
    assert account["hint"]["text"].startswith("Only if your site requires --account.")
    # past the credentials step the card still offers the form, and shows a given setting as set
    card = render(V.intake_card(state, CATALOG))
    assert _buttons(card)[OPEN_SETTINGS] == "More settings"
    assert "`SLURM_CPUS_PER_TASK` set (optional)" in _card_text(card)


def test_compute_button_names_exactly_the_defaults_it_fills():
    from taobot.intake import SetCompute

    state = _state("slurm", "cosmos-rl", "train", Step.COMPUTE)
    card = render(V.intake_card(state, CATALOG))
    assert _buttons(card)[B.COMPUTE_DEFAULTS] == "Use defaults (num_gpus=4, num_nodes=1)"
    state = ok(state, SetCompute("num_gpus", 8))
    card = render(V.intake_card(state, CATALOG))
    assert _buttons(card)[B.COMPUTE_DEFAULTS] == "Use default (num_nodes=1)"
    text = _card_text(card)
    assert "num_gpus=8 given; the platform default for the rest is num_nodes=1" in text
    assert "num_gpus=4" not in text


def test_superseded_preflight_card_keeps_its_results_and_loses_its_buttons():
    results = (
        {
            "check": "slurm.login",
            "label": "SSH login",
            "ok": True,
            "detail": "ok",
            "remediation": "",
            "scope": "platform",
        },
    )
    live = render(V.PreflightCard("abcd1234", "slurm", results, None, True))
    assert {B.LAUNCH, B.RUN_PREFLIGHT} <= set(_buttons(live))
    old = render(V.PreflightCard("abcd1234", "slurm", results, None, True, superseded=True))
    assert_message_ok(old)
    assert _buttons(old) == {}
    assert "Superseded" in _card_text(old) and "SSH login" in _card_text(old)
    assert "superseded" in old["text"]
