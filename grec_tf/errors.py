"""Errors a user can cause, each naming where the problem is and what was expected."""
from typing import Optional


class GRecError(ValueError):
    """Base class of every user-facing error of GRec-TF."""


class ConfigError(GRecError):
    """A configuration file or override is malformed; the message names the key path."""


class DataError(GRecError):
    """Input data violates the declared schema.

    The message names the file, the column and the first bad row (0-based position in that file),
    and says what was expected.
    """

    def __init__(self, message: str, *, file: Optional[str] = None, column: Optional[str] = None,
                 row: Optional[int] = None):
        where = []
        if file is not None:
            where.append(f"file {file}")
        if column is not None:
            where.append(f"column '{column}'")
        if row is not None:
            where.append(f"row {row}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.message, self.file, self.column, self.row = message, file, column, row
