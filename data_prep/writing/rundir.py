"""Whole-run dataset_dirs: prepare builds a run in a hidden sibling directory and swaps it in at the end.

Whatever the moment of a kill, `--out` then holds either the earlier complete run or the new complete run,
never a mix of the two, and no file of the earlier run survives a rerun. Only `--out` itself is swapped:
whatever lies next to it (a run directory's atune/, selection/, *.stamp.json) is left alone.

The swap is one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux (ctypes; no moment without `--out`). Where
that is unavailable (another OS, a file system without it) it is two renames: out -> ``.<name>.prepare-old-*``,
new -> out. A kill between the two leaves no `--out`; the next start (`recover`) renames the old run back.
Hidden ``.<name>.prepare-new-*`` / ``-old-*`` directories of killed runs are removed at the next start;
an exclusive lock (``.<name>.prepare.lock`` next to `--out`) keeps a concurrent prepare from removing
another's build directory.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from data_prep.errors import PrepareError
from data_prep.writing.outputs import AUX_STEM, BEHAVIOR_STEMS

# A directory holding any of these is an earlier prepare's output (complete or not) and may be replaced.
PREPARE_FILES = frozenset({"stats.json", "dataset_info.json", f"{AUX_STEM}.jsonl",
                           *(f"{stem}{ext}" for stem in BEHAVIOR_STEMS for ext in (".jsonl", ".meta.jsonl"))})
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# errno values meaning "this system / file system cannot exchange": use the two-rename fallback
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def _new_prefix(out: Path) -> str:
    return f".{out.name}.prepare-new-"


def _old_prefix(out: Path) -> str:
    return f".{out.name}.prepare-old-"


def _leftovers(out: Path, prefix: str) -> list[Path]:
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()
                  and not p.is_symlink())


def target_of(out_dir: str | Path) -> Path:
    """The directory to replace: `--out` itself, or the directory it links to (a symlink stays a symlink)."""
    out = Path(out_dir).expanduser()
    return out.resolve() if out.is_symlink() else Path(os.path.abspath(out))


def recover(out: Path) -> None:
    """Undo what a killed prepare left: put the old run back if a kill fell between the fallback's two
    renames (no `out`, an old-run backup), then remove every leftover build / backup directory."""
    olds = _leftovers(out, _old_prefix(out))
    backups = [p for p in olds if any(p.iterdir())]   # an empty one was reserved but never filled
    if not out.exists() and not out.is_symlink() and backups:
        # the backup holds the earlier complete run; the new run never reached its final name
        restore = max(backups, key=lambda p: p.stat().st_mtime_ns)
        os.rename(restore, out)
        olds.remove(restore)
    for leftover in olds + _leftovers(out, _new_prefix(out)):
        shutil.rmtree(leftover, ignore_errors=True)


def check_replaceable(out: Path) -> None:
    """Refuse to replace a directory prepare did not write: a mistyped --out (a run dir, a home dir) would
    otherwise be deleted. Empty directories and earlier prepare outputs (complete or not) may be replaced."""
    if not out.exists():
        return
    if not out.is_dir():
        raise PrepareError(f"--out {out} exists and is not a directory")
    if os.path.ismount(out):   # a mount point cannot be renamed: the run could never be swapped in
        raise PrepareError(f"--out {out} is a mount point; give a directory inside it, e.g. {out / 'data'}")
    names = {p.name for p in out.iterdir()}
    if names and not names & PREPARE_FILES:
        raise PrepareError(f"--out {out} is not empty and holds no earlier prepare output (no stats.json, "
                           f"dataset_info.json or <split>.jsonl); refusing to replace it: give a new or empty "
                           f"directory")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE). False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):   # libc without renameat2 (glibc < 2.28, some musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):   # not every file system lets a directory be opened and synced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def swap_in(new: Path, out: Path) -> None:
    """Make the complete run in `new` the content of `out`; the earlier run (if any) is removed."""
    if not out.exists():
        os.rename(new, out)
    elif _exchange(new, out):
        shutil.rmtree(new)                 # `new` now holds the earlier run
    else:
        # mkdtemp reserves a unique name; renaming a directory onto an empty one replaces it (POSIX)
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=_old_prefix(out)))
        os.rename(out, old)
        os.rename(new, out)                # a kill before this line: recover() renames `old` back
        shutil.rmtree(old)
    _fsync_dir(out.parent)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    lock_path = out.parent / f".{out.name}.prepare.lock"
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PrepareError(f"another prepare is writing {out} (lock {lock_path}); wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def staged(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty hidden sibling directory of `out_dir` to build a run in; on success swap it in as
    `out_dir` (the earlier content is removed), on error remove it and leave `out_dir` as it was."""
    out = target_of(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        recover(out)
        check_replaceable(out)
        new = Path(tempfile.mkdtemp(dir=out.parent, prefix=_new_prefix(out)))
        try:
            os.chmod(new, 0o777 & ~_umask())   # mkdtemp makes 0700; give the run the usual permissions
            yield new
            swap_in(new, out)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
