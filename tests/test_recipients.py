"""Recipients and their Redis names: any id an identity provider may issue gets key names of
its own, derived by an encoding rather than trusted, so that distinct ids never share a key and
no id can move its keys out of its hash slot; keys of one recipient share one hash slot (one
script may touch them all on a cluster)."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from redis.crc import key_slot

from realtime.recipients import Recipient
from tests.awkward_ids import BAD_IDS

# Every id a token may carry: 1-256 characters, none a control character or a lone surrogate.
ids = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=256)


def names(recipient: Recipient) -> set[str]:
    return {
        recipient.stream_key, recipient.meta_key, recipient.live_channel,
        recipient.presence_key, recipient.revoked_key, recipient.idempotency_key("order-17"),
    }  # fmt: skip


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first `{` and the next `}`."""
    start = key.index("{") + 1
    return key[start : key.index("}", start)]


@given(ids)
@example("urn:user:42")
@example("a}b{c")
@example("%")
@example("é")
def test_the_id_in_a_key_is_its_percent_encoding_free_of_braces_colons_and_controls(
    ident: str,
) -> None:
    for recipient in (Recipient.user(ident), Recipient.business(ident)):
        tag = hash_tag(recipient.stream_key)
        kind, encoded = tag.split(":", 1)
        assert kind == recipient.kind
        assert not {"{", "}", ":"} & set(encoded)
        assert re.fullmatch(r"([A-Za-z0-9_.~-]|%[0-9A-F]{2})+", encoded)  # no space, no control
        # Decoding gives the id back, so two distinct ids never have the same key.
        assert unquote(encoded, errors="strict") == ident
        assert len({key_slot(name.encode()) for name in names(recipient)}) == 1


def merged_by_a_careless_encoding(ident: str) -> list[str]:
    return [
        ident.upper(), ident.lower(), ident.swapcase(),
        ident.replace(":", "%3A"), ident.replace(":", "%3a"), ident.replace("%", "%25"),
        ident.replace("%25", "%"), ident.replace("{", "%7B"), ident.replace("}", ""),
        unicodedata.normalize("NFC", ident), unicodedata.normalize("NFD", ident),
        unicodedata.normalize("NFKC", ident), ident.replace(" ", "+"), ident.replace(" ", "%20"),
    ]  # fmt: skip


@given(ids)
@example("a:b%3Ac")
@example("caf\u00e9")
@example("{Ab} %7B")
def test_distinct_ids_never_share_a_key(ident: str) -> None:
    key = Recipient.user(ident).stream_key
    for other in merged_by_a_careless_encoding(ident):
        if other != ident and other:
            assert Recipient.user(other).stream_key != key, (ident, other)
    assert Recipient.business(ident).stream_key != key


def test_ids_of_letters_digits_and_dashes_keep_their_key_names() -> None:
    assert Recipient.user("42").stream_key == "insight:{user:42}:log"
    assert Recipient.business("b-1_x.y").live_channel == "insight:{business:b-1_x.y}:live"
    assert Recipient.everyone().stream_key == "insight:{all}:log"


@pytest.mark.parametrize(
    "shape", ["urn:user:42", "auth0|5f3c", "a b", " a ", "Zoë", "{x}", "é" * 256], ids=repr
)
def test_an_id_an_identity_provider_issues_is_a_recipient(shape: str) -> None:
    assert Recipient.user(shape).ident == shape
    assert Recipient.business(shape).ident == shape


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if isinstance(BAD_IDS[b], str)])
def test_an_id_no_token_may_carry_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="1-256 characters without control characters"):
        Recipient.user(str(BAD_IDS[bad]))


def test_every_key_of_a_recipient_is_in_its_slot_and_recipients_differ() -> None:
    slots = set()
    for recipient in (Recipient.user("42"), Recipient.business("b1"), Recipient.everyone()):
        assert len({key_slot(name.encode()) for name in names(recipient)}) == 1
        slots.add(key_slot(recipient.stream_key.encode()))
    assert len(slots) == 3
