"""An idle socket reads nothing, and still misses nothing (edge.pump.HelperTasks, 8ab3fe4..):
a reader task runs only while a message from the client waits, so every guarantee that
depends on reading the client (in-band renewal, a forged token's 4401, noticing that the peer
left and freeing its slot) is tested here at the moments that reader is not running: right
after the connect, after an idle spell, at the instant the session closes for another reason,
and with several messages in one TCP write. Also the hub's listener table turning from one
listener (a bare pair) to several (a dict) and back, revocation over both, the plain-uvicorn
path (no wire: the reader that always runs) and the SSE stream's reader.

Real processes throughout: edges started as operators start them, a private Redis, real
clients (and raw sockets where a client library would hide the byte-level timing).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from cli.local_redis import LocalRedis
from core.config import Settings
from edge.close_codes import CloseCode
from realtime import UIManager
from tests.harness import (
    Client,
    Edge,
    PlainUvicornEdge,
    closed,
    eventually,
    id_of,
    start_edge,
    token_for,
    unique,
)
from tests.sse_client import SseClient
from tests.stalled_peer import StalledPeer, sockets_held

pytestmark = pytest.mark.anyio

CAP = 3
PING = 1.0  # the edges' ping interval and timeout here: pings flow while a socket idles
QUICK = {
    "JWT_LEEWAY_SECONDS": "0",  # a token's expiry is its exp: short tokens, short tests
    "WS_MAX_CONNECTIONS_PER_USER": str(CAP),
    "WS_PING_INTERVAL_SECONDS": str(PING),
    "WS_PING_TIMEOUT_SECONDS": str(PING),
    "SSE_KEEPALIVE_SECONDS": "0.5",
}
RELEASE_BOUND = 2 * PING + 4.0  # every close the edge decides, peer reading or not


@pytest.fixture(scope="module")
def quick(redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    """`insight edge` (the wire: reading only while a message waits), settings above."""
    edge = start_edge(redis_server.url, artifacts, **QUICK)
    yield edge
    edge.stop()


@pytest.fixture(scope="module")
def plain(redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    """The same app under stock uvicorn: no wire, so the reader runs for the session's life."""
    edge = start_edge(redis_server.url, artifacts, PlainUvicornEdge, **QUICK)
    yield edge
    edge.stop()


@pytest.fixture(params=["insight edge", "plain uvicorn"])
def any_edge(request: pytest.FixtureRequest) -> Edge:
    edge: Edge = request.getfixturevalue("quick" if request.param == "insight edge" else "plain")
    return edge


def auth(token: str) -> str:
    return json.dumps({"type": "auth", "token": token})


def forged(settings: Settings, user: str) -> str:
    return token_for(settings, user)[:-4] + "AAAA"


def send_in_one_write(client: Client, messages: Sequence[str]) -> None:
    """Queue every message in websockets' protocol and hand them to the transport in one
    write: the edge gets them in one `data_received`, several queued at once."""
    protocol = client.ws.protocol
    for message in messages:
        protocol.send_text(message.encode())
    client.ws.transport.write(b"".join(protocol.data_to_send()))


