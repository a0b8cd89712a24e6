"""The embedded catalog: platforms, credentials, the 38 TAO networks and image resolution."""

from __future__ import annotations

import pytest

from taobot.catalog import (
    ROOT_ROLES,
    Action,
    Catalog,
    Condition,
    InputSpec,
    Model,
    NotRunnableError,
    find_action,
    find_model,
    find_platform,
    load_catalog,
    registry_access,
    resolve_image,
)
from taobot.catalog.bank_models import normal_name
from taobot.errors import CatalogError, UnknownNameError
from taobot.intake import start_intake

# Network -> actions it offers (the facts of the published skill bank, 2026-08).
EXPECTED_ACTIONS: dict[str, set[str]] = {
    "action-recognition": {"train", "evaluate", "export", "inference"},
    "bevfusion": {"dataset_convert", "train", "evaluate", "inference"},
    "centerpose": {"train", "evaluate", "export", "inference", "gen_trt_engine"},
    "classification-pyt": {"train", "distill", "quantize", "evaluate", "export", "inference", "gen_trt_engine"},
    "clip": {"train", "evaluate", "export", "inference", "gen_trt_engine"},
    "codetr": {"train", "evaluate", "inference"},
    "cosmos-embed": {"train", "evaluate", "inference", "export"},
    "cosmos-predict-2-5": {"generate"},
    "cosmos-rl": {"train", "evaluate", "inference", "quantize"},
    "deformable-detr": {"train", "quantize", "evaluate", "export", "inference", "gen_trt_engine"},
    "depth-net-fast-stereo": {"train", "evaluate", "export", "inference"},
    "depth-net-mono": {"train", "quantize", "evaluate", "export", "inference", "gen_trt_engine"},
    "depth-net-stereo": {"train", "quantize", "evaluate", "export", "inference"},
    "dino": {"train", "distill", "quantize", "evaluate", "export", "inference"},
    "dinov3": {"train", "convert", "export", "inference"},
    "grounding-dino": {"train", "quantize", "evaluate", "export", "inference"},
    "mae": {"train", "evaluate", "export", "inference"},
    "mal": {"train", "evaluate", "inference"},
    "mask-grounding-dino": {"train", "quantize", "evaluate", "export", "inference"},
    "mask2former": {"train", "quantize", "evaluate", "export", "inference"},
    "ml-recog": {"train", "evaluate", "export", "inference"},
    "nvdinov2": {"train", "export", "inference"},
    "nvpanoptix3d": {"train", "evaluate", "export", "inference"},
    "ocdnet": {"train", "quantize", "prune", "retrain", "evaluate", "export", "inference"},
    "ocrnet": {"dataset_convert", "train", "quantize", "prune", "retrain", "evaluate", "export", "inference"},
    "oneformer": {"train", "quantize", "evaluate", "export", "inference"},
    "optical-inspection": {"train", "evaluate", "export", "inference"},
    "pointpillars": {"dataset_convert", "train", "prune", "retrain", "evaluate", "export", "inference"},
    "pose-classification": {"dataset_convert", "train", "evaluate", "export", "inference"},
    "re-identification": {"train", "evaluate", "export", "inference"},
    "rtdetr": {"train", "distill", "quantize", "evaluate", "export", "inference"},
    "segformer": {"train", "quantize", "evaluate", "export", "inference"},
    "sparse4d": {"dataset_convert", "train", "quantize", "evaluate", "export", "inference"},
    "video-clip": {"train", "evaluate", "export", "inference"},
    "vila": {"train", "evaluate", "inference"},
    "visual-changenet": {
        "train",
        "evaluate",
        "inference",
        "export",
        "quantize",
        "segment_train",
        "segment_evaluate",
        "segment_inference",
    },
}
# Networks that run without a container (the bank's virtualenv platform): listed, never offered.
CONTAINER_FREE = {"nv-tesseract-ad-diffusion", "nv-tesseract-forecasting"}
# The names today's skill bank uses for networks taobot has long called otherwise.
BANK_NAMES = {
    "cosmos-reason": "cosmos-rl",
    "image-classification": "classification-pyt",
    "depth-anything-v2": "depth-net-mono",
    "foundation-stereo": "depth-net-stereo",
    "fast-foundation-stereo": "depth-net-fast-stereo",
    "mask-auto-encoder": "mae",
    "mask-auto-label": "mal",
    "metric-learning-recognition": "ml-recog",
    "reid": "re-identification",
}

