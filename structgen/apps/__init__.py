"""The apps built on ``generate``: text → verified regex, and question → verified read-only SQL.

``text_to_regex`` generates under the bundled ``python_regex`` grammar and verifies each candidate with
``re.compile`` and the given examples; ``text_to_sql`` generates under a grammar built from the database's
own schema and verifies each candidate with ``EXPLAIN`` on a read-only connection. Both return the best
verified candidate or raise a typed error that carries every candidate and why it failed.
"""

from .regex import RegexCandidate, RegexNotVerified, RegexResult, text_to_regex, verify_regex
from .sql import SqlCandidate, SqlNotVerified, SqlResult, text_to_sql, verify_sql

__all__ = [
    "RegexCandidate",
    "RegexNotVerified",
    "RegexResult",
    "SqlCandidate",
    "SqlNotVerified",
    "SqlResult",
    "text_to_regex",
    "text_to_sql",
    "verify_regex",
    "verify_sql",
]
