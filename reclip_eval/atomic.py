"""Atomic writes: a reader (or a crash) sees either the old file/directory or the complete new one, never half."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_beside(target: Path) -> Path:
    """A new empty file of our temp naming (`clean_stale`) in `target`'s folder, which is created if missing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp_name)


def _seal(tmp: Path) -> None:
    """A finished temp file made ready to take its final name: durable, with the permissions open() would give."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success fsync it and rename it over `target`, on error remove it."""
    target = Path(target)
    tmp = _temp_beside(target)
    try:
        yield tmp
        _seal(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(target: str | Path, data: Any) -> None:
    write_text_atomic(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


def create_text_exclusive(target: str | Path, text: str) -> bool:
    """Create `target` holding `text`, whole and only if nothing is there: True when created, False when a file of
    that name exists (it is then left untouched). Of two writers racing for one name exactly one creates it.

    The text goes to a temp file first, which is then hard-linked to `target`: the link fails if the name exists,
    and a reader sees no file or the complete one (checking first and writing after would let both writers pass
    the check). Where the filesystem has no hard links, `O_CREAT | O_EXCL` keeps the creation exclusive, though a
    reader may then meet the file while it is being written."""
    target = Path(target)
    tmp = _temp_beside(target)
    try:
        tmp.write_text(text, encoding="utf-8")
        _seal(tmp)
        os.link(tmp, target)
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        return _create_with_o_excl(target, text)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return True


def _create_with_o_excl(target: Path, text: str) -> bool:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(target.parent)
    return True


# Our own temporary names beside a target NAME: `.NAME.<random>.tmp` (being written, or an old folder being
# deleted after a swap), `.NAME.<random>.del` (retired, being deleted), `.NAME.old-<pid>` (the rename-aside of
# earlier versions and of the fallback below). Anything else is never touched by `clean_stale`.
_STALE = re.compile(r"^\.(?P<name>.+)\.(?:[A-Za-z0-9_]+\.(?:tmp|del)|old-\d+)$")
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)  # glibc >= 2.28
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # old kernel or filesystem
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_dir(new: Path, target: Path) -> None:
    """Put directory `new` in place of `target` so that `target` names the old or the new folder at every instant.

    Where the kernel cannot swap two folders atomically, the old one is renamed aside first (a kill in between
    leaves `.NAME.old-PID`, which `clean_stale` puts back)."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder, still under a temp name
    else:
        aside = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, aside)
        os.replace(new, target)
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(target.parent)


def retire_dir(path: str | Path) -> None:
    """Delete folder `path`: first renamed out of its name in one step (a kill then leaves no half-deleted folder
    under a name anything reads), then removed."""
    path = Path(path)
    if not path.exists():
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".del", dir=path.parent))
    os.replace(path, retired)  # onto the empty folder just made: atomic, and the name is ours alone
    _fsync_dir(path.parent)
    shutil.rmtree(retired, ignore_errors=True)


def clean_stale(folder: str | Path, names: Callable[[str], bool] | None = None) -> list[str]:
    """Remove what killed writes of this module left in `folder` (temp and retired entries of our naming, for
    the target names `names` accepts; all of our naming when None). A renamed-aside folder whose target is
    missing is put back instead: it is the complete old version. Returns what was done, for the log."""
    folder = Path(folder)
    done = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _STALE.match(entry.name)
        if not match or (names is not None and not names(match["name"])):
            continue
        target = folder / match["name"]
        if ".old-" in entry.name and not target.exists():
            os.replace(entry, target)
            done.append(f"restored {target} from {entry.name}")
        else:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            done.append(f"removed {entry}")
    return done


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside `target`; on success it replaces `target` whole (`replace_dir`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