COCO_DETECTORS = ("dino", "deformable-detr", "rtdetr")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# ---------------------------------------------------------------------------
# models


def test_all_38_networks_load_with_their_actions(catalog: Catalog) -> None:
    assert len(EXPECTED_ACTIONS) + len(CONTAINER_FREE) == 38
    assert catalog.source == "embedded" and catalog.layout == "embedded"
    assert set(catalog.models) == set(EXPECTED_ACTIONS)
    assert set(catalog.unsupported_models) == CONTAINER_FREE
    for name, actions in EXPECTED_ACTIONS.items():
        model = find_model(catalog, name)
        assert set(model.actions) == actions, name
        assert model.summary, f"{name} has no summary"
        for action in model.actions.values():
            assert action.command.strip(), f"{name} {action.name} has no command"
            assert "\n" not in action.command, f"{name} {action.name}: a command is one line"
            assert action.results_key, f"{name} {action.name} has no results key"
            assert all(i.key.strip() for i in action.inputs), (name, action.name)


def test_a_network_without_a_container_is_named_but_not_offered(catalog: Catalog) -> None:
    for name in CONTAINER_FREE:
        entry = catalog.unsupported_models[name]
        assert entry.source == "embedded" and "without a container image" in entry.reason
        with pytest.raises(NotRunnableError) as err:
            start_intake(catalog, name, "train", "U1", "C1")
        assert "taobot cannot run" in err.value.message and "dino" in err.value.message


def test_every_action_resolves_an_image(catalog: Catalog) -> None:
    for model in catalog.models.values():
        for action in model.actions.values():
            resolved = resolve_image(catalog, model, action)
            assert "/" in resolved.image and ":" in resolved.image, (model.name, action.name)


def test_default_images_are_public_unless_the_catalog_says_what_they_need(catalog: Catalog) -> None:
    noted = set()
    for model in catalog.models.values():
        for action in model.actions.values():
            resolved = resolve_image(catalog, model, action)
            if resolved.image.startswith("nvcr.io/nvidia/"):
                assert resolved.access is None, (model.name, action.name)
                assert not (model.image_access or action.image_access), (model.name, action.name)
            else:
                # Recorded in the data, not only derived from the registry.
                assert model.image_access or action.image_access, (model.name, action.name)
                assert resolved.access == (action.image_access or model.image_access)
                noted.add(model.name)
    assert noted == {"cosmos-rl", "video-clip"}


def test_the_access_note_reaches_the_intake(catalog: Catalog) -> None:
    rl = start_intake(catalog, "cosmos-rl", "train", "U1", "C1")
    assert rl.image.access and "nvstaging" in rl.image.access
    assert start_intake(catalog, "dino", "train", "U1", "C1").image.access is None


def test_registry_access_rule() -> None:
    assert registry_access("nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt") is None
    assert registry_access("registry.example.com/team/x:1") is None
    assert "pre-release" in (registry_access("nvcr.io/nvstaging/tao/x:1-rc") or "")
    assert "`nvidian`" in (registry_access("nvcr.io/nvidian/iva/x") or "")


def test_images_per_network(catalog: Catalog) -> None:
    def image_of(name: str, action: str | None = None) -> str:
        model = catalog.models[name]
        return resolve_image(
            catalog, model, model.actions[action] if action else next(iter(model.actions.values()))
        ).image

    assert image_of("dino") == catalog.versions["tao_toolkit.pyt"] == "nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt"
    assert image_of("clip", "gen_trt_engine") == catalog.versions["tao_toolkit.deploy"]
    assert image_of("sparse4d", "dataset_convert") == catalog.versions["tao_toolkit.data_services"]
    assert image_of("vila") == catalog.versions["tao_toolkit.vila"]
    assert image_of("cosmos-rl") == catalog.versions["tao_toolkit.cosmos_rl"]
    assert image_of("cosmos-embed") == catalog.versions["tao_toolkit.cosmos_embed"]
    assert image_of("cosmos-predict-2-5") == catalog.versions["tao_toolkit.cosmos_predict"]
    # Pinned by the bank outside the versions table.
    assert image_of("bevfusion") == "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"
    assert image_of("codetr") == "nvcr.io/nvidia/tao/tao-toolkit:7.0.1-pyt"


