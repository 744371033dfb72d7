"""uvicorn's HTTP/1.1 protocol with one write per small response instead of two.

uvicorn writes a response's head to the socket when the app starts the response, and its body
when the app sends it: two ``send`` system calls, and on loopback or a fast network each one
runs the peer's TCP receive path and wakes it. Measured with ``benchmarks/serve.py`` (py-spy),
these writes were three quarters of the event loop's time when serving tiles, the head's alone
more than the body's. Here the head is held back and written together with the first piece of
the body (one ``writelines``, one ``writev``), or on the loop's next turn when no body follows
in the same step (a HEAD request, a 304, a streamed response waiting for its first chunk).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _HeadHolder:
    """A transport that keeps a response head back until the body's first write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            head, self._held = self._held, None
            if data:
                self._transport.writelines([head, data])
            else:
                self._transport.write(head)
            return
        if isinstance(data, bytes) and data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n"):
            self._held = data
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        self._flush()
        self._transport.writelines(lines)

    def _flush(self) -> None:
        if self._held is not None:
            head, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """``uvicorn.run(..., http=CoalescingHttpToolsProtocol)``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        holder: Any = _HeadHolder(transport, self.loop)
        super().connection_made(holder)
