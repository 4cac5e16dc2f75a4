"""NAT traversal: STUN and TURN (spec/rendezvous.md §5, spec/turn.md; candidates and hole punching with issue 13).

* ``stun``: the rendezvous node's minimal Binding codec (spec/rendezvous.md §5).
* ``stun_message``: the STUN codec TURN needs (attributes, MESSAGE-INTEGRITY, FINGERPRINT).
* ``turn_framing``: ChannelData and cutting a TCP/TLS stream into messages.
* ``turn_config``: ``turn:``/``turns:`` URLs and credentials (long-term, coturn REST).
* ``turn``: the sans-IO TURN client; ``turn_events``: what it reports.
* ``addresses``: the class of an IP address from the spec's explicit list (spec/candidates.md §2).
* ``candidates``: candidate kinds and priorities, the pairing policy, peer-reflexive candidates
  (spec/candidates.md §3-§5).

May import: errors, common.
"""
