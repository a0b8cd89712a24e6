"""Pydantic schema of the catalog: platforms, credentials, models, images.

The catalog is plain data. Everything here is immutable after loading and
free of I/O, so the conversation and the gate can consult it in pure code.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Condition(str, Enum):
    """When an optional credential applies (machine-checkable, unlike prose)."""

    ALWAYS = "always"  # may be given any time; never asked for unprompted
    S3_URI = "s3_uri"  # some dataset or result URI uses s3://
    MODEL_REQUIRES = "model_requires"  # the selected model lists it


class Credential(Frozen):
    name: str
    description: str
    how_to_get: str
    # A secret is never shown back, only "set". Settings such as a host name
    # are still collected in a modal but may be echoed so people can check them.
    secret: bool = True
    # Made by taobot (a person's own SSH key), never typed: forms show no field for it.
    generated: bool = False
    example: str | None = None
    # A value that does not match `pattern` is refused before it is stored;
    # `shape` says in words what was expected ("a login name such as `jdoe`").
    pattern: str | None = None
    shape: str | None = None

    @model_validator(mode="after")
    def _rule_is_whole(self) -> "Credential":
        if self.pattern:
            re.compile(self.pattern)
            if not self.shape:
                raise ValueError(f"credential {self.name}: a pattern needs a shape that says what is expected")
        return self


class OptionalCredential(Frozen):
    name: str
    only_when: Condition = Condition.ALWAYS
    when_text: str = ""  # human wording of the condition, e.g. "your site requires --account"


class CredentialGroup(Frozen):
    name: str
    one_of: tuple[str, ...]
    preferred: str
    description: str
    how_to_get: str

    @model_validator(mode="after")
    def _preferred_is_member(self) -> "CredentialGroup":
        if self.preferred not in self.one_of:
            raise ValueError(f"preferred {self.preferred!r} is not one of {list(self.one_of)}")
        return self


class ResourceDefaults(Frozen):
    num_nodes: int = 1
    num_gpus: int = 1
    max_num_gpus_per_node: int = 8
    max_num_nodes: int = 1
    cpus_per_task: int | None = None
    partition: str | None = None
    time_hours: float | None = None
    timeout_hours: float | None = None
    max_time_hours: float | None = None
    container_mounts: str | None = None
    shm_size: str | None = None


class Storage(Frozen):
    protocol: str  # lustre, aws, local
    uri_form: str  # e.g. s3://{bucket}/{path}


PathKind = Literal["absolute", "s3", "mounted"]


class Platform(Frozen):
    name: str
    display_name: str
    aliases: tuple[str, ...] = ()
    description: str
    required_credentials: tuple[str, ...] = ()
    credential_groups: tuple[CredentialGroup, ...] = ()
    optional_credentials: tuple[OptionalCredential, ...] = ()
    resources: ResourceDefaults = ResourceDefaults()
    storage: Storage
    # Path forms a dataset may take on this platform. "absolute" paths are
    # verified from the platform itself (SLURM login node, Docker host);
    # "mounted" ones cannot be, and need the user's confirmation.
    path_forms: tuple[PathKind, ...]
    path_schemes: tuple[str, ...] = ()  # URI schemes accepted as absolute paths, e.g. lustre, file
    dataset_examples: tuple[str, ...] = ()
    preflight_checks: tuple[str, ...] = ()


class InputSpec(Frozen):
    key: str  # the spec key, e.g. dataset.train_data_sources[0].json_file
    kind: Literal["file", "folder"] = "folder"
    optional: bool = False
    # Files holding annotation records that preflight opens and samples.
    annotation: bool = False


class Action(Frozen):
    name: str
    command: str
    config_format: Literal["yaml", "toml", "args"] = "yaml"
    container_image: str | None = None
    image: str | None = None
    # What pulling this action's image needs, when not everyone can (a pre-release
    # or internal registry); said beside the image question. None: a public image.
    image_access: str | None = None
    inputs: tuple[InputSpec, ...] = ()
    results_key: str | None = None  # spec key that receives the results folder
    # Root-mode conventions: role (train / eval / calibration) -> spec key -> template with {root}.
    roots: dict[str, dict[str, str]] = Field(default_factory=dict)

    @property
    def required_inputs(self) -> tuple[InputSpec, ...]:
        return tuple(i for i in self.inputs if not i.optional)

    def input(self, key: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.key == key), None)


ROOT_ROLES = ("train", "eval", "calibration")


class Model(Frozen):
    name: str
    # Other names people and skill banks use for this network (e.g. a bank's newer name).
    aliases: tuple[str, ...] = ()
    summary: str = ""
    container_image: str | None = None
    image: str | None = None
    image_access: str | None = None  # as on Action, for the model's own image
    # The network runs in a plain Python environment without any container image
    # (a skill bank's virtualenv platform). taobot launches containers only, so
    # such a model is listed as not runnable and never offered.
    container_free: bool = False
    credentials: tuple[str, ...] = ()
    gpus_key: str | None = None
    nodes_key: str | None = None
    annotation_fields: tuple[str, ...] = ()
    actions: dict[str, Action]

    @field_validator("actions")
    @classmethod
    def _has_actions(cls, v: dict[str, Action]) -> dict[str, Action]:
        if not v:
            raise ValueError("a model needs at least one action")
        return v


class NotRunnable(Frozen):
    """A platform or model the catalog's source describes that taobot cannot run, and why."""

    name: str
    reason: str
    source: str  # "embedded" or the file that describes it


