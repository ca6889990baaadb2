"""The bundled demo: a small MCP server and the embedded-defaults config that fronts it."""
