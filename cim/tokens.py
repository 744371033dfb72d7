"""API tokens: ``cim token create`` prints one once; the store keeps only its SHA-256.

A token has a role: ``operator`` (everything: uploads, every job, placements) or ``designer``
(uploads, and the jobs and models of their own uploads). Reading the map needs no token unless
the server runs with ``--private``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from cim.errors import CimError, NotFound, UsageError

if TYPE_CHECKING:
    from cim.store import Store

ROLES = ("operator", "designer")
#: what every token starts with, so a leaked one is recognisable in logs and scanners
PREFIX = "cim_"


class AuthError(CimError, PermissionError):
    """No token, or a token that is unknown or revoked."""

    http_status = 401
    code = "unauthorized"


class Forbidden(CimError, PermissionError):
    """A valid token whose role does not allow the action."""

    http_status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(store: Store, role: str, name: str) -> tuple[Token, str]:
    """A new token: its row, and the secret (shown once, never stored)."""
    if role not in ROLES:
        raise UsageError(f"role {role!r}: pick one of {', '.join(ROLES)}")
    if not name.strip():
        raise UsageError("a token needs a name (who or what uses it)")
    secret = PREFIX + secrets.token_urlsafe(32)
    row = store.con.execute(
        "INSERT INTO tokens (name, role, sha256) VALUES (?, ?, ?) RETURNING id",
        [name.strip(), role, _digest(secret)],
    ).fetchone()
    assert row is not None
    return Token(int(row[0]), name.strip(), role), secret


def verify_token(con: duckdb.DuckDBPyConnection, secret: str) -> Token:
    """The token a secret belongs to; ``AuthError`` when it is unknown or revoked."""
    row = con.execute(
        "SELECT id, name, role FROM tokens WHERE sha256 = ? AND revoked_at IS NULL",
        [_digest(secret)],
    ).fetchone()
    if row is None:
        raise AuthError("the token is unknown or revoked: ask an operator for a new one")
    return Token(int(row[0]), str(row[1]), str(row[2]))


def list_tokens(store: Store) -> list[dict[str, object]]:
    rows = store.con.execute(
        "SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY id"
    ).fetchall()
    return [
        {
            "id": r[0],
            "name": r[1],
            "role": r[2],
            "created_at": r[3].isoformat(timespec="seconds"),
            "revoked_at": r[4].isoformat(timespec="seconds") if r[4] else None,
        }
        for r in rows
    ]


def revoke_token(store: Store, token_id: int) -> None:
    done = store.con.execute(
        "UPDATE tokens SET revoked_at = current_timestamp WHERE id = ? AND revoked_at IS NULL "
        "RETURNING id",
        [token_id],
    ).fetchone()
    if done is None:
        raise NotFound(f"no active token {token_id} in {store.path}: `cim token list` shows them")
