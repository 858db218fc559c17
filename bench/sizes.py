"""How big each scenario of `make bench` is: the sizes the published figures are measured
with, and `QUICK`, tiny, for checking that the benchmark itself works (`--quick`, the tests).

Apart from the scenarios so that what a run costs, and what its figures are of, can be read
and changed in one short place without reading how each scenario measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.broadcast import QUICK_BROADCAST, BroadcastSizes
from bench.churn import QUICK_CHURN, ChurnSizes
from bench.large_replay import QUICK_REPLAY, ReplaySizes


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; `quick` is for checking the benchmark itself works."""

    users: tuple[int, ...] = (1_000, 10_000)
    rates: tuple[int, ...] = (500, 2_000, 5_000)
    seconds: float = 5
    ramp: tuple[int, ...] = (4_000, 8_000, 12_000, 16_000, 20_000, 24_000, 28_000)
    ramp_seconds: float = 5
    refinements: int = 2  # halvings of the gap between the last rate held and the first failed
    idle_connections: int = 19_000
    accept_timed: int = 10_000
    edges: tuple[int, ...] = (1, 2, 4)
    storm_users: int = 5_000
    storm_rate: int = 1_000
    job_rates: tuple[int, ...] = (20, 50)
    jobs: int = 400
    connect_rounds: int = 300
    server_api_calls: int = 500
    churn: ChurnSizes = field(default_factory=ChurnSizes)  # scenarios 10 and 11 (bench/churn.py)
    replay: ReplaySizes = field(default_factory=ReplaySizes)  # scenario 12 (bench/large_replay.py)
    sse_users: int = 1_000  # scenario 13: SSE against WebSockets
    sse_rate: int = 2_000
    page_rounds: int = 10  # scenario 14: a page whose WebSocket is refused (bench/blocked_page.py)
    broadcast: BroadcastSizes = field(default_factory=BroadcastSizes)  # 15 (bench/broadcast.py)


QUICK = Sizes(
    users=(50,),
    rates=(200,),
    seconds=1,
    ramp=(500, 1_000),
    ramp_seconds=1,
    refinements=1,
    idle_connections=200,
    accept_timed=100,
    edges=(1, 2),
    sse_users=50,
    sse_rate=200,
    page_rounds=2,
    storm_users=50,
    storm_rate=100,
    job_rates=(5,),
    jobs=10,
    connect_rounds=20,
    server_api_calls=30,
    churn=QUICK_CHURN,
    replay=QUICK_REPLAY,
    broadcast=QUICK_BROADCAST,
)
