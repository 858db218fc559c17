"""The fast tier starts no process: tests/tiers.py refuses one to every unmarked test, however
it is started, so a test that needs a process cannot land in `make test` unmarked."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.tiers import GUARD


def _nothing() -> None:
    pass


def _fork() -> None:
    pid = os.fork()
    if pid == 0:  # only if the guard let it through: the child leaves at once
        os._exit(0)
    os.waitpid(pid, 0)


def _spawn() -> None:
    child = multiprocessing.get_context("spawn").Process(target=_nothing)
    child.start()
    child.join(30)


async def _asyncio_subprocess() -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await asyncio.wait_for(process.wait(), 30)


STARTS: dict[str, Callable[[], object]] = {
    "subprocess": lambda: subprocess.run([sys.executable, "-c", "pass"], check=False, timeout=30),
    "os.system": lambda: os.system("true"),  # noqa: S605 (a constant command)
    "fork": _fork,
    "multiprocessing spawn": _spawn,
    "asyncio subprocess": lambda: asyncio.run(_asyncio_subprocess()),
}


@pytest.mark.parametrize("start", STARTS.values(), ids=STARTS)
def test_an_unmarked_test_cannot_start_a_process(start: Callable[[], object]) -> None:
    with pytest.raises(RuntimeError, match="started a process in the fast tier"):
        start()
    assert len(GUARD.refused) == 1, GUARD.refused
    GUARD.refused.clear()  # refused on purpose: this test passes
