"""The launch intake state machine: order of questions, validation, changes, refusals."""

from __future__ import annotations

import json

import pytest

from taobot.catalog import find_action, find_model, resolve_image
from taobot.errors import UnknownNameError
from taobot.intake import (
    MAX_INTERVAL,
    MAX_REPLY_CHARS,
    MIN_INTERVAL,
    STEP_ORDER,
    AcceptComputeDefaults,
    Cancel,
    ChoosePlatform,
    ConfirmImage,
    CredentialsStored,
    IntakeState,
    OverrideImage,
    SetCompute,
    SetMonitoring,
    SetResults,
    SetRoot,
    SetSpecInput,
    Step,
    UseSshAgent,
    apply,
    apply_all,
    check_credential_value,
    check_image_ref,
    compute_defaults,
    credential_needs,
    dataset_help,
    dataset_inputs,
    extra_settings,
    may_act,
    missing_credentials,
    missing_items,
    next_step,
    optional_credentials,
    parse_reply,
    path_kind,
    wanted_credentials,
)
from taobot.intake.intents import CANCEL_INTAKE, COMPUTE_DEFAULTS, HELP, IMAGE_USE_DEFAULT, LAUNCH, USE_SSH_AGENT
from taobot.slack.text import slack_plain_text
from tests.builders import (  # noqa: E402 - shared builders
    CATALOG,
    PLATFORMS,
    drive_to,
    example_path,
    fill_datasets,
    new,
    ok,
    refused,
    store_missing_credentials,
)

CLOUD = ["lepton", "brev", "kubernetes"]
# (model, action): two that need HF_TOKEN, three that do not; all have required dataset inputs.
MODELS = [
    ("cosmos-rl", "train"),
    ("cosmos-predict-2-5", "generate"),
    ("dino", "train"),
    ("classification-pyt", "train"),
    ("mask2former", "train"),
]
HF_MODELS = {"cosmos-rl", "cosmos-embed", "cosmos-predict-2-5"}
LEPTON_ONLY = {"LEPTON_WORKSPACE_ID", "LEPTON_AUTH_TOKEN"}
SLURM_ONLY = {
    "SLURM_USER",
    "SLURM_HOSTNAME",
    "SLURM_PARTITION",
    "TAOBOT_SSH_KEY",
    "SSH_KEY_PATH",
    "SSH_AUTH_SOCK",
    "SLURM_BASE_RESULTS_DIR",
    "SLURM_ACCOUNT",
    "SLURM_CONTAINER_MOUNTS",
}
IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt"


# --------------------------------------------------------------------------- order of questions


def _squeeze(steps: list[Step]) -> list[Step]:
    """The distinct questions in the order they were asked (a skipped step never appears)."""
    return [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] is not s]


def test_fresh_intake_asks_for_the_platform_first():
    state = new()
    assert next_step(state, CATALOG) is Step.PLATFORM
    assert state.status == "collecting"
    assert state.platform is None and state.monitor is None and state.image.chosen is None


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("model,action", [("cosmos-rl", "train"), ("dino", "train")])
def test_steps_are_asked_in_the_fixed_order(platform, model, action):
    state = new(model, action)
    seen = [next_step(state, CATALOG)]
    state = ok(state, ChoosePlatform(platform))
    seen.append(next_step(state, CATALOG))
    state = ok(state, SetMonitoring(True, 5))
    seen.append(next_step(state, CATALOG))
    state = store_missing_credentials(state)
    seen.append(next_step(state, CATALOG))
    state = ok(state, ConfirmImage())
    seen.append(next_step(state, CATALOG))
    state = fill_datasets(state)
    state = store_missing_credentials(state)  # S3 keys, when the datasets are s3://
    seen.append(next_step(state, CATALOG))
    state = ok(state, AcceptComputeDefaults())
    seen.append(next_step(state, CATALOG))
    expected = [*STEP_ORDER, Step.COMPLETE]
    if platform == "local-docker" and model == "dino":
        expected.remove(Step.CREDENTIALS)  # nothing to ask: the step is skipped (Kubernetes asks for an identity)
    assert _squeeze(seen) == expected
    assert state.status == "complete"


def test_only_what_is_missing_is_asked():
    state = new()
    reply = parse_reply(
        f"platform=local-docker monitor=no image={IMAGE} num_gpus=2 train=/data/tao/dino/train eval=/data/tao/dino/val",
        state,
        CATALOG,
    )
    assert not reply.errors
    state = apply_all(state, reply.events, CATALOG).state
    # local-docker needs no credential and everything else was given: nothing is left to ask.
    assert credential_needs(state, CATALOG) == []
    assert next_step(state, CATALOG) is Step.COMPLETE
    assert state.status == "complete"
    assert missing_items(state, CATALOG) == []


def test_answers_given_early_are_not_asked_again():
    state = ok(new(), SetCompute("num_gpus", 2), ConfirmImage())
    state = ok(state, ChoosePlatform("slurm"))
    assert next_step(state, CATALOG) is Step.MONITORING
    steps = {m.step for m in missing_items(state, CATALOG)}
    assert Step.IMAGE not in steps
    assert "Compute: num_gpus" not in {m.label for m in missing_items(state, CATALOG)}


def test_platform_choices_come_from_the_catalog():
    state = new()
    item = missing_items(state, CATALOG)[0]
    assert item.step is Step.PLATFORM
    for name in CATALOG.platforms:
        assert name in item.example


# --------------------------------------------------------------------------- monitoring


def test_monitoring_yes_takes_the_default_interval():
    state = ok(drive_to(Step.MONITORING, "slurm"), SetMonitoring(enabled=True))
    assert state.monitor is True
    assert state.interval_minutes == CATALOG.default_status_interval_minutes == 5
    assert next_step(state, CATALOG) is Step.CREDENTIALS


def test_monitoring_yes_with_interval_from_a_reply():
    state = drive_to(Step.MONITORING, "slurm")
    reply = parse_reply("monitor=yes interval=10", state, CATALOG)
    state = apply_all(state, reply.events, CATALOG).state
    assert (state.monitor, state.interval_minutes) == (True, 10)


def test_monitoring_no_needs_no_interval():
    state = ok(drive_to(Step.MONITORING, "slurm"), SetMonitoring(enabled=False))
    assert state.monitor is False
    assert next_step(state, CATALOG) is Step.CREDENTIALS


