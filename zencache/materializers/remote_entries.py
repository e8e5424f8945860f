"""Whether a step entry read from a remote cache may be used here.

Its artifact records must match their content ids (a forged or damaged record
never loads another value), their materializers must exist in this process, and
none may be a pickle unless the remote is trusted: loading one runs its writer's
code. Imports the storage layer's remote entries and this layer's registry.
"""

from __future__ import annotations

from ..storage.remote.entries import RemoteEntry
from . import registry
from .artifacts import artifact_id, pickle_allowed


def refusal(entry: RemoteEntry, *, trusted: bool) -> str:
    """Why a remote entry must not be used here ("" when it may)."""
    for record in entry.artifacts:
        if artifact_id(record.materializer, record.files) != record.content_id:
            return f"artifact {record.content_id} does not match its id"
        try:
            materializer = registry.by_identity(record.materializer)
        except Exception as exc:  # a materializer this process does not define
            return str(exc).split(";")[0]
        if materializer.USES_PICKLE and not (trusted and pickle_allowed()):
            return (
                f"output {record.content_id[:12]} is a pickle ({record.type_name}), and loading "
                "one runs its writer's code; set ZENCACHE_REMOTE_TRUSTED=1 if you trust "
                "everyone who writes to this remote"
            )
    return ""
