"""A plain `pip install .` (no extras) runs every process of DESIGN.md's process table.

The package is installed, not editable and without extras, into a fresh virtualenv, and
every process is started from that virtualenv's own binaries with the working directory
outside the checkout and no PYTHONPATH, so a module that only an extra (or the source tree)
provides makes its process fail here as it would for an operator.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from cli.local_redis import LocalRedis, free_port
from tests.harness import ROOT, base_env
from tests.stack import COFFEE, STRIPE_TEST_KEY

RUNTIME_PACKAGES = ("api", "cli", "core", "demo", "domain", "realtime", "stripe_local", "workers")
INSTALL_TIMEOUT = 300.0  # pip resolving and unpacking every pinned runtime dependency (~15 s
# alone; over 90 s once, with the machine busy with benchmarks)
# The first test pays for the install in its setup: pytest's per-test timeout allows for it.
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 120)
START_TIMEOUT = 30.0  # any one process, from exec to its health check or start line
# What a checkout holds that is not the project's source: never copied into the build.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", "test-artifacts", "node_modules",
)  # fmt: skip


@dataclass
class Process:
    """One process of the table, run from the plain virtualenv, its output in a log file."""

    name: str
    log_path: Path
    popen: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, what: str, ready: Callable[[], bool]) -> None:
        """Poll `ready` until it holds; fail at once if the process exits meanwhile."""
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if self.popen.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no {what} in {START_TIMEOUT}s:\n{self.tail()}")
            time.sleep(0.1)

    def wait_healthy(self, url: str) -> None:
        def answers() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_until(f"200 from {url}", answers)

    def wait_logged(self, line: str) -> None:
        self.wait_until(repr(line) + " in its log", lambda: line in self.log_text())

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def tail(self) -> str:
        return self.log_text()[-3000:]


@dataclass
class PlainInstall:
    """A virtualenv holding only `insight` and its declared runtime dependencies."""

    bin: Path
    workdir: Path  # outside the checkout: the working directory of every process

    def run(
        self, *argv: str, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> PlainInstall:
    root = tmp_path_factory.mktemp("plain-install")
    # Built from a copy, so that the build writes nothing (build/, egg-info) into the checkout.
    source = shutil.copytree(ROOT, root / "source", ignore=NOT_SOURCE)
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    installed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
         "-c", str(ROOT / "constraints.txt"), str(source)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    workdir = root / "run"
    workdir.mkdir()
    return PlainInstall(bin_dir, workdir)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(free_port(), tmp_path / "redis").start()
    yield server
    server.stop()


def clean_env(redis_url: str, plain: PlainInstall, **overrides: str) -> dict[str, str]:
    """The test processes' environment, without anything that leads back to the checkout."""
    env = base_env(redis_url, **overrides)
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PATH"] = f"{plain.bin}{os.pathsep}{env.get('PATH', '')}"
    return env


