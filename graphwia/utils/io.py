"""Output files that appear whole, as one consistent set, inside their directory.

* :func:`atomic_path`: every writer in graphwia writes to a temporary file in
  the destination directory and renames it over the target only after the
  write succeeded, so a failing run leaves earlier results as they were.
* :func:`all_or_nothing`: inside such a block the renames wait until the whole
  block succeeded, so a run writing several files replaces all of them or none.
* :func:`output_set`: one run's outputs in one directory. Every path written in
  the block must lie inside the directory (:func:`inside`); the renames happen
  under the directory's lock file, so two runs finishing together never mix
  their files; a manifest records which files each set wrote, and files an
  earlier run of the same set wrote that this run did not are removed (files
  graphwia did not write are never touched). Temporaries left by killed runs
  (recognised by graphwia's own naming, their process gone) are removed when
  the next run starts writing there.
* :func:`write_json` writes strict JSON: a NaN or infinity is written as ``null``
  (:func:`nonfinite_fields` names them, so callers can warn).
* :func:`read_yaml` reads small, flat YAML files defensively: bounded size and
  nesting, no aliases, no key twice in one mapping, errors with line and column.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import math
import os
import re
import signal
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphwia.errors import GraphwiaError, OutputError, first_line

if TYPE_CHECKING:  # pragma: no cover
    from yaml.constructor import SafeConstructor  # yaml itself is imported on first use

__all__ = [
    "MANIFEST",
    "LOCK",
    "all_or_nothing",
    "atomic_path",
    "check_writable_dir",
    "clean_stale_temporaries",
    "discard_own_temporaries",
    "inside",
    "json_text",
    "nonfinite_fields",
    "output_set",
    "read_yaml",
    "write_gzip",
    "write_json",
    "write_text",
]

#: Which files each output set in a directory wrote last (hidden, JSON).
MANIFEST = ".graphwia-manifest.json"
#: Held (flock) while a set's files are renamed into place and the manifest updated.
LOCK = ".graphwia.lock"
# os.uname, not socket.gethostname: importing socket (and tempfile, below) costs more than a small analysis's
# result files take to write.
_HOST = re.sub(r"[^A-Za-z0-9]", "_", os.uname().nodename if hasattr(os, "uname") else "")[:32] or "host"
#: ``.<target>.graphwia-<host>-<pid>-<random>.tmp``: a temporary of a graphwia process.
_TEMPORARY = re.compile(r"\..+\.graphwia-(?P<host>[A-Za-z0-9_]+)-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.tmp")


@dataclass
class _Set:
    """An :func:`output_set` block: its directory (resolved), key and the files it wrote."""

    directory: Path
    key: str
    written: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary, target)


@dataclass
class _Commit:
    """What the outermost :func:`all_or_nothing` block renames at its end."""

    loose: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary, target) outside any set
    sets: list[_Set] = field(default_factory=list)

    def temporaries(self) -> list[Path]:
        return [tmp for tmp, _ in self.loose] + [tmp for s in self.sets for tmp, _ in s.written]


#: Directories this process created temporaries in (see :func:`discard_own_temporaries`).
_TOUCHED: set[Path] = set()
_PENDING: contextvars.ContextVar[_Commit | None] = contextvars.ContextVar("graphwia_pending_renames", default=None)
_SET: contextvars.ContextVar[_Set | None] = contextvars.ContextVar("graphwia_output_set", default=None)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Files written via :func:`atomic_path` in this block replace their targets only
    when the whole block succeeds, all together at its end; otherwise none does.

    Nested blocks join the outermost one.
    """
    if _PENDING.get() is not None:
        yield
        return
    commit = _Commit()
    token = _PENDING.set(commit)
    try:
        yield
        # The temporaries sit beside their targets, so a rename can only fail over a directory:
        # refuse before the first rename rather than leave a mixed set of old and new files.
        for _, path in commit.loose + [pair for s in commit.sets for pair in s.written]:
            if path.is_dir():
                raise OutputError(f"{path}: cannot write output (Is a directory)")
        with _signals_deferred():  # Ctrl-C or SIGTERM now would leave half a set renamed
            for tmp, path in commit.loose:
                _replace(tmp, path)
            for output in commit.sets:
                _commit_set(output)
    finally:
        _PENDING.reset(token)
        for tmp in commit.temporaries():
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def output_set(directory: str | Path, *, key: str) -> Iterator[Path]:
    """One run's outputs in ``directory``: contained, committed together under a lock, stale files removed.

    Yields the directory (created if needed). Every file written with
    :func:`atomic_path` in the block must lie inside it (else
    :class:`~graphwia.errors.OutputError`) and belongs to the set ``key``
    (e.g. one trial's analysis). When the block succeeds, under the
    directory's :data:`LOCK`: the files are renamed into place, the files the
    previous run of ``key`` wrote there and this one did not are removed, and
    the :data:`MANIFEST` records this run's files. The renames wait for an
    enclosing :func:`all_or_nothing` block, if any.
    """
    directory = check_writable_dir(directory)
    current = _Set(directory=directory.resolve(), key=key)
    with all_or_nothing():
        commit = _PENDING.get()
        assert commit is not None  # all_or_nothing() has set it, or the enclosing block had
        commit.sets.append(current)  # its temporaries are removed if the block fails
        token = _SET.set(current)
        try:
            yield directory
        finally:
            _SET.reset(token)


