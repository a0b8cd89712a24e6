"""Small skill banks the tests write themselves, in both layouts a published bank has used.

`write_seed_bank(root)` writes the seed-era layout (one platforms manifest,
`models/<network>/references/skill_info.yaml`, `versions.yaml`);
`write_skills_bank(root)` writes the 2026-08 layout (one skill folder per
platform and per network under `skills/`, stamped images, `versions.yaml` in
the root). Every value and sentence here is made up for the tests; only the
shape follows the bank, so a clone of the repository alone can run them.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

SEED_MANIFEST = Path("platform/platforms.manifest.json")

# Versions tables: images (nested, flattened to dotted keys) and wheels, which are not images.
VERSIONS = {
    "images": {
        "tao_toolkit": {
            "pyt": "nvcr.io/nvidia/tao/tao-toolkit:9.1.0-pyt",
            "deploy": "nvcr.io/nvidia/tao/tao-toolkit:9.1.0-deploy",
            "cosmos_rl": "nvcr.io/nvstaging/tao/cosmos-rl:9.1.0-rc4",
        },
        "sdg": {"scenes": "nvcr.io/nvidia/scene-maker:2.0.0"},
    },
    "wheels": {"tao_sdk": "example-sdk==9.1.0"},
}


def _credential(description: str, how: str, **extra: object) -> dict:
    return {"description": description, "how_to_get": how, **extra}


SEED_CREDENTIALS = {
    "LEPTON_WORKSPACE_ID": _credential("Workspace the jobs land in.", "Copy it from the workspace page."),
    "LEPTON_AUTH_TOKEN": _credential("Token for the workspace API.", "Create one on the tokens page."),
    "BREV_API_TOKEN": _credential("Token for the instance API.", "Copy it after logging in."),
    "SLURM_USER": _credential("Login name on the cluster.", "The name you ssh in with."),
    "SLURM_HOSTNAME": _credential("Login hosts, comma separated.", "Ask the cluster team."),
    "SLURM_PARTITION": _credential("Partition for GPU jobs.", "Look it up with sinfo."),
    "SSH_KEY_PATH": _credential("Private key for the login hosts.", "Make one with ssh-keygen."),
    "SSH_AUTH_SOCK": _credential("Agent socket holding the key.", "Start ssh-agent and add the key."),
    "SLURM_ACCOUNT": _credential("Account charged for jobs.", "Ask the cluster team."),
    "NGC_KEY": _credential("Key for private registry pulls.", "Create it in your registry account."),
    "HF_TOKEN": _credential("Read token for gated weights.", "Create a read token."),
    "ACCESS_KEY": _credential("Object store access key id.", "From your storage account."),
    "SECRET_KEY": _credential("Object store secret key.", "From your storage account."),
    "KUBECONFIG": _credential("Cluster config file.", "From your cluster setup."),
}


def _s3_optional() -> list[dict]:
    return [
        {"name": "ACCESS_KEY", "source": "env_var", "only_when": "inputs are s3:// URIs"},
        {"name": "SECRET_KEY", "source": "env_var", "only_when": "inputs are s3:// URIs"},
    ]


def _seed_platform(name: str, display: str, aliases: list[str], storage: tuple[str, str], **rest: object) -> dict:
    return {
        "name": name,
        "display_name": display,
        "aliases": aliases,
        "description": f"{display} platform of the test bank.",
        "storage": {"protocol": storage[0], "uri_format": storage[1]},
        "dataset_examples": [f"example/{name}/train"],
        "preflight_checks": [f"{display} answers."],
        **rest,
    }


def seed_manifest() -> dict:
    aws = ("aws", "s3://{bucket_name}/{path}")
    return {
        "schema_version": 3,
        "default_long_running_enabled": True,
        "default_status_interval_minutes": 7,
        "credential_definitions": SEED_CREDENTIALS,
        "platforms": [
            _seed_platform(
                "lepton",
                "Lepton cloud",
                ["dgx-cloud"],
                aws,
                required_credentials=[{"name": "LEPTON_WORKSPACE_ID"}, {"name": "LEPTON_AUTH_TOKEN"}],
                optional_credentials=[{"name": "NGC_KEY"}, *_s3_optional()],
            ),
            _seed_platform(
                "brev", "Brev boxes", [], aws, required_credentials=["BREV_API_TOKEN"], optional_credentials=[]
            ),
            _seed_platform(
                "slurm",
                "Slurm cluster",
                ["cluster"],
                ("lustre", "lustre:///{absolute_path}"),
                required_credentials=[{"name": "SLURM_USER"}, {"name": "SLURM_HOSTNAME"}, {"name": "SLURM_PARTITION"}],
                credential_groups=[
                    {
                        "name": "ssh_identity",
                        "require_one_of": ["SSH_KEY_PATH", "SSH_AUTH_SOCK"],
                        "preferred": "SSH_KEY_PATH",
                    }
                ],
                optional_credentials=[
                    {"name": "SLURM_ACCOUNT", "only_when": "the site bills jobs to an account"},
                    {"name": "HF_TOKEN", "only_when": "the model needs Hugging Face weights"},
                ],
                resource_defaults={"num_gpus": 2, "cpus_per_task": 6, "time_hours": 2, "container_mounts": "/scratch"},
            ),
            _seed_platform(
                "local-docker",
                "Docker here",
                ["docker"],
                ("local", "file://{absolute_path}"),
                optional_credentials=[
                    {"name": "DOCKER_HOST", "description": "Daemon to use.", "how_to_get": "docker context"}
                ],
            ),
            _seed_platform(
                "kubernetes", "Kube", ["k8s", "local-k8s"], aws, optional_credentials=[{"name": "KUBECONFIG"}]
            ),
        ],
    }


SEED_MODELS: dict[str, dict] = {
    "dino": {
        "name": "dino",
        "network_arch": "dino",
        "container_image": "tao_toolkit.pyt",
        "gpu_spec_key": "train.num_gpus",
        "description": "A test detector. It finds boxes.",
        "actions": {
            "train": {
                "command": "dino train -e {config_path}",
                "config_format": "yaml",
                "inputs": {
                    "dataset.train_data_sources[0].image_dir": {"type": "folder"},
                    "dataset.train_data_sources[0].json_file": {"type": "file"},
                    "train.pretrained_model_path": {"type": "file", "optional": True},
                },
                "outputs": {"results_dir": {"type": "folder"}},
            },
            "export": {
                "command": "dino export -e {config_path}",
                "image": "tao_toolkit.deploy",
                "inputs": {"export.checkpoint": {"type": "file"}},
                "outputs": {"results_dir": {"type": "folder"}},
            },
        },
    },
    "cosmos-rl": {
        "network_arch": "cosmos-rl",
        "container_image": "tao_toolkit.cosmos_rl",
        "required_credentials": ["HF_TOKEN"],
        "gpu_spec_key": "policy.parallelism.dp_shard_size",
        "node_spec_key": "policy.parallelism.dp_replicate_size",
        "actions": {
            "train": {
                "command": "cosmos-rl --config {config_path} hook.py",
                "config_format": "toml",
                "inputs": {
                    "custom.train_dataset.annotation_path": {"type": "file"},
                    "custom.train_dataset.media_path": {"type": "folder"},
                },
                "outputs": {"train.output_dir": {"type": "folder"}},
            }
        },
        "data_sources": {
            "train": {
                "custom.train_dataset.annotation_path": {
                    "source": "train_datasets",
                    "path": "{train_dataset_annotation}",
                },
                "custom.train_dataset.media_path": {"source": "train_datasets", "path_from_format": {"*": "media.tar"}},
            }
        },
    },
    "changenet": {
        "network_arch": "visual_changenet",
        "container_image": "tao_toolkit.pyt",
        "spec_shorthand_keys": {"num_gpus": "train.num_gpus"},
        "actions": {
            "evaluate": {
                "command": "changenet evaluate -e {config_path}",
                "inputs": ["dataset.test.csv_path", "dataset.test.images_dir"],
                "outputs": ["results_dir"],
            }
        },
    },
    "predict": {
        "name": "predict",
        "container_image": "registry.example.com/gen/predict:3",
        "required_credentials": ["HF_TOKEN", "WANDB_API_KEY"],
        "actions": {
            "generate": {
                "command": "python generate.py",
                "mode": "args",
                "inputs": {"input-json": {"type": "file"}},
                "outputs": {"output-dir": {"type": "folder"}},
            }
        },
    },
}


def skill_info(root: Path, network: str) -> Path:
    return root / "models" / network / "references" / "skill_info.yaml"


def write_seed_bank(root: Path) -> Path:
    """A seed-era bank in `root`: 5 platforms, 4 networks."""
    (root / SEED_MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (root / SEED_MANIFEST).write_text(json.dumps(seed_manifest(), indent=2), encoding="utf-8")
    (root / "versions.yaml").write_text(yaml.safe_dump(VERSIONS, sort_keys=False), encoding="utf-8")
    for network, body in SEED_MODELS.items():
        file = skill_info(root, network)
        file.parent.mkdir(parents=True)
        file.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------
# the 2026-08 layout: files as text, because their stamped images live in comments

SKILLS_PLATFORMS = {
    "tao-run-on-slurm": """\
