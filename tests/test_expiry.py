"""A session's token expiry on the process's timer wheel (edge/expiry.py, edge/second_wheel.py):
it closes the session with 4401 within a second after its deadline and never before; a renewal
moves it; a session that ended is never closed by it; and a thousand sessions share one timer.
The behaviour under test is the clock itself, so these wait on it (bounded)."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.security import Identity
from edge.close_codes import CloseCode
from edge.connection import ClientConnection
from edge.expiry import Expiry
from edge.second_wheel import WheelTimer, second_wheel
from realtime.broker.log_calls import start_position
from realtime.recipients import recipients_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # each waits on the clock, a second or two


def session() -> ClientConnection:
    identity = Identity("u1", None, None, time.time() + 3600)
    recipients = recipients_of(identity.user_id, identity.business_id)
    positions = [start_position(r.letter, (1_796_000_000, 0)) for r in recipients]
    return ClientConnection(identity, recipients, positions, 16)


async def closed_at(connection: ClientConnection, timeout: float) -> float:
    async with asyncio.timeout(timeout):
        await connection.wait_closing()
    return time.time()


async def test_a_session_closes_4401_within_a_second_after_its_deadline_never_before() -> None:
    connection = session()
    deadline = time.time() + 0.5
    expiry = Expiry(connection, deadline)
    closed = await closed_at(connection, 3)
    assert deadline <= closed < deadline + 1.0 + 0.2  # a second of rounding, and the loop
    assert connection.close_code == CloseCode.UNAUTHORIZED
    expiry.cancel()  # after it fired: nothing to do


async def test_a_renewal_moves_the_deadline_and_the_first_one_does_nothing() -> None:
    renewed, ended = session(), session()
    first = time.time() + 0.3
    expiry = Expiry(renewed, first)
    expiry.move(time.time() + 60)
    gone = Expiry(ended, first)
    gone.cancel()
    witness = session()
    Expiry(witness, first)  # closes when the first deadline has surely passed
    await closed_at(witness, 3)
    assert renewed.close_code is None
    assert ended.close_code is None
    expiry.cancel()


async def test_a_thousand_sessions_share_one_timer_and_each_closes() -> None:
    now = time.time()
    sessions = [session() for _ in range(1000)]
    expiries = [Expiry(c, now + 0.2 + (n % 5) * 0.3) for n, c in enumerate(sessions)]
    wheel = second_wheel()
    assert wheel.waiting >= 1000
    assert wheel.seconds <= 3  # buckets of seconds, not a timer per session
    async with asyncio.timeout(4):
        await asyncio.gather(*(c.wait_closing() for c in sessions))
    assert {c.close_code for c in sessions} == {CloseCode.UNAUTHORIZED}
    assert wheel.waiting == 0
    for expiry in expiries:
        expiry.cancel()


async def test_a_timer_that_fails_takes_no_other_down() -> None:
    fired: list[str] = []

    def fails() -> None:
        raise RuntimeError("this timer's own failure")

    now = time.time()
    WheelTimer(0.1, fails)
    WheelTimer(0.1, lambda: fired.append("same second"))
    later = session()
    Expiry(later, now + 1.2)  # a later second: the wheel must re-arm for it
    await closed_at(later, 3)
    assert fired == ["same second"]


async def test_a_timer_cancelled_by_another_of_its_second_while_they_fire_stays_silent() -> None:
    """The worst moment for a cancel: its timer's bucket has been taken off the wheel and is
    being fired, as when closing one session ends another whose expiry shares the second."""
    fired: list[str] = []
    timers: dict[str, WheelTimer] = {}

    def first() -> None:
        fired.append("first")
        for name, timer in timers.items():
            if name != "first":
                timer.cancel()  # whichever of the two fires first cancels the other

    def second() -> None:
        fired.append("second")
        timers["first"].cancel()

    timers["first"] = WheelTimer(0.1, first)
    timers["second"] = WheelTimer(0.1, second)
    witness = session()
    Expiry(witness, time.time() + 1.2)
    await closed_at(witness, 3)
    assert fired in (["first"], ["second"])
