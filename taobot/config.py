"""Settings, read from the environment. The only module that reads os.environ.

Every variable is listed in the README's configuration table. A bad value
stops the bot with one line naming the setting (see `load_settings`).

`load_settings` reads each setting's variable from os.environ itself (names
matched regardless of case) and pydantic validates them. pydantic-settings did
the same, but importing it cost every command about 40 ms (asyncio, dotenv and
its sources), a fifteenth of a `taobot preflight` run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from taobot.errors import ConfigError

if TYPE_CHECKING:  # only named in PlatformSettings' annotation; the profiles are built by the policy
    from taobot.kube_profiles import KubeProfile


@dataclass(frozen=True)
class PlatformSettings:
    """What preflight and the backends need to reach the platforms, built once from `Settings`.

    A plain value so checks and backends never read the environment
    themselves: the bot's own DOCKER_HOST, KUBECONFIG and in-cluster service
    address arrive here (`Settings.platform_settings`), and a launch's
    credential of the same name still wins over them. Built bare, every
    environment-derived field is None: nothing from the process leaks in.
    """

    lepton_api_url: str = "https://gateway.dgxc-lepton.nvidia.com"
    brev_api_url: str = "https://brevapi.us-west-2-prod.control-plane.brev.dev"
    ssh_config_path: str | None = None  # default ~/.ssh/config
    known_hosts_path: str | None = None  # default ~/.ssh/known_hosts (plus UserKnownHostsFile)
    connect_timeout_s: float = 10.0
    http_timeout_s: float = 10.0
    annotation_sample: int = 20
    docker_host: str | None = None  # the bot's DOCKER_HOST; None: the default socket
    docker_tls_verify: str | None = None  # the bot's DOCKER_TLS_VERIFY
    docker_cert_path: str | None = None  # the bot's DOCKER_CERT_PATH
    kubeconfig: str | None = None  # the bot's KUBECONFIG (os.pathsep-separated); None: ~/.kube/config
    kubernetes_service_host: str | None = None  # set inside a Pod: the in-cluster API server
    kubernetes_service_port: str | None = None
    on_persons_machine: bool = False
    # the operator's cluster profiles (policy `kubernetes_profiles`): in Slack the only way to the bot's own identities
    kube_profiles: tuple[KubeProfile, ...] = ()
    # SSH identities (taobot.identities): on a person's own machine (`taobot console`, the `taobot preflight` CLI)
    # their key files, agent and ~/.ssh/config IdentityFile are theirs; in Slack none of the bot host's are.
    ssh_key_root: str | None = None  # TAOBOT_SSH_KEY_ROOT: in Slack, key files only under <root>/<slack-user-id>/
    ssh_key_per_cluster: bool = False  # one taobot key per person and SLURM_HOSTNAME value, not one per person
    ssh_tofu: bool = False  # an unknown login-node host key may be trusted on first use, from the preflight card
    trusted_hosts_path: str | None = None  # the known_hosts file taobot writes from the host keys people trusted

    @property
    def docker_tls(self) -> dict[str, str | None]:
        """The bot's own Docker TLS variables by name, as docker's `kwargs_from_env` reads them."""
        return {"DOCKER_TLS_VERIFY": self.docker_tls_verify, "DOCKER_CERT_PATH": self.docker_cert_path}

    @property
    def in_cluster(self) -> bool:
        """Whether the bot runs in a Pod (Kubernetes sets KUBERNETES_SERVICE_HOST there)."""
        return bool(self.kubernetes_service_host)


class Settings(BaseModel):
    """Every setting, by its variable name (or its field name); `load_settings` fills it from the environment."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)

    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_api_url: str | None = Field(None, validation_alias="SLACK_API_URL")

    db_path: Path = Field(Path("taobot.db"), validation_alias="TAOBOT_DB")
    secret_key: SecretStr | None = Field(None, validation_alias="TAOBOT_SECRET_KEY")
    secret_key_file: Path | None = Field(None, validation_alias="TAOBOT_SECRET_KEY_FILE")
    admins: str = Field("", validation_alias="TAOBOT_ADMINS")
    skill_bank_path: str | None = Field(None, validation_alias=AliasChoices("TAO_SKILL_BANK_PATH"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", validation_alias="TAOBOT_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", validation_alias="TAOBOT_LOG_FORMAT")
    intake_expiry_days: int = Field(30, ge=1, le=365, validation_alias="TAOBOT_INTAKE_EXPIRY_DAYS")
    lepton_api_url: str = Field("https://gateway.dgxc-lepton.nvidia.com", validation_alias="LEPTON_API_URL")
    brev_api_url: str = Field("https://brevapi.us-west-2-prod.control-plane.brev.dev", validation_alias="BREV_API_URL")
    ssh_config: str | None = Field(None, validation_alias="TAOBOT_SSH_CONFIG")
    ssh_known_hosts: str | None = Field(None, validation_alias="TAOBOT_SSH_KNOWN_HOSTS")
    ssh_key_root: str | None = Field(None, validation_alias="TAOBOT_SSH_KEY_ROOT")
    ssh_key_per_cluster: bool = Field(False, validation_alias="TAOBOT_SSH_KEY_PER_CLUSTER")
    ssh_tofu: bool = Field(False, validation_alias="TAOBOT_SSH_TOFU")
    health_port: int = Field(8080, ge=1, le=65535, validation_alias="TAOBOT_HEALTH_PORT")
    health_host: str = Field("127.0.0.1", validation_alias="TAOBOT_HEALTH_HOST")
    shutdown_grace_seconds: int = Field(20, ge=0, le=600, validation_alias="TAOBOT_SHUTDOWN_GRACE_SECONDS")
    poll_seconds: int = Field(30, ge=1, le=300, validation_alias="TAOBOT_POLL_SECONDS")
    # Seconds per minute of the status intervals and the stuck thresholds. Only tests change it, so flows with a
    # 1-minute interval keep their real shape (slots, catch-up after a restart, detach) in a fraction of the time.
    interval_minute_seconds: float = Field(60.0, gt=0, le=60, validation_alias="TAOBOT_INTERVAL_MINUTE_SECONDS")
    # Stuck signals in the updates: a job pending this long, a running job whose log has not grown this long.
    pending_warn_minutes: int = Field(30, ge=1, le=10080, validation_alias="TAOBOT_PENDING_WARN_MINUTES")
    no_output_warn_minutes: int = Field(25, ge=1, le=10080, validation_alias="TAOBOT_NO_OUTPUT_WARN_MINUTES")
    slurm_container: Literal["pyxis", "none"] = Field("pyxis", validation_alias="TAOBOT_SLURM_CONTAINER")
    work_dir: Path | None = Field(None, validation_alias="TAOBOT_WORK_DIR")
    policy_path: Path | None = Field(None, validation_alias="TAOBOT_POLICY")  # None: the default policy
    preflight_valid_minutes: int = Field(60, ge=1, le=1440, validation_alias="TAOBOT_PREFLIGHT_VALID_MINUTES")
    # None: the catalog's default (5). Resolved once, into the catalog, when the CLI loads it.
    default_status_interval_minutes: int | None = Field(
        None, ge=1, le=60, validation_alias="TAOBOT_STATUS_INTERVAL_MINUTES"
    )
    docker_host: str | None = Field(None, validation_alias="DOCKER_HOST")
    docker_tls_verify: str | None = Field(None, validation_alias="DOCKER_TLS_VERIFY")
    docker_cert_path: str | None = Field(None, validation_alias="DOCKER_CERT_PATH")
    kubeconfig: str | None = Field(None, validation_alias="KUBECONFIG")
    kubernetes_service_host: str | None = Field(None, validation_alias="KUBERNETES_SERVICE_HOST")
    kubernetes_service_port: str | None = Field(None, validation_alias="KUBERNETES_SERVICE_PORT")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    def platform_settings(self, on_persons_machine: bool = False) -> PlatformSettings:
        """What preflight and the backends share; `on_persons_machine` for the console and the preflight CLI."""
        return PlatformSettings(
            lepton_api_url=self.lepton_api_url,
            brev_api_url=self.brev_api_url,
            ssh_config_path=self.ssh_config,
            known_hosts_path=self.ssh_known_hosts,
            docker_host=self.docker_host,
            docker_tls_verify=self.docker_tls_verify,
            docker_cert_path=self.docker_cert_path,
            kubeconfig=self.kubeconfig,
            kubernetes_service_host=self.kubernetes_service_host,
            kubernetes_service_port=self.kubernetes_service_port,
            on_persons_machine=on_persons_machine,
            ssh_key_root=self.ssh_key_root,
            ssh_key_per_cluster=self.ssh_key_per_cluster,
            ssh_tofu=self.ssh_tofu,
            trusted_hosts_path=str(self.db_path.with_name(self.db_path.name + ".trusted_hosts")),
        )

    @property
    def admin_ids(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.admins.split(",") if a.strip())

    @property
    def runs_dir(self) -> Path:
        """Where local-docker launches keep their spec and results folders."""
        return self.work_dir or self.db_path.parent / "taobot-runs"

    @property
    def key_file(self) -> Path:
        """Where the generated encryption key lives when TAOBOT_SECRET_KEY is unset."""
        if self.secret_key_file:
            return self.secret_key_file
        return self.db_path.with_name(self.db_path.name + ".key")

    def missing_for_serve(self, http: bool) -> list[str]:
        """Slack variables `taobot serve` needs in the chosen mode that are unset."""
        needed = {"SLACK_BOT_TOKEN": self.slack_bot_token}
        if http:
            needed["SLACK_SIGNING_SECRET"] = self.slack_signing_secret
        else:
            needed["SLACK_APP_TOKEN"] = self.slack_app_token
        return [name for name, value in needed.items() if not value or not value.get_secret_value()]


def credentials_from_environment(names: list[str]) -> dict[str, str]:
    """Credential values the CLI takes from its environment, as the published launch helper does."""
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def _variables(alias: str | AliasChoices) -> tuple[str, ...]:
    return tuple(alias.choices) if isinstance(alias, AliasChoices) else (alias,)


_ALIASES = {name: field.validation_alias for name, field in Settings.model_fields.items()}


def _from_environment() -> dict[str, str]:
    """The value of each setting's variable that is set, by variable name; names match regardless of case."""
    environment = {name.lower(): value for name, value in os.environ.items()}
    found = {}
    for alias in _ALIASES.values():
        for variable in _variables(alias):
            if variable.lower() in environment:
                found[variable] = environment[variable.lower()]
                break
    return found


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, `overrides` (by field name) winning; a bad value raises ConfigError naming it."""
    values: dict[str, object] = _from_environment()
    for name, value in overrides.items():
        first, *others = _variables(_ALIASES[name])
        for variable in others:
            values.pop(variable, None)
        values[first] = value
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"][0] if err["loc"] else ""
        alias = _ALIASES.get(str(loc), loc)
        if isinstance(alias, AliasChoices):
            alias = alias.choices[0]
        raise ConfigError(f"{alias}: {err['msg']} (got {err.get('input')!r})", setting=str(alias)) from exc
