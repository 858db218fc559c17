"""Recipients and their Redis names: ids that cannot be confused, and keys of one recipient
in one hash slot (so one script may touch them all on a cluster)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from realtime.recipients import Recipient


@pytest.mark.parametrize("ident", ["", "a b", "a:b", "a{b", "a}b", "abc\n", "\n", "x" * 201])
def test_an_id_that_could_be_confused_is_refused(ident: str) -> None:
    with pytest.raises(ValueError, match="id must be"):
        Recipient.user(ident)


def test_every_key_of_a_recipient_is_in_its_slot_and_recipients_differ() -> None:
    slots = set()
    for recipient in (Recipient.user("42"), Recipient.business("b1"), Recipient.everyone()):
        names = {
            recipient.stream_key, recipient.meta_key, recipient.live_channel,
            recipient.idempotency_key("order-17"),
        }  # fmt: skip
        assert len({key_slot(name.encode()) for name in names}) == 1
        slots.add(key_slot(recipient.stream_key.encode()))
    assert len(slots) == 3
