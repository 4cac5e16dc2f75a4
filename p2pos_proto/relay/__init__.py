"""The WebSocket relay protocol (spec/relay.md): peers authenticated by their key, paired when both
asked for each other, exchanging opaque session records through the relay.

``messages``: the wire format (relay.md §3); ``server``: ``RelayCore``, the relay's state machine
(links, authentication, pairing, quotas; §4, §5, §6); ``client``: ``RelayClient``, one peer's
link (§7), and ``Backoff``; ``wsframes``: the RFC 6455 frames a link carries once upgraded
(§3.1; the drivers run the HTTP upgrade itself with wsproto).  The trio drivers are ``transports/wsrelay_server.py`` and
``transports/wsrelay_client.py``.

May import: identity, common, errors.
"""
