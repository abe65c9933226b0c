"""The base URL absolute links name (http_api/origin.py), shared by discovery documents and media
links: the configured public URL, else the host the caller used when it is allowed, else the
server's own bind address and port."""

from __future__ import annotations

from starlette.requests import Request

from batchin.config import Settings
from batchin.http_api.origin import PublicOrigin


def request_to(host: str, scheme: str = "http") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": scheme,
            "path": "/v1/images",
            "query_string": b"",
            "headers": [(b"host", host.encode())],
            "server": ("127.0.0.1", 8000),
        }
    )


def test_the_configured_public_url_wins() -> None:
    origin = PublicOrigin.from_settings(Settings(public_base_url="https://api.example.com/"))

    assert origin.of(request_to("localhost:9000")) == "https://api.example.com"


def test_an_allowed_host_names_itself_with_its_port() -> None:
    origin = PublicOrigin.from_settings(Settings(port=9000, allowed_hosts=["media.internal"]))

    assert origin.of(request_to("localhost:9000")) == "http://localhost:9000"
    assert origin.of(request_to("media.internal:9443", "https")) == "https://media.internal:9443"


def test_a_forged_host_gets_the_servers_own_port_not_the_default() -> None:
    origin = PublicOrigin.from_settings(Settings(host="0.0.0.0", port=9000))

    assert origin.of(request_to("evil.example")) == "http://127.0.0.1:9000"


def test_own_base_url_follows_bind_host_and_port() -> None:
    assert Settings(host="10.0.0.5", port=9000).own_base_url == "http://10.0.0.5:9000"
    assert Settings(host="::1", port=9000).own_base_url == "http://[::1]:9000"
    assert Settings(public_base_url="https://x.example/", port=9000).own_base_url == "https://x.example"