def test_interval_alone_turns_monitoring_on():
    state = ok(drive_to(Step.MONITORING, "slurm"), SetMonitoring(interval=15))
    assert (state.monitor, state.interval_minutes) == (True, 15)


@pytest.mark.parametrize("minutes", [MIN_INTERVAL, 2, 30, MAX_INTERVAL])
def test_interval_in_range_is_accepted(minutes):
    state = ok(drive_to(Step.MONITORING, "lepton"), SetMonitoring(True, minutes))
    assert state.interval_minutes == minutes


@pytest.mark.parametrize("minutes", [0, -1, 61, 90, 1000])
def test_interval_out_of_range_is_refused_with_the_range(minutes):
    state = drive_to(Step.MONITORING, "lepton")
    error = refused(state, SetMonitoring(True, minutes))
    assert "1–60" in error and str(minutes) in error


def test_interval_reply_that_is_not_a_number():
    reply = parse_reply("interval=soon", new(), CATALOG)
    assert not reply.events
    assert "whole number" in reply.errors[0]


# --------------------------------------------------------------------------- credentials


def _platform_owned(name: str) -> set[str]:
    p = CATALOG.platforms[name]
    return (
        set(p.required_credentials)
        | {m for g in p.credential_groups for m in g.one_of}
        | {o.name for o in p.optional_credentials}
    )


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("model", ["cosmos-rl", "cosmos-embed", "cosmos-predict-2-5", "dino", "classification-pyt"])
def test_credentials_are_the_platforms_and_the_models_only(platform, model):
    action = next(iter(find_model(CATALOG, model).actions))
    state = ok(new(model, action), ChoosePlatform(platform))
    needs = [n.name for n in credential_needs(state, CATALOG)]
    p = CATALOG.platforms[platform]
    expected = [g.preferred for g in p.credential_groups] + list(p.required_credentials)
    if model in HF_MODELS:
        expected.append("HF_TOKEN")
    assert needs == expected
    assert ("HF_TOKEN" in needs) is model.startswith("cosmos-")
    # no s3:// paths yet: no S3 keys
    assert not {"ACCESS_KEY", "SECRET_KEY"} & set(needs)
    offered = set(needs) | {c.name for c, _ in optional_credentials(state, CATALOG)}
    if platform != "lepton":
        assert not offered & LEPTON_ONLY
    if platform != "slurm":
        assert not offered & SLURM_ONLY
    others = set().union(*(_platform_owned(q) for q in PLATFORMS if q != platform))
    foreign = others - _platform_owned(platform) - set(CATALOG.s3_required) - set(CATALOG.s3_optional)
    assert not offered & foreign, offered & foreign


def test_slurm_asks_for_the_ssh_identity_first_and_the_agent_only_when_told():
    state = drive_to(Step.CREDENTIALS, "slurm")
    needs = [n.name for n in credential_needs(state, CATALOG)]
    # The person's own taobot key is offered first; a key file or an agent only when given (and where allowed).
    assert needs == ["TAOBOT_SSH_KEY", "SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION"]
    assert "SSH_AUTH_SOCK" not in needs and "SSH_KEY_PATH" not in needs
    first = missing_items(state, CATALOG)[0]
    assert first.label == "Credential TAOBOT_SSH_KEY" and "Use a taobot key" in first.example
    assert "Enter credentials" not in first.example  # made by taobot, never typed
    state = ok(state, UseSshAgent(True))
    needs = [n.name for n in credential_needs(state, CATALOG)]
    assert needs == ["SSH_AUTH_SOCK", "SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION"]
    assert "SSH_KEY_PATH" not in needs


def test_ssh_agent_reply_words_map_to_the_agent_event():
    state = drive_to(Step.CREDENTIALS, "slurm")
    assert parse_reply("I use an SSH agent", state, CATALOG).command == USE_SSH_AGENT
    assert parse_reply("ssh_agent=yes", state, CATALOG).events == [UseSshAgent(True)]


def test_one_member_of_a_group_is_enough():
    state = drive_to(Step.CREDENTIALS, "slurm")
    state = ok(
        state, CredentialsStored({n: "fp" for n in ["SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION", "SSH_KEY_PATH"]})
    )
    assert next_step(state, CATALOG) is Step.IMAGE
    assert "SSH_AUTH_SOCK" not in {n.name for n in missing_credentials(state, CATALOG)}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_s3_keys_only_when_a_dataset_is_on_s3(platform):
    state = drive_to(Step.IMAGE, platform)
    names = {n.name for n in credential_needs(state, CATALOG)}
    assert not names & {"ACCESS_KEY", "SECRET_KEY"}
    assert not {c.name for c, _ in optional_credentials(state, CATALOG)} & {
        "S3_ENDPOINT_URL",
        "CLOUD_REGION",
        "S3_BUCKET_NAME",
    }
    state = ok(state, SetRoot("train", "s3://bucket/dino/train"))
    needs = [n.name for n in credential_needs(state, CATALOG)]
    assert needs[-2:] == ["ACCESS_KEY", "SECRET_KEY"]
    assert [n.reason for n in credential_needs(state, CATALOG)][-2:] == ["s3", "s3"]
    optional = {c.name for c, _ in optional_credentials(state, CATALOG)}
    assert {"S3_ENDPOINT_URL", "CLOUD_REGION"} <= optional
    assert next_step(state, CATALOG) is Step.CREDENTIALS


@pytest.mark.parametrize("platform", PLATFORMS)
def test_s3_keys_when_only_the_results_are_on_s3(platform):
    state = drive_to(Step.IMAGE, platform)
    state = ok(state, SetResults("s3://bucket/results/dino"))
    assert {"ACCESS_KEY", "SECRET_KEY"} <= {n.name for n in credential_needs(state, CATALOG)}


def test_optional_bucket_credential_applies_only_with_s3():
    state = drive_to(Step.IMAGE, "lepton")
    assert "S3_BUCKET_NAME" not in {c.name for c, _ in optional_credentials(state, CATALOG)}
    state = ok(state, SetResults("s3://bucket/results"))
    assert "S3_BUCKET_NAME" in {c.name for c, _ in optional_credentials(state, CATALOG)}


