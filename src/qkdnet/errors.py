"""The one exception tree of qkdnet.

Every error qkdnet raises on purpose derives from :class:`QkdnetError`. Messages say what
is wrong and what to do about it. Foreign errors are translated at the boundary with
``raise ... from exc``.

::

    QkdnetError
    ├── ParameterError (also ValueError)  a bad input value: names the field and the range
    ├── ScenarioError                     a scenario or parameter file that does not validate
    ├── RecordsError                      detection records malformed or not matching
    ├── ProtocolAbort                     a QKD block aborted (QBER too high, too few counts, ...)
    │   ├── QberTooHigh
    │   └── VerificationFailed
    ├── AuthenticationError               a classical message failed its MAC (deliberately opaque)
    ├── KeyManagementError
    │   ├── KeyExhausted                  a pool has too little key for the request
    │   ├── KeyNotFound                   an unknown, expired or already consumed key ID
    │   ├── KeyAlreadyConsumed
    │   ├── Unauthorized                  an SAE asked for keys of a pair it is not part of
    │   └── RelayError                    key relay could not complete
    ├── RoutingError                      no allowed path (the reason says which constraint)
    └── StoreError                        a key store's backend failed
"""

from __future__ import annotations


class QkdnetError(Exception):
    """Base class of every error qkdnet raises on purpose."""


class ParameterError(QkdnetError, ValueError):
    """A parameter is outside its allowed range; the message names the field and the range."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ScenarioError(QkdnetError):
    """A scenario or parameter file does not validate (file, line and field in the message)."""


class RecordsError(QkdnetError):
    """Detection records are malformed, or Alice's and Bob's records do not match."""


class ProtocolAbort(QkdnetError):
    """A QKD block was aborted by the protocol; no key is emitted for it."""


class QberTooHigh(ProtocolAbort):
    """The estimated QBER (or phase error) exceeds the abort threshold."""


class VerificationFailed(ProtocolAbort):
    """The verification hashes of Alice's and Bob's reconciled keys differ."""


class AuthenticationError(QkdnetError):
    """A classical message failed authentication. Deliberately says nothing more."""

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__(message)


class KeyManagementError(QkdnetError):
    """Base class of key-management errors."""


class KeyExhausted(KeyManagementError):
    """A key pool holds too little key to serve the request; nothing was taken."""


class KeyNotFound(KeyManagementError):
    """A key ID is unknown, expired, or not reserved for the caller."""


class KeyAlreadyConsumed(KeyNotFound):
    """A key ID was already delivered and consumed; a key is never delivered twice."""


class Unauthorized(KeyManagementError):
    """The caller may not reach these keys."""


class RelayError(KeyManagementError):
    """Key relay over trusted nodes could not complete; nothing was half-done."""


class RoutingError(QkdnetError):
    """No path satisfies the request's policy; the message says which constraint failed."""


class StoreError(KeyManagementError):
    """A key store's backend failed (database error, corrupt file)."""
