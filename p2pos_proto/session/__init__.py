"""The secure session (spec/session.md, record.md, framing.md): packet headers, the record
layer with its replay window, the session state machine, and stream framing.

May import: ``handshake``, ``identity``, ``common``, ``errors``, ``events``.
"""