def test_optional_credentials_are_never_required():
    state = drive_to(Step.IMAGE, "slurm")
    required = {n.name for n in credential_needs(state, CATALOG)}
    settings = {c.name for c, _ in extra_settings(state, CATALOG)}
    assert not required & settings
    assert {"SLURM_ACCOUNT", "SLURM_BASE_RESULTS_DIR"} <= settings
    assert next_step(state, CATALOG) is Step.IMAGE  # no optional one blocks the intake


@pytest.mark.parametrize("platform", PLATFORMS)
def test_always_optional_settings_are_never_offered_unasked_but_may_be_given(platform):
    state = drive_to(Step.IMAGE, platform)
    always = {o.name for o in CATALOG.platforms[platform].optional_credentials if o.only_when.value == "always"}
    offered = {c.name for c, _ in optional_credentials(state, CATALOG)}
    assert not offered & always, offered & always
    assert {c.name for c, _ in extra_settings(state, CATALOG)} == always - {
        n.name for n in credential_needs(state, CATALOG)
    }
    assert always <= wanted_credentials(state, CATALOG)  # given ones still reach preflight and the launch


def test_conditional_optional_credentials_appear_only_when_their_condition_holds():
    state = drive_to(Step.IMAGE, "slurm")
    assert optional_credentials(state, CATALOG) == []
    assert "SLURM_CPUS_PER_TASK" in {c.name for c, _ in extra_settings(state, CATALOG)}
    state = ok(state, SetResults("s3://bucket/results"))
    assert {c.name for c, _ in optional_credentials(state, CATALOG)} == {"S3_ENDPOINT_URL", "CLOUD_REGION"}


def test_credential_values_never_enter_the_state():
    secret = "hf_" + "Zq8" * 12
    state = drive_to(Step.CREDENTIALS, "lepton", "cosmos-rl")
    state = ok(
        state, CredentialsStored({"HF_TOKEN": "fp-1234", "LEPTON_AUTH_TOKEN": "fp-5678", "LEPTON_WORKSPACE_ID": "fp-9"})
    )
    dumped = state.model_dump_json()
    assert secret not in dumped
    assert json.loads(dumped)["credentials"] == {
        "HF_TOKEN": "fp-1234",
        "LEPTON_AUTH_TOKEN": "fp-5678",
        "LEPTON_WORKSPACE_ID": "fp-9",
    }
    assert next_step(state, CATALOG) is Step.IMAGE


def test_unknown_credential_name_is_refused():
    state = drive_to(Step.CREDENTIALS, "lepton")
    assert "not a credential" in refused(state, CredentialsStored({"NOT_A_THING": "fp"}))


@pytest.mark.parametrize(
    "name,value,good",
    [
        ("SLURM_USER", "jdoe", True),
        ("SLURM_USER", "j doe", False),
        ("SLURM_HOSTNAME", "login-01.example.com,login-02.example.com:2222", True),
        ("SLURM_HOSTNAME", "login 01", False),
        ("SSH_KEY_PATH", "/home/bot/.ssh/id_ed25519", True),
        ("SSH_KEY_PATH", "keys/mine", False),
        ("DOCKER_PULL_POLICY", "never", True),
        ("DOCKER_PULL_POLICY", "sometimes", False),
        ("HF_TOKEN", "", False),
        ("HF_TOKEN", "two\nlines", False),
    ],
)
def test_credential_value_checks_never_echo_the_value(name, value, good):
    problem = check_credential_value(CATALOG, name, value)
    assert (problem is None) is good
    if problem and value.strip():
        assert value not in problem
        assert name in problem


# --------------------------------------------------------------------------- image


@pytest.mark.parametrize("model,action", MODELS)
def test_default_image_is_resolved_and_shown(model, action):
    state = new(model, action)
    m = find_model(CATALOG, model)
    expected = resolve_image(CATALOG, m, find_action(m, action)).image
    assert state.image.default == expected
    assert state.image.chosen is None
    item = next(i for i in missing_items(state, CATALOG) if i.step is Step.IMAGE)
    assert item.label == f"Container image for {model}/{action}"
    assert expected in item.example


def test_image_step_stays_missing_until_confirmed():
    state = drive_to(Step.IMAGE, "local-docker")
    state = fill_datasets(state)
    state = ok(state, AcceptComputeDefaults())
    # Everything else is known, but the default image was never confirmed.
    assert next_step(state, CATALOG) is Step.IMAGE
    assert state.status == "collecting"
    assert [i.step for i in missing_items(state, CATALOG)] == [Step.IMAGE]
    state = ok(state, ConfirmImage())
    assert state.image.chosen == state.image.default and not state.image.overridden
    assert state.status == "complete"


GOOD_IMAGES = [
    IMAGE,
    "ubuntu",
    "ubuntu:22.04",
    "localhost:5000/tao/custom:1",
    "registry.example.com:5000/team/tao-toolkit:6.0.0-pyt",
    "nvcr.io/nvidia/tao/tao-toolkit@sha256:" + "ab12" * 16,
    "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt@sha256:" + "0" * 64,
    "my_registry.example.com/a__b/c-d.e:TAG_1.2-x",
]
BAD_IMAGES = [
    "",
    "   ",
    "nvcr.io/NVIDIA/tao:1",
    "nvcr.io/nvidia/Tao-Toolkit:1",
    "nvcr.io/nvidia/tao toolkit:1",
    "nvcr.io/nvidia/tao:1;rm -rf /",
    "nvcr.io/nvidia/tao:1 && echo",
    "nvcr.io/nvidia/tao:",
    "nvcr.io/nvidia/tao@sha256:xyz",
    "https://nvcr.io/nvidia/tao:1",
    "nvcr.io/nvidia/tao:" + "a" * 200,
]


@pytest.mark.parametrize("ref", GOOD_IMAGES)
def test_image_override_accepts_well_formed_references(ref):
    assert check_image_ref(ref) is None
    state = ok(drive_to(Step.IMAGE, "slurm"), OverrideImage(ref))
    assert state.image.chosen == ref
    assert state.image.overridden is (ref != state.image.default)
    assert next_step(state, CATALOG) is Step.DATASETS


