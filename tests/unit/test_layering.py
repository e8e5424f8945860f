"""The architecture, enforced: each module imports only from layers below it
(DESIGN.md §8), the public facade is exactly what it says, and `import zencache`
stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import zencache

PACKAGE = Path(zencache.__file__).parent

# Lowest first. A module may import its own layer and those before it. Entries are
# package paths; the longest one that prefixes a module names its layer.
LAYERS: list[set[str]] = [
    {"errors", "hashing", "config", "integrations.constants"},
    {"storage.store", "storage.space"},
    {"storage.lmdb_file"},
    {"storage.index_check"},
    {
        "storage.index",
        "storage.lease_slots",
        "storage.records",
        "storage.cache",
        "storage.protocols",
        "storage",
    },
    {"fingerprint", "inputs"},
    {"materializers", "io"},
    {"maintenance"},
    {"core"},
    {"executors"},
    {"inspection", "results"},
    {"cli", "__main__", "steps", "pipelines", "integrations", "repository"},
]


def layer_of(module: str) -> int:
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        for number, names in enumerate(LAYERS):
            if prefix in names:
                return number
    raise AssertionError(f"module zencache.{module} is in no layer: add it to LAYERS")


# Imports that point up a layer on purpose, each deferred into a function so that
# importing the lower module does not load the upper one. Keyed by
# (importing module, function, imported module); anything not listed here fails.
# The CLI's lazy imports need no entry: they point down (they are deferred only to
# keep `zencache --help` fast).
DEFERRED_UPWARD: dict[tuple[str, str, str], str] = {
    ("core.pipeline", "run", "executors"): (
        "PipelineInstance.run() is the public entry point (`pipeline(...).run()`); the "
        "executors it hands the run to are built on core, so core can reach them only "
        "when a run starts"
    ),
}


@dataclass(frozen=True, slots=True)
class Import:
    target: str  # a zencache module, without the "zencache." prefix
    function: str | None  # the enclosing function, None at import time
    type_only: bool  # under `if TYPE_CHECKING:`
    line: int


def zencache_imports(path: Path, module: str) -> list[Import]:
    """Every import of a zencache module in a file: at module level, inside functions
    (deferred imports run too, only later), and under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found: list[Import] = []

    def targets(node: ast.stmt) -> list[str]:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
                if target:
                    return [target]
                # `from .. import x`: x is a module, or a dunder like __version__
                return [a.name for a in node.names if not a.name.startswith("__")]
            if node.module and node.module.startswith("zencache."):
                return [node.module.removeprefix("zencache.")]
            return []
        if isinstance(node, ast.Import):
            return [
                a.name.removeprefix("zencache.")
                for a in node.names
                if a.name.startswith("zencache.")
            ]
        return []

    def visit(node: ast.AST, function: str | None, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner, guarded = function, type_only
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = child.name if function is None else f"{function}.{child.name}"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(ast.Module(body=child.body, type_ignores=[]), function, True)
                visit(ast.Module(body=child.orelse, type_ignores=[]), function, type_only)
                continue
            if isinstance(child, ast.stmt):
                for target in targets(child):
                    found.append(Import(target, inner, guarded, child.lineno))
            visit(child, inner, guarded)

    visit(tree, None, False)
    return found


def package_modules() -> list[tuple[Path, str]]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in relative.parts if p != "__init__"]
        if parts:  # the facade re-exports from every layer by design
            modules.append((path, ".".join(parts)))
    return modules


def test_every_module_imports_only_lower_layers() -> None:
    violations = []
    used = set()
    for path, module in package_modules():
        own = layer_of(module)
        for found in zencache_imports(path, module):
            if layer_of(found.target) <= own:
                continue
            entry = (module, found.function or "", found.target)
            if found.function is not None and entry in DEFERRED_UPWARD:
                used.add(entry)
                continue
            where = "at import time" if found.function is None else f"in {found.function}()"
            kind = " (TYPE_CHECKING)" if found.type_only else ""
            violations.append(
                f"zencache.{module}:{found.line} (layer {own}) imports zencache.{found.target} "
                f"(layer {layer_of(found.target)}) {where}{kind}"
            )
    assert not violations, "\n".join(violations)
    # A stale allowance would let a new upward import of the same shape in unseen.
    assert used == set(DEFERRED_UPWARD), (
        f"unused DEFERRED_UPWARD entries: {set(DEFERRED_UPWARD) - used}"
    )


def test_the_walker_sees_deferred_and_type_only_imports(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..errors import UsageError\n"
        "if TYPE_CHECKING:\n"
        "    from ..core.runs import Run\n"
        "class A:\n"
        "    def method(self):\n"
        "        def inner():\n"
        "            from zencache.cli import main\n"
        "        import zencache.executors.local\n"
        "try:\n"
        "    from .. import maintenance\n"
        "except ImportError:\n"
        "    pass\n"
    )
    found = {
        (i.target, i.function, i.type_only) for i in zencache_imports(source, "storage.sample")
    }
    assert found == {
        ("errors", None, False),
        ("core.runs", None, True),
        ("cli", "method.inner", False),
        ("executors.local", "method", False),
        ("maintenance", None, False),
    }


def test_only_the_storage_layer_touches_lmdb() -> None:
    """LMDB transactions stay behind the index's methods."""
    allowed = {
        "storage.index",
        # Reads a possibly damaged file in child processes (a SIGBUS or an LMDB abort
        # there must not take the caller down) and salvages it entry by entry, below
        # any Index: its own `import lmdb` only locates the package for those children.
        "storage.index_check",
    }
    found = []
    for path, module in package_modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "lmdb" or n.startswith("lmdb.") for n in names) and module not in allowed:
                found.append(f"zencache.{module}:{node.lineno}")
    assert not found, f"lmdb imported outside the allowed storage modules: {found}"


def test_public_names_are_sorted_and_importable() -> None:
    assert zencache.__all__ == sorted(zencache.__all__)
    assert set(zencache.__all__) == {
        "Artifact",
        "BaseMaterializer",
        "Cache",
        "Dir",
        "File",
        "Output",
        "Run",
        "StepResult",
        "get_step_context",
        "log_metadata",
        "log_metric",
        "pipeline",
        "step",
    }
    for name in zencache.__all__:
        assert getattr(zencache, name) is not None


def test_import_zencache_loads_no_heavy_library() -> None:
    code = (
        "import sys, zencache, zencache.cli, zencache.repository\n"
        "heavy = sorted(m for m in ('numpy', 'sklearn', 'joblib', 'pandas', 'pyarrow', 'dask')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
