"""The admin port: metrics, health, alerts and the routes guards add (approvals)."""
