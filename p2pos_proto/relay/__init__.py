"""The WebSocket relay protocol (spec/relay.md): peers authenticated by their key, paired when both
asked for each other, exchanging opaque session records through the relay.

May import: identity, common, errors.
"""
