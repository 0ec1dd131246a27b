"""Several nodes, one set of addresses: coordination through etcd (``--cluster``).

`election` decides who announces what (pure); `session` keeps this node's lease and its view
of the cluster and carries the decisions out in etcd; `shared` keeps the gateway's pool
allocations in etcd and reports the cluster in ``/api/status``; `keys` is the key layout and
`options` the command-line flags. The etcd client itself is `edgegw.net.etcd`.
"""
