"""Help texts: what to reply, with examples for this model, action and platform."""

from __future__ import annotations

from taobot.catalog import Catalog, Platform
from taobot.intake.queries import action_of, missing_inputs, platform_of
from taobot.intake.state import IntakeState


def expected_shape() -> str:
    """The shape of a thread reply, for an answer taobot could not read."""
    return (
        "Reply with `key=value` pairs, several per message, e.g. "
        "`platform=slurm monitor=yes interval=5`, `image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt`, "
        "`train=/lustre/.../train`, `custom.train_dataset.annotation_path=/lustre/.../annotations.json`, "
        "`num_gpus=4`; or one word: `cancel`, `help`."
    )


def _example_root(platform: Platform | None, model: str, role: str) -> str:
    if platform is None:
        return f"/data/tao/{model}/{role}"
    if platform.name == "slurm":
        return f"/lustre/fsw/<team>/users/<user>/data/{model}/{role}"
    if "absolute" in platform.path_forms:
        return f"/data/tao/{model}/{role}"
    return f"s3://my-bucket/{model}/{role}"


def dataset_help(state: IntakeState, catalog: Catalog, missing: list[str] | None = None) -> str:
    """Both dataset modes with examples for this model, action and platform."""
    action = action_of(state, catalog)
    platform = platform_of(state, catalog)
    missing = missing if missing is not None else missing_inputs(state, catalog)
    lines = []
    if action.roots:
        roots = " ".join(f"`{role}={_example_root(platform, state.model, role)}`" for role in action.roots)
        expands = "; ".join(
            f"{role} → " + ", ".join(f"`{k}={t}`" for k, t in keys.items()) for role, keys in action.roots.items()
        )
        lines.append(f"Root mode: {roots} (expands to {expands.replace('{root}', '<root>')})")
    else:
        lines.append(f"Root mode: not defined for {state.model} {state.action}; use exact spec keys.")
    example_root = _example_root(platform, state.model, "train")
    spec = " ".join(f"`{k}={example_root}/...`" for k in missing[:3])
    lines.append(f"Spec mode (exact keys, kept as given): {spec}")
    lines.append("Still missing: " + ", ".join(f"`{k}`" for k in missing))
    if platform and platform.dataset_examples:
        lines.append(f"{platform.display_name} path forms: " + ", ".join(f"`{e}`" for e in platform.dataset_examples))
    return "\n".join(lines)


def help_text(catalog: Catalog) -> str:
    """What taobot does and how to talk to it, with the platforms and models this catalog has."""
    models = ", ".join(sorted(catalog.models))
    platforms = ", ".join(catalog.platforms)
    return (
        "*taobot* launches NVIDIA TAO jobs from Slack.\n"
        "• `/tao launch <model> [action]` or `@taobot train <model>` — start a launch thread (action defaults to `train`).\n"
        "• `/tao launch cosmos-rl train on slurm num_gpus=8 interval=10` — the same, with answers given at once.\n"
        "• `/tao automl <model>` or `@taobot automl <model>` — a hyperparameter search, each trial a launch.\n"
        "• `/tao workflow train-eval-export <model>` — a multi-stage pipeline in one thread.\n"
        "• `/tao status` — intakes and launches in this channel; `/tao status <id>` for one.\n"
        "• `/tao help` — this message.\n"
        "In a launch thread reply with `key=value` pairs (`platform=slurm`, `interval=5`, `image=…`, "
        "`train=/path`, `<spec.key>=/path`, `num_gpus=4`, `notify=dm` to get the job's end by DM too) or `cancel`. "
        "Credentials go in the private form only. An admin or approver replies `approve` (or presses *Approve*) "
        "for a launch the operator's policy holds for a second person's approval. In a finished thread, "
        "`relaunch num_gpus=16` (or *Relaunch*) runs it again with those changes, after a fresh preflight.\n"
        f"*Platforms:* {platforms}\n*Models:* {models}"
    )