EMBEDDED = "embedded"
LAYOUTS = {EMBEDDED: "embedded catalog", "seed": "seed-era layout", "2026-08": "2026-08 layout"}


class Catalog(Frozen):
    source: str  # "embedded" or the skill bank path
    layout: Literal["embedded", "seed", "2026-08"] = EMBEDDED
    credentials: dict[str, Credential]
    # The platforms and models taobot can run: the only ones the intake offers.
    platforms: dict[str, Platform]
    models: dict[str, Model]
    versions: dict[str, str]  # dotted key -> image reference
    s3_required: tuple[str, ...] = ("ACCESS_KEY", "SECRET_KEY")
    s3_optional: tuple[str, ...] = ("S3_ENDPOINT_URL", "CLOUD_REGION")
    default_long_running: bool = True
    default_status_interval_minutes: int = 5
    # Where each platform's definition came from: "embedded" or a skill bank file.
    platform_sources: dict[str, str] = Field(default_factory=dict)
    # What the source describes but taobot cannot run (no backend, no container image).
    unsupported_platforms: dict[str, NotRunnable] = Field(default_factory=dict)
    unsupported_models: dict[str, NotRunnable] = Field(default_factory=dict)
    # Credentials a skill bank names without describing them (they got a generic text).
    generic_credentials: tuple[str, ...] = ()
    # What the loader read but left out on purpose, one sentence each (shown by `taobot platforms`).
    notes: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """Where this catalog came from, e.g. ``skill bank (2026-08 layout) at /srv/bank``."""
        if self.layout == EMBEDDED:
            return "embedded catalog"
        return f"skill bank ({LAYOUTS[self.layout]}) at {self.source}"

    @model_validator(mode="after")
    def _references_resolve(self) -> "Catalog":
        names = set(self.credentials)
        for p in self.platforms.values():
            refs = list(p.required_credentials) + [o.name for o in p.optional_credentials]
            refs += [m for g in p.credential_groups for m in g.one_of]
            for r in refs:
                if r not in names:
                    raise ValueError(f"platform {p.name}: credential {r} has no definition")
        for m in self.models.values():
            for r in m.credentials:
                if r not in names:
                    raise ValueError(f"model {m.name}: credential {r} has no definition")
        for r in (*self.s3_required, *self.s3_optional):
            if r not in names:
                raise ValueError(f"S3 credential {r} has no definition")
        return self
