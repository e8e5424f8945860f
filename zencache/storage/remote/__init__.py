"""The remote cache: a second tier behind the local one, shared by machines.

    backends.py  paths under one URL: file:// here, s3/gs/az/http(s) through obstore
    entries.py   step entries as the remote keeps them (signed with ZENCACHE_REMOTE_KEY)
    client.py    Remote: the action cache, the content-addressed store, faults, stats

`open_remote` makes a Remote from the project settings (zencache.config): the
URL (`remote`, ZENCACHE_REMOTE, `--remote`), the mode (`remote_mode`:
read-write, read-only, off) and the environment's ZENCACHE_REMOTE_KEY,
ZENCACHE_REMOTE_STRICT, ZENCACHE_REMOTE_TRUSTED and ZENCACHE_REMOTE_TIMEOUT.
Imports the storage layer's records and store, config and errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ...config import load_settings
from ...errors import ConfigError
from .client import PACK_CHUNKS, Remote, RemoteStats, RemoteWarning, artifact_packs, pack_groups
from .entries import EntryRefused, RemoteEntry

__all__ = [
    "PACK_CHUNKS",
    "EntryRefused",
    "Remote",
    "RemoteEntry",
    "RemoteStats",
    "RemoteWarning",
    "artifact_packs",
    "open_remote",
    "pack_groups",
]

_TRUE = ("1", "true", "yes", "on")


def open_remote(
    url: str | None = None,
    mode: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Remote | None:
    """The remote the settings name (`url`/`mode` win over them), or None when there is
    none or its mode is off."""
    settings = load_settings(remote=url or None, remote_mode=mode)
    if not settings.remote or settings.remote_mode == "off":
        return None
    env = os.environ if environ is None else environ
    secret = env.get("ZENCACHE_REMOTE_KEY") or None
    timeout_text = env.get("ZENCACHE_REMOTE_TIMEOUT", "10")
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if timeout <= 0:
        raise ConfigError(
            f"ZENCACHE_REMOTE_TIMEOUT is {timeout_text!r}; use a number of seconds above 0"
        )
    return Remote(
        settings.remote,
        mode=settings.remote_mode,
        strict=env.get("ZENCACHE_REMOTE_STRICT", "").strip().lower() in _TRUE,
        secret=secret.encode() if secret else None,
        trusted=env.get("ZENCACHE_REMOTE_TRUSTED", "").strip().lower() in _TRUE,
        timeout=timeout,
    )