@pytest.mark.parametrize("ref", BAD_IMAGES)
def test_image_override_refuses_malformed_references(ref):
    assert check_image_ref(ref) is not None
    state = drive_to(Step.IMAGE, "slurm")
    error = refused(state, OverrideImage(ref))
    assert "image" in error.lower() and "nvcr.io/" in error  # says what is expected, with an example
    assert next_step(state, CATALOG) is Step.IMAGE


def test_empty_image_override_says_it_is_empty():
    state = drive_to(Step.IMAGE, "slurm")
    reply = parse_reply("image=", state, CATALOG)
    assert reply.events == [OverrideImage("")]
    assert "empty" in refused(state, reply.events[0])


def test_image_override_via_reply_and_back_to_default():
    state = drive_to(Step.IMAGE, "slurm")
    reply = parse_reply("image=localhost:5000/tao/custom:1", state, CATALOG)
    state = apply_all(state, reply.events, CATALOG).state
    assert state.image.chosen == "localhost:5000/tao/custom:1" and state.image.overridden
    state = ok(state, ConfirmImage())
    assert state.image.chosen == state.image.default and not state.image.overridden


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize(
    "platform,root",
    [
        ("slurm", "/lustre/fsw/team/data/cosmos"),
        ("local-docker", "/data/tao/cosmos-rl"),
        ("lepton", "s3://bucket/cosmos"),
    ],
)
def test_cosmos_rl_root_mode_expands_by_convention(platform, root):
    state = drive_to(Step.DATASETS, platform, "cosmos-rl")
    state = ok(state, SetRoot("train", root + "/train/"), SetRoot("val", root + "/val"))
    assert dataset_inputs(state, CATALOG) == {
        "custom.train_dataset.annotation_path": f"{root}/train/annotations.json",
        "custom.train_dataset.media_path": f"{root}/train",
        "custom.val_dataset.annotation_path": f"{root}/val/annotations.json",
        "custom.val_dataset.media_path": f"{root}/val",
    }
    assert state.roots == {"train": root + "/train/", "eval": root + "/val"}


def test_root_mode_from_a_reply_and_the_note_shows_the_expansion():
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    reply = parse_reply("train=/lustre/d/train eval_root=/lustre/d/val", state, CATALOG)
    out = apply_all(state, reply.events, CATALOG)
    assert not out.errors
    assert any("custom.train_dataset.annotation_path=/lustre/d/train/annotations.json" in n for n in out.notes)
    assert dataset_inputs(out.state, CATALOG)["custom.val_dataset.media_path"] == "/lustre/d/val"
    assert next_step(out.state, CATALOG) is Step.COMPUTE


@pytest.mark.parametrize(
    "path",
    [
        "/lustre/fsw/team/data/ann.json",
        "/lustre/fsw/team/data/media/",
        "lustre:///lustre/fsw/team/x",
        "/lustre/with space/a.json",
    ],
)
def test_spec_mode_keeps_the_path_exactly_as_given(path):
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    state = ok(state, SetSpecInput("custom.train_dataset.annotation_path", path))
    assert state.spec_inputs == {"custom.train_dataset.annotation_path": path}
    assert dataset_inputs(state, CATALOG)["custom.train_dataset.annotation_path"] == path  # never suffixed


def test_spec_mode_wins_over_a_root_for_the_same_key():
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    state = ok(
        state,
        SetRoot("train", "/lustre/d/train"),
        SetSpecInput("custom.train_dataset.annotation_path", "/lustre/other/labels.json"),
    )
    mapping = dataset_inputs(state, CATALOG)
    assert mapping["custom.train_dataset.annotation_path"] == "/lustre/other/labels.json"
    assert mapping["custom.train_dataset.media_path"] == "/lustre/d/train"


def test_spec_mode_from_a_reply_with_a_bracketed_key():
    state = drive_to(Step.DATASETS, "local-docker")
    reply = parse_reply('dataset.train_data_sources[0].json_file="/data/tao/dino/my labels.json"', state, CATALOG)
    assert reply.events == [SetSpecInput("dataset.train_data_sources[0].json_file", "/data/tao/dino/my labels.json")]
    state = apply_all(state, reply.events, CATALOG).state
    assert dataset_inputs(state, CATALOG)["dataset.train_data_sources[0].json_file"] == "/data/tao/dino/my labels.json"


def test_unknown_spec_key_lists_the_actions_keys():
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    error = refused(state, SetSpecInput("custom.train_dataset.annotations", "/lustre/a.json"))
    action = find_action(find_model(CATALOG, "cosmos-rl"), "train")
    for spec in action.inputs:
        assert spec.key in error
    assert "custom.train_dataset.annotations" in error


def test_root_for_a_model_without_conventions_points_to_spec_keys():
    state = drive_to(Step.DATASETS, "slurm", "classification-pyt")
    error = refused(state, SetRoot("train", "/lustre/data"))
    action = find_action(find_model(CATALOG, "classification-pyt"), "train")
    assert all(i.key in error for i in action.inputs)


def test_root_role_the_action_lacks_is_refused():
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl", "evaluate")
    assert "train" in refused(state, SetRoot("train", "/lustre/data"))


@pytest.mark.parametrize(
    "platform,expected",
    [
        ("slurm", ["/lustre/", "lustre:///"]),
        ("lepton", ["s3://"]),
        ("brev", ["s3://"]),
        ("kubernetes", ["s3://"]),
        ("local-docker", ["/data/tao/dino/", "file:///"]),
    ],
)
def test_dataset_examples_match_the_platform(platform, expected):
    state = drive_to(Step.DATASETS, platform)
    text = dataset_help(state, CATALOG)
    for fragment in expected:
        assert fragment in text
    assert "Root mode" in text and "Spec mode" in text
    spec_line = next(line for line in text.splitlines() if line.startswith("Spec mode"))
    if platform == "slurm":
        assert "/lustre/" in spec_line and "s3://" not in spec_line
    elif platform == "local-docker":
        assert "/data/tao/dino/" in spec_line and "s3://" not in spec_line
    else:
        assert "s3://" in spec_line and "/lustre" not in spec_line


def test_slurm_refuses_a_relative_path():
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    for path in ["data/train", "./train", "~/train", "lustre://lustre/train"]:
        error = refused(state, SetRoot("train", path))
        assert "absolute" in error and path in error


