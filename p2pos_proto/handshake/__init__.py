"""The handshake (spec/handshake.md): Noise XX/IK, the identity payloads, the SAS.

May import: ``identity``, ``common``, ``errors``, ``events``.
"""
