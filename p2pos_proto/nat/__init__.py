"""NAT traversal: STUN, TURN, port mapping (spec/rendezvous.md §5, spec/turn.md, spec/portmap.md; more with issue 13).

* ``stun``: the rendezvous node's minimal Binding codec (spec/rendezvous.md §5).
* ``stun_message``: the STUN codec TURN needs (attributes, MESSAGE-INTEGRITY, FINGERPRINT).
* ``turn_framing``: ChannelData and cutting a TCP/TLS stream into messages.
* ``turn_config``: ``turn:``/``turns:`` URLs and credentials (long-term, coturn REST).
* ``turn``: the sans-IO TURN client; ``turn_events``: what it reports.
* ``portmap_common``: a port mapping's result, events and states; ``portmap_natpmp``,
  ``portmap_pcp``: NAT-PMP and PCP codecs and clients; ``portmap_upnp``: SSDP, device
  description, SOAP over h11; ``portmap_upnp_client``: the UPnP IGD steps.

May import: errors, common (and h11, itself sans-IO).
"""
