"""examples/nextjs as its users run it: `npm ci`, `next build`, `next start`, in a temporary
copy (never inside the checkout), against the real stack of tests/stack.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.harness import ROOT, TEST_AUDIENCE, TEST_ISSUER, TEST_JWT_SECRET
from tests.stack import SERVER_KEY, Stack

APP = ROOT / "examples" / "nextjs"
# What a checkout may hold that is not the app's source (a developer's own install or build).
NOT_SOURCE = ("node_modules", ".next", "next-env.d.ts", "*.tsbuildinfo", ".env.local")
NPM_CI_TIMEOUT = 240.0  # a cold npm cache downloads about 100 MB
BUILD_TIMEOUT = 240.0
START_TIMEOUT = 30.0


def npm_or_skip() -> str:
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("INSIGHT_REQUIRE_NODE"):
            pytest.fail("npm is missing and INSIGHT_REQUIRE_NODE is set")
        pytest.skip("the Next.js example needs Node.js and npm")
    return npm


def node_env(**extra: str) -> dict[str, str]:
    """The environment of every npm and next command: no telemetry, no update checks."""
    return {
        **os.environ,
        "NEXT_TELEMETRY_DISABLED": "1",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        **extra,
    }


def copy_app(destination: Path) -> Path:
    shutil.copytree(APP, destination, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    return destination


def start_npm_ci(npm: str, workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    """`npm ci` from package-lock.json, in the background; npm's own cache (~/.npm) makes
    every run after the first an offline one."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"],
            cwd=workdir,
            env=node_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_npm_ci(process: subprocess.Popen[bytes], log: Path, started: float) -> float:
    """Wait for `npm ci` (bounded); the seconds it took from `started`."""
    try:
        code = process.wait(NPM_CI_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        process.kill()
        process.wait(10)
        raise AssertionError(f"npm ci took over {NPM_CI_TIMEOUT}s:\n{log.read_text()}") from error
    assert code == 0, f"npm ci failed:\n{log.read_text(errors='replace')[-3000:]}"
    return time.monotonic() - started


def next_bin(workdir: Path) -> str:
    return str(workdir / "node_modules" / ".bin" / "next")


def build(workdir: Path, stack: Stack, log: Path) -> float:
    """`next build` with the stack's URLs inlined (NEXT_PUBLIC_*); the seconds it took."""
    env = node_env(
        NEXT_PUBLIC_INSIGHT_WS=stack.edge.ws_url, NEXT_PUBLIC_INSIGHT_API=stack.api.http_url
    )
    started = time.monotonic()
    built = subprocess.run(
        [next_bin(workdir), "build"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    log.write_text(built.stdout + built.stderr)
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    return time.monotonic() - started


@dataclass
class NextApp:
    """`next start` on a production build; the token route signs with the stack's secret."""

    workdir: Path
    port: int
    log_path: Path
    stack: Stack
    timings: dict[str, float] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NextApp:
        env = node_env(
            JWT_SECRET=TEST_JWT_SECRET,
            JWT_AUDIENCE=TEST_AUDIENCE,
            JWT_ISSUER=TEST_ISSUER,
            INSIGHT_TOKEN_TTL_SECONDS="900",
            INSIGHT_PUBLISH_KEY=SERVER_KEY,
        )
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [next_bin(self.workdir), "start", "-H", "127.0.0.1", "-p", str(self.port)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as one in stop()
            )
        deadline = started + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"next start exited:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"next start not ready in {START_TIMEOUT}s:\n{self.log_text()}")
            time.sleep(0.1)
        self.timings["start"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
