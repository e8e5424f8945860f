"""Step entries as they travel through a remote's action cache, `ac/<step key>`.

An entry is input from others (a shared bucket), so it is checked before it is
believed: its stated key must be the key it was asked for, and with a shared
secret (ZENCACHE_REMOTE_KEY) it must carry a valid HMAC-SHA256 of its body, or it
is ignored. Its artifact records are checked against their content ids one layer
up (executors/remote_tier.py, which has the artifact id function).

Encoding: one line `zencache-remote-entry/1 <hex HMAC or ->`, then a JSON body
with the step record, its outputs' artifact records and the environment it ran
in, each in the index's own versioned encoding (base64), so that lineage and
audit read a remote hit as they read a local one. Imports records only.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from ..records import ArtifactRecord, EnvRecord, StepRecord

FORMAT = b"zencache-remote-entry/1"
_DOMAIN = b"zencache/remote-entry/v1\0"


class EntryRefused(ValueError):
    """An entry that must not be used: unsigned or wrongly signed, for another key, damaged."""


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    step: StepRecord
    artifacts: tuple[ArtifactRecord, ...]
    env: EnvRecord | None = None
    # As read from the remote (decode): the entry, and its records in the index's
    # encoding, so that recording a hit does not encode them again.
    raw: bytes = field(default=b"", compare=False, repr=False)
    raw_records: tuple[bytes, ...] = field(default=(), compare=False, repr=False)

    def index_records(self) -> tuple[bytes, tuple[bytes, ...]]:
        """(step record, artifact records) in the index's encoding."""
        if self.raw_records:
            return self.raw_records[0], self.raw_records[1:]
        return self.step.encode(), tuple(a.encode() for a in self.artifacts)

    @property
    def key(self) -> str:
        return self.step.key

    def encode(self, secret: bytes | None = None) -> bytes:
        body = json.dumps(
            {
                "key": self.step.key,
                "step": _b64(self.step.encode()),
                "artifacts": [_b64(a.encode()) for a in self.artifacts],
                "env": _b64(self.env.encode()) if self.env is not None else None,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        signature = sign(body, secret) if secret else b"-"
        return FORMAT + b" " + signature + b"\n" + body

    @classmethod
    def decode(cls, data: bytes, key: str, secret: bytes | None = None) -> RemoteEntry:
        """The entry stored for `key`; EntryRefused unless it is sound (and signed, with a secret)."""
        head, sep, body = data.partition(b"\n")
        parts = head.split(b" ")
        if not sep or len(parts) != 2 or parts[0] != FORMAT:
            raise EntryRefused("not a zencache remote entry of a format this version reads")
        if secret is not None:
            import hmac

            if parts[1] == b"-":
                raise EntryRefused("unsigned, and ZENCACHE_REMOTE_KEY requires signed entries")
            if not hmac.compare_digest(parts[1], sign(body, secret)):
                raise EntryRefused("its signature does not match ZENCACHE_REMOTE_KEY")
        try:
            fields = json.loads(body)
            raw_step = base64.b64decode(fields["step"])
            raw_artifacts = tuple(base64.b64decode(a) for a in fields["artifacts"])
            step = StepRecord.decode(raw_step)
            artifacts = tuple(ArtifactRecord.decode(a) for a in raw_artifacts)
            env = EnvRecord.decode(base64.b64decode(fields["env"])) if fields["env"] else None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EntryRefused(f"cannot be decoded ({type(exc).__name__}: {exc})") from exc
        if fields.get("key") != key or step.key != key:
            raise EntryRefused(f"it is stored under {key} but describes step key {step.key}")
        by_id = {a.content_id for a in artifacts}
        if not set(step.output_ids) <= by_id:
            raise EntryRefused("it names outputs it carries no artifact record for")
        return cls(step, artifacts, env, bytes(data), (raw_step, *raw_artifacts))


def sign(body: bytes, secret: bytes) -> bytes:
    import hashlib
    import hmac

    return hmac.new(secret, _DOMAIN + body, hashlib.sha256).hexdigest().encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
