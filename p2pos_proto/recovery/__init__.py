"""Loss recovery and congestion control (spec/recovery.md): RTT, loss detection and PTO,
NewReno/CUBIC/BBR, pacing, ACK generation and path MTU discovery.

May import: ``common``, ``errors``, ``events`` (it knows nothing of channels or sessions).
"""
