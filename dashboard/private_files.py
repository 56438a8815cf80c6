"""Files only the server's own user may read (the generated secret key, the first admin's password).

They are created with mode 0600 from the first byte: written to a temporary file opened 0600 in the
same folder, then moved into place. There is never a moment where the file exists with wider
permissions or half written. Standard library only: settings.py uses it before Django is set up.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _private_temp(path: Path, text: str) -> str:
    """A 0600 temporary file beside `path` holding `text`; returns its name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp opens it 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` (replacing it) as a 0600 file."""
    path = Path(path)
    tmp = _private_temp(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def create_private_file(path: Path, text: str) -> str:
    """Create `path` as a 0600 file holding `text`, unless it exists; returns what the file holds.

    Two processes starting together (web and worker) must end up with one key: the file is linked
    into place, which fails when another process was first, and then that one's text wins.
    """
    path = Path(path)
    tmp = _private_temp(path, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text()
    finally:
        os.unlink(tmp)
    return text
