"""`uvicorn stripe_local.main:app` (or `insight stripe-server`): configured from the environment.

STRIPE_LOCAL_WEBHOOK_URL is where events are posted (the job API's /api/v1/webhooks/stripe),
signed with STRIPE_WEBHOOK_SECRET.
"""

from __future__ import annotations

import os

from core.config import get_settings
from core.json_logs import configure_logging
from stripe_local.app import StripeLocal

configure_logging(get_settings().log_level)
app = StripeLocal(
    os.environ.get("STRIPE_LOCAL_WEBHOOK_URL"),
    get_settings().stripe_webhook_secret.get_secret_value(),
).app
