"""sha256 of input files, streamed (MOSEI pickles are gigabytes) and computed once per file."""

import hashlib
import os

_CHUNK_BYTES = 1 << 20
# (absolute path, mtime in ns, size) -> hex digest: a file rewritten in place is hashed again.
_DIGESTS = {}


def file_sha256(path) -> str:
    """Hex sha256 of the file at `path`, cached per process by path, mtime and size."""
    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
