"""Every setting of every Insight process, read once from the environment (and `.env`).

Settings are built by `get_settings()` on first use, never at import time, so tests and
tools can set the environment first and call `get_settings.cache_clear()` to re-read it.
They extend the publishing library's own (`realtime.settings.EventsSettings`: the events
Redis, the log's retention), which a process that only publishes reads alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict

from realtime.settings import EventsSettings

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

# Development-only secrets: usable on a laptop, refused anywhere else.
DEV_JWT_SECRET = "insight-dev-jwt-secret-change-me-0123456789"
DEV_STRIPE_API_KEY = "sk_test_insight_local"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_insight_local_dev"
DEV_PUBLISH_API_KEY = "insight-dev-publish-key-change-me-0123456789"

# How long a readiness probe (/readyz, on every service) waits for Redis or the database: a
# dependency that stalls makes the probe answer 503 in time, rather than time out itself.
READY_CHECK_SECONDS = 1.5

# FastAPI's own OpenTelemetry layer, off in every app (the job API's, the edge's): Insight's
# telemetry is its Prometheus metrics and JSON logs, and that layer, left on, asks the global
# providers whether it is configured on every request: 5% of a POST /orders' CPU, for nothing.
FASTAPI_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

Environment = Literal["development", "test", "production"]
JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"]


def _publish_key(key: SecretStr, info: ValidationInfo) -> SecretStr:
    """One of PUBLISH_API_KEYS: long, sendable as a bearer token, and the development key only
    in development. Checked one key at a time, so an error shows `SecretStr('**********')`
    and the key's position, never the keys themselves."""
    value = key.get_secret_value()
    if len(value) < 32:
        raise ValueError("PUBLISH_API_KEYS: each key must be at least 32 characters")
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ValueError("PUBLISH_API_KEYS: each key must be printable ASCII without spaces")
    environment = info.data.get("environment")
    if value == DEV_PUBLISH_API_KEY and environment != "development":
        raise ValueError(
            f"PUBLISH_API_KEYS holds the development default; set real keys "
            f"(ENVIRONMENT={environment})"
        )
    return key


PublishKey = Annotated[SecretStr, AfterValidator(_publish_key)]


