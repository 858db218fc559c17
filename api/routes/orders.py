"""POST /orders (a job that creates the order), GET /orders, GET /orders/{order_id}."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.deps import CurrentUser, SessionDep
from api.schemas import JobAccepted, OrderIn, OrderItemOut, OrderOut, refusals
from api.submission import accepted, submit
from core.models import Order

router = APIRouter(tags=["orders"])

# ASCII digits only (str.isdigit() also takes "²" and "③", which int() then refuses), within
# the INTEGER primary key (32 bits on PostgreSQL, which refuses a larger parameter).
_ORDER_ID = re.compile(r"[0-9]{1,10}")
_MAX_ID = 2**31 - 1

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a submission safely: the same key and body return the first job.",
    ),
]


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
) -> JSONResponse:
    """Accept an order; a worker creates it and tells the user's page when it is done."""
    job = submit(
        session,
        user,
        "order",
        body.model_dump(mode="json"),
        idempotency_key,
        request.state.request_id,
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


def find_own_order(session: SessionDep, order_id: str, user_id: str) -> Order:
    known = _ORDER_ID.fullmatch(order_id) is not None and int(order_id) <= _MAX_ID
    order = session.get(Order, int(order_id)) if known else None
    if order is None or order.user_id != user_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} not found")
    return order
