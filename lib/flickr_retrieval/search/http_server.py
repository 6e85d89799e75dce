"""The page's HTTP server, bounded by resource: waitress (a well-kept pure-Python WSGI server: one
asynchronous loop reads and writes every connection, a fixed pool of threads answers requests, so an
idle or slow connection holds a socket, never a thread) with a cap on connections per client address
and a deadline on each request's head. Used by :mod:`serve` (``flickr-retrieval-serve``) and the
browser test; nothing here knows what the page serves.
"""

from __future__ import annotations

import socket
import time

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from ..errors import ServeError

#: A request's head (its request line and headers) must arrive whole within this many seconds.
HEAD_DEADLINE_S = 10.0
#: A connection with no request in progress is closed after this many seconds without a byte.
IDLE_TIMEOUT_S = 30
#: Connections open at once, idle ones included (each costs a socket, never a thread); beyond it
#: new connections wait in the system's queue until one closes.
MAX_CONNECTIONS = 512
#: Connections open at once from one client address; the next one is answered 503 and closed.
MAX_CONNECTIONS_PER_CLIENT = 128
#: Threads that answer requests (a search is one sentence embedded and one matrix-vector product).
THREADS = 8
#: Largest request head, in bytes (a query is at most a few hundred characters).
MAX_HEAD_BYTES = 64 * 1024

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 43\r\nConnection: close\r\n\r\ntoo many connections: try again in a moment"
)


class _Channel(HTTPChannel):
    """waitress's connection, which remembers when the request it is reading began."""

    head_started = 0.0

    def received(self, data):
        if self.request is None and data:
            self.head_started = time.monotonic()
        return super().received(data)

    def head_overdue(self, now: float, deadline: float) -> bool:
        """A request head begun more than ``deadline`` seconds ago and still incomplete."""
        request = self.request
        return request is not None and not request.headers_finished and now - self.head_started > deadline


class BoundedServer(TcpWSGIServer):
    """waitress's server (asynchronous I/O: an idle or slow connection holds a socket, never one
    of the :data:`THREADS` worker threads) with two more bounds: at most ``per_client``
    connections from one address (the next is answered 503 at once) and a deadline on each
    request's head (a client sending one byte every few seconds is cut off; waitress's idle
    timeout alone never fires for it)."""

    channel_class = _Channel
    per_client = MAX_CONNECTIONS_PER_CLIENT
    head_deadline = HEAD_DEADLINE_S

    def handle_accept(self):
        try:
            pair = self.accept()
        except OSError:
            return
        if pair is None:
            return
        conn, addr = pair
        client = addr[0] if isinstance(addr, tuple) else addr
        open_now = sum(1 for c in list(self.active_channels.values()) if c.addr and c.addr[0] == client)
        if open_now >= self.per_client:
            try:
                conn.sendall(_BUSY)
            except OSError:
                pass
            conn.close()
            return
        try:
            self.set_socket_options(conn)
        except OSError:  # the client left before we got to it
            conn.close()
            return
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)

    def maintenance(self, now):
        super().maintenance(now)  # waitress: idle connections closed
        clock = time.monotonic()
        for channel in list(self.active_channels.values()):
            if channel.head_overdue(clock, self.head_deadline):
                channel.will_close = True


def make_server(
    app,
    host: str,
    port: int,
    *,
    threads: int = THREADS,
    max_connections: int = MAX_CONNECTIONS,
    per_client: int = MAX_CONNECTIONS_PER_CLIENT,
    head_deadline: float = HEAD_DEADLINE_S,
    idle_timeout: int = IDLE_TIMEOUT_S,
):
    """The page's server: `waitress <https://docs.pylonsproject.org/projects/waitress/>`_ (a
    well-kept pure-Python WSGI server: connections are read and written by one asynchronous loop,
    requests answered by a fixed pool of ``threads``), bounded by resource: ``max_connections`` open
    at once, ``per_client`` from one address, a request head within ``head_deadline`` seconds and
    :data:`MAX_HEAD_BYTES`, an idle connection closed after ``idle_timeout`` seconds, no request
    body over 64 KiB. Returns the server: ``.run()`` serves until interrupted, ``.close()`` stops it;
    ``.effective_port`` is the port bound (``port=0``: a free one)."""
    adj = Adjustments(
        host=host,
        port=port,
        threads=threads,
        connection_limit=max_connections,
        channel_timeout=idle_timeout,
        cleanup_interval=1,  # the head deadline and the idle timeout are checked every second
        asyncore_use_poll=True,  # poll(): no limit at 1024 descriptors
        max_request_header_size=MAX_HEAD_BYTES,
        max_request_body_size=64 * 1024,
        expose_tracebacks=False,
        ident="flickr-retrieval",
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(threads)
    sockets: dict = {}
    servers = []
    for sockinfo in adj.listen:
        server = BoundedServer(app, sockets, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
        server.per_client, server.head_deadline = per_client, head_deadline
        servers.append(server)
    if len(servers) == 1:
        return servers[0]
    return MultiSocketServer(
        sockets, adj, [(s.effective_host, s.effective_port) for s in servers], dispatcher, servers[0].log_info
    )


def stop(server) -> None:
    """Stop a server made by :func:`make_server` that runs in another thread: its worker threads
    stopped, every socket closed (its loop then returns)."""
    server.task_dispatcher.shutdown(timeout=5)
    wasyncore.close_all(server.map if isinstance(server, MultiSocketServer) else server._map)


def check_free(host: str, port: int) -> None:
    """:class:`ServeError` when ``port`` cannot be bound on ``host`` (in use, or not allowed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): another program may use the port; "
                "choose another with --port"
            ) from None
