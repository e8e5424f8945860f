"""Where a cache lives (explicit path > $ZENCACHE_DIR > ./.zencache), what a cache
folder holds, and the folders that are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zencache.errors import CacheError, CacheVersionError
from zencache.storage.cache import DEFAULT_DIRNAME, ENV_VAR, Cache, resolve_cache_dir


@pytest.fixture
def caches() -> Iterator[list[Cache]]:
    """Caches a test makes itself; their indexes are released at teardown."""
    made: list[Cache] = []
    yield made
    for cache in made:
        cache.close()


# --- resolution order ---------------------------------------------------------------------


def test_explicit_path_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    assert Cache(tmp_path / "explicit").path == tmp_path / "explicit"
    assert Cache(str(tmp_path / "explicit")).path == tmp_path / "explicit"


def test_environment_wins_over_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    assert Cache().path == tmp_path / "from-env"


def test_default_is_dot_zencache_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert DEFAULT_DIRNAME == ".zencache"
    assert Cache().path == tmp_path / ".zencache"
    monkeypatch.setenv(ENV_VAR, "")  # empty means unset
    assert Cache().path == tmp_path / ".zencache"


def test_relative_and_home_paths_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Cache("rel/cache").path == tmp_path / "rel" / "cache"
    assert Cache("~/c").path == tmp_path / "home" / "c"
    monkeypatch.setenv(ENV_VAR, "env-rel")
    assert resolve_cache_dir() == tmp_path / "env-rel"


def test_the_location_is_fixed_when_the_cache_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    cache = Cache()
    monkeypatch.chdir(tmp_path / "b")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))
    assert cache.path == tmp_path / "a" / ".zencache"
    assert Cache().path == tmp_path / "elsewhere"


def test_making_a_cache_touches_nothing(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "lazy")
    assert not cache.exists()
    assert not (tmp_path / "lazy").exists()
    assert repr(cache) == f"Cache({str(tmp_path / 'lazy')!r})"


# --- layout -----------------------------------------------------------------------------------


def test_first_use_creates_the_layout(cache: Cache) -> None:
    cache.store.put(b"x")
    assert cache.index.count("steps") == 0
    root = cache.path
    assert cache.exists()
    assert (
        (root / "CACHEDIR.TAG")
        .read_text()
        .startswith(
            "Signature: 8a477f597d28d172789f06886806bc55"  # the value the spec requires
        )
    )
    assert (root / ".gitignore").read_text() == "*\n"
    assert (root / "objects").is_dir()
    assert (root / "index.lmdb").is_dir()
    assert (root / "index.lmdb" / "data.mdb").is_file()
    assert cache.store.root == root / "objects"


def test_an_empty_existing_folder_is_accepted(tmp_path: Path, caches: list[Cache]) -> None:
    (tmp_path / "empty").mkdir()
    cache = Cache(tmp_path / "empty")
    caches.append(cache)
    cache.index.write([("latest", b"k", b"v")])
    assert (tmp_path / "empty" / "CACHEDIR.TAG").is_file()


def test_an_existing_cache_is_reopened_with_its_contents(
    tmp_path: Path, caches: list[Cache]
) -> None:
    first = Cache(tmp_path / "c")
    object_id = first.store.put(b"kept")
    first.index.write([("latest", b"p/s", b"key")])
    first.close()
    (tmp_path / "c" / ".gitignore").unlink()  # the user's edit survives reopening
    again = Cache(tmp_path / "c")
    caches.append(again)
    assert again.store.get(object_id) == b"kept"
    assert again.index.latest_key("p", "s") == "key"
    assert not (tmp_path / "c" / ".gitignore").exists()


def test_caches_on_one_folder_share_one_index(tmp_path: Path, caches: list[Cache]) -> None:
    a, b = Cache(tmp_path / "c"), Cache(tmp_path / "c" / ".." / "c")
    caches.append(a)
    assert a.index is b.index
    a.close()
    reopened = a.index  # closing releases it; the next use opens it again
    assert reopened is not None
    assert b.index is reopened


# --- refused folders --------------------------------------------------------------------------


def test_a_non_empty_foreign_folder_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    cache = Cache(project)
    for use in (lambda: cache.store, lambda: cache.index):
        with pytest.raises(CacheError, match="not a zencache cache") as info:
            use()
        assert str(project) in str(info.value)
        assert info.value.exit_code == 2
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]  # left untouched


def test_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    cache = Cache(path)
    for use in (lambda: cache.store, lambda: cache.index):
        with pytest.raises(CacheError, match="is a file") as info:
            use()
        assert str(path) in str(info.value)
    assert path.read_text() == "not a folder"


def test_a_cache_of_another_format_is_refused(tmp_path: Path, caches: list[Cache]) -> None:
    first = Cache(tmp_path / "c")
    first.index.write([("meta", b"format", b"zencache-index/0")])
    first.close()
    again = Cache(tmp_path / "c")
    caches.append(again)
    with pytest.raises(CacheVersionError, match="another zencache format"):
        again.index  # noqa: B018
