from pathlib import Path

import pytest

from app.config import (
    ConfigError,
    FilesystemStorageConfig,
    S3StorageConfig,
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
        ({"storage": {"driver": "s3", "bucket": "b", "part_size": "1MiB"}}, "storage.bucket"),
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


def test_header_timeout_defaults_to_30_seconds_and_must_be_positive() -> None:
    assert parse_config({}, env={}).server.header_timeout == 30
    assert (
        parse_config({"server": {"header_timeout": "500ms"}}, env={}).server.header_timeout == 0.5
    )
    with pytest.raises(ConfigError, match=r"server\.header_timeout"):
        parse_config({"server": {"header_timeout": "0s"}}, env={})
