"""Celery tasks, one module per queue. Importing this registers them all."""

from workers.tasks import metrics, orders, payments

__all__ = ["metrics", "orders", "payments"]
