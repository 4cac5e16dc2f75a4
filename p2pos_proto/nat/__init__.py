"""NAT traversal (spec/rendezvous.md §5; more with issue 13): STUN messages, and later candidates and hole punching.

May import: errors, common.
"""
