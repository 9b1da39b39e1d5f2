"""Configuration: defaults → YAML file (with ``${ENV}`` interpolation) → ``ARTIFACTAPI_*``.

The result is one frozen, validated :class:`Config` built at start-up and passed
down; nothing reads the environment or the file after that.

Environment overrides use ``__`` between levels, and their values are parsed as
YAML scalars: ``ARTIFACTAPI_SERVER__PORT=9090``, ``ARTIFACTAPI_STORAGE__DRIVER=s3``,
``ARTIFACTAPI_DATABASE__URL=postgresql://…``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_FILE = "artifactapi.yaml"
ENV_PREFIX = "ARTIFACTAPI_"


class ConfigError(Exception):
    """The configuration is invalid; the message names the offending key."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 30, 30s, 5m, 1h or 7d")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)]


def parse_seconds(text: str) -> float:
    """A duration as the configuration writes them (30, 30s, 5m, 1h, 7d), in seconds."""
    return float(_parse_duration(text))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Largest request body accepted by any upload; larger ones get 413.
    max_body_size: ByteSize = ByteSize(10 * 1024**3)
    shutdown_grace: Seconds = 30.0
    # How long a client may take to send a request's headers (from connecting, or
    # from the first byte of a kept-alive connection's next request); then the
    # connection is closed, so slow clients (slowloris) cannot hold connections.
    header_timeout: Seconds = Field(default=30.0, gt=0)
    # The URL clients reach the service at (https://artifacts.example.com), for the
    # absolute URLs some formats hand out (npm tarballs). Unset: the request's own
    # scheme and Host, or with trust_forwarded, those a proxy in front passes on
    # (X-Forwarded-Proto, X-Forwarded-Host).
    base_url: str | None = None
    trust_forwarded: bool = False

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL such as https://artifacts.example.com")
        if parsed.query or parsed.fragment:
            raise ValueError("must have no query or fragment")
        return url.rstrip("/")


class LoggingConfig(_Section):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"
    access: bool = True  # one line per request (at level info); off when a proxy logs them


class DatabaseConfig(_Section):
    url: str = "sqlite:///data/artifactapi.db"
    pool_min: int = Field(default=1, ge=0)
    pool_max: int = Field(default=10, ge=1)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return url


class FilesystemStorageConfig(_Section):
    driver: Literal["filesystem"] = "filesystem"
    root: Path = Path("data")


class S3StorageConfig(_Section):
    driver: Literal["s3"]
    bucket: str = Field(min_length=3)
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    prefix: str = ""
    path_style: bool = True
    # Parts in flight cost part_size each; 8 MiB x 4 keeps an upload near 50 MiB.
    part_size: ByteSize = ByteSize(8 * 1024**2)
    concurrency: int = Field(default=4, ge=1, le=64)
    # Recent botocore adds CRC checksums to every upload; some S3-compatible
    # servers reject them, so only send them when the API requires it.
    checksums: Literal["when_required", "when_supported"] = "when_required"
    create_bucket: bool = False
    # Sign each request body's sha256. Off by default: the CAS already verifies
    # every blob's digest, TLS protects bodies on https, and signing costs about
    # 1 s of CPU per GiB. Turn on for plain http across an untrusted network.
    sign_payload: bool = False
    # Answer blob downloads with a 307 to a presigned URL, so clients fetch the
    # bytes from S3 and no replica carries them. Only where clients can reach S3:
    # at public_endpoint if given (a CDN or the bucket's public name), else endpoint.
    redirect_downloads: bool = False
    public_endpoint: str | None = None
    redirect_expiry: int = Field(default=900, ge=60, le=7 * 24 * 3600)  # seconds

    @field_validator("part_size")
    @classmethod
    def _s3_minimum_part(cls, size: ByteSize) -> ByteSize:
        if size < 5 * 1024**2:
            raise ValueError("S3 multipart parts must be at least 5 MiB")
        return size


StorageConfig = Annotated[FilesystemStorageConfig | S3StorageConfig, Field(discriminator="driver")]


class CacheConfig(_Section):
    url: str = "memory://"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ValueError("must be memory:// or redis://host:port/db")
        return url


class GcConfig(_Section):
    enabled: bool = False  # collect in the background (one replica at a time)
    interval: Seconds = 3600.0
    # A blob unused for this long, and referenced by nothing, is deleted. Longer than
    # any push takes between its first upload and its manifest.
    blob_grace: Seconds = 3600.0
    upload_max_age: Seconds = 86400.0  # upload sessions idle this long are abandoned
    batch: int = Field(default=1000, ge=1, le=100_000)  # blobs per database round trip


_REPO_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class RepositoryConfig(_Section):
    name: str
    format: str
    kind: Literal["local", "remote", "virtual"] = "local"
    # Reads (pull, install, download) without credentials; writes always need them.
    anonymous_read: bool = False
    # false (or empty: ``enabled: ${PYPI_UPSTREAM:+true}``) leaves the repository out, and
    # out of every virtual repository's members: a remote declared for when its URL is given.
    enabled: Annotated[bool, BeforeValidator(lambda v: False if v in ("", None) else v)] = True
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _REPO_NAME.match(name):
            raise ValueError("lowercase letters, digits, '.', '_' and '-', 1 to 64 characters")
        return name