def inside(path: str | Path, directory: str | Path) -> Path:
    """``path`` when it names a file in ``directory`` or a folder below it, else :class:`OutputError`.

    Symbolic links and ``..`` in the folders are resolved; the file name itself
    must be a plain name (a link there is replaced, never followed, by a rename).
    """
    path, root = Path(path), Path(directory).resolve()
    parent = path.parent.resolve()
    if path.name in ("", ".", "..") or not (parent == root or parent.is_relative_to(root)):
        raise OutputError(f"{path}: refusing to write outside the output directory {directory}")
    return path


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM arriving in the block take effect at its end, through the handlers in place before.

    Only in the main thread (the only one Python runs signal handlers in); a
    no-op elsewhere, and for a signal whose handler was not set from Python.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(number)
        if handler is not None:
            previous[number] = signal.signal(number, lambda received, frame: caught.append(received))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for received in caught:
            signal.raise_signal(received)


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None


def _temporary(path: Path) -> Path:
    """A new empty file beside ``path`` named as :data:`_TEMPORARY` describes, readable as results are."""
    _TOUCHED.add(path.parent)
    while True:
        tmp = path.parent / f".{path.name}.graphwia-{_HOST}-{os.getpid()}-{os.urandom(6).hex()}.tmp"
        try:  # O_EXCL: a name another process holds is never reused
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as to any file
        except FileExistsError:
            continue
        return tmp


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success
    (at the end of the enclosing :func:`all_or_nothing` block, if any).

    Inside an :func:`output_set` block, ``path`` must lie in the set's directory.
    """
    path = Path(path)
    current = _SET.get()
    if current is not None:
        inside(path, current.directory)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _temporary(path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
    deferred = False
    try:
        yield tmp_path
        commit = _PENDING.get()
        if commit is None:
            _replace(tmp_path, path)
        else:
            (current.written if current is not None else commit.loose).append((tmp_path, path))
            deferred = True
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
    finally:
        if not deferred:
            tmp_path.unlink(missing_ok=True)


# -- committing a set ------------------------------------------------------------------------


def _commit_set(output: _Set) -> None:
    """Rename the set's files into place, drop what its previous run wrote and this one did not."""
    names = sorted(
        {
            path.parent.resolve().joinpath(path.name).relative_to(output.directory).as_posix()
            for _, path in output.written
        }
    )
    with _locked(output.directory):
        sets = _read_manifest(output.directory)
        for tmp, path in output.written:
            _replace(tmp, path)
        for name in sorted(set(sets.get(output.key, ())) - set(names)):
            _remove_own_file(output.directory, name)
        sets[output.key] = names
        _write_manifest(output.directory, sets)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory``'s :data:`LOCK` (no-op where flock does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield
        return
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"{directory / LOCK}: cannot lock the output directory ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_manifest(directory: Path) -> dict[str, list[str]]:
    """The manifest's sets; an unreadable or foreign manifest counts as empty (nothing is removed)."""
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    sets = data.get("sets") if isinstance(data, dict) and data.get("version") == 1 else None
    if not isinstance(sets, dict):
        return {}
    return {
        key: [n for n in names if isinstance(n, str)]
        for key, names in sets.items()
        if isinstance(key, str) and isinstance(names, list)
    }


def _write_manifest(directory: Path, sets: dict[str, list[str]]) -> None:
    path = directory / MANIFEST
    tmp = _temporary(path)
    try:
        tmp.write_text(json.dumps({"version": 1, "sets": sets}, indent=1, sort_keys=True))
        _replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_own_file(directory: Path, name: str) -> None:
    """Remove ``directory/name`` if it is a regular file inside ``directory`` (a manifest entry)."""
    path = directory / name
    try:
        inside(path, directory)
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()
    except (OSError, OutputError):
        pass  # gone already, replaced by a folder or a link, or a tampered entry: leave it


