"""POST /metrics/recalculate: a job that pushes fresh figures to a business's dashboards."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from api.deps import CurrentUser, IdempotencyKey, InsightClient, SessionDep
from api.schemas import JobAccepted, MetricsIn, refusals
from api.submission import accepted, submit

router = APIRouter(tags=["metrics"])


@router.post(
    "/metrics/recalculate",
    status_code=202,
    response_model=JobAccepted,
    responses=refusals(400, 401, 403, 413, 422),
)
def recalculate(
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    body: MetricsIn | None = None,
    idempotency_key: IdempotencyKey = None,
    client: InsightClient = None,
) -> JSONResponse:
    """Recompute the caller's business metrics (or the named one, if it is the caller's)."""
    business_id = (body.business_id if body else None) or user.business_id
    if business_id is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "business_id: required, as the token names no business",
        )
    if business_id != user.business_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "business_id: not the caller's business")
    job = submit(
        session,
        user,
        "metrics",
        {"business_id": business_id},
        idempotency_key,
        request.state.request_id,
        client=client,
        business_id=business_id,
    )
    return accepted(job)
