"""Secret-looking config keys, and the one redaction every recorded or printed config goes through.

A key is secret-looking (case-insensitive) when it contains `secret`, `password`, `passwd`, `token`
or `credential`, or has `key` as a word of its own: `fs.s3a.secret.key`, `fs.s3a.access.key`,
`fs.azure.account.key.NAME`, `API_KEY`, `accessKey`, but not `keytab` or `monkey`. Access keys are
redacted too: an access key id is half a credential, and nothing needs it in a manifest.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
_SECRET_PARTS = ("secret", "password", "passwd", "token", "credential")
# Words of a key: split at dots, dashes, underscores and camelCase humps.
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_secret_key(key: str) -> bool:
    """True for a key whose value must never be recorded or printed (see the module docstring)."""
    lowered = key.lower()
    return (any(part in lowered for part in _SECRET_PARTS)
            or any(word.lower() == "key" for word in _WORDS.findall(key)))


def redact(value: Any) -> Any:
    """A copy of a nested config value (dicts, lists) with the value of every secret-looking key
    replaced by REDACTED; keys may be dotted paths (`spark.conf.spark.hadoop.fs.s3a.secret.key`)."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(str(k)) and v is not None else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def shown(key: str, value: Any) -> str:
    """`value` as an error message may show it: its repr with secrets redacted, or the marker
    under a secret-looking key."""
    return REDACTED if is_secret_key(key) else repr(redact(value))
