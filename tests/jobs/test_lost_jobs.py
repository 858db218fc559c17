"""No job left hanging: a job asked to cancel whose worker is stuck is ended by the sweep in
beat after the grace, and its message revoked; the only worker dies (kill -9) mid-job and never
comes back, and the sweep ends the job failed "lost", with its terminal job_progress and a
toast, within its time limit plus a minute. Real processes: API, worker, beat, Stripe server,
Redis."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.local_redis import LocalRedis, free_port
from domain.cancel import GRACE_SECONDS
from domain.registry import JOB_TYPES
from tests.harness import Client, eventually, unique
from tests.jobs.test_cancel_and_import import progress_of
from tests.jobs.test_jobs_e2e import create_order, frames_for_job, is_toast
from tests.stack import COFFEE, Beat, Stack, Worker
from tests.test_redis_stall import stopped
from workers.sweeper import SWEEP_EVERY_SECONDS

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_a_cancel_that_a_stuck_job_never_reaches_is_forced_after_the_grace_and_revoked(
    stack: Stack, token: Callable[..., str], artifacts: Path
) -> None:
    """The worker's events Redis freezes (SIGSTOP) just after the job began: the task hangs
    in its first publish, before the checkpoint that would see the cancel."""
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    frozen = LocalRedis(free_port(), artifacts / "frozen-events").start()
    stack.worker.stop()  # the only worker is the stuck one
    stuck = Worker(
        {**stack.worker.env, "EVENTS_REDIS_URL": frozen.url},
        stack.worker.log_path.with_name(f"stuck-{frozen.port}.log"),
    ).start()
    beat = Beat(stack.worker.env, stack.worker.log_path.parent).start()
    try:
        with stopped(frozen):
            job_id = stack.post("/orders", token(user), COFFEE).json()["job_id"]
            await eventually(
                lambda: stack.get(f"/jobs/{job_id}", token(user)).json()["status"] == "running"
            )
            asked = time.monotonic()
            answer = stack.post(f"/jobs/{job_id}/cancel", token(user))
            assert (answer.status_code, answer.json()["status"]) == (202, "running")

            frames = await frames_for_job(client, job_id, is_toast, timeout=GRACE_SECONDS + 30)
            waited = time.monotonic() - asked
            assert GRACE_SECONDS <= waited < GRACE_SECONDS + SWEEP_EVERY_SECONDS + 10, waited
            assert progress_of(frames)[-1]["status"] == "cancelled"
            assert (frames[-1]["title"], frames[-1]["variant"]) == ("Order cancelled", "info")
            # The sweep revoked the message: the worker ended the run that was still hanging.
            revoked = re.compile(rf"(Terminating|Discarding revoked task).*{job_id}")
            await eventually(lambda: revoked.search(stuck.log_text()) is not None)
        assert stack.wait_job(job_id, token(user))["status"] == "cancelled"
        assert stack.get("/orders", token(user)).json() == []  # nothing was made
        assert await client.silent_for(2.0)  # the revoked run told the page nothing more
    finally:
        beat.stop()
        stuck.stop()
        frozen.stop()
        # The stack's worker again, logging afresh (start() waits for its own "ready").
        log = stack.worker.log_path.with_name(f"worker-again-{frozen.port}.log")
        stack.worker = Worker(stack.worker.env, log, stack.worker.metrics_port).start()
        await client.close()


async def test_a_job_whose_only_worker_was_killed_ends_failed_lost_within_its_limit_and_a_minute(
    stack: Stack, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(stack.edge.ws_url, token(user))
    order_id = await create_order(stack, client, token(user))
    beat = Beat(stack.worker.env, stack.worker.log_path.parent).start()
    try:
        before = stack.stripe_state()["requests"]
        stack.stripe_fault("slow", count=1, delay_seconds=3)  # holds the job mid-charge
        job_id = stack.post(
            "/payments", token(user), {"order_id": order_id, "payment_method": "pm_card_visa"}
        ).json()["job_id"]
        await eventually(lambda: stack.stripe_state()["requests"] > before)
        assert stack.get(f"/jobs/{job_id}", token(user)).json()["status"] == "running"
        killed = time.monotonic()
        assert stack.worker.process is not None
        for pid in [*stack.worker.pool_pids(), stack.worker.process.pid]:  # never restarted
            os.kill(pid, signal.SIGKILL)

        limit = JOB_TYPES["payment"].limits.hard + 60
        frames: list[
            dict[str, Any]
        ] = []  # this job's frames up to its last (a failed payment's modal after its
        while not frames or frames[-1]["type"] != "ui_modal":  # toast), however long the quiet
            frame = await client.recv(timeout=limit - (time.monotonic() - killed))
            if frame.get("jobId") == job_id:
                frames.append(frame)
        assert time.monotonic() - killed < limit
        assert progress_of(frames)[-1] | {"jobId": job_id} == {
            "type": "job_progress",
            "jobId": job_id,
            "kind": "payment",
            "percent": 100,
            "status": "failed",
        }
        assert [(t["title"], t["description"]) for t in frames if is_toast(t)] == [
            ("Payment failed", "lost")
        ]
        job = stack.get(f"/jobs/{job_id}", token(user)).json()
        assert (job["status"], job["error"]) == ("failed", "lost")
        assert frames[-1]["data"]["payload"]["reason"] == "lost"
        assert await client.silent_for(6.0)  # the next sweeps announce nothing again
    finally:
        beat.stop()
        await client.close()
