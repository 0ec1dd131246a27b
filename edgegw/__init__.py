"""edgegw: a directory of Kubernetes Gateway API YAML becomes a running edge gateway."""

__version__ = "0.1.0"
