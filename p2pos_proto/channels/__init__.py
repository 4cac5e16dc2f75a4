"""The channel layer (spec/channels.md, frames.md, flow.md): frames, flow control, send and
receive buffers, channels, and ``Connection``, which runs them over one secure session.

May import: ``recovery``, ``session``, ``handshake``, ``identity``, ``common``, ``errors``, ``events``.
"""
