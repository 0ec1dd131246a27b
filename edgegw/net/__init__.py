"""The data plane: the only code that touches sockets.

One request, from accept to backend and back
--------------------------------------------
1. **Accept** (``ports.PortServer``): the port's task accepts a connection
   and hands it to ``dispatch.Dispatcher.handle`` with the port's current
   runtime (routing tables, TLS contexts; a reload swaps the runtime in one
   assignment, a connection keeps the one it started with).
2. **Protocol** (``dispatch``): a PROXY header is read if the listener wants
   one; TLS is terminated (``tls``, ``tls_stream``) or passed through
   (``tcp``); an HTTP connection goes to the HTTP/1.1 front end
   (``http.serve_http_connection``) or, for the h2c preface or ALPN ``h2``,
   to the HTTP/2 one (``h2server.serve_h2_connection``), with an
   ``HTTPConnectionContext`` (``context``): tables, pool, client, drain,
   observer.
3. **Framing** (``http``, ``h2server``): the front end parses a request
   head (``proto.http1``/``proto.http2``) into a ``ProxyRequest`` with a
   streaming ``RequestBody`` and a ``ResponseWriter``; an HTTP/1.1
   ``Upgrade: websocket`` or an RFC 8441 extended CONNECT also brings a
   ``websocket.H1Tunnel``/``H2Tunnel``. No policy here: it calls
   ``proxy.handle_request``.
4. **Decide** (``decide.decide``, synchronous, the same for every request
   kind): listener (404/421), route (404), the rule's filters (redirects and
   CORS preflights answered at once, header modifiers, rewrites, mirrors),
   session persistence, the backend (500/503), the upstream head. The
   result is a ``RequestPlan``: an ``Answer`` or a forward.
5. **Forward** (``proxy``): mirrors start; the request timeout and the
   retries wrap the tries; each try asks the pool for an endpoint
   (``upstream.UpstreamPool.choose``: least outstanding requests, passive
   health) and calls ``UpstreamPool.exchange``, which picks the protocol
   to the backend: ``h1upstream`` (HTTP/1.1 on a pooled keep-alive
   connection) or ``h2upstream`` (one multiplexed connection per endpoint).
   New connections come from the one ``dial.Dialer`` (TCP, unix, TLS, DNS),
   which the L4 relays (``tcp``, ``udp``) share.
6. **Back**: the response head's fields come from
   ``decide.response_fields`` (hop-by-hop removed, response modifiers, CORS,
   session cookie), then the body streams to the ``ResponseWriter`` as it
   arrives, flushed when the upstream has nothing more queued. For an
   upgrade, the tunnel sends the backend's 101 (as a 200 on HTTP/2) with
   the same fields, then copies bytes both ways until either side closes.
7. The front end decides whether the connection carries another request
   (keep-alive, drain), and the observer records the request
   (``edgegw.observe``: metrics, the access log).

Errors from backends are ``connection.UpstreamError`` (503 connect, 502
broken, 504 timeout), translated from library errors at that boundary.
"""
