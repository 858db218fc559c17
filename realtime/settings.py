"""The library's own settings: all a process that only publishes needs.

A Celery worker of another service, a script or a cron job publishes with nothing but the
events Redis and the log's retention (and, to disconnect users, how long a revocation is
kept). It never reads the application's settings, so it needs no JWT secret, no Stripe key,
no setting of any other service, in any ENVIRONMENT. The application's settings
(`core.config.Settings`) extend these: one definition of each variable.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from realtime.broker.call import Durability
from realtime.broker.log_calls import Retention


class EventsSettings(BaseSettings):
    """Where events go and how long they are kept; read from the environment (and `.env`)."""

    # hide_input_in_errors: a refused setting must not print the secrets beside it.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    redis_url: str = "redis://localhost:6379/0"
    # The Redis of the event logs and live channels, when it is not REDIS_URL's: one server,
    # or any node of a Redis Cluster.
    events_redis_url: str | None = None

    # The durable per-recipient event log (Redis Streams).
    events_max_len: int = Field(1000, ge=10)
    events_max_age_seconds: int = Field(3600, ge=60)
    # A publish (and a revocation) returns only once this many replicas hold it (Redis WAIT),
    # within EVENTS_MIN_REPLICAS_TIMEOUT_MS, else it raises NotReplicated.
    events_min_replicas: int = Field(0, ge=0, le=16)
    events_min_replicas_timeout_ms: int = Field(1000, ge=10, le=60_000)

    # The longest a token may live (exp - iat): longer ones are refused. A user's revocation
    # mark (a disconnect) is kept this long (plus the leeway and a second,
    # `revocation_keep_seconds`), so every token it refuses has expired by the time it goes.
    jwt_max_ttl_seconds: int = Field(86400, ge=60)
    # Clocks differ: `exp`, `nbf` and `iat` are checked with this much leeway, so an issuer a
    # little ahead (or a server a little behind) does not get fresh tokens refused.
    jwt_leeway_seconds: int = Field(5, ge=0, le=300)

    # The modules (comma-separated import paths) that declare the application's own events and
    # ui_update payloads (realtime.registry): every process reads the same ones.
    insight_event_modules: str = ""

    @property
    def event_modules(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.insight_event_modules.split(",") if name.strip())

    @property
    def events_url(self) -> str:
        """The Redis of the UI event logs and pub/sub (EVENTS_REDIS_URL, else REDIS_URL)."""
        return self.events_redis_url or self.redis_url

    @property
    def retention(self) -> Retention:
        return Retention(self.events_max_len, self.events_max_age_seconds)

    @property
    def durability(self) -> Durability:
        return Durability(self.events_min_replicas, self.events_min_replicas_timeout_ms)

    @property
    def revocation_keep_seconds(self) -> int:
        """How long a user's revocation mark is kept: until every token it refuses is refused
        anyway. Such a token was issued at most a second past the mark's second (`iat` may have
        a fraction), lives at most JWT_MAX_TTL_SECONDS, and is accepted JWT_LEEWAY_SECONDS
        past its `exp`."""
        return self.jwt_max_ttl_seconds + self.jwt_leeway_seconds + 1


@lru_cache(maxsize=1)
def events_settings() -> EventsSettings:
    """The process's event settings, read from the environment on first use."""
    return EventsSettings()
