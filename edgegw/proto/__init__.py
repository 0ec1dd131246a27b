"""Sans-IO protocol code: bytes and events in, bytes and events out; no trio, no sockets.

Where a C compiler was present at build time, mypyc compiled the per-request parsers and the
HTTP/2 codec (``setup.py``); ``compiled`` says which, and runs their sources instead when it
must (``edgegw/__init__.py`` calls it first).
"""
