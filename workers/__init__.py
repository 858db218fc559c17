"""Celery workers: `celery -A workers worker -Q orders,payments,metrics` (one queue each in
production) and `celery -A workers beat`. Tasks live in workers/tasks (thin: load, call a
service, publish), business logic in workers/services (plain functions, no Celery)."""

from workers.celery_app import app

__all__ = ["app"]