@pytest.mark.parametrize("platform", CLOUD)
@pytest.mark.parametrize("path", ["file:///data/train", "data/train", "./train"])
def test_remote_platform_refuses_a_local_path_and_says_the_form(platform, path):
    state = drive_to(Step.DATASETS, platform, "cosmos-rl")
    error = refused(state, SetRoot("train", path))
    assert "s3://" in error and path in error
    error = refused(state, SetSpecInput("custom.train_dataset.annotation_path", path))
    assert "s3://" in error


def test_file_uri_is_refused_on_slurm_with_the_expected_form():
    state = drive_to(Step.DATASETS, "slurm")
    error = refused(state, SetResults("file:///data/results"))
    assert "/lustre/" in error


@pytest.mark.parametrize(
    "platform,value,kind",
    [
        ("slurm", "/lustre/a", "absolute"),
        ("slurm", "lustre:///lustre/a", "absolute"),
        ("slurm", "s3://b/a", "s3"),
        ("local-docker", "file:///data/a", "absolute"),
        ("local-docker", "/data/a", "absolute"),
        ("lepton", "/mnt/shared/a", "mounted"),
        ("kubernetes", "s3://b/a", "s3"),
    ],
)
def test_path_kind_classifies_paths(platform, value, kind):
    assert path_kind(CATALOG.platforms[platform], value) == (kind, None)


def test_path_kind_refuses_control_characters_and_bucketless_s3():
    p = CATALOG.platforms["lepton"]
    assert path_kind(p, "s3:///a")[1]
    assert path_kind(p, "/a\nb")[1]


# --------------------------------------------------------------------------- compute


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("model,fields", [("cosmos-rl", ["num_gpus", "num_nodes"]), ("dino", ["num_gpus"])])
def test_compute_defaults_per_platform(platform, model, fields):
    state = drive_to(Step.COMPUTE, platform, model)
    res = CATALOG.platforms[platform].resources
    expected = {"num_gpus": res.num_gpus, "num_nodes": res.num_nodes}
    assert compute_defaults(state, CATALOG) == {f: expected[f] for f in fields}
    labels = [i.label for i in missing_items(state, CATALOG)]
    assert labels == [f"Compute: {f}" for f in fields]
    state = ok(state, AcceptComputeDefaults())
    assert state.compute == {f: expected[f] for f in fields}
    assert state.status == "complete"


def test_slurm_default_is_four_gpus():
    assert compute_defaults(drive_to(Step.COMPUTE, "slurm"), CATALOG) == {"num_gpus": 4}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_gpu_count_bounds(platform):
    state = drive_to(Step.COMPUTE, platform)
    cap = CATALOG.platforms[platform].resources.max_num_gpus_per_node
    for bad in (0, -1, cap + 1, 1000):
        error = refused(state, SetCompute("num_gpus", bad))
        assert f"1–{cap}" in error and str(bad) in error
    assert ok(state, SetCompute("num_gpus", cap)).compute["num_gpus"] == cap
    assert ok(state, SetCompute("num_gpus", 1)).compute["num_gpus"] == 1


def test_node_count_for_a_multi_node_model():
    state = drive_to(Step.COMPUTE, "slurm", "cosmos-rl")
    state = ok(state, SetCompute("num_nodes", 4), SetCompute("num_gpus", 8))
    assert state.compute == {"num_nodes": 4, "num_gpus": 8}
    assert state.status == "complete"
    assert "1–32" in refused(state, SetCompute("num_nodes", 33))


def test_a_partial_compute_answer_keeps_the_platform_default_for_the_rest_and_says_so():
    state = drive_to(Step.COMPUTE, "slurm", "cosmos-rl")
    reply = parse_reply("num_gpus=8", state, CATALOG)
    out = apply_all(state, reply.events, CATALOG)
    assert not out.errors
    assert out.state.compute == {"num_gpus": 8, "num_nodes": 1}
    assert out.state.status == "complete"
    assert "num_gpus = 8." in out.notes
    assert "num_nodes = 1 (platform default; reply `num_nodes=<n>` to change it)." in out.notes
    # Both in one reply: nothing filled, nothing said twice.
    both = apply_all(state, parse_reply("num_gpus=8 num_nodes=2", state, CATALOG).events, CATALOG)
    assert both.state.compute == {"num_gpus": 8, "num_nodes": 2}
    assert not [n for n in both.notes if "platform default" in n]
    # A refused value fills nothing.
    bad = apply_all(state, [SetCompute("num_gpus", 99)], CATALOG)
    assert bad.errors and bad.state.compute == {}


def test_a_compute_answer_before_the_platform_fills_nothing_and_the_defaults_left_are_only_the_unset_ones():
    from taobot.intake import unset_compute_defaults

    state = apply_all(new("cosmos-rl"), [SetCompute("num_gpus", 8)], CATALOG).state
    assert state.compute == {"num_gpus": 8}  # no platform yet: its defaults are unknown
    state = drive_to(Step.COMPUTE, "slurm", "cosmos-rl")
    state = ok(state, SetCompute("num_gpus", 8))  # one event alone, as a platform change can leave it
    assert unset_compute_defaults(state, CATALOG) == {"num_nodes": 1}
    out = apply_all(state, [AcceptComputeDefaults()], CATALOG)
    assert out.state.compute == {"num_gpus": 8, "num_nodes": 1}
    assert out.notes == ["num_nodes = 1 (platform default)."]


def test_single_node_model_refuses_more_nodes():
    state = drive_to(Step.COMPUTE, "slurm", "dino")
    assert "one node" in refused(state, SetCompute("num_nodes", 2))


def test_gpu_reply_that_is_not_a_number_is_refused():
    reply = parse_reply("num_gpus=four", drive_to(Step.COMPUTE, "slurm"), CATALOG)
    assert not reply.events and "num_gpus" in reply.errors[0] and "whole number" in reply.errors[0]


def test_models_own_gpu_key_is_understood():
    state = drive_to(Step.COMPUTE, "slurm", "cosmos-rl")
    reply = parse_reply("policy.parallelism.dp_shard_size=2 policy.parallelism.dp_replicate_size=3", state, CATALOG)
    assert reply.events == [SetCompute("num_gpus", 2), SetCompute("num_nodes", 3)]


# --------------------------------------------------------------------------- missing-items summary


