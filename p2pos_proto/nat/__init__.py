"""NAT traversal: STUN and TURN (spec/rendezvous.md §5, spec/turn.md), hole punching (spec/punch.md).

* ``stun``: the rendezvous node's minimal Binding codec (spec/rendezvous.md §5).
* ``stun_message``: the STUN codec TURN needs (attributes, MESSAGE-INTEGRITY, FINGERPRINT).
* ``turn_framing``: ChannelData and cutting a TCP/TLS stream into messages.
* ``turn_config``: ``turn:``/``turns:`` URLs and credentials (long-term, coturn REST).
* ``turn``: the sans-IO TURN client; ``turn_events``: what it reports.
* ``profile``: a NAT's measured behaviour and its wire form (spec/punch.md §2).
* ``punch_plan``: the strategy a pair of profiles needs, each side's part (spec/punch.md §3).
* ``punch``: the sans-IO puncher: probes on a schedule, answers, success (spec/punch.md §4-§5).

May import: errors, common.
"""
