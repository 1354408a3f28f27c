"""Credentials out of logs: a logging filter that redacts `token=` and `ticket=` query values.

uvicorn writes each request's path with its query string to its access log (`uvicorn.access`) and
each WebSocket handshake's to `uvicorn.error`; a `?token=` there could be read back and used. The
filter rewrites the record's arguments (not the format), so uvicorn's own formatters still work.
Standard library only: it may be loaded before Django is set up.
"""

import logging
import re

CREDENTIAL_PARAMETERS = ("token", "ticket", "access_token")
REDACTED = "[redacted]"

_QUERY_VALUE = re.compile(
    r"(?P<name>(?:^|[?&;\s\"'])(?:" + "|".join(CREDENTIAL_PARAMETERS) + r")=)[^&;\s\"']*", re.IGNORECASE
)


def redact(text: str) -> str:
    """`text` with the value of every credential query parameter replaced by [redacted]."""
    return _QUERY_VALUE.sub(lambda m: m.group("name") + REDACTED, text)


class RedactCredentials(logging.Filter):
    """Never drops a record; only rewrites credential values in its message and string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and "=" in a for a in args):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict) and any(isinstance(a, str) and "=" in a for a in args.values()):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        return True
