"""What a step read from outside the pipeline, in words: files, folders and
environment variables as explain, runs show, lineage and cache status show them.
Light (json only), so that the commands that list records need not import the
status model. Imports nothing of ours.
"""

from __future__ import annotations

import json
from typing import Any


def env_text(record: dict[str, Any]) -> str:
    if record.get("value") is None:
        return "set" if record.get("set") else "unset"
    return json.dumps(record["value"], ensure_ascii=False)


def describe_path(record: dict[str, Any]) -> str:
    """`file data.csv (12.1 MB)`, `folder images/ (3 files, 1.2 MB)`, ..."""
    path, kind = record.get("path", ""), record.get("kind")
    if kind == "file":
        return f"file {path} ({size_text(record.get('size', 0))})"
    if kind == "dir":
        return f"folder {folder_name(path)} ({folder_facts(record)})"
    if kind == "link":
        return f"link {path} (to {record.get('target', '?')}, which does not exist)"
    return f"{path} (missing)"


def external_lines(external: dict[str, dict[str, Any]]) -> list[str]:
    """What a step read from outside, one line each: `file data.csv  <digest>  (12,100 bytes)`,
    `env MODE = "fast"`; for explain, runs show and lineage."""
    lines = []
    for name, entry in sorted(external.items()):
        if name.startswith("env:"):
            value = "(set; not recorded)" if entry.get("redacted") else env_text(entry)
            lines.append(f"env {entry.get('name', name[4:])} = {value}")
            continue
        kind = entry.get("kind", "?")
        label = {"file": "file", "dir": "folder", "link": "link", "missing": "missing"}.get(
            kind, kind
        )
        facts = ""
        if kind == "file":
            facts = f"  ({entry.get('size', 0):,} bytes)"
        elif kind == "dir":
            facts = f"  ({entry.get('count', 0):,} files, {entry.get('size', 0):,} bytes)"
        digest = entry["digest"][:12] if entry.get("digest") and kind != "link" else ""
        lines.append(f"{label} {entry.get('path', name)}  {digest}{facts}".rstrip())
    return lines


def some(names: tuple[str, ...], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def count_files(n: int) -> str:
    return f"{n:,} file" + ("" if n == 1 else "s")


def folder_name(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def folder_facts(record: dict[str, Any]) -> str:
    return f"{count_files(record.get('count', 0))}, {size_text(record.get('size', 0))}"


def size_text(n: float) -> str:
    """Decimal units, one decimal: 12.1 MB."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 999.95 or unit == "TB":
            break
    return f"{n:.1f} {unit}"