def discard_own_temporaries() -> list[Path]:
    """Remove every temporary this process created and still has, in every directory it wrote to.

    For a run that is ending early (Ctrl-C, SIGTERM): an interruption can land
    between creating a temporary and the code that would remove it. Returns
    the removed paths. Not for a process with other threads still writing.
    """
    removed = []
    for directory in sorted(_TOUCHED):
        removed += clean_stale_temporaries(directory, pids={os.getpid()})
    return removed


def clean_stale_temporaries(directory: str | Path, *, pids: set[int] | None = None) -> list[Path]:
    """Remove the temporaries graphwia processes of this host left in ``directory`` and that are gone.

    A temporary is recognised by its name (:data:`_TEMPORARY`); one whose
    process still runs, or that another host wrote, is kept. ``pids``: remove
    those of these processes instead, running or not. Returns the removed paths.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or match["host"] != _HOST:
            continue
        if (int(match["pid"]) not in pids) if pids is not None else _process_alive(int(match["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # elsewhere os.kill(pid, 0) is no question: keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a pid we cannot ask about): keep its files
    return True


# -- writers -----------------------------------------------------------------------------------


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def json_text(data, *, indent: int | None = 4) -> str:
    """``data`` as strict JSON text: a NaN or infinite float is written as ``null``."""
    try:
        return json.dumps(data, indent=indent, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), indent=indent, allow_nan=False)


def nonfinite_fields(data, *, prefix: str = "") -> list[str]:
    """Dotted paths (``"blocking_slowdown"``, ``"step_t_base.3"``) of the NaN or infinite floats in ``data``."""
    if isinstance(data, float):
        return [] if math.isfinite(data) else [prefix or "(value)"]
    items: Iterable[tuple[Any, Any]]
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return []
    found = []
    for key, value in items:
        found += nonfinite_fields(value, prefix=f"{prefix}.{key}" if prefix else str(key))
    return found


def _finite(data):
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def write_json(path: str | Path, data, *, indent: int | None = 4, compress: bool = False) -> Path:
    """Write ``data`` as strict JSON (:func:`json_text`; gzip-compressed when ``compress``) atomically."""
    text = json_text(data, indent=indent)
    if compress:
        return write_gzip(path, text.encode("utf-8"), level=6)  # 9 is 3x slower for ~2% smaller
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_gzip(path: str | Path, data: bytes | Iterable[bytes], *, level: int = 6) -> Path:
    """Write ``data`` (bytes, or chunks of bytes streamed one by one) gzip-compressed to ``path`` atomically,
    at the level :func:`write_json` uses by default."""
    import gzip

    with atomic_path(path) as tmp:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=level, mtime=0) as handle,
        ):
            for chunk in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                handle.write(chunk)
    return Path(path)


# -- reading YAML ------------------------------------------------------------------------------

#: Largest YAML input read (metadata and scenario files are a few kB).
MAX_YAML_BYTES = 1 << 20
#: Deepest nesting of collections accepted in a YAML input.
MAX_YAML_DEPTH = 32
#: Longest integer literal accepted (int64 has 19 digits).
MAX_YAML_INT_DIGITS = 40


def read_yaml(path: str | Path, error: type[GraphwiaError], what: str):
    """Parse a small YAML file, raising ``error`` with a one-line message naming the file (and the line and
    column of a syntax error) when it is missing, too large, too deeply nested, uses aliases, has a key twice
    in one mapping (PyYAML would keep the last silently; the message names the key and both lines), or is
    unreadable."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory, not a {what} file")
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise error(f"{path}: {what} file is {size:,} bytes; a {what} file holds at most {MAX_YAML_BYTES:,}")
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a readable YAML file ({exc.strerror if isinstance(exc, OSError) else exc})") from None
    *fast, reference = _loader_classes()
    for loader_class in fast:
        try:
            return _load_yaml(loader_class, text)
        except (yaml.YAMLError, RecursionError):
            pass  # the reference loader says why, in its words (and reads what libyaml alone refuses)
    try:
        return _load_yaml(reference, text)
    except yaml.MarkedYAMLError as exc:
        raise error(f"{path}: not a readable YAML file ({_yaml_problem(exc)})") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise error(f"{path}: not a readable YAML file ({first_line(exc, limit=200)})") from None


