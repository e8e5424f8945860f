"""The architecture, enforced: each module imports only from layers below it
(DESIGN.md §8), the public facade is exactly what it says, and `import zencache`
stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import zencache

PACKAGE = Path(zencache.__file__).parent

# Lowest first. A module may import its own layer and those before it. Entries are
# package paths; the longest one that prefixes a module names its layer.
LAYERS: list[set[str]] = [
    {"errors", "hashing", "config", "integrations.constants"},
    {"storage.store", "storage.space"},
    {"storage.index_check"},
    {"storage.index", "storage.lease_table", "storage.records", "storage.cache", "storage"},
    {"fingerprint"},
    {"materializers", "io"},
    {"maintenance"},
    {"core"},
    {"executors"},
    {"inspection"},
    {"cli", "__main__", "steps", "pipelines", "integrations"},
]


def layer_of(module: str) -> int:
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        for number, names in enumerate(LAYERS):
            if prefix in names:
                return number
    raise AssertionError(f"module zencache.{module} is in no layer: add it to LAYERS")


def module_level_imports(path: Path, module: str) -> list[str]:
    """Imports of zencache modules made at import time (not in functions, not TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found: list[str] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = ".".join([*base, node.module] if node.module else base)
                    if target:
                        found.append(target)
                    else:  # `from .. import x`: x is a module, or a dunder like __version__
                        found.extend(a.name for a in node.names if not a.name.startswith("__"))
                elif node.module and node.module.startswith("zencache."):
                    found.append(node.module.removeprefix("zencache."))
            elif isinstance(node, ast.Import):
                found.extend(
                    a.name.removeprefix("zencache.")
                    for a in node.names
                    if a.name.startswith("zencache.")
                )
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))

    visit(tree.body)
    return found


def test_every_module_imports_only_lower_layers() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in relative.parts if p != "__init__"]
        if not parts:
            continue  # the facade re-exports from every layer by design
        module = ".".join(parts)
        own = layer_of(module)
        for imported in module_level_imports(path, module):
            if layer_of(imported) > own:
                violations.append(f"zencache.{module} (layer {own}) imports zencache.{imported}")
    assert not violations, "\n".join(violations)


def test_public_names_are_sorted_and_importable() -> None:
    assert zencache.__all__ == sorted(zencache.__all__)
    assert set(zencache.__all__) == {
        "BaseMaterializer",
        "Cache",
        "Output",
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
        "import sys, zencache, zencache.cli\n"
        "heavy = sorted(m for m in ('numpy', 'sklearn', 'joblib', 'pandas', 'pyarrow', 'dask')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
