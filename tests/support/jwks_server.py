"""A real identity-provider stand-in on loopback: serves a JWKS (and RFC 8414 metadata) over
HTTP from a thread, counts fetches, and mints tokens with its keys."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

from support.pki import public_jwk, rsa_key


class IdentityProvider:
    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"k1": rsa_key()}
        self.published: list[str] = ["k1"]
        self.fetches = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.jwks_uri = f"{self.issuer}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def __enter__(self) -> IdentityProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_key(self, kid: str, key: Any | None = None, *, publish: bool = True) -> None:
        self.keys[kid] = key or rsa_key()
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.keys[k], k) for k in self.published]}

    def token(self, *, kid: str = "k1", alg: str = "RS256", audience: str | list[str] | None = None,
              issuer: str | None = None, lifetime: float = 300, not_before: float | None = None,
              omit: tuple[str, ...] = (), headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {"iss": issuer or self.issuer, "sub": "alice", "aud": audience,
                                "iat": now, "exp": now + int(lifetime)}
        if not_before is not None:
            body["nbf"] = int(not_before)
        body.update(claims)
        for name in omit:
            body.pop(name, None)
        if body.get("aud") is None:
            body.pop("aud", None)
        return jwt.encode(body, self.keys[kid], algorithm=alg, headers={"kid": kid, **(headers or {})})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/jwks.json":
                    provider.fetches += 1
                    body = json.dumps(provider.jwks()).encode()
                elif self.path == "/.well-known/oauth-authorization-server":
                    body = json.dumps({"issuer": provider.issuer, "jwks_uri": provider.jwks_uri}).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
