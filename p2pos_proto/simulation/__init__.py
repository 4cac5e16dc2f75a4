"""Simulation tools, not part of the protocol: the seeded PRNG and the link emulator.

May import: ``errors`` only.  No protocol layer imports it.
"""