@pytest.mark.parametrize("platform", PLATFORMS)
def test_missing_items_lists_everything_with_examples(platform):
    state = ok(new("cosmos-rl"), ChoosePlatform(platform))
    items = missing_items(state, CATALOG)
    steps = [i.step for i in items]
    assert steps == sorted(steps, key=STEP_ORDER.index)  # in the order they are asked
    assert set(steps) == {Step.MONITORING, Step.CREDENTIALS, Step.IMAGE, Step.DATASETS, Step.COMPUTE}
    cred_labels = {i.label for i in items if i.step is Step.CREDENTIALS}
    assert cred_labels == {f"Credential {n.name}" for n in credential_needs(state, CATALOG)}
    for item in items:
        assert item.label and item.example.strip()
    monitoring = next(i for i in items if i.step is Step.MONITORING)
    assert "interval=5" in monitoring.example
    datasets = next(i for i in items if i.step is Step.DATASETS)
    assert "Root mode" in datasets.example and "Spec mode" in datasets.example
    assert "custom.train_dataset.annotation_path" in datasets.example
    compute = [i for i in items if i.step is Step.COMPUTE]
    assert {i.label for i in compute} == {"Compute: num_gpus", "Compute: num_nodes"}
    assert all("=" in i.example for i in compute)


def test_missing_items_shrink_as_answers_arrive():
    state = new("cosmos-rl")
    counts = [len(missing_items(state, CATALOG))]
    for event in [
        ChoosePlatform("local-docker"),
        SetMonitoring(False),
        CredentialsStored({"HF_TOKEN": "fp"}),
        ConfirmImage(),
    ]:
        state = ok(state, event)
        counts.append(len(missing_items(state, CATALOG)))
    state = fill_datasets(state)
    counts.append(len(missing_items(state, CATALOG)))
    state = ok(state, AcceptComputeDefaults())
    counts.append(len(missing_items(state, CATALOG)))
    assert counts[-1] == 0
    assert all(b <= a for a, b in zip(counts, counts[1:]))


# --------------------------------------------------------------------------- changes before launch


def test_answers_can_be_changed_after_completion():
    state = drive_to(Step.COMPLETE, "slurm", "cosmos-rl")
    assert state.status == "complete"
    state = ok(state, SetCompute("num_gpus", 2), SetMonitoring(interval=30), OverrideImage("localhost:5000/tao/x:1"))
    state = ok(state, SetSpecInput("custom.val_dataset.media_path", "/lustre/new/val"))
    assert state.status == "complete"
    assert state.compute["num_gpus"] == 2 and state.interval_minutes == 30
    assert dataset_inputs(state, CATALOG)["custom.val_dataset.media_path"] == "/lustre/new/val"


def test_a_change_that_adds_a_need_reopens_the_intake():
    state = drive_to(Step.COMPLETE, "slurm", "dino")
    state = ok(state, SetResults("s3://bucket/results"))
    assert state.status == "collecting"
    assert next_step(state, CATALOG) is Step.CREDENTIALS
    assert {i.label for i in missing_items(state, CATALOG)} == {"Credential ACCESS_KEY", "Credential SECRET_KEY"}


def test_changing_platform_drops_paths_that_do_not_fit_with_a_note():
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    state = ok(
        state,
        SetRoot("train", "lustre:///lustre/d/train"),
        SetRoot("eval", "/lustre/d/val"),
        SetResults("lustre:///lustre/results"),
        SetCompute("num_gpus", 8),
        SetCompute("num_nodes", 4),
    )
    out = apply(state, ChoosePlatform("brev"), CATALOG)
    assert not out.errors
    new_state = out.state
    assert new_state.platform == "brev"
    assert "train" not in new_state.roots and new_state.results_uri is None
    assert new_state.roots["eval"] == "/lustre/d/val"  # an absolute path may be mounted on Brev
    notes = " ".join(out.notes)
    assert "Dropped the train root" in notes and "lustre:///lustre/results" in notes
    assert "num_nodes" not in new_state.compute and "num_nodes=4" in notes  # Brev is single node
    assert new_state.compute["num_gpus"] == 8
    # the summary follows: the train inputs are missing again and Brev's credential is asked
    assert next_step(new_state, CATALOG) is Step.CREDENTIALS
    datasets = next(i for i in missing_items(new_state, CATALOG) if i.step is Step.DATASETS)
    assert "custom.train_dataset.annotation_path" in datasets.example
    assert "s3://" in datasets.example


def test_changing_platform_from_docker_drops_host_paths():
    state = drive_to(Step.DATASETS, "local-docker", "dino")
    state = ok(state, SetSpecInput("dataset.train_data_sources[0].json_file", "file:///data/tao/dino/a.json"))
    out = apply(state, ChoosePlatform("kubernetes"), CATALOG)
    assert out.state.spec_inputs == {}
    assert any("dataset.train_data_sources[0].json_file" in n for n in out.notes)


def test_choosing_the_same_platform_again_changes_nothing_else():
    state = drive_to(Step.COMPUTE, "slurm")
    out = apply(state, ChoosePlatform("cluster"), CATALOG)  # an alias
    assert "already" in out.notes[0]
    before, after = state.model_dump(), out.state.model_dump()
    before.pop("updated_at"), after.pop("updated_at")
    assert before == after


# --------------------------------------------------------------------------- bad input


def test_unknown_model_lists_the_models():
    with pytest.raises(UnknownNameError) as info:
        new("yolo-v99")
    assert "dino" in info.value.message and "cosmos-rl" in info.value.message


def test_unknown_action_lists_the_models_actions():
    with pytest.raises(UnknownNameError) as info:
        new("cosmos-rl", "export")
    assert "train" in info.value.message and "evaluate" in info.value.message


def test_unknown_platform_lists_the_platforms():
    state = new()
    error = refused(state, ChoosePlatform("aws-batch"))
    for name in PLATFORMS:
        assert name in error
    reply = parse_reply("platform=aws-batch", state, CATALOG)
    assert "aws-batch" in refused(state, reply.events[0])


@pytest.mark.parametrize("text", ["platform slurm", "slurm", "train /data/x", "platform=slurm then"])
def test_malformed_reply_says_what_is_expected(text):
    reply = parse_reply(text, new(), CATALOG)
    assert not reply.events and reply.errors
    assert "key=value" in reply.errors[0]


