"""Project discovery and settings: precedence, sizes, the upward walk, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from zencache.config import find_project, load_settings, parse_size
from zencache.errors import ConfigError
from zencache.storage.cache import Cache


def write_pyproject(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyproject.toml"
    path.write_text(f"[project]\nname = 'x'\n\n[tool.zencache]\n{body}\n")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20GB", 20 * 10**9),
        ("20GiB", 20 * 2**30),
        ("500 MB", 500 * 10**6),
        ("1.5MiB", int(1.5 * 2**20)),
        ("123", 123),
        (4096, 4096),
        ("2tb", 2 * 10**12),
    ],
)
def test_sizes_are_decimal_or_binary_by_their_unit(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "20 parsecs", "-5GB", "1e9"])
def test_a_bad_size_names_the_value_and_the_forms(text: str) -> None:
    with pytest.raises(ConfigError, match="20GB"):
        parse_size(text)


def test_defaults_without_a_project(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    assert settings.cache_dir == tmp_path / ".zencache"
    assert settings.executor == "local"
    assert settings.strict is False
    assert settings.max_size is None
    assert settings.hooks == ()
    assert settings.remote_mode == "read-write"
    assert settings.source("executor") == "default"


def test_pyproject_then_environment_then_options(tmp_path: Path) -> None:
    pyproject = write_pyproject(
        tmp_path, 'executor = "processes"\nworkers = 3\nmax-size = "2GB"\nhooks = ["mlflow"]'
    )
    settings = load_settings(tmp_path, environ={})
    assert (settings.executor, settings.workers, settings.max_size) == ("processes", 3, 2 * 10**9)
    assert settings.hooks == ("mlflow",)
    assert settings.source("workers") == str(pyproject)

    env = {"ZENCACHE_WORKERS": "5", "ZENCACHE_STRICT": "1"}
    settings = load_settings(tmp_path, environ=env)
    assert (settings.workers, settings.strict) == (5, True)
    assert settings.source("workers") == "ZENCACHE_WORKERS"

    settings = load_settings(tmp_path, environ=env, workers=7)
    assert settings.workers == 7
    assert settings.source("workers") == "option"


def test_commands_from_a_subfolder_find_the_projects_cache(tmp_path: Path) -> None:
    (tmp_path / ".zencache").mkdir()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert load_settings(sub, environ={}).cache_dir == tmp_path / ".zencache"
    assert find_project(sub).cache_dir == tmp_path / ".zencache"


def test_a_new_cache_goes_beside_the_project_marker(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "")
    sub = tmp_path / "src"
    sub.mkdir()
    assert load_settings(sub, environ={}).cache_dir == tmp_path / ".zencache"


def test_the_walk_stops_at_the_project_marker(tmp_path: Path) -> None:
    (tmp_path / ".zencache").mkdir()  # an enclosing folder's cache
    inner = tmp_path / "inner"
    (inner / ".git").mkdir(parents=True)
    assert load_settings(inner, environ={}).cache_dir == inner / ".zencache"


def test_a_relative_cache_dir_is_relative_to_its_pyproject(tmp_path: Path) -> None:
    write_pyproject(tmp_path, 'cache_dir = "build/cache"')
    sub = tmp_path / "sub"
    sub.mkdir()
    assert load_settings(sub, environ={}).cache_dir == tmp_path / "build" / "cache"
    env = {"ZENCACHE_DIR": "here"}
    assert load_settings(sub, environ=env).cache_dir == sub / "here"


def test_an_unknown_setting_is_named_with_the_known_ones(tmp_path: Path) -> None:
    write_pyproject(tmp_path, 'max_sise = "1GB"')
    with pytest.raises(ConfigError, match=r"unknown setting 'max_sise'.*max_size"):
        load_settings(tmp_path, environ={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ZENCACHE_EXECUTOR": "threads"}, "use one of local, processes, dask"),
        ({"ZENCACHE_WORKERS": "many"}, "whole number"),
        ({"ZENCACHE_STRICT": "maybe"}, "true or false"),
        ({"ZENCACHE_REMOTE_MODE": "rw"}, "read-write, read-only, off"),
    ],
)
def test_bad_values_say_what_to_write(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ=env)


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.zencache\n")
    with pytest.raises(ConfigError, match="TOML"):
        load_settings(tmp_path, environ={})


def test_cache_without_a_path_uses_the_project_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZENCACHE_DIR", raising=False)
    write_pyproject(tmp_path, 'cache_dir = "shared-cache"')
    sub = tmp_path / "notebooks"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert Cache().path == tmp_path / "shared-cache"
