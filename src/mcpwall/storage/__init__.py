"""State stores: one narrow interface per kind of state (counters, approvals, pins, audit,
sessions), each with memory/SQLite backends and Redis/PostgreSQL for scale-out."""
