"""Fixtures for end-to-end tests: the real gateway as a subprocess and the pinned Node peers."""

from __future__ import annotations

import pytest

from support.gateway import gateway_factory
from support.nodeenv import NodeEnv, require_node

__all__ = ["gateway_factory", "node_env"]


@pytest.fixture
def node_env() -> NodeEnv:
    """Node 22 and the pinned MCP reference servers; fails under CI and skips elsewhere when missing."""
    return require_node()
