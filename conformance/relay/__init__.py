"""The WebSocket relay's conformance suite (spec/relay.md): black-box cases for any relay.

    python -m conformance.relay URL [--ca-file PEM] [--insecure] [-k SUBSTR] [--list] [--json FILE]

``URL`` is ``ws://HOST:PORT[/PATH]`` or ``wss://…``.  The suite speaks to the relay as any peer
would (``wire``: blocking sockets, ssl, wsproto; the relay messages and the signatures are built
here from the spec with ``struct`` and ``cryptography``, not with p2pos code), with identities it
makes up for each run.  Modules: ``registry`` (cases, their ids, the ``Target``), ``wire``,
``cases`` (upgrade, authentication, pairing, protocol errors, liveness), ``runner`` and ``cli``.
It imports the wire suite's ``checks``; nothing imports it.
"""