def masked_text_frame(text: str) -> bytes:
    """A client's text frame, as a raw socket sends it."""
    payload = text.encode()
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes([0x81, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def released(edge: Edge, user: str) -> Callable[[], bool]:
    """The edge holds no session and presence counts none of the user's."""
    return lambda: edge.connection_count() == 0 and UIManager.for_user(user).connections() == 0


def user_released(user: str, count: int = 0) -> Callable[[], bool]:
    return lambda: UIManager.for_user(user).connections() == count


def no_tracebacks(edge: Edge) -> None:
    log = edge.log_text()
    assert "Traceback" not in log, log[-4000:]
    assert "Exception in ASGI" not in log, log[-4000:]


async def abort(client: Client) -> None:
    """The peer vanishes: no close frame, the TCP connection reset."""
    client.ws.transport.abort()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.ws.wait_closed(), 5)


# -- read whenever a message comes, whatever the reader's state ------------------------------


@pytest.mark.parametrize("first_frame_auth", [False, True], ids=["query-token", "first-frame"])
async def test_a_renewal_sent_before_insight_ready_is_read_and_moves_the_expiry(
    quick: Edge, settings: Settings, first_frame_auth: bool
) -> None:
    user = unique("u")
    long, short = token_for(settings, user, ttl=3600), token_for(settings, user, ttl=2)
    if first_frame_auth:
        client = await Client.connect(quick.ws_url, wait_ready=False)
        send_in_one_write(client, [auth(long), auth(short)])
    else:
        client = await Client.connect(quick.ws_url, long, wait_ready=False)
        send_in_one_write(client, [auth(short)])
    started = time.monotonic()
    assert await client.closed_with(timeout=6) == CloseCode.UNAUTHORIZED
    assert time.monotonic() - started < 2 + 1.5  # the short token's exp, and the wheel's second
    assert any(f["type"] == "insight_ready" for f in client.frames)
    await eventually(user_released(user))


async def test_a_forged_renewal_sent_before_insight_ready_closes_4401(
    any_edge: Edge, settings: Settings
) -> None:
    user = unique("u")
    client = await Client.connect(any_edge.ws_url, token_for(settings, user), wait_ready=False)
    await client.ws.send(auth(forged(settings, user)))
    assert await client.closed_with() == CloseCode.UNAUTHORIZED
    await eventually(user_released(user))


async def test_many_renewals_and_junk_in_one_tcp_write_are_all_read_in_order(
    any_edge: Edge, settings: Settings
) -> None:
    """Every message of one write is read: the valid renewals keep the session (an event
    after them arrives), and a forged one at the end of a second write closes it 4401."""
    user = unique("u")
    client = await Client.connect(any_edge.ws_url, token_for(settings, user))
    good = token_for(settings, user, ttl=3600)
    burst = [auth(good) if n % 3 == 0 else f"junk {n}" for n in range(60)]
    send_in_one_write(client, burst)
    event_id = UIManager.for_user(user).refresh()
    [frame] = await client.events(1)
    assert id_of(frame) == event_id
    send_in_one_write(client, [*burst, auth(forged(settings, user))])
    assert await client.closed_with() == CloseCode.UNAUTHORIZED
    await eventually(user_released(user))


@pytest.mark.slow
async def test_a_socket_idle_through_several_pings_reads_again_and_a_forged_token_closes_it(
    quick: Edge, settings: Settings
) -> None:
    """Idle spells (pings and pongs flowing, no message), each ended by a message: the reader
    starts again every time; junk is ignored, events keep coming, and a forged renewal after
    the last spell closes 4401."""
    user = unique("u")
    client = await Client.connect(quick.ws_url, token_for(settings, user))
    for spell in range(3):
        await asyncio.sleep(2.5 * PING)  # the idle spell is the condition under test
        await client.ws.send(f"junk after idle spell {spell}")
        await client.ws.send(auth(token_for(settings, user, ttl=3600)))
        event_id = UIManager.for_user(user).refresh()
        [frame] = await client.events(1)
        assert id_of(frame) == event_id
    await asyncio.sleep(2.5 * PING)
    await client.ws.send(auth(forged(settings, user)))
    assert await client.closed_with() == CloseCode.UNAUTHORIZED
    await eventually(user_released(user))
    no_tracebacks(quick)


@pytest.mark.slow
async def test_a_renewal_after_an_idle_spell_moves_the_expiry(
    quick: Edge, settings: Settings
) -> None:
    user = unique("u")
    client = await Client.connect(quick.ws_url, token_for(settings, user, ttl=3))
    await asyncio.sleep(1.0)  # idle, the reader gone
    await client.ws.send(auth(token_for(settings, user, ttl=60)))
    await asyncio.sleep(3.5)  # past the first token's exp (leeway 0): the clock is under test
    event_id = UIManager.for_user(user).refresh()
    [frame] = await client.events(1)
    assert id_of(frame) == event_id
    await client.close()


# -- messages at the moment the session closes -----------------------------------------------


async def flood(client: Client, message: Callable[[int], str]) -> int:
    """Send messages back to back until the socket closes; how many went."""
    sent = 0
    with contextlib.suppress(ConnectionClosed):
        while True:
            await client.ws.send(message(sent))
            sent += 1
            if sent % 20 == 0:
                await asyncio.sleep(0.001)
    return sent


@pytest.mark.slow
@pytest.mark.parametrize("what", ["junk", "renewal-with-the-same-token"])
async def test_messages_flooding_through_the_expiry_moment_end_in_4401_and_free_everything(
    quick: Edge, settings: Settings, what: str
) -> None:
    user = unique("u")
    token = token_for(settings, user, ttl=2)
    client = await Client.connect(quick.ws_url, token)
    sending = asyncio.create_task(
        flood(client, lambda n: auth(token) if what != "junk" else f"junk {n}")
    )
    assert await client.closed_with(timeout=8) == CloseCode.UNAUTHORIZED
    sent = await asyncio.wait_for(sending, 5)
    assert sent > 100
    await eventually(user_released(user), timeout=RELEASE_BOUND)
    no_tracebacks(quick)


async def test_renewals_flooding_through_a_revocation_end_in_4401_revoked(
    quick: Edge, settings: Settings
) -> None:
    user = unique("u")
    token = token_for(settings, user)
    sockets = [await Client.connect(quick.ws_url, token) for _ in range(CAP)]
    floods = [asyncio.create_task(flood(s, lambda n: auth(token))) for s in sockets]
    await asyncio.sleep(0.2)  # the floods under way
    UIManager.for_user(user).disconnect()
    results = await asyncio.gather(*(closed(s) for s in sockets))
    assert results == [(CloseCode.UNAUTHORIZED, "revoked")] * CAP
    await asyncio.wait_for(asyncio.gather(*floods), 5)
    await eventually(user_released(user), timeout=RELEASE_BOUND)


@pytest.mark.slow
async def test_junk_from_a_peer_that_never_reads_does_not_hold_its_1013_close(
    redis_server: LocalRedis, artifacts: Path, settings: Settings
) -> None:
    """A peer whose window is shut keeps sending: the full buffer's 1013 is decided while
    messages arrive, and the socket, its task and its slot still go within the bound."""
    edge = start_edge(redis_server.url, artifacts, WS_SEND_BUFFER="8", **QUICK)
    user = unique("stalled")
    peers = [StalledPeer(edge.port, token_for(settings, user)) for _ in range(2)]
    stop = threading.Event()

    def send_junk(peer: StalledPeer) -> None:
        frame = masked_text_frame(auth(token_for(settings, user)))
        peer.sock.settimeout(0.5)
        while not stop.is_set():
            try:
                peer.sock.sendall(frame)
            except TimeoutError:
                continue  # the edge is not reading (it paused, or it is closing)
            except OSError:
                return  # reset: the edge closed
            time.sleep(0.002)

    senders = [threading.Thread(target=send_junk, args=(p,), daemon=True) for p in peers]
    try:
        await eventually(user_released(user, 2))
        for sender in senders:
            sender.start()
        ui = UIManager.for_user(user)
        for index in range(120):
            ui.update_ui({"n": index, "pad": "x" * 30_000})
        await eventually(
            lambda: released(edge, user)() and sockets_held(edge, peers) == 0,
            timeout=RELEASE_BOUND + 2,
        )
    finally:
        stop.set()
        for sender in senders:
            sender.join(5)
        for peer in peers:
            peer.close()
        edge.stop()
    assert edge.log_text().count('"close_code": 1013') >= 2, edge.log_text()[-3000:]
    no_tracebacks(edge)


@pytest.mark.parametrize("round_", range(12))
async def test_a_peer_that_vanishes_right_after_a_renewal_is_released(
    any_edge: Edge, settings: Settings, round_: int
) -> None:
    """The renewal (a Redis read for the revocation) still under way when the disconnect is
    queued behind it: the reader must go on to the disconnect and end the session."""
    user = unique("u")
    client = await Client.connect(any_edge.ws_url, token_for(settings, user))
    messages = [auth(token_for(settings, user))] * (1 + round_ % 4) + ["junk"] * (round_ % 3)
    send_in_one_write(client, messages)
    if round_ % 2:
        await asyncio.sleep(0.001 * round_)
    await abort(client)
    await eventually(user_released(user), timeout=5)


# -- a peer that leaves while idle frees its slot --------------------------------------------


@pytest.mark.parametrize("how", ["abort", "close-frame"])
async def test_a_peer_that_leaves_while_idle_frees_its_slot_of_the_cap(
    any_edge: Edge, settings: Settings, how: str
) -> None:
    user = unique("u")
    clients = [await Client.connect(any_edge.ws_url, token_for(settings, user)) for _ in range(CAP)]
    refused = await Client.connect(any_edge.ws_url, token_for(settings, user), wait_ready=False)
    assert await refused.closed_with() == CloseCode.TOO_MANY_CONNECTIONS
    await asyncio.sleep(0.3)  # idle: every reader gone
    leaving = clients.pop(1)
    if how == "abort":
        await abort(leaving)
    else:
        await leaving.close()
    await eventually(user_released(user, CAP - 1))
    clients.append(await Client.connect(any_edge.ws_url, token_for(settings, user)))
    event_id = UIManager.for_user(user).refresh()
    for client in clients:
        assert [id_of(f) for f in await client.events(1)] == [event_id]
        assert await client.silent_for(0.2)
    for client in clients:
        await abort(client)
    await eventually(user_released(user))


# -- several listeners of one channel, leaving in any order ----------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=str)
async def test_tabs_of_one_user_leaving_in_any_order_leave_each_remaining_one_event_once(
    quick: Edge, settings: Settings, order: tuple[int, ...]
) -> None:
    """Three sockets on the user's channel (a dict of listeners), then two (a dict turned
    back into a pair), then one, then none and a new one: each event reaches each socket
    still open exactly once, and a socket gone gets nothing."""
    user = unique("u")
    tabs = [await Client.connect(quick.ws_url, token_for(settings, user)) for _ in range(3)]
    ui = UIManager.for_user(user)
    open_ = set(range(3))
    for leaving in order:
        event_id = ui.refresh()
        for index in sorted(open_):
            assert [id_of(f) for f in await tabs[index].events(1)] == [event_id]
        await tabs[leaving].close()
        open_.discard(leaving)
        await eventually(user_released(user, len(open_)))
    back = await Client.connect(quick.ws_url, token_for(settings, user))
    event_id = ui.refresh()
    assert [id_of(f) for f in await back.events(1)] == [event_id]
    for index in range(3):  # a closed one got nothing after its close
        assert tabs[index].ws.protocol.state.name == "CLOSED"
    assert await back.silent_for(0.3)
    await back.close()


async def test_a_business_channel_shared_by_users_keeps_delivering_as_they_leave(
    quick: Edge, settings: Settings
) -> None:
    business = unique("b")
    users = [unique("u") for _ in range(3)]
    sockets = [await Client.connect(quick.ws_url, token_for(settings, u, business)) for u in users]
    team = UIManager.for_business(business)
    for leaving in (1, 0):
        event_id = team.refresh()
        for client in sockets:
            if client.ws.protocol.state.name == "OPEN":
                assert [id_of(f) for f in await client.events(1)] == [event_id]
        await abort(sockets[leaving])
        await eventually(user_released(users[leaving]))
    event_id = team.refresh()
    assert [id_of(f) for f in await sockets[2].events(1)] == [event_id]
    assert await sockets[2].silent_for(0.3)
    await sockets[2].close()


async def test_an_event_for_a_tab_follows_its_sockets_as_they_leave(
    quick: Edge, settings: Settings
) -> None:
    """Tab a on two sockets, tab b on one, one edge: a tab-addressed event reaches a's sockets
    only; with one of a's gone, the other; with both gone, every tab of the user."""
    user = unique("u")

    async def tab(name: str) -> Client:
        return await Client.connect(quick.ws_url, token_for(settings, user), query={"client": name})

    a1, a2, b = await tab("tab-a"), await tab("tab-a"), await tab("tab-b")
    for_a = UIManager.for_user(user, client="tab-a")
    event_id = for_a.redirect("/one")
    assert [id_of(f) for f in await a1.events(1)] == [event_id]
    assert [id_of(f) for f in await a2.events(1)] == [event_id]
    assert await b.silent_for(0.3)

    await a1.close()
    await eventually(user_released(user, 2))
    event_id = for_a.redirect("/two")
    assert [id_of(f) for f in await a2.events(1)] == [event_id]
    assert await b.silent_for(0.3)
    assert await a2.silent_for(0.1)

    await abort(a2)
    await eventually(user_released(user, 1))
    event_id = for_a.redirect("/three")  # tab a is gone: every tab of the user
    assert [id_of(f) for f in await b.events(1)] == [event_id]
    assert await b.silent_for(0.3)
    await b.close()


# -- revocation over one listener and over several -------------------------------------------


@pytest.mark.parametrize(
    ("opened", "leave_first"),
    [(1, 0), (2, 0), (3, 0), (3, 1), (3, 2)],
    ids=["one", "two", "three", "three-one-left", "three-two-left"],
)
async def test_a_revocation_closes_every_socket_of_the_user_left_open(
    quick: Edge, settings: Settings, opened: int, leave_first: int
) -> None:
    user, bystander, business = unique("u"), unique("u"), unique("b")
    sockets = [
        await Client.connect(quick.ws_url, token_for(settings, user, business))
        for _ in range(opened)
    ]
    other = await Client.connect(quick.ws_url, token_for(settings, bystander, business))
    for leaving in sockets[:leave_first]:
        await leaving.close()
    staying = sockets[leave_first:]
    await eventually(user_released(user, len(staying)))
    UIManager.for_user(user).disconnect()
    results = await asyncio.gather(*(closed(s, timeout=3) for s in staying))
    assert results == [(CloseCode.UNAUTHORIZED, "revoked")] * len(staying)
    await eventually(user_released(user))
    event_id = UIManager.for_business(business).refresh()
    assert [id_of(f) for f in await other.events(1)] == [event_id]
    await other.close()


# -- Server-Sent Events: the reader that always runs ----------------------------------------


async def test_a_stream_gets_keepalive_comments_and_ends_when_the_client_leaves(
    quick: Edge, settings: Settings
) -> None:
    user = unique("u")
    stream = await SseClient.connect(quick.http_url, jwt=token_for(settings, user))
    await eventually(lambda: stream.comments >= 2, timeout=3)  # every 0.5 s
    event_id = UIManager.for_user(user).refresh()
    assert [id_of(f) for f in await stream.events(1)] == [event_id]
    await stream.close()
    await eventually(user_released(user))


@pytest.mark.slow
async def test_a_stream_ends_4401_at_its_tokens_expiry_and_frees_its_slot(
    quick: Edge, settings: Settings
) -> None:
    user = unique("u")
    stream = await SseClient.connect(quick.http_url, jwt=token_for(settings, user, ttl=2))
    assert (await stream.closed_with(timeout=6))[0] == CloseCode.UNAUTHORIZED
    await stream.close()
    await eventually(user_released(user))


async def test_a_stream_and_a_socket_of_one_user_each_get_each_event_once(
    quick: Edge, settings: Settings
) -> None:
    user = unique("u")
    stream = await SseClient.connect(quick.http_url, jwt=token_for(settings, user))
    socket_ = await Client.connect(quick.ws_url, token_for(settings, user))
    event_id = UIManager.for_user(user).refresh()
    assert [id_of(f) for f in await stream.events(1)] == [event_id]
    assert [id_of(f) for f in await socket_.events(1)] == [event_id]
    await stream.close()
    await eventually(user_released(user, 1))
    event_id = UIManager.for_user(user).refresh()
    assert [id_of(f) for f in await socket_.events(1)] == [event_id]
    assert await socket_.silent_for(0.3)
    await socket_.close()


def test_a_raw_masked_frame_is_what_a_client_sends() -> None:
    """The helper the 1013 test sends with: a masked text frame websockets parses back."""
    from websockets.frames import Frame
    from websockets.streams import StreamReader

    reader = StreamReader()
    for text in ("x", "y" * 200, "z" * 70_000):
        reader.feed_data(masked_text_frame(text))
        parser = Frame.parse(reader.read_exact, mask=True)
        with pytest.raises(StopIteration) as done:
            next(parser)
        assert done.value.value.data == text.encode()


# -- more of what the reader may meet while the socket idles ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("last", ["short", "long"])
async def test_renewals_in_one_write_apply_in_order_and_the_last_one_sets_the_expiry(
    quick: Edge, settings: Settings, last: str
) -> None:
    user = unique("u")
    short, long = token_for(settings, user, ttl=2), token_for(settings, user, ttl=3600)
    client = await Client.connect(quick.ws_url, token_for(settings, user, ttl=3600))
    send_in_one_write(
        client, [auth(long), auth(short)] if last == "short" else [auth(short), auth(long)]
    )
    if last == "short":
        assert await client.closed_with(timeout=6) == CloseCode.UNAUTHORIZED
    else:
        await asyncio.sleep(3.2)  # past the short token's exp: the clock is under test
        event_id = UIManager.for_user(user).refresh()
        assert [id_of(f) for f in await client.events(1)] == [event_id]
        await client.close()
    await eventually(user_released(user))


async def test_an_oversized_message_after_an_idle_spell_closes_1009_and_frees_the_slot(
    any_edge: Edge, settings: Settings
) -> None:
    user = unique("u")
    client = await Client.connect(any_edge.ws_url, token_for(settings, user))
    await asyncio.sleep(0.3)  # idle
    await client.ws.send("x" * (settings.ws_max_message_bytes + 1))
    assert await client.closed_with() == CloseCode.MESSAGE_TOO_BIG
    await eventually(user_released(user))


async def test_a_text_message_that_is_not_utf8_after_an_idle_spell_is_closed_and_freed(
    any_edge: Edge, settings: Settings
) -> None:
    user = unique("u")
    client = await Client.connect(any_edge.ws_url, token_for(settings, user))
    await asyncio.sleep(0.3)  # idle
    client.ws.protocol.send_text(b"\xff\xfe not utf-8")
    client.ws.transport.write(b"".join(client.ws.protocol.data_to_send()))
    code = await client.closed_with()
    # `insight edge` says 4400 (malformed); stock uvicorn its 1007.
    assert code in (CloseCode.MALFORMED, 1007)
    if not isinstance(any_edge, PlainUvicornEdge):
        assert code == CloseCode.MALFORMED
    await eventually(user_released(user))


async def test_many_sockets_messaging_at_random_moments_then_vanishing_leave_nothing_held(
    redis_server: LocalRedis, artifacts: Path, settings: Settings
) -> None:
    """Forty sockets, each renewing and sending junk at its own moments while events flow
    to all of them, then half closing cleanly and half vanishing: the edge holds nothing."""
    edge = start_edge(redis_server.url, artifacts, **QUICK)
    try:
        users = [unique("u") for _ in range(40)]
        clients = await asyncio.gather(
            *(Client.connect(edge.ws_url, token_for(settings, u)) for u in users)
        )

        async def life(n: int, user: str, client: Client) -> None:
            for step in range(4):
                await asyncio.sleep((n * 7 + step * 13) % 10 / 100)
                if (n + step) % 2:
                    send_in_one_write(client, [auth(token_for(settings, user))] * (1 + step))
                else:
                    await client.ws.send(f"junk {n} {step}")
                event_id = UIManager.for_user(user).refresh()
                assert [id_of(f) for f in await client.events(1)] == [event_id]
            if n % 2:
                await abort(client)
            else:
                await client.close()

        await asyncio.wait_for(
            asyncio.gather(
                *(life(n, u, c) for n, (u, c) in enumerate(zip(users, clients, strict=True)))
            ),
            30,
        )
        await eventually(
            lambda: (
                edge.connection_count() == 0
                and all(UIManager.for_user(u).connections() == 0 for u in users)
            ),
            timeout=5,
        )
        no_tracebacks(edge)
    finally:
        edge.stop()
