"""The typing journal: what was typed survives a crash, a power cut or a pulled plug.

Format (design choice: an append-only edit log). The file is UTF-8 JSON Lines; the first line is
a header, every other line one edit of the text:

    {"edgetype_journal": 1}
    {"keep": 0, "add": "Hello wor"}
    {"keep": 8, "add": ""}            <- Backspace: keep the first 8 characters, add nothing
    {"keep": 6, "add": "world "}      <- accepting a suggestion replaced the partial word

`keep` is how many characters of the text so far stay (a common prefix), `add` what follows them,
so Backspace, delete-word and accepting a suggestion that re-cases the typed prefix are all one
kind of line, whatever the engine did. The text is the fold of all lines.

Nothing typed is lost (issue 17):
- One owner: `JournalLock` holds an exclusive `flock` on `<path>.lock` for the journal's whole
  life (the journal itself is replaced by renames, so it cannot carry the lock). A second demo on
  the same journal is refused with a clear message; the lock dies with its process (kill -9).
- Only our own files are touched: `check_journal_file` refuses a symlink, FIFO, device, directory
  or any regular file that does not start with the journal header (a notes file). Temporary files
  are created with O_EXCL|O_NOFOLLOW.
- Restore history is never overwritten: a declined journal goes to `<path>.prev`, then
  `.prev.1`, `.prev.2`, ... (hard link + unlink: never replaces an existing file).
- Durability: each edit is one `os.write` on an `O_APPEND` descriptor (no user-space buffer), so a
  killed process loses nothing; `fsync` runs at word boundaries and on close, so a power cut loses
  at most the current word. A crash can leave a truncated last line: reading ignores it.
- Bounded per-key cost: an edit line is computed from the end of the text only (the demo edits the
  end: insert, Backspace, delete-word, accept), never by diffing the whole text. Compaction (the
  whole text written to a temporary file, fsynced, renamed over the journal) runs on start and when
  the log has grown past `COMPACT_FACTOR` x the text (+ `COMPACT_MIN_BYTES`): amortised O(1) per
  key. A crash between the temporary write and the rename leaves the old journal intact.
- A full disk or read-only file system: one clear message on stderr, typing continues, the journal
  on disk keeps what it had; every word boundary retries by a compaction, which puts the whole
  text back on disk as soon as writing works again.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import sys
from typing import Callable

from runtime.errors import UserError

JOURNAL_FORMAT_VERSION = 1
_HEADER = json.dumps({"edgetype_journal": JOURNAL_FORMAT_VERSION}) + "\n"
_HEADER_BYTES = _HEADER.encode("utf-8")
MAX_JOURNAL_BYTES = 256 << 20  # a journal larger than this is not ours (reads are capped)
EDIT_TAIL_CHARS = 4096  # edits are found within the last this-many characters of the text
COMPACT_FACTOR = 4  # compact when the log holds more than 4x the text's bytes ...
COMPACT_MIN_BYTES = 1 << 20  # ... and at least 1 MiB


class JournalError(UserError):
    """A journal file that cannot be read or written."""


def default_journal_path(name: str = "journal.txt") -> str:
    """`$XDG_STATE_HOME/edgetype/<name>`, XDG_STATE_HOME defaulting to `~/.local/state`."""
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state_home, "edgetype", name)


def _refuse(path: str, what: str) -> JournalError:
    return JournalError(f"journal {path}: {what}; not touched. Pass --journal NEW_PATH or --no-journal")


def check_journal_file(path: str) -> bool:
    """True when `path` is a journal we may replace, False when it does not exist.

    Raises JournalError for anything else: a symlink, FIFO, device, directory, socket, or a regular
    file that is not a journal (its first line is not the header). An empty regular file holds no
    text, so replacing it loses nothing: it counts as a journal.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise JournalError(f"journal {path}: cannot inspect ({error.strerror}); pass --journal PATH or --no-journal") from None
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(path, "is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device node"
                if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a directory"
                if stat.S_ISDIR(info.st_mode) else "not a regular file")
        raise _refuse(path, f"is {kind}")
    if info.st_size == 0:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise JournalError(f"journal {path}: cannot read ({error.strerror}); pass --journal PATH or --no-journal") from None
    try:
        head = os.read(fd, len(_HEADER_BYTES))
    finally:
        os.close(fd)
    if head != _HEADER_BYTES:
        raise _refuse(path, "is not an edgetype journal (its first line is not "
                      f"{_HEADER.strip()}), e.g. someone's notes")
    return True


