"""Hooks without a run: resolving names, calling with the keywords a hook names,
failures reported once or raised (strict), and entry points of installed packages
(a real dist-info in a temporary site folder on sys.path)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from zencache.errors import HookError, HookFailedWarning, UsageError
from zencache.executors import hooks as registry
from zencache.executors.hooks import Hooks, collect, entry_points, resolve


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def on_step_end(self, step: str, status: str) -> None:  # names two fields only
        self.calls.append(("on_step_end", {"step": step, "status": status}))

    def on_run_end(self, **fields: Any) -> None:  # takes everything
        self.calls.append(("on_run_end", fields))


def test_a_hook_gets_only_the_keywords_it_names_or_all_with_kwargs() -> None:
    hook = Recorder()
    hooks = Hooks([("r", hook)])
    hooks.call("on_step_end", step="a", status="cached", brand_new_field=1, key="k")
    hooks.call("on_run_end", run_id="r1", status="completed", extra=[1])
    hooks.call("on_step_start", step="a")  # Recorder has none: nothing happens
    assert hook.calls == [
        ("on_step_end", {"step": "a", "status": "cached"}),
        ("on_run_end", {"run_id": "r1", "status": "completed", "extra": [1]}),
    ]
    assert hooks.wants("on_step_end") and not hooks.wants("on_step_start")


def test_a_hook_with_none_of_the_methods_or_positional_only_parameters_is_refused() -> None:
    with pytest.raises(UsageError, match="has none of on_run_start"):
        Hooks([("x", object())])

    class Positional:
        def on_step_end(self, step, /, status):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(UsageError, match="positional-only parameter 'step'"):
        Hooks([("p", Positional())])


class Failing:
    def __init__(self) -> None:
        self.ends = 0

    def on_step_end(self, step: str) -> None:
        self.ends += 1
        raise ConnectionError(f"tracker down at {step}")


def test_a_failing_hook_is_reported_once_and_others_still_run() -> None:
    failing, recorder = Failing(), Recorder()
    hooks = Hooks([("failing", failing), ("recorder", recorder)])
    with pytest.warns(HookFailedWarning, match="tracker down at a") as caught:
        for name in ("a", "b", "c"):
            hooks.call("on_step_end", step=name, status="executed")
    assert len(caught) == 1
    assert "strict_hooks=True" in str(caught[0].message)
    assert failing.ends == 3  # still called: a tracker may come back
    assert [c[1]["step"] for c in recorder.calls] == ["a", "b", "c"]
    hooks.raise_errors()  # not strict: nothing to raise


def test_a_report_turned_into_an_error_by_the_warnings_filter_waits_for_the_end() -> None:
    hooks = Hooks([("failing", Failing())])
    # pytest runs with filterwarnings=error: the report is raised at the run's end,
    # not in the middle of the executor's bookkeeping.
    hooks.call("on_step_end", step="a")
    with pytest.raises(HookFailedWarning, match="tracker down at a"):
        hooks.raise_errors()


def test_strict_hooks_raise_hook_error_with_the_cause() -> None:
    hooks = Hooks([("failing", Failing())], strict=True)
    hooks.call("on_step_end", step="a")
    hooks.call("on_step_end", step="b")
    with pytest.raises(HookError, match=r"tracker down at a \(1 more") as caught:
        hooks.raise_errors()
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert caught.value.hook == "failing" and caught.value.method == "on_step_end"

    class BadStart:
        def on_run_start(self) -> None:
            raise RuntimeError("no server")

    with pytest.raises(HookError, match="on_run_start raised RuntimeError: no server"):
        Hooks([("bad", BadStart())], strict=True).call("on_run_start", run_id="r")


class Named:
    """Found by 'module:attribute' (a class: instantiated with no arguments)."""

    def on_run_end(self, **_: Any) -> None:
        pass


named_instance = Named()


def test_names_resolve_to_builtins_references_and_objects() -> None:
    label, hook = resolve(f"{__name__}:Named")
    assert isinstance(hook, Named) and label == f"{__name__}:Named"
    assert resolve(f"{__name__}:named_instance")[1] is named_instance
    assert resolve(f"{__name__}.named_instance")[1] is named_instance
    assert isinstance(resolve(Named)[1], Named)
    assert resolve(named_instance) == (f"{__name__}:Named", named_instance)
    assert registry.BUILTIN["mlflow"] == "zencache.integrations.mlflow:MLflowHook"
    assert registry.BUILTIN["wandb"] == "zencache.integrations.wandb:WandbHook"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuchhook", "unknown hook 'nosuchhook'; name a built-in hook"),
        ("no_such_module_zc:Hook", "cannot import 'no_such_module_zc'"),
        (f"{__name__}:Missing", "has no attribute 'Missing'"),
    ],
)
def test_unknown_hook_names_are_usage_errors(name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve(name)


# --- entry points ---------------------------------------------------------------------------


def install_plugin(site: Path, dist: str, module: str, entries: dict[str, str]) -> None:
    """A distribution as pip lays it out: a module and its dist-info with entry points."""
    (site / f"{module}.py").write_text(
        textwrap.dedent(
            """
            CALLS = []

            class Hook:
                def __init__(self):
                    CALLS.append(("init", type(self).__name__))

                def on_run_start(self, run_id):
                    CALLS.append(("on_run_start", run_id))

            class Other(Hook):
                pass
            """
        )
    )
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(
        f"[console_scripts]\nnot-a-hook = {module}:Hook\n\n[zencache.hooks]\n{lines}\n"
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv(registry.DISABLE_PLUGINS, raising=False)
    return folder


def test_entry_points_of_an_installed_package_are_found_and_called_first(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        site,
        "zc_plugin",
        "zc_plugin_mod",
        {"zz-tracker": "zc_plugin_mod:Other", "a-tracker": "zc_plugin_mod:Hook [tracing]"},
    )
    found = {ep.name: ep.value for ep in entry_points()}
    assert found["a-tracker"] == "zc_plugin_mod:Hook"
    assert found["zz-tracker"] == "zc_plugin_mod:Other"
    assert "not-a-hook" not in found  # another group

    mine = Recorder()
    hooks = collect([mine], project=[f"{__name__}:Named"])
    assert hooks is not None
    # Installed plugins (by name), then the project's, then the run's.
    assert hooks.labels[:2] == ["a-tracker", "zz-tracker"]
    assert hooks.labels[-2:] == [f"{__name__}:Named", f"{__name__}:Recorder"]
    assert hooks.objects[-1] is mine
    hooks.call("on_run_start", run_id="r1")
    module = sys.modules["zc_plugin_mod"]
    assert module.CALLS == [
        ("init", "Hook"),
        ("init", "Other"),
        ("on_run_start", "r1"),
        ("on_run_start", "r1"),
    ]


def test_a_plugin_named_in_the_settings_is_not_called_twice(site: Path) -> None:
    install_plugin(site, "zc_plugin2", "zc_plugin2_mod", {"tracker2": "zc_plugin2_mod:Hook"})
    hooks = collect(["tracker2"])
    assert hooks is not None and hooks.labels.count("tracker2") == 1


def test_plugins_can_be_turned_off(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(
        site,
        "zc_plugin3",
        "zc_plugin3_mod",
        {"t3a": "zc_plugin3_mod:Hook", "t3b": "zc_plugin3_mod:Hook"},
    )
    monkeypatch.setenv(registry.DISABLE_PLUGINS, "t3a")
    hooks = collect(None)
    assert hooks is not None and "t3a" not in hooks.labels and "t3b" in hooks.labels
    monkeypatch.setenv(registry.DISABLE_PLUGINS, "1")
    assert collect(None) is None
    # Turned off, a plugin can still be named.
    hooks = collect(["t3a"])
    assert hooks is not None and hooks.labels == ["t3a"]


def test_a_package_installed_after_a_first_scan_is_found(site: Path) -> None:
    before = {ep.name for ep in entry_points()}
    assert "late" not in before
    install_plugin(site, "zc_late", "zc_late_mod", {"late": "zc_late_mod:Hook"})
    assert "late" in {ep.name for ep in entry_points()}
