"""Content detection shared by every scanner: one pattern engine, rule packs, validators.

``engine`` compiles rules once (Hyperscan, or an identical pure-``re`` fallback); ``normalize``
reveals hidden text; ``walker`` finds every string in an MCP message with its JSON path;
``scanner`` turns engine matches into findings that never carry the sensitive text itself.
"""
