"""Files, folders and environment variables as inputs by content, on a real cache.

Every scenario changes something outside the pipeline, then checks two things
against the truth: what `cache status` says (cached or stale, and why), and that
the run's value equals the value of a run on an empty cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from zencache import Cache, Dir, File, pipeline, step
from zencache.cli.phrasing import reason_lines
from zencache.errors import StepFailedError, UntrackedInputWarning, UsageError
from zencache.inspection.status import explain, pipeline_status

# --- steps under test ------------------------------------------------------------------------


@step
def read_file(path: Path) -> str:
    return path.read_text()


@step
def list_folder(folder: Path) -> list:
    return sorted(
        (p.relative_to(folder).as_posix(), p.read_bytes().hex())
        for p in folder.rglob("*")
        if p.is_file()
    )


@step
def read_str(path: File) -> str:
    with open(path) as f:
        return f.read()


@step
def count_dir(folder: Dir) -> int:
    return len(os.listdir(folder))


@step
def read_many(paths: list[Path]) -> str:
    return "|".join(p.read_text() for p in paths)


@step(by_name=("out",))
def write_to(text: str, out: Path) -> str:
    out.write_text(text)
    return text


@step(env=("ZC_TEST_MODE",))
def declared_env(n: int) -> str:
    return f"{n}:{os.environ.get('ZC_TEST_MODE', '<unset>')}"


def _helper_reads_env() -> str:
    return os.getenv("ZC_TEST_HELPER", "<unset>")


@step
def literal_env(n: int) -> str:
    return f"{n}:{os.environ.get('ZC_TEST_LITERAL', '<unset>')}:{_helper_reads_env()}"


@step
def subscript_env(n: int) -> str:
    return f"{n}:{os.environ['ZC_TEST_SUB']}" if "ZC_TEST_SUB" in os.environ else f"{n}:none"


@pipeline
def file_pipeline(path: Path = Path("data.csv")):
    return read_file(path=path)


@pipeline
def folder_pipeline(folder: Path = Path("images")):
    return list_folder(folder=folder)


@pipeline
def str_pipeline(path: str = "data.csv"):
    return read_str(path=File(path))


@pipeline
def annotated_pipeline(path: str = "data.csv", folder: str = "images"):
    return read_str(path=path), count_dir(folder=folder)


@pipeline
def many_pipeline():
    return read_many(paths=[Path("a.txt"), Path("b.txt")])


@pipeline
def by_name_pipeline(out: Path = Path("out.txt")):
    return write_to(text="hello", out=out)


@pipeline
def env_pipeline():
    return declared_env(n=1), literal_env(n=2), subscript_env(n=3)


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("ZC_TEST_MODE", "ZC_TEST_LITERAL", "ZC_TEST_HELPER", "ZC_TEST_SUB"):
        monkeypatch.delenv(name, raising=False)
    yield work


@pytest.fixture
def caches(tmp_path: Path) -> Iterator[list[Cache]]:
    made: list[Cache] = []
    yield made
    for c in made:
        c.close()


class Check:
    """Status, then a run, then the same run on an empty cache."""

    def __init__(self, cache: Cache, tmp_path: Path, caches: list[Cache]) -> None:
        self.cache = cache
        self.tmp_path = tmp_path
        self.caches = caches

    def __call__(self, instance, expect: dict[str, str]) -> dict[str, tuple[str, ...]]:  # type: ignore[no-untyped-def]
        statuses = {s.step: s for s in pipeline_status(instance, self.cache)}
        assert {n: s.status for n, s in statuses.items()} == expect, statuses
        run = instance.run(cache=self.cache)
        ran = {n: s.status for n, s in run.steps.items()}
        assert ran == {n: "cached" if v == "cached" else "executed" for n, v in expect.items()}
        fresh = Cache(self.tmp_path / f"fresh-{len(self.caches)}")
        self.caches.append(fresh)
        assert run.output() == instance.run(cache=fresh).output()
        return {n: tuple(reason_lines(s.reasons)) for n, s in statuses.items()}


@pytest.fixture
def check(cache: Cache, tmp_path: Path, caches: list[Cache]) -> Check:
    return Check(cache, tmp_path, caches)


def age(path: Path, seconds: float = 10.0) -> None:
    """Make a file look settled (older than the racy window), as files usually are."""
    when = os.stat(path).st_mtime_ns - int(seconds * 1e9)
    os.utime(path, ns=(when, when))


# --- files ---------------------------------------------------------------------------------------


def test_a_file_edit_is_stale_and_says_how_the_size_changed(project: Path, check: Check) -> None:
    (project / "data.csv").write_text("a,b\n1,2\n")
    check(file_pipeline(), {"read_file": "new"})
    check(file_pipeline(), {"read_file": "cached"})
    (project / "data.csv").write_text("a,b\n1,2\n3,4\n")
    reasons = check(file_pipeline(), {"read_file": "stale"})
    assert reasons["read_file"] == ("file data.csv changed (8 B -> 12 B)",)


def test_touch_without_change_and_same_bytes_rewritten_stay_cached(
    project: Path, check: Check
) -> None:
    data = project / "data.csv"
    data.write_text("x,y\n")
    age(data)
    check(file_pipeline(), {"read_file": "new"})
    os.utime(data)  # touch
    check(file_pipeline(), {"read_file": "cached"})
    data.unlink()
    data.write_text("x,y\n")  # replaced by a new file with the same bytes
    check(file_pipeline(), {"read_file": "cached"})


def test_a_change_within_the_same_mtime_tick_is_seen(
    project: Path, check: Check, cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No racy window: the file is memoized as soon as it is hashed, so the second
    # check below is answered by the stat memo, and only ctime can tell the edit.
    monkeypatch.setattr("zencache.inputs.trees.RACY_NS", 0)
    data = project / "data.csv"
    data.write_text("one\n")
    age(data)
    before = os.stat(data)
    check(file_pipeline(), {"read_file": "new"})
    check(file_pipeline(), {"read_file": "cached"})  # now from the stat memo
    assert cache.index.count("stats") == 1
    data.write_text("two\n")  # same size
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime as recorded
    assert os.stat(data).st_mtime_ns == before.st_mtime_ns
    reasons = check(file_pipeline(), {"read_file": "stale"})
    assert reasons["read_file"] == ("file data.csv changed (4 B, same size)",)


def test_a_file_hashed_in_its_own_tick_is_not_memoized(project: Path, cache: Cache) -> None:
    from zencache.inputs.trees import StatMemo, content_of

    data = project / "data.csv"
    data.write_text("fresh\n")  # mtime and ctime are now: racy
    memo = StatMemo(cache.index)
    first = content_of(str(data), memo)
    memo.flush()
    assert cache.index.count("stats") == 0
    data.write_text("fresh!")  # may share the tick; must be hashed again
    second = content_of(str(data), StatMemo(cache.index))
    assert first.digest != second.digest


def test_the_stat_memo_spares_hashing_settled_files(
    project: Path, cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zencache.inputs.trees import StatMemo, content_of

    monkeypatch.setattr("zencache.inputs.trees.RACY_NS", 0)  # ctime cannot be aged

    folder = project / "images"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i}.bin").write_bytes(bytes([i]) * 1000)
        age(folder / f"{i}.bin")
    memo = StatMemo(cache.index)
    first = content_of(str(folder), memo)
    memo.flush()
    assert memo.hashed_bytes == 20_000
    assert cache.index.count("stats") == 20
    again = StatMemo(cache.index)
    assert content_of(str(folder), again) == first
    assert again.hashed_bytes == 0

    (folder / "3.bin").write_bytes(b"edited")  # in place: same inode, its row replaced
    edited = StatMemo(cache.index)
    assert content_of(str(folder), edited).digest != first.digest
    edited.flush()
    assert edited.hashed_bytes == 6
    assert cache.index.count("stats") == 20


def test_a_missing_file_is_an_input_and_two_missing_paths_differ(
    project: Path, check: Check, cache: Cache
) -> None:
    with pytest.raises(StepFailedError):  # the step itself fails on a missing file
        file_pipeline(path=Path("nothing.csv")).run(cache=cache)
    (project / "data.csv").write_text("here\n")
    check(file_pipeline(), {"read_file": "new"})
    (project / "data.csv").unlink()
    statuses = pipeline_status(file_pipeline(), cache)
    assert statuses[0].status == "stale"
    assert reason_lines(statuses[0].reasons) == ["file data.csv (5 B) is missing now"]

    from zencache.inputs.external import path_external
    from zencache.inputs.trees import StatMemo

    memo = StatMemo(None)
    one = path_external("p", "missing-1.csv", None, memo, str(project))
    two = path_external("p", "missing-2.csv", None, memo, str(project))
    assert one.record["kind"] == "missing" and one.digest != two.digest


def test_a_relative_path_is_read_against_the_working_directory_and_recorded_as_given(
    project: Path, cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "data.csv").write_text("one\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("two\n")
    first = file_pipeline().run(cache=cache)
    assert first.output() == "one\n"
    monkeypatch.chdir(other)
    second = file_pipeline().run(cache=cache)
    assert second.steps["read_file"].status == "executed"
    assert second.output() == "two\n"
    entry = cache.index.get_step(second.steps["read_file"].key)
    assert entry is not None
    assert entry.external["path:path"]["path"] == "data.csv"


# --- folders -------------------------------------------------------------------------------------


def _images(project: Path) -> Path:
    folder = project / "images"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png", "sub/d.png"):
        (folder / name).write_bytes(name.encode() * 10)
    return folder


def test_folder_edits_name_the_files_that_changed(project: Path, check: Check) -> None:
    folder = _images(project)
    check(folder_pipeline(), {"list_folder": "new"})
    check(folder_pipeline(), {"list_folder": "cached"})
    for name in ("a.png", "b.png", "sub/d.png"):
        (folder / name).write_bytes(b"changed")
    reasons = check(folder_pipeline(), {"list_folder": "stale"})
    assert reasons["list_folder"] == ("3 files changed in images/ (a.png, b.png, sub/d.png)",)


def test_folder_add_remove_and_rename(project: Path, check: Check) -> None:
    folder = _images(project)
    check(folder_pipeline(), {"list_folder": "new"})
    (folder / "e.png").write_bytes(b"new file")
    reasons = check(folder_pipeline(), {"list_folder": "stale"})
    assert reasons["list_folder"] == ("1 file added to images/ (e.png)",)
    (folder / "e.png").unlink()
    check(folder_pipeline(), {"list_folder": "cached"})  # back to the first content
    (folder / "c.png").unlink()
    reasons = check(folder_pipeline(), {"list_folder": "stale"})
    assert reasons["list_folder"] == ("1 file removed from images/ (c.png)",)
    (folder / "a.png").rename(folder / "z.png")
    reasons = check(folder_pipeline(), {"list_folder": "stale"})
    assert reasons["list_folder"] == ("1 file renamed in images/ (a.png -> z.png)",)


def test_an_empty_folder_added_changes_the_key(project: Path, check: Check) -> None:
    folder = _images(project)
    check(folder_pipeline(), {"list_folder": "new"})
    (folder / "empty").mkdir()
    check(folder_pipeline(), {"list_folder": "stale"})


def test_symlinks_in_a_folder_count_by_target_and_are_not_followed_out(
    project: Path, check: Check, tmp_path: Path
) -> None:
    folder = _images(project)
    outside = tmp_path / "outside.txt"
    outside.write_text("v1")
    (folder / "link").symlink_to(outside)
    check(folder_pipeline(), {"list_folder": "new"})
    (folder / "link").unlink()
    (folder / "link").symlink_to("a.png")  # retargeted: inside the tree now
    reasons = check(folder_pipeline(), {"list_folder": "stale"})
    assert reasons["list_folder"] == ("1 file changed in images/ (link)",)


def test_a_symlink_parameter_follows_its_target(project: Path, check: Check) -> None:
    (project / "v1.csv").write_text("version 1\n")
    (project / "v2.csv").write_text("version 2\n")
    (project / "data.csv").symlink_to("v1.csv")
    check(file_pipeline(), {"read_file": "new"})
    (project / "data.csv").unlink()
    (project / "data.csv").symlink_to("v2.csv")
    check(file_pipeline(), {"read_file": "stale"})
    (project / "v2.csv").write_text("version 2, edited\n")
    check(file_pipeline(), {"read_file": "stale"})


def test_a_cache_folder_inside_a_folder_input_is_skipped(project: Path, cache: Cache) -> None:
    from zencache.inputs.trees import StatMemo, content_of

    folder = _images(project)
    first = content_of(str(folder), StatMemo(None))
    inner = Cache(folder / ".zencache")
    try:
        inner.store  # noqa: B018  (creates the folder with its CACHEDIR.TAG)
        assert content_of(str(folder), StatMemo(None)).digest == first.digest
    finally:
        inner.close()


# --- str paths: File, Dir and annotations ----------------------------------------------------------


def test_file_marks_a_string_as_a_file(project: Path, check: Check) -> None:
    (project / "data.csv").write_text("1\n")
    check(str_pipeline(), {"read_str": "new"})
    check(str_pipeline(), {"read_str": "cached"})
    (project / "data.csv").write_text("2\n")
    check(str_pipeline(), {"read_str": "stale"})


def test_strings_given_to_file_and_dir_annotations_are_tracked(project: Path, check: Check) -> None:
    (project / "data.csv").write_text("1\n")
    _images(project)
    check(annotated_pipeline(), {"read_str": "new", "count_dir": "new"})
    (project / "images" / "new.png").write_bytes(b"!")
    check(annotated_pipeline(), {"read_str": "cached", "count_dir": "stale"})


def test_file_naming_a_folder_is_refused_with_the_fix(project: Path, cache: Cache) -> None:
    _images(project)
    with pytest.raises(UsageError) as caught:
        str_pipeline(path="images").run(cache=cache)
    message = str(caught.value)
    assert "'path'" in message and "images" in message and "zencache.Dir" in message
    assert "\n" not in message


def test_a_list_of_paths_tracks_each(project: Path, check: Check) -> None:
    (project / "a.txt").write_text("A")
    (project / "b.txt").write_text("B")
    check(many_pipeline(), {"read_many": "new"})
    (project / "b.txt").write_text("BB")
    reasons = check(many_pipeline(), {"read_many": "stale"})
    assert reasons["read_many"] == ("file b.txt changed (1 B -> 2 B)",)


def test_by_name_keys_an_output_location_by_its_text(project: Path, cache: Cache) -> None:
    first = by_name_pipeline().run(cache=cache)
    assert first.steps["write_to"].status == "executed"
    (project / "out.txt").write_text("edited by someone")
    again = by_name_pipeline().run(cache=cache)
    assert again.steps["write_to"].status == "cached"


# --- environment variables ------------------------------------------------------------------------


def test_env_vars_declared_and_read_literally_enter_the_key(
    project: Path, check: Check, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = {"declared_env": "new", "literal_env": "new", "subscript_env": "new"}
    check(env_pipeline(), everything)
    check(env_pipeline(), dict.fromkeys(everything, "cached"))

    monkeypatch.setenv("ZC_TEST_MODE", "fast")
    reasons = check(
        env_pipeline(),
        {"declared_env": "stale", "literal_env": "cached", "subscript_env": "cached"},
    )
    assert reasons["declared_env"] == ('env ZC_TEST_MODE: unset -> "fast"',)

    monkeypatch.setenv("ZC_TEST_MODE", "full")
    reasons = check(
        env_pipeline(),
        {"declared_env": "stale", "literal_env": "cached", "subscript_env": "cached"},
    )
    assert reasons["declared_env"] == ('env ZC_TEST_MODE: "fast" -> "full"',)

    monkeypatch.delenv("ZC_TEST_MODE")
    check(env_pipeline(), dict.fromkeys(everything, "cached"))  # unset again: the first key

    monkeypatch.setenv("ZC_TEST_HELPER", "h")  # read by a helper the step calls
    reasons = check(
        env_pipeline(),
        {"declared_env": "cached", "literal_env": "stale", "subscript_env": "cached"},
    )
    assert reasons["literal_env"] == ('env ZC_TEST_HELPER: unset -> "h"',)

    monkeypatch.setenv("ZC_TEST_SUB", "s")  # os.environ["X"] and "X" in os.environ
    check(
        env_pipeline(),
        {"declared_env": "cached", "literal_env": "cached", "subscript_env": "stale"},
    )


def test_env_values_are_recorded_and_secrets_are_not(
    project: Path, cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    @step(env=("ZC_TEST_MODE", "ZC_TEST_API_TOKEN"))
    def uses(n: int) -> int:
        return n

    @pipeline
    def flow():
        return uses(n=1)

    monkeypatch.setenv("ZC_TEST_MODE", "fast")
    monkeypatch.setenv("ZC_TEST_API_TOKEN", "hunter2")
    run = flow().run(cache=cache)
    entry = cache.index.get_step(run.steps["uses"].key)
    assert entry is not None
    assert entry.external["env:ZC_TEST_MODE"]["value"] == "fast"
    assert "hunter2" not in repr(entry.external)
    monkeypatch.setenv("ZC_TEST_API_TOKEN", "other")
    statuses = pipeline_status(flow(), cache)
    assert statuses[0].status == "stale"
    assert "not recorded" in reason_lines(statuses[0].reasons)[0]


def test_a_computed_env_name_is_reported_as_untracked(project: Path, cache: Cache) -> None:
    @step
    def computed(name: str) -> str:
        return os.environ.get(name, "")

    @pipeline
    def flow():
        return computed(name="HOME")

    found = explain(flow(), cache, "computed")
    assert any("computed" in note and "env=" in note for note in found.untracked)
    with pytest.warns(UntrackedInputWarning, match=r"name is computed.*env="):
        flow().run(cache=cache)


def test_writes_to_the_environment_are_not_inputs(project: Path, cache: Cache) -> None:
    from zencache.fingerprint import fingerprint

    def sets() -> None:
        os.environ["ZC_TEST_WRITTEN"] = "1"
        os.environ.pop("ZC_TEST_POPPED", None)

    fp = fingerprint(sets)
    assert fp.env == ()
    assert not any("environment" in n for n in fp.untracked)


# --- outputs that are files ------------------------------------------------------------------------


@step
def write_folder(n: int) -> Path:
    out = Path("written")
    (out / "sub").mkdir(parents=True, exist_ok=True)
    (out / "a.txt").write_text("a" * n)
    (out / "sub" / "big.bin").write_bytes(b"\x01" * (3 << 20))
    (out / "link").unlink(missing_ok=True)
    (out / "link").symlink_to("a.txt")
    return out


@step
def write_file(text: str) -> Path:
    out = Path("model.txt")
    out.write_text(text)
    return out


@step
def describe(folder: Path, model: Path) -> dict:
    return {
        "folder": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")),
        "a": (folder / "a.txt").read_text(),
        "link": os.readlink(folder / "link"),
        "model": model.read_text(),
        "model_name": model.name,
        "where": str(folder),
    }


@pipeline
def output_pipeline(n: int = 3, text: str = "weights"):
    return describe(folder=write_folder(n=n), model=write_file(text=text))


def _read_only(path: Path) -> bool:
    return not any(
        os.stat(p).st_mode & 0o222 for p in [path, *path.rglob("*")] if not p.is_symlink()
    )


def test_a_returned_path_is_stored_by_content_and_handed_on_read_only(
    project: Path, cache: Cache
) -> None:
    first = output_pipeline().run(cache=cache)
    value = first.output()
    assert value["a"] == "aaa" and value["model"] == "weights"
    assert value["folder"] == ["a.txt", "link", "sub", "sub/big.bin"]
    assert value["link"] == "a.txt" and value["model_name"] == "model.txt"
    copy = Path(value["where"])
    assert copy.is_relative_to(cache.path) and _read_only(copy)

    # Editing or removing the originals cannot change what the cache hands on.
    (project / "model.txt").write_text("tampered")
    import shutil

    shutil.rmtree(project / "written")
    again = output_pipeline().run(cache=cache)
    assert {s.status for s in again.steps.values()} == {"cached"}
    loaded = cache.index.get_step(again.steps["write_file"].key)
    assert loaded is not None
    path = again.steps["write_file"].output()
    assert isinstance(path, Path) and path.read_text() == "weights"


def test_an_unchanged_rewrite_of_a_path_output_spares_downstream(
    project: Path, cache: Cache
) -> None:
    output_pipeline().run(cache=cache)

    @step
    def write_file(text: str) -> Path:  # new code, same bytes
        out = Path("model.txt")
        out.write_text(text.upper().lower())
        return out

    @pipeline
    def changed(n: int = 3, text: str = "weights"):
        return describe(folder=write_folder(n=n), model=write_file(text=text))

    run = changed().run(cache=cache)
    assert run.steps["write_file"].status == "executed"
    assert run.steps["describe"].status == "cached"  # early cutoff: same content id


def test_gc_and_clear_remove_read_only_copies(project: Path, cache: Cache) -> None:
    from zencache.maintenance import clear

    output_pipeline().run(cache=cache).output()
    assert (cache.path / "files").is_dir()
    clear(cache)
    assert not (cache.path / "files").exists()
    assert cache.index.count("trees") == 0 and cache.index.count("stats") == 0


def test_the_processes_executor_hashes_paths_and_hands_on_copies(
    project: Path, cache: Cache
) -> None:
    (project / "data.csv").write_text("a,b\n")
    local = output_pipeline().run(cache=Cache(project / "local-cache"))
    run = output_pipeline().run(cache=cache, executor="processes", max_workers=2)
    assert {n: s.status for n, s in run.steps.items()} == dict.fromkeys(run.steps, "executed")
    value = run.output()
    assert {k: v for k, v in value.items() if k != "where"} == {
        k: v for k, v in local.output().items() if k != "where"
    }
    assert Path(value["where"]).is_relative_to(cache.path)
    assert file_pipeline().run(cache=cache, executor="processes").output() == "a,b\n"
    Cache(project / "local-cache").close()


def test_without_its_recorded_listing_a_folder_change_is_summed_up(
    project: Path, cache: Cache
) -> None:
    folder = _images(project)
    folder_pipeline().run(cache=cache)
    cache.index.write([("trees", key, None) for key in cache.index.keys("trees")])
    (folder / "new.png").write_bytes(b"12345")
    (status,) = pipeline_status(folder_pipeline(), cache)
    assert status.status == "stale"
    assert reason_lines(status.reasons) == [
        "folder images/ changed (4 files, 240 B -> 5 files, 245 B)"
    ]


@step
def optional_config(path: Path) -> str:
    return path.read_text() if path.exists() else "<defaults>"


@pipeline
def optional_pipeline(path: Path = Path("config.toml")):
    return optional_config(path=path)


def test_a_missing_file_that_appears_later_is_seen(project: Path, check: Check) -> None:
    check(optional_pipeline(), {"optional_config": "new"})
    check(optional_pipeline(), {"optional_config": "cached"})
    (project / "config.toml").write_text("x = 1\n")
    reasons = check(optional_pipeline(), {"optional_config": "stale"})
    assert reasons["optional_config"] == ("file config.toml (6 B) exists now (it was missing)",)
    (project / "config.toml").unlink()
    check(optional_pipeline(), {"optional_config": "cached"})  # missing again: the first key
