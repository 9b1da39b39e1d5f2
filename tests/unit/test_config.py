from pathlib import Path
from typing import Any

import pytest

from app.config import (
    DEFAULT_FILE,
    ENV_PREFIX,
    Config,
    ConfigError,
    FilesystemStorageConfig,
    S3StorageConfig,
    _apply_env_overrides,
    interpolate,
    load_config,
    parse_config,
)


def test_defaults_are_the_embedded_shape() -> None:
    config = parse_config({}, env={})
    assert config.database.url.startswith("sqlite://")
    assert isinstance(config.storage, FilesystemStorageConfig)
    assert config.cache.url == "memory://"
    assert config.server.port == 8080 and config.server.host == "127.0.0.1"
    assert config.repositories == ()


def test_env_interpolation_with_defaults_and_escape() -> None:
    data = {"a": "${HOST}:${PORT:-5432}", "b": ["$${literal}", "${EMPTY:-}"], "c": 3}
    assert interpolate(data, {"HOST": "db"}) == {"a": "db:5432", "b": ["${literal}", ""], "c": 3}


def test_missing_env_variable_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"storage\.endpoint: environment variable S3_URL"):
        parse_config(
            {"storage": {"driver": "s3", "bucket": "abc", "endpoint": "${S3_URL}"}}, env={}
        )


def test_environment_overrides_nested_keys_and_ignores_test_variables() -> None:
    env = {
        "ARTIFACTAPI_SERVER__PORT": "9090",
        "ARTIFACTAPI_STORAGE__DRIVER": "s3",
        "ARTIFACTAPI_STORAGE__BUCKET": "artifacts",
        "ARTIFACTAPI_STORAGE__PART_SIZE": "8MiB",
        "ARTIFACTAPI_TEST_POSTGRES_DSN": "postgresql://elsewhere",
        "ARTIFACTAPI_REQUIRE_SERVICES": "1",
    }
    config = parse_config({"server": {"port": 1}}, env=env)
    assert config.server.port == 9090
    assert isinstance(config.storage, S3StorageConfig)
    assert config.storage.bucket == "artifacts"
    assert config.storage.part_size == 8 * 1024**2
    assert config.database.url.startswith("sqlite://")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"server": {"prot": 1}}, "server.prot"),
        ({"server": {"port": "eighty"}}, "server.port"),
        ({"database": {"url": "mysql://x"}}, "database.url"),
        ({"storage": {"driver": "floppy"}}, "storage"),
        ({"storage": {"driver": "s3"}}, "storage.bucket"),
        ({"storage": {"driver": "s3", "bucket": "b"}}, "storage.bucket"),
        ({"cache": {"url": "memcached://x"}}, "cache.url"),
        ({"gc": {"interval": "soon"}}, "gc.interval"),
        ({"repositories": [{"name": "Bad Name", "format": "generic"}]}, "repositories[0].name"),
        (
            {"repositories": [{"name": "a", "format": "generic", "kind": "x"}]},
            "repositories[0].kind",
        ),
        (
            {
                "repositories": [
                    {"name": "a", "format": "generic"},
                    {"name": "a", "format": "generic"},
                ]
            },
            "repositories[1].name",
        ),
        ([1, 2], "top level"),
    ],
)
def test_invalid_configuration_names_the_bad_key(data: object, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    assert key in str(info.value)


def test_durations_and_sizes_accept_units() -> None:
    config = parse_config(
        {"gc": {"interval": "5m", "blob_grace": "2h"}, "server": {"max_body_size": "1GiB"}}, env={}
    )
    assert config.gc.interval == 300 and config.gc.blob_grace == 7200
    assert config.server.max_body_size == 1024**3


def test_load_config_reads_yaml_and_reports_bad_yaml(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("server:\n  port: 9999\nrepositories:\n  - {name: files, format: generic}\n")
    config = load_config(good, env={})
    assert config.server.port == 9999
    assert config.repository("files") is not None and config.repository("nope") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})


