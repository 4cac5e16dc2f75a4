"""Simulation tools, not part of the protocol: the seeded PRNG, the link emulator, and the
addressed network emulator with its NAT box models (``network.py``, ``nat.py``).

May import: ``errors`` only.  No protocol layer imports it.
"""
