"""Test tiers: which tests `make test` runs, and the guard that keeps processes out of them.

The markers are declared, each with what it means, in pyproject.toml's
[tool.pytest.ini_options], whose `addopts` deselects every marked test but the `smoke` ones:
plain `pytest` (and `make test`) runs the fast tier, the unmarked tests (pure logic, the
in-memory broker) plus one `smoke` test of each real process. `make test-all` passes `-m ""`.

A test gets its markers
- from its fixtures, here: a test that uses one of FIXTURE_MARKERS, itself or through other
  fixtures, gets that fixture's marker. Every process the suite starts for a test hangs off
  `redis_server` (the edges, the job API, the stacks, `settings` and `token`), so a test that
  touches a real process is `integration` without anyone marking it; except a `smoke` test,
  which stays in the fast tier;
- by hand, for what no shared fixture tells: a test or module that runs a command or starts
  a server itself, a fixture parameter that needs PostgreSQL (`pytest.param(...,
  marks=pytest.mark.integration)`), `fuzz`, `slow`;
- and for what both missed, the guard: an unmarked test that starts a process (a subprocess,
  a fork, a multiprocessing child) fails, naming the command, in every run. So a test that
  starts a process can never sit in the fast tier by accident: it fails there first.
  (A test that publishes without `redis_server` fails too: the environment points the
  publisher at an address where nothing listens until `redis_server` runs; tests/conftest.py.)
"""

from __future__ import annotations

import multiprocessing.util
import sys
from collections.abc import Generator
from typing import Any

import pytest

# fixture name -> the marker of every test that uses it
FIXTURE_MARKERS = {
    "redis_server": "integration",
    "redis_cluster": "cluster",
    "fresh_cluster": "cluster",
    "browser": "browser",
    "nextjs": "browser",
}
# A test with one of these may start processes; an unmarked test (the fast tier) may not.
PROCESS_MARKERS = ("smoke", "integration", "cluster", "browser", "install")
# What CPython reports when this process starts another: subprocess (asyncio's too), fork
# (multiprocessing's default start method here), os.system, the exec and spawn families.
PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.system", "os.exec",
     "os.spawn", "pty.spawn", "multiprocessing.spawnv_passfds"}
)  # fmt: skip


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        smoke = item.get_closest_marker("smoke") is not None
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture not in item.fixturenames or item.get_closest_marker(marker):
                continue
            if marker == "integration" and smoke:
                continue  # the fast tier's one real-process test of its kind
            item.add_marker(marker)


class ProcessGuard:
    """Refuses to start a process while an unmarked test runs, and remembers each attempt so
    that the test fails even if it swallowed the error. sys.addaudithook cannot be undone:
    one guard, installed once, that looks only while `guarded` is set."""

    def __init__(self) -> None:
        self.guarded: pytest.Item | None = None
        self.refused: list[str] = []
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.guarded is None or event not in PROCESS_EVENTS:
            return
        what = f"{event} {args[1] if event == 'subprocess.Popen' else args!r}"[:300]
        self.refused.append(what)
        raise RuntimeError(
            f"{self.guarded.nodeid} started a process in the fast tier: {what}. "
            "Mark it (tests/tiers.py says how; pyproject.toml lists the markers)."
        )


GUARD = ProcessGuard()

# multiprocessing's spawn and forkserver start methods start their process without an audit
# event of CPython's own: give them one.
_spawnv_passfds = multiprocessing.util.spawnv_passfds


def _audited_spawnv_passfds(path: Any, args: Any, passfds: Any) -> Any:
    sys.audit("multiprocessing.spawnv_passfds", path, args)
    return _spawnv_passfds(path, args, passfds)


multiprocessing.util.spawnv_passfds = _audited_spawnv_passfds


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Guard the setup, call and teardown of every unmarked test."""
    may_start = any(item.get_closest_marker(name) for name in PROCESS_MARKERS)
    GUARD.guarded = None if may_start else item
    GUARD.refused = []
    try:
        yield
    finally:
        GUARD.guarded = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    """A phase that passed although the guard refused a process (the test caught the error)
    is failed all the same."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if GUARD.refused and GUARD.guarded is item:
        if report.passed:
            report.outcome = "failed"
            report.longrepr = f"{item.nodeid} started a process in the fast tier:\n  " + (
                "\n  ".join(GUARD.refused)
            )
        GUARD.refused = []
