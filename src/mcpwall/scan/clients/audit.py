"""Static review of client server entries: what is risky before anything runs.

Per entry: unpinned packages (``npx -y pkg``, ``@latest``, ``uvx pkg``, untagged images), secrets
written inline in env, args, headers or URLs, plain-HTTP remote URLs, broad filesystem roots,
container flags that break isolation, and servers that do not go through mcpwall. Across
entries: the same server configured differently in several places.

Also home to the redaction helpers every clients report uses, so that no output shows a
credential found in a config file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath, PureWindowsPath
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mcpwall.scan.clients.model import ServerEntry
from mcpwall.scan.model import Finding
from mcpwall.scan.rules import find_secrets, redact

DEFAULT_GATEWAYS = ("http://127.0.0.1:8765/mcp", "http://localhost:8765/mcp")

_SECRET_NAME = re.compile(r"(?i)(?:token|secret|passw(?:or)?d|passwd|api[_-]?key|apikey|auth|credential|"
                          r"private[_-]?key|access[_-]?key|\bpat\b|_pat$|^pat_|session[_-]?key|client[_-]?secret)")
_REFERENCE = re.compile(r"^\s*(?:\$\{[^}]+\}|\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%|\{env:[^}]+\}|"
                        r"\$\{\{[^}]+\}\}|<[^>]*>|\{\{[^}]+\}\})\s*$")
_PLACEHOLDER = re.compile(r"(?i)^(?:x+|\*+|changeme|your[-_ ].*|todo|replace[-_ ]?me|example.*|placeholder|none|"
                          r"null|true|false|\d{1,6})$")
_SECRET_FLAG = re.compile(r"(?i)^--?(?:[\w-]*(?:token|secret|password|passwd|api-?key|apikey|auth|credential|"
                          r"access-?key|private-?key))(?:=(.*))?$")
_PACKAGE_RUNNERS = {"npx", "bunx", "pnpx"}
_DLX = {("pnpm", "dlx"), ("yarn", "dlx"), ("npm", "exec"), ("bun", "x"), ("deno", "run")}
_CONTAINER = {"docker", "podman", "nerdctl"}


# --- redaction -----------------------------------------------------------------------------------

def _is_literal_secret(name: str, value: str) -> bool:
    value = value.strip()
    if not value or _REFERENCE.match(value) or "${" in value or _PLACEHOLDER.match(value):
        return False
    if find_secrets(value):
        return True
    return bool(_SECRET_NAME.search(name)) and len(value) >= 8


def redact_args(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(redact(arg) if not _REFERENCE.match(arg) else arg)
            hide_next = False
            continue
        flag = _SECRET_FLAG.match(arg)
        if flag:
            value = flag.group(1)
            if value is None:
                hide_next = True
                out.append(arg)
            else:
                out.append(arg.split("=", 1)[0] + "=" + (value if _REFERENCE.match(value) else redact(value)))
            continue
        if find_secrets(arg):
            out.append(redact(arg))
            continue
        if re.match(r"^[A-Za-z][\w+.-]*://", arg):
            out.append(redact_url(arg))
            continue
        out.append(arg)
    return out


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    query = [(k, "…" if _SECRET_NAME.search(k) or k.lower() in ("key", "sig", "signature") else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="…"), ""))


# --- helpers ----------------------------------------------------------------------------------

def _basename(command: str) -> str:
    name = PureWindowsPath(command).name if "\\" in command else PurePosixPath(command).name
    return re.sub(r"\.(?:exe|cmd|bat)$", "", name.lower())


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _finding(entry: ServerEntry, rule: str, severity: str, title: str, detail: str, fix: str) -> Finding:
    return Finding(rule=rule, severity=severity, title=title, detail=detail, fix=fix,  # type: ignore[arg-type]
                   subject=entry.label, location=entry.config_path)


def _npm_spec(args: Sequence[str]) -> str | None:
    skip_value = {"-p", "--package", "-c", "--call"}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--package="):
            return arg.split("=", 1)[1]
        if arg in ("-p", "--package") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("-"):
            i += 2 if arg in skip_value else 1
            continue
        return arg
    return None


def _npm_pinned(spec: str) -> bool:
    if spec.startswith(("/", ".", "file:", "git+", "http:", "https:")):
        return True  # a local path or a URL: not a registry package
    name_and_version = spec[1:] if spec.startswith("@") else spec
    if "@" not in name_and_version:
        return False
    version = name_and_version.split("@", 1)[1]
    return bool(re.fullmatch(r"v?\d+\.\d+\.\d+(?:[-+][\w.-]+)?", version))


def _python_spec(args: Sequence[str]) -> str | None:
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--from" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--from="):
            return arg.split("=", 1)[1]
        if arg in ("run", "tool"):
            i += 1
            continue
        if arg.startswith("-"):
            i += 2 if arg in ("--python", "-p", "--with", "--index-url", "--index", "-i") else 1
            continue
        return arg
    return None


def _python_pinned(spec: str) -> bool:
    if spec.startswith(("/", ".", "git+", "http:", "https:", "file:")):
        return True
    return bool(re.search(r"(?:==|@)\s*v?\d+(?:\.\d+)*\b", spec)) and "@latest" not in spec


def _container_args(entry: ServerEntry) -> list[str] | None:
    if _basename(entry.command or "") not in _CONTAINER:
        return None
    args = entry.args
    return args[args.index("run") + 1:] if "run" in args else list(args)


_VALUE_FLAGS = {"-v", "--volume", "--mount", "-e", "--env", "--network", "--net", "--name", "-p", "--publish",
                "--pid", "--ipc", "--userns", "--cap-add", "--security-opt", "--device", "-u", "--user", "-w",
                "--workdir", "--entrypoint", "--env-file", "--platform", "-l", "--label", "--add-host", "--memory",
                "-m", "--cpus"}


def _image_of(args: Sequence[str]) -> str | None:
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            i += 2 if arg in _VALUE_FLAGS else 1
            continue
        return arg
    return None


# --- per-entry rules -----------------------------------------------------------------------------

def check_unpinned(entry: ServerEntry) -> list[Finding]:
    if not entry.command:
        return []
    base = _basename(entry.command)
    args = entry.args
    spec: str | None = None
    kind = ""
    if base in _PACKAGE_RUNNERS or (len(args) > 0 and (base, args[0]) in _DLX):
        spec = _npm_spec(args if base in _PACKAGE_RUNNERS else args[1:])
        kind = "npm"
        pinned = spec is not None and _npm_pinned(spec)
    elif base in ("uvx", "pipx") or (base == "uv" and args[:2] == ["tool", "run"]):
        spec = _python_spec(args)
        kind = "python"
        pinned = spec is not None and _python_pinned(spec)
    elif base in _CONTAINER:
        image = _image_of(_container_args(entry) or [])
        if image is None:
            return []
        spec, kind = image, "image"
        tail = image.rsplit("/", 1)[-1]
        pinned = "@sha256:" in image or (":" in tail and not tail.endswith(":latest"))
    else:
        latest = [a for a in args if a.endswith("@latest")]
        if not latest:
            return []
        spec, kind, pinned = latest[0], "npm", False
    if spec is None or pinned:
        return []
    fix = {"npm": "Pin an exact version (`pkg@1.2.3`) so a new release cannot change what runs; review upgrades.",
           "python": "Pin an exact version (`uvx pkg==1.2.3` or `--from pkg==1.2.3`).",
           "image": "Pin the image by digest (`image@sha256:…`) or at least an explicit version tag."}[kind]
    return [_finding(entry, "unpinned-package", "medium", "package runs at whatever version is newest",
                     f"{entry.command} … {spec}", fix)]


def check_secrets(entry: ServerEntry) -> list[Finding]:
    found: list[str] = []
    for name, value in entry.env.items():
        if _is_literal_secret(name, value):
            found.append(f"env {name}={redact(value)}")
    for name, value in entry.headers.items():
        if name.lower() in ("authorization", "proxy-authorization") or _SECRET_NAME.search(name):
            literal = re.sub(r"(?i)^(?:bearer|basic|token)\s+", "", value)
            if literal and not _REFERENCE.match(literal) and "${" not in literal and not _PLACEHOLDER.match(literal):
                found.append(f"header {name}: {redact(literal)}")
    redacted = redact_args(entry.args)
    for original, shown in zip(entry.args, redacted, strict=True):
        if original != shown and "://" not in original:
            found.append(f"argument {shown}")
    for url in [entry.url, *(a for a in entry.args if "://" in a)]:
        if not url:
            continue
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.password:
            found.append(f"password in URL {redact_url(url)}")
        for key, value in parse_qsl(parts.query):
            if (_SECRET_NAME.search(key) or key.lower() in ("key", "sig")) and value and not _REFERENCE.match(value):
                found.append(f"query parameter {key} in {redact_url(url)}")
    if not found:
        return []
    return [_finding(entry, "inline-secret", "high", "secret written into the client configuration",
                     f"{'; '.join(found[:5])}",
                     "Reference secrets from the environment or the client's secret input (`${env:NAME}`, "
                     "`${input:…}`) instead of writing them into the file; rotate the ones that were written.")]


def check_plain_http(entry: ServerEntry) -> list[Finding]:
    out: list[Finding] = []
    urls = [(entry.url, "server URL")] if entry.url else []
    urls += [(a, "argument") for a in entry.args if a.lower().startswith("http://")]
    for url, where in urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.scheme.lower() == "http" and not _is_loopback(parts.hostname):
            out.append(_finding(entry, "plain-http-remote", "high", "remote MCP server reached over plain HTTP",
                                f"{where} {redact_url(url)}",
                                "Use https:// for every remote server; plain HTTP exposes tokens and tool traffic."))
    return out


def _broad(arg: str, home: str) -> bool:
    value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
    value = value.strip().rstrip("/\\") or "/"
    if value in ("/", "~", "$HOME", "${HOME}", "%USERPROFILE%", "/home", "/Users", "/root", "C:", "C:\\", "c:"):
        return True
    return bool(home) and value == home.rstrip("/\\")


def check_broad_roots(entry: ServerEntry, home: str) -> list[Finding]:
    if _basename(entry.command or "") in _CONTAINER:
        return []  # mounts are judged by the container rule
    broad = [a for a in entry.args if _broad(a, home)]
    if not broad:
        return []
    return [_finding(entry, "broad-filesystem-root", "high", "server is given the whole home directory or disk",
                     f"{', '.join(sorted(set(broad)))}",
                     "Give the server only the project directories it needs, never / or the home directory "
                     "(which holds SSH keys, cloud credentials and every other client's config).")]


def check_container(entry: ServerEntry, home: str) -> list[Finding]:
    args = _container_args(entry)
    if args is None:
        return []
    bad: list[str] = []
    joined = " ".join(args)
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else ""
        low = arg.lower()
        if low == "--privileged":
            bad.append("--privileged")
        if (low in ("--network", "--net") and nxt == "host") or low in ("--network=host", "--net=host"):
            bad.append("--network host")
        for flag in ("--pid", "--ipc", "--userns", "--uts"):
            if (low == flag and nxt == "host") or low == f"{flag}=host":
                bad.append(f"{flag} host")
        if (low == "--cap-add" and nxt.upper() in ("ALL", "SYS_ADMIN", "SYS_PTRACE")) or \
                low in ("--cap-add=all", "--cap-add=sys_admin", "--cap-add=sys_ptrace"):
            bad.append(f"--cap-add {nxt or low.split('=', 1)[1]}")
        if (low == "--security-opt" and "unconfined" in nxt) or \
                (low.startswith("--security-opt=") and "unconfined" in low):
            bad.append(f"--security-opt {nxt or low.split('=', 1)[1]}")
        if low in ("--device",) or low.startswith("--device="):
            bad.append("--device")
        mount = nxt if low in ("-v", "--volume", "--mount") else (arg.split("=", 1)[1] if low.startswith(
            ("--volume=", "--mount=")) else None)
        if mount is not None:
            source = mount.split(":", 1)[0] if "source=" not in mount and "src=" not in mount else \
                re.sub(r".*(?:source|src)=([^,]*).*", r"\1", mount)
            if source.rstrip("/") in ("", "~", "$HOME", "${HOME}") or (home and source.rstrip("/") == home.rstrip("/")):
                bad.append(f"mounts {source or '/'}")
    if "docker.sock" in joined:
        bad.append("mounts the Docker socket")
    if not bad:
        return []
    return [_finding(entry, "container-isolation", "high", "container flags break its isolation",
                     f"{', '.join(dict.fromkeys(bad))}",
                     "Run MCP containers unprivileged, on the default network, with only the directories they "
                     "need mounted read-only where possible; never mount / or the Docker socket.")]


def _is_mcpwall(entry: ServerEntry, gateways: Iterable[str]) -> bool:
    if entry.command:
        base = _basename(entry.command)
        args = entry.args
        if base == "mcpwall":
            return True
        if base.startswith("python") and args[:2] == ["-m", "mcpwall"]:
            return True
        return base in ("uvx", "pipx") and any(a.split("==")[0].split("@")[0] == "mcpwall" for a in args[:3])
    if entry.url:
        norm = entry.url.rstrip("/").lower()
        return any(norm == g.rstrip("/").lower() for g in gateways)
    return False


def check_mcpwall(entry: ServerEntry, gateways: Iterable[str]) -> list[Finding]:
    if _is_mcpwall(entry, gateways):
        return []
    how = ("wrap it: `mcpwall wrap -- <command> <args>` (see `mcpwall scan --clients --wrap`)" if entry.command
           else "point the client at your mcpwall gateway and configure this URL as an upstream there")
    return [_finding(entry, "not-behind-mcpwall", "low", "server is not routed through mcpwall",
                     "started directly by the client" if entry.command
                     else f"{entry.transport} server reached directly",
                     f"Route it through mcpwall: {how}.")]


def check_remote_script(entry: ServerEntry) -> list[Finding]:
    joined = " ".join([entry.command or "", *entry.args])
    if re.search(r"(?:curl|wget)\b[^|;]*\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b", joined) or \
            re.search(r"\b(?:bash|sh|zsh)\s+-c\b.*https?://", joined):
        return [_finding(entry, "remote-script", "high", "server starts by running a script fetched from the network",
                         f"{redact_args([joined])[0][:160]}",
                         "Install the server from a pinned package instead of piping a download into a shell.")]
    return []


def audit_entry(entry: ServerEntry, *, home: str, gateways: Iterable[str] = DEFAULT_GATEWAYS) -> list[Finding]:
    return [*check_unpinned(entry), *check_secrets(entry), *check_plain_http(entry), *check_broad_roots(entry, home),
            *check_container(entry, home), *check_remote_script(entry), *check_mcpwall(entry, gateways)]


def fingerprint(entry: ServerEntry) -> str:
    """A digest of what would run; env values are hashed, never kept."""
    parts = [entry.transport, entry.command or "", "\x00".join(entry.args), entry.url or "",
             "\x00".join(f"{k}={hashlib.sha256(v.encode()).hexdigest()[:12]}" for k, v in sorted(entry.env.items())),
             "\x00".join(f"{k}" for k in sorted(entry.headers))]
    return hashlib.sha256("\x01".join(parts).encode()).hexdigest()[:16]


def inconsistent(entries: Sequence[ServerEntry]) -> list[Finding]:
    groups: dict[str, list[ServerEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.name.split(" (")[0].lower(), []).append(entry)
    out: list[Finding] = []
    for name, group in sorted(groups.items()):
        places = {(e.client, e.config_path) for e in group}
        if len(places) < 2:
            continue
        prints = {fingerprint(e) for e in group}
        if len(prints) < 2:
            continue
        where = sorted({e.client for e in group})
        out.append(Finding(rule="inconsistent-server", severity="medium",
                           title="the same server is configured differently in several places",
                           detail=f"{name}: {len(prints)} different configurations across {', '.join(where)}",
                           fix="Keep one definition (ideally one mcpwall gateway all clients use) so a fix or a "
                               "pin applied in one client is not missing in another.",
                           subject=name, location=group[0].config_path,
                           evidence=[f"{e.client}: {e.config_path}" for e in group]))
    return out
