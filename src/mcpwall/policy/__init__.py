"""The policy engine behind the ``policy`` guard: who may see and call which tools, prompts and
resources, with which arguments, when and how authenticated.

:mod:`~mcpwall.policy.model` is the document format, :mod:`~mcpwall.policy.engine` compiles it
and decides, :mod:`~mcpwall.policy.conditions` holds argument constraints, time windows and
CEL, :mod:`~mcpwall.policy.identity` signs the principal for upstreams, and
:mod:`~mcpwall.policy.testing` runs ``mcpwall policy test`` files. Pure code: no I/O besides
reading policy files.
"""
