"""Certificates edgegw issues and renews itself, as cert-manager would (CONTRACT "Certificates").

``manager`` runs the life cycle on the pure plan from ``translate.certificates``;
``acme`` and ``solvers`` speak RFC 8555 and prove names (HTTP-01, TLS-ALPN-01,
DNS-01 over RFC 2136); ``pki`` makes keys, CSRs and local certificates;
``store`` keeps them under ``STATE_DIR/certificates/``; ``challenges`` holds the
answers the data plane serves; ``state`` renders cert-manager's status.
"""
