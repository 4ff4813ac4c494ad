"""Every file the toolkit writes goes through here (docs/reliability.md, "Writers").

The rules these functions hold:

- **Whole or not at all.** A file is written under a hidden temporary name beside it, fsynced and renamed over
  the destination (``atomic_file``); a folder likewise (``AtomicDir``). A reader, or a process killed at any
  moment, sees the old destination or the complete new one.
- **A failure is one line and leaves nothing behind.** If the disk fills (or any other file-system error
  happens) the temporary file or folder is removed, the destination is as it was, and ``WriteFailed`` (a
  ``UserError``: one line, exit 2) names the destination and the reason.
- **Only what we wrote is replaced.** A folder the toolkit creates for an output carries ``OWNER_MARKER``;
  ``claim_output_folder`` lets a command replace such a folder, and refuses anyone else's unless told
  ``overwrite``. ``refuse_input_as_output`` keeps an output from landing on one of the command's inputs.

``open_for_writing`` is the one place bytes leave the process for a file: the fault-injection tests
(tests/faults.py) replace ``_open`` to make the disk fill at a chosen write.
"""
from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from electra.errors import UserError

OWNER_MARKER = ".electra"  # in every output folder the toolkit made: it may replace that folder later

_open = builtins.open  # replaced by the fault-injection tests; nothing else should touch it

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is too large for its file system",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "an input/output error",
}


def failure_reason(e: BaseException) -> str:
    """Why a file-system operation failed, in a few words (``e``: an OSError, or a library's wrapping of one)."""
    code = getattr(e, "errno", None)
    if code in _REASONS:
        return _REASONS[code]
    return getattr(e, "strerror", None) or " ".join(str(e).split())[:200] or type(e).__name__


class WriteFailed(UserError):
    """A destination could not be written; it was left as it was and no temporary file remains."""

    def __init__(self, path: Path, cause: BaseException):
        self.path, self.errno, self.reason = Path(path), getattr(cause, "errno", None), failure_reason(cause)
        super().__init__(f"{self.path}: could not write it ({self.reason}); nothing was changed there: "
                         f"{'free some space' if self.errno in (errno.ENOSPC, errno.EDQUOT) else 'fix the cause'} "
                         f"and run the command again")


