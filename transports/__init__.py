"""trio drivers that move the core's bytes (UDP now; QUIC and the WebSocket relay later).

* ``udp``: ``UdpTransport``, the socket the node drives: batched sends (GSO) and
  receives (GRO) where Linux has them, one syscall per datagram elsewhere.
* ``gso``: the pure GSO/GRO helpers (run planning, control messages, segment splitting).
* ``socket_options``: buffer sizing, "never fragment", and the outgoing interface's MTU.

May import trio, the standard library and ``p2pos.proto``; never ``p2pos.adapters``.
"""
