"""The exceptions edgegw raises, in one tree.

Library errors (PyYAML, msgspec, OSError) are translated into these at the
boundary that meets them, so callers only ever catch edgegw's own types::

    EdgegwError                  anything edgegw raises on purpose
    ├── ConfigError              a config file or resource is wrong: file, line, field, message
    │   └── UnknownKind          a document of a kind or version edgegw does not read (a warning)
    └── FieldError (ValueError)  a cross-field rule failed inside an api model's __post_init__;
                                 msgspec wraps it, the loader turns it into a ConfigError

``ConfigError`` is also the value the loader *reports* (errors and warnings of
a reload) rather than raises, which is why it is plain data with ``as_dict``.
"""

from __future__ import annotations


class EdgegwError(Exception):
    """Base of every exception edgegw raises on purpose."""


class ConfigError(EdgegwError):
    """Something in the config directory that a user has to fix.

    ``file`` is relative to the config directory, ``line`` is 1-based (0 when
    unknown), ``field`` is a dotted path such as ``spec.rules[0].matches[1]``
    (empty when the whole file or document is at fault).
    """

    def __init__(self, file: str, line: int, field: str, message: str) -> None:
        super().__init__(file, line, field, message)
        self.file = file
        self.line = line
        self.field = field
        self.message = message

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def __repr__(self) -> str:
        return f"ConfigError({self.file!r}, {self.line!r}, {self.field!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigError):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.field, self.message))

    def as_dict(self) -> dict[str, str | int]:
        """The JSON shape used by ``/api/status`` and ``edgegw check -o json``."""
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class UnknownKind(ConfigError):
    """A document edgegw does not read; reported as a warning, it changes nothing else."""


class FieldError(EdgegwError, ValueError):
    """A validation rule failed on ``field`` (relative to the model that raised it).

    It subclasses ValueError because msgspec only wraps ValueError and
    TypeError raised in ``__post_init__`` into a ValidationError; it keeps the
    original exception as ``__cause__``, which is how the loader recovers
    ``field`` and appends it to msgspec's ``$.spec…`` path.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