def read_journal_text(path: str) -> str:
    """The text a journal holds ("" when there is none). A truncated last line is ignored."""
    if not check_journal_file(path):
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            with os.fdopen(fd, "rb", closefd=False) as file:
                raw = file.read(MAX_JOURNAL_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as error:
        raise JournalError(f"journal {path}: cannot read ({error.strerror}); pass --journal PATH or --no-journal") from error
    if len(raw) > MAX_JOURNAL_BYTES:
        raise JournalError(f"journal {path}: larger than {MAX_JOURNAL_BYTES >> 20} MiB, not a journal this "
                           "demo wrote; move it away or pass --journal NEW_PATH")
    # a complete file ends with "\n", so the last piece is b""; anything else there is a torn
    # write (the word being typed when the power went): dropped by design
    complete = raw.split(b"\n")[:-1]
    text = ""
    for line_number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            if line_number == len(complete):
                break  # torn write that happened to end in a newline byte of the next line: ignore
            raise JournalError(
                f"journal {path}:{line_number}: corrupt line; move the file away or pass --no-journal"
            ) from error
        if not isinstance(record, dict):
            raise JournalError(f"journal {path}:{line_number}: not a JSON object; move the file away")
        if "edgetype_journal" in record:
            if record["edgetype_journal"] != JOURNAL_FORMAT_VERSION:
                raise JournalError(
                    f"journal {path}: format {str(record['edgetype_journal'])[:20]!r} is not "
                    f"{JOURNAL_FORMAT_VERSION}; move the file away"
                )
            continue
        keep, add = record.get("keep"), record.get("add")
        if (isinstance(keep, bool) or not isinstance(keep, int) or not isinstance(add, str)
                or not 0 <= keep <= len(text)):
            raise JournalError(f"journal {path}:{line_number}: bad edit {str(record)[:60]!r}; move the file away")
        text = text[:keep] + add
    return text


def _fsync_directory(directory: str) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not allow opening a directory; the rename is still atomic
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class JournalLock:
    """Exclusive ownership of a journal: `flock` on `<path>.lock`, held until `release()`.

    Taken before the journal is read, so no second demo can slip in between restore and append.
    The lock file is never deleted (deleting it would let two owners lock two different inodes).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self._fd: int | None = None
        self.unwritable: str | None = None  # read-only FS / full disk: no lock, and nothing is written
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise _refuse(self.lock_path, "is a symbolic link") from None
            if error.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
                # typing must go on: this session journals nothing, the journal on disk stays as it is
                self.unwritable = error.strerror or str(error)
                return
            raise JournalError(f"journal {path}: cannot create its lock {self.lock_path} ({error.strerror}); "
                               "pass --journal PATH on a writable file system, or --no-journal") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _refuse(self.lock_path, "is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise JournalError(f"journal {path}: in use by another edgetype demo; stop that one first, "
                                   "or pass --journal OTHER_PATH / --no-journal") from None
            raise JournalError(f"journal {path}: cannot lock ({error.strerror}); pass --no-journal") from None
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _common_prefix_at_end(old: str, new: str) -> int:
    """len(commonprefix(old, new)), looking only at the last EDIT_TAIL_CHARS characters.

    O(EDIT_TAIL_CHARS) whatever the text's length. Exact whenever the texts agree before that
    tail window, which holds for every edit the demo makes (insert, Backspace, delete-word and
    accept all act at the end of the text; a word is at most 40 characters). When the texts
    already differ at the window's first character the whole texts are compared instead.
    """
    shorter = min(len(old), len(new))
    start = max(0, shorter - EDIT_TAIL_CHARS)
    if start and old[start] != new[start]:
        start = 0
    old_tail, new_tail = old[start:shorter], new[start:shorter]
    if old_tail == new_tail:
        return shorter
    return start + len(os.path.commonprefix([old_tail, new_tail]))


def _warn(message: str) -> None:
    print(f"edgetype: warning: {message}", file=sys.stderr, flush=True)


class Journal:
    """An open journal whose text starts as `base_text` (written atomically: the compaction).

    `lock`: a `JournalLock` already held for `path` (taken before reading the old journal); without
    one the journal takes its own. Either way `close()` releases it.
    """

    def __init__(self, path: str, base_text: str = "", lock: JournalLock | None = None,
                 warn: Callable[[str], None] = _warn) -> None:
        self.path = path
        self.bytes_written = 0  # edit bytes appended since the last compaction
        self.compactions = 0
        self.failed: str | None = None  # why writing stopped (full disk, read-only), None when fine
        self._warn = warn
        self._fd: int | None = None
        self._unsynced = False
        self._text_bytes = len(base_text.encode("utf-8"))
        self._lock = lock if lock is not None else JournalLock(path)
        if self._lock.unwritable is not None:
            self.failed = self._lock.unwritable
            self._warn(f"journal {path}: cannot write ({self.failed}); typing continues but this session "
                       "is not journaled; the journal on disk is kept as it is. Free space or pass "
                       "--journal PATH on a writable file system next time")
            return
        try:
            check_journal_file(path)
            self._directory = os.path.dirname(os.path.abspath(path))
            self._remove_stale_temporaries()
            if not self._compact(base_text):
                return  # a clear message was printed; typing continues, retried at word boundaries
        except BaseException:
            self._lock.release()
            raise

    # -- writing --------------------------------------------------------------------------------
    def _remove_stale_temporaries(self) -> None:
        """Temporaries left by a crash between write and rename (ours: name and header)."""
        prefix = os.path.basename(self.path) + ".tmp"
        try:
            names = os.listdir(self._directory)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                candidate = os.path.join(self._directory, name)
                try:
                    if check_journal_file(candidate):
                        os.unlink(candidate)
                except (JournalError, OSError):
                    pass  # not ours after all: leave it

    def _compact(self, text: str) -> bool:
        """Write the whole text to a temporary journal, fsync, rename over the journal; reopen.

        False (with a warning) when the file system refuses; the journal on disk is then unchanged.
        """
        temporary = f"{self.path}.tmp{os.getpid()}"
        data = _HEADER_BYTES + ((json.dumps({"keep": 0, "add": text}) + "\n").encode("utf-8") if text else b"")
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            try:
                os.unlink(temporary)  # our own pid's leftover
            except FileNotFoundError:
                pass
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            _fsync_directory(self._directory)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        except OSError as error:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            self._fail(error)
            return False
        self.bytes_written = 0
        self._text_bytes = len(data)
        self.compactions += 1
        self._unsynced = False
        if self.failed is not None:
            self._warn(f"journal {self.path}: writable again; the whole text is on disk")
            self.failed = None
        return True

    def _fail(self, error: OSError) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self.failed is None:
            self._warn(f"journal {self.path}: cannot write ({error.strerror or error}); typing continues, "
                       "the journal keeps what it had and is retried at every word. Free space or pass "
                       "--journal PATH on a writable file system next time")
        self.failed = error.strerror or str(error)

    def record(self, old_text: str, new_text: str, word_boundary: bool) -> None:
        """Append the edit old_text -> new_text; fsync when a word was finished (see record_edit)."""
        if old_text != new_text:
            keep = _common_prefix_at_end(old_text, new_text)
            self.record_edit(keep, new_text[keep:], word_boundary, lambda: new_text)
        elif word_boundary:
            self.word_boundary(lambda: new_text)

    def record_edit(self, keep: int, add: str, word_boundary: bool, text: Callable[[], str]) -> None:
        """Append one edit: the first `keep` characters stay, `add` follows them (the demo's per-key
        call: the session knows its edit, nothing compares texts). `text()` returns the whole new
        text; it is called only to compact or to retry after a failure, at a word boundary.

        Cost bounded by the edit (not the text), except a compaction every COMPACT_FACTOR x the
        text's bytes of log (amortised O(1) per key).
        """
        if not self._lock.held:
            return  # closed
        if self._fd is not None:
            line = (json.dumps({"keep": keep, "add": add}) + "\n").encode("utf-8")
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as error:
                self._fail(error)  # a torn line on disk is dropped by the reader / the next compaction
                return
            self.bytes_written += len(line)
            self._unsynced = True
        if word_boundary:
            self.word_boundary(text)

    def word_boundary(self, text: Callable[[], str]) -> None:
        """A word was finished: fsync, or compact when the log outgrew the text, or retry after a failure."""
        if not self._lock.held:
            return
        if self._fd is None:  # writing failed earlier: retry with the whole text
            self._compact(text())
        elif self.bytes_written > max(COMPACT_MIN_BYTES, COMPACT_FACTOR * self._text_bytes):
            self._compact(text())
        else:
            self.sync()

    def sync(self) -> None:
        if self._fd is not None and self._unsynced:
            try:
                os.fsync(self._fd)
            except OSError as error:
                self._fail(error)
                return
            self._unsynced = False

    def close(self) -> None:
        """fsync, close and release the lock; idempotent."""
        try:
            if self._fd is not None:
                try:
                    self.sync()
                finally:
                    if self._fd is not None:
                        os.close(self._fd)
                        self._fd = None
        finally:
            self._lock.release()


def set_aside(path: str) -> str | None:
    """Keep a journal not restored as `<path>.prev` (then `.prev.1`, `.prev.2`, ...), never
    overwriting an earlier one; returns that path (None when there was no journal)."""
    if not check_journal_file(path):
        return None
    for number in range(0, 10000):
        previous = path + ".prev" + (f".{number}" if number else "")
        try:
            os.link(path, previous)  # fails when `previous` exists: nothing is overwritten
        except FileExistsError:
            continue
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise JournalError(f"journal {path}: cannot keep it as {previous} ({error.strerror}); "
                                   "pass --no-journal") from None
            if os.path.lexists(previous):  # no hard links here (vfat): check, then rename
                continue
            try:
                os.rename(path, previous)
            except OSError as rename_error:
                raise JournalError(f"journal {path}: cannot keep it as {previous} "
                                   f"({rename_error.strerror}); pass --no-journal") from None
            return previous
        try:
            os.unlink(path)
        except OSError as error:
            raise JournalError(f"journal {path}: kept as {previous} but cannot remove it "
                               f"({error.strerror}); pass --no-journal") from None
        return previous
    raise JournalError(f"journal {path}: 10000 earlier journals kept beside it; move some away")
