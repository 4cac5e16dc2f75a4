"""The QUIC carrier's conformance suite (spec/quic.md): black-box cases for any carrier implementation.

    python -m conformance.quic [--impl "COMMAND"] [--json FILE] [-k SUBSTR] [--list [--markdown]] [--trace]

The IUT is a command (spec/quic.md §7) that listens on QUIC on loopback, dials on request
and reports carriers and records as JSON lines; the default is ``reference_iut``, the
reference carrier ``transports/quic.py``.  The runner is a correct peer and misbehaving ones
(another ALPN, certificates without a valid binding, bad proofs, other streams, other QUIC
versions), built on aioquic's sans-IO connection (``peer``), with certificates and proofs of
its own (``certs``).  Modules: ``registry`` (cases and their ids), ``control`` (the IUT
process), ``helpers``, ``cases_listen`` (the runner dials), ``cases_dial`` (the IUT dials),
``cases_session`` (a p2pos session over a carrier), ``cases_shared`` (QUIC on the IUT's shared
socket, spec/quic.md §5.1), ``runner``, ``cli``, ``trace`` (the QUIC ids and their cases).  It
may import ``p2pos.proto`` and the wire suite's ``checks``, ``traceability`` and
``trace_reasons``; only ``reference_iut`` and its ``shared_iut`` import the reference carrier
(and the node's choice of what a shared socket gives QUIC); only ``conformance.traceability``
may import it (its ``registry``).
"""
