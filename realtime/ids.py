"""What a user or business id may be: the one rule, for tokens, publishing and the APIs.

An id is whatever an identity provider issues as a token's `sub` or `business_id`
(`urn:user:42`, `auth0|5f3c`, `acme:eu`, any script): 1 to MAX_ID_LENGTH characters, none of
them a control character. Nothing else is refused, because nothing else needs to be: no code
trusts an id's characters (Redis key names are derived from ids by an encoding, in
`realtime.recipients`). What is refused is what no text store or log line should carry: C0
and C1 controls (NUL, newlines, escapes, DEL), and lone surrogates, which no UTF-8 can encode.
Ids are compared exactly as given: two ids that differ only in case or in Unicode form are two
users, as the identity provider says.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

MAX_ID_LENGTH = 256
ID_RULE = f"1-{MAX_ID_LENGTH} characters without control characters"

# The rule as a pattern for schemas (OpenAPI, JSON Schema: ECMA-262 syntax, which Python and
# pydantic's Rust engine read alike); lone surrogates cannot be written in it for every engine,
# so `check_id` refuses them itself.
ID_PATTERN = re.compile(rf"^[^\x00-\x1f\x7f-\x9f]{{1,{MAX_ID_LENGTH}}}$")


def check_id(ident: object) -> str:
    """`ident` if it is a valid id, else ValueError (whose message never quotes it)."""
    if not isinstance(ident, str) or not ID_PATTERN.fullmatch(ident):
        raise ValueError(f"must be {ID_RULE}")
    if not ident.isascii():
        try:
            ident.encode()
        except UnicodeEncodeError:
            raise ValueError(f"must be {ID_RULE}, in Unicode (no lone surrogate)") from None
    return ident


# An id in a request body: documented by the pattern, judged by `check_id`, and taken as
# given even where a model strips the whitespace around its other strings.
IdText = Annotated[
    str,
    StringConstraints(strip_whitespace=False),
    Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN.pattern),
    AfterValidator(check_id),
]


# A browser tab's id (`client=` on a socket, the `Insight-Client` header on the job API): made
# by insight.js, so its alphabet can be strict. It appears in presence fields and announcements,
# which is why it may hold no `:`, space or newline.
CLIENT_RULE = "1-64 characters of A-Z, a-z, 0-9, _ and -"
CLIENT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_client(client: object) -> str:
    """`client` if it is a valid tab id, else ValueError (whose message never quotes it)."""
    if not isinstance(client, str) or not CLIENT_PATTERN.fullmatch(client):
        raise ValueError(f"a tab id must be {CLIENT_RULE}")
    return client
