"""POST /orders (a job that creates the order), GET /orders, GET /orders/{order_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.deps import CurrentUser, IdempotencyKey, InsightClient, SessionDep, find_own_order
from api.schemas import JobAccepted, OrderIn, OrderItemOut, OrderOut, refusals
from api.submission import accepted, submit
from core.models import Order

router = APIRouter(tags=["orders"])


@router.post(
    "/orders",
    status_code=202,
    response_model=JobAccepted,
    responses=refusals(400, 401, 413, 422),
)
def create_order(
    body: OrderIn,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    client: InsightClient = None,
) -> JSONResponse:
    """Accept an order; a worker creates it and tells the user's page when it is done."""
    job = submit(
        session,
        user,
        "order",
        body.model_dump(mode="json"),
        idempotency_key,
        request.state.request_id,
        client=client,
    )
    return accepted(job)


def order_out(order: Order) -> OrderOut:
    return OrderOut(
        order_id=str(order.id),
        status=order.status,
        currency=order.currency,
        total_amount=order.total_amount,
        business_id=order.business_id,
        created_at=order.created_at,
        items=[
            OrderItemOut(sku=i.sku, name=i.name, quantity=i.quantity, unit_amount=i.unit_amount)
            for i in order.items
        ],
    )


@router.get("/orders", response_model=list[OrderOut], responses=refusals(401, 422))
def list_orders(
    user: CurrentUser, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> list[OrderOut]:
    """The caller's orders, newest first."""
    orders = session.scalars(
        select(Order)
        .where(Order.user_id == user.user_id)
        .options(selectinload(Order.items))
        .order_by(Order.id.desc())
        .limit(limit)
    )
    return [order_out(o) for o in orders]


@router.get(
    "/orders/{order_id}",
    response_model=OrderOut,
    responses=refusals(401, 404, 422),
)
def get_order(order_id: str, user: CurrentUser, session: SessionDep) -> OrderOut:
    """One of the caller's orders (404 for anyone else's)."""
    order = find_own_order(session, order_id, user.user_id)
    return order_out(order)
