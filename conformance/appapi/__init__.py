"""The app API's conformance suite (spec/appapi.md): black-box cases for any daemon serving it.

    python -m conformance.appapi --socket PATH [--tcp-port P --token-file F]
                                 [--peer-socket PATH2 [--peer-id ID]] [--slow] [--json FILE] [-k SUBSTR]
                                 [--list] [--trace]

It speaks HTTP to the daemon as any app would (``wire``: blocking sockets, h11, wsproto) and
uses none of the daemon's code.  Modules: ``registry`` (cases, their ids and what they need;
the ``Target``), ``expect`` (shared checks); one daemon on its Unix socket: ``cases_local``
(status, HTTP, refusals, errors), ``cases_services`` (services, channels without a peer,
plugins), ``cases_events`` (the event stream, the connection limit); ``cases_tcp`` (its TCP
port and token); ``cases_peers`` (two daemons at one rendezvous node);
``trace`` (the requirement ids of spec/appapi.md and why some have no case), ``runner`` and
``cli``.  It may import ``p2pos.proto`` (to make and parse peer ids) and the wire suite's
``checks`` and ``traceability``; nothing imports it.
"""
