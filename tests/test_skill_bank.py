"""Loading a published skill bank (TAO_SKILL_BANK_PATH) and checking it against the embedded catalog."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from taobot.catalog import Catalog, Condition, find_platform, load_catalog, resolve_image
from taobot.catalog.bank import load_skill_bank
from taobot.errors import CatalogError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _bank_path() -> Path:
    configured = os.environ.get("TAO_SKILL_BANK_TEST_PATH")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "tao-skill-bank"
    return path.resolve()


BANK = _bank_path()
MANIFEST = Path("platform/platforms.manifest.json")


@pytest.fixture(scope="module")
def bank_path() -> Path:
    # Deliberately a failure, not a skip: CI places shared/ beside the clone.
    assert (BANK / MANIFEST).is_file(), (
        f"skill bank snapshot not found at {BANK}; set TAO_SKILL_BANK_TEST_PATH or put shared/tao-skill-bank beside the repo"
    )
    return BANK


@pytest.fixture(scope="module")
def bank(bank_path: Path) -> Catalog:
    return load_skill_bank(bank_path)


@pytest.fixture(scope="module")
def embedded() -> Catalog:
    return load_catalog()


@pytest.fixture
def bank_copy(bank_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bank"
    shutil.copytree(bank_path, target)
    return target


def _skill_info(root: Path, network: str) -> Path:
    return root / "models" / network / "references" / "skill_info.yaml"


def _edit_yaml(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(body)
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")


def _edit_manifest(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = root / MANIFEST
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
# the real snapshot


def test_bank_loads_33_models_5_platforms(bank: Catalog, bank_path: Path) -> None:
    assert bank.source == str(bank_path)
    assert len(bank.models) == 33
    assert set(bank.platforms) == {"lepton", "brev", "slurm", "local-docker", "kubernetes"}
    for alias, name in {
        "dgx-cloud": "lepton",
        "cluster": "slurm",
        "docker": "local-docker",
        "k8s": "kubernetes",
        "local-k8s": "kubernetes",
    }.items():
        assert find_platform(bank, alias).name == name


def test_bank_versions_are_flattened_and_resolve(bank: Catalog) -> None:
    assert bank.versions["tao_toolkit.pyt"].startswith("nvcr.io/")
    assert "metropolis_sdg.cosmos_anomalygen" in bank.versions
    assert not any(k.startswith("wheels") or k.startswith("tao_sdk") for k in bank.versions)
    for model in bank.models.values():
        for action in model.actions.values():
            assert "/" in resolve_image(bank, model, action).image, (model.name, action.name)
    dino = bank.models["dino"]
    resolved = resolve_image(bank, dino, dino.actions["train"])
    assert (resolved.source, resolved.key) == ("container_image", "tao_toolkit.pyt")


def test_load_catalog_uses_the_bank_when_given_a_path(bank_path: Path) -> None:
    catalog = load_catalog(str(bank_path))
    assert catalog.source == str(bank_path)
    assert len(catalog.models) == 33


def test_bank_credentials(bank: Catalog) -> None:
    secret = {n for n, c in bank.credentials.items() if c.secret}
    assert {"LEPTON_AUTH_TOKEN", "BREV_API_TOKEN", "NGC_KEY", "HF_TOKEN", "SECRET_KEY"} <= secret
    for not_secret in ("SSH_KEY_PATH", "ACCESS_KEY", "SSH_AUTH_SOCK", "SLURM_USER", "SLURM_HOSTNAME", "KUBECONFIG"):
        assert not bank.credentials[not_secret].secret, not_secret
    for cred in bank.credentials.values():
        assert cred.description and cred.how_to_get, cred.name


def test_bank_platform_mapping(bank: Catalog) -> None:
    slurm = bank.platforms["slurm"]
    assert slurm.required_credentials == ("SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION")
    (group,) = slurm.credential_groups
    assert (group.name, group.one_of, group.preferred) == (
        "ssh_identity",
        ("SSH_KEY_PATH", "SSH_AUTH_SOCK"),
        "SSH_KEY_PATH",
    )
    r = slurm.resources
    assert (r.num_nodes, r.num_gpus, r.max_num_gpus_per_node, r.cpus_per_task) == (1, 4, 8, 16)
    assert (r.time_hours, r.timeout_hours, r.max_time_hours, r.container_mounts) == (4, 3.8, 4, "/lustre")
    assert slurm.storage.protocol == "lustre" and slurm.storage.uri_form == "lustre:///{absolute_path}"
    assert (slurm.path_forms, slurm.path_schemes) == (("absolute", "s3"), ("lustre",))
    docker = bank.platforms["local-docker"]
    assert (docker.path_forms, docker.path_schemes) == (("absolute", "s3"), ("file",))
    for name in ("lepton", "brev", "kubernetes"):
        assert bank.platforms[name].path_forms == ("s3", "mounted"), name


def test_bank_optional_credential_conditions(bank: Catalog) -> None:
    slurm = {o.name: o for o in bank.platforms["slurm"].optional_credentials}
    assert slurm["HF_TOKEN"].only_when is Condition.MODEL_REQUIRES
    assert slurm["SLURM_ACCOUNT"].only_when is Condition.ALWAYS
    assert "--account" in slurm["SLURM_ACCOUNT"].when_text
    lepton = {o.name: o for o in bank.platforms["lepton"].optional_credentials}
    assert lepton["ACCESS_KEY"].only_when is Condition.S3_URI
    assert lepton["NGC_KEY"].only_when is Condition.ALWAYS and lepton["NGC_KEY"].when_text == ""


def test_bank_model_mapping(bank: Catalog) -> None:
    rl = bank.models["cosmos-rl"]
    assert rl.credentials == ("HF_TOKEN",)
    assert (rl.gpus_key, rl.nodes_key) == ("policy.parallelism.dp_shard_size", "policy.parallelism.dp_replicate_size")
    assert rl.actions["train"].results_key == "train.output_dir"
    assert rl.actions["train"].roots["train"] == {
        "custom.train_dataset.annotation_path": "{root}/annotations.json",
        "custom.train_dataset.media_path": "{root}",
    }
    predict = bank.models["cosmos-predict-2-5"].actions["generate"]
    assert predict.config_format == "args"
    assert predict.results_key == "output-dir"
    # visual-changenet lists bare spec keys and outputs.
    vc = bank.models["visual-changenet"]
    assert vc.actions["train"].results_key == "results_dir"
    kinds = {i.key: i.kind for i in vc.actions["evaluate"].inputs}
    assert kinds == {
        "dataset.classify.test_dataset.csv_path": "file",
        "dataset.classify.test_dataset.images_dir": "folder",
        "evaluate.checkpoint": "file",
    }
    assert vc.gpus_key == "train.num_gpus"


# ---------------------------------------------------------------------------
# layouts


def test_skills_prefix_layout(bank_path: Path, tmp_path: Path) -> None:
    shutil.copytree(bank_path, tmp_path / "skills")
    catalog = load_skill_bank(tmp_path)
    assert catalog.source == str(tmp_path)
    assert len(catalog.models) == 33
    assert len(catalog.platforms) == 5
    assert catalog.versions["tao_toolkit.pyt"].startswith("nvcr.io/")


def test_model_credential_without_definition_still_loads(bank_copy: Path) -> None:
    _edit_yaml(_skill_info(bank_copy, "dino"), lambda b: b.update(required_credentials=["WANDB_API_KEY"]))
    catalog = load_skill_bank(bank_copy)
    assert catalog.models["dino"].credentials == ("WANDB_API_KEY",)
    cred = catalog.credentials["WANDB_API_KEY"]
    assert cred.description and cred.how_to_get and cred.secret


def test_unknown_resource_fields_are_ignored(bank_copy: Path) -> None:
    def edit(body: dict) -> None:
        body["platforms"][2]["resource_defaults"]["gpu_flavour"] = "shiny"

    _edit_manifest(bank_copy, edit)
    assert load_skill_bank(bank_copy).platforms["slurm"].resources.num_gpus == 4


# ---------------------------------------------------------------------------
# broken banks: one CatalogError naming file and field


def test_missing_manifest(bank_copy: Path) -> None:
    (bank_copy / MANIFEST).unlink()
    _broken(bank_copy, bank_copy / MANIFEST, "(file)")


def test_bad_json(bank_copy: Path) -> None:
    (bank_copy / MANIFEST).write_text('{"platforms": [', encoding="utf-8")
    exc = _broken(bank_copy, bank_copy / MANIFEST, "(document)")
    assert "invalid JSON" in str(exc)


def test_model_without_actions(bank_copy: Path) -> None:
    file = _skill_info(bank_copy, "dino")
    _edit_yaml(file, lambda b: b.pop("actions"))
    exc = _broken(bank_copy, file, "actions")
    assert "models/dino/references/skill_info.yaml: field actions:" in str(exc)


def test_platform_without_name(bank_copy: Path) -> None:
    _edit_manifest(bank_copy, lambda b: b["platforms"][2].pop("name"))
    _broken(bank_copy, bank_copy / MANIFEST, "platforms[2].name")


def test_unknown_image_key(bank_copy: Path) -> None:
    file = _skill_info(bank_copy, "rtdetr")
    _edit_yaml(file, lambda b: b.update(container_image="tao_toolkit.not_there"))
    exc = _broken(bank_copy, file, "container_image")
    assert "tao_toolkit.not_there" in str(exc)


def test_unknown_image_key_on_an_action(bank_copy: Path) -> None:
    file = _skill_info(bank_copy, "mae")
    _edit_yaml(file, lambda b: b["actions"]["export"].update(image="nope.nothing"))
    _broken(bank_copy, file, "actions.export.image")


def test_missing_versions(bank_copy: Path) -> None:
    (bank_copy / "versions.yaml").unlink()
    _broken(bank_copy, bank_copy / "versions.yaml", "(file)")


def test_invalid_yaml(bank_copy: Path) -> None:
    file = _skill_info(bank_copy, "vila")
    file.write_text("actions: [unclosed\n  - x: {\n", encoding="utf-8")
    _broken(bank_copy, file, "(document)")


def test_action_without_command(bank_copy: Path) -> None:
    file = _skill_info(bank_copy, "ocrnet")
    _edit_yaml(file, lambda b: b["actions"]["train"].pop("command"))
    _broken(bank_copy, file, "actions.train.command")


def test_bad_config_format(bank_copy: Path) -> None:
    file = _skill_info(bank_copy, "segformer")
    _edit_yaml(file, lambda b: b["actions"]["train"].update(config_format="xml"))
    exc = _broken(bank_copy, file, "actions.train.config_format")
    assert "yaml" in str(exc)


def test_platform_without_storage(bank_copy: Path) -> None:
    _edit_manifest(bank_copy, lambda b: b["platforms"][0].pop("storage"))
    _broken(bank_copy, bank_copy / MANIFEST, "platforms[0].storage")


def test_group_preferred_outside_members(bank_copy: Path) -> None:
    _edit_manifest(bank_copy, lambda b: b["platforms"][2]["credential_groups"][0].update(preferred="SLURM_USER"))
    exc = _broken(bank_copy, bank_copy / MANIFEST, "platforms[2].credential_groups[0]")
    assert "SLURM_USER" in str(exc)


def test_credential_definition_without_how_to_get(bank_copy: Path) -> None:
    _edit_manifest(bank_copy, lambda b: b["credential_definitions"]["HF_TOKEN"].pop("how_to_get"))
    _broken(bank_copy, bank_copy / MANIFEST, "credential_definitions.HF_TOKEN.how_to_get")


def test_missing_bank_folder(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as err:
        load_skill_bank(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


# ---------------------------------------------------------------------------
# the embedded catalog matches the bank's facts

# Places where the embedded catalog deliberately differs from the bank: dino's
# bank entry types its image folders as files.
KIND_EXCEPTIONS = {
    ("dino", "train", "dataset.train_data_sources[0].image_dir"),
    ("dino", "train", "dataset.val_data_sources[0].image_dir"),
    ("dino", "evaluate", "dataset.test_data_sources.image_dir"),
}


def test_embedded_and_bank_agree_on_networks_and_actions(bank: Catalog, embedded: Catalog) -> None:
    assert set(embedded.models) == set(bank.models)
    for name, model in bank.models.items():
        assert set(embedded.models[name].actions) == set(model.actions), name


def test_embedded_and_bank_agree_on_images(bank: Catalog, embedded: Catalog) -> None:
    assert embedded.versions == bank.versions
    for name, model in bank.models.items():
        mine = embedded.models[name]
        for action in model.actions.values():
            theirs = resolve_image(bank, model, action)
            ours = resolve_image(embedded, mine, mine.actions[action.name])
            assert (ours.image, ours.key) == (theirs.image, theirs.key), (name, action.name)


def test_embedded_and_bank_agree_on_model_facts(bank: Catalog, embedded: Catalog) -> None:
    for name, model in bank.models.items():
        mine = embedded.models[name]
        assert mine.credentials == model.credentials, name
        assert (mine.gpus_key, mine.nodes_key) == (model.gpus_key, model.nodes_key), name
        for action in model.actions.values():
            ours = mine.actions[action.name]
            where = (name, action.name)
            assert ours.command == action.command, where
            assert ours.config_format == action.config_format, where
            assert ours.results_key == action.results_key, where
            assert [i.key for i in ours.inputs] == [i.key for i in action.inputs], where
            for a, b in zip(ours.inputs, action.inputs, strict=True):
                assert (a.optional, a.annotation) == (b.optional, b.annotation), (*where, a.key)
                if (name, action.name, a.key) not in KIND_EXCEPTIONS:
                    assert a.kind == b.kind, (*where, a.key)
            if action.roots:
                # Conventions the bank expresses must be ours too; we may add more (COCO detectors).
                assert ours.roots == action.roots, where


def test_embedded_and_bank_agree_on_credentials(bank: Catalog, embedded: Catalog) -> None:
    # taobot adds runtime settings (SLURM limits, Lepton placement, the Brev instance) the bank leaves to its helper's environment.
    assert set(embedded.credentials) - {
        "SLURM_TIME_HOURS",
        "SLURM_TIMEOUT_HOURS",
        "SLURM_CPUS_PER_TASK",
        "LEPTON_NODE_GROUP",
        "LEPTON_RESOURCE_SHAPE",
        "LEPTON_MOUNTS",
        "BREV_INSTANCE",
        "TAO_K8S_IMAGE_PULL_SECRET",
    } == set(bank.credentials)
    for name, cred in bank.credentials.items():
        assert embedded.credentials[name].secret == cred.secret, name
    for name, platform in bank.platforms.items():
        mine = embedded.platforms[name]
        assert mine.aliases == platform.aliases, name
        assert mine.required_credentials == platform.required_credentials, name
        assert [(g.name, g.one_of, g.preferred) for g in mine.credential_groups] == [
            (g.name, g.one_of, g.preferred) for g in platform.credential_groups
        ], name
        assert (mine.path_forms, mine.path_schemes) == (platform.path_forms, platform.path_schemes), name
        assert mine.storage.protocol == platform.storage.protocol, name
