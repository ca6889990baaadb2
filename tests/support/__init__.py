"""Shared test helpers: Node test peers, managed subprocesses, the gateway, the conformance suite."""
