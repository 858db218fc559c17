"""Create an order from a job's request: once, however often the job is delivered."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.models import Job, Order, OrderItem

# Made once, as domain.jobs' row lock is (it says why).
_ORDER_OF_JOB = select(Order).where(Order.job_id == bindparam("job_id"))


@dataclass(frozen=True)
class OrderView:
    id: int
    total_amount: int
    currency: str


def create_order(session: Session, job_id: str) -> OrderView:
    """The job's order, created from its request unless an earlier delivery already did."""
    existing = session.scalars(_ORDER_OF_JOB, {"job_id": job_id}).one_or_none()
    if existing is not None:
        return OrderView(existing.id, existing.total_amount, existing.currency)
    job = session.get(Job, job_id)
    assert job is not None
    items = [
        OrderItem(
            sku=item["sku"],
            name=item["name"],
            quantity=int(item["quantity"]),
            unit_amount=int(item["unit_amount"]),
        )
        for item in job.request["items"]
    ]
    order = Order(
        job_id=job.id,
        user_id=job.user_id,
        business_id=job.business_id,
        currency=job.request["currency"],
        total_amount=sum(i.quantity * i.unit_amount for i in items),
        items=items,
    )
    session.add(order)
    session.flush()
    return OrderView(order.id, order.total_amount, order.currency)
