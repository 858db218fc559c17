"""The SSE wire format (`realtime.sse`) and a frame's id read without parsing it
(`realtime.frames.frame_id`): what every stream's bytes depend on."""

from __future__ import annotations

import json

import pytest

from realtime import sse
from realtime.frames import frame_id, gap_frame, ready_frame, splice


def test_a_message_carries_its_event_its_id_and_every_line_of_its_data() -> None:
    assert sse.message(b'{"a":1}', event_id=b"u1.2-3") == b'id: u1.2-3\ndata: {"a":1}\n\n'
    assert sse.message(b"one\r\ntwo\rthree\nfour", event="x") == (
        b"event: x\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
    )


def test_the_closing_message_is_insight_close_with_the_websocket_code() -> None:
    message = sse.closing(4401, "revoked")
    head, data = message.rstrip(b"\n").split(b"\n")
    assert head == b"event: insight_close"
    assert json.loads(data.removeprefix(b"data: ")) == {"code": 4401, "reason": "revoked"}


def test_last_event_id_wins_over_since_and_empty_means_absent() -> None:
    assert sse.resume_point("u1.1-1", "u2.2-2") == ("Last-Event-ID", "u1.1-1")
    assert sse.resume_point("", "u2.2-2") == ("since", "u2.2-2")
    assert sse.resume_point(None, None) is None


@pytest.mark.parametrize(
    ("last_event_id", "since", "field"),
    [("a\x00b", None, "Last-Event-ID"), (None, "é", "since"), ("u" * 1025, None, "Last-Event-ID")],
)
def test_a_resume_point_no_stream_sent_is_refused_naming_its_field(
    last_event_id: str | None, since: str | None, field: str
) -> None:
    with pytest.raises(sse.BadResume) as refused:
        sse.resume_point(last_event_id, since)
    assert refused.value.field == field


def test_frame_id_reads_an_events_cursor_and_readys_id_and_gap_has_none() -> None:
    cursor = b"u1.2-3_b1.1-1_a1.1-0"
    assert frame_id(splice(cursor, b'{"type":"ui_update","data":{"id":"not this"}}')) == cursor
    assert frame_id(ready_frame("u1.2-3")) == b"u1.2-3"
    assert frame_id(gap_frame("u1.2-3")) is None
