"""Pure checks on untrusted argument values: addresses and URLs (SSRF), file paths, SQL and
shell fragments, and bounded JSON Schema compilation.

Nothing here knows about calls, guards or configuration files; the guards in
:mod:`mcpwall.guards` wire these functions to settings and turn findings into verdicts.
"""
