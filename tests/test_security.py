"""JWT verification: the configured algorithm only, exp and sub required, aud/iss checked,
ids as identity providers issue them, and JWT_LEEWAY_SECONDS of leeway for differing clocks."""

from __future__ import annotations

import time

import jwt
import pytest

from core.config import Settings
from core.security import InvalidToken, issue_token, verify_token
from tests.awkward_ids import BAD_IDS, SHAPES
from tests.harness import TEST_AUDIENCE, TEST_ISSUER, TEST_JWT_SECRET, settings_for

SETTINGS = settings_for("redis://unused")


def _sign(claims: dict[str, object], key: str = TEST_JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "42", "exp": int(time.time()) + 60, "aud": TEST_AUDIENCE, "iss": TEST_ISSUER,
    }  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_issued_token_verifies_to_its_identity() -> None:
    token = issue_token(SETTINGS, "42", business_id="b1", name="Ada")
    identity = verify_token(token, SETTINGS)
    assert (identity.user_id, identity.business_id, identity.name) == ("42", "b1", "Ada")
    assert identity.expires_at > time.time()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_sign(_claims(exp=int(time.time()) - 60)), id="expired"),
        pytest.param(
            _sign(_claims(), key="another-secret-that-is-long-enough-000"), id="wrong-signature"
        ),
        pytest.param(jwt.encode(_claims(), "", algorithm="none"), id="alg-none"),
        pytest.param(_sign(_claims(exp=None)), id="missing-exp"),
        pytest.param(_sign(_claims(sub=None)), id="missing-sub"),
        pytest.param(_sign(_claims(sub=42)), id="numeric-sub"),
        pytest.param(_sign(_claims(aud="someone-else")), id="wrong-audience"),
        pytest.param(_sign(_claims(iss="someone-else")), id="wrong-issuer"),
        pytest.param(_sign(_claims(business_id=["b1"])), id="business-not-a-string"),
        pytest.param(_sign(_claims(), alg="HS512"), id="algorithm-not-configured"),
        pytest.param("not.a.jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(token, SETTINGS)


def test_rs256_verifies_with_the_public_key_and_refuses_hs256_confusion() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = Settings(
        environment="test", jwt_algorithm="RS256", jwt_public_key=public, jwt_private_key=private,
        jwt_secret=TEST_JWT_SECRET,
    )  # fmt: skip
    assert verify_token(issue_token(settings, "7"), settings).user_id == "7"
    # An attacker signing HS256 with the public key as the secret must not pass.
    forged = _sign({"sub": "7", "exp": int(time.time()) + 60}, key=TEST_JWT_SECRET)
    with pytest.raises(InvalidToken):
        verify_token(forged, settings)


@pytest.mark.parametrize("shape", SHAPES)
def test_any_id_an_identity_provider_issues_verifies(shape: str) -> None:
    user, business = SHAPES[shape]("u1"), SHAPES[shape]("b1")
    identity = verify_token(_sign(_claims(sub=user, business_id=business)), SETTINGS)
    assert (identity.user_id, identity.business_id) == (user, business)


@pytest.mark.parametrize("claim", ["sub", "business_id"])
@pytest.mark.parametrize("bad", BAD_IDS)
def test_an_id_nobody_may_have_is_refused_at_verification(claim: str, bad: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(_sign(_claims(**{claim: BAD_IDS[bad]})), SETTINGS)


# -- clock skew: JWT_LEEWAY_SECONDS (default 5) ----------------------------------------------


def _at(iat: float | None = None, exp: float | None = None, **claims: object) -> str:
    now = int(time.time())
    return _sign(_claims(iat=now if iat is None else iat, exp=exp or now + 600, **claims))


def test_iat_nbf_and_exp_are_checked_with_five_seconds_of_leeway() -> None:
    now = int(time.time())
    for accepted in (_at(iat=now + 2), _at(nbf=now + 2), _at(iat=now - 600, exp=now - 2)):
        verify_token(accepted, SETTINGS)
    for refused in (_at(iat=now + 10), _at(nbf=now + 10), _at(iat=now - 600, exp=now - 10)):
        with pytest.raises(InvalidToken):
            verify_token(refused, SETTINGS)


def test_the_leeway_is_jwt_leeway_seconds() -> None:
    strict = settings_for("redis://unused", jwt_leeway_seconds=0)
    assert SETTINGS.jwt_leeway_seconds == 5
    with pytest.raises(InvalidToken):
        verify_token(_at(iat=int(time.time()) + 2), strict)


def test_a_lifetime_is_measured_from_iat_even_when_the_issuers_clock_is_ahead() -> None:
    """An issuer 3 s fast that gives its tokens the longest lifetime allowed is not refused
    for it; one that gives a second more is."""
    ahead, longest = int(time.time()) + 3, SETTINGS.jwt_max_ttl_seconds
    assert verify_token(_at(iat=ahead, exp=ahead + longest), SETTINGS).issued_at == ahead
    with pytest.raises(InvalidToken, match="JWT_MAX_TTL_SECONDS"):
        verify_token(_at(iat=ahead, exp=ahead + longest + 1), SETTINGS)
