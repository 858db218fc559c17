"""Settings: every variable from the environment; development secrets refused elsewhere."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import DEV_JWT_SECRET, Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests describe defaults, so nothing from the test session's environment."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_development_defaults_work_out_of_the_box() -> None:
    settings = Settings(environment="development")
    assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert settings.redis_url == "redis://localhost:6379/0"


@pytest.mark.parametrize("environment", ["production", "test"])
def test_default_jwt_secret_is_refused_outside_development(environment: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment=environment)


def test_short_hmac_secret_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(environment="production", jwt_secret="short", stripe_webhook_secret="whsec_x1")


def test_rs256_without_public_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="JWT_PUBLIC_KEY"):
        Settings(jwt_algorithm="RS256")


def test_allowed_origins_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://app.example.com/, http://localhost:3000")
    settings = Settings()
    assert settings.allowed_origins == ["https://app.example.com", "http://localhost:3000"]
    assert settings.origin_allowed("https://app.example.com")
    assert settings.origin_allowed(None)
    assert not settings.origin_allowed("https://evil.example.com")


def test_secrets_do_not_appear_in_the_settings_repr() -> None:
    settings = Settings(jwt_secret="a-very-secret-value-that-nobody-should-see-123")
    assert "a-very-secret-value" not in repr(settings)
