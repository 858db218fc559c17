"""The job system's real processes for tests: a database (SQLite file or a fresh PostgreSQL
database), the local Stripe server, the job API and a Celery worker."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cli.local_redis import free_port
from core.migrate import migrate
from tests.harness import ROOT, Edge, ServerProcess, base_env, start_edge

SERVER_KEY = "test-server-key-for-presence-and-revocation-01"  # PUBLISH_API_KEYS of start_api
COFFEE: dict[str, Any] = {
    "items": [{"sku": "COFFEE-1", "name": "Coffee", "quantity": 2, "unit_amount": 450}],
    "currency": "usd",
}
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STRIPE_TEST_KEY = "sk_test_insight_tests_0123456789"


def postgres_available() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def require(backend: str) -> None:
    """Skip a test of PostgreSQL where none runs, unless INSIGHT_REQUIRE_POSTGRES says it must."""
    if backend == "postgresql" and not postgres_available():
        if os.environ.get("INSIGHT_REQUIRE_POSTGRES"):
            pytest.fail("no PostgreSQL at 127.0.0.1:5432, and INSIGHT_REQUIRE_POSTGRES is set")
        pytest.skip("no PostgreSQL at 127.0.0.1:5432 (.ci/run starts one)")


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path, revision: str = "head") -> Any:
    """An empty database of `backend`, migrated to `revision`; dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{directory / f'insight-{uuid.uuid4().hex[:8]}.db'}"
        migrate(url, revision)
        yield url
        return
    name = f"insight_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        migrate(url, revision)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_api(redis_url: str, directory: Path, database_url: str, **env: str) -> ServerProcess:
    """The job API with a server key (PUBLISH_API_KEYS: SERVER_KEY), for the server API."""
    env = base_env(redis_url, DATABASE_URL=database_url, PUBLISH_API_KEYS=SERVER_KEY, **env)
    port = free_port()
    return ServerProcess("api.main:app", port, env, directory / f"api-{port}.log").start()


def call(api: ServerProcess, method: str, path: str, key: str | None) -> httpx.Response:
    """One request to the API under /api/v1, with `key` (a server key or a JWT) as bearer."""
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.request(method, f"{api.http_url}/api/v1{path}", headers=headers, timeout=10)


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate `process` (a worker, beat), killed if it has not exited within 15 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass
class Worker:
    """`celery -A workers worker` for all three queues, one pool process."""

    env: dict[str, str]
    log_path: Path
    metrics_port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Worker:
        name = f"test-{uuid.uuid4().hex[:6]}@%h"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "workers",
                    "worker",
                    "-Q",
                    "orders,payments,metrics",
                    "-c",
                    "1",
                    "-P",
                    "prefork",
                    "-n",
                    name,
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "INFO",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while " ready." not in self.log_text():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def pool_pids(self) -> list[int]:
        """The pool processes (children of the main worker process) that run the tasks."""
        assert self.process is not None
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        )
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        stop(self.process)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Beat:
    """`celery -A workers beat`: the periodic metrics push and the sweep of lost jobs."""

    env: dict[str, str]
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Beat:
        log = self.directory / f"beat-{uuid.uuid4().hex[:6]}.log"
        schedule = self.directory / f"beat-schedule-{uuid.uuid4().hex[:6]}"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers", "beat", "-s", str(schedule)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self) -> None:
        stop(self.process)


@dataclass
class Stack:
    """Everything a job needs, plus the edge its events reach."""

    database_url: str
    api: ServerProcess
    stripe: ServerProcess
    worker: Worker
    edge: Edge

    def post(self, path: str, token: str, body: Any = None, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.api.http_url}/api/v1{path}",
            json=body,
            timeout=10,
            headers={"Authorization": f"Bearer {token}", **headers},
        )

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(
            f"{self.api.http_url}/api/v1{path}",
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        )

    def stripe_state(self) -> dict[str, Any]:
        state: dict[str, Any] = httpx.get(f"{self.stripe.http_url}/_insight/state").json()
        return state

    def stripe_fault(self, kind: str, count: int = 1, delay_seconds: float = 0) -> None:
        httpx.post(
            f"{self.stripe.http_url}/_insight/faults",
            json={"kind": kind, "count": count, "delay_seconds": delay_seconds},
        ).raise_for_status()

    def charges_for_job(self, job_id: str) -> list[dict[str, Any]]:
        return [c for c in self.stripe_state()["charges"] if c["metadata"].get("job_id") == job_id]

    def order(self, token: str) -> str:
        """A created order of the token's user (through the whole job pipeline); its id."""
        job = self.wait_job(self.post("/orders", token, COFFEE).json()["job_id"], token)
        order_id: str = job["result"]["order_id"]
        return order_id

    def paid_order(self, token: str) -> tuple[str, dict[str, Any]]:
        """An order paid with a card that succeeds: its id and the finished payment job."""
        order_id = self.order(token)
        body = {"order_id": order_id, "payment_method": "pm_card_visa"}
        job = self.wait_job(self.post("/payments", token, body).json()["job_id"], token)
        return order_id, job

    def wait_job(self, job_id: str, token: str, timeout: float = 20.0) -> dict[str, Any]:
        """Poll GET /jobs/{id} (the API's own contract) until the job has finished."""
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = self.get(f"/jobs/{job_id}", token).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(0.05)


def start_stack(
    redis_url: str,
    database_url: str,
    log_dir: Path,
    edge: Edge | None = None,
    broker_url: str | None = None,
    **edge_env: str,
) -> Stack:
    """Stripe server, API and worker; with no `edge`, also an edge that knows the API's URL
    (the demo page needs it) with `edge_env` added to its environment."""
    api_port, stripe_port = free_port(), free_port()
    broker = {"CELERY_BROKER_URL": broker_url} if broker_url else {}
    env = base_env(
        redis_url,
        DATABASE_URL=database_url,
        STRIPE_API_KEY=STRIPE_TEST_KEY,
        STRIPE_API_BASE=f"http://127.0.0.1:{stripe_port}",
        STRIPE_TIMEOUT_SECONDS="2",
        STRIPE_LOCAL_WEBHOOK_URL=f"http://127.0.0.1:{api_port}/api/v1/webhooks/stripe",
        **broker,
    )
    started: list[Any] = []
    try:
        stripe = ServerProcess(
            "stripe_local.main:app",
            stripe_port,
            env,
            log_dir / f"stripe-{stripe_port}.log",
            ready_path="/healthz",
        ).start()
        started.append(stripe)
        api = ServerProcess("api.main:app", api_port, env, log_dir / f"api-{api_port}.log").start()
        started.append(api)
        metrics_port = free_port()
        worker_env = {**env, "WORKER_METRICS_PORT": str(metrics_port)}
        worker = Worker(worker_env, log_dir / f"worker-{api_port}.log", metrics_port).start()
        started.append(worker)
        if edge is None:
            edge = start_edge(redis_url, log_dir, PUBLIC_API_URL=api.http_url, **edge_env)
            started.append(edge)
    except BaseException:
        for process in started:
            process.stop()
        raise
    return Stack(database_url, api, stripe, worker, edge)