type: platform
required_credentials:
- name: SLURM_USER
  source: env_var
- name: SLURM_HOSTNAME
  source: env_var
credential_groups:
- name: ssh_identity
  require_one_of: [SSH_KEY_PATH, SSH_AUTH_SOCK]
  preferred: SSH_KEY_PATH
optional_credentials:
- name: SLURM_ACCOUNT
  source: env_var
  only_when: the site bills jobs to an account
resource_defaults:
  num_gpus: 3
  cpus_per_task: 12
  container_mounts: runtime-supplied
  sqsh_cache: true
cloud_storage:
  protocol: lustre
  uri_format: lustre:///{absolute_path}
""",
    "tao-run-on-docker": """\
type: platform
required_credentials: []  # the local daemon needs nothing
optional_credentials:
- name: NGC_KEY
  source: env_var
  only_when: the image is private
- name: AWS_ACCESS_KEY_ID
  source: env_var
  only_when: inputs are s3:// URIs
resource_defaults: {}
cloud_storage:
  protocol: aws
  uri_format: s3://{bucket_name}/{path}
""",
    "tao-run-on-brev": """\
type: platform
required_credentials:
- name: BREV_API_TOKEN
  source: env_var
resource_defaults: {}
cloud_storage: {protocol: aws, uri_format: "s3://{bucket_name}/{path}"}
""",
    "tao-run-on-kubernetes": """\
