"""Safe image downloads: the only place the scorer talks to the outside world.

Image URLs arrive in public events, so every download is treated as hostile:

* only ``http``/``https``; URLs with credentials are refused (they would end up
  in logs and in the DLQ);
* the address connected to must pass :mod:`galleryrank.consumer.images.netguard` (no private,
  loopback, link-local, metadata, ... unless allow-listed). It is checked three
  times: IP-literal hosts before any request; every DNS answer inside a
  filtering resolver, so aiohttp can only connect to addresses that passed
  (no DNS-rebinding window between check and connect); and the socket address
  itself in the connector's socket factory, the last line for anything that
  bypasses the resolver;
* redirects are followed by hand (``allow_redirects=False``), each hop
  re-validated, at most ``download_max_redirects``;
* the body is streamed with a hard byte cap, so a lying ``Content-Length`` or an
  endless body stops at ``download_max_bytes`` (memory stays bounded);
* one deadline (``download_timeout_s``) covers all hops and the body of an
  attempt, so a slow-drip or stalled server is cut; a connect has its own cap
  (the only per-request timer aiohttp arms, and only for a new connection);
* ``Content-Type`` must be ``image/*`` (SVG excluded: it is XML, not pixels) or
  a generic binary type (``application/octet-stream``, ``binary/octet-stream``,
  or none at all), because object stores and CDNs often serve photos that way;
  ``galleryrank.consumer.images.decode`` sniffs the bytes and rejects non-images as ``not_image``;
* no transparent decompression (``Accept-Encoding: identity``, auto-decompress
  off): a gzip bomb cannot expand past the cap, and an encoded body is refused;
* retriable failures (5xx, 408/425/429, timeouts, connection errors, cut-off
  bodies) are retried ``download_retries`` times with exponential backoff and
  jitter; everything else fails at once.

Errors are :class:`DownloadError` with a stable ``reason`` code for DLQ headers
and metrics; their messages name URLs without user info, query or fragment.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import socket
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .netguard import (
    AddressCheck,
    BlockedAddressError,
    IPNetwork,
    check_address,
    check_host_literal,
    parse_allow_networks,
)

if TYPE_CHECKING:
    from ..settings import Settings

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Statuses worth asking again: the server said "later" or failed itself.
RETRIABLE_STATUSES = frozenset({408, 425, 429})
# Binary types that object stores and CDNs use for photos; decode sniffs the bytes.
GENERIC_BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
REFUSED_IMAGE_TYPES = frozenset({"image/svg+xml"})  # XML, not pixels; Pillow cannot read it
MAX_URL_LENGTH = 8192  # longer "URLs" are garbage or an attack; common server limit is 8 KiB
READ_CHUNK_BYTES = 64 * 1024
USER_AGENT = "galleryrank-image-fetcher/0.1"
# Protocol fields are ASCII: str.isdigit() also says yes to "²" or "٣", which int() then
# refuses or reads as another number. Seconds are 1-9 ASCII digits, nothing else.
_ASCII_SECONDS = re.compile(r"[0-9]{1,9}")


class DownloadError(Exception):
    """A download that failed; ``reason`` is a short stable code, ``detail`` a readable sentence."""

    def __init__(
        self, reason: str, detail: str, retriable: bool = False, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retriable = retriable
        self.retry_after_s = retry_after_s  # the server's Retry-After, honoured up to the backoff cap

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"  # detail may be extended after construction


def redact_url(url: str | URL) -> str:
    """The URL without user info, query and fragment (signed-URL tokens live there), for messages."""
    try:
        parsed = url if isinstance(url, URL) else URL(str(url))
        host = parsed.raw_host or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parsed.explicit_port}" if parsed.explicit_port is not None else ""
        path = parsed.raw_path
        if len(path) > 200:
            path = path[:200] + "..."
        scheme = f"{parsed.scheme}://" if parsed.scheme else ""
        return f"{scheme}{host}{port}{path}"
    except (ValueError, TypeError):
        return "<unparsable url>"


# --------------------------------------------------------------------------- #
# Address guard: resolver and socket factory
# --------------------------------------------------------------------------- #
class GuardedResolver(AbstractResolver):
    """Wraps a real resolver and drops every answer the address policy refuses.

    aiohttp connects only to addresses this resolver returned, so the checked
    address is the connected address (no rebinding between check and connect).
    If every answer is refused it raises :class:`BlockedAddressError`.
    """

    def __init__(self, allow: tuple[IPNetwork, ...], inner: AbstractResolver | None = None) -> None:
        self._allow = allow
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        first_refusal = None
        for answer in answers:
            verdict = check_address(answer["host"], self._allow)
            if verdict:
                allowed.append(answer)
            elif first_refusal is None:
                first_refusal = verdict
        if not allowed:
            if first_refusal is not None:
                raise BlockedAddressError(first_refusal, host)
            raise OSError(f"no addresses for {host}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(allow: tuple[IPNetwork, ...]) -> Callable[[tuple[Any, ...]], socket.socket]:
    """A TCPConnector socket factory that refuses to create a socket for a refused address."""

    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _canonname, sockaddr = addr_info
        verdict = check_address(sockaddr[0], allow)
        if not verdict:
            raise BlockedAddressError(verdict)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def _find_blocked(exc: BaseException) -> BlockedAddressError | None:
    """The BlockedAddressError somewhere in an aiohttp exception's cause chain, if any."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BlockedAddressError):
            return current
        todo.extend([current.__cause__, current.__context__, getattr(current, "os_error", None)])
    return None


