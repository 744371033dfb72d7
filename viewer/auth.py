"""Bearer tokens for the API (``cim/tokens.py`` keeps their hashes).

``reader`` guards what reading needs (nothing, unless the server is private), ``writer`` what
changes the store (a designer or an operator), ``operator`` what only operators do. Failed
sign-ins are limited per client (``ServerState.failures``): after ten in a minute, 429 until
it passes.
"""

from __future__ import annotations

from fastapi import Depends, Request

from cim.tokens import AuthError, Forbidden, Token, verify_token
from viewer.state import ServerState, TooManyAttempts

__all__ = ["TooManyAttempts", "current_token", "operator", "reader", "state_of", "writer"]


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.cim
    return state


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def current_token(request: Request) -> Token | None:
    """The request's token (None when it sends none); a wrong token is an error."""
    header = request.headers.get("authorization", "")
    if not header:
        return None
    state = state_of(request)
    client = _client(request)
    state.failures.check(client)
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        state.failures.failed(client)
        raise AuthError("send the token as `Authorization: Bearer <token>`")
    with state.reader() as store:
        try:
            return verify_token(store.con, secret.strip())
        except AuthError:
            state.failures.failed(client)
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