def _load_yaml(loader_class, text: str):
    """The one document of ``text``, parsed by ``loader_class`` (its reader refuses control characters)."""
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(exc) -> str:
    """``line L, column C: problem`` of a PyYAML error (1-based, as editors count)."""
    mark = exc.problem_mark or exc.context_mark
    problem = " ".join(str(exc.problem or exc.context or type(exc).__name__).split())[:200]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


@functools.cache
def _loader_classes() -> tuple[type[SafeConstructor], ...]:
    """YAML loaders without aliases or duplicate keys, with bounded nesting and integer literals: the fast one
    if any, then the reference (yaml is imported on first use).

    Both are PyYAML's safe loader with the guards in its Python composer and constructor. The reference
    reads with PyYAML's pure-Python reader, scanner and parser; the fast one, when PyYAML has libyaml,
    with libyaml's parser (a 1,000-scenario file: 0.15 s instead of 0.7 s; ``CSafeLoader`` itself
    composes in C, out of the guards' reach). libyaml words its errors differently, refuses a few
    inputs PyYAML reads (an escaped lone surrogate) and stops flow nesting at 1,000 levels on its own,
    so :func:`read_yaml` has the reference loader read what the fast one refuses.
    """
    import yaml
    from yaml.composer import Composer, ComposerError
    from yaml.constructor import ConstructorError, SafeConstructor
    from yaml.nodes import MappingNode
    from yaml.resolver import Resolver

    class Guards:
        """Composing without aliases and with bounded nesting; integer literals of bounded length; no key twice
        in one mapping."""

        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ComposerError(None, None, "aliases (*name) are not allowed here", event.start_mark)
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH:
                    raise ComposerError(
                        None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_yaml_int(self, node):
            if len(node.value) > MAX_YAML_INT_DIGITS:
                raise ConstructorError(
                    None, None, f"integer of {len(node.value)} characters is too long", node.start_mark
                )
            return super().construct_yaml_int(node)

        def construct_mapping(self, node, deep=False):
            # Before flatten_mapping: a key of the mapping itself may override one it merges (<<), not repeat one.
            if isinstance(node, MappingNode):
                seen = {}  # key -> the mark of its first occurrence
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=deep)  # cached: the mapping itself reuses it
                    try:
                        first = seen.setdefault(key, key_node.start_mark)
                    except TypeError:
                        continue  # an unhashable key: PyYAML's own check refuses it
                    if first is not key_node.start_mark:
                        raise ConstructorError(
                            None,
                            None,
                            f"key {repr(key)[:80]} appears twice in one mapping (first on line {first.line + 1})",
                            key_node.start_mark,
                        )
            return super().construct_mapping(node, deep=deep)

    class BoundedLoader(Guards, yaml.SafeLoader):
        """PyYAML's SafeLoader with the guards."""

    loaders: list[type[SafeConstructor]] = [BoundedLoader]
    try:
        from yaml._yaml import CParser  # what yaml.cyaml imports (and, in the stubs, does not re-export)
    except ImportError:  # PyYAML built without libyaml
        pass
    else:

        class BoundedCLoader(Guards, Composer, CParser, SafeConstructor, Resolver):
            """libyaml's events, composed and constructed as by :class:`BoundedLoader`."""

            def __init__(self, stream):
                CParser.__init__(self, stream)
                Composer.__init__(self)
                SafeConstructor.__init__(self)
                Resolver.__init__(self)

        loaders.insert(0, BoundedCLoader)
    for loader in loaders:
        # types-PyYAML bounds the loader to PyYAML's own loader classes; any constructor subclass works.
        loader.add_constructor("tag:yaml.org,2002:int", loader.construct_yaml_int)  # type: ignore[type-var]
    return tuple(loaders)


def check_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed, make sure files can be written in it, and remove stale temporaries there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{path}: output directory cannot be written ({_not_a_directory(path)})") from None
    except OSError as exc:
        raise OutputError(f"{path}: output directory cannot be written ({exc.strerror or exc})") from None
    clean_stale_temporaries(path)
    try:
        _temporary(path / "probe").unlink()
    except OSError as exc:
        raise OutputError(f"{path}: output directory cannot be written ({exc.strerror or exc})") from None
    return path


def _not_a_directory(path: Path) -> str:
    """Why an existing ``path`` cannot be used as a directory."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            import errno

            if exc.errno == errno.ELOOP:
                return "a symbolic link loop"
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
    return "it exists and is not a directory"
