"""Business logic of the jobs: plain functions over a database session, no Celery, no Redis."""