type: platform
required_credentials: []
optional_credentials:
- name: TAO_K8S_NAMESPACE
  source: env_var
  description: Namespace for the test jobs.
resource_defaults: {num_nodes: 1, backoff_limit: 0}
cloud_storage: {protocol: aws, uri_format: "s3://{bucket_name}/{path}"}
""",
    "tao-run-on-virtualenv": """\
type: platform
required_credentials: []
optional_credentials:
- name: WANDB_API_KEY
  source: env_var
  only_when: the script logs runs
resource_defaults: {}
cloud_storage: {protocol: local, uri_format: "/{absolute_path}"}
""",
    "tao-setup-nvidia-gpu-host": """\
name: tao-setup-nvidia-gpu-host
type: platform
actions:
  check:
    command: bash check-host.sh
    inputs: {}
""",
}

SKILLS_MODELS = {
    "tao-train-dino": """\
name: tao-train-dino
network_arch: dino
container_image: nvcr.io/nvidia/tao/tao-toolkit:9.1.0-pyt  # versions-key: images.tao_toolkit.pyt
gpu_spec_key: train.num_gpus
description: A test detector, in the newer layout.
actions:
  train:
    command: dino train -e {config_path}
    config_format: yaml
    mode: config
    inputs:
      dataset.train_data_sources[0].image_dir: {type: folder}
      dataset.train_data_sources[0].json_file: {type: file}
      dataset.val_data_sources.image_dir: {type: folder}
      dataset.val_data_sources.json_file: {type: file}
    outputs:
      results_dir: {type: folder}
  inference:
    command: dino inference -e {config_path}
    inputs:
      inference.checkpoint: {type: file}
      dataset.infer_data_sources.captions: {type: list}
    outputs:
      results_dir: {type: folder}
  gen_trt_engine:
    command: dino gen_trt_engine -e {config_path}
    container_image: nvcr.io/nvidia/tao/tao-toolkit:9.1.0-deploy  # versions-key: images.tao_toolkit.deploy
    inputs:
      gen_trt_engine.onnx_file: {type: file}
    outputs:
      results_dir: {type: folder}
