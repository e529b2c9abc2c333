"""Keys made of label values, bounded so that a database index can hold them.

Input: a key the rule stages derive from label values (an incident key, an inhibit key's
`equal` values, a problem key). Output: the same key while it is at most `MAX_KEY_BYTES` bytes
of UTF-8, else a prefix of it followed by the SHA-256 digest of the whole key.

Why: these keys are stored in btree indexes, and PostgreSQL refuses an index row over about
2,700 bytes ("index row size ... exceeds btree version 4 maximum 2704"), while SQLite takes any
length; a label within `max_label_length` (4,096 characters) could make the write fail on one
backend only. A bounded key is deterministic, so alerts with the same long values still meet
in one incident, problem or inhibition; a short key is unchanged, so keys stored before this
bound keep matching. No rule section drives this module and it feeds no metric.
"""

from __future__ import annotations

import hashlib

# The longest key kept as it is, in bytes of UTF-8. A bounded key is never longer, which leaves
# room in PostgreSQL's ~2,704-byte index rows for the columns indexed with it (the inhibitors'
# primary key adds the rule name, the source and the fingerprint).
MAX_KEY_BYTES = 1000
_MARK = "...[sha256:"
_DIGEST_CHARS = 64


def bounded(key: str, limit: int = MAX_KEY_BYTES) -> str:
    """`key` if it fits in `limit` bytes of UTF-8, else its longest prefix that leaves room for
    the digest of the whole key: `<prefix>...[sha256:<64 hex digits>]`, at most `limit` bytes
    (for a `limit` of at least 76, the length of the digest part)."""
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return key
    digest = hashlib.sha256(raw).hexdigest()
    room = max(0, limit - len(_MARK) - _DIGEST_CHARS - 1)
    # Cut on a character boundary: a multi-byte character split by the cut is left out.
    prefix = raw[:room].decode("utf-8", "ignore")
    return f"{prefix}{_MARK}{digest}]"
