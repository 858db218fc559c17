"""Disconnecting a user, from any process (UIManager, the job API): the revocation mark set
and announced (`realtime.broker.revocation_calls`), and read back. The `_async` twins run
the same call on the asyncio driver.
"""

from __future__ import annotations

from realtime.broker import revocation_calls
from realtime.broker.drivers import AsyncDriver, SyncDriver
from realtime.recipients import Recipient


def revoke(driver: SyncDriver, user: Recipient, keep_seconds: int) -> int:
    """Close the user's sockets on every edge and refuse the user's tokens issued up to now;
    returns the mark (`revocation_calls.revoke`)."""
    return driver.run(revocation_calls.revoke(user, keep_seconds))


async def revoke_async(driver: AsyncDriver, user: Recipient, keep_seconds: int) -> int:
    """`revoke` for asyncio code."""
    return await driver.run(revocation_calls.revoke(user, keep_seconds))


def revocation_mark(driver: SyncDriver, user_id: str) -> int | None:
    """The user's revocation mark, if one is held: tokens issued in or before this second
    are refused (`core.security.issued_before` compares)."""
    mark = driver.get(Recipient.user(user_id).revoked_key)
    return None if mark is None else int(mark)


async def revocation_mark_async(driver: AsyncDriver, user_id: str) -> int | None:
    """`revocation_mark` for asyncio code."""
    mark = await driver.get(Recipient.user(user_id).revoked_key)
    return None if mark is None else int(mark)
