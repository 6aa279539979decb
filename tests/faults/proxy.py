"""A TCP proxy between the service and a dependency, in a thread of its own, that can cut
the link (every connection reset, new ones refused), freeze it (nothing forwarded, nothing
accepted, connections held open) and restore it."""

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any

CHUNK = 65536


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._state = "up"

    # -- driven from the test's thread --------------------------------------------------

    def start(self) -> "FaultProxy":
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        """Reset every open connection (RST) and refuse new ones."""
        self._call(self._cut())

    def freeze(self) -> None:
        """Forward nothing and accept nothing, but hold every connection open: packets lost."""
        self._call(self._freeze())

    def restore(self) -> None:
        self._call(self._restore())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # -- on the proxy's loop -----------------------------------------------------------

    async def _listen(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._state == "cut":
            _reset(writer)
            return
        # Frozen: the connection is accepted by the kernel but waits here, unanswered.
        await self._flowing.wait()
        if self._state == "cut":
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for each in (writer, up_writer):
                self._writers.discard(each)
                each.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    async def _cut(self) -> None:
        self._state = "cut"
        self._flowing.set()
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()
        if self._server is not None:
            # Closed, so that new connections are refused by the kernel.
            self._server.close()
            self._server = None

    async def _freeze(self) -> None:
        self._state = "frozen"
        self._flowing.clear()

    async def _restore(self) -> None:
        self._state = "up"
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True
            )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, as a crashed host or a firewall's reject would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
