"""trio drivers that move the core's bytes (UDP now; QUIC and the WebSocket relay later)."""
