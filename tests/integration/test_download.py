"""galleryrank.consumer.images.download.ImageDownloader against real HTTP servers on 127.0.0.1.

Two servers: a well-behaved aiohttp.web app (status codes, content types,
redirects, flaky endpoints) and a raw asyncio socket server for what a proper
HTTP framework refuses to do (hang, drip, endless bodies, lying Content-Length).
Loopback is allowed explicitly (``download_allow_networks="127.0.0.0/8"``)
except in the tests that prove it is refused by default.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.hostile_images under a bare `pytest`

from galleryrank.consumer.images.decode import decode_image  # noqa: E402
from galleryrank.consumer.images.download import DownloadError, ImageDownloader  # noqa: E402
from galleryrank.consumer.settings import Settings  # noqa: E402
from tests.hostile_images import case  # noqa: E402

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 0.5
MAX_BYTES = 512 * 1024
RETRIES = 2
JPEG = case("jpeg_rgb").data


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "download_allow_networks": "127.0.0.0/8",
        "download_timeout_s": TIMEOUT_S,
        "download_connect_timeout_s": CONNECT_TIMEOUT_S,
        "download_max_bytes": MAX_BYTES,
        "download_retries": RETRIES,
        "download_max_redirects": 3,
        "download_concurrency": 8,
    }
    values.update(overrides)
    return Settings(**values)


def downloader(**overrides: object) -> ImageDownloader:
    resolver = overrides.pop("resolver", None)
    return ImageDownloader(settings(**overrides), backoff_base_s=0.01, backoff_max_s=0.05, resolver=resolver)


async def expect_error(d: ImageDownloader, url: str) -> DownloadError:
    with pytest.raises(DownloadError) as info:
        await d.fetch(url)
    return info.value


# --------------------------------------------------------------------------- servers
class ImageApp:
    """A well-behaved aiohttp server; ``hits`` counts requests per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.base = ""
        app = web.Application()
        app.router.add_get("/img.jpg", self.image)
        app.router.add_get("/octet", self.octet)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/flaky/{key}/{failures}", self.flaky)
        app.router.add_get("/typed/{kind}", self.typed)
        app.router.add_get("/gzip", self.gzip)
        app.router.add_get("/empty", self.empty)
        app.router.add_get("/big", self.big)
        app.router.add_get("/big-chunked", self.big_chunked)
        app.router.add_get("/redirect/{n}", self.redirect_chain)
        app.router.add_get("/loop", self.loop)
        app.router.add_get("/redirect-to", self.redirect_to)
        app.router.add_get("/slow", self.slow)
        app.middlewares.append(self.count)
        self.app = app

    @web.middleware
    async def count(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.hits[request.path] += 1
        return await handler(request)

    async def image(self, request: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="image/jpeg")

    async def octet(self, request: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="application/octet-stream")

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {"Retry-After": "0"} if code in (429, 503) else {}
        return web.Response(status=code, text=f"status {code}", headers=headers)

    async def flaky(self, request: web.Request) -> web.Response:
        """Answers 500 for the first ``failures`` requests of ``key``, then the image."""
        if self.hits[request.path] <= int(request.match_info["failures"]):
            return web.Response(status=500, text="try later")
        return web.Response(body=JPEG, content_type="image/jpeg")

    async def typed(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        types = {"html": "text/html", "json": "application/json", "svg": "image/svg+xml", "png": "image/png"}
        return web.Response(body=JPEG, content_type=types[kind])

    async def gzip(self, request: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="image/jpeg", headers={"Content-Encoding": "gzip"})

    async def empty(self, request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="image/jpeg")

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\xff" * (MAX_BYTES + 1), content_type="image/jpeg")

    async def big_chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(4 * MAX_BYTES // 65536):
                await resp.write(b"\xff" * 65536)
        except (ConnectionResetError, ConnectionError):
            pass  # the client hung up at its cap, as it should
        return resp

    async def redirect_chain(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        target = "/img.jpg" if n <= 1 else f"/redirect/{n - 1}"
        raise web.HTTPFound(target)

    async def loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def redirect_to(self, request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(request.query["target"])

    async def slow(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.1)
        finally:
            self.in_flight -= 1
        return web.Response(body=JPEG, content_type="image/jpeg")


class RawServer:
    """A socket-level HTTP server that misbehaves on purpose, by path. Runs in a child
    process (``python test_download.py --raw-server``) so that memory measured in the
    test process is the downloader's alone.

    /hang            reads the request, never answers
    /drip            headers, then one body byte every 50 ms (never finishes in time)
    /endless         200 image/jpeg without length, body bytes as fast as the socket takes them
    /lying-short     Content-Length: 10, then 5 MB
    /lying-long      Content-Length: 100000, then 100 bytes and close
    /endless-headers 200, then header lines forever
    /garbage         bytes that are not HTTP at all
    /hits            JSON: requests per path so far
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def serve_forever(self) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)  # the port, for the parent
        async with server:
            await server.serve_forever()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            if path != "/hits":
                self.hits[path] += 1
            await getattr(self, "serve_" + path.strip("/").replace("-", "_"))(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def serve_hits(self, writer: asyncio.StreamWriter) -> None:
        body = json.dumps(self.hits).encode()
        await self.send(
            writer,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body,
        )

    async def serve_hang(self, writer: asyncio.StreamWriter) -> None:
        await self.stop.wait()

    async def serve_drip(self, writer: asyncio.StreamWriter) -> None:
        await self.send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
        while True:
            await self.send(writer, b"\xff")
            await asyncio.sleep(0.05)

    async def serve_endless(self, writer: asyncio.StreamWriter) -> None:
        await self.send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n")
        chunk = b"\xff" * 65536
        while True:
            await self.send(writer, chunk)

    async def serve_lying_short(self, writer: asyncio.StreamWriter) -> None:
        await self.send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 10\r\n\r\n")
        for _ in range(80):
            await self.send(writer, b"\xee" * 65536)

    async def serve_endless_headers(self, writer: asyncio.StreamWriter) -> None:
        await self.send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n")
        for i in range(100_000):
            await self.send(writer, b"X-Filler-%d: " % i + b"a" * 1000 + b"\r\n")

    async def serve_garbage(self, writer: asyncio.StreamWriter) -> None:
        await self.send(writer, bytes(range(256)) * 64)

    async def serve_lying_long(self, writer: asyncio.StreamWriter) -> None:
        await self.send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
        await self.send(writer, b"\xff" * 100)


class RawServerProcess:
    """The parent's handle on the child-process RawServer."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--raw-server"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.base = f"http://127.0.0.1:{port}"

    async def hits(self, path: str) -> int:
        async with aiohttp.ClientSession() as session, session.get(f"{self.base}/hits") as resp:
            return int((await resp.json()).get(path, 0))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
async def image_app() -> AsyncIterator[ImageApp]:
    server = ImageApp()
    runner = web.AppRunner(server.app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.base = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RawServerProcess]:
    server = RawServerProcess()
    yield server
    server.close()


# --------------------------------------------------------------------------- good paths
async def test_image_is_downloaded_and_decodes(image_app: ImageApp) -> None:
    async with downloader() as d:
        body = await d.fetch(f"{image_app.base}/img.jpg")
    assert body == JPEG
    decoded = decode_image(body)
    assert (decoded.width, decoded.height) == (320, 240)


async def test_octet_stream_is_accepted_and_left_to_decode(image_app: ImageApp) -> None:
    async with downloader() as d:
        assert await d.fetch(f"{image_app.base}/octet") == JPEG


async def test_redirects_within_the_cap_are_followed(image_app: ImageApp) -> None:
    async with downloader() as d:
        assert await d.fetch(f"{image_app.base}/redirect/3") == JPEG


async def test_concurrency_is_capped_by_the_connector(image_app: ImageApp) -> None:
    image_app.max_in_flight = 0
    async with downloader(download_concurrency=3) as d:
        bodies = await asyncio.gather(*(d.fetch(f"{image_app.base}/slow") for _ in range(12)))
    assert all(b == JPEG for b in bodies)
    assert image_app.max_in_flight == 3


# --------------------------------------------------------------------------- HTTP errors and retries
async def test_404_fails_at_once(image_app: ImageApp) -> None:
    async with downloader() as d:
        err = await expect_error(d, f"{image_app.base}/status/404?token=SECRET-TOKEN")
    assert (err.reason, err.retriable) == ("http_404", False)
    assert image_app.hits["/status/404"] == 1
    assert "SECRET-TOKEN" not in str(err) and "SECRET-TOKEN" not in err.detail


async def test_500_then_recovery_is_retried(image_app: ImageApp) -> None:
    async with downloader() as d:
        assert await d.fetch(f"{image_app.base}/flaky/a/2") == JPEG
    assert image_app.hits["/flaky/a/2"] == 3


async def test_persistent_500_gives_up_after_the_retries(image_app: ImageApp) -> None:
    async with downloader() as d:
        err = await expect_error(d, f"{image_app.base}/status/500")
    assert (err.reason, err.retriable) == ("http_500", True)
    assert image_app.hits["/status/500"] == RETRIES + 1
    assert f"after {RETRIES + 1} attempts" in err.detail


async def test_429_is_retried(image_app: ImageApp) -> None:
    async with downloader() as d:
        err = await expect_error(d, f"{image_app.base}/status/429")
    assert err.reason == "http_429" and err.retriable
    assert image_app.hits["/status/429"] == RETRIES + 1


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/typed/html", "not_image_content_type"),
        ("/typed/json", "not_image_content_type"),
        ("/typed/svg", "not_image_content_type"),
        ("/gzip", "unsupported_content_encoding"),
        ("/empty", "empty_body"),
    ],
)
async def test_wrong_content_is_refused_without_retry(image_app: ImageApp, path: str, reason: str) -> None:
    async with downloader() as d:
        err = await expect_error(d, image_app.base + path)
    assert (err.reason, err.retriable) == (reason, False)
    assert image_app.hits[path] == 1


# --------------------------------------------------------------------------- size and time caps
async def test_declared_too_large_body_is_refused(image_app: ImageApp) -> None:
    async with downloader() as d:
        err = await expect_error(d, f"{image_app.base}/big")
    assert (err.reason, err.retriable) == ("too_large", False)


async def test_chunked_body_stops_at_the_cap(image_app: ImageApp) -> None:
    async with downloader() as d:
        err = await expect_error(d, f"{image_app.base}/big-chunked")
    assert err.reason == "too_large"


async def test_hanging_server_times_out(raw_server: RawServerProcess) -> None:
    async with downloader(download_retries=0) as d:
        started = time.monotonic()
        err = await expect_error(d, f"{raw_server.base}/hang")
        elapsed = time.monotonic() - started
    assert (err.reason, err.retriable) == ("timeout", True)
    assert elapsed < TIMEOUT_S + 0.5


async def test_hanging_server_is_retried_then_gives_up(raw_server: RawServerProcess) -> None:
    before = await raw_server.hits("/hang")
    async with downloader(download_retries=1, download_timeout_s=0.3, download_connect_timeout_s=0.3) as d:
        err = await expect_error(d, f"{raw_server.base}/hang")
    assert err.reason == "timeout"
    assert await raw_server.hits("/hang") - before == 2


async def test_slow_drip_is_cut_by_the_total_timeout(raw_server: RawServerProcess) -> None:
    # One byte every 50 ms never trips the read-stall timeout; the total deadline must end it.
    async with downloader(download_retries=0) as d:
        started = time.monotonic()
        err = await expect_error(d, f"{raw_server.base}/drip")
        elapsed = time.monotonic() - started
    assert err.reason == "timeout"
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + 0.5


async def test_endless_body_stops_at_the_cap_with_bounded_memory(raw_server: RawServerProcess) -> None:
    cap = 4 * 1024 * 1024
    async with downloader(download_retries=0, download_max_bytes=cap) as d:
        tracemalloc.start()
        try:
            err = await expect_error(d, f"{raw_server.base}/endless")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (err.reason, err.retriable) == ("too_large", False)
    print(f"\nendless body, cap {cap} B: traced peak {peak} B ({peak / cap:.2f} x cap)")
    # The cap itself plus aiohttp's/asyncio's fixed read buffers (~0.5 MB measured).
    assert peak < cap + 1536 * 1024


async def test_lying_short_content_length_never_reads_the_rest(raw_server: RawServerProcess) -> None:
    """Content-Length: 10 followed by 5 MB: the client takes the 10 declared bytes, or calls the
    response malformed when the surplus arrives in the same read; never reads the 5 MB."""
    async with downloader(download_retries=0) as d:
        tracemalloc.start()
        try:
            try:
                outcome: bytes | str = await d.fetch(f"{raw_server.base}/lying-short")
            except DownloadError as exc:
                outcome = exc.reason
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert outcome in (b"\xee" * 10, "bad_response")
    assert peak < 2560 * 1024  # fixed read buffers (~1.5 MB measured), not the 5 MB sent


async def test_lying_long_content_length_is_an_incomplete_body(raw_server: RawServerProcess) -> None:
    before = await raw_server.hits("/lying-long")
    async with downloader() as d:
        err = await expect_error(d, f"{raw_server.base}/lying-long")
    assert (err.reason, err.retriable) == ("incomplete_body", True)
    assert await raw_server.hits("/lying-long") - before == RETRIES + 1


@pytest.mark.parametrize("path", ["/endless-headers", "/garbage"])
async def test_malformed_responses_are_refused(raw_server: RawServerProcess, path: str) -> None:
    async with downloader(download_retries=0) as d:
        tracemalloc.start()
        try:
            err = await expect_error(d, raw_server.base + path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (err.reason, err.retriable) == ("bad_response", False)
    assert peak < 2 * 1024 * 1024  # header lines are capped by aiohttp's parser


# --------------------------------------------------------------------------- redirects
async def test_redirect_loop_is_capped(image_app: ImageApp) -> None:
    async with downloader() as d:
        err = await expect_error(d, f"{image_app.base}/loop")
    assert (err.reason, err.retriable) == ("too_many_redirects", False)
    assert image_app.hits["/loop"] == 4  # first request + download_max_redirects hops


async def test_too_long_redirect_chain_is_refused(image_app: ImageApp) -> None:
    async with downloader() as d:
        err = await expect_error(d, f"{image_app.base}/redirect/5")
    assert err.reason == "too_many_redirects"


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://10.0.0.1/x.jpg", "blocked_address"),
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "blocked_address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "blocked_address"),
        ("http://[::1]:6379/", "blocked_address"),
        ("http://2130706433/", "bad_url"),  # 127.0.0.1 in decimal; aiohttp would refuse the form too
        ("file:///etc/passwd", "bad_scheme"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "bad_scheme"),
        ("http://admin:pw@127.0.0.1/x.jpg", "credentials_in_url"),
    ],
)
async def test_redirect_targets_are_rechecked(image_app: ImageApp, target: str, reason: str) -> None:
    async with downloader() as d:
        started = time.monotonic()
        err = await expect_error(d, f"{image_app.base}/redirect-to?target={target}")
        elapsed = time.monotonic() - started
    assert (err.reason, err.retriable) == (reason, False)
    assert elapsed < CONNECT_TIMEOUT_S, "refused before any connection attempt"
    assert "pw" not in err.detail.split("redirect from", 1)[0] or reason != "credentials_in_url"


async def test_redirect_to_a_loopback_address_outside_the_allow_list_is_refused(image_app: ImageApp) -> None:
    # Only 127.0.0.1 is allowed; a redirect to 127.0.0.2 (also loopback) must not pass.
    port = image_app.base.rsplit(":", 1)[1]
    async with downloader(download_allow_networks="127.0.0.1/32") as d:
        assert await d.fetch(f"{image_app.base}/img.jpg") == JPEG
        err = await expect_error(d, f"{image_app.base}/redirect-to?target=http://127.0.0.2:{port}/img.jpg")
    assert err.reason == "blocked_address"


# --------------------------------------------------------------------------- no way in by default
async def test_loopback_is_refused_by_default(image_app: ImageApp) -> None:
    port = image_app.base.rsplit(":", 1)[1]
    before = sum(image_app.hits.values())
    async with downloader(download_allow_networks="") as d:
        for url in (
            f"http://127.0.0.1:{port}/img.jpg",
            f"http://localhost:{port}/img.jpg",  # refused after DNS resolution
            f"http://[::ffff:127.0.0.1]:{port}/img.jpg",
            f"http://2130706433:{port}/img.jpg",
            f"http://0177.0.0.1:{port}/img.jpg",
        ):
            err = await expect_error(d, url)
            assert (err.reason, err.retriable) == ("blocked_address", False), url
            if "127.0.0.1:" in url or "localhost" in url:  # the refusal names the setting that opens it
                assert "GALLERYRANK_DOWNLOAD_ALLOW_NETWORKS" in err.detail, err.detail
    assert sum(image_app.hits.values()) == before, "no request reached the server"


async def test_allow_listed_name_resolving_to_loopback_works(image_app: ImageApp) -> None:
    port = image_app.base.rsplit(":", 1)[1]
    async with downloader() as d:
        assert await d.fetch(f"http://localhost:{port}/img.jpg") == JPEG


class RebindingResolver(AbstractResolver):
    """An attacker's DNS: a refused address first, the allowed one last."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.calls = 0

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        self.calls += 1
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for a in self.answers
        ]

    async def close(self) -> None:
        pass


async def test_refused_dns_answers_are_never_connected_to(image_app: ImageApp) -> None:
    # 10.255.255.1 would hang until the connect timeout if aiohttp ever tried it.
    port = image_app.base.rsplit(":", 1)[1]
    resolver = RebindingResolver(["10.255.255.1", "169.254.169.254", "127.0.0.1"])
    async with downloader(resolver=resolver, download_retries=0) as d:
        started = time.monotonic()
        assert await d.fetch(f"http://images.attacker.example:{port}/img.jpg") == JPEG
        assert time.monotonic() - started < CONNECT_TIMEOUT_S
    assert resolver.calls == 1


async def test_name_resolving_only_to_refused_addresses_is_blocked(image_app: ImageApp) -> None:
    port = image_app.base.rsplit(":", 1)[1]
    before = sum(image_app.hits.values())
    resolver = RebindingResolver(["127.0.0.1"])
    async with downloader(resolver=resolver, download_allow_networks="") as d:
        err = await expect_error(d, f"http://rebind.attacker.example:{port}/img.jpg")
    assert err.reason == "blocked_address" and not err.retriable
    assert "127.0.0.1" in err.detail
    assert sum(image_app.hits.values()) == before


async def test_credentials_in_url_never_leave_the_process(image_app: ImageApp) -> None:
    before = sum(image_app.hits.values())
    async with downloader() as d:
        err = await expect_error(d, f"http://user:hunter2@{image_app.base.split('//')[1]}/img.jpg")
    assert err.reason == "credentials_in_url"
    assert "hunter2" not in str(err)
    assert sum(image_app.hits.values()) == before


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://127.0.0.1/a.jpg", "data:image/png;base64,AAAA"],
)
async def test_non_http_schemes_are_refused(url: str) -> None:
    async with downloader() as d:
        err = await expect_error(d, url)
    assert (err.reason, err.retriable) == ("bad_scheme", False)


async def test_connection_refused_is_a_retriable_connect_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with downloader(download_retries=1) as d:
        err = await expect_error(d, f"http://127.0.0.1:{port}/img.jpg")
    assert (err.reason, err.retriable) == ("connect_error", True)


async def test_fetch_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError):
        await downloader().fetch("http://127.0.0.1/img.jpg")


if __name__ == "__main__" and sys.argv[1:] == ["--raw-server"]:
    asyncio.run(RawServer().serve_forever())
