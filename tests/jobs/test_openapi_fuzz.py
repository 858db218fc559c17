"""schemathesis against the running job API and its own OpenAPI document: no 5xx, and every
answer is one the document describes (status code, content type, headers, body).

The verdict must not depend on the machine's speed: a fixed seed, a fixed number of examples
per operation, no example database carried over from an earlier run, no time budget, no
response-time check and no health check that times generation, one worker. schemathesis runs
as its CLI (its pytest loader does not work with pytest 9) against the API process of the
`stack` fixture, with a valid token so that the cases reach the handlers, and with a real
order and job of that token's user among the ids it tries.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import unique
from tests.stack import COFFEE, Stack

pytestmark = pytest.mark.fuzz

SEED = 20261201
EXAMPLES_PER_OPERATION = 60  # per phase; the coverage phase adds the edge cases it derives
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",  # what the schema calls invalid is refused with a 4xx
    "ignored_auth",  # an operation that needs the token refuses a request without one
]


def schemathesis_config(token: str, order_id: str, job_id: str) -> str:
    """The run's configuration, with a real order and job of the token's user offered for
    about half of the `order_id` and `job_id` values, so success paths are reached too."""
    return (
        base_config(token)
        + f"""
[dictionaries]
orders.values = [{json.dumps(order_id)}]
jobs.values = [{json.dumps(job_id)}]

[parameters]
"path.order_id" = {{ dictionary = "orders", probability = 0.5 }}
"body.order_id" = {{ dictionary = "orders", probability = 0.5 }}
"path.job_id" = {{ dictionary = "jobs", probability = 0.5 }}
"""
    )


def base_config(token: str) -> str:
    """Seed, sizes, phases and checks, authenticated with `token`: the same for every run."""
    checks = "\n".join(f"{name}.enabled = true" for name in CHECKS)
    return f"""
seed = {SEED}
suppress-health-check = ["all"]
workers = 1
request-timeout = 10
headers = {{ Authorization = "Bearer {token}" }}

[generation]
mode = "all"
max-examples = {EXAMPLES_PER_OPERATION}
database = "none"

[phases]
examples.enabled = true
coverage.enabled = true
fuzzing.enabled = true
stateful.enabled = false

[checks]
enabled = false
{checks}
"""


def test_every_operation_answers_as_its_openapi_says(
    stack: Stack, token: Callable[..., str], tmp_path: Path
) -> None:
    user = token(unique("fuzz"), "b1")
    job = stack.wait_job(stack.post("/orders", user, COFFEE).json()["job_id"], user)
    config = schemathesis_config(user, job["result"]["order_id"], job["job_id"])
    report, counts = run_schemathesis(tmp_path, config, f"{stack.api.http_url}/openapi.json")
    assert len(set(counts)) == 1, f"not every operation was tested:\n{report}"


def run_schemathesis(
    directory: Path, config: str, *run_arguments: str
) -> tuple[str, tuple[str, str, str]]:
    """`schemathesis run` with `config`, which must pass; its report, and the operations it
    selected, of how many, and tested (as the report prints them)."""
    path = directory / "schemathesis.toml"
    path.write_text(config)
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(path)]
    command += ["--no-color", "run", *run_arguments]
    started = time.monotonic()
    run = subprocess.run(
        command, cwd=directory, capture_output=True, text=True, timeout=100, check=False
    )
    elapsed = time.monotonic() - started
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis failed after {elapsed:.1f} s:\n{report}"
    tested = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert tested is not None, report
    print(f"schemathesis: {elapsed:.1f} s\n{report[report.find('Test cases:') :]}")
    selected, of, done = tested.groups()
    return report, (selected, of, done)
