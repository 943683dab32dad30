"""Atomic output: a file appears whole or not at all.

Every writer in graphwia goes through :func:`atomic_path`: it writes to a
temporary file in the destination directory and renames it over the target
only after the write succeeded, so a failing run leaves earlier results as
they were.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should be as readable as any file
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data, *, indent: int | None = 4, compress: bool = False) -> Path:
    """Write ``data`` as JSON (gzip-compressed when ``compress``) atomically."""
    text = json.dumps(data, indent=indent, allow_nan=True)
    with atomic_path(path) as tmp:
        if compress:
            with gzip.open(tmp, "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            tmp.write_text(text)
    return Path(path)


def check_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and make sure files can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".graphwia-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{path}: output directory cannot be written ({exc.strerror or exc})") from None
    return path
