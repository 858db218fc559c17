"""The per-user connection cap, WS_MAX_CONNECTIONS_PER_USER, across edges: the next socket
is accepted and closed with 4429, a closed socket frees its slot at once and a dead edge
frees its slots within PRESENCE_TTL_SECONDS; insight.js backs off on 4429 without
hammering and treats 4401 `revoked` like any 4401 (it asks getToken again)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from edge.close_codes import CloseCode
from realtime import UIManager
from tests.harness import ROOT, Client, Edge, eventually, unique

pytestmark = pytest.mark.anyio

CAP = 3
TTL = 3.0


async def outcome(url: str, token: str) -> tuple[Client, int | None]:
    """Connect and see: admitted (None) or closed with a code."""
    client = await Client.connect(url, token, wait_ready=False)
    try:
        frame = await client.recv()
    except ConnectionClosed:  # refused: closed before any frame
        return client, await client.closed_with()
    assert frame["type"] == "insight_ready", frame
    return client, None


async def test_the_cap_counts_a_users_sockets_across_edges_and_a_closed_one_frees_its_slot(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    cap = {"WS_MAX_CONNECTIONS_PER_USER": str(CAP)}
    first, second = edge_factory(**cap), edge_factory(**cap)
    user = unique("u")
    ui = UIManager.for_user(user)
    admitted = [
        await Client.connect(first.ws_url, token(user)),
        await Client.connect(first.ws_url, token(user)),
        await Client.connect(second.ws_url, token(user)),
    ]
    for edge in (first, second):
        refused = await Client.connect(edge.ws_url, token(user), wait_ready=False)
        assert await refused.closed_with() == CloseCode.TOO_MANY_CONNECTIONS
        assert refused.ws.protocol.close_rcvd is not None
        assert refused.ws.protocol.close_rcvd.reason == "too many connections"
    assert ui.connections() == CAP  # the refused ones never counted

    # Another user is not affected by this one's cap.
    other = await Client.connect(second.ws_url, token(unique("u")))

    await admitted.pop(0).close()
    await eventually(lambda: ui.connections() == CAP - 1)
    admitted.append(await Client.connect(second.ws_url, token(user)))
    assert ui.connections() == CAP
    for client in (*admitted, other):
        await client.close()


async def test_concurrent_connects_on_two_edges_admit_exactly_the_cap(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    """Each connect is one script over the user's slot: checked and counted at once, so a
    burst of connects on two edges never admits more than the cap."""
    cap = {"WS_MAX_CONNECTIONS_PER_USER": str(CAP)}
    edges = (edge_factory(**cap), edge_factory(**cap))
    user = unique("u")
    results = await asyncio.gather(*(outcome(edges[n % 2].ws_url, token(user)) for n in range(12)))
    codes = [code for _, code in results]
    assert codes.count(None) == CAP, codes
    assert codes.count(CloseCode.TOO_MANY_CONNECTIONS) == 12 - CAP, codes
    assert UIManager.for_user(user).connections() == CAP
    for client, _ in results:
        await client.close()


async def test_an_edge_that_dies_frees_its_slots_within_the_presence_ttl(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    env = {"WS_MAX_CONNECTIONS_PER_USER": "2", "PRESENCE_TTL_SECONDS": str(TTL)}
    doomed, survivor = edge_factory(**env), edge_factory(**env)
    user = unique("u")
    held = [await Client.connect(doomed.ws_url, token(user)) for _ in range(2)]
    assert doomed.process is not None
    doomed.process.kill()
    doomed.process.wait(10)
    killed = time.monotonic()
    refused = await Client.connect(survivor.ws_url, token(user), wait_ready=False)
    assert await refused.closed_with() == CloseCode.TOO_MANY_CONNECTIONS  # not yet expired
    await eventually(lambda: UIManager.for_user(user).connections() == 0, timeout=TTL + 2)
    assert time.monotonic() - killed <= TTL + 0.5
    back = [await Client.connect(survivor.ws_url, token(user)) for _ in range(2)]
    for client in (*held, *back):
        await client.close()


# -- insight.js ------------------------------------------------------------------------------

_SCRIPT = """
import { connectUIEvents } from %(module)s;
const opened = [];
let tokens = 0;
const statuses = [];
class FakeSocket {
  constructor() {
    opened.push(Date.now());
    setTimeout(() => this.onclose && this.onclose({ code: %(code)d, reason: %(reason)s }), 5);
  }
  send() {}
  close() {}
}
const handle = connectUIEvents({
  url: "ws://edge.invalid/api/v1/insight",
  %(credentials)s,
  WebSocketImpl: FakeSocket,
  storage: null,
  minDelayMs: 50,
  maxDelayMs: 1600,
  onStatus: (status, detail) => statuses.push([status, detail || null]),
});
setTimeout(() => {
  handle.close();
  const t0 = opened[0];
  console.log(JSON.stringify({ opened: opened.map((t) => t - t0), tokens, statuses }));
}, %(duration)d);
"""


def run_client(code: int, reason: str, duration_ms: int, *, get_token: bool) -> dict[str, Any]:
    """insight.js under Node, against a WebSocket that closes with `code` every time."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("INSIGHT_REQUIRE_NODE"):
            pytest.fail("node is missing and INSIGHT_REQUIRE_NODE is set")
        pytest.skip("needs Node.js")
    module = (ROOT / "edge" / "static" / "insight.js").as_uri()
    credentials = (
        'getToken: async () => { tokens += 1; return "a.b.c"; }' if get_token else 'token: "a.b.c"'
    )
    script = _SCRIPT % {
        "module": json.dumps(module),
        "code": code,
        "reason": json.dumps(reason),
        "credentials": credentials,
        "duration": duration_ms,
    }
    run = subprocess.run(
        [node, "--input-type=module", "-e", script],
        capture_output=True, text=True, timeout=30, check=False, cwd=Path(ROOT),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


@pytest.mark.integration  # node runs the client
def test_insight_js_backs_off_on_4429_without_hammering() -> None:
    result = run_client(4429, "too many connections", 3000, get_token=True)
    opened = result["opened"]
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    # 16 x 50 ms, then doubling to 1.6 s, each at least half its step: 400+ ms, 800+, 800+...
    assert 2 <= len(opened) <= 5, opened
    assert all(gap >= 400 for gap in gaps), gaps
    assert all(gap >= 800 for gap in gaps[1:]), gaps
    refused = {"code": 4429, "reason": "too many connections", "transport": "websocket"}
    assert ["reconnecting", refused] in result["statuses"]
    # A 1006 (an ordinary drop) is retried much sooner: the cap's backoff is its own.
    dropped = run_client(1006, "", 3000, get_token=True)
    assert len(dropped["opened"]) > len(opened)


@pytest.mark.integration  # node runs the client
def test_insight_js_treats_revoked_like_any_4401() -> None:
    with_get_token = run_client(4401, "revoked", 1500, get_token=True)
    assert len(with_get_token["opened"]) >= 2
    assert with_get_token["tokens"] == len(with_get_token["opened"])  # a new token each time
    fixed = run_client(4401, "revoked", 800, get_token=False)
    assert len(fixed["opened"]) == 1  # a fixed token is never retried
    revoked = {"code": 4401, "reason": "revoked", "transport": "websocket"}
    assert ["unauthorized", revoked] in fixed["statuses"]
