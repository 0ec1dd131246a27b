"""Envoy Gateway policies as pure request logic: no sockets, no trio.

Each module decides one thing from a request's parts (client address,
headers) and a policy compiled from the IR: who the client is
(``clientip``), whether it may pass (``authz``, ``basicauth``, ``apikey``,
``jwt`` with ``jwtverify``, ``ratelimit``), and how the response is encoded
(``compress``). ``compiled``
builds them once per reload for every rule and listener; ``net/`` only asks.
"""
