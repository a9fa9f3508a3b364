"""MCP clients that sign people in: an engine with ``mcp.auth: oauth``, a person's browser, a test CA.

``oauth_engine(extra="", worker=None)`` starts an engine whose ``login:`` is the session-wide
oidc-provider (``corp``), whose ``acme`` provider is the same server (the echo worker's
``Echo.WhoAmI`` needs it), with ``security.user_verifier.mode: login`` and ``mcp.auth: oauth``;
``extra`` is appended under ``mcp:`` (indented two spaces). ``await authorize_in_browser(engine,
browser, url, "alice")`` follows an ``/oauth2/authorize`` URL through sign-in and consent (allowing,
optionally remembering) and returns the URL the engine sends the browser back to (not requested).
``make_test_ca(tmp_path)`` makes a CA and a certificate for 127.0.0.1 (``cryptography``) and
``await serve_https(ca, routes)`` serves an aiohttp app with it on a loopback port.
"""

from __future__ import annotations

import datetime
import html
import ipaddress
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp
import pytest
from aiohttp import web

from tests.plugins.keyturn_engine import API_KEY

_HIDDEN = re.compile(r'<input type=hidden name="?([^" >]+)"? value="([^"]*)">')


def oauth_yaml(op: Any, *, worker: Any = None, mcp: str = "", security: str = "") -> str:
    workers = worker.yaml() if worker is not None else ""
    return f"""
security:
  api_keys: ['{API_KEY}']
  user_verifier: {{mode: login}}
{security}
auth:
  providers:
    - id: corp
      client_id: {op.client_id}
      client_secret: {op.client_secret}
      oauth2: {{issuer: "{op.issuer}", discovery: true, token_request: {{auth_method: client_secret_basic}}}}
    - id: acme
      description: Acme Mail
      client_id: {op.client_id}
      client_secret: {op.client_secret}
      oauth2:
        issuer: "{op.issuer}"
        discovery: true
        default_scopes: [openid]
        token_request: {{auth_method: client_secret_basic}}
login: {{provider: corp, user_claim: email, session_ttl: 1h}}
mcp:
  auth: oauth
{mcp}
{workers}
"""


def hidden_fields(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page)}


async def authorize_in_browser(
    engine: Any,
    browser: aiohttp.ClientSession,
    url: str,
    account: str = "alice",
    *,
    decision: str = "allow",
    remember: bool = False,
    pages: list[str] | None = None,
) -> str:
    """Follow ``url`` through /login, the provider and the consent page; the client's redirect URL."""
    from tests.plugins.oidc import follow_login

    op_origin = None
    consent_action = urlsplit(engine.url).path + "/oauth2/authorize"  # behind a prefix: under it
    for _ in range(20):
        if url.startswith(engine.url + "/"):
            async with browser.get(url, allow_redirects=False) as resp:
                body = await resp.text()
                if resp.status in (302, 303):
                    url = urljoin(url, resp.headers["Location"])
                    continue
            assert resp.status == 200 and f'action="{consent_action}"' in body, (resp.status, body[:800])
            if pages is not None:
                pages.append(body)
            form = hidden_fields(body)
            form["decision"] = decision
            if remember:
                form["remember"] = "1"
            async with browser.post(
                engine.url + "/oauth2/authorize", data=form, allow_redirects=False
            ) as resp:
                assert resp.status == 302, (resp.status, await resp.text())
                url = resp.headers["Location"]
            continue
        parts = urlsplit(url)
        if parts.path.startswith(("/auth", "/interaction")) or (op_origin and url.startswith(op_origin)):
            op_origin = f"{parts.scheme}://{parts.netloc}"
            url = await follow_login(browser, url, account=account)
            continue
        return url
    raise AssertionError("no answer to the client after 20 hops")


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


StartOAuth = Callable[..., Awaitable[Any]]


@pytest.fixture
async def oauth_engine(keyturn_engine: Any, oidc_provider: Any) -> AsyncIterator[StartOAuth]:
    browsers: list[aiohttp.ClientSession] = []

    async def start(**kw: Any) -> Any:
        engine = await keyturn_engine(oauth_yaml(oidc_provider, **kw))
        engine.op = oidc_provider

        def browser() -> aiohttp.ClientSession:
            jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[engine.url])
            b = aiohttp.ClientSession(cookie_jar=jar)
            browsers.append(b)
            return b

        engine.new_browser = browser
        return engine

    yield start
    for b in browsers:
        await b.close()


# ---- a test CA and an https server on loopback -------------------------------------------------------
class LoopbackCA:
    def __init__(self, ca_file: Path, cert_file: Path, key_file: Path) -> None:
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_test_ca(tmp_path: Path) -> LoopbackCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Keyturn test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return LoopbackCA(ca_file, cert_file, key_file)


@pytest.fixture
async def serve_https() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(ca: LoopbackCA, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ca.server_context())
        await site.start()
        runners.append(runner)
        return f"https://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()
