"""What every CAMELS file reader shares: the error for unreadable files and the read chunk size.

Readers stream big arrays in chunks of about ``CHUNK_BYTES`` (64 MB) so that a
memory-mapped set is never read whole.

Example:
    >>> chunk_len(4 * 256 * 256) == CHUNK_BYTES // (4 * 256 * 256)
    True
"""
from __future__ import annotations

__all__ = ["CorruptFileError", "CHUNK_BYTES", "chunk_len"]


class CorruptFileError(OSError):
    """A cache, catalog or map file exists but cannot be read (truncated or not HDF5/npy).

    Example:
        >>> issubclass(CorruptFileError, OSError)
        True
    """


CHUNK_BYTES = 64 * 2**20


def chunk_len(bytes_per_item):
    return max(1, int(CHUNK_BYTES // max(1, bytes_per_item)))
