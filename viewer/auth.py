"""Bearer tokens for the API (``cim/tokens.py`` keeps their hashes).

``reader`` guards what reading needs (nothing, unless the server is private), ``writer`` what
changes the store (a designer or an operator), ``operator`` what only operators do. Failed
sign-ins are limited per client: after ``MAX_FAILURES`` in a minute, 429 until it passes.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from fastapi import Depends, Request

from cim.errors import CimError
from cim.tokens import AuthError, Forbidden, Token, verify_token
from viewer.state import ServerState

MAX_FAILURES = 10
WINDOW_SECONDS = 60.0


class TooManyAttempts(CimError):
    http_status = 429
    code = "too_many_attempts"


_failures: dict[str, deque[float]] = defaultdict(deque)
_failures_lock = threading.Lock()


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.cim
    return state


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _check_rate(client: str) -> None:
    now = time.monotonic()
    with _failures_lock:
        seen = _failures[client]
        while seen and now - seen[0] > WINDOW_SECONDS:
            seen.popleft()
        if len(seen) >= MAX_FAILURES:
            raise TooManyAttempts(f"too many failed sign-ins from {client}: try again in a minute")


def _failed(client: str) -> None:
    with _failures_lock:
        _failures[client].append(time.monotonic())


def current_token(request: Request) -> Token | None:
    """The request's token (None when it sends none); a wrong token is an error."""
    header = request.headers.get("authorization", "")
    if not header:
        return None
    client = _client(request)
    _check_rate(client)
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        _failed(client)
        raise AuthError("send the token as `Authorization: Bearer <token>`")
    with state_of(request).reader() as store:
        try:
            return verify_token(store.con, secret.strip())
        except AuthError:
            _failed(client)
            raise


def reader(request: Request, token: Token | None = Depends(current_token)) -> Token | None:
    if token is None and state_of(request).settings.private:
        raise AuthError("this server is private: send a token (`cim token create`)")
    return token


def writer(token: Token | None = Depends(current_token)) -> Token:
    if token is None:
        raise AuthError("this needs a token with the designer or operator role")
    return token


def operator(token: Token = Depends(writer)) -> Token:
    if token.role != "operator":
        raise Forbidden(f"token {token.name!r} is a {token.role}'s: this needs an operator")
    return token
