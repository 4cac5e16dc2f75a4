"""The WebSocket relay's conformance suite (spec/relay.md): black-box cases for any relay.

    python -m conformance.relay URL [--ca-file PEM] [--insecure] [--name NAME] [-k SUBSTR] [--json FILE]
    python -m conformance.relay --list | --trace

``URL`` is ``ws://HOST:PORT[/PATH]`` or ``wss://…``.  The suite speaks to the relay as any peer
would (``wire``: blocking sockets, ssl, wsproto; the relay messages and the signatures are built
here from the spec with ``struct`` and ``cryptography``, not with p2pos code), with identities it
makes up for each run.  Modules: ``registry`` (cases, their ids, the ``Target``), ``wire``,
``cases`` (upgrade, authentication, pairing, protocol errors, quotas, liveness), ``trace`` (every
``REL-`` id of relay.md: its cases or why none), and ``cli`` (with the runner).  It paces its
connections below the relay's default per-address quota (REL-5.1) and assumes the default
quotas.  It imports the wire suite's ``checks`` and ``traceability``; nothing imports it.
"""
