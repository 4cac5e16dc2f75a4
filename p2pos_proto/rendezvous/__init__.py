"""The rendezvous protocol (spec/rendezvous.md): peers register with a rendezvous node, look each
other up by peer id and are introduced, over p2pos sessions whose records carry these messages.

May import: every layer up to the endpoint, and nat (STUN).
"""
