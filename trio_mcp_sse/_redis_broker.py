"""The Redis broker: ownership keys, liveness keys, a cluster-wide session count and mailboxes.

Keys (every one under ``{prefix}:``, every one with a time to live):

* ``{prefix}:session:{id}`` -> the owner's worker id, ``session_ttl``, refreshed by the owner;
* ``{prefix}:worker:{id}`` -> ``1``, ``worker_ttl``, refreshed every heartbeat;
* ``{prefix}:sessions``: a sorted set of session ids scored by their expiry (ms), for the
  cluster-wide count and cap; its own TTL is ``session_ttl``, pushed on by every refresh.

Mailboxes are pub/sub channels ``{prefix}:mailbox:{worker id}``.  A session
id issued with a broker names its owner (``<worker id>.<random>``, as a task
id does), so a forward is one ``PUBLISH`` to that mailbox, with no lookup.
Only when that ``PUBLISH`` reaches no reader, or for an id that names no
worker, the route script decides (look up the owner, publish, tell a live
owner that is not reading from a dead one, drop the key of a dead owner), in
one round trip.  Pub/sub delivers at most once and only to a live reader;
that is enough because no frame is ever the only record of something a client
was told succeeded (see :mod:`trio_mcp_sse._broker`).

Runs on coredis, whose client is built on anyio and so runs under ``trio.run``;
the per-request traffic (``PUBLISH``, and the subscription to the worker's own
mailbox) runs over the lean connections of :mod:`trio_mcp_sse._resp`, set up
from coredis's reading of the same URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import logging
import os
import random
import re
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import trio

from ._broker import Broker, BrokerSettings, BrokerUnavailable, Bus, RouteResult
from ._resp import Publisher, RedisEndpoint, RespError, Subscription

__all__ = [
    "BROKER_ENVIRONMENT_VARIABLE",
    "RedisBroker",
    "check_broker_url",
    "redacted_url",
    "resolve_broker",
    "split_broker_url",
]

log = logging.getLogger("trio_mcp_sse")

_CLAIM: Final = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
return 1
"""
"""KEYS: sessions zset, session key.  ARGV: worker id, session ttl (ms), cap (0: none), session id."""

_ROUTE: Final = """
local owner = redis.call('GET', KEYS[1])
if not owner then return {'', 0} end
local reached = redis.call('PUBLISH', ARGV[1] .. owner, ARGV[3])
if reached > 0 then return {owner, 1} end
if redis.call('EXISTS', ARGV[2] .. owner) == 1 then return {owner, 0} end
redis.call('DEL', KEYS[1])
return {'', 0}
"""
"""KEYS: session key.  ARGV: mailbox prefix, worker-key prefix, frame."""

_REFRESH: Final = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[1])
local owned = tonumber(ARGV[3])
local prefix = ARGV[4]
for i = 5, 4 + owned do
  redis.call('SET', prefix .. ARGV[i], ARGV[2], 'PX', ttl)
  redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[i])
