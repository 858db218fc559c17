"""The frames the fan-out encodes once per event are the frames websockets itself would
send, at every length boundary of RFC 6455 (`edge.frame_writer`); the light queue and
flag of `edge.wakeups` behave as the asyncio ones they replace."""

from __future__ import annotations

import asyncio

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from edge.frame_writer import text_frame
from edge.wakeups import Flag, Inbox, Signal


def parse_server_frame(data: bytes) -> Frame:
    """Parse `data` as a client does (server frames are not masked), with websockets' parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        assert reader.at_eof(), "bytes left over after the frame"
        return frame
    raise AssertionError("the parser wanted more bytes than the frame has")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
def test_an_encoded_text_frame_parses_back_to_its_payload(size: int) -> None:
    payload = b"a" * size
    frame = parse_server_frame(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload


@pytest.mark.parametrize("size", [5, 300, 70_000])
def test_an_encoded_text_frame_is_byte_for_byte_what_websockets_serializes(size: int) -> None:
    payload = b"x" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected


@pytest.mark.anyio
async def test_a_cancelled_waiter_on_the_writable_flag_does_not_strand_the_others() -> None:
    flag = Flag()
    first = asyncio.create_task(flag.wait())
    second = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)  # both are now waiting
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    flag.set()
    async with asyncio.timeout(1):
        await second
    assert first.cancelled()
    assert second.done()
    assert not second.cancelled()


@pytest.mark.anyio
async def test_the_inbox_hands_out_messages_in_order_and_wakes_a_waiting_reader() -> None:
    inbox = Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait({"n": 1})
    inbox.put_nowait({"n": 2})
    async with asyncio.timeout(1):
        assert await reader == {"n": 1}
        assert await inbox.get() == {"n": 2}
    assert inbox.empty()


@pytest.mark.anyio
async def test_waiters_cancelled_again_and_again_on_a_signal_never_fired_do_not_pile_up() -> None:
    """A writer whose transport pauses and resumes while nothing new is queued cancels a
    wait on its connection's signal each time: the signal must not keep every one."""
    signal = Signal()
    for _ in range(10_000):
        waiter = asyncio.ensure_future(signal.wait())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    survivor = asyncio.ensure_future(signal.wait())
    assert signal.waiting() <= 8
    signal.fire()
    async with asyncio.timeout(1):
        await survivor
    assert signal.waiting() == 0


@pytest.mark.anyio
async def test_a_fire_wakes_every_waiter_and_a_later_wait_waits_for_the_next() -> None:
    signal = Signal()
    waiters = [asyncio.ensure_future(signal.wait()) for _ in range(3)]
    signal.fire()
    async with asyncio.timeout(1):
        await asyncio.gather(*waiters)
    later = asyncio.ensure_future(signal.wait())
    await asyncio.sleep(0)
    assert not later.done()
    signal.fire()
    async with asyncio.timeout(1):
        await later


@pytest.mark.anyio
async def test_many_live_waiters_on_one_signal_are_all_woken_and_pruning_keeps_them() -> None:
    signal = Signal()
    waiters = [asyncio.ensure_future(signal.wait()) for _ in range(1_000)]
    cancelled = waiters[::3]
    for waiter in cancelled:
        waiter.cancel()
    more = [asyncio.ensure_future(signal.wait()) for _ in range(100)]  # pruning runs meanwhile
    await asyncio.gather(*cancelled, return_exceptions=True)
    signal.fire()
    async with asyncio.timeout(1):
        await asyncio.gather(*(w for w in waiters if w not in cancelled), *more)
