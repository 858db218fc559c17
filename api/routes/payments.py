"""POST /payments: a job that charges one of the caller's orders through Stripe."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep
from api.routes.orders import IdempotencyKey, find_own_order
from api.schemas import JobAccepted, PaymentIn, refusals
from api.submission import accepted, submit
from core.models import Job, Payment
from workers.announce import DEFAULT_SUCCESS_URL

router = APIRouter(tags=["payments"])


@router.post(
    "/payments",
    status_code=202,
    response_model=JobAccepted,
    responses=refusals(400, 401, 404, 409, 413, 422),
)
def create_payment(
    body: PaymentIn,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Charge an order; the page gets a toast and a redirect, or a modal on a decline."""
    order = find_own_order(session, body.order_id, user.user_id)

    def add_payment(job: Job) -> None:
        # Only for a new job: a repeated Idempotency-Key gets its first job even once paid.
        if order.status == "paid":
            raise HTTPException(status.HTTP_409_CONFLICT, f"order {order.id} is already paid")
        in_flight = session.scalars(
            select(Payment.id).where(
                Payment.order_id == order.id, Payment.status.in_(("pending", "processing"))
            )
        ).first()
        if in_flight is not None:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"a payment of order {order.id} is already in progress"
            )
        session.add(
            Payment(
                job_id=job.id,
                order_id=order.id,
                user_id=user.user_id,
                business_id=order.business_id,
                amount=order.total_amount,
                currency=order.currency,
                payment_method=body.payment_method,
                success_url=body.success_url or DEFAULT_SUCCESS_URL,
                status="pending",
            )
        )

    job = submit(
        session,
        user,
        "payment",
        body.model_dump(mode="json"),
        idempotency_key,
        request.state.request_id,
        business_id=order.business_id,
        add_rows=add_payment,
    )
    return accepted(job)
