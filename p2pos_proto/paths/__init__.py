"""Paths (spec/paths.md): the ways one session reaches its peer (direct UDP, a relay, TURN, QUIC),
their validation, per-path recovery state, and which one carries the data.

May import: recovery, common, errors, events.
"""
