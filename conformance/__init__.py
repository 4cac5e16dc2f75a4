"""The p2pos v1 conformance suite (spec/conformance.md).

``python -m conformance`` runs cases with stable ids, each tied to a spec
section, against an implementation under test (IUT).  The IUT is any command
that speaks the line-based JSON control protocol of spec/conformance.md; the
default is this repository's own adapter, ``conformance.impl``, which wraps
``p2pos.proto``.  The runner plays the other side with ``p2pos.proto`` itself,
with fixed keys, and checks the IUT's bytes and events.

Modules: ``registry`` (cases and their ids), ``iut`` (the IUT process: one per case, or one
long-lived process reset between cases), ``reference`` (the reference peer and fixed keys),
``impaired`` (the impaired network between them), ``cases_*`` (the cases, by area;
``cases_req_*`` hold those written for requirements no earlier case tested), ``runner``
(results, verdicts, table, JSON), ``traceability`` and ``trace_reasons`` (requirement ids and
the table of spec/conformance.md §6), ``cli`` (the command line), ``impl`` (the adapter for
this implementation), ``mutation`` (mutation testing of the suite, conformance/MUTATION.md;
run on its own, never imported by the suite).
"""

__version__ = "1.0"