data_sources:
  train:
    dataset.train_data_sources[0].image_dir: {source: train_datasets, path: images.tar.gz, runtime: extracted_folder}
    dataset.train_data_sources[0].json_file: {source: train_datasets, path: annotations.json}
    dataset.val_data_sources.image_dir: {source: eval_dataset, path: pictures}
    dataset.val_data_sources.json_file: {source: eval_dataset, path: labels.json}
""",
    "tao-finetune-cosmos-reason": """\
network_arch: cosmos-reason
aliases:
- Cosmos Reason Test
- cosmos-rl
container_image: nvcr.io/nvstaging/tao/cosmos-rl:9.1.0-rc4  # versions-key: images.tao_toolkit.cosmos_rl
required_credentials: []
conditional_credentials:
  HF_TOKEN: only when the checkpoint is fetched
gpu_spec_key: policy.parallelism.dp_shard_size
node_spec_key: policy.parallelism.dp_replicate_size
actions:
  train:
    command: cosmos-rl --config {config_path} hook.py
    config_format: toml
    inputs:
      custom.train_dataset.annotation_path: {type: file}
      custom.train_dataset.media_path: {type: folder}
    outputs:
      train.output_dir: {type: folder}
data_sources:
  train:
    custom.train_dataset.annotation_path: {source: train_datasets, path: '{train_dataset_annotation}'}
    custom.train_dataset.media_path: {source: train_datasets, path_from_format: {'*': media.tar}}
""",
    "tao-train-foundation-stereo": """\
network_arch: depth_net_stereo
container_image: nvcr.io/nvidia/tao/tao-toolkit:9.1.0-pyt  # versions-key: images.tao_toolkit.pyt
actions:
  train:
    command: depth_net train -e {config_path}
    inputs:
      dataset.train_dataset.data_sources[0].data_file: {type: file}
    outputs:
      results_dir: {type: folder}
""",
    "tao-train-fast-foundation-stereo": """\
network_arch: depth_net_stereo
container_image: nvcr.io/nvidia/tao/tao-toolkit:9.1.0-pyt  # versions-key: images.tao_toolkit.pyt
actions:
  train:
    command: depth_net train -e {config_path}
    inputs:
      dataset.train_dataset.data_sources[0].data_file: {type: file}
    outputs:
      results_dir: {type: folder}
""",
    "tao-train-codetr": """\
network_arch: codetr
type: model
container_image: nvcr.io/nvidia/tao/tao-toolkit:8.0.0-pyt  # unpinned: held back for this test
required_credentials: [NGC_KEY]
actions:
  train:
    command: codetr train -e {config_path}
    inputs:
      dataset.train_data_sources: {type: folder}
    outputs:
      results_dir: {type: folder}
""",
    "tao-finetune-nv-tesseract-forecasting": """\
name: tao-finetune-nv-tesseract-forecasting
network_arch: nv_tesseract_forecasting
container_image: null
actions:
  train:
    command: python finetune.py --run-config {config_path}
    inputs:
      dataset.csv: {type: file}
    outputs:
      train.output_dir: {type: folder}
""",
}


def platform_skill(root: Path, folder: str) -> Path:
    return root / "skills" / "platform" / folder / "references" / "skill_info.yaml"


def model_skill(root: Path, folder: str) -> Path:
    return root / "skills" / "models" / folder / "references" / "skill_info.yaml"


def write_skills_bank(root: Path) -> Path:
    """A 2026-08 bank in `root`: 5 platform skills and a host setup skill, 6 networks (one without a container)."""
    for folder, text in SKILLS_PLATFORMS.items():
        file = platform_skill(root, folder)
        file.parent.mkdir(parents=True)
        file.write_text(text, encoding="utf-8")
    for folder, text in SKILLS_MODELS.items():
        file = model_skill(root, folder)
        file.parent.mkdir(parents=True)
        file.write_text(text, encoding="utf-8")
    automl = {"schema_version": 1, "supported": [{"model": "tao-train-dino", "actions": ["train"]}]}
    (root / "skills" / "models" / "automl_support.json").write_text(json.dumps(automl), encoding="utf-8")
    workflow = root / "skills" / "applications" / "tao-train-twice" / "references" / "skill_info.yaml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text("type: workflow\nsteps: [train, train]\n", encoding="utf-8")
    (root / "versions.yaml").write_text(yaml.safe_dump(VERSIONS, sort_keys=False), encoding="utf-8")
    return root
