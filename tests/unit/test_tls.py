"""The CA bundle is read at the first TLS handshake, never at start-up, and then verifies.

A real HTTPS server on loopback with a throwaway self-signed certificate (made by the openssl
command line): the deferred context must refuse a server its bundle does not vouch for, and
accept one it does, on the asyncio path (httpx) and the blocking one (`wrap_socket`).
"""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import certifi
import httpx
import pytest

from videopoll.errors import Unreachable
from videopoll.model import Service
from videopoll.services.http import DeferredCAContext, make_client, send, tls_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(server: http.server.HTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1 (its own CA); its key beside it."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True)
    return folder / "cert.pem"


@pytest.fixture(scope="module")
def https(cert: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, cert.with_name("key.pem"))
    server.socket = served.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture(scope="module")
def plain() -> Iterator[str]:
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello))


def cas(context: ssl.SSLContext) -> int:
    return context.cert_store_stats()["x509_ca"]


async def get(context: ssl.SSLContext, url: str) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(verify=context)
    async with make_client(Service.STORE, url, calls=Counter(), transport=transport) as client:
        return await send(client, client.build_request("GET", "/"), service=Service.STORE)


def test_the_process_context_is_the_deferred_one() -> None:
    assert isinstance(tls_context(), DeferredCAContext)
    assert tls_context() is tls_context()  # one bundle per process, whatever the clients


async def test_plain_http_never_reads_the_bundle(plain: str) -> None:
    context = DeferredCAContext.create()
    assert (await get(context, f"http://{plain}")).text == "hello"
    assert cas(context) == 0


async def test_the_first_handshake_reads_the_bundle_and_verifies(cert: Path,
                                                                https: str) -> None:
    context = DeferredCAContext.create(cafile=str(cert))
    assert cas(context) == 0  # made: nothing read yet
    assert (await get(context, f"https://{https}")).text == "hello"
    assert cas(context) == 1
    assert (await get(context, f"https://{https}")).status_code == 200
    assert cas(context) == 1  # read once


async def test_a_server_the_bundle_does_not_vouch_for_is_refused(https: str) -> None:
    context = DeferredCAContext.create(cafile=certifi.where())
    with pytest.raises(Unreachable):
        await get(context, f"https://{https}")
    assert cas(context) > 100  # certifi's bundle was read, and did not trust the server


def test_blocking_sockets_read_the_bundle_first(cert: Path, https: str) -> None:
    host, port = https.split(":")
    for cafile, trusted in ((str(cert), True), (certifi.where(), False)):
        context = DeferredCAContext.create(cafile=cafile)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            if trusted:
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    assert tls.version() is not None
            else:
                with pytest.raises(ssl.SSLCertVerificationError):
                    context.wrap_socket(raw, server_hostname=host)
        assert cas(context) >= 1