def test_bank_names_are_aliases_and_no_name_means_two_networks(catalog: Catalog) -> None:
    for bank_name, ours in BANK_NAMES.items():
        assert find_model(catalog, bank_name).name == ours, bank_name
    names = [normal_name(n) for m in catalog.models.values() for n in (m.name, *m.aliases)]
    assert len(names) == len(set(names))


def test_config_formats(catalog: Catalog) -> None:
    assert catalog.models["cosmos-predict-2-5"].actions["generate"].config_format == "args"
    assert {a.config_format for a in catalog.models["cosmos-rl"].actions.values()} == {"toml"}
    assert catalog.models["dino"].actions["train"].config_format == "yaml"


def test_model_credentials(catalog: Catalog) -> None:
    needing = {m.name: m.credentials for m in catalog.models.values() if m.credentials}
    assert needing == {
        "cosmos-rl": ("HF_TOKEN",),
        "cosmos-embed": ("HF_TOKEN",),
        "cosmos-predict-2-5": ("HF_TOKEN",),
        "video-clip": ("HF_TOKEN", "NGC_KEY"),
        "codetr": ("NGC_KEY",),
    }


def test_gpu_and_node_keys(catalog: Catalog) -> None:
    rl = catalog.models["cosmos-rl"]
    assert rl.gpus_key == "policy.parallelism.dp_shard_size"
    assert rl.nodes_key == "policy.parallelism.dp_replicate_size"
    assert catalog.models["dino"].gpus_key == "train.num_gpus"
    assert catalog.models["cosmos-predict-2-5"].gpus_key is None


def test_cosmos_rl_train_root_conventions(catalog: Catalog) -> None:
    rl = catalog.models["cosmos-rl"]
    train = find_action(rl, "train")
    assert train.roots == {
        "train": {
            "custom.train_dataset.annotation_path": "{root}/annotations.json",
            "custom.train_dataset.media_path": "{root}",
        },
        "eval": {
            "custom.val_dataset.annotation_path": "{root}/annotations.json",
            "custom.val_dataset.media_path": "{root}",
        },
    }
    assert rl.annotation_fields == ("video_fps",)
    assert train.input("custom.train_dataset.annotation_path").annotation  # type: ignore[union-attr]
    assert find_action(rl, "evaluate").roots["eval"]["dataset.media_dir"] == "{root}"


def test_coco_detector_root_conventions(catalog: Catalog) -> None:
    val = {"dino": "dataset.val_data_sources[0]", "deformable-detr": "dataset.val_data_sources[0]"}
    for name in COCO_DETECTORS:
        train = catalog.models[name].actions["train"]
        assert train.roots["train"] == {
            "dataset.train_data_sources[0].image_dir": "{root}/images",
            "dataset.train_data_sources[0].json_file": "{root}/annotations.json",
        }, name
        prefix = val.get(name, "dataset.val_data_sources")
        assert train.roots["eval"] == {
            f"{prefix}.image_dir": "{root}/images",
            f"{prefix}.json_file": "{root}/annotations.json",
        }, name
        assert catalog.models[name].actions["quantize"].roots["calibration"] == {
            "dataset.quant_calibration_data_sources.image_dir": "{root}/images",
            "dataset.quant_calibration_data_sources.json_file": "{root}/annotations.json",
        }, name
        json_input = train.input("dataset.train_data_sources[0].json_file")
        assert json_input is not None and json_input.annotation and json_input.kind == "file"


def test_root_conventions_are_well_formed(catalog: Catalog) -> None:
    with_roots = set()
    for model in catalog.models.values():
        for action in model.actions.values():
            declared = {i.key for i in action.inputs}
            for role, keys in action.roots.items():
                with_roots.add(model.name)
                assert role in ROOT_ROLES, (model.name, action.name, role)
                assert keys, (model.name, action.name, role)
                for key, template in keys.items():
                    assert key in declared, (model.name, action.name, key)
                    assert template.startswith("{root}"), (model.name, action.name, key)
    assert with_roots == {
        "cosmos-rl",
        "cosmos-embed",
        "clip",
        "video-clip",
        "depth-net-stereo",
        "depth-net-fast-stereo",
        "ocrnet",
        "pointpillars",
        "pose-classification",
        "segformer",
        "sparse4d",
        "visual-changenet",
        *COCO_DETECTORS,
    }
    # Networks whose datasets the bank ships as archives to unpack have none: their keys are asked one by one.
    for name in ("classification-pyt", "mask2former", "grounding-dino", "mal"):
        assert not catalog.models[name].actions["train"].roots, name


