"""The typing journal: what was typed survives a crash, a power cut or a pulled plug.

Format (design choice: an append-only edit log, compacted on start). The file is UTF-8 JSON
Lines; the first line is a header, every other line one edit of the text:

    {"edgetype_journal": 1}
    {"keep": 0, "add": "Hello wor"}
    {"keep": 8, "add": ""}            <- Backspace: keep the first 8 characters, add nothing
    {"keep": 6, "add": "world "}      <- accepting a suggestion replaced the partial word

`keep` is how many characters of the text so far stay (a common prefix), `add` what follows them,
so Backspace, delete-word and accepting a suggestion that re-cases the typed prefix are all one
kind of line, whatever the engine did. The text is the fold of all lines.

Durability: each edit is one `os.write` on an `O_APPEND` descriptor (no user-space buffer), so a
killed process loses nothing; `fsync` runs at word boundaries and on close, so a power cut loses
at most the current word. A crash can leave a truncated last line: reading ignores it (that is
the word being typed). On start the log is compacted: the restored text is written to a temporary
file, fsynced and renamed over the journal (atomic), so the file never grows without bound and is
never half-rewritten. Declining a restore keeps the old journal as `<path>.prev`.
"""
from __future__ import annotations

import json
import os

from runtime.errors import UserError

JOURNAL_FORMAT_VERSION = 1
_HEADER = json.dumps({"edgetype_journal": JOURNAL_FORMAT_VERSION}) + "\n"


class JournalError(UserError):
    """A journal file that cannot be read or written."""


def default_journal_path(name: str = "journal.txt") -> str:
    """`$XDG_STATE_HOME/edgetype/<name>`, XDG_STATE_HOME defaulting to `~/.local/state`."""
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state_home, "edgetype", name)


def read_journal_text(path: str) -> str:
    """The text a journal holds ("" when there is none). A truncated last line is ignored."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return ""
    except OSError as error:
        raise JournalError(f"journal {path}: cannot read ({error.strerror}); pass --journal PATH or --no-journal") from error
    # a complete file ends with "\n", so the last piece is b""; anything else there is a torn
    # write (the word being typed when the power went): dropped by design
    complete = raw.split(b"\n")[:-1]
    text = ""
    for line_number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
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
                    f"journal {path}: format {record['edgetype_journal']!r} is not {JOURNAL_FORMAT_VERSION}; "
                    "move the file away"
                )
            continue
        keep, add = record.get("keep"), record.get("add")
        if not isinstance(keep, int) or not isinstance(add, str) or not 0 <= keep <= len(text):
            raise JournalError(f"journal {path}:{line_number}: bad edit {record!r}; move the file away")
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


class Journal:
    """An open journal whose text starts as `base_text` (written atomically: the compaction)."""

    def __init__(self, path: str, base_text: str = "") -> None:
        self.path = path
        self.bytes_written = 0
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            temporary = f"{path}.tmp{os.getpid()}"
            with open(temporary, "w", encoding="utf-8") as file:
                file.write(_HEADER)
                if base_text:
                    file.write(json.dumps({"keep": 0, "add": base_text}) + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
            _fsync_directory(directory)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            raise JournalError(
                f"journal {path}: cannot write ({error.strerror}); pass --journal PATH or --no-journal"
            ) from error
        self._unsynced = False

    def record(self, old_text: str, new_text: str, word_boundary: bool) -> None:
        """Append the edit old_text -> new_text; fsync when a word was finished."""
        if self._fd is None:
            return
        if old_text != new_text:
            keep = len(os.path.commonprefix([old_text, new_text]))
            line = (json.dumps({"keep": keep, "add": new_text[keep:]}) + "\n").encode("utf-8")
            os.write(self._fd, line)
            self.bytes_written += len(line)
            self._unsynced = True
        if word_boundary:
            self.sync()

    def sync(self) -> None:
        if self._fd is not None and self._unsynced:
            os.fsync(self._fd)
            self._unsynced = False

    def close(self) -> None:
        """fsync and close; idempotent."""
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None


def set_aside(path: str) -> str | None:
    """Keep a journal the user chose not to restore as `<path>.prev`; returns that path."""
    if not os.path.exists(path):
        return None
    previous = path + ".prev"
    os.replace(path, previous)
    return previous
