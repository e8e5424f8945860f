"""Golden cache keys: a change here is a cache wipe for every user (bump KEY_DOMAIN)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zencache.core.keys import KeyParts, KeyTemplate, cache_key


def _parts() -> KeyParts:
    return KeyParts.make(
        "pkg.mod:train",
        "f" * 32,
        {"seed": "b" * 32, "gamma": "a" * 32},  # sorted by name inside
        (("model", "zencache.materializers.sklearn:SklearnMaterializer@1"),),
    )


def test_static_and_full_keys_stay_the_same() -> None:
    static = _parts().static
    assert static == "922f832d6e9d698b635572e683c1293b"
    assert (
        cache_key(static, (("X", "1" * 32), ("y", "2" * 32))) == "c5c2667d8d6c2329307d92ab706b6be0"
    )
    assert cache_key(static, ()) == "d6d52ff914513defb50f9db331a72d78"
    assert cache_key("0" * 32, (("é", "3" * 32),)) == "13ccd7de32dc69f4b62d7a2cc1348f8f"


def test_input_names_and_ids_cannot_trade_bytes() -> None:
    static = _parts().static
    assert cache_key(static, (("ab", "c" * 32),)) != cache_key(static, (("a", "bc" * 16),))
    assert cache_key(static, (("x", "1" * 32),)) != cache_key(static, (("y", "1" * 32),))


def test_a_prepared_template_gives_cache_key() -> None:
    static = _parts().static
    for names in [(), ("x",), ("X", "y"), ("a", "é", "z")]:
        ids = [f"{i:032x}" for i in range(len(names))]
        assert KeyTemplate(static, names).key(ids) == cache_key(
            static, tuple(zip(names, ids, strict=True))
        )
    # The one-input fast path counts an id's bytes, not its characters.
    assert KeyTemplate(static, ("x",)).key(["é" * 16]) == cache_key(static, (("x", "é" * 16),))
    with pytest.raises(ValueError):
        KeyTemplate(static, ("x",)).key(["1" * 32, "2" * 32])


@given(
    name=st.text(max_size=8),
    content_id=st.text(max_size=40) | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)
def test_the_one_input_key_is_cache_key(name: str, content_id: str) -> None:
    static = _parts().static
    template = KeyTemplate(static, (name,))
    expected = cache_key(static, ((name, content_id),))
    assert template.key_one(content_id) == template.key([content_id]) == expected


def test_the_one_input_key_refuses_a_template_of_other_inputs() -> None:
    with pytest.raises(ValueError):
        KeyTemplate(_parts().static, ("x", "y")).key_one("1" * 32)