def test_inputs_have_unique_keys_and_annotations_are_files(catalog: Catalog) -> None:
    for model in catalog.models.values():
        for action in model.actions.values():
            keys = [i.key for i in action.inputs]
            assert len(keys) == len(set(keys)), (model.name, action.name)
            for spec in action.inputs:
                if spec.annotation:
                    assert spec.kind == "file", (model.name, action.name, spec.key)


def test_required_inputs(catalog: Catalog) -> None:
    clip_train = catalog.models["clip"].actions["train"]
    assert clip_train.inputs and not clip_train.required_inputs
    embed_train = catalog.models["cosmos-embed"].actions["train"]
    assert "model.pretrained_model_path" not in {i.key for i in embed_train.required_inputs}
    assert "dataset.train_dataset.metadata" in {i.key for i in embed_train.required_inputs}


# ---------------------------------------------------------------------------
# platforms and credentials


def test_five_platforms_and_aliases(catalog: Catalog) -> None:
    assert set(catalog.platforms) == {"lepton", "brev", "slurm", "local-docker", "kubernetes"}
    for alias, name in {
        "dgx-cloud": "lepton",
        "cluster": "slurm",
        "docker": "local-docker",
        "k8s": "kubernetes",
        "local-k8s": "kubernetes",
        "LEPTON": "lepton",
        "local_docker": "local-docker",
    }.items():
        assert find_platform(catalog, alias).name == name, alias


def test_slurm_resource_defaults(catalog: Catalog) -> None:
    r = catalog.platforms["slurm"].resources
    assert r.num_nodes == 1
    assert r.num_gpus == 4
    assert r.max_num_gpus_per_node == 8
    assert r.cpus_per_task == 16
    assert r.time_hours == 4
    assert r.timeout_hours == 3.8
    assert r.max_time_hours == 4
    assert r.container_mounts == "/lustre"


def test_slurm_ssh_identity_offers_the_persons_own_taobot_key_first(catalog: Catalog) -> None:
    slurm = catalog.platforms["slurm"]
    (group,) = [g for g in slurm.credential_groups if g.name == "ssh_identity"]
    assert group.preferred == "TAOBOT_SSH_KEY"
    assert group.one_of == ("TAOBOT_SSH_KEY", "SSH_KEY_PATH", "SSH_AUTH_SOCK")
    key = catalog.credentials["TAOBOT_SSH_KEY"]
    assert key.generated and key.secret and "Use a taobot key" in key.how_to_get
    # the key file and the agent say where they are accepted
    assert "only inside your own key folder" in catalog.credentials["SSH_KEY_PATH"].description
    assert "never from Slack" in catalog.credentials["SSH_AUTH_SOCK"].description


def test_every_referenced_credential_is_documented(catalog: Catalog) -> None:
    referenced: set[str] = set(catalog.s3_required) | set(catalog.s3_optional)
    for p in catalog.platforms.values():
        referenced |= set(p.required_credentials)
        referenced |= {o.name for o in p.optional_credentials}
        referenced |= {m for g in p.credential_groups for m in g.one_of}
        for g in p.credential_groups:
            assert g.description.strip() and g.how_to_get.strip()
    for m in catalog.models.values():
        referenced |= set(m.credentials)
    assert "HF_TOKEN" in referenced
    for name in referenced:
        cred = catalog.credentials[name]
        assert cred.description.strip(), name
        assert cred.how_to_get.strip(), name


def test_optional_credential_conditions(catalog: Catalog) -> None:
    lepton = catalog.platforms["lepton"]
    by_name = {o.name: o for o in lepton.optional_credentials}
    assert by_name["S3_BUCKET_NAME"].only_when is Condition.S3_URI


# ---------------------------------------------------------------------------
# image resolution


def _action(**images: str) -> Action:
    return Action(name="train", command="net train -e {config_path}", **images)


def _model(action: Action, **images: str) -> Model:
    return Model(name="probe", actions={action.name: action}, **images)