# What a permission grants in a repository (app.auth.permissions says what each implies).
Action = Literal["read", "write", "delete", "admin"]
_PRINCIPAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def principal_name(name: str) -> str:
    """A user, service account or group name: what the API, the CLI and the
    configuration all accept (no control characters, no separators, ≤ 128)."""
    if not _PRINCIPAL_NAME.match(name):
        raise ValueError("letters, digits, '.', '_', '@' and '-', 1 to 128 characters")
    return name


class PermissionConfig(_Section):
    """Who may do what where, declared beside the repositories (the API adds more)."""

    repository: str  # a name, a glob (team-*) or *
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    actions: tuple[Action, ...]

    @field_validator("users", "groups")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(principal_name(n) for n in names)

    @model_validator(mode="after")
    def _someone(self) -> PermissionConfig:
        if not self.users and not self.groups:
            raise ValueError("name at least one of users or groups")
        return self


class GrantConfig(_Section):
    repository: str  # a name, a glob or *
    actions: tuple[Action, ...]


class TrustedPublisherConfig(_Section):
    """A CI system whose OIDC ID tokens may be traded for a short-lived API token
    (``POST /api/v1/oidc/token``): the issuer's keys verify the token, every claim in
    ``claims`` must match (a glob), and the token gets ``grants`` for ``token_ttl``."""

    name: str  # the service account the tokens belong to: publisher:<name>
    issuer: str  # exactly the ID tokens' iss; its keys come from its discovery document
    audience: str
    claims: dict[str, str] = Field(min_length=1)  # e.g. repository: acme/widgets
    grants: tuple[GrantConfig, ...] = Field(min_length=1)
    token_ttl: Seconds = Field(default=900.0, gt=0, le=86400)
    algorithms: tuple[Literal["RS256", "RS384", "RS512", "ES256", "ES384"], ...] = (
        "RS256",
        "ES256",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return principal_name(name)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, issuer: str) -> str:
        parsed = urlsplit(issuer)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query:
            raise ValueError("must be the issuer's http(s) URL, as its tokens' iss says")
        return issuer


class AuthConfig(_Section):
    # The OCI token service's name (the challenge's service=, the tokens' aud) and
    # the tokens' issuer; bearer tokens live this long (docker asks again as needed).
    service: str = "artifactapi"
    issuer: str = "artifactapi"
    token_ttl: Seconds = Field(default=300.0, gt=0, le=86400)
    # Where the first start writes the admin's random password (mode 0600); relative
    # paths are from the working directory. Empty: printed only.
    initial_admin_password_file: str = "data/initial-admin-password"
    # Failed logins a minute, per source address and per user name, before 429.
    failed_logins_per_source: int = Field(default=30, ge=1)
    failed_logins_per_user: int = Field(default=10, ge=1)
    permissions: tuple[PermissionConfig, ...] = ()
    trusted_publishers: tuple[TrustedPublisherConfig, ...] = ()
    # Audit rows older than this are dropped by the collector.
    audit_retention: Seconds = Field(default=90 * 86400.0, gt=0)


class Config(_Section):
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = FilesystemStorageConfig()
    cache: CacheConfig = CacheConfig()
    gc: GcConfig = GcConfig()
    auth: AuthConfig = AuthConfig()
    repositories: tuple[RepositoryConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_repositories(self) -> Config:
        seen: set[str] = set()
        for index, repo in enumerate(self.repositories):
            if repo.name in seen:
                raise ValueError(f"repositories[{index}].name: duplicate name {repo.name!r}")
            seen.add(repo.name)
        disabled = {repo.name for repo in self.repositories if not repo.enabled}
        if not disabled:
            return self
        kept = tuple(_without_members(repo, disabled) for repo in self.repositories if repo.enabled)
        return self.model_copy(update={"repositories": kept})

    def repository(self, name: str) -> RepositoryConfig | None:
        return next((r for r in self.repositories if r.name == name), None)


def _without_members(repo: RepositoryConfig, disabled: set[str]) -> RepositoryConfig:
    members = repo.options.get("members") if repo.kind == "virtual" else None
    if not isinstance(members, list):
        return repo
    options = {**repo.options, "members": [m for m in members if m not in disabled]}
    return repo.model_copy(update={"options": options})


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Replace ``${VAR}``, ``${VAR:-default}`` and ``${VAR:+word}`` (``word`` when VAR is
    set and not empty, else nothing) in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, _join(where, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, word = match.groups()
        if operator == "+":
            return word if env.get(name) else ""
        if name in env:
            return env[name]
        if operator == "-":
            return str(word)
        raise ConfigError(f"{where or 'config'}: environment variable {name} is not set")

    return _ENV_REF.sub(substitute, value)


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> None:
    sections = set(Config.model_fields)
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if path[0] not in sections:
            continue  # ARTIFACTAPI_TEST_*, ARTIFACTAPI_LIVE_* and friends are not config
        try:
            value = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not a YAML value: {exc}") from exc
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value


def _format_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ""
        for part in error["loc"]:
            if isinstance(part, int):
                where += f"[{part}]"
            elif part not in ("filesystem", "s3") or not where.endswith("storage"):
                where = _join(where, part)
        lines.append(f"{where or 'config'}: {error['msg']}")
    return "; ".join(lines)


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from already-loaded YAML data."""
    env = os.environ if env is None else env
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping")
    data = interpolate(data, env)
    _apply_env_overrides(data, env)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load ``path``, or ``artifactapi.yaml`` if it exists, else the built-in defaults."""
    if path is None:
        path = Path(DEFAULT_FILE) if Path(DEFAULT_FILE).is_file() else None
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, env)
