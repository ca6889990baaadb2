"""Human approval of held calls: assessment (does this call need a person?), the service that
keeps requests, waits and times out, the webhook that announces them, and the admin API that
approvers use. The ``approval`` guard (:mod:`mcpwall.guards.approval`) wires them into the chain;
other guards (``flow``, ``policy``) hold calls through :func:`mcpwall.guards.approval.request_approval`."""