def test_image_precedence_action_container_image_wins(catalog: Catalog) -> None:
    action = _action(container_image="tao_toolkit.vila", image="tao_toolkit.deploy")
    model = _model(action, container_image="tao_toolkit.cosmos_rl", image="tao_toolkit.pyt")
    r = resolve_image(catalog, model, action)
    assert (r.source, r.key, r.image) == (
        "actions.train.container_image",
        "tao_toolkit.vila",
        catalog.versions["tao_toolkit.vila"],
    )


def test_image_precedence_action_image_second(catalog: Catalog) -> None:
    action = _action(image="tao_toolkit.deploy")
    model = _model(action, container_image="tao_toolkit.cosmos_rl", image="tao_toolkit.pyt")
    r = resolve_image(catalog, model, action)
    assert (r.source, r.key, r.image) == (
        "actions.train.image",
        "tao_toolkit.deploy",
        catalog.versions["tao_toolkit.deploy"],
    )


def test_image_precedence_model_container_image_third(catalog: Catalog) -> None:
    action = _action()
    model = _model(action, container_image="tao_toolkit.cosmos_rl", image="tao_toolkit.pyt")
    r = resolve_image(catalog, model, action)
    assert (r.source, r.key, r.image) == (
        "container_image",
        "tao_toolkit.cosmos_rl",
        catalog.versions["tao_toolkit.cosmos_rl"],
    )


def test_image_precedence_model_image_last(catalog: Catalog) -> None:
    action = _action()
    model = _model(action, image="tao_toolkit.pyt")
    r = resolve_image(catalog, model, action)
    assert (r.source, r.key, r.image) == ("image", "tao_toolkit.pyt", catalog.versions["tao_toolkit.pyt"])


def test_absolute_image_is_used_as_is(catalog: Catalog) -> None:
    action = _action(image="registry.example.com/team/custom:1.2")
    model = _model(action, image="tao_toolkit.pyt")
    r = resolve_image(catalog, model, action)
    assert r.image == "registry.example.com/team/custom:1.2"
    assert r.key is None
    assert r.source == "actions.train.image"


def test_key_resolves_through_versions_table(catalog: Catalog) -> None:
    action = _action()
    r = resolve_image(catalog, _model(action, image="tao_toolkit.data_services"), action)
    assert r.key == "tao_toolkit.data_services"
    assert r.image == catalog.versions["tao_toolkit.data_services"]


def test_unknown_image_key_is_an_error(catalog: Catalog) -> None:
    action = _action()
    with pytest.raises(CatalogError) as err:
        resolve_image(catalog, _model(action, image="tao_toolkit.no_such_image"), action)
    assert "tao_toolkit.no_such_image" in str(err.value)
    assert err.value.field == "image"


def test_model_without_image_is_an_error(catalog: Catalog) -> None:
    action = _action()
    with pytest.raises(CatalogError):
        resolve_image(catalog, _model(action), action)


# ---------------------------------------------------------------------------
# lookups


def test_unknown_model_lists_known_models(catalog: Catalog) -> None:
    with pytest.raises(UnknownNameError) as err:
        find_model(catalog, "yolo-v99")
    assert err.value.kind == "model"
    assert set(err.value.known) == set(EXPECTED_ACTIONS)
    assert "cosmos-rl" in str(err.value) and "dino" in str(err.value)


def test_unknown_platform_lists_known_platforms(catalog: Catalog) -> None:
    with pytest.raises(UnknownNameError) as err:
        find_platform(catalog, "mainframe")
    assert set(err.value.known) == {"lepton", "brev", "slurm", "local-docker", "kubernetes"}
    assert "slurm" in str(err.value)


def test_unknown_action_lists_model_actions(catalog: Catalog) -> None:
    model = find_model(catalog, "cosmos_rl")
    assert find_action(model, "Train").name == "train"
    with pytest.raises(UnknownNameError) as err:
        find_action(model, "distill")
    assert set(err.value.known) == {"train", "evaluate", "inference", "quantize"}
    assert "evaluate" in str(err.value)


def test_model_names_are_case_and_separator_insensitive(catalog: Catalog) -> None:
    assert find_model(catalog, "Deformable_DETR").name == "deformable-detr"
    assert find_action(catalog.models["depth-net-mono"], "gen-trt-engine").name == "gen_trt_engine"
    assert find_model(catalog, "Foundation_Stereo").name == "depth-net-stereo"


def test_input_spec_defaults() -> None:
    spec = InputSpec(key="dataset.x")
    assert (spec.kind, spec.optional, spec.annotation) == ("folder", False, False)
