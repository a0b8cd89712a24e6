"""Loading a skill bank (TAO_SKILL_BANK_PATH) in either layout, joined with what taobot knows.

The banks are small ones the tests write (tests/skill_banks.py), so these run
on a clone alone; tests/test_skill_bank_snapshots.py checks the published
snapshots when they are beside the repository.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from taobot.catalog import (
    Condition,
    NotRunnableError,
    find_model,
    find_platform,
    load_catalog,
    resolve_image,
)
from taobot.catalog.bank import layout_of, load_skill_bank
from taobot.errors import CatalogError, UnknownNameError
from taobot.intake import start_intake
from tests.skill_banks import (
    SEED_MANIFEST,
    model_skill,
    platform_skill,
    skill_info,
    write_seed_bank,
    write_skills_bank,
)


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    return write_seed_bank(tmp_path / "seed")


@pytest.fixture
def skills(tmp_path: Path) -> Path:
    return write_skills_bank(tmp_path / "skills-bank")


def _edit_yaml(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(body)
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")


def _edit_manifest(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = root / SEED_MANIFEST
    body = json.loads(path.read_text(encoding="utf-8"))
    edit(body)
    path.write_text(json.dumps(body, indent=2), encoding="utf-8")


def _broken(root: Path, file: Path, field: str) -> CatalogError:
    """Loading fails with exactly one CatalogError naming the file and the field."""
    with pytest.raises(CatalogError) as err:
        load_skill_bank(root)
    exc = err.value
    assert type(exc) is CatalogError
    assert exc.file == str(file)
    assert exc.field == field
    assert str(exc).startswith(f"{file}: field {field}:"), str(exc)
    return exc


# ---------------------------------------------------------------------------
# the seed-era layout


def test_seed_layout_loads_and_says_so(seed: Path) -> None:
    bank = load_skill_bank(seed)
    assert layout_of(seed) == "seed" and bank.layout == "seed"
    assert bank.source == str(seed)
    assert bank.description == f"skill bank (seed-era layout) at {seed}"
    assert list(bank.platforms) == ["lepton", "brev", "slurm", "local-docker", "kubernetes"]
    assert set(bank.models) == {"dino", "cosmos-rl", "changenet", "predict"}
    assert bank.default_status_interval_minutes == 7
    assert set(bank.platform_sources.values()) == {str(seed / SEED_MANIFEST)}
    for alias, name in {
        "dgx-cloud": "lepton",
        "cluster": "slurm",
        "docker": "local-docker",
        "k8s": "kubernetes",
    }.items():
        assert find_platform(bank, alias).name == name


def test_seed_versions_are_flattened_and_wheels_are_not_images(seed: Path) -> None:
    bank = load_skill_bank(seed)
    assert bank.versions == {
        "tao_toolkit.pyt": "nvcr.io/nvidia/tao/tao-toolkit:9.1.0-pyt",
        "tao_toolkit.deploy": "nvcr.io/nvidia/tao/tao-toolkit:9.1.0-deploy",
        "tao_toolkit.cosmos_rl": "nvcr.io/nvstaging/tao/cosmos-rl:9.1.0-rc4",
        "sdg.scenes": "nvcr.io/nvidia/scene-maker:2.0.0",
    }
    dino = bank.models["dino"]
    train = resolve_image(bank, dino, dino.actions["train"])
    assert (train.source, train.key, train.access) == ("container_image", "tao_toolkit.pyt", None)
    export = resolve_image(bank, dino, dino.actions["export"])
    assert (export.source, export.key) == ("actions.export.image", "tao_toolkit.deploy")
    predict = bank.models["predict"]
    direct = resolve_image(bank, predict, predict.actions["generate"])
    assert (direct.image, direct.key) == ("registry.example.com/gen/predict:3", None)


def test_seed_platform_mapping(seed: Path) -> None:
    bank = load_skill_bank(seed)
    slurm = bank.platforms["slurm"]
    assert slurm.required_credentials == ("SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION")
    (group,) = slurm.credential_groups
    assert (group.name, group.one_of, group.preferred) == (
        "ssh_identity",
        ("SSH_KEY_PATH", "SSH_AUTH_SOCK"),
        "SSH_KEY_PATH",
    )
    assert (slurm.resources.num_gpus, slurm.resources.cpus_per_task, slurm.resources.container_mounts) == (
        2,
        6,
        "/scratch",
    )
    assert (slurm.path_forms, slurm.path_schemes) == (("absolute", "s3"), ("lustre",))
    assert bank.platforms["local-docker"].path_forms == ("absolute", "s3")
    assert bank.platforms["lepton"].path_forms == ("s3", "mounted")
    optional = {o.name: o for o in slurm.optional_credentials}
    assert optional["HF_TOKEN"].only_when is Condition.MODEL_REQUIRES
    assert optional["SLURM_ACCOUNT"].only_when is Condition.ALWAYS
    assert {o.name: o.only_when for o in bank.platforms["lepton"].optional_credentials}[
        "ACCESS_KEY"
    ] is Condition.S3_URI
    # An inline definition on the platform serves when the manifest has none.
    assert bank.credentials["DOCKER_HOST"].description == "Daemon to use."


def test_seed_model_mapping(seed: Path) -> None:
    bank = load_skill_bank(seed)
    rl = bank.models["cosmos-rl"]
    assert rl.credentials == ("HF_TOKEN",)
    assert (rl.gpus_key, rl.nodes_key) == ("policy.parallelism.dp_shard_size", "policy.parallelism.dp_replicate_size")
    train = rl.actions["train"]
    assert (train.config_format, train.results_key) == ("toml", "train.output_dir")
    assert train.roots == {
        "train": {
            "custom.train_dataset.annotation_path": "{root}/annotations.json",
            "custom.train_dataset.media_path": "{root}",
        }
    }
    assert bank.models["predict"].actions["generate"].config_format == "args"
    # Bare spec keys and outputs; kinds guessed from the names; the arch name is an alias.
    changenet = bank.models["changenet"]
    evaluate = changenet.actions["evaluate"]
    assert {i.key: i.kind for i in evaluate.inputs} == {
        "dataset.test.csv_path": "file",
        "dataset.test.images_dir": "folder",
    }
    assert (evaluate.results_key, changenet.gpus_key, changenet.aliases) == (
        "results_dir",
        "train.num_gpus",
        ("visual-changenet",),
    )
    dino = bank.models["dino"].actions["train"]
    assert [i.key for i in dino.required_inputs] == [
        "dataset.train_data_sources[0].image_dir",
        "dataset.train_data_sources[0].json_file",
    ]
    assert dino.input("dataset.train_data_sources[0].json_file").annotation  # type: ignore[union-attr]


def test_seed_credentials_without_definition_get_a_generic_one(seed: Path) -> None:
    bank = load_skill_bank(seed)
    wandb = bank.credentials["WANDB_API_KEY"]
    assert wandb.description and wandb.how_to_get and wandb.secret
    assert "WANDB_API_KEY" in bank.generic_credentials
    for not_secret in ("SSH_KEY_PATH", "ACCESS_KEY", "SLURM_USER", "KUBECONFIG"):
        assert not bank.credentials[not_secret].secret, not_secret
    assert bank.credentials["SECRET_KEY"].secret and bank.credentials["HF_TOKEN"].secret


def test_seed_layout_under_a_skills_folder(tmp_path: Path) -> None:
    write_seed_bank(tmp_path / "skills")
    bank = load_skill_bank(tmp_path)
    assert (bank.source, bank.layout, len(bank.models), len(bank.platforms)) == (str(tmp_path), "seed", 4, 5)


def test_unknown_resource_fields_are_ignored(seed: Path) -> None:
    _edit_manifest(seed, lambda b: b["platforms"][2]["resource_defaults"].update(gpu_flavour="shiny"))
    assert load_skill_bank(seed).platforms["slurm"].resources.num_gpus == 2


# ---------------------------------------------------------------------------
# the 2026-08 layout


def test_skills_layout_loads_and_says_so(skills: Path) -> None:
    bank = load_skill_bank(skills)
    assert layout_of(skills) == "2026-08" and bank.layout == "2026-08"
    assert bank.description == f"skill bank (2026-08 layout) at {skills}"
    # Platforms are named by their folders; the host setup skill is not one.
    assert set(bank.platforms) == {"slurm", "docker", "brev", "kubernetes", "virtualenv"}
    assert bank.platform_sources["docker"] == str(platform_skill(skills, "tao-run-on-docker"))
    notes = "\n".join(bank.notes)
    assert "tao-setup-nvidia-gpu-host" in notes and "not an execution platform" in notes
    assert "automl_support.json" in notes and "1 workflow skills" in notes


def test_skills_layout_platform_mapping(skills: Path) -> None:
    bank = load_skill_bank(skills)
    slurm = bank.platforms["slurm"]
    assert slurm.required_credentials == ("SLURM_USER", "SLURM_HOSTNAME")
    assert slurm.credential_groups[0].one_of == ("SSH_KEY_PATH", "SSH_AUTH_SOCK")
    # `runtime-supplied` is no default; unknown resource fields are ignored.
    assert (slurm.resources.num_gpus, slurm.resources.cpus_per_task, slurm.resources.container_mounts) == (3, 12, None)
    assert slurm.storage.uri_form == "lustre:///{absolute_path}"
    assert {o.name: o.only_when for o in bank.platforms["docker"].optional_credentials} == {
        "NGC_KEY": Condition.ALWAYS,
        "AWS_ACCESS_KEY_ID": Condition.S3_URI,
    }
    assert bank.credentials["TAO_K8S_NAMESPACE"].description == "Namespace for the test jobs."
    # The bank names credentials without describing them: generic texts, recorded as such.
    assert {"SLURM_USER", "BREV_API_TOKEN", "TAO_K8S_NAMESPACE"} <= set(bank.generic_credentials)


def test_skills_layout_model_mapping(skills: Path) -> None:
    bank = load_skill_bank(skills)
    assert set(bank.models) == {"dino", "cosmos-reason", "foundation-stereo", "fast-foundation-stereo", "codetr"}
    dino = bank.models["dino"]
    # Stamped literals are recorded by the versions key their comment names.
    assert (dino.container_image, dino.actions["gen_trt_engine"].container_image) == (
        "tao_toolkit.pyt",
        "tao_toolkit.deploy",
    )
    trt = resolve_image(bank, dino, dino.actions["gen_trt_engine"])
    assert (trt.image, trt.source) == (
        "nvcr.io/nvidia/tao/tao-toolkit:9.1.0-deploy",
        "actions.gen_trt_engine.container_image",
    )
    # An unpinned literal stays as it is.
    codetr = bank.models["codetr"]
    assert resolve_image(bank, codetr, codetr.actions["train"]).key is None
    assert codetr.credentials == ("NGC_KEY",)
    # A list of words is a spec value, not a dataset path.
    assert [i.key for i in dino.actions["inference"].inputs] == ["inference.checkpoint"]
    # A role whose data the bank unpacks from an archive gets no conventions; plain paths do.
    assert dino.actions["train"].roots == {
        "eval": {
            "dataset.val_data_sources.image_dir": "{root}/pictures",
            "dataset.val_data_sources.json_file": "{root}/labels.json",
        }
    }
    rl = bank.models["cosmos-reason"]
    assert rl.aliases == ("cosmos-rl",)  # names with spaces are not names anyone types
    assert rl.credentials == ()  # conditional credentials are not required ones
    assert rl.actions["train"].roots["train"]["custom.train_dataset.annotation_path"] == "{root}/annotations.json"
    assert resolve_image(bank, rl, rl.actions["train"]).access.startswith("This is a pre-release image")  # type: ignore[union-attr]
    # Two networks share `depth_net_stereo`, so it is an alias of neither.
    assert bank.models["foundation-stereo"].aliases == bank.models["fast-foundation-stereo"].aliases == ()


def test_a_network_without_a_container_is_listed_as_not_runnable(skills: Path) -> None:
    bank = load_skill_bank(skills)
    entry = bank.unsupported_models["nv-tesseract-forecasting"]
    assert "without a container image" in entry.reason
    assert entry.source == str(model_skill(skills, "tao-finetune-nv-tesseract-forecasting"))
    assert "nv-tesseract-forecasting" not in bank.models
    with pytest.raises(NotRunnableError) as err:
        find_model(bank, "nv_tesseract_forecasting")
    assert isinstance(err.value, UnknownNameError)
    assert "taobot cannot run" in err.value.message and "dino" in err.value.message


def test_skills_layout_without_a_skills_folder(tmp_path: Path) -> None:
    write_skills_bank(tmp_path / "bank")
    flat = tmp_path / "flat"
    shutil.copytree(tmp_path / "bank" / "skills", flat)
    shutil.copy(tmp_path / "bank" / "versions.yaml", flat / "versions.yaml")
    bank = load_skill_bank(flat)
    assert (bank.layout, len(bank.models), len(bank.platforms)) == ("2026-08", 5, 5)


# ---------------------------------------------------------------------------
# joined with what taobot knows (load_catalog)


def test_catalog_from_the_skills_layout_runs_only_what_taobot_can(skills: Path) -> None:
    catalog = load_catalog(str(skills))
    # The intake offers exactly these: taobot's five, in its own order, Lepton from the embedded catalog.
    assert list(catalog.platforms) == ["lepton", "brev", "slurm", "local-docker", "kubernetes"]
    assert catalog.platform_sources["lepton"] == "embedded"
    assert catalog.platform_sources["local-docker"] == str(platform_skill(skills, "tao-run-on-docker"))
    assert set(catalog.unsupported_platforms) == {"virtualenv"}
    assert "virtualenv" not in catalog.platforms
    with pytest.raises(NotRunnableError) as err:
        find_platform(catalog, "virtualenv")
    assert "no backend" in err.value.message and "slurm" in err.value.message
    assert find_platform(catalog, "docker").name == "local-docker"


def test_catalog_from_the_skills_layout_keeps_the_banks_facts_and_taobots_knowledge(skills: Path) -> None:
    catalog = load_catalog(str(skills))
    embedded = load_catalog()
    slurm = catalog.platforms["slurm"]
    # The bank's required credentials, then what taobot's backend needs besides (the bank lists no partition).
    assert slurm.required_credentials == ("SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION")
    for name in ("brev", "kubernetes", "local-docker"):
        assert set(embedded.platforms[name].required_credentials) <= set(catalog.platforms[name].required_credentials)
    assert slurm.resources.num_gpus == 3  # the bank's, over taobot's default
    assert slurm.resources.max_num_nodes == embedded.platforms["slurm"].resources.max_num_nodes  # the bank leaves it
    assert slurm.display_name == embedded.platforms["slurm"].display_name
    assert slurm.preflight_checks == embedded.platforms["slurm"].preflight_checks
    # How taobot's local-docker backend takes paths, whatever storage the bank names.
    docker = catalog.platforms["local-docker"]
    assert docker.storage.protocol == "aws" and docker.path_forms == embedded.platforms["local-docker"].path_forms
    # Credentials the bank only names are described as taobot describes them; value rules still apply.
    assert catalog.credentials["SLURM_USER"] == embedded.credentials["SLURM_USER"]
    assert catalog.credentials["SLURM_USER"].pattern
    assert catalog.credentials["TAO_K8S_NAMESPACE"] == embedded.credentials["TAO_K8S_NAMESPACE"]
    assert catalog.generic_credentials == ("AWS_ACCESS_KEY_ID", "WANDB_API_KEY")


def test_catalog_from_the_skills_layout_keeps_taobots_network_names(skills: Path) -> None:
    catalog = load_catalog(str(skills))
    assert set(catalog.models) == {"dino", "cosmos-rl", "depth-net-stereo", "depth-net-fast-stereo", "codetr"}
    assert find_model(catalog, "cosmos-reason").name == "cosmos-rl"
    assert find_model(catalog, "fast-foundation-stereo").name == "depth-net-fast-stereo"
    assert find_model(catalog, "foundation_stereo").name == "depth-net-stereo"
    state = start_intake(catalog, "cosmos-reason", "train", "U1", "C1")
    assert state.model == "cosmos-rl"
    assert state.image.default == "nvcr.io/nvstaging/tao/cosmos-rl:9.1.0-rc4"
    assert state.image.access and "nvstaging" in state.image.access


def test_catalog_from_the_seed_layout(seed: Path) -> None:
    catalog = load_catalog(str(seed))
    assert catalog.layout == "seed" and catalog.unsupported_platforms == {}
    assert all(catalog.platform_sources[p] == str(seed / SEED_MANIFEST) for p in catalog.platforms)
    # The bank's own descriptions stay; taobot's name for the network the bank calls changenet.
    assert catalog.credentials["SLURM_USER"].description == "Login name on the cluster."
    assert catalog.credentials["SLURM_USER"].pattern  # value rules of the embedded catalog
    assert find_model(catalog, "changenet").name == "visual-changenet"
    assert catalog.models["cosmos-rl"].aliases == ("cosmos-reason",)


# ---------------------------------------------------------------------------
# broken banks: one CatalogError naming file and field


def test_missing_manifest(seed: Path) -> None:
    (seed / SEED_MANIFEST).unlink()
    _broken(seed, seed / SEED_MANIFEST, "(file)")


def test_bad_json(seed: Path) -> None:
    (seed / SEED_MANIFEST).write_text('{"platforms": [', encoding="utf-8")
    assert "invalid JSON" in str(_broken(seed, seed / SEED_MANIFEST, "(document)"))


def test_model_without_actions(seed: Path) -> None:
    file = skill_info(seed, "dino")
    _edit_yaml(file, lambda b: b.pop("actions"))
    assert "models/dino/references/skill_info.yaml: field actions:" in str(_broken(seed, file, "actions"))


def test_platform_without_name(seed: Path) -> None:
    _edit_manifest(seed, lambda b: b["platforms"][2].pop("name"))
    _broken(seed, seed / SEED_MANIFEST, "platforms[2].name")


def test_unknown_image_key(seed: Path) -> None:
    file = skill_info(seed, "cosmos-rl")
    _edit_yaml(file, lambda b: b.update(container_image="tao_toolkit.not_there"))
    assert "tao_toolkit.not_there" in str(_broken(seed, file, "container_image"))


def test_unknown_image_key_on_an_action(seed: Path) -> None:
    file = skill_info(seed, "dino")
    _edit_yaml(file, lambda b: b["actions"]["export"].update(image="nope.nothing"))
    _broken(seed, file, "actions.export.image")


def test_missing_versions(seed: Path) -> None:
    (seed / "versions.yaml").unlink()
    _broken(seed, seed / "versions.yaml", "(file)")


def test_versions_entry_that_is_not_an_image(seed: Path) -> None:
    (seed / "versions.yaml").write_text(yaml.safe_dump({"images": {"tao_toolkit": {"pyt": 7}}}), encoding="utf-8")
    _broken(seed, seed / "versions.yaml", "images.tao_toolkit.pyt")


def test_invalid_yaml(seed: Path) -> None:
    file = skill_info(seed, "predict")
    file.write_text("actions: [unclosed\n  - x: {\n", encoding="utf-8")
    _broken(seed, file, "(document)")


def test_action_without_command(seed: Path) -> None:
    file = skill_info(seed, "cosmos-rl")
    _edit_yaml(file, lambda b: b["actions"]["train"].pop("command"))
    _broken(seed, file, "actions.train.command")


def test_bad_config_format(seed: Path) -> None:
    file = skill_info(seed, "dino")
    _edit_yaml(file, lambda b: b["actions"]["train"].update(config_format="xml"))
    assert "yaml" in str(_broken(seed, file, "actions.train.config_format"))


def test_platform_without_storage(seed: Path) -> None:
    _edit_manifest(seed, lambda b: b["platforms"][0].pop("storage"))
    _broken(seed, seed / SEED_MANIFEST, "platforms[0].storage")


def test_group_preferred_outside_members(seed: Path) -> None:
    _edit_manifest(seed, lambda b: b["platforms"][2]["credential_groups"][0].update(preferred="SLURM_USER"))
    assert "SLURM_USER" in str(_broken(seed, seed / SEED_MANIFEST, "platforms[2].credential_groups[0]"))


def test_credential_definition_without_how_to_get(seed: Path) -> None:
    _edit_manifest(seed, lambda b: b["credential_definitions"]["HF_TOKEN"].pop("how_to_get"))
    _broken(seed, seed / SEED_MANIFEST, "credential_definitions.HF_TOKEN.how_to_get")


def test_missing_bank_folder(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as err:
        load_skill_bank(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and err.value.field == "(folder)"


def test_platform_skill_without_storage(skills: Path) -> None:
    file = platform_skill(skills, "tao-run-on-brev")
    _edit_yaml(file, lambda b: b.pop("cloud_storage"))
    _broken(skills, file, "cloud_storage")


def test_platform_skill_with_a_bad_credential_list(skills: Path) -> None:
    file = platform_skill(skills, "tao-run-on-slurm")
    _edit_yaml(file, lambda b: b.update(required_credentials={"SLURM_USER": "yes"}))
    assert "expected a list" in str(_broken(skills, file, "required_credentials"))


def test_platform_skill_group_without_members(skills: Path) -> None:
    file = platform_skill(skills, "tao-run-on-slurm")
    _edit_yaml(file, lambda b: b["credential_groups"][0].update(require_one_of=[]))
    _broken(skills, file, "credential_groups[0].require_one_of")


def test_stamped_image_that_drifted_from_the_versions_table(skills: Path) -> None:
    file = model_skill(skills, "tao-train-dino")
    text = file.read_text(encoding="utf-8").replace("tao-toolkit:9.1.0-pyt", "tao-toolkit:9.0.9-pyt")
    file.write_text(text, encoding="utf-8")
    exc = _broken(skills, file, "container_image")
    assert "9.0.9-pyt" in str(exc) and "images.tao_toolkit.pyt" in str(exc)


def test_stamp_naming_a_key_the_versions_table_lacks(skills: Path) -> None:
    file = model_skill(skills, "tao-train-dino")
    text = file.read_text(encoding="utf-8").replace("images.tao_toolkit.deploy", "images.tao_toolkit.gone")
    file.write_text(text, encoding="utf-8")
    assert "tao_toolkit.gone" in str(_broken(skills, file, "actions.gen_trt_engine.container_image"))


def test_model_skill_without_actions(skills: Path) -> None:
    file = model_skill(skills, "tao-train-codetr")
    _edit_yaml(file, lambda b: b.pop("actions"))
    _broken(skills, file, "actions")


def test_model_skill_with_invalid_yaml(skills: Path) -> None:
    file = model_skill(skills, "tao-finetune-cosmos-reason")
    file.write_text("actions: {train: [\n", encoding="utf-8")
    _broken(skills, file, "(document)")


def test_skills_layout_without_versions(skills: Path) -> None:
    (skills / "versions.yaml").unlink()
    _broken(skills, skills / "versions.yaml", "(file)")


def test_skills_layout_without_models(skills: Path) -> None:
    shutil.rmtree(skills / "skills" / "models")
    with pytest.raises(CatalogError) as err:
        load_skill_bank(skills)
    assert err.value.field == "(folder)" and "tao-<verb>-<network>" in str(err.value)
