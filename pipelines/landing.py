"""The landing folder is untrusted input: what is read from it, and what is not, and why.

Partners write into the landing folder over SFTP, so anything there may be hostile: a link to
the pseudonym key or to `/proc/self/environ`, a sub-folder, a file named to look like another's.
Plumbline reads only regular files that really live in an agency's folder, with no link anywhere
in the path: the folder is walked without following links, and each file is opened component by
component with `O_NOFOLLOW` and checked again (a regular file) after opening. Everything else
(a link, a sub-folder, a wrong extension, a name that does not follow the agreement, an unknown
agency folder) is *not read*, and says so: a receipt to the agency whose folder it was, or a
line in the operator's log for a folder no agency owns. `.part` files are uploads in progress
and are left alone, as the agreement says.

Names are shown with anything but letters, digits, dot, dash and underscore replaced, and never
a byte of the file's content.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.feeds import FEEDS, ORGANISATION_CODE, Feed

UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class NotARegularFile(Exception):
    """The path is (or became) a link, a folder or a device: it is not read."""


def safe_name(name: str, limit: int = 80) -> str:
    """A partner's file name as it may be shown in a receipt or a log line."""
    shown = UNSAFE.sub("_", name)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


@dataclass(frozen=True)
class Entry:
    relative: str  # below the landing root, '/'-separated
    kind: str  # file | link | other
    size: int
    mtime_ns: int


def walk(landing: Path) -> Iterator[Entry]:
    """Every entry below the landing root, never following a link (a linked folder is reported
    as a link, not entered)."""
    stack = [("", landing)]
    while stack:
        prefix, folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            relative = f"{prefix}{e.name}"
            st = e.stat(follow_symlinks=False)
            if e.is_symlink():
                yield Entry(relative, "link", st.st_size, st.st_mtime_ns)
            elif e.is_dir(follow_symlinks=False):
                stack.append((relative + "/", Path(e.path)))
            elif e.is_file(follow_symlinks=False):
                yield Entry(relative, "file", st.st_size, st.st_mtime_ns)
            else:
                yield Entry(relative, "other", st.st_size, st.st_mtime_ns)


def feed_of(relative: str) -> Feed | None:
    """The feed a regular file's path belongs to, or None."""
    top, _, below = relative.partition("/")
    for feed in FEEDS:
        if feed.folder == top and feed.match(below):
            return feed
    return None


def deliverable_files(landing: Path, feed: Feed) -> list[Path]:
    """The feed's complete regular files in landing (no link in the path; `.part` never)."""
    folder = landing / feed.folder
    if not landing.is_dir() or folder.is_symlink() or not folder.is_dir():
        return []  # a linked agency folder is reported by not_read, never entered
    return [folder / e.relative for e in walk(folder)
            if e.kind == "file" and feed.match(e.relative)]


@dataclass(frozen=True)
class NotRead:
    entry: Entry
    reason: str
    organisation: str | None  # whose folder it was; None: the operator's log only

    @property
    def shown(self) -> str:
        return "/".join(safe_name(p) for p in self.entry.relative.split("/"))


def not_read(landing: Path) -> list[NotRead]:
    """Everything in landing that no feed reads, with the reason in plain words."""
    folders = {f.folder for f in FEEDS}
    out: list[NotRead] = []
    if not landing.is_dir():
        return out
    for e in walk(landing):
        parts = e.relative.split("/")
        if e.kind == "file" and (e.relative.endswith(".part") or feed_of(e.relative)):
            continue
        top = parts[0]
        owner = _owner(parts) if top in folders and len(parts) > 1 else None
        if e.kind == "link":
            reason = "a link, not a file: links in the landing folder are never followed"
        elif e.kind == "other":
            reason = "not a regular file"
        elif len(parts) == 1:
            reason = "a file outside every agency's folder"
        elif top not in folders:
            reason = ("a folder no agency owns; the agreement's folders are "
                      + ", ".join(sorted(folders)))
        else:
            reason = _why_not(top, parts[1:])
        out.append(NotRead(e, reason, owner))
    return out


def _owner(parts: list[str]) -> str | None:
    """The organisation whose folder an entry is in: the agency, or for feedback and data-lab
    requests the organisation's own sub-folder when it is a plain code."""
    top = parts[0]
    feeds = [f for f in FEEDS if f.folder == top]
    if any(f.agency == "*" for f in feeds):
        if len(parts) > 2 and ORGANISATION_CODE.fullmatch(parts[1]):
            return parts[1]
        return None  # no organisation to answer: the operator's log
    return feeds[0].agency if feeds else None


def _why_not(top: str, below: list[str]) -> str:
    name = below[-1]
    feeds = [f for f in FEEDS if f.folder == top]
    nested = any(f.agency == "*" for f in feeds)
    if len(below) > (2 if nested else 1):
        return (f"in a sub-folder; deliveries go directly in {top}/"
                + ("<organisation>/" if nested else ""))
    if not name.endswith(".csv"):
        return "the name does not end in .csv (lower case), so it is not a delivery"
    return ("the name does not follow the agreement (" + "; ".join(
        f.pattern.pattern.replace("\\", "") for f in feeds) + "): rename it and send it again")


def read_delivery(landing: Path, relative: str) -> bytes:
    """A delivery's bytes, opened component by component without following any link, and
    checked to be a regular file after opening."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    parts = relative.split("/")
    fds = [os.open(landing, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for part in parts[:-1]:
            try:
                fds.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
            except OSError as exc:
                raise NotARegularFile("a folder in its path is a link or is gone") from exc
        try:
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fds[-1])
        except OSError as exc:
            if exc.errno == 2:
                raise FileNotFoundError(relative) from None
            raise NotARegularFile("it is a link, not a file") from exc
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile("it is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        for fd in reversed(fds):
            os.close(fd)
