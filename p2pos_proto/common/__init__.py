"""Shared encodings below every layer: QUIC-style varints and range sets.

May import: ``p2pos.proto.errors`` only.
"""
