"""The operator's policy: one YAML file (TAOBOT_POLICY) saying who may use what, and how much.

Who may use which platform (by Slack user or channel), which image
registries an override may name, which host folders a local-docker job may
mount, GPU limits, and when a launch needs a second person's approval;
`kubernetes_profiles` holds the operator's cluster profiles
(`taobot.kube_profiles`). No file is a safe default (`default_policy`):
every platform for everyone, images only from the catalog's registries, no
host folder in Slack, no GPU limit, no approvals.

A bad file stops the bot with one line naming the file, the line and the
field: the loader remembers where every key and list item sits, and
pydantic's error location is walked through that map. The answers the
services need (may this person use this platform here, is this image or
this host path allowed, what do the GPU rules say) are plain methods.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo

from taobot.catalog import Catalog
from taobot.catalog.images import resolve_image
from taobot.errors import CatalogError, ConfigError
from taobot.kube_profiles import KubeProfiles

SETTING = "TAOBOT_POLICY"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_PREFIX_ENDS = ("/", ":", "@")
# Never mounted into a container, whatever the policy says: the host's own system and the bot's keys.
SYSTEM_PROTECTED = (
    ("/", "the whole host"),
    ("/proc", "the kernel's process files"),
    ("/sys", "the kernel's device files"),
    ("/etc", "the host's configuration"),
    ("/root", "the root user's home"),
    ("/var/run/docker.sock", "the Docker socket"),
    ("/run/docker.sock", "the Docker socket"),
)


# --------------------------------------------------------------------------- host paths a container may mount


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _real(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def protected_hit(real: str, protected: Iterable[tuple[str, str]]) -> tuple[str, str, str] | None:
    """(protected path, what it is, "covers" or "is inside") when `real` touches a protected path."""
    for path, why in protected:
        if _inside(path, real):
            return path, why, "is" if path == real else "covers"
        if path != "/" and _inside(real, path):
            return path, why, "is inside"
    return None


@dataclass(frozen=True)
class MountRules:
    """Which host paths a local-docker container may mount. `roots` None: any path (a person's own machine)."""

    roots: tuple[str, ...] | None = ()
    protected: tuple[tuple[str, str], ...] = SYSTEM_PROTECTED

    def with_protected(self, *extra: tuple[str, str]) -> MountRules:
        """These rules, also protecting `extra` (e.g. the socket of the daemon a launch names)."""
        more = tuple((_real(p), why) for p, why in extra if p)
        return MountRules(self.roots, self.protected + more)

    def refusal(self, path: str) -> str | None:
        """Why `path` may not be mounted (resolved first: symlinks and `..`), or None when it may."""
        real = _real(path)
        shown = f"`{path}`" + (f" (resolves to `{real}`)" if real != (path.rstrip("/") or "/") else "")
        hit = protected_hit(real, self.protected)
        if hit:
            where, why, how = hit
            what = f"{why}" if how == "is" else f"{why} (`{where}`)"
            return f"{shown} {how} {what}; taobot never mounts that into a container"
        if self.roots is None:
            return None
        if not self.roots:
            return f"{shown}: this taobot mounts no host folders (the operator's policy names no `docker.mount_roots`)"
        if any(_inside(real, root) for root in self.roots):
            return None
        allowed = ", ".join(f"`{r}`" for r in self.roots)
        return f"{shown} is outside the folders local-docker may mount ({allowed})"

    def remedy(self) -> str:
        """What a person can do about a refused path."""
        if self.roots:
            allowed = ", ".join(f"`{r}`" for r in self.roots)
            return (
                f"Put the data under {allowed} (a symlink out of them does not count), use an s3:// URI, "
                f"or ask the operator to add its folder to `docker.mount_roots` in the policy file ({SETTING})."
            )
        return (
            "Use an s3:// URI, or ask the operator to allow a folder: `docker.mount_roots: [/data]` "
            f"in the policy file ({SETTING})."
        )


# --------------------------------------------------------------------------- the file's schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# One validator per list item, so an error names the item's own line.
def _user_id(v: str) -> str:
    if not _USER_ID.match(v):
        raise ValueError(f"{v!r} is not a Slack user id (like U012ABCDEF; a name or @handle is not one)")
    return v


def _channel_id(v: str) -> str:
    if not _CHANNEL_ID.match(v):
        raise ValueError(f"{v!r} is not a Slack channel id (like C012ABCDEF; a #name is not one)")
    return v


def _image_prefix(v: str) -> str:
    if not v or any(c.isspace() for c in v):
        raise ValueError(f"{v!r} is not an image prefix")
    if not v.endswith(_PREFIX_ENDS):
        raise ValueError(f"{v!r} must end with '/', ':' or '@', so that it cannot also allow `{v}-other`")
    return v


def _mount_root(v: str, info: ValidationInfo) -> str:
    if not v.startswith("/"):
        raise ValueError(f"{v!r} must be an absolute path")
    real = _real(v)
    hit = protected_hit(real, (info.context or {}).get("protected", SYSTEM_PROTECTED))
    if hit:
        where, why, how = hit
        resolved = f" (resolves to {real})" if real != (v.rstrip("/") or "/") else ""
        raise ValueError(f"{v}{resolved} {how} {why} ({where}), which a container may never mount")
    return real  # kept resolved: every path is resolved before it is compared with a root


UserId = Annotated[str, AfterValidator(_user_id)]
ChannelId = Annotated[str, AfterValidator(_channel_id)]
ImagePrefix = Annotated[str, AfterValidator(_image_prefix)]
MountRoot = Annotated[str, AfterValidator(_mount_root)]


class PlatformAccess(_Strict):
    """Who may use one platform: both lists empty means everyone; otherwise a listed user or a listed channel."""

    users: list[UserId] = Field(default_factory=list)
    channels: list[ChannelId] = Field(default_factory=list)

    def open_to(self, user: str, channel: str | None) -> bool:
        if not self.users and not self.channels:
            return True
        return user in self.users or (channel is not None and channel in self.channels)

    def who(self) -> str:
        parts = [", ".join(f"<@{u}>" for u in self.users)] if self.users else []
        if self.channels:
            parts.append("in " + ", ".join(f"<#{c}>" for c in self.channels))
        return " and ".join(parts)


class ImagePolicy(_Strict):
    allowed_prefixes: list[ImagePrefix] | None = None  # None: the registries of the catalog's own images


class DockerPolicy(_Strict):
    mount_roots: list[MountRoot] | None = None  # None: no host folder in Slack; any folder in `taobot console`


class GpuPolicy(_Strict):
    max_per_launch: int | None = Field(None, ge=1)  # GPUs of one launch (per node × nodes); None: no limit
    max_per_person: int | None = Field(None, ge=1)  # a person's active launches plus this one; None: no limit


class ApprovalPolicy(_Strict):
    gpus_over: int | None = Field(None, ge=0)  # a launch with more GPUs needs an approval
    gpu_hours_over: float | None = Field(None, ge=0)  # GPUs × wall hours over this needs an approval


class Policy(_Strict):
    """The policy file's schema. Load it with `load_policy`, which also resolves what depends on the catalog
    (the default image registries) and on where taobot runs (the mount rules, the bot's own paths)."""

    admins: list[UserId] = Field(default_factory=list)  # in addition to TAOBOT_ADMINS
    approvers: list[UserId] = Field(default_factory=list)
    platforms: dict[str, PlatformAccess] = Field(default_factory=dict)
    images: ImagePolicy = Field(default_factory=ImagePolicy)
    docker: DockerPolicy = Field(default_factory=DockerPolicy)
    gpus: GpuPolicy = Field(default_factory=GpuPolicy)
    approvals: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    kubernetes_profiles: KubeProfiles = Field(default_factory=list)

    _source: str | None = PrivateAttr(None)
    _mounts: MountRules = PrivateAttr(default_factory=MountRules)
    _prefixes: tuple[str, ...] = PrivateAttr(())

    # ------------------------------------------------------------------ what it says

    @property
    def source(self) -> str:
        return self._source or f"the default policy ({SETTING} is unset)"

    @property
    def mounts(self) -> MountRules:
        return self._mounts

    @property
    def image_prefixes(self) -> tuple[str, ...]:
        """The prefixes an image must start with: the file's, or else the catalog's registries."""
        return tuple(self.images.allowed_prefixes) if self.images.allowed_prefixes is not None else self._prefixes

    def platform_refusal(self, platform: str, display: str, user: str, channel: str | None) -> str | None:
        """Why `user` may not use `platform` in `channel`, or None."""
        access = self.platforms.get(platform)
        if access is None or access.open_to(user, channel):
            return None
        where = f" in <#{channel}>" if channel else ""
        return f"{display} is not open to <@{user}>{where}: the operator's policy allows it for {access.who()} only"

    def open_platforms(self, names: Iterable[str], user: str, channel: str | None) -> list[str]:
        return [n for n in names if n not in self.platforms or self.platforms[n].open_to(user, channel)]

    def image_refusal(self, ref: str) -> str | None:
        prefixes = self.image_prefixes
        if any(ref.startswith(p) for p in prefixes):
            return None
        allowed = ", ".join(f"`{p}`" for p in prefixes) or "(none)"
        return f"image `{ref}` is not allowed here: images must start with one of {allowed} (the operator's policy)"

    def gpu_refusal(self, gpus: int, others: int = 0) -> str | None:
        """Why a launch of `gpus` GPUs (while the person's other active launches hold `others`) is over a limit."""
        cap, per_person = self.gpus.max_per_launch, self.gpus.max_per_person
        if cap is not None and gpus > cap:
            return f"{gpus} GPUs in one launch is over the policy's limit of {cap} per launch"
        if per_person is not None and gpus + others > per_person:
            return (
                f"{gpus} GPUs with the {others} of your active launches is {gpus + others}, over the policy's "
                f"limit of {per_person} per person; wait for a launch to end or ask for fewer GPUs"
            )
        return None

    def approval_reason(self, gpus: int, hours: float | None, platform: str) -> str | None:
        """Why a launch of `gpus` GPUs for `hours` (None: no wall-time limit) needs an approval, or None."""
        rule = self.approvals
        if rule.gpus_over is not None and gpus > rule.gpus_over:
            return f"{gpus} GPUs is over the policy's {rule.gpus_over} without an approval"
        if rule.gpu_hours_over is not None:
            if hours is None:
                return (
                    f"{platform} jobs have no wall-time limit, so their GPU hours have no bound "
                    f"(the policy asks for an approval over {rule.gpu_hours_over:g} GPU hours)"
                )
            if gpus * hours > rule.gpu_hours_over:
                return (
                    f"{gpus} GPUs × {hours:g} h = {gpus * hours:g} GPU hours is over the policy's "
                    f"{rule.gpu_hours_over:g} without an approval"
                )
        return None

    def approvers_for(self, owner: str, admins: Iterable[str]) -> frozenset[str]:
        """Who may approve `owner`'s launch: admins and approvers, never the owner."""
        return (frozenset(admins) | frozenset(self.admins) | frozenset(self.approvers)) - {owner}


# --------------------------------------------------------------------------- loading


class _Map(dict):
    line: int = 1
    lines: dict


class _Seq(list):
    line: int = 1
    lines: list


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings and sequences remember the line of every key and item."""


def _mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain word", key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"`{key}` is given twice (first on line {out.lines[key]})", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(item, deep=True) for item in node.value)
    out.line, out.lines = node.start_mark.line + 1, [item.start_mark.line + 1 for item in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def _line_of(doc: Any, loc: tuple) -> int:
    """The line of the deepest part of `loc` the document has (a missing key: its mapping's line)."""
    node, line = doc, getattr(doc, "line", 1)
    for part in loc:
        if isinstance(node, _Map) and part in node:
            line, node = node.lines[part], node[part]
        elif isinstance(node, _Seq) and isinstance(part, int) and 0 <= part < len(node):
            line, node = node.lines[part], node[part]
        elif not isinstance(node, (_Map, _Seq)):
            break
    return line


def _field_name(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the whole file)"


def _known_fields(loc: tuple) -> list[str]:
    """The fields the model at `loc` (a list of keys into the schema) has, for "unknown field" errors."""
    model: type[BaseModel] = Policy
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue
        found = _model_in(field.annotation)
        if found is None:
            break
        model = found
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_in(origin) if origin is not None and origin is not annotation else None


def _error(path: Path | str, line: int, field: str, message: str) -> ConfigError:
    return ConfigError(f"{SETTING} {path}, line {line}, `{field}`: {message}", setting=SETTING)


def _explain(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        known = ", ".join(_known_fields(err["loc"][:-1]))
        return f"unknown field (the fields here are: {known}; see deploy/policy.example.yaml)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] in ("missing", "value_error") or isinstance(err.get("input"), (dict, list)):
        return message
    return f"{message} (got {err.get('input')!r})"


def catalog_registries(catalog: Catalog) -> tuple[str, ...]:
    """`nvcr.io/`, …: the registry of every default image in the catalog, where image overrides may point."""
    registries: set[str] = set()
    for model in catalog.models.values():
        for action in model.actions.values():
            try:
                ref = resolve_image(catalog, model, action).image
            except CatalogError:
                continue  # a model without a container image offers no registry
            registry, sep, _ = ref.partition("/")
            if sep and ("." in registry or ":" in registry or registry == "localhost"):
                registries.add(registry + "/")
            else:
                registries.add("docker.io/")
    return tuple(sorted(registries))


def protected_paths(db_path: Path, key_file: Path, work_dir: Path, docker_host: str | None) -> tuple:
    """The system paths and the bot's own data: its database folder, key file, work folder, Docker socket."""
    own = [
        (str(Path(db_path).resolve().parent), "the bot's data folder (TAOBOT_DB)"),
        (str(Path(key_file).resolve()), "the bot's key file"),
        (str(Path(work_dir).resolve()), "the bot's work folder (TAOBOT_WORK_DIR)"),
    ]
    if docker_host and docker_host.startswith("unix://"):
        own.append((_real(docker_host[len("unix://") :]), "the bot's Docker socket"))
    return tuple((_real(p), why) for p, why in SYSTEM_PROTECTED + tuple(own))


def load_policy(
    path: Path | str | None,
    catalog: Catalog,
    protected: tuple[tuple[str, str], ...] = SYSTEM_PROTECTED,
    console: bool = False,
) -> Policy:
    """The policy in `path` (None: the default). Raises ConfigError naming the file, line and field."""
    doc: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{SETTING} {path}: cannot be read ({exc.strerror or exc})", setting=SETTING) from exc
        try:
            doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise _error(path, line, "(YAML)", f"{exc.problem or exc.context}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{SETTING} {path}: not YAML ({exc})", setting=SETTING) from exc
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise _error(path, getattr(doc, "line", 1), "(the whole file)", "must be a mapping of fields")
    try:
        policy = Policy.model_validate(doc, context={"protected": protected})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise _error(path, _line_of(doc, err["loc"]), _field_name(err["loc"]), _explain(err)) from exc
    for name in policy.platforms:
        if name not in catalog.platforms:
            known = ", ".join(catalog.platforms)
            raise _error(path, _line_of(doc, ("platforms", name)), f"platforms.{name}", f"no such platform ({known})")
    policy._source = str(path) if path is not None else None
    policy._prefixes = catalog_registries(catalog)
    roots = policy.docker.mount_roots
    policy._mounts = MountRules(tuple(roots) if roots is not None else (None if console else ()), protected)
    return policy


def policy_for(settings: Any, catalog: Catalog, console: bool = False) -> Policy:
    """The policy the settings name, with the bot's own paths protected."""
    protected = protected_paths(settings.db_path, settings.key_file, settings.runs_dir, settings.docker_host)
    return load_policy(settings.policy_path, catalog, protected, console=console)


def default_policy(catalog: Catalog, console: bool = False) -> Policy:
    """The policy when TAOBOT_POLICY is unset: every platform for everyone, catalog registries, no host folders."""
    return load_policy(None, catalog, console=console)
