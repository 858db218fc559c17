"""A business's figures as the metrics workers compute them (domain/metrics.py), for tests that
publish a `metrics_update` (its payload is typed: realtime/payloads.py)."""

from __future__ import annotations

from typing import Any

WINDOW = {
    "orders": 17,
    "paid_orders": 12,
    "revenue": {"usd": 10800},
    "average_order_value": {"usd": 900},
    "payment_success_rate": 0.9231,
}
FIGURES: dict[str, Any] = {
    "today": WINDOW,
    "7d": WINDOW,
    "30d": WINDOW,
    "computed_at": "2026-06-15T12:00:00+00:00",
}