class _RecordingFile:
    """Forwards to a file and remembers the first OSError a write raised: torch.save reports a failed write
    as a RuntimeError, and the error it hides (the disk is full) is the one the user needs."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def _remove_quietly(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_for_writing(path: Path, text: bool = False):
    """A new file opened for writing (exclusive: never an existing one), the one place files are created."""
    if text:
        return _open(path, "x", encoding="utf-8", newline="\n")
    return _open(path, "xb")


def open_for_appending(path: Path):
    """An append-only log (metrics.jsonl) opened for writing; the other place files are written."""
    return _open(path, "a", encoding="utf-8", newline="\n")


@contextmanager
def atomic_file(path: str | Path, text: bool = False) -> Iterator[Any]:
    """``with atomic_file(path) as f:`` write ``f``; on success it replaces ``path`` whole (fsync, rename).

    A file-system failure (disk full, read-only, ...) while opening, writing, syncing or renaming removes the
    temporary file and raises ``WriteFailed(path)``; ``path`` is untouched. Other exceptions from the body
    (a bug, a user mistake found while writing) also remove the temporary file and pass through unchanged.
    """
    path = Path(path)
    if path.is_dir():
        raise WriteFailed(path, IsADirectoryError(errno.EISDIR, "is a directory"))
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        raw = open_for_writing(tmp, text)
    except OSError as e:
        raise WriteFailed(path, e) from None
    recorder = _RecordingFile(raw)
    try:
        with raw:
            yield recorder
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        _remove_quietly(tmp)
        cause = recorder.error or (e if isinstance(e, OSError) and not isinstance(e, UserError) else None)
        if cause is not None and not isinstance(e, WriteFailed):
            raise WriteFailed(path, cause) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path, text=True) as f:
        f.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (sorted keys, indented, a final newline)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """``tensors`` as a safetensors file, written through ``atomic_file`` (serialised in memory first:
    safetensors' own writer reports a full disk as a SafetensorError and may leave a partial file)."""
    from safetensors.torch import save

    write_bytes(path, save(tensors, metadata=metadata))


def save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` of plain tensors and numbers (loaded back with ``weights_only=True``), atomically."""
    import torch

    with atomic_file(path) as f:
        torch.save(obj, f)


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` atomically, in 4 MiB chunks."""
    try:
        source = open(src, "rb")
    except OSError as e:
        raise UserError(f"{src}: cannot read ({failure_reason(e)})") from None
    with source, atomic_file(dst) as f:
        for chunk in iter(lambda: source.read(1 << 22), b""):
            f.write(chunk)


def copy_tree(src: str | Path, dst: str | Path) -> None:
    """Copy the files of folder ``src`` (recursively) into ``dst``, each one atomically."""
    src, dst = Path(src), Path(dst)
    make_folder(dst)
    for item in sorted(src.iterdir()):
        if item.is_dir():
            copy_tree(item, dst / item.name)
        elif item.is_file():
            copy_file(item, dst / item.name)


def make_folder(path: str | Path) -> Path:
    """``mkdir -p``, with a failure (a file in the way, read-only, disk full) as one line naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{path}: is a file, not a folder; choose another path") from None
    except OSError as e:
        raise WriteFailed(path, e) from None
    return path


class AtomicDir:
    """``with AtomicDir(final) as tmp:`` build a folder in ``tmp`` (a hidden sibling); on success it is fsynced
    and renamed to ``final`` (replacing an earlier ``final`` whole). On any error the temporary folder is
    removed and ``final`` is as it was; a file-system failure becomes ``WriteFailed(final)``.
    """

    def __init__(self, final: Path):
        self.final = Path(final)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        if self.final.exists() and not self.final.is_dir():
            raise UserError(f"{self.final}: is a file, not a folder; choose another path")
        make_folder(self.final.parent)
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=self.final.parent))
            os.chmod(self.tmp, 0o755)  # mkdtemp makes it 0700; give it an ordinary folder's mode
        except OSError as e:
            raise WriteFailed(self.final, e) from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            _remove_quietly(self.tmp)
            if isinstance(exc, (WriteFailed, OSError)):  # the file system failed: name the folder
                raise WriteFailed(self.final, exc) from None
            return
        try:
            _fsync_tree(self.tmp)
            replace_folder(self.tmp, self.final)
        except OSError as e:
            _remove_quietly(self.tmp)
            raise WriteFailed(self.final, e) from None


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def replace_folder(new: Path, final: Path) -> None:
    """Rename folder ``new`` to ``final``; an existing ``final`` is set aside first and restored if the rename
    fails, then removed."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
        try:
            os.replace(new, final)
        except OSError:
            os.replace(old, final)
            raise
        _remove_quietly(old)
    else:
        os.replace(new, final)
    _fsync_dir(final.parent)


# --------------------------------------------------------------------------- whose folder is it


def mark_owned(folder: Path, command: str) -> None:
    """Put the marker that lets ``command`` (and the toolkit's other commands) replace ``folder`` later."""
    write_text(Path(folder) / OWNER_MARKER, f"written by `{command}`; the toolkit may replace this folder\n")


def is_owned(folder: Path, command: str | None = None) -> bool:
    """Whether ``folder`` carries the toolkit's marker (written by ``command``, when given)."""
    marker = Path(folder) / OWNER_MARKER
    if not marker.is_file():
        return False
    if command is None:
        return True
    try:
        return f"written by `{command}`" in marker.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def claim_output_folder(folder: str | Path, option: str = "--out", overwrite: bool = False,
                        command: str | None = None) -> Path:
    """Check that ``folder`` may be (re)written: missing, empty, made by the toolkit (it has ``OWNER_MARKER``;
    made by ``command`` itself, when given: an export does not replace a demo's folder) or ``overwrite``.
    Anything else, a file where a folder should be included, is one line, and nothing has been written."""
    folder = Path(folder)
    for parent in [folder, *folder.parents]:
        if parent.exists() or parent.is_symlink():  # a dangling link is in the way too
            if not parent.is_dir():
                where = "is a file" if parent == folder else f"is under {parent}, which is a file"
                raise UserError(f"{folder}: {where}, not a folder; choose another {option}")
            break
    if folder.is_dir() and any(folder.iterdir()) and not is_owned(folder, command) and not overwrite:
        by = f"`{command}`" if command else "electra"
        raise UserError(f"{folder}: exists and was not written by {by} (no {OWNER_MARKER} marker of it); choose "
                        f"another {option}, or pass --overwrite to replace it")
    return folder


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """An output file's path must not be a folder, nor lie under a file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give {option} a file path (e.g. {path / 'out.jsonl'})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{path}: is under {parent}, which is a file, not a folder; choose another {option}")
            break
    return path


def refuse_input_as_output(out: str | Path, inputs: list[str | Path], option: str = "--out") -> None:
    """An output must never be written over one of the command's inputs (the same file, however named)."""
    out = Path(out)
    if not out.exists():
        return
    for given in inputs:
        given = Path(given)
        try:
            same = given.exists() and os.path.samefile(out, given)
        except OSError:
            same = False
        if same:
            raise UserError(f"{out}: is also an input of this command ({given}); give {option} another path, "
                            f"so that the input is not overwritten")


# --------------------------------------------------------------------------- reading


def read_json_file(path: Path) -> Any:
    """The JSON value in ``path`` (UTF-8, -16 or -32, as JSON allows); a UserError naming it if unreadable."""
    try:
        return json.loads(Path(path).read_bytes())
    except OSError as e:
        raise UserError(f"{path}: cannot read ({failure_reason(e)})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise UserError(f"{path}: not valid JSON ({' '.join(str(e).split())[:200]})") from None


def read_json_object(path: Path, what: str = "a JSON object") -> dict:
    """``read_json_file``, and it must be an object (a dict)."""
    value = read_json_file(path)
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected {what}, found a JSON {type(value).__name__}; the file is damaged or "
                        f"not the one the command expects")
    return value


def load_safetensors(path: Path) -> dict:
    """The tensors of a safetensors file; a damaged file is one line naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load the weights ({' '.join(str(e).split())[:200]}); the file is damaged "
                        f"or not a safetensors file") from None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (bounded memory for multi-GB weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