# --------------------------------------------------------------------------- #
# URL validation
# --------------------------------------------------------------------------- #
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


@functools.lru_cache(maxsize=8192)
def _host_literal_verdict(host: str, allow: tuple[IPNetwork, ...]) -> AddressCheck | None:
    """check_host_literal, memoised: a pure function of (host, allow-list), and most events
    name a host seen before (parsing the literal was ~10 % of a download's CPU)."""
    return check_host_literal(host, allow)


def validate_url(raw: object, allow: tuple[IPNetwork, ...]) -> URL:
    """Parse and check a URL before any network access; raises a non-retriable DownloadError."""
    if not isinstance(raw, str) or not raw.strip():
        raise DownloadError("bad_url", "the URL is empty or not a string")
    if len(raw) > MAX_URL_LENGTH:
        raise DownloadError("bad_url", f"the URL is {len(raw)} characters long (limit {MAX_URL_LENGTH})")
    if _CONTROL_CHARS.search(raw):
        raise DownloadError("bad_url", "the URL contains control characters")
    try:
        url = URL(raw.strip())
    except (ValueError, TypeError) as exc:
        raise DownloadError("bad_url", f"the URL cannot be parsed ({type(exc).__name__})") from None
    return _check_url(url, allow)


def _check_url(url: URL, allow: tuple[IPNetwork, ...]) -> URL:
    scheme = (url.scheme or "").lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme[:20] or "none"
        raise DownloadError("bad_scheme", f"scheme {shown!r} is not allowed (only http and https)")
    if url.user is not None or url.password is not None:
        raise DownloadError(
            "credentials_in_url", f"URL {redact_url(url)} carries user info; credentials are never sent from URLs"
        )
    try:
        host = url.raw_host
    except (ValueError, UnicodeError):
        host = None
    if not url.is_absolute() or not host:
        raise DownloadError("bad_url", f"URL {redact_url(url)} has no host")
    try:
        url.port  # noqa: B018 - validates the port number
    except ValueError:
        raise DownloadError("bad_url", f"URL {redact_url(url)} has an invalid port") from None
    verdict = _host_literal_verdict(host, tuple(allow))
    if verdict is not None:
        if not verdict:
            raise DownloadError(
                "blocked_address",
                f"host {host} is address {verdict.address}, refused ({verdict.category}){ALLOW_HINT}",
            )
        if ":" not in host and str(verdict.address) != host:
            # 2130706433, 0177.0.0.1, 127.1: aiohttp refuses these legacy forms too.
            raise DownloadError("bad_url", f"host {host} is a non-canonical IPv4 literal")
    return url.with_fragment(None)