end
for i = 5 + owned, #ARGV do
  if redis.call('GET', prefix .. ARGV[i]) == ARGV[2] then redis.call('DEL', prefix .. ARGV[i]) end
  redis.call('ZREM', KEYS[1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
"""
"""KEYS: sessions zset.  ARGV: session ttl (ms), worker id, number owned, session-key prefix, owned ids..., released ids..."""

_HEARTBEAT: Final = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
return {existed, redis.call('ZCARD', KEYS[2])}
"""
"""KEYS: worker key, sessions zset.  ARGV: worker ttl (ms).  Returns: did the worker key exist, cluster sessions."""

_SCHEMES: Final = frozenset({"redis", "rediss"})

_RESUBSCRIBE_FIRST: Final = 0.1
_RESUBSCRIBE_MAX: Final = 1.0
"""Seconds between attempts to subscribe to the mailbox again: doubling from the first to the most (with jitter)."""
POSTED_REPLIES_READ_AFTER: Final = 0.05
"""Seconds a posted ``PUBLISH``'s reply waits for a caller to read it with its own before the publisher's task does:
how late a forward learns that a hinted mailbox had no reader (then it looks the owner up)."""


def redacted_url(url: str) -> str:
    """``url`` without its password (in the address or a ``password=`` query option), fit for a log line
    or an error message."""
    parts = urlsplit(url)
    query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)
    if query != parts.query:
        parts = parts._replace(query=query)
        url = parts.geturl()
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def check_broker_url(url: str) -> str:
    """``url`` if it names a Redis server and valid settings; else :class:`ValueError` (never showing a password).

    The form is checked (scheme, host or path, port, database number), the
    :class:`BrokerSettings` in its query, and that every other key of the query
    is one of Redis's connection options (a misspelt setting would otherwise be
    ignored); whether the broker answers is the worker's business at start-up.
    """
    expected = "expected redis://HOST[:PORT][/DB], rediss://HOST[:PORT][/DB] or unix:///PATH"
    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError unless a number in range
    except ValueError:
        raise ValueError(f"not a URL ({expected})") from None
    if parts.scheme == "unix":
        well_formed = bool(parts.path) and not parts.netloc
    elif parts.scheme in _SCHEMES:
        database = parts.path.strip("/")
        well_formed = bool(parts.hostname) and (not database or database.isdigit())
    else:
        well_formed = False
    if not well_formed:
        raise ValueError(f"{redacted_url(url)!r}: {expected}")
    try:
        _check_redis_options(parts.query)
        BrokerSettings(**_settings_in_query(parts.query))
    except ValueError as error:
        raise ValueError(f"{redacted_url(url)!r}: {error}") from None
    return url


_SETTING_TYPES: Final = {field.name: field.type for field in dataclasses.fields(BrokerSettings)}

_REDIS_OPTIONS: Final = {
    "db": int,
    "username": str,
    "password": str,
    "client_name": str,
    "max_connections": int,
    "timeout": int,
    "max_idle_time": int,
    "connect_timeout": float,
    "stream_timeout": float,
    "noevict": str,
    "notouch": str,
    "encoding": str,
    "ssl_keyfile": str,
    "ssl_certfile": str,
    "ssl_ca_certs": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": str,
}
"""Query options that are Redis's, not the broker's: what coredis's ``Redis.from_url`` reads from a URL
(coredis 6: ``ConnectionPoolParams`` given as text, and the ``ssl_*`` options of ``rediss://``), passed on
to it in the URL; the value is what coredis converts a number to, so a bad one is refused here rather
than when a worker connects.  coredis silently ignores any other key, so anything else is refused."""

_REFUSED_REDIS_OPTIONS: Final = {
    "noreply": "the broker needs every reply of Redis",
    "decode_responses": "the broker reads Redis's replies as bytes",
}
"""coredis options a URL could set that would break the broker."""


def _check_redis_options(query: str) -> None:
    """:class:`ValueError`, one line naming the valid keys, for a query key that is neither ours nor Redis's."""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _SETTING_TYPES:
            continue
        reason = _REFUSED_REDIS_OPTIONS.get(name)
        if reason is not None:
            raise ValueError(f"{name} cannot be set: {reason}")
        kind = _REDIS_OPTIONS.get(name)
        if kind is None:
            shown = name if len(name) <= 40 else name[:40] + "…"
            close = difflib.get_close_matches(name, [*_SETTING_TYPES, *_REDIS_OPTIONS], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(
                f"unknown setting {shown!r}{hint}; the broker's settings are {', '.join(_SETTING_TYPES)}, "
                f"and Redis's connection options {', '.join(_REDIS_OPTIONS)}"
            )
        if kind is not str and value:
            try:
                kind(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a number") from None


def _settings_in_query(query: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _SETTING_TYPES:
            continue
        try:
            if name == "prefix":
                settings[name] = value
            elif name == "max_sessions":
                settings[name] = None if value in ("", "none") else int(value)
            elif name == "exchange_buffer":
                settings[name] = int(value)
            else:
                settings[name] = float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None
    return settings


def split_broker_url(url: str) -> tuple[str, dict[str, Any]]:
    """The Redis URL, and the :class:`BrokerSettings` named in its query (``?prefix=app&max_sessions=5000``).

    So that one string -- ``serve --broker``, the ``TRIO_MCP_SSE_BROKER``
    variable -- configures a deployment.  Other query parameters are Redis's
    connection options (``db=``, ``client_name=``, ``ssl_cert_reqs=``...: ``_REDIS_OPTIONS``)
    and stay in the URL; any other key is a :class:`ValueError`.
    """
    check_broker_url(url)
    parts = urlsplit(url)
    theirs = [(n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n not in _SETTING_TYPES]
    return parts._replace(query=urlencode(theirs)).geturl(), _settings_in_query(parts.query)


class RedisBroker:
    """Workers of several processes or hosts, joined through one Redis server.

    ``url``: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS,
    ``unix:///path?db=0``), optionally with settings in its query
    (``?prefix=app&max_sessions=5000``).  ``settings`` or keyword options: see
    :class:`~trio_mcp_sse.broker.BrokerSettings` (every worker must use the same).
    Needs the ``redis`` extra (``pip install trio-mcp-sse[redis]``: coredis).
    """

    def __init__(self, url: str, settings: BrokerSettings | None = None, **options: Any) -> None:
        self.url, from_url = split_broker_url(url)
        if settings is not None and (options or from_url):
            raise ValueError("give either settings or options (keywords, URL query), not both")
        self.settings = settings or BrokerSettings(**{**from_url, **options})
        try:
            import coredis  # noqa: F401
        except ImportError:  # pragma: no cover -- the extra is part of the test set-up
            raise RuntimeError("the Redis broker needs coredis: pip install 'trio-mcp-sse[redis]'") from None

    def __repr__(self) -> str:
        parts = urlsplit(self.url)
        where = f"{parts.hostname}:{parts.port}" if parts.hostname else parts.path
        return f"RedisBroker({parts.scheme}://{where}, prefix={self.settings.prefix!r})"

    @asynccontextmanager
    async def connect(self, worker_id: str) -> AsyncIterator[Bus]:
        import coredis

        settings = self.settings
        client = coredis.Redis.from_url(
            self.url,
            decode_responses=False,
            connect_timeout=settings.operation_timeout,
            stream_timeout=None,
        )
        endpoint = RedisEndpoint.of_pool(client.connection_pool)
        mailbox = _Mailbox(endpoint, f"{settings.prefix}:mailbox:{worker_id}".encode(), settings)
        publisher = Publisher(endpoint, write_timeout=settings.operation_timeout)
        async with client, trio.open_nursery() as nursery:
            bus = _RedisBus(client, publisher, settings, worker_id)
            with contextlib.suppress(*_CONNECTION_FAILURES):
                await mailbox.subscribe()  # a worker that cannot subscribe yet still serves its own sessions
            nursery.start_soon(mailbox.keep_alive, publisher, name="broker connections keep-alive")
            nursery.start_soon(
                functools.partial(publisher.run_posts, after=POSTED_REPLIES_READ_AFTER, read_bound=settings.operation_timeout),
                name="broker posts",
            )
            try:
                bus.mailbox = mailbox
                yield bus
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await mailbox.aclose()
                    await publisher.aclose()


_CONNECTION_FAILURES: Final = (OSError, RespError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError)
"""What losing one of the broker's own connections (the mailbox's, the publisher's) raises (``ConnectionError``
and ``ProtocolError`` are kinds of ``OSError``)."""


class _Mailbox(trio.abc.ReceiveChannel[bytes]):
    """The frames of one worker's mailbox, read off its subscription by the task that receives them.

    No task in between (a frame reaches the worker's mailbox reader in one
    wake-up).  A lost connection is logged and the channel subscribed again on
    the next ``receive``, with backoff; :meth:`keep_alive` sends a ``PING`` over
    a subscription quiet for a heartbeat and drops it when no answer comes
    within ``operation_timeout`` (a host or network that vanished without
    closing the connection).
    """

    def __init__(self, endpoint: RedisEndpoint, channel: bytes, settings: BrokerSettings) -> None:
        self._endpoint = endpoint
        self._channel = channel
        self._settings = settings
        self._subscription: Subscription | None = None
        self._delay = _RESUBSCRIBE_FIRST
        self._closed = False

    async def subscribe(self) -> None:
        """Subscribe now, bounded by ``operation_timeout``; raises one of ``_CONNECTION_FAILURES``."""
        with trio.fail_after(self._settings.operation_timeout):
            self._subscription = await Subscription.open(self._endpoint, self._channel)
        self._delay = _RESUBSCRIBE_FIRST

    async def receive(self) -> bytes:
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the mailbox is closed")
            try:
                if self._subscription is None:
                    await self.subscribe()
                assert self._subscription is not None
                return await self._subscription.next_message()
            except _CONNECTION_FAILURES as error:
                await self._lost(error)

    async def _lost(self, error: BaseException) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.aclose()
        if self._closed:
            return
        if self._delay == _RESUBSCRIBE_FIRST:  # one line per outage, not one per attempt
            log.warning(
                "broker mailbox: %s %s; resubscribing",
                type(error).__name__,
                error,
                extra={"event": "broker_mailbox_error"},
            )
        await trio.sleep(self._delay * random.uniform(0.5, 1.0))
        self._delay = min(self._delay * 2, _RESUBSCRIBE_MAX)

    async def keep_alive(self, publisher: Publisher) -> None:
        """A subscription quiet for a heartbeat is asked for a sign of life; none within operation_timeout ends it.

        The publisher's connection, idle for a heartbeat, is sent a ``PING`` too (so that an idle timeout
        of Redis or of a firewall between does not close it, and a dead one is replaced before it is needed).
        """
        settings = self._settings
        while True:
            await trio.sleep(settings.heartbeat_interval)
            with trio.move_on_after(settings.operation_timeout), contextlib.suppress(*_CONNECTION_FAILURES):
                await publisher.ping_if_idle(settings.heartbeat_interval)
            subscription = self._subscription
            asked = trio.current_time()
            if subscription is None or asked - subscription.last_received < settings.heartbeat_interval:
                continue
            with trio.move_on_after(settings.operation_timeout):
                with contextlib.suppress(*_CONNECTION_FAILURES):
                    await subscription.ping()
                await trio.sleep(settings.operation_timeout)
            if subscription is self._subscription and subscription.last_received < asked:
                await subscription.aclose()  # its reader gets ClosedResourceError, logs it and subscribes again

    async def aclose(self) -> None:
        self._closed = True
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.aclose()


def _coredis_failures() -> tuple[type[BaseException], ...]:
    """What a coredis command raises when Redis did not answer it: its own errors, the socket's, and anyio's
    for a connection whose tasks were cancelled under it (a worker's shutdown, ``release_closed``)."""
    import anyio
    import coredis.exceptions

    return (coredis.exceptions.RedisError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError)


class _RedisBus:
    def __init__(self, client: Any, publisher: Publisher, settings: BrokerSettings, worker_id: str) -> None:
        self._client = client
        self._publisher = publisher
        self.worker_id = worker_id
        self.mailbox: trio.abc.ReceiveChannel[bytes] | None = None
        prefix = settings.prefix
        self._session_prefix = f"{prefix}:session:"
        self._worker_prefix = f"{prefix}:worker:"
        self._mailbox_prefix = f"{prefix}:mailbox:"
        self._sessions_key = f"{prefix}:sessions"
        self._worker_key = f"{self._worker_prefix}{worker_id}"
        self._session_ttl_ms = int(settings.session_ttl * 1000)
        self._worker_ttl_ms = int(settings.worker_ttl * 1000)
        self._cap = settings.max_sessions or 0
        self._claim = client.register_script(_CLAIM)
        self._route = client.register_script(_ROUTE)
        self._refresh = client.register_script(_REFRESH)
        self._heartbeat = client.register_script(_HEARTBEAT)

    def frames(self) -> trio.abc.ReceiveChannel[bytes]:
        assert self.mailbox is not None
        return self.mailbox

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except _coredis_failures() as error:
            raise BrokerUnavailable(f"{type(error).__name__}: {error}") from None

    async def claim(self, session_id: str) -> bool:
        claimed = await self._run(
            self._claim,
            [self._sessions_key, self._session_prefix + session_id],
            [self.worker_id, self._session_ttl_ms, self._cap, session_id],
        )
        return bool(claimed)

    async def route(self, session_id: str, frame: bytes) -> RouteResult:
        owner, reached = await self._run(
            self._route, [self._session_prefix + session_id], [self._mailbox_prefix, self._worker_prefix, frame]
        )
        if not owner:
            return RouteResult(None, False)
        return RouteResult(owner.decode("utf-8") if isinstance(owner, bytes) else str(owner), bool(reached))

    async def send(self, worker_id: str, frame: bytes) -> bool:
        try:
            reached = await self._publisher.publish((self._mailbox_prefix + worker_id).encode(), frame)
        except _CONNECTION_FAILURES as error:
            raise BrokerUnavailable(f"{type(error).__name__}: {error}") from None
        return reached > 0

    async def post(self, worker_id: str, frame: bytes, undelivered: Callable[[BrokerUnavailable | None], None]) -> None:
        def told(error: BaseException | None) -> None:
            undelivered(None if error is None else BrokerUnavailable(f"{type(error).__name__}: {error}"))

        try:
            await self._publisher.post((self._mailbox_prefix + worker_id).encode(), frame, told)
        except _CONNECTION_FAILURES as error:
            raise BrokerUnavailable(f"{type(error).__name__}: {error}") from None

    async def heartbeat(self) -> tuple[bool, int]:
        existed, sessions = await self._run(self._heartbeat, [self._worker_key, self._sessions_key], [self._worker_ttl_ms])
        return bool(existed), int(sessions)

    async def refresh(self, session_ids: Collection[str], released: Collection[str]) -> int:
        owned = list(session_ids)
        count = await self._run(
            self._refresh,
            [self._sessions_key],
            [self._session_ttl_ms, self.worker_id, len(owned), self._session_prefix, *owned, *released],
        )
        return int(count)

    async def alive(self, worker_ids: Collection[str]) -> set[str]:
        ids = list(worker_ids)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                results = [pipe.exists([self._worker_prefix + worker_id]) for worker_id in ids]
            values = [await result for result in results]
        except _coredis_failures() as error:
            raise BrokerUnavailable(f"{type(error).__name__}: {error}") from None
        return {worker_id for worker_id, exists in zip(ids, values, strict=True) if exists}


BROKER_ENVIRONMENT_VARIABLE: Final = "TRIO_MCP_SSE_BROKER"
"""A broker URL (``redis://host:port/db``) that every app given no ``broker`` joins (``serve --broker`` sets it)."""


def resolve_broker(broker: Broker | str | None) -> Broker | None:
    """The broker a host joins: the one given, a URL's :class:`RedisBroker`, else the environment's, else none."""
    if broker is None:
        broker = os.environ.get(BROKER_ENVIRONMENT_VARIABLE, "").strip() or None
    if isinstance(broker, str):
        return RedisBroker(broker)
    return broker