def test_key_without_value_and_value_without_key():
    state = new()
    assert "without a key" in parse_reply("=slurm", state, CATALOG).errors[0]
    assert "needs a path" in parse_reply("train=", state, CATALOG).errors[0]
    assert "Unknown key" in parse_reply("colour=blue", state, CATALOG).errors[0]


def test_unbalanced_quotes_are_reported():
    reply = parse_reply('train="/data/x', new(), CATALOG)
    assert not reply.events and "quotes" in reply.errors[0]


def test_one_bad_pair_does_not_stop_the_good_ones():
    reply = parse_reply("platform=slurm num_gpus=lots", new(), CATALOG)
    assert reply.events == [ChoosePlatform("slurm")]
    assert len(reply.errors) == 1 and "num_gpus" in reply.errors[0]


def test_reply_longer_than_the_limit_is_refused():
    text = "train=/data/" + "x" * MAX_REPLY_CHARS
    reply = parse_reply(text, new(), CATALOG)
    assert not reply.events and str(MAX_REPLY_CHARS) in reply.errors[0]
    assert parse_reply("train=/data/" + "x" * (MAX_REPLY_CHARS - 20), new(), CATALOG).events


SECRETS = [
    ("xox" + "b-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "Slack token"),
    ("xapp-1-A0123456789-1234567890123-abcdef0123456789", "Slack app token"),
    (
        "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
        "private key",
    ),
    ("-----BEGIN RSA " + "PRIVATE KEY-----", "private key"),
    ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "Hugging Face token"),
    ("HF_TOKEN=qwertyuiopasdfgh", "HF_TOKEN"),
    ("hf_token = zxcvbnmasdfghjkl", "HF_TOKEN"),
    ("LEPTON_AUTH_TOKEN=abc123def456ghi", "LEPTON_AUTH_TOKEN"),
    ("AKIA" + "IOSFODNN7EXAMPLE", "AWS access key id"),
    ("my key is 9fK2mQ7xLp4Rt8Wv1Zb6Nc3Hd5Gj0Ys2Ae", "long random-looking token"),
    ("nvapi-AbCdEfGhIjKlMnOpQrStUvWxYz012345", "NGC"),
    ("platform=slurm ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "GitHub token"),
]


@pytest.mark.parametrize("text,label", SECRETS)
def test_pasted_secret_is_detected_and_not_echoed(text, label):
    state = drive_to(Step.CREDENTIALS, "lepton", "cosmos-rl")
    reply = parse_reply(text, state, CATALOG)
    assert reply.events == [] and reply.errors == [] and reply.command is None
    assert reply.secret_warning and label in reply.secret_warning
    secret = text.split("=")[-1].split()[-1]
    assert secret not in reply.secret_warning
    assert "Enter credentials" in reply.secret_warning


def test_secret_in_a_slack_encoded_reply_is_still_detected():
    text = slack_plain_text("train=/data &amp; <http://x|hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789>")
    reply = parse_reply(text, new(), CATALOG)
    assert reply.secret_warning and not reply.events


@pytest.mark.parametrize(
    "text",
    [
        "train=/lustre/fsw/team/users/jdoe/data/cosmos-rl/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        f"image={IMAGE}",
        "image=nvcr.io/nvidia/tao/tao-toolkit@sha256:" + "ab12" * 16,
        "custom.train_dataset.annotation_path=s3://bucket/cosmos/annotations.json",
    ],
)
def test_ordinary_values_are_not_mistaken_for_secrets(text):
    reply = parse_reply(text, new("cosmos-rl"), CATALOG)
    assert reply.secret_warning is None
    assert reply.events


@pytest.mark.parametrize(
    "name", ["SLURM_USER", "slurm_hostname", "ACCESS_KEY", "HF_TOKEN", "SSH_KEY_PATH", "KUBECONFIG"]
)
def test_credential_as_key_value_is_refused_with_a_pointer_to_the_form(name):
    reply = parse_reply(f"{name}=x", new(), CATALOG)
    assert not reply.events
    assert reply.errors and name.upper() in reply.errors[0]
    assert "Enter credentials" in reply.errors[0] and "private" in reply.errors[0]


def test_slack_encoding_is_undone_before_parsing():
    assert slack_plain_text("<http://nvcr.io/nvidia/tao|nvcr.io/nvidia/tao>") == "nvcr.io/nvidia/tao"
    assert slack_plain_text("<s3://bucket/a>") == "s3://bucket/a"
    assert slack_plain_text("a &amp; b &lt;c&gt;") == "a & b <c>"
    assert slack_plain_text("“x” ‘y’") == "\"x\" 'y'"
    assert slack_plain_text("<@U123> hi") == "<@U123> hi"
    state = drive_to(Step.IMAGE, "slurm")
    encoded = "image=<http://nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt|nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt>"
    reply = parse_reply(slack_plain_text(encoded), state, CATALOG)
    assert reply.events == [OverrideImage(IMAGE)]
    reply = parse_reply(slack_plain_text("train=/lustre/a&amp;b"), state, CATALOG)
    assert reply.events == [SetRoot("train", "/lustre/a&b")]


@pytest.mark.parametrize(
    "text,path",
    [
        ('train="/lustre/my data/train"', "/lustre/my data/train"),
        ("train='/lustre/my data/train'", "/lustre/my data/train"),
        ("train=“/lustre/my data/train”", "/lustre/my data/train"),
        ("train=‘/lustre/my data/train’", "/lustre/my data/train"),
    ],
)
def test_quoted_paths_with_spaces(text, path):
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    reply = parse_reply(text, state, CATALOG)
    assert reply.events == [SetRoot("train", path)] and not reply.errors
    state = apply_all(state, reply.events, CATALOG).state
    assert dataset_inputs(state, CATALOG)["custom.train_dataset.media_path"] == path


@pytest.mark.parametrize(
    "word,command",
    [
        ("cancel", CANCEL_INTAKE),
        ("Help", HELP),
        ("use default image", IMAGE_USE_DEFAULT),
        ("use defaults.", COMPUTE_DEFAULTS),
        ("launch!", LAUNCH),
    ],
)
def test_one_word_commands(word, command):
    reply = parse_reply(word, new(), CATALOG)
    assert reply.command == command and not reply.events and not reply.errors


def test_refused_events_leave_the_state_equal():
    state = drive_to(Step.DATASETS, "slurm", "cosmos-rl")
    bad = [
        ChoosePlatform("nowhere"),
        SetMonitoring(True, 0),
        SetMonitoring(None, 61),
        CredentialsStored({"BOGUS": "fp"}),
        OverrideImage(""),
        OverrideImage("Bad Image"),
        SetRoot("test", "/lustre/x"),
        SetRoot("train", "relative/x"),
        SetSpecInput("not.a.key", "/lustre/x"),
        SetSpecInput("custom.train_dataset.media_path", "file:///x"),
        SetResults("results"),
        SetCompute("num_gpus", 0),
        SetCompute("num_gpus", 9),
        SetCompute("num_nodes", 0),
        SetCompute("memory", 4),
    ]
    for event in bad:
        refused(state, event)
    out = apply_all(state, bad, CATALOG)
    assert len(out.errors) == len(bad) and not out.notes
    assert out.state.model_dump() == state.model_dump()


def test_cancel_ends_the_intake_and_later_events_are_refused():
    state = ok(drive_to(Step.IMAGE, "slurm"), Cancel())
    assert state.status == "cancelled"
    for event in [ConfirmImage(), ChoosePlatform("lepton"), SetCompute("num_gpus", 2), Cancel()]:
        error = refused(state, event)
        assert "cancelled" in error


def test_cancel_of_a_complete_intake():
    state = ok(drive_to(Step.COMPLETE, "local-docker"), Cancel())
    assert state.status == "cancelled"
    assert refused(state, SetCompute("num_gpus", 2))


def test_launched_intake_refuses_changes():
    state = drive_to(Step.COMPLETE, "local-docker").model_copy(update={"status": "launched"})
    assert "launched" in refused(state, SetCompute("num_gpus", 2))


def test_only_the_owner_or_an_admin_may_act():
    state = new()
    assert may_act(state, "U_OWNER", frozenset())
    assert not may_act(state, "U_OTHER", frozenset())
    assert may_act(state, "U_ADMIN", frozenset({"U_ADMIN"}))


# --------------------------------------------------------------------------- full walks


def _walk(platform: str, model: str, action: str) -> IntakeState:
    state = new(model, action)
    model_obj = find_model(CATALOG, model)
    steps = []

    def answer(text: str) -> None:
        nonlocal state
        reply = parse_reply(text, state, CATALOG)
        assert not reply.errors and reply.secret_warning is None, (text, reply.errors)
        out = apply_all(state, reply.events, CATALOG)
        assert not out.errors, (text, out.errors)
        state = out.state

    steps.append(next_step(state, CATALOG))
    answer(f"platform={platform}")
    steps.append(next_step(state, CATALOG))
    answer("monitor=yes interval=5")
    steps.append(next_step(state, CATALOG))
    needs = [n.name for n in credential_needs(state, CATALOG)]
    assert ("HF_TOKEN" in needs) is bool(model_obj.credentials)
    if platform == "slurm":
        assert needs[0] == "TAOBOT_SSH_KEY"
    state = store_missing_credentials(state)
    steps.append(next_step(state, CATALOG))
    assert parse_reply("use default image", state, CATALOG).command == IMAGE_USE_DEFAULT
    state = ok(state, ConfirmImage())
    steps.append(next_step(state, CATALOG))
    action_obj = find_action(model_obj, action)
    pairs = " ".join(f'{i.key}="{example_path(platform, model, i.key)}"' for i in action_obj.required_inputs)
    answer(pairs)
    if platform in CLOUD:  # s3:// datasets: the S3 key pair is asked next
        assert next_step(state, CATALOG) is Step.CREDENTIALS
        assert [n.name for n in missing_credentials(state, CATALOG)] == ["ACCESS_KEY", "SECRET_KEY"]
        state = store_missing_credentials(state)
    steps.append(next_step(state, CATALOG))
    assert parse_reply("use defaults", state, CATALOG).command == "compute_defaults"
    state = ok(state, AcceptComputeDefaults())
    steps.append(next_step(state, CATALOG))
    expected = [*STEP_ORDER, Step.COMPLETE]
    if not needs:  # kubernetes / local-docker with a model that needs nothing: the step is skipped
        expected.remove(Step.CREDENTIALS)
    assert _squeeze(steps) == expected
    return state


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(
    "model,action",
    [("cosmos-rl", "train"), ("cosmos-predict-2-5", "generate"), ("dino", "train"), ("mask2former", "train")],
)
def test_full_intake_walk_reaches_complete(platform, model, action):
    state = _walk(platform, model, action)
    assert state.status == "complete"
    assert missing_items(state, CATALOG) == []
    assert state.monitor is True and state.interval_minutes == 5
    assert state.image.chosen == state.image.default
    # the state survives a JSON round trip (it is stored as JSON)
    assert IntakeState.model_validate_json(state.model_dump_json()) == state


def test_operator_default_interval_is_the_one_default_everywhere():
    from taobot.catalog import with_operator_defaults
    from taobot.intake import status_interval

    catalog = with_operator_defaults(CATALOG, 7)
    state = drive_to(Step.MONITORING, "slurm")
    assert status_interval(state, catalog) == 7  # monitoring off or unanswered: what a later `attach` uses
    on = apply_all(state, [SetMonitoring(enabled=True)], catalog).state
    assert on.interval_minutes == 7 and status_interval(on, catalog) == 7
    chosen = apply_all(state, [SetMonitoring(True, 15)], catalog).state
    assert status_interval(chosen, catalog) == 15
    assert with_operator_defaults(CATALOG, None) is CATALOG


def test_notify_dm_is_an_answer_and_a_wrong_value_says_what_is_expected():
    from taobot.intake import SetNotify

    state = drive_to(Step.COMPLETE, "slurm")
    reply = parse_reply("notify=dm", state, CATALOG)
    assert reply.events == [SetNotify(True)] and not reply.errors
    after = ok(state, *reply.events)
    assert after.notify_dm is True and after.status == "complete"
    assert ok(after, SetNotify(False)).notify_dm is False
    wrong = parse_reply("notify=pager", state, CATALOG)
    assert wrong.events == [] and "`notify` takes `dm`" in wrong.errors[0]
