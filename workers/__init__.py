"""Celery workers: `celery -A workers worker -Q orders,payments,metrics` (one queue each in
production) and `celery -A workers beat`. Tasks live in workers/tasks (thin: load, call a
domain function, publish), the business rules in domain/ (plain functions, no Celery)."""

from workers.celery_app import app

__all__ = ["app"]