def test_load_config_uses_artifactapi_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).server.port == 8080
    (tmp_path / "artifactapi.yaml").write_text("server: {port: 8181}\n")
    assert load_config(env={}).server.port == 8181


def _refusal(data: object, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=env or {})
    return str(info.value)


def _only_fault(message: str) -> str:
    """The one key an error names: a single fault must not hide behind another."""
    assert ";" not in message, message
    return message.split(": ")[0]


def _at(key: str, *value: object) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for ``"a.b"``; with no value, the defaults.

    ``s3.*`` keys are the S3 storage section's, with its driver and a valid bucket.
    """
    section, _, field = key.partition(".")
    fields: dict[str, Any] = {field: value[0]} if value else {}
    if section == "s3":
        return {"storage": {"driver": "s3", "bucket": "abc", **fields}}
    return {section: fields} if fields else {}


def _value(config: Config, key: str) -> object:
    section, _, field = key.partition(".")
    return getattr(getattr(config, "storage" if section == "s3" else section), field)


DEFAULTS = [
    ("server.host", "127.0.0.1"),
    ("server.port", 8080),
    ("server.workers", 1),
    ("server.loop", "uvloop"),
    ("server.max_body_size", 10 * 1024**3),
    ("server.shutdown_grace", 30.0),
    ("server.base_url", None),
    ("server.trust_forwarded", False),
    ("logging.format", "console"),
    ("logging.level", "info"),
    ("logging.access", True),
    ("database.url", "sqlite:///data/artifactapi.db"),
    ("database.pool_min", 1),
    ("database.pool_max", 10),
    ("storage.driver", "filesystem"),
    ("storage.root", Path("data")),
    ("cache.url", "memory://"),
    ("gc.enabled", False),
    ("gc.interval", 3600.0),
    ("gc.blob_grace", 3600.0),
    ("gc.upload_max_age", 86400.0),
    ("gc.batch", 1000),
    ("s3.endpoint", None),
    ("s3.region", "us-east-1"),
    ("s3.access_key", None),
    ("s3.secret_key", None),
    ("s3.prefix", ""),
    ("s3.path_style", True),
    ("s3.part_size", 8 * 1024**2),
    ("s3.concurrency", 4),
    ("s3.checksums", "when_required"),
    ("s3.create_bucket", False),
    ("s3.sign_payload", False),
    ("s3.redirect_downloads", False),
    ("s3.public_endpoint", None),
    ("s3.redirect_expiry", 900),
]


@pytest.mark.parametrize(("key", "default"), DEFAULTS, ids=[key for key, _ in DEFAULTS])
def test_defaults(key: str, default: object) -> None:
    assert _value(parse_config(_at(key), env={}), key) == default


def test_file_and_environment_names() -> None:
    assert DEFAULT_FILE == "artifactapi.yaml"
    assert ENV_PREFIX == "ARTIFACTAPI_"


# Each bound: the value exactly at it is accepted, one step past it is refused naming the key.
BOUNDS = [
    ("server.port", 0, -1),
    ("server.port", 65535, 65536),
    ("server.workers", 1, 0),
    ("server.workers", 64, 65),
    ("server.shutdown_grace", 0, -0.001),
    ("database.pool_min", 0, -1),
    ("database.pool_max", 1, 0),
    ("gc.interval", 0, -0.001),
    ("gc.blob_grace", 0, -0.001),
    ("gc.upload_max_age", 0, -0.001),
    ("gc.batch", 1, 0),
    ("gc.batch", 100_000, 100_001),
    ("s3.bucket", "abc", "ab"),
    ("s3.part_size", 5 * 1024**2, 5 * 1024**2 - 1),
    ("s3.concurrency", 1, 0),
    ("s3.concurrency", 64, 65),
    ("s3.redirect_expiry", 60, 59),
    ("s3.redirect_expiry", 7 * 24 * 3600, 7 * 24 * 3600 + 1),
]


@pytest.mark.parametrize(
    ("key", "at_bound", "past_bound"), BOUNDS, ids=[f"{k}={a}" for k, a, _ in BOUNDS]
)
def test_bounds_are_exact_and_refusals_name_the_key(
    key: str, at_bound: object, past_bound: object
) -> None:
    assert _value(parse_config(_at(key, at_bound), env={}), key) == at_bound
    name = key.replace("s3.", "storage.")
    assert _only_fault(_refusal(_at(key, past_bound))) == name


def test_s3_part_size_below_5_mib_is_refused_on_its_own() -> None:
    message = _refusal(_at("s3.part_size", "4MiB"))
    assert _only_fault(message) == "storage.part_size"
    assert "at least 5 MiB" in message
    assert _value(parse_config(_at("s3.part_size", "5MiB"), env={}), "s3.part_size") == 5 * 1024**2


DURATIONS = ["server.shutdown_grace", "gc.interval", "gc.blob_grace", "gc.upload_max_age"]


@pytest.mark.parametrize("key", DURATIONS)
@pytest.mark.parametrize("negative", [-1, -0.5, "-1s"])
def test_negative_durations_are_refused_naming_the_key(key: str, negative: object) -> None:
    assert _only_fault(_refusal(_at(key, negative))) == key


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30", 30.0),
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        (" 2 h ", 7200.0),
        ("7d", 604800.0),
        ("0", 0.0),
        (45, 45.0),
    ],
)
def test_duration_units(text: object, seconds: float) -> None:
    assert parse_config({"gc": {"interval": text}}, env={}).gc.interval == seconds


@pytest.mark.parametrize("text", ["", "s", "5w", "5 minutes", "1e3", "5mm", "h5"])
def test_durations_in_other_units_are_refused(text: str) -> None:
    message = _refusal({"gc": {"interval": text}})
    assert _only_fault(message) == "gc.interval"
    assert "expected a duration" in message


def test_an_unrelated_variable_sorting_first_stops_no_override() -> None:
    # Overrides are applied in sorted order: anything before the prefix (AAA, _, lowercase
    # is after) or inside it but not a section (ARTIFACTAPI_AAA) must only be skipped.
    env = {
        "AAA": "1",
        "ARTIFACTAPI_": "1",
        "ARTIFACTAPI_AAA": "1",
        "ARTIFACTAPI_CACHE__URL": "redis://cache:6379/0",
        "ARTIFACTAPI_SERVER__PORT": "9090",
        "ZZZ": "1",
    }
    config = parse_config({}, env=env)
    assert config.cache.url == "redis://cache:6379/0"
    assert config.server.port == 9090


def test_overrides_merge_into_the_file_at_every_level() -> None:
    data: dict[str, Any] = {"server": {"host": "0.0.0.0", "x": {"keep": 1, "y": 0}}}
    env = {"ARTIFACTAPI_SERVER__X__Y": "2", "ARTIFACTAPI_SERVER__NEW__DEEP__KEY": "true"}
    _apply_env_overrides(data, env)
    assert data == {
        "server": {"host": "0.0.0.0", "x": {"keep": 1, "y": 2}, "new": {"deep": {"key": True}}}
    }


def test_a_three_level_override_below_a_value_names_that_key() -> None:
    # A mapping where the file has a scalar replaces it, and validation names the key.
    message = _refusal({"server": {"port": 1}}, {"ARTIFACTAPI_SERVER__PORT__X": "2"})
    assert _only_fault(message) == "server.port"
    assert _only_fault(_refusal({}, {"ARTIFACTAPI_GC__BATCH__X": "2"})) == "gc.batch"


def test_an_override_that_is_not_yaml_names_the_variable() -> None:
    message = _refusal({}, {"ARTIFACTAPI_SERVER__HOST": "[unclosed"})
    assert message.startswith("ARTIFACTAPI_SERVER__HOST: not a YAML value")


# Values each checked key accepts, and one it refuses (naming the key).
ACCEPTED = [
    ("server.loop", ["uvloop", "asyncio"], "trio"),
    ("server.base_url", ["http://a.example", "https://a.example/x"], "ftp://a.example"),
    ("server.base_url", ["https://a.example:8443"], "https://a.example/?q=1"),
    ("server.base_url", ["https://a.example"], "https://a.example/#top"),
    ("server.base_url", ["https://a.example"], "https://"),
    ("logging.format", ["console", "json"], "xml"),
    ("logging.level", ["debug", "info", "warning", "error"], "trace"),
    ("database.url", ["sqlite:///x.db", "postgresql://h/db", "postgres://h/db"], "mysql://h"),
    ("cache.url", ["memory://", "redis://h:6379/0", "rediss://h/1", "unix:///r.sock"], "x://"),
    ("s3.checksums", ["when_required", "when_supported"], "always"),
]


@pytest.mark.parametrize(
    ("key", "accepted", "refused"), ACCEPTED, ids=[f"{k}={r}" for k, _, r in ACCEPTED]
)
def test_checked_values(key: str, accepted: list[str], refused: str) -> None:
    for value in accepted:
        assert _value(parse_config(_at(key, value), env={}), key) == value
    assert _only_fault(_refusal(_at(key, refused))) == key.replace("s3.", "storage.")


def test_base_url_loses_its_trailing_slash() -> None:
    config = parse_config(_at("server.base_url", "https://a.example/sub/"), env={})
    assert config.server.base_url == "https://a.example/sub"


@pytest.mark.parametrize("name", ["a", "0", "a" * 64, "a.b_c-d9"])
def test_repository_names_accepted(name: str) -> None:
    config = parse_config({"repositories": [{"name": name, "format": "generic"}]}, env={})
    assert config.repositories[0].name == name and config.repositories[0].kind == "local"


@pytest.mark.parametrize("name", ["", "a" * 65, ".a", "-a", "_a", "A", "a/b", "a b"])
def test_repository_names_refused(name: str) -> None:
    message = _refusal({"repositories": [{"name": name, "format": "generic"}]})
    assert _only_fault(message) == "repositories[0].name"


def test_a_missing_variable_in_a_list_names_its_index() -> None:
    data = {"repositories": [{"name": "a", "format": "generic", "options": {"u": "${NOPE}"}}]}
    message = _refusal(data)
    assert message == "repositories[0].options.u: environment variable NOPE is not set"
    assert interpolate(["${A}", ["${A:-x}"]], {"A": "1"}) == ["1", ["1"]]


def test_errors_name_the_storage_key_without_the_driver_and_join_with_semicolons() -> None:
    message = _refusal({"storage": {"driver": "filesystem", "root": 5}, "server": {"port": "x"}})
    assert [part.split(": ")[0] for part in message.split("; ")] == [
        "server.port",
        "storage.root",
    ]
    assert _refusal([1]) == "config: the top level must be a mapping"


def test_an_empty_override_is_an_empty_string() -> None:
    config = parse_config({"server": {"host": "0.0.0.0"}}, env={"ARTIFACTAPI_SERVER__HOST": ""})
    assert config.server.host == ""


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTIFACTAPI_SERVER__PORT", "9191")
    assert parse_config({}).server.port == 9191
    assert parse_config({}, env={}).server.port == 8080


def test_load_config_passes_its_environment_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTAPI_SERVER__PORT", "9191")
    path = tmp_path / "a.yaml"
    path.write_text("", encoding="utf-8")  # an empty file is the defaults
    assert load_config(path, env={}).server.port == 8080
    assert load_config(path, env={"ARTIFACTAPI_SERVER__PORT": "7070"}).server.port == 7070
    path.write_text("server: {host: ünïcode.example}\n", encoding="utf-8")
    assert load_config(path, env={}).server.host == "ünïcode.example"


def test_header_timeout_defaults_to_30_seconds_and_must_be_positive() -> None:
    assert parse_config({}, env={}).server.header_timeout == 30
    assert (
        parse_config({"server": {"header_timeout": "500ms"}}, env={}).server.header_timeout == 0.5
    )
    with pytest.raises(ConfigError, match=r"server\.header_timeout"):
        parse_config({"server": {"header_timeout": "0s"}}, env={})
