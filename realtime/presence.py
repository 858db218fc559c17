"""Who is connected, on every edge, from any process (UIManager, the job API).

Each function is one call of `realtime.broker.presence_calls`, which says what presence keeps
in Redis; the `_async` twins run the same call on the asyncio driver. The edge's own share
(its counts, the cap at connect, the heartbeat) is `edge.presence`; disconnecting a user,
`realtime.revocation`.
"""

from __future__ import annotations

from realtime.broker import presence_calls
from realtime.broker.drivers import AsyncDriver, SyncDriver
from realtime.recipients import Recipient


def connections(driver: SyncDriver, recipient: Recipient) -> int:
    """The live connections of a user (or of all members of a business) on every edge."""
    if recipient.kind == "business":
        return sum(members(driver, recipient).values())
    return driver.run(presence_calls.read_user(recipient))


async def connections_async(driver: AsyncDriver, recipient: Recipient) -> int:
    """`connections` for asyncio code."""
    if recipient.kind == "business":
        return sum((await members_async(driver, recipient)).values())
    return await driver.run(presence_calls.read_user(recipient))


def members(driver: SyncDriver, business: Recipient) -> dict[str, int]:
    """The connected members of a business: user id -> live connections on every edge."""
    return driver.run(presence_calls.read_business(business))


async def members_async(driver: AsyncDriver, business: Recipient) -> dict[str, int]:
    """`members` for asyncio code."""
    return await driver.run(presence_calls.read_business(business))
