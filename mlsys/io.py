"""Reading and writing at the edges: atomic writes, clear errors for missing, corrupt or
unwritable files (never a traceback, never a half-written file)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsys.errors import IntegrityError, MissingInputError, StorageError

if TYPE_CHECKING:
    import pandas as pd


def require(path: Path, what: str) -> Path:
    """`path`, or a MissingInputError naming the file and what should have made it."""
    if not Path(path).exists():
        raise MissingInputError(f"{path}: missing ({what})")
    return Path(path)


@contextmanager
def storage(path: Path, action: str) -> Iterator[None]:
    """Turn the storage refusing a write (read-only, full, no permission) into a StorageError
    naming the path; the caller's cleanup runs as the error passes."""
    try:
        yield
    except OSError as exc:
        why = errno.errorcode.get(exc.errno or 0, "") if exc.errno else ""
        raise StorageError(f"{path}: cannot {action}: {exc.strerror or exc}{f' ({why})' if why else ''}") from exc


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in `folder` survive a power cut."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    path = Path(path)
    tmp: str | None = None
    try:
        with storage(path, "write"):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            write(Path(tmp))
            with open(tmp, "rb") as fh:  # on disk before the rename makes it visible
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; readable like any written file
            os.replace(tmp, path)
            fsync_dir(path.parent)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: Path, obj: Any) -> Path:
    """Sorted, indented JSON, written atomically (reports and cards diff cleanly)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def read_json(path: Path, what: str) -> Any:
    """JSON from `path`, or MissingInputError saying `what` should have made it (an
    IntegrityError if it is there but does not parse)."""
    try:
        return json.loads(require(path, what).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path}: not valid JSON ({exc}); rerun what makes it ({what})") from exc


def append_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    """Append one JSON line per record; after a line cut by a crash mid-append, on a new line
    (so the cut line, not the next record, is the one that does not parse)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        cut = fh.tell() > 0 and path.read_bytes()[-1:] != b"\n"
        text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        fh.write((("\n" if cut else "") + text).encode("utf-8"))
    return path


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of an appended JSON-lines file (none if it is missing), and how many lines
    did not parse: a line cut by a crash mid-append is skipped and counted, never a crash."""
    records, unreadable = [], 0
    if Path(path).exists():
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                unreadable += 1
    return records, unreadable


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """A plot's data (DVC plots read CSV), written atomically."""
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))


def read_parquet(path: Path, what: str, columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    require(path, what)
    try:
        return pd.read_parquet(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IntegrityError(f"{path}: not a readable Parquet file ({exc}); rerun what makes it ({what})") from exc


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
