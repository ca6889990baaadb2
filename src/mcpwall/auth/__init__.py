"""Authentication methods for the ``auth`` guard: API keys, OAuth/JWT bearer tokens, mutual
TLS and HMAC request signing, plus the failure tracker that slows down guessing.

Each method looks at one request and says one of three things: it found no credential of its
kind, it verified one (a :class:`~mcpwall.gateway.call.Principal`), or it found one that is
wrong (:class:`~mcpwall.auth.base.AuthFailure`). The guard (:mod:`mcpwall.guards.auth`)
combines the answers. Nothing here logs or echoes a credential.
"""
