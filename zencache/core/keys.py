"""The cache key of a step invocation.

key = xxh3_128 over the domain tag `zencache/key/v1` and, in order:
1. the key format version (in the domain tag: bump it when any of this changes);
2. the step's identity, `module:qualname`;
3. its code fingerprint digest, or `version:<v>` when the step pins `version=`;
4. every parameter not in `ignore=`, by name, as the digest of its canonical encoding;
5. the output spec: each output's name and materializer identity@VERSION
   (`runtime` when the declared type leaves the choice to the returned value);
6. what the step reads from outside the pipeline, when it reads anything: each
   path's content (`path:<param>`) and environment variable (`env:<NAME>`), by
   name, as the digest inputs/external.py makes (a step that reads nothing from
   outside keeps the key it had before these existed);
7. the content id of every input artifact, by name.
Parts 1-6 do not depend on upstream results, so they are digested once per
invocation (`KeyParts.static`); a lookup then hashes only the input ids.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from ..hashing import ContentId, Hasher, digest_bytes

KEY_DOMAIN = "zencache/key/v1"
RUNTIME_MATERIALIZER = "runtime"


@dataclass(frozen=True, slots=True)
class KeyParts:
    identity: str
    code: str
    params: tuple[tuple[str, str], ...]  # sorted (name, value digest)
    outputs: tuple[tuple[str, str], ...]  # (name, materializer identity), in output order
    static: str
    externals: tuple[tuple[str, str], ...] = ()  # sorted (path:/env: name, digest)

    @classmethod
    def make(
        cls,
        identity: str,
        code: str,
        params: Mapping[str, str],
        outputs: tuple[tuple[str, str], ...],
        externals: tuple[tuple[str, str], ...] = (),
    ) -> KeyParts:
        h = Hasher(KEY_DOMAIN).text(identity).text(code)
        ordered = tuple(sorted(params.items()))
        h.text(str(len(ordered)))
        for name, digest in ordered:
            h.text(name).text(digest)
        h.text(str(len(outputs)))
        for name, materializer in outputs:
            h.text(name).text(materializer)
        # After the count-prefixed outputs, so that the section cannot be confused
        # with them; absent when empty, so that other steps' keys did not change.
        external = tuple(sorted(externals))
        if external:
            h.text("external").text(str(len(external)))
            for name, digest in external:
                h.text(name).text(digest)
        return cls(identity, code, ordered, outputs, h.hexdigest(), external)


def cache_key(static: str, inputs: tuple[tuple[str, ContentId], ...]) -> str:
    """The full key from the static digest and the (name, content id) of each input, sorted.

    The hit path's only hashing: the fields Hasher(KEY_DOMAIN).text(static), then
    .text(name).text(content_id) per input would feed, joined and hashed at once.
    """
    parts = [_KEY_PREFIX, _text_field(static)]
    for name, content_id in inputs:
        parts.append(_text_field(name))
        parts.append(_text_field(content_id))
    return digest_bytes(b"".join(parts))


class KeyTemplate:
    """cache_key for one invocation with its fixed fields encoded once: the hit path
    then encodes only the input ids. key(ids) == cache_key(static, zip(names, ids))."""

    __slots__ = ("_head", "_names", "_single")

    def __init__(self, static: str, input_names: tuple[str, ...]) -> None:
        self._head = _KEY_PREFIX + _text_field(static)
        self._names = tuple(_text_field(name) for name in input_names)
        # One input (most steps): every byte before its id, a content id's length
        # included, joined once.
        self._single = (
            self._head + self._names[0] + b"s" + _pack_len(_ID_BYTES)
            if len(self._names) == 1
            else None
        )

    def key(self, content_ids: list[ContentId]) -> str:
        if len(content_ids) == 1 and self._single is not None:
            return self.key_one(content_ids[0])
        parts = [self._head]
        for name, content_id in zip(self._names, content_ids, strict=True):
            parts.append(name)
            parts.append(_text_field(content_id))
        return digest_bytes(b"".join(parts))

    def key_one(self, content_id: ContentId) -> str:
        """key([content_id]) of an invocation with one input: a cached step's one hash."""
        if self._single is None:
            return self.key([content_id])  # not one input: key() says what is wrong
        data = content_id.encode("utf-8", "surrogatepass")  # _text_field, inlined
        if len(data) == _ID_BYTES:
            return digest_bytes(self._single + data)
        return digest_bytes(self._head + self._names[0] + _text_field(content_id))


_ID_BYTES = 32  # a content id: 32 hex digits


def _text_field(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return b"s" + _LEN.pack(len(data)) + data


_LEN = struct.Struct("<Q")
_pack_len = _LEN.pack
_KEY_PREFIX = _text_field(KEY_DOMAIN)
