"""NAT traversal: STUN, behaviour discovery and TURN (spec/nat.md, spec/rendezvous.md §5, spec/turn.md),
candidates (spec/candidates.md), hole punching (spec/punch.md), port mapping (spec/portmap.md).

* ``stun_message``: the STUN codec (attributes, MESSAGE-INTEGRITY(-SHA256), FINGERPRINT).
* ``stun``: the rendezvous node's Binding answers, RFC 5780 included (spec/rendezvous.md §5, spec/nat.md §3.1).
* ``stun_client``: the sans-IO Binding client with RFC 8489 retransmissions (spec/nat.md §2.4).
* ``discovery``: NAT behaviour discovery in the manner of RFC 5780 (spec/nat.md §3).
* ``binding_timeout``: how long the router keeps an idle binding, learned on spare bindings (spec/nat.md §4).
* ``keepalive``: the keepalive interval, the flows that need one, the sender (spec/nat.md §5).
* ``turn_framing``: ChannelData and cutting a TCP/TLS stream into messages.
* ``turn_config``: ``turn:``/``turns:`` URLs and credentials (long-term, coturn REST).
* ``turn``: the sans-IO TURN client; ``turn_events``: what it reports.
* ``profile``: a NAT's measured behaviour and its wire form (spec/punch.md §2).
* ``punch_plan``: the strategy a pair of profiles needs, each side's part (spec/punch.md §3).
* ``punch``: the sans-IO puncher: probes on a schedule, answers, success (spec/punch.md §4-§5).
* ``addresses``: the class of an IP address from the spec's explicit list (spec/candidates.md §2).
* ``candidates``: candidate kinds and priorities, the pairing policy, peer-reflexive candidates
  (spec/candidates.md §3-§5).
* ``portmap_common``: a port mapping's result, events and states; ``portmap_natpmp``,
  ``portmap_pcp``: NAT-PMP and PCP codecs and clients; ``portmap_upnp``: SSDP, device
  description, SOAP over h11; ``portmap_upnp_client``: the UPnP IGD steps.

May import: errors, common (and h11, itself sans-IO).
"""
