"""No job left hanging: the only worker dies (kill -9) mid-job and never comes back, and the
sweep in beat ends the job failed "lost", with its terminal job_progress and a toast, within
its time limit plus a minute. Real processes: API, worker, beat, Stripe server, Redis."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from domain.registry import JOB_TYPES
from tests.harness import Client, eventually, unique
from tests.jobs.test_cancel_and_import import progress_of
from tests.jobs.test_jobs_e2e import create_order, is_toast
from tests.stack import Beat, Stack

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]


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