# --------------------------------------------------------------------------- #
# The downloader
# --------------------------------------------------------------------------- #
class ImageDownloader:
    """Downloads images under the safety rules above; one per process, used as an async context manager.

    ``fetch(url)`` returns the body bytes or raises :class:`DownloadError`.
    ``backoff_base_s``/``backoff_max_s`` shape the retry delays (tests shrink them).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 4.0,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._concurrency = settings.download_concurrency
        self._timeout_s = settings.download_timeout_s
        self._connect_timeout_s = min(settings.download_connect_timeout_s, settings.download_timeout_s)
        self._max_bytes = settings.download_max_bytes
        self._retries = settings.download_retries
        self._max_redirects = settings.download_max_redirects
        self._allow = parse_allow_networks(settings.download_allow_networks)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._inner_resolver = resolver  # None: aiohttp's ThreadedResolver (getaddrinfo)
        self._session: aiohttp.ClientSession | None = None
        self._random = random.Random()

    @property
    def allow_networks(self) -> tuple[IPNetwork, ...]:
        return self._allow

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._concurrency,
            resolver=GuardedResolver(self._allow, self._inner_resolver),
            socket_factory=guarded_socket_factory(self._allow),
            ttl_dns_cache=10,  # the cache holds only answers that passed the guard
        )
        # Only the connect caps here (they arm a timer only when a new connection is opened):
        # the total is the one asyncio.timeout per attempt in fetch(), which covers every hop
        # and the body. A per-request total or sock_read timeout would arm (and, for sock_read,
        # re-arm on every chunk) more timers per download for a deadline that is already there.
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._connect_timeout_s,
            sock_connect=self._connect_timeout_s,
            sock_read=None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            trust_env=False,  # never pick up proxies from the environment
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"},
        )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> ImageDownloader:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def fetch(self, url: str) -> bytes:
        """The image body at ``url``; retries retriable failures; raises DownloadError."""
        if self._session is None:
            raise RuntimeError("ImageDownloader used before start() / async with")
        target = validate_url(url, self._allow)
        attempt = 0
        while True:
            try:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        return await self._fetch_once(target)
                except TimeoutError:
                    raise DownloadError(
                        "timeout", f"GET {redact_url(target)} took longer than {self._timeout_s:g} s", True
                    ) from None
            except DownloadError as exc:
                if not exc.retriable or attempt >= self._retries:
                    if attempt:
                        exc.detail = f"{exc.detail} (after {attempt + 1} attempts)"
                    raise
                await asyncio.sleep(self._backoff_delay(attempt, exc.retry_after_s))
                attempt += 1

    def _backoff_delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Exponential backoff with jitter: half fixed, half random, so retries spread but never bunch at 0."""
        cap = min(self._backoff_max_s, self._backoff_base_s * (2**attempt))
        delay = cap / 2 + self._random.uniform(0, cap / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self._backoff_max_s))
        return delay

    async def _fetch_once(self, first: URL) -> bytes:
        assert self._session is not None
        url = first
        for _hop in range(self._max_redirects + 1):
            try:
                async with self._session.get(url, allow_redirects=False) as resp:
                    if resp.status in REDIRECT_STATUSES:
                        url = self._redirect_target(resp, url)
                        continue
                    self._check_response(resp, url)
                    return await self._read_capped(resp, url)
            except DownloadError:
                raise
            except aiohttp.ClientError as exc:
                raise _classify_client_error(exc, url) from None
            except (ValueError, LookupError, TypeError, UnicodeError, OverflowError) as exc:
                # A header or body field the server sent that some parser refused: the
                # server's fault, never an internal_error of ours.
                raise DownloadError(
                    "bad_response", f"GET {redact_url(url)}: unparsable response ({type(exc).__name__})"
                ) from None
        raise DownloadError(
            "too_many_redirects",
            f"GET {redact_url(first)} redirected more than {self._max_redirects} times",
        )

    def _redirect_target(self, resp: aiohttp.ClientResponse, url: URL) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise DownloadError("bad_redirect", f"GET {redact_url(url)} answered {resp.status} without Location")
        try:
            target = resp.url.join(URL(location))
        except (ValueError, TypeError):
            raise DownloadError("bad_redirect", f"GET {redact_url(url)} redirected to an unparsable URL") from None
        try:
            return _check_url(target, self._allow)
        except DownloadError as exc:
            exc.detail = f"redirect from {redact_url(url)}: {exc.detail}"
            raise

    def _check_response(self, resp: aiohttp.ClientResponse, url: URL) -> None:
        status = resp.status
        if status not in (200, 203):
            retriable = status >= 500 or status in RETRIABLE_STATUSES
            raise DownloadError(
                f"http_{status}",
                f"GET {redact_url(url)} answered HTTP {status}",
                retriable,
                retry_after_s=parse_retry_after(resp.headers.get("Retry-After")),
            )
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise DownloadError(
                "unsupported_content_encoding",
                f"GET {redact_url(url)} sent Content-Encoding {encoding[:40]!r}; only identity is accepted",
            )
        content_type = resp.content_type  # lower-cased; application/octet-stream when absent
        is_image = content_type.startswith("image/") and content_type not in REFUSED_IMAGE_TYPES
        if not is_image and content_type not in GENERIC_BINARY_TYPES:
            raise DownloadError(
                "not_image_content_type", f"GET {redact_url(url)} sent Content-Type {content_type[:80]!r}"
            )
        declared = resp.content_length
        if declared is not None and declared > self._max_bytes:
            raise DownloadError(
                "too_large", f"GET {redact_url(url)} declares {declared} bytes (limit {self._max_bytes})"
            )

    async def _read_capped(self, resp: aiohttp.ClientResponse, url: URL) -> bytes:
        """The body, never more than the cap: a declared Content-Length (<= cap, checked before) is
        read at once; otherwise it is read in chunks and stops as soon as it passes the cap.

        Chunks are kept in a list (no growing buffer to re-copy), so an endless
        body costs at most the cap plus one chunk before it is cut.
        """
        declared = resp.content_length
        if declared is not None and "Transfer-Encoding" not in resp.headers:
            # A Content-Length body: aiohttp's parser delivers exactly `declared` bytes (already
            # checked against the cap in _check_response), so one read is as bounded as the loop.
            body = await resp.read()
            if not body:
                raise DownloadError("empty_body", f"GET {redact_url(url)} sent an empty body")
            return body
        chunks: list[bytes] = []
        received = 0
        async for chunk in resp.content.iter_chunked(READ_CHUNK_BYTES):
            received += len(chunk)
            if received > self._max_bytes:
                chunks.clear()
                raise DownloadError("too_large", f"GET {redact_url(url)} sent more than {self._max_bytes} bytes")
            chunks.append(chunk)
        if not received:
            raise DownloadError("empty_body", f"GET {redact_url(url)} sent an empty body")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: ASCII delay-seconds or an HTTP-date (RFC 9110 10.2.3).

    Anything else (non-ASCII digits, garbage, a date before now) is None: ignored, never an error.
    """
    if not value:
        return None
    text = value.strip()
    if not text.isascii():
        return None
    if _ASCII_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return delay if delay > 0 else None


# Loopback and private addresses are refused on purpose (SSRF); a demo or test photo server on
# 127.0.0.1 is the usual way a new user meets the refusal, so the reason names the way out.
ALLOW_HINT = "; to allow it, add its network to GALLERYRANK_DOWNLOAD_ALLOW_NETWORKS (e.g. 127.0.0.0/8)"


def _classify_client_error(exc: aiohttp.ClientError, url: URL) -> DownloadError:
    """Map an aiohttp error to a DownloadError with a stable reason."""
    where = redact_url(url)
    blocked = _find_blocked(exc)
    if blocked is not None or "is refused (" in str(exc):
        what = f"{blocked.host or ''} -> {blocked.verdict.address} ({blocked.verdict.category})" if blocked else ""
        return DownloadError("blocked_address", f"GET {where}: address refused {what}".rstrip() + ALLOW_HINT)
    if isinstance(exc, TimeoutError):  # ServerTimeoutError, ConnectionTimeoutError
        return DownloadError("timeout", f"GET {where} timed out ({type(exc).__name__})", True)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        # Temporary resolver failures (EAI_AGAIN) may pass; NXDOMAIN will not.
        temporary = getattr(exc.os_error, "errno", None) == socket.EAI_AGAIN
        return DownloadError("dns_error", f"GET {where}: host name could not be resolved", temporary)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return DownloadError("connect_error", f"GET {where}: connection failed ({exc.strerror or 'error'})", True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return DownloadError("incomplete_body", f"GET {where}: the body was cut off or malformed", True)
    if isinstance(exc, aiohttp.InvalidURL):
        return DownloadError("bad_url", f"GET {where}: invalid URL")
    if isinstance(exc, aiohttp.ClientResponseError):
        return DownloadError("bad_response", f"GET {where}: malformed HTTP response ({exc.status})")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        return DownloadError("connect_error", f"GET {where}: connection lost ({type(exc).__name__})", True)
    return DownloadError("http_client_error", f"GET {where}: {type(exc).__name__}", True)
