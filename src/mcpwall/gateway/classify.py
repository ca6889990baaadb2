"""Tool labels: what a tool can do (capabilities) and what its results carry (taint).

Policy, approval and flow rules speak of classes of tools rather than of names: "every
``destructive`` tool needs approval", "no ``egress`` after ``private`` data met ``untrusted``
content". This module infers those labels from the tool's name (and its server's name), its
annotations and the names of its input properties, and applies operator overrides on top.

Capability labels describe the call itself:

* ``read``        — reads data (``get_*``, ``list_*``, ``readOnlyHint: true``)
* ``write``       — changes state (``create_*``, ``update_*``, ``readOnlyHint: false``)
* ``destructive`` — deletes or overwrites (``delete_*``, ``drop_*``, ``destructiveHint: true``)
* ``admin``       — privileged or high-impact (shell, deploy, grants, payments)
* ``egress``      — can carry data out of the organisation (send, post, upload, fetch a URL)

Taint labels describe what the result brings into the conversation:

* ``untrusted``   — content an outsider can write (web pages, email, issues, chat)
* ``private``     — the user's or organisation's data (files, databases, mail)
* ``secret``      — credentials (implies ``private``)

Annotations are hints from the server and are untrusted (the MCP spec says so), so they can
only *add* labels; a server cannot hide its ``send_email`` behind ``readOnlyHint: true``.
Only the operator's overrides can remove a label. The module is pure and cheap: inference
results are memoised per (name, server, annotations, property names).
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

READ = "read"
WRITE = "write"
DESTRUCTIVE = "destructive"
ADMIN = "admin"
EGRESS = "egress"
UNTRUSTED = "untrusted"
PRIVATE = "private"
SECRET = "secret"

CAPABILITY_LABELS = frozenset({READ, WRITE, DESTRUCTIVE, ADMIN, EGRESS})
TAINT_LABELS = frozenset({UNTRUSTED, PRIVATE, SECRET})
KNOWN_LABELS = CAPABILITY_LABELS | TAINT_LABELS
LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")

_READ_VERBS = frozenset({
    "get", "list", "read", "search", "find", "query", "show", "describe", "view", "lookup", "fetch",
    "browse", "scrape", "crawl", "download", "load", "open", "cat", "retrieve", "inspect", "select",
    "count", "export", "print", "head", "tail", "grep", "watch", "check", "stat", "diff",
})
_WRITE_VERBS = frozenset({
    "write", "create", "update", "put", "set", "insert", "edit", "modify", "move", "rename", "append",
    "patch", "save", "upload", "add", "replace", "commit", "push", "merge", "apply", "install", "upsert",
    "assign", "close", "archive", "tag", "label", "copy", "mkdir", "touch", "import", "store",
    "send", "publish", "reply", "forward", "submit", "schedule", "book", "approve", "run", "trigger",
    "start", "stop", "enable", "disable", "configure", "execute", "exec", "deploy", "transfer", "pay",
    "grant", "invite",
})
_DESTRUCTIVE_VERBS = frozenset({
    "delete", "remove", "drop", "destroy", "truncate", "purge", "wipe", "erase", "kill", "terminate",
    "rm", "rmdir", "reset", "revoke", "overwrite", "format", "unlink", "uninstall", "shred", "force",
})
# Privileged actions, whatever they act on.
_ADMIN_ACTIONS = frozenset({
    "exec", "execute", "shell", "bash", "sh", "zsh", "powershell", "cmd", "terminal", "sudo", "grant",
    "revoke", "chmod", "chown", "deploy", "shutdown", "reboot", "restart", "kill", "migrate", "eval",
    "transfer", "pay", "refund", "charge", "wire", "withdraw", "kubectl",
})
# Privileged things: changing them is admin, reading them is not ("list_roles").
_ADMIN_NOUNS = frozenset({
    "admin", "root", "role", "permission", "acl", "iam", "policy", "payment", "billing", "invoice",
    "release", "command", "ssh", "docker", "user", "member", "firewall", "dns", "cluster", "secret",
})
# Words that mean the call itself reaches the outside world.
_EGRESS_WORDS = frozenset({
    "send", "publish", "upload", "tweet", "webhook", "http", "https", "curl", "wget", "smtp", "sms",
    "notify", "forward", "reply", "share", "submit", "fetch", "browse", "navigate", "download",
    "url", "web", "internet", "browser", "scrape", "crawl", "invite", "broadcast",
})
# Tools with these words read attacker-writable content.
_UNTRUSTED_WORDS = frozenset({
    "web", "url", "page", "website", "site", "browser", "browse", "html", "internet", "http", "https",
    "email", "mail", "gmail", "outlook", "inbox", "message", "issue", "comment", "ticket", "pr", "pull",
    "review", "discussion", "tweet", "twitter", "rss", "feed", "news", "slack", "discord", "chat",
    "forum", "reddit", "scrape", "crawl", "fetch", "download", "navigate", "search", "google", "bing",
    "brave", "serp", "youtube", "github", "gitlab", "jira", "linear", "notification", "sms", "webhook",
})
_PRIVATE_WORDS = frozenset({
    "file", "fs", "filesystem", "dir", "directory", "folder", "path", "document", "doc", "drive",
    "db", "database", "sql", "postgres", "postgresql", "mysql", "sqlite", "mongo", "redis", "table",
    "record", "row", "customer", "user", "account", "profile", "contact", "calendar", "email", "mail",
    "gmail", "outlook", "inbox", "message", "note", "memory", "repo", "repository", "git", "crm",
    "employee", "payroll", "patient", "invoice", "order", "transaction", "bank", "wallet", "photo",
    "journal", "diary", "slack", "chat", "dm", "sheet", "spreadsheet", "notion", "confluence", "wiki",
})
_SECRET_WORDS = frozenset({
    "secret", "credential", "cred", "password", "passwd", "token", "apikey", "vault", "keychain",
    "keyring", "env", "environment", "dotenv", "cert", "certificate", "privkey", "otp", "mfa",
})
_SECRET_PAIRS = frozenset({("api", "key"), ("ssh", "key"), ("private", "key"), ("access", "key"),
                           ("secret", "key"), ("signing", "key")})
# Words that need a web-ish companion before they mean untrusted content ("search_files" is local).
_WEAK_UNTRUSTED = frozenset({"search", "github", "gitlab", "message", "chat", "slack", "pull", "review"})
_WEB_COMPANIONS = frozenset({"web", "internet", "google", "bing", "brave", "serp", "news", "online",
                             "issue", "comment", "pr", "discussion", "notification", "tweet", "channel",
                             "thread", "request"})
_URL_PROPERTIES = frozenset({"url", "urls", "uri_to_fetch", "href", "endpoint", "webhook", "webhook_url",
                             "callback_url", "link", "website", "domain", "recipient", "recipients",
                             "cc", "bcc", "phone", "phone_number", "to_email", "email_to"})

_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def tokens(name: str) -> tuple[str, ...]:
    """Split ``server__readTextFile`` / ``send-email`` / ``HTTPRequest`` into lower-case words,
    with a plural ``s`` dropped (``files`` → ``file``)."""
    words: list[str] = []
    for part in re.split(r"[^A-Za-z0-9]+", name):
        for word in _TOKEN.findall(part):
            low = word.lower()
            if len(low) > 3 and low.endswith("s") and not low.endswith(("ss", "us", "is")):
                low = low[:-1]
            words.append(low)
    return tuple(words)


def infer_labels(name: str, definition: Mapping[str, Any] | None = None, *,
                 server: str | None = None) -> frozenset[str]:
    """Labels for a tool named ``name`` (as its upstream knows it) on upstream ``server``."""
    annotations = definition.get("annotations") if isinstance(definition, Mapping) else None
    hints: tuple[tuple[str, bool], ...] = ()
    if isinstance(annotations, Mapping):
        hints = tuple(sorted((k, v) for k, v in annotations.items()
                             if k.endswith("Hint") and isinstance(v, bool)))
    props: tuple[str, ...] = ()
    schema = definition.get("inputSchema") if isinstance(definition, Mapping) else None
    if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
        props = tuple(sorted(str(p).lower() for p in schema["properties"]))
    return _infer(name, server or "", hints, props)


@lru_cache(maxsize=4096)
def _infer(name: str, server: str, hints: tuple[tuple[str, bool], ...],
           props: tuple[str, ...]) -> frozenset[str]:
    words = tokens(name)
    context = words + tokens(server)  # the server name adds nouns ("gmail" + "send")
    found: set[str] = set()
    wordset = set(words)
    ctxset = set(context)

    reads = bool(wordset & _READ_VERBS)
    posts = bool(words) and (words[0] == "post" or any(
        w == "post" and prev in ("http", "https", "api", "webhook", "form") for prev, w in itertools.pairwise(words)))
    writes = bool(wordset & (_WRITE_VERBS | _DESTRUCTIVE_VERBS)) or posts
    fetches = bool(wordset & {"fetch", "browse", "download", "scrape", "crawl", "navigate"})
    # Content that outsiders can write: web pages, mail, issues, chat (weak words such as
    # "search" or "slack" need a web-ish companion: "search_files" is local).
    outsider = bool(ctxset & (_UNTRUSTED_WORDS - _WEAK_UNTRUSTED)) or bool(
        ctxset & _WEAK_UNTRUSTED and ctxset & _WEB_COMPANIONS)
    if reads:
        found.add(READ)
    if writes:
        found.add(WRITE)
    if wordset & _DESTRUCTIVE_VERBS:
        found |= {DESTRUCTIVE, WRITE}
    if wordset & _ADMIN_ACTIONS or (writes and ctxset & _ADMIN_NOUNS):
        found.add(ADMIN)
    if wordset & _EGRESS_WORDS or posts or set(props) & _URL_PROPERTIES:
        found.add(EGRESS)
    if writes and outsider:
        found.add(EGRESS)  # writing where outsiders read (a public issue, a chat) carries data out

    # Taint labels describe results, so they apply to tools that read (or whose name says
    # nothing about writing): ``read_email`` taints, ``send_email`` does not.
    # ``run_query``/``execute_sql`` both act and return data.
    source = reads or not writes or fetches or bool(wordset & {"run", "execute", "exec", "eval"})
    if source:
        if outsider or set(props) & {"url", "urls", "href", "link", "website"}:
            found.add(UNTRUSTED)
        if ctxset & _PRIVATE_WORDS:
            found.add(PRIVATE)
        pairs = set(itertools.pairwise(context))
        if ctxset & _SECRET_WORDS or pairs & _SECRET_PAIRS:
            found |= {SECRET, PRIVATE}

    annotated = dict(hints)
    if annotated.get("readOnlyHint") is True:
        found.add(READ)
    if annotated.get("readOnlyHint") is False:
        found.add(WRITE)
    if annotated.get("destructiveHint") is True and annotated.get("readOnlyHint") is not True:
        found |= {DESTRUCTIVE, WRITE}
    if annotated.get("openWorldHint") is True:
        found.add(EGRESS)
        if source or annotated.get("readOnlyHint") is True:
            found.add(UNTRUSTED)
    return frozenset(found)


def resource_labels(uri: str) -> frozenset[str]:
    """Taint of a resource read, by URI scheme: local data is private, web content untrusted."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("http", "https", "ws", "wss", "ftp"):
        return frozenset({UNTRUSTED})
    if scheme in ("file", "postgres", "postgresql", "mysql", "sqlite", "mongodb", "redis", "git", "s3", "gs"):
        return frozenset({PRIVATE})
    words = set(tokens(uri))
    found: set[str] = set()
    if words & _SECRET_WORDS:
        found |= {SECRET, PRIVATE}
    if words & (_UNTRUSTED_WORDS - _WEAK_UNTRUSTED):
        found.add(UNTRUSTED)
    if words & _PRIVATE_WORDS:
        found.add(PRIVATE)
    return frozenset(found)


