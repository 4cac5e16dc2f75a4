"""trio drivers that move the core's bytes (UDP, QUIC, TURN; the WebSocket relay).

* ``udp``: ``UdpTransport``, the socket the node drives: batched sends (GSO) and
  receives (GRO) where Linux has them, one syscall per datagram elsewhere.
* ``gso``: the pure GSO/GRO helpers (run planning, control messages, segment splitting).
* ``quic``: ``QuicCarrier``, ``dial``/``listen``: QUIC (aioquic) carrying one stream of framed
  session records, peers authenticated by their identity (spec/quic.md).
* ``quic_tls``: the identity binding of certificates and the dialer's proof.
* ``turn``: a TURN allocation as a virtual datagram socket (UDP, TCP or TLS leg to the server;
  spec/turn.md).
* ``socket_options``: buffer sizing, "never fragment", and the outgoing interface's MTU.

May import trio, the standard library and ``p2pos.proto``; never ``p2pos.adapters``.
"""
