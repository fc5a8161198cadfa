"""Characters that must not pass as they are: in names (they would make look-alike teams or
forge a line) and in text written to a terminal or a log.

One set of Unicode categories is refused in names (:mod:`streams.ingest.normalize`) and escaped in
terminal output (:func:`terminal_safe`): control characters (``Cc``: NUL, ESC, CR, LF, DEL,
C1), format characters (``Cf``: bidi overrides such as U+202E, zero-width U+200B..U+200D,
U+2060, the BOM U+FEFF, tag characters), line and paragraph separators (``Zl``, ``Zp``) and
lone surrogates (``Cs``). Use :func:`terminal_safe` on any text that reaches a terminal and may
hold a name or a reason that came from input; :func:`install_safe_logging` applies it to every
log message of the process.
"""

from __future__ import annotations

import logging
import unicodedata
from typing import Any

__all__ = ["UNSAFE_CATEGORIES", "first_unsafe", "install_safe_logging", "json_safe", "safe_strings", "terminal_safe"]

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def first_unsafe(s: str) -> int:
    """Index of the first character of ``s`` in :data:`UNSAFE_CATEGORIES`, or -1.

    >>> first_unsafe("ads"), first_unsafe("a\\u202eds"), first_unsafe("équipe")
    (-1, 1, -1)
    """
    if s.isascii():
        if s.isprintable():
            return -1
        return next(i for i, c in enumerate(s) if not c.isprintable())
    cat = unicodedata.category
    for i, c in enumerate(s):
        if cat(c) in UNSAFE_CATEGORIES:
            return i
    return -1


def _escape(c: str) -> str:
    short = _SHORT.get(c)
    if short is not None:
        return short
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def terminal_safe(text: str) -> str:
    """``text`` with every unsafe character escaped visibly (``\\x1b``, ``\\r\\n``,
    ``\\u202e``), so a name or a reason can neither drive the terminal (set the window title,
    move the cursor) nor start a line of its own. A backslash is doubled only when something
    was escaped, so plain text stays as it is.

    >>> terminal_safe("team ads")
    'team ads'
    >>> print(terminal_safe("ads\\x1b]0;pwned\\x07\\r\\nINFO forged"))
    ads\\x1b]0;pwned\\x07\\r\\nINFO forged
    """
    if not isinstance(text, str):
        text = str(text)
    if first_unsafe(text) < 0:
        return text
    cat = unicodedata.category
    return "".join(_escape(c) if c == "\\" or cat(c) in UNSAFE_CATEGORIES else c for c in text)


def json_safe(text: str) -> str:
    """JSON text (as ``json.dumps(..., ensure_ascii=False)`` or orjson write it) with every
    unsafe character that is still raw written as a ``\\uXXXX`` escape: the same JSON values,
    safe on a terminal. Line breaks outside strings (indentation) stay: inside strings the
    writers have escaped them already.

    >>> json_safe('{"team": "a\\u202eb", "n": 1}')
    '{"team": "a\\\\u202eb", "n": 1}'
    """
    if first_unsafe(text.replace("\n", "")) < 0:
        return text
    cat = unicodedata.category
    out = []
    for c in text:
        if c != "\n" and cat(c) in UNSAFE_CATEGORIES:
            n = ord(c)
            if n >= 0x10000:  # a UTF-16 surrogate pair, as JSON writes it
                n -= 0x10000
                out.append(f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}")
            else:
                out.append(f"\\u{n:04x}")
        else:
            out.append(c)
    return "".join(out)


def safe_strings(value: Any, depth: int = 64) -> Any:
    """A copy of a JSON-like value with :func:`terminal_safe` applied to every string, keys
    included (for a document received from elsewhere, before it is rendered as text).
    Nesting deeper than ``depth`` is cut (replaced by ``"…"``)."""
    if isinstance(value, str):
        return terminal_safe(value)
    if depth <= 0:
        return "…"
    if isinstance(value, dict):
        return {terminal_safe(k) if isinstance(k, str) else k: safe_strings(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_strings(v, depth - 1) for v in value]
    return value


class _SafeRecord(logging.LogRecord):
    def getMessage(self) -> str:  # noqa: N802 - logging's name
        return terminal_safe(super().getMessage())


def install_safe_logging() -> None:
    """Escape unsafe characters in every log message of this process (its arguments included:
    a team name or a reject reason in a log line can then neither forge another line nor
    drive the terminal). Tracebacks are left as they are. Idempotent."""
    if logging.getLogRecordFactory() is not _SafeRecord:
        logging.setLogRecordFactory(_SafeRecord)
