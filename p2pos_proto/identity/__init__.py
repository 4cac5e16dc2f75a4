"""Identity (spec/identity.md): Ed25519 identities, peer ids, signed records, and the crypto primitives.

May import: ``common``, ``errors``.
"""
