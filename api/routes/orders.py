"""POST /orders (a job that creates the order), POST /orders/import (one job, many orders),
GET /orders, GET /orders/{order_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from api.deps import CurrentUser, IdempotencyKey, InsightClient, SessionDep, find_own_order
from api.schemas import (
    IMPORT_MAX_BODY_BYTES,
    ImportIn,
    JobAccepted,
    OrderIn,
    OrderItemOut,
    OrderOut,
    refusals,
)
from api.submission import accepted, submit
from core.models import Order
from core.security import Identity
from domain.jobs import JobKind

router = APIRouter(tags=["orders"])
# The routes here whose bodies may be bigger than the API's default (api/main.py).
BODY_LIMITS = {"/orders/import": IMPORT_MAX_BODY_BYTES}


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
    return _accept("order", body, user, session, request, idempotency_key, client)


@router.post(
    "/orders/import",
    status_code=202,
    response_model=JobAccepted,
    responses=refusals(400, 401, 413, 422),
)
def import_orders(
    body: ImportIn,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    client: InsightClient = None,
) -> JSONResponse:
    """Accept 1 to 1,000 orders as one job: the orders workers create them in parallel, with
    one progress bar (done of total) and one toast at the end. An invalid order refuses the
    batch (422 naming it, e.g. `["body", "orders", 17, "items", 0, "quantity"]`)."""
    return _accept("import", body, user, session, request, idempotency_key, client)


def _accept(
    kind: JobKind,
    body: OrderIn | ImportIn,
    user: Identity,
    session: Session,
    request: Request,
    idempotency_key: str | None,
    client: str | None,
) -> JSONResponse:
    body_json = body.model_dump(mode="json")
    job = submit(
        session, user, kind, body_json, idempotency_key, request.state.request_id, client=client
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