def check_label_list(values: Iterable[str]) -> list[str]:
    """Validate an override list: bare labels replace, ``+label``/``-label`` adjust."""
    out = []
    for value in values:
        label = value[1:] if value[:1] in "+-" else value
        if not LABEL_PATTERN.match(label):
            raise ValueError(f"{value!r} is not a label (lower-case letters, digits, _ . -)")
        out.append(value)
    return out


class ToolLabeler:
    """Inferred labels plus operator overrides, matched by glob on the exposed name
    (``fs__read_file``), the upstream's name (``read_file``) or, for resources, the URI.

    An override entry whose labels are all bare replaces the inferred set; ``+x``/``-x``
    entries add to or remove from it. Every matching entry applies, in config order.
    """

    def __init__(self, overrides: Mapping[str, Sequence[str]] | None = None) -> None:
        self._overrides = [(re.compile(fnmatch.translate(glob)), tuple(labels))
                           for glob, labels in (overrides or {}).items()]

    def tool(self, *, exposed: str | None, target: str | None, server: str | None,
             definition: Mapping[str, Any] | None) -> frozenset[str]:
        base = infer_labels(target or exposed or "", definition, server=server)
        return self._apply(base, (exposed, target))

    def resource(self, uri: str) -> frozenset[str]:
        return self._apply(resource_labels(uri), (uri,))

    def _apply(self, labels: frozenset[str], names: Sequence[str | None]) -> frozenset[str]:
        if not self._overrides:
            return _closed(labels)
        current = set(labels)
        for pattern, change in self._overrides:
            if not any(n and pattern.match(n) for n in names):
                continue
            if all(c[:1] not in "+-" for c in change):
                current = set(change)
                continue
            for item in change:
                if item.startswith("-"):
                    current.discard(item[1:])
                else:
                    current.add(item.lstrip("+"))
        return _closed(frozenset(current))


def _closed(labels: frozenset[str]) -> frozenset[str]:
    # Secrets are private data too; destructive calls are writes.
    if SECRET in labels and PRIVATE not in labels:
        labels = labels | {PRIVATE}
    if DESTRUCTIVE in labels and WRITE not in labels:
        labels = labels | {WRITE}
    return labels


def glob_matcher(globs: Iterable[str]) -> re.Pattern[str] | None:
    """One compiled regex for a list of globs (None for an empty list = match anything)."""
    parts = [fnmatch.translate(g) for g in globs]
    if not parts:
        return None
    return re.compile("|".join(f"(?:{p})" for p in parts))
