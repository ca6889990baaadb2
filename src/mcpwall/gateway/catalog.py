"""The merged view of every upstream: names, definitions, resource owners and cursors.

* Namespacing: tool/prompt ``t`` of server ``s`` is exposed as ``s__t`` (separator configurable);
  a server with ``prefix: false`` exposes its names as they are.
* Definitions seen in list results are remembered per upstream, so a call can be checked against
  the definition the client was shown (schema validation, pinning) and unknown names are answered
  by the gateway itself — a hidden tool and a missing tool look exactly alike.
* Pagination cursors are minted here: opaque, HMAC-protected, bound to the principal, and they
  carry the upstream cursors still to be followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from mcpwall.errors import InvalidParams

ROUTE_META = "dev.mcpwall/route"


@dataclass(slots=True)
class _ServerView:
    prefix: bool
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompts: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: list[tuple[_Template, dict[str, Any]]] = field(default_factory=list)
    complete: set[str] = field(default_factory=set)  # kinds whose full list has been seen


class Catalog:
    def __init__(self, servers: dict[str, bool], separator: str, secret: bytes | None = None) -> None:
        """``servers`` maps each upstream name (in config order) to its ``prefix`` flag."""
        self.separator = separator
        self.order = list(servers)
        self._views = {name: _ServerView(prefix) for name, prefix in servers.items()}
        self._secret = secret or secrets.token_bytes(32)

    # -- names ---------------------------------------------------------------------------

    def prefixed(self, server: str) -> bool:
        return self._views[server].prefix

    def prefix_of(self, server: str) -> str:
        return server + self.separator if self._views[server].prefix else ""

    def expose(self, server: str, name: str) -> str:
        return self.prefix_of(server) + name

    def resolve(self, kind: str, exposed: str) -> tuple[str, str] | None:
        """(server, upstream name) for an exposed tool/prompt name, if the catalog knows it."""
        head, sep, rest = exposed.partition(self.separator)
        if sep and head in self._views and self._views[head].prefix and rest:
            return head, rest
        for server, view in self._views.items():
            if not view.prefix and exposed in _items(view, kind):
                return server, exposed
        return None

    def unprefixed_servers(self) -> list[str]:
        return [s for s, v in self._views.items() if not v.prefix]

    def needs_listing(self, kind: str) -> list[str]:
        """Unprefixed servers whose full list for ``kind`` has not been seen yet."""
        return [s for s, v in self._views.items() if not v.prefix and kind not in v.complete]

    # -- definitions ---------------------------------------------------------------------

    def remember(self, server: str, kind: str, items: list[dict[str, Any]], *, replace: bool) -> None:
        view = self._views[server]
        if kind in ("tools", "prompts"):
            store = _items(view, kind)
            if replace:
                store.clear()
                view.complete.add(kind)
            for item in items:
                name = item.get("name")
                if isinstance(name, str):
                    store[name] = item
        elif kind == "resources":
            if replace:
                view.resources.clear()
            for item in items:
                uri = item.get("uri")
                if isinstance(uri, str):
                    view.resources[uri] = item
        elif kind == "resourceTemplates":
            if replace:
                view.templates.clear()
            for item in items:
                template = item.get("uriTemplate")
                if isinstance(template, str):
                    view.templates.append((_Template(template), item))

    def forget(self, server: str, kind: str) -> None:
        view = self._views[server]
        view.complete.discard(kind)
        if kind in ("tools", "prompts"):
            _items(view, kind).clear()

    def definition(self, server: str, kind: str, name: str) -> dict[str, Any] | None:
        return _items(self._views[server], kind).get(name)

    def known_complete(self, server: str, kind: str) -> bool:
        return kind in self._views[server].complete

    def resource_owner(self, uri: str) -> str | None:
        for server, view in self._views.items():
            if uri in view.resources:
                return server
        for server, view in self._views.items():
            if any(pattern.fullmatch(uri) for pattern, _ in view.templates):
                return server
        return None

    def expose_item(self, server: str, kind: str, item: dict[str, Any]) -> dict[str, Any]:
        """The item as the client sees it: namespaced name (tools/prompts only)."""
        if kind in ("tools", "prompts") and self._views[server].prefix and isinstance(item.get("name"), str):
            return {**item, "name": self.prefix_of(server) + item["name"]}
        return item

    # -- cursors -------------------------------------------------------------------------

    def mint_cursor(self, kind: str, principal: str, remaining: dict[str, Any]) -> str:
        payload = orjson.dumps({"k": kind, "p": principal, "r": remaining})
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        return _b64(payload) + "." + _b64(mac)

    def parse_cursor(self, cursor: Any, kind: str, principal: str) -> dict[str, Any]:
        """The upstream cursors a gateway cursor carries. Invalid or foreign cursors are -32602."""
        if not isinstance(cursor, str):
            raise InvalidParams("Invalid params: cursor must be a string")
        try:
            body, _, tag = cursor.partition(".")
            payload = _unb64(body)
            expected = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(expected, _unb64(tag)):
                raise ValueError
            data = orjson.loads(payload)
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidParams("Invalid params: unknown or tampered cursor") from None
        if not isinstance(data, dict) or data.get("k") != kind or data.get("p") != principal \
                or not isinstance(data.get("r"), dict):
            raise InvalidParams("Invalid params: unknown or tampered cursor")
        remaining: dict[str, Any] = {s: c for s, c in data["r"].items() if s in self._views}
        return remaining


def _items(view: _ServerView, kind: str) -> dict[str, dict[str, Any]]:
    return view.tools if kind == "tools" else view.prompts


class _Template:
    """A matcher for an RFC 6570 URI template that runs in O(len(uri) * tokens), never backtracking.

    A simple ``{var}`` matches one or more characters other than ``/?#``; reserved, fragment and
    path expansions (``{+var}``, ``{#var}``, ``{/var}``, …) match one or more of any character. A
    regex would do, but templates come from upstreams and URIs from clients: a hostile pair must
    not make matching exponential."""

    __slots__ = ("tokens",)

    def __init__(self, template: str) -> None:
        tokens: list[str | bool] = []  # a literal character, or a variable (True: may span '/?#')
        for part in re.split(r"(\{[^}]*\})", template):
            if part.startswith("{") and part.endswith("}"):
                tokens.append(part[1:2] in ("+", "#", "/", ".", ";", "?", "&"))
            else:
                tokens.extend(part)
        self.tokens = tokens

    def fullmatch(self, uri: str) -> bool:
        if len(uri) > MAX_URI:
            return False
        states = {0}  # positions in ``tokens``; a variable state means "inside that variable"
        reached = self._close(states)
        for char in uri:
            advanced: set[int] = set()
            for state in reached:
                if state >= len(self.tokens):
                    continue
                token = self.tokens[state]
                if isinstance(token, str):
                    if token == char:
                        advanced.add(state + 1)
                elif token or char not in "/?#":
                    advanced.add(-(state + 1))  # consumed one character of the variable at ``state``
            if not advanced:
                return False
            reached = self._close(advanced)
        return len(self.tokens) in reached

    def _close(self, states: set[int]) -> set[int]:
        """Expand "inside variable i" (``-(i+1)``) into: stay inside it, or leave it."""
        out: set[int] = set()
        for state in states:
            if state < 0:
                index = -state - 1
                out.add(index)  # consume more characters of the same variable
                out.add(index + 1)  # or move past it
            else:
                out.add(state)
        return out


MAX_URI = 8192


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 16384:
        raise ValueError("bad cursor")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("non-canonical encoding")  # unused trailing bits would make cursors malleable
    return data
