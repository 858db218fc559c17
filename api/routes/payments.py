"""POST /payments: a job that charges one of the caller's orders through Stripe."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from api.deps import CurrentUser, IdempotencyKey, InsightClient, SessionDep, find_own_order
from api.schemas import JobAccepted, PaymentIn, refusals
from api.submission import accepted, submit
from core.models import Job
from domain import payments

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
    client: InsightClient = None,
) -> JSONResponse:
    """Charge an order; the page gets a toast and a redirect, or a modal on a decline."""
    order = find_own_order(session, body.order_id, user.user_id)

    def add_payment(job: Job) -> None:
        # Only for a new job: a repeated Idempotency-Key gets its first job even once paid.
        try:
            payments.open_payment(session, job, order, body.payment_method, body.success_url)
        except payments.PaymentConflict as conflict:
            raise HTTPException(status.HTTP_409_CONFLICT, str(conflict)) from None

    job = submit(
        session,
        user,
        "payment",
        body.model_dump(mode="json"),
        idempotency_key,
        request.state.request_id,
        client=client,
        business_id=order.business_id,
        add_rows=add_payment,
        conflict=lambda error: payments.lost_to_another(error, order),
    )
    return accepted(job)
