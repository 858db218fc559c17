"""A process that only publishes needs nothing but the events Redis (the library's own
settings): no JWT secret, no Stripe key, no other service's setting, in any ENVIRONMENT, and
importing the library brings no web framework and nothing of the application.

Before the split, `UIManager.for_user("42").show_toast(...)` with ENVIRONMENT=production and
only EVENTS_REDIS_URL set raised "JWT_SECRET is the development default", and then, with it
set, "STRIPE_WEBHOOK_SECRET is the development default".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli.local_redis import LocalRedis

PRODUCER = """
import json, sys
from realtime import UIManager
ui = UIManager.for_user("42")
event_id = ui.show_toast("Hi", "there", "success")
mark = ui.disconnect()
heavy = sorted({"fastapi", "starlette", "uvicorn", "sqlalchemy", "celery", "core", "edge", "api"}
               & {name.split(".")[0] for name in sys.modules})
print(json.dumps({"id": event_id, "mark": mark, "imported": heavy}))
"""


def test_a_producer_publishes_in_production_with_only_the_events_redis(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    environment = {"ENVIRONMENT": "production", "EVENTS_REDIS_URL": redis_server.url}
    done = subprocess.run(
        [sys.executable, "-c", PRODUCER],
        env=environment,  # nothing else: no PATH, no HOME, no secret
        cwd=tmp_path,  # no .env file to read
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["id"].startswith("u")
    assert answer["mark"] > 0
    assert answer["imported"] == []