def normalised(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_every_third_party_module_the_runtime_imports_is_a_declared_dependency() -> None:
    """Also those that a declared dependency happens to pull in today (hiredis, starlette,
    websockets): what the code imports by name, `[project].dependencies` names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        normalised(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])
        for requirement in project["dependencies"]
    }
    providers = importlib.metadata.packages_distributions()
    undeclared: dict[str, set[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in imported_modules(path):
                if module in sys.stdlib_module_names or module in RUNTIME_PACKAGES:
                    continue
                if not declared & {normalised(d) for d in providers.get(module, [module])}:
                    undeclared.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    assert undeclared == {}


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every absolute import in a file, wherever it stands."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.partition(".")[0])
    return modules


@pytest.mark.slow
def test_the_installed_package_is_not_the_checkout(plain_install: PlainInstall) -> None:
    """Guards the test below: its processes import the installed copy, not the source tree,
    with the files each package serves (the client's and the demo's static files)."""
    probe = (
        "import importlib, json, sys;"
        "print(json.dumps([importlib.import_module(m).__file__ for m in sys.argv[1:]]))"
    )
    result = plain_install.run(
        "python", "-c", probe, *RUNTIME_PACKAGES, env=clean_env("", plain_install), timeout=30
    )
    assert result.returncode == 0, result.stderr
    site_packages = plain_install.bin.parent / "lib"
    installed = dict(zip(RUNTIME_PACKAGES, json.loads(result.stdout), strict=True))
    for module_file in installed.values():
        assert Path(module_file).is_relative_to(site_packages), module_file
        assert not Path(module_file).is_relative_to(ROOT), module_file
    for package, served in (("realtime", "insight.js"), ("demo", "demo.html")):
        assert (Path(installed[package]).parent / "static" / served).is_file(), package


@pytest.mark.slow
def test_a_plain_install_runs_every_process(
    plain_install: PlainInstall, private_redis: LocalRedis, tmp_path: Path
) -> None:
    api_port, edge_port, stripe_port, metrics_port = (free_port() for _ in range(4))
    env = clean_env(
        private_redis.url,
        plain_install,
        DATABASE_URL=f"sqlite:///{tmp_path / 'insight.db'}",
        STRIPE_API_KEY=STRIPE_TEST_KEY,
        STRIPE_API_BASE=f"http://127.0.0.1:{stripe_port}",
        STRIPE_LOCAL_WEBHOOK_URL=f"http://127.0.0.1:{api_port}/api/v1/webhooks/stripe",
        WORKER_METRICS_PORT=str(metrics_port),
    )

    migrated = plain_install.run("insight", "migrate", env=env, timeout=START_TIMEOUT)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    processes: dict[str, Process] = {}

    def start(name: str, *argv: str) -> Process:
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [str(plain_install.bin / argv[0]), *argv[1:]],
                cwd=plain_install.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes[name] = Process(name, log_path, popen)
        return processes[name]

    try:
        stripe = start("stripe-server", "insight", "stripe-server", "--port", str(stripe_port))
        api = start(
            "api", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(api_port)
        )
        edge = start("edge", "insight", "edge", "--port", str(edge_port))
        worker = start(
            "worker", "celery", "-A", "workers", "worker", "-Q", "orders,payments,metrics",
            "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
        )  # fmt: skip
        beat = start("beat", "celery", "-A", "workers", "beat", "-l", "INFO")

        stripe.wait_healthy(f"http://127.0.0.1:{stripe_port}/healthz")
        api.wait_healthy(f"http://127.0.0.1:{api_port}/readyz")
        edge.wait_healthy(f"http://127.0.0.1:{edge_port}/readyz")
        worker.wait_logged(" ready.")
        worker.wait_healthy(f"http://127.0.0.1:{metrics_port}/metrics")
        beat.wait_logged("beat: Starting...")

        # Together they do the product's job: an order and its payment, the toasts on a socket.
        issued = plain_install.run(
            "insight", "token", "--user", "42", "--business", "b1", env=env, timeout=30
        )
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip()
        toasts = order_and_pay(api_port, edge_port, token)
        assert toasts == ["Order created", "Payment received"]
        for process in processes.values():
            assert process.popen.poll() is None, f"{process.name} exited:\n{process.tail()}"
    finally:
        for process in processes.values():
            process.stop()


def order_and_pay(api_port: int, edge_port: int, token: str) -> list[str]:
    """POST an order, then pay it with a card that succeeds; the toasts the user's socket got."""
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    url = f"ws://127.0.0.1:{edge_port}/api/v1/insight?token={token}"
    with api, connect(url, open_timeout=10) as socket:
        until(socket, lambda frame: frame["type"] == "insight_ready")
        order_job = finished_job(api, api.post("/orders", json=COFFEE))
        assert order_job["status"] == "succeeded", order_job
        first = until(socket, lambda frame: frame["type"] == "ui_toast")
        payment = {"order_id": order_job["result"]["order_id"], "payment_method": "pm_card_visa"}
        payment_job = finished_job(api, api.post("/payments", json=payment))
        assert payment_job["status"] == "succeeded", payment_job
        second = until(socket, lambda frame: frame["type"] == "ui_toast")
    return [first["title"], second["title"]]


def finished_job(api: httpx.Client, submitted: httpx.Response) -> dict[str, Any]:
    assert submitted.status_code == 202, submitted.text
    deadline = time.monotonic() + 20
    while True:
        job: dict[str, Any] = api.get(submitted.json()["status_url"].removeprefix("/api/v1")).json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def until(
    socket: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """The first frame that satisfies `done`, received within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        frame: dict[str, Any] = json.loads(
            socket.recv(timeout=max(0.01, deadline - time.monotonic()))
        )
        if done(frame):
            return frame