class Settings(EventsSettings):
    """Configuration of all services (the library's own included); see `.env.example` for
    the meaning of each variable."""

    # hide_input_in_errors: a refused setting must not print the secrets beside it.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: Environment = "development"
    log_level: str = "INFO"

    # Each defaults to REDIS_URL; set them to split the roles (e.g. RabbitMQ as the broker).
    # REDIS_URL, EVENTS_REDIS_URL and the event log's settings: realtime.settings.
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None
    database_url: str = "sqlite:///var/insight.db"

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_public_key: SecretStr | None = None
    jwt_private_key: SecretStr | None = None
    jwt_algorithm: JwtAlgorithm = "HS256"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # Tokens from an identity provider: the verifying keys come from its JWKS, chosen by the
    # token's `kid`. JWT_ALGORITHMS (comma-separated; default JWT_ALGORITHM) is the allow-list.
    jwt_jwks_url: str | None = None
    jwt_algorithms: Annotated[list[JwtAlgorithm], NoDecode] | None = None
    # The longest a verification waits for the key set (and the fetch's network timeout).
    jwks_timeout_seconds: float = Field(5.0, gt=0, le=60)
    # At most one fetch per interval, however many unknown `kid`s arrive.
    jwks_min_refetch_seconds: float = Field(5.0, ge=0)
    # A key set older than this is fetched again before use, so removed keys stop verifying.
    jwks_max_age_seconds: float = Field(300.0, gt=0)
    # JWT_MAX_TTL_SECONDS and JWT_LEEWAY_SECONDS: realtime.settings (a disconnect needs them).

    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr = SecretStr(DEV_STRIPE_WEBHOOK_SECRET)
    stripe_timeout_seconds: float = Field(20.0, gt=0)

    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])

    # Server keys of the HTTP publish API (POST /api/v1/publish), comma-separated, each at
    # least 32 characters. Unset: none, except in development (DEV_PUBLISH_API_KEY).
    publish_api_keys: Annotated[list[PublishKey], NoDecode] = Field(default_factory=list)

    # The live demo (demo/, served by the edge at /): where its browser reaches the job API,
    # and whether the edge serves it at all (default: only in development).
    public_api_url: str = "http://127.0.0.1:8000"
    demo_enabled: bool | None = None

    # The realtime edge.
    ws_send_buffer: int = Field(256, ge=8)
    # The most replay (events read from the logs on a resume) held per connection at once;
    # the rest is read as the socket takes what was queued.
    ws_replay_max_bytes: int = Field(4 * 1024 * 1024, ge=256 * 1024)
    ws_max_message_bytes: int = Field(4096, ge=256)
    ws_auth_timeout_seconds: float = Field(5.0, gt=0)
    # The longest a client may take to send a request head (a WebSocket handshake or a plain
    # HTTP request), from the TCP accept: a slow sender (slowloris) is disconnected.
    ws_handshake_timeout_seconds: float = Field(5.0, gt=0)
    ws_subscribe_timeout_seconds: float = Field(5.0, gt=0)
    # WebSocket heartbeats: a peer that leaves a ping unanswered this long is disconnected.
    # Pings are sent within a second after their interval (edge.second_wheel).
    ws_ping_interval_seconds: float = Field(20.0, gt=0)
    ws_ping_timeout_seconds: float = Field(20.0, gt=0)
    # At a shutdown (SIGTERM), each open socket gets its 1012 at a random moment within this,
    # so that its clients come back to the other edges spread out, not all in one instant.
    ws_shutdown_drain_seconds: float = Field(5.0, ge=0, le=60)
    # How often the edge's quiet pub/sub connection is PINGed; two silent intervals and it is
    # replaced (a Redis host can vanish without closing the TCP connection).
    pubsub_ping_interval_seconds: float = Field(5.0, gt=0)
    # Presence: each edge rewrites its users' connection counts every third of this; the
    # connections of an edge that dies (kill -9) leave presence within it.
    presence_ttl_seconds: float = Field(30.0, ge=1, le=3600)
    # One user's sockets across all edges; the next one is closed with 4429. 0: no cap.
    ws_max_connections_per_user: int = Field(50, ge=0)
    # Server-Sent Events: how long a ticket (POST /api/v1/insight/tickets) may wait for its
    # stream, and the longest an open stream goes without a byte (a comment line), so that
    # proxies keep it open.
    sse_ticket_seconds: int = Field(30, ge=1, le=300)
    sse_keepalive_seconds: float = Field(15.0, gt=0, le=15.0)

    # A worker serves its Prometheus metrics (tasks, queue depths) on this port when set.
    worker_metrics_port: int | None = None

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("publish_api_keys", mode="before")
    @classmethod
    def _split_publish_keys(cls, value: object) -> object:
        """Each key becomes a SecretStr before it is checked, so no error message shows it."""
        if isinstance(value, str):
            return [SecretStr(key.strip()) for key in value.split(",") if key.strip()]
        return value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()] or None
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production_settings(self) -> Settings:
        self._check_jwks()
        if (
            self.jwt_algorithm.startswith(("RS", "ES"))
            and self.jwt_public_key is None
            and self.jwt_jwks_url is None
        ):
            raise ValueError(
                f"JWT_ALGORITHM={self.jwt_algorithm} needs JWT_PUBLIC_KEY or JWT_JWKS_URL"
            )
        if self.environment == "development":
            return self
        # With a JWKS the secret verifies nothing, so its development default does no harm.
        secret_in_use = self.jwt_jwks_url is None
        defaults = {
            "JWT_SECRET": (self.jwt_secret if secret_in_use else None, DEV_JWT_SECRET),
            "STRIPE_WEBHOOK_SECRET": (self.stripe_webhook_secret, DEV_STRIPE_WEBHOOK_SECRET),
            "STRIPE_API_KEY": (self.stripe_api_key, DEV_STRIPE_API_KEY),
        }
        for name, (value, default) in defaults.items():
            if value is not None and value.get_secret_value() == default:
                raise ValueError(
                    f"{name} is the development default; set a real one "
                    f"(ENVIRONMENT={self.environment})"
                )
        if (
            secret_in_use
            and self.jwt_algorithm.startswith("HS")
            and len(self.jwt_secret.get_secret_value()) < 32
        ):
            raise ValueError("JWT_SECRET must be at least 32 characters for HMAC algorithms")
        return self

    def _check_jwks(self) -> None:
        if self.jwt_jwks_url is None:
            if self.jwt_algorithms is not None:
                raise ValueError(
                    "JWT_ALGORITHMS applies to JWT_JWKS_URL; with one key, JWT_ALGORITHM pins it"
                )
            return
        scheme = urlsplit(self.jwt_jwks_url).scheme
        if scheme not in ("http", "https") or not urlsplit(self.jwt_jwks_url).netloc:
            raise ValueError("JWT_JWKS_URL must be an http(s) URL")
        if scheme != "https" and self.environment == "production":
            raise ValueError("JWT_JWKS_URL must be https with ENVIRONMENT=production")
        symmetric = [name for name in self.accepted_algorithms if name.startswith("HS")]
        if symmetric:
            raise ValueError(
                f"JWT_JWKS_URL takes RS*/ES* algorithms only, not {', '.join(symmetric)} "
                "(set JWT_ALGORITHM or JWT_ALGORITHMS)"
            )

    @property
    def accepted_algorithms(self) -> tuple[str, ...]:
        """The allow-list of token algorithms: JWT_ALGORITHMS (JWKS only), else JWT_ALGORITHM."""
        return tuple(self.jwt_algorithms or (self.jwt_algorithm,))

    @property
    def broker_url(self) -> str:
        """Where Celery messages go (CELERY_BROKER_URL, else REDIS_URL)."""
        return self.celery_broker_url or self.redis_url

    @property
    def result_backend(self) -> str:
        return self.celery_result_backend or self.redis_url

    @property
    def publish_keys(self) -> tuple[SecretStr, ...]:
        """The keys the publish API accepts: PUBLISH_API_KEYS; when unset, in development
        only, DEV_PUBLISH_API_KEY (a laptop publishes without configuring anything)."""
        if self.publish_api_keys:
            return tuple(self.publish_api_keys)
        return (SecretStr(DEV_PUBLISH_API_KEY),) if self.environment == "development" else ()

    @property
    def demo_on(self) -> bool:
        """The edge serves the demo (its pages and its tokens): DEMO_ENABLED, else development."""
        return self.environment == "development" if self.demo_enabled is None else self.demo_enabled

    def origin_allowed(self, origin: str | None) -> bool:
        """Browsers send Origin on WebSocket upgrades; other clients may not, and pass."""
        if origin is None or "*" in self.allowed_origins:
            return True
        return origin.rstrip("/") in self.allowed_origins


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
