"""Spot SQL-injection payloads in argument values that an upstream splices into SQL.

This is for arguments the operator marks as ending up *inside* a query (a name filter, a sort
key), not for arguments that are whole queries. The rules look for a value breaking out of its
literal — a quote followed by a boolean, a comment or a statement end — and for the classic
payload families (stacked statements, ``UNION SELECT``, tautologies, time and file functions,
catalog probing). Ordinary text with apostrophes (``O'Brien``, ``don't``) and words such as
"select" or "union" in prose do not match.

Matching runs on a folded copy: lower case, ``/* */`` comments turned into spaces (a favourite
way to hide keywords), whitespace collapsed, and once percent-decoded when the value carries
percent escapes.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_OPERAND = r"(?:'[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?|[a-z_][a-z0-9_.]*)"
# The right-hand operand may be an unterminated literal: the application's own closing quote
# completes it ("' OR '1'='1").
_OPERAND_OPEN = r"(?:'[^']*'?|\"[^\"]*\"?|-?\d+(?:\.\d+)?|[a-z_][a-z0-9_.]*)"
_COMPARE = r"(?:=|<>|!=|<=>|>=|<=|>|<|\blike\b|\brlike\b|\bregexp\b|\bis\b)"

RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("stacked_statement", re.compile(
        r";\s*(?:select|insert|update|delete|drop|alter|create|truncate|exec|execute|declare|grant|"
        r"revoke|shutdown|merge|call|replace|attach|detach|pragma|copy|load|rename|set)\b")),
    ("union_select", re.compile(r"\bunion\b(?:\s+(?:all|distinct))?\s*\(*\s*select\b")),
    ("quote_breakout", re.compile(
        r"['\"`]\s*\)*\s*(?:;|--|#\s*$|/\*|\b(?:union|select|insert|update|delete|drop|having|order\s+by|"
        r"group\s+by|procedure|into)\b)")),
    ("tautology", re.compile(
        r"(?:['\"`)]|\b)\s*(?:or|and|xor|\|\||&&)\s+\(*\s*(?P<a>" + _OPERAND + r")\s*" + _COMPARE
        + r"\s*\(*\s*(?P<b>" + _OPERAND_OPEN + r")")),
    ("boolean_breakout", re.compile(
        r"['\"`]\s*\)*\s*(?:or|and|xor|\|\||&&)\s+(?:not\s+)?(?:true|false|\d+|null)\b\s*(?:--|#|;|/\*|$)")),
    ("dangerous_function", re.compile(
        r"\b(?:sleep|benchmark|pg_sleep|load_file|extractvalue|updatexml|utl_inaddr\.\w+|utl_http\.\w+|"
        r"dbms_pipe\.\w+|dbms_lock\.sleep|xp_cmdshell|xp_dirtree|sp_executesql|sp_oacreate|randomblob|"
        r"lo_import|lo_export|pg_read_file|pg_ls_dir|load_extension)\s*\(")),
    ("waitfor_delay", re.compile(r"\bwaitfor\s+(?:delay|time)\s*'")),
    ("file_write", re.compile(r"\binto\s+(?:out|dump)file\b")),
    ("catalog_probe", re.compile(
        r"\b(?:information_schema\.\w+|pg_catalog\.\w+|sqlite_master|sqlite_schema|sysobjects|syscolumns|"
        r"mysql\.user|all_tables|user_tables)\b|@@(?:version|datadir|hostname)\b")),
    ("char_encoding", re.compile(
        r"\b(?:char|chr|nchar)\s*\(\s*\d+\s*(?:,\s*\d+\s*){2,}\)|\bconcat\s*\(\s*0x[0-9a-f]+")),
)

_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_SPACE = re.compile(r"\s+")


def fold(value: str) -> str:
    folded = _COMMENT.sub(" ", value.lower())
    return _SPACE.sub(" ", folded)


def find_sql_injection(value: str) -> str | None:
    """Name of the first rule ``value`` (or its percent-decoded form) matches, or None."""
    forms = [fold(value)]
    if "%" in value:
        decoded = fold(unquote(value))
        if decoded != forms[0]:
            forms.append(decoded)
    for form in forms:
        for name, pattern in RULES:
            match = pattern.search(form)
            if match is None:
                continue
            if name == "tautology" and not _suspicious_comparison(match):
                continue
            return name
    return None


def _suspicious_comparison(match: re.Match[str]) -> bool:
    """A boolean plus comparison is an injection when it is always true or compares literals
    (``1=1``, ``'a'='a'``, ``2>1``), or when it follows a quote that closed the literal."""
    a, b = match.group("a"), match.group("b")
    literal = re.compile(r"^(?:'[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?)$")
    if a == b or (literal.match(a) and literal.match(b)):
        return True
    return match.group(0).lstrip()[:1] in ("'", '"', "`", ")")
