"""Tool and prompt definition pinning: canonical hashes, the ``mcpwall.lock`` file, pin stores,
and change classification (changed, added, removed, renamed, split, merged).

Shared by the ``pins`` guard (:mod:`mcpwall.guards.pins`) and the ``mcpwall pins`` command
(:mod:`mcpwall.cli.pins`); nothing here talks to the network.
"""

from mcpwall.pins.canonical import Key, Pin, canonical_definition, definition_hash, make_pin

__all__ = ["Key", "Pin", "canonical_definition", "definition_hash", "make_pin"]
