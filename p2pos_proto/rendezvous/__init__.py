"""The rendezvous protocol (spec/rendezvous.md): peers register with a rendezvous node, look each
other up by peer id and are introduced, over p2pos sessions whose records carry these messages;
a sequential side's fresh mapping is passed to its peer as a FRESH (``fresh``).

May import: every layer up to the endpoint, and nat (STUN).
"""
