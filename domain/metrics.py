"""A business's figures, computed by the database: orders, revenue, average order value and
payment success rate, for today (UTC), the last 7 days and the last 30 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.models import Order, Payment


def windows(now: datetime) -> dict[str, datetime]:
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"today": midnight, "7d": now - timedelta(days=7), "30d": now - timedelta(days=30)}


def business_metrics(
    session: Session, business_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """Figures per window; money per currency, in minor units."""
    now = now or datetime.now(UTC)
    figures: dict[str, Any] = {}
    for name, since in windows(now).items():
        orders = session.execute(
            select(
                Order.currency,
                func.count(Order.id),
                func.sum(case((Order.status == "paid", Order.total_amount), else_=0)),
                func.sum(case((Order.status == "paid", 1), else_=0)),
            )
            .where(Order.business_id == business_id, Order.created_at >= since)
            .group_by(Order.currency)
        ).all()
        succeeded, failed = session.execute(
            select(
                func.sum(case((Payment.status == "succeeded", 1), else_=0)),
                func.sum(case((Payment.status == "failed", 1), else_=0)),
            ).where(Payment.business_id == business_id, Payment.created_at >= since)
        ).one()
        succeeded, failed = int(succeeded or 0), int(failed or 0)
        revenue = {currency: int(paid or 0) for currency, _, paid, _ in orders}
        paid_counts = {currency: int(n or 0) for currency, _, _, n in orders}
        figures[name] = {
            "orders": sum(int(count) for _, count, _, _ in orders),
            "paid_orders": sum(paid_counts.values()),
            "revenue": revenue,
            "average_order_value": {
                c: round(revenue[c] / paid_counts[c]) for c in revenue if paid_counts[c]
            },
            "payment_success_rate": (
                round(succeeded / (succeeded + failed), 4) if succeeded + failed else None
            ),
        }
    figures["computed_at"] = now.isoformat()
    return figures


def active_businesses(session: Session, now: datetime | None = None) -> list[str]:
    """Businesses with orders in the last 30 days: the ones whose dashboards may be open."""
    since = (now or datetime.now(UTC)) - timedelta(days=30)
    rows = session.scalars(
        select(Order.business_id)
        .where(Order.business_id.is_not(None), Order.created_at >= since)
        .distinct()
    )
    return sorted(b for b in rows if b is not None)
