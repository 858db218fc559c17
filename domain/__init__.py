"""The business rules shared by the API and the workers: plain functions over a SQLAlchemy
session; no Celery, no FastAPI.

registry.py is the one table of job kinds (task, queue, time limits, outcome announcer,
cleanup); jobs.py the lifecycle of a job; orders.py, payments.py, webhooks.py and metrics.py
what each kind does; announcements.py every UI event about a job; reliability.py the Celery
settings that the API's producer and the workers share."""
