"""The p2pos v1 conformance suite (spec/conformance.md).

``python -m conformance`` runs cases with stable ids, each tied to a spec
section, against an implementation under test (IUT).  The IUT is any command
that speaks the line-based JSON control protocol of spec/conformance.md; the
default is this repository's own adapter, ``conformance.impl``, which wraps
``p2pos.proto``.  The runner plays the other side with ``p2pos.proto`` itself,
with fixed keys, and checks the IUT's bytes and events.

Modules: ``registry`` (cases and their ids), ``iut`` (one IUT process per
case), ``reference`` (the reference peer and fixed keys), ``cases_*`` (the
cases, by area: identity, handshake, handshake errors, amplification,
endpoint, record, framing), ``runner`` (results, table, JSON), ``cli`` (the command line),
``impl`` (the adapter for this implementation).
"""

__version__ = "1.0"
