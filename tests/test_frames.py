"""Event ids and cursors as the edge parses them (`realtime.frames`), held to their grammar with
the strings a stranger may send: other scripts' digits, numbers past 64 bits, a newline."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from realtime.frames import MAX_SEQ, Position, parse_cursor, parse_event_id

# The grammar: a kind letter, the epoch, the Stream entry id's two numbers, 1-20 digits each.
GRAMMAR = re.compile(r"([uba])([0-9]{1,20})\.([0-9]{1,20})-([0-9]{1,20})")


def by_the_grammar(text: str) -> Position | None:
    match = GRAMMAR.fullmatch(text)
    if match is None:
        return None
    kind, epoch, micros, seq = match.groups()
    if int(micros) > MAX_SEQ or int(seq) > MAX_SEQ:
        return None
    return Position(kind, epoch, (int(micros), int(seq)))


digits = st.text(alphabet="0123456789", min_size=0, max_size=22)
near_ids = st.builds(
    lambda kind, epoch, dot, micros, dash, seq, tail: (
        f"{kind}{epoch}{dot}{micros}{dash}{seq}{tail}"
    ),
    st.sampled_from(["u", "b", "a", "x", "", "U", "uu"]),
    digits,
    st.sampled_from([".", "", ",", ".."]),
    digits | st.sampled_from(["18446744073709551615", "18446744073709551616", "٣", "²", "+1"]),
    st.sampled_from(["-", "", "--", "_"]),
    digits | st.sampled_from(["0\n", " 1", "1_0", "\u0661"]),
    st.sampled_from(["", "\n", "_b1.2-3", " ", "\x00"]),
)


@given(near_ids | st.text(max_size=60))
def test_an_event_id_parses_exactly_as_its_grammar_says(text: str) -> None:
    assert parse_event_id(text) == by_the_grammar(text)


def test_a_real_event_id_names_its_kind_epoch_and_entry() -> None:
    position = parse_event_id("u1796116368526123.1796116370000001-7")
    assert position == Position("u", "1796116368526123", (1796116370000001, 7))
    assert position is not None
    assert position.component() == "u1796116368526123.1796116370000001-7"


def test_numbers_past_64_bits_other_scripts_digits_and_a_trailing_newline_are_refused() -> None:
    assert parse_event_id(f"u1.{MAX_SEQ}-{MAX_SEQ}") is not None
    assert parse_event_id(f"u1.{MAX_SEQ + 1}-0") is None
    assert parse_event_id("u\u0661.2-3") is None  # an Arabic-Indic one
    assert parse_event_id("u1.2-3\n") is None
    assert parse_event_id("u1.2-³") is None


def test_a_cursor_holds_each_kind_once() -> None:
    assert parse_cursor("u1.2-3_b4.5-6") == {
        "u": Position("u", "1", (2, 3)),
        "b": Position("b", "4", (5, 6)),
    }
    assert parse_cursor("u1.2-3_u4.5-6") is None
    assert parse_cursor("u1.2-3_") is None
