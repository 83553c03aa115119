"""Reading deliveries into the vault: exactly once, nothing lost, a receipt for each.

A delivery is one file. It is known by its bytes (SHA-256), so the same bytes sent again under
another name change nothing and get a receipt that says so. A file that cannot be read as the
contract's CSV is rejected whole and kept in quarantine; a file that reads is accepted minus its
bad rows, each of which is quarantined with its line, field and reason.

For every delivery: rows_read = rows_accepted + rows_rejected.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from expectations.suites import derive
from pipelines.feeds import FEEDS, Feed, typed_columns, vault_columns
from pipelines.landing import NotARegularFile, NotRead, deliverable_files, not_read, read_delivery
from pipelines.stores import Settings, connect, has_table
from pipelines.worker import WORKER

FIELD_LIMIT = 10 * 1024 * 1024
csv.field_size_limit(FIELD_LIMIT)


class UnreadableDelivery(Exception):
    """The file as a whole is not the contract's CSV."""


@dataclass
class Rejection:
    line: int
    field: str
    reason: str
    raw: str = ""


@dataclass
class Delivery:
    feed: Feed
    path: Path
    relative: str  # below the landing root, e.g. health/blood_lead_20260305.csv
    sha256: str
    size: int
    extract_date: date | None
    encoding: str = ""
    status: str = "ACCEPTED"  # ACCEPTED | REJECTED | DUPLICATE
    reason: str = ""
    rows_read: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    duplicate_of: str = ""
    answer: dict[str, Any] = field(default_factory=dict)  # a request's fate, on its receipt
    # WRONG_PERSON answers, with what the list showed: (alert_id, evidence_test_id, person_id)
    wrong_person: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def agency(self) -> str:
        return self.feed.agency_of(self.relative.split("/", 1)[1])

    @property
    def delivery_id(self) -> str:
        return self.sha256[:16]

    def judged_on(self) -> date:
        """The day its rows are judged as of (nothing after it is in the future): today, or
        its extract date when that is later."""
        return max(date.today(), self.extract_date or date.min)

    # a roster snapshot's rows sent exactly as in the previous snapshot: (line, row hash),
    # accepted as they were then, neither parsed nor validated again
    carried: list[tuple[int, str]] = field(default_factory=list)
    carried_from: str = ""  # the delivery_id they are carried from
    accepted: int | None = None  # rows accepted, when the rows themselves are not at hand
    mtime_ns: int | None = None  # the file's modification time when it was read
    unanswered: int = 0  # feedback template rows with only their alert id: left for later

    @property
    def rows_accepted(self) -> int:
        return (len(self.rows) + len(self.carried)) if self.accepted is None else self.accepted

    @property
    def rows_rejected(self) -> int:
        return len({r.line for r in self.rejections})


def decode(data: bytes) -> tuple[str, str]:
    """UTF-8 (with or without BOM), else Windows-1252: accents survive either way."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_utf16(data):
        raise UnreadableDelivery(
            "the file is UTF-16 text; the agreement asks for UTF-8 (or Windows-1252): save it "
            "as UTF-8 CSV and send it again")
    if b"\x00" in data:
        raise UnreadableDelivery("the file is binary, not a CSV text file")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        raise UnreadableDelivery("the file is neither UTF-8 nor Windows-1252 text") from None


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 without a byte-order mark: every other byte of plain text is a NUL."""
    head = data[:4096]
    if len(head) < 8:
        return False
    even, odd = head[0::2], head[1::2]
    return odd.count(0) > 0.9 * len(odd) or even.count(0) > 0.9 * len(even)


def row_hash(values: list[str], order: list[int]) -> str:
    """A snapshot row's fingerprint: its cells exactly as sent (trimmed), in the contract's
    column order (a partner may send the columns in any order)."""
    return hashlib.blake2b("\x1f".join(values[i].strip() for i in order).encode(),
                           digest_size=16).hexdigest()


@dataclass
class ReadRows:
    """A delivery's rows as read, before the suite judges them: each well-formed row with its
    line, the contract's column order in the file, and the cells the suite judges (stripped, a
    blank as None)."""
    well_formed: list[tuple[int, list[str]]]
    order: list[int]
    text: pd.DataFrame


def parse_delivery(delivery: Delivery, data: bytes, today: date,
                   known: set[str] | None = None, ahead: JudgedAhead | None = None) -> None:
    """Fill `delivery` with typed rows and rejections, or raise UnreadableDelivery.

    `known`: the row hashes of the feed's previous accepted snapshot from the same sender.
    A row sent exactly as then is carried (accepted as it was), not parsed and judged again.
    `ahead`: the suite's verdicts on this run's small deliveries of the feed, asked for
    together (used when it holds this delivery's, judged on the same day)."""
    read = read_rows(delivery, data, known)
    # the feed's Great Expectations suite judges every row, in the worker process, while this
    # one converts the same cells: the values it read are kept
    verdicts = ahead.verdicts(delivery.sha256, today, len(read.text)) if ahead else None
    if verdicts is None:
        verdicts = WORKER.submit("expectations.suites:judge", delivery.feed, read.text, today)
    try:
        converted = derive(delivery.feed, read.text)[1]
    finally:
        failures = verdicts.result()
    _keep_rows(delivery, read, converted, failures)


def read_rows(delivery: Delivery, data: bytes, known: set[str] | None = None) -> ReadRows:
    """The rows of a delivery's bytes, before they are judged; counts them on `delivery`
    (blank lines and rows with the wrong number of fields rejected there), or raises
    UnreadableDelivery."""
    feed = delivery.feed
    if not data.strip():
        raise UnreadableDelivery("the file is empty")
    text, delivery.encoding = decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise UnreadableDelivery("the header row cannot be read as CSV") from None
    header = [h.strip() for h in header]
    missing = [c for c in feed.columns if c not in header]
    unknown = [h for h in header if h not in feed.columns]
    if missing or unknown:
        # the contract's own column names may be named; what the partner wrote never is (a
        # file with no header row would put a child's name here)
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(missing))
        if unknown:
            positions = [str(i + 1) for i, h in enumerate(header) if h not in feed.columns]
            parts.append(f"{len(unknown)} column(s) that are not contract columns, at "
                         f"position(s) {', '.join(positions[:20])}"
                         + (" and more" if len(positions) > 20 else ""))
        raise UnreadableDelivery(
            f"the header does not match the contract's {feed.name} columns: " + "; ".join(parts))
    if len(set(header)) != len(header):
        raise UnreadableDelivery("the header names a column twice")
    index = {c: header.index(c) for c in feed.columns}
    ends_with_newline = text.endswith(("\n", "\r"))
    prev_end = reader.line_num
    records: list[tuple[int, list[str]]] = []
    try:
        for values in reader:
            records.append((prev_end + 1, values))
            prev_end = reader.line_num
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise UnreadableDelivery(
                f"a field on line {prev_end + 1} is longer than the {FIELD_LIMIT // (1 << 20)} MB "
                "a field may hold; check that quotes are closed, then send it again") from None
        raise UnreadableDelivery(
            f"line {prev_end + 1} cannot be read as CSV (an unclosed quote or a stray "
            "character); the upload may be cut short") from None
    if records and not ends_with_newline and len(records[-1][1]) < len(header):
        raise UnreadableDelivery(
            f"the last line ({records[-1][0]}) has {len(records[-1][1])} of {len(header)} "
            "fields and no line ending: the upload looks cut short")
    well_formed: list[tuple[int, list[str]]] = []
    key_columns = [index[c] for c in feed.key[:1]]
    for line, values in records:
        if not any(v.strip() for v in values):
            continue  # a blank line is not a row
        if feed.answers_lists and len(values) == len(header) and all(
                not v.strip() for i, v in enumerate(values) if i not in key_columns):
            delivery.unanswered += 1  # a template row left blank: no answer, not an error
            continue
        delivery.rows_read += 1
        if len(values) != len(header):
            delivery.rejections.append(Rejection(
                line, "(row)", f"has {len(values)} fields where the header has {len(header)}",
                _raw(values)))
            continue
        well_formed.append((line, values))
    order = [index[c] for c in feed.columns]
    if known:
        # a value the contract says is unique, sent twice, is judged on every row it is on
        shared: set[tuple[int, str]] = set()
        for f in (f for f in feed.fields if f.unique):
            seen = Counter(v[index[f.column]].strip() for _, v in well_formed)
            shared |= {(index[f.column], t) for t, n in seen.items() if n > 1 and t}
        fresh = []
        for line, values in well_formed:
            h = row_hash(values, order)
            if h in known and not any(values[i].strip() == t for i, t in shared):
                delivery.carried.append((line, h))
            else:
                fresh.append((line, values))
        well_formed = fresh
    # each cell stripped, a blank as None: the text the suite judges
    text = pd.DataFrame({c: [v[index[c]].strip() or None for _, v in well_formed]
                         for c in feed.columns}, dtype="object")
    return ReadRows(well_formed, order, text)


def _keep_rows(delivery: Delivery, read: ReadRows, converted: dict[str, pd.Series],
               failures: dict[int, list[tuple[str, str]]]) -> None:
    """The typed rows the suite passed, and a rejection per field it failed."""
    feed, well_formed, order, text = delivery.feed, read.well_formed, read.order, read.text
    typed = typed_columns(feed, {c: v.tolist() for c, v in converted.items()},
                          {c: text[c].tolist() for c in feed.columns})
    names = list(typed)
    for i, (line, values) in enumerate(well_formed):
        if i in failures:
            delivery.rejections.extend(
                Rejection(line, f, reason, _raw(values)) for f, reason in failures[i])
            continue
        row: dict[str, Any] = {n: typed[n][i] for n in names}
        row["_line"], row["_raw"] = line, _raw(values)
        if feed.semantics == "snapshot":
            row["_row_hash"] = row_hash(values, order)
        delivery.rows.append(row)
    if feed.org_field is not None:
        _reject_rows_of_another_organisation(delivery)
    for f in (f for f in feed.fields if f.one_per_file):
        distinct = {r[f.column] for r in delivery.rows}
        if len(distinct) > 1:
            raise UnreadableDelivery(
                f"the file names {len(distinct)} {f.column}s; a file is about one {f.column}: "
                f"send one file per {f.column}")


def _reject_rows_of_another_organisation(delivery: Delivery) -> None:
    """A provider's file holds that provider's records only: a row naming another provider
    code would put its client on the other provider's list."""
    field_name = delivery.feed.org_field
    sender = delivery.agency
    kept = []
    for row in delivery.rows:
        if row.get(field_name) == sender:
            kept.append(row)
        else:
            delivery.rejections.append(Rejection(
                row["_line"], field_name,
                f"{field_name} is not the organisation this file is from (its file name "
                "says which); send each organisation's records in its own file",
                row["_raw"]))
    delivery.rows = kept


def _raw(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


# ---------------------------------------------------------------- the vault

# Rejected rows keep their raw text: in the vault, or in a request's own store.
REJECTED_ROWS_DDL = """
create schema if not exists ingest;
create schema if not exists raw;
create table if not exists ingest.rejected_rows (
    delivery_id varchar, file_name varchar, line integer, field varchar, reason varchar,
    raw_text varchar
);
"""

LEDGER_DDL = REJECTED_ROWS_DDL + """
create table if not exists ingest.deliveries (
    delivery_id varchar, agency varchar, feed varchar, path varchar, file_name varchar,
    sha256 varchar,
    size_bytes bigint, extract_date date, received_at timestamp, encoding varchar,
    status varchar, reason varchar, duplicate_of varchar,
    rows_read integer, rows_accepted integer, rows_rejected integer
);
-- a receipt owed: the ledger row is committed first, the receipt written after, then marked;
-- a run that died in between leaves the mark unset, and the next run writes the receipt
alter table ingest.deliveries add column if not exists receipt_written_at timestamp;
-- a roster snapshot's rows sent exactly as in the previous one (accepted without parsing)
alter table ingest.deliveries add column if not exists rows_unchanged integer;
-- the file's modification time when read: a file still at its path with its size and time is
-- not read (nor hashed) again
alter table ingest.deliveries add column if not exists file_mtime_ns bigint;
create schema if not exists feedback;
create table if not exists feedback.wrong_person (
    alert_id varchar, organisation varchar, evidence_test_id varchar, person_id varchar,
    delivery_id varchar, received_at timestamp
);
create schema if not exists datalab;
create table if not exists datalab.requests (
    request_id varchar, provider varchar, program varchar, file_name varchar, path varchar,
    sha256 varchar, received_at timestamp, status varchar, reason varchar,
    rows_read integer, rows_accepted integer, rows_rejected integer,
    linked integer, ambiguous integer, unlinked integer, duplicates integer,
    eligible integer, matched integer, comparison_pool integer, comparison integer,
    balance_ok boolean, figures_given boolean,
    report_id varchar, report_path varchar, reported_at timestamp, erased_at timestamp
);
"""


def ensure_vault(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)
    con.execute(NOT_READ_DDL)
    for feed in FEEDS:
        if feed.store == "vault":
            con.execute(raw_table_ddl(feed))


def raw_table_ddl(feed: Feed) -> str:
    cols = ", ".join(f'"{c.lower()}" {t}' for c, t in vault_columns(feed))
    ddl = (f"create table if not exists raw.{feed.name} (_delivery_id varchar, _line integer, "
           f"_extract_date date, {cols});")
    if feed.semantics == "snapshot":  # each row's fingerprint, to carry it to the next snapshot
        ddl += f"\nalter table raw.{feed.name} add column if not exists _row_hash varchar;"
    return ddl


def previous_snapshot(con: duckdb.DuckDBPyConnection, d: Delivery) -> tuple[str, set[str]]:
    """The sender's latest accepted snapshot of this feed, and its rows' fingerprints."""
    if d.feed.semantics != "snapshot" or d.feed.store != "vault":
        return "", set()
    rows = con.execute(
        "select delivery_id from ingest.deliveries where feed = ? and agency = ? and "
        "status = 'ACCEPTED' order by extract_date desc, received_at desc limit 1",
        [d.feed.name, d.agency]).fetchall()
    if not rows:
        return "", set()
    hashes = {h for (h,) in con.execute(
        f"select distinct _row_hash from raw.{d.feed.name} where _delivery_id = ? "
        "and _row_hash is not null", [rows[0][0]]).fetchall()}
    return rows[0][0], hashes


def pending_files(landing: Path, feed: Feed) -> list[Path]:
    """The feed's complete regular files in landing, oldest extract first (`.part` is never
    read, nor anything behind a link: pipelines/landing.py)."""
    files = deliverable_files(landing, feed)
    folder = landing / feed.folder
    return sorted(files, key=lambda p: (extract_date_of(feed, p.relative_to(folder).as_posix())
                                        or date.min, p.name))


def file_sha256(path: Path) -> str:
    """A file's SHA-256, read in chunks without following a link: how every delivery is known."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise NotARegularFile("not a regular file")
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract_date_of(feed: Feed, relative_path: str) -> date | None:
    m = feed.match(relative_path)
    if not m:
        return None
    try:
        return datetime.strptime(m.groups()[-1], "%Y%m%d").date()
    except ValueError:
        return None


# a delivery up to this size is judged with the feed's other small ones of the run, in one
# validation: GX costs some 0.09 s a validation whatever its rows (a week's three provider
# files, some 30 KB each at 1M people). Such a file's rows are read twice (to be judged, then
# to be kept), a few milliseconds; a larger one is judged alone.
AHEAD_MAX_BYTES = 1 << 20


class JudgedAhead:
    """The suite's verdicts on a run's small new deliveries of one feed, asked for in one
    validation instead of one each.

    Only for feeds whose every expectation judges a row alone (no value unique across a
    file), whose deliveries do not depend on one another (not roster snapshots, not answers
    to lists) and that go to the vault. Each delivery is still read, recorded and answered on
    its own, in order, exactly as before; only the verdicts were asked for together, and they
    are used for a delivery only when it is the same bytes (its SHA-256) judged on the same
    day with as many rows. A delivery not here is judged alone when it is parsed."""

    def __init__(self) -> None:
        self._shares: dict[tuple[str, date], tuple[dict, int]] = {}

    @staticmethod
    def applies_to(feed: Feed) -> bool:
        return (feed.store == "vault" and feed.semantics != "snapshot"
                and not feed.answers_lists and not any(f.unique for f in feed.fields))

    @classmethod
    def ask(cls, settings: Settings, feed: Feed, files: list[Path],
            read_before: set[tuple[str, int, int]], con: duckdb.DuckDBPyConnection
            ) -> JudgedAhead:
        ahead = cls()
        groups: dict[date, list[tuple[str, pd.DataFrame]]] = {}
        shas: set[str] = set()
        for path in files:
            relative = path.relative_to(settings.landing).as_posix()
            try:
                seen_stat = path.lstat()
                if (relative, seen_stat.st_size, seen_stat.st_mtime_ns) in read_before or \
                        seen_stat.st_size > AHEAD_MAX_BYTES:
                    continue
                data = read_delivery(settings.landing, relative)
            except (FileNotFoundError, NotARegularFile):
                continue  # the run's own pass says what became of it
            sha = hashlib.sha256(data).hexdigest()
            if sha in shas or con.execute("select 1 from ingest.deliveries where sha256 = ? "
                                          "limit 1", [sha]).fetchall():
                continue  # a duplicate: never parsed
            shas.add(sha)
            d = Delivery(feed, path, relative, sha, len(data),
                         extract_date_of(feed, relative.split("/", 1)[1]))
            try:
                read = read_rows(d, data)
            except UnreadableDelivery:
                continue
            if len(read.text):
                groups.setdefault(d.judged_on(), []).append((sha, read.text))
        for today, members in groups.items():
            if len(members) < 2:
                continue  # one delivery: judged when it is parsed, as ever
            # answered before anything else is asked of the worker (one request at a time)
            found = WORKER.call("expectations.suites:judge_many", feed,
                                [text for _, text in members], today)
            for (sha, text), verdicts in zip(members, found, strict=True):
                ahead._shares[(sha, today)] = (verdicts, len(text))
        return ahead

    def verdicts(self, sha: str, today: date, rows: int) -> _Judged | None:
        found = self._shares.get((sha, today))
        if found is None or found[1] != rows:
            return None
        return _Judged(found[0])


@dataclass
class _Judged:
    """Verdicts at hand, answered as the worker's are (`result()`)."""
    failures: dict[int, list[tuple[str, str]]]

    def result(self) -> dict[int, list[tuple[str, str]]]:
        return self.failures


def ingest_feed(settings: Settings, feed: Feed, only: list[str] | None = None) -> list[Delivery]:
    """Read every new file of one feed into the vault, and write a receipt for each.

    `only` limits the run to some files (paths relative to the landing root), as the landing
    sensor asks: one run per delivery.
    """
    done: list[Delivery] = []
    files = pending_files(settings.landing, feed)
    if only is not None:
        wanted = set(only)
        files = [p for p in files if p.relative_to(settings.landing).as_posix() in wanted]
    with connect(settings.vault_path) as con:
        ensure_vault(con)
        if feed.store == "vault":
            con.execute(raw_table_ddl(feed))  # a feed declared after the vault was made
        owed_receipts(con, settings, feed)
        # the files read before, still at their path with their size and modification time
        # (rsync's quick check): a weekly run does not read and hash every past delivery again
        read_before = set() if feed.store == "request" else set(con.execute(
            "select path, size_bytes, file_mtime_ns from ingest.deliveries where feed = ? "
            "and file_mtime_ns is not null", [feed.name]).fetchall())
        ahead = (JudgedAhead.ask(settings, feed, files, read_before, con)
                 if JudgedAhead.applies_to(feed) and len(files) > 1 else None)
        for path in files:
            relative = path.relative_to(settings.landing).as_posix()
            try:
                seen_stat = path.lstat()
            except FileNotFoundError:
                continue
            if (relative, seen_stat.st_size, seen_stat.st_mtime_ns) in read_before:
                continue
            try:
                data = read_delivery(settings.landing, relative)
            except FileNotFoundError:
                continue  # a data-lab request another run answered and erased meanwhile
            except NotARegularFile:
                continue  # swapped for a link after the listing: report_not_read says so
            sha = hashlib.sha256(data).hexdigest()
            seen = con.execute(
                "select path from ingest.deliveries where sha256 = ? order by received_at",
                [sha]).fetchall()
            below = relative.split("/", 1)[1]
            d = Delivery(feed, path, relative, sha, len(data), extract_date_of(feed, below),
                         mtime_ns=seen_stat.st_mtime_ns)
            if feed.dated_by_arrival:
                # dated by when it arrived, never by a date in its name (a name dated 2099 must
                # not let feedback "recorded" in 2099 in); a run as of a past date is that day
                d.extract_date = min(settings.as_of, date.today())
            if feed.store == "request":
                answered = answered_request(con, sha)
                if answered:  # answered and erased before: say so, do not analyse again
                    answer_from_audit(settings, d, answered)
                    _record(con, d, settings)
                    deliver_receipt(con, settings, d)
                    done.append(d)
                    continue
            if any(p == relative for (p,) in seen):
                # this very file was read before: nothing to do; its time is noted for the
                # quick check above when the ledger row predates it
                con.execute("update ingest.deliveries set file_mtime_ns = ? where path = ? and "
                            "sha256 = ? and file_mtime_ns is null",
                            [seen_stat.st_mtime_ns, relative, sha])
                continue
            if seen:
                d.status, d.duplicate_of = "DUPLICATE", seen[0][0].rsplit("/", 1)[-1]
                d.reason = (f"the same bytes were delivered before as {d.duplicate_of}; "
                            "nothing changed")
            else:
                today = d.judged_on()
                d.carried_from, known = previous_snapshot(con, d)
                try:
                    parse_delivery(d, data, today, known, ahead)
                except UnreadableDelivery as exc:
                    d.status, d.reason, d.rows, d.carried = "REJECTED", str(exc), [], []
                    _quarantine_file(settings, d, data)
            if feed.answers_lists and d.status == "ACCEPTED":
                check_feedback_alerts(con, d)
            if feed.store == "request":
                describe_request(d)
            _record(con, d, settings)
            deliver_receipt(con, settings, d)
            if feed.store == "request" and d.status != "ACCEPTED":
                # a rejected request is kept in quarantine, a duplicate copy is the pending
                # request's bytes: either way the landing copy's names go no further
                path.unlink(missing_ok=True)
            done.append(d)
    return done


# ---------------------------------------------------------------- what is not read

NOT_READ_DDL = """
create table if not exists ingest.not_read (
    path varchar, size_bytes bigint, mtime_ns bigint, organisation varchar, reason varchar,
    noticed_at timestamp
);
"""


def report_not_read(settings: Settings) -> list[NotRead]:
    """Say what in landing is not read, once per entry (path, size, modification time): a
    receipt to the organisation whose folder it is in, and always a line in the operator's log
    (DATA_DIR/logs/landing.log). Names are shown made safe; nothing is opened."""
    found = not_read(settings.landing)
    now = datetime.now(UTC).replace(tzinfo=None)
    with connect(settings.vault_path) as con:
        ensure_vault(con)
        known = set(con.execute(
            "select path, size_bytes, mtime_ns from ingest.not_read").fetchall())
        new = [n for n in found
               if (n.entry.relative, n.entry.size, n.entry.mtime_ns) not in known]
        if not new:
            return []
        log_path = settings.data_dir / "logs" / "landing.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:
            for n in new:
                owner = n.organisation or "operator"
                log.write(f"{now:%Y-%m-%dT%H:%M:%S} NOT READ {n.shown} ({owner}): {n.reason}\n")
                if n.organisation:
                    write_not_read_receipt(settings, n, now)
        con.executemany("insert into ingest.not_read values (?, ?, ?, ?, ?, ?)",
                        [[n.entry.relative, n.entry.size, n.entry.mtime_ns, n.organisation,
                          n.reason, now] for n in new])
    return new


def write_not_read_receipt(settings: Settings, n: NotRead, now: datetime) -> Path:
    folder = settings.outbox / str(n.organisation) / "receipts"
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{n.entry.relative}|{n.entry.mtime_ns}".encode()).hexdigest()[:8]
    name = n.shown.rsplit("/", 1)[-1]
    target = folder / f"{name}.{key}.not-read.json"
    payload = {"receipt_for": n.shown, "agency": n.organisation, "status": "NOT_READ",
               "reason": n.reason, "rows_read": 0, "rows_accepted": 0, "rows_rejected": 0,
               "rejected_rows": [], "noticed_at": now.isoformat(timespec="seconds")}
    target.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    target.with_suffix(".txt").write_text(
        f"Not read: {n.shown} ({n.organisation})\nWhy: {n.reason}\n"
        "Nothing in it was read or kept. To deliver it, put the file itself (not a link) "
        "directly in your folder, named as the agreement says.\n"
        f"Noticed: {payload['noticed_at']} UTC\n", encoding="utf-8")
    return target


# ---------------------------------------------------------------- requests (the data lab)


def answered_request(con: duckdb.DuckDBPyConnection, sha: str) -> dict[str, Any] | None:
    row = con.execute(
        "select request_id, report_id, report_path, reported_at, erased_at, file_name "
        "from datalab.requests where sha256 = ? and erased_at is not null "
        "order by erased_at limit 1", [sha]).fetchone()
    if row is None:
        return None
    keys = ("request_id", "report_id", "report_path", "reported_at", "erased_at", "file_name")
    return dict(zip(keys, row, strict=True))


def answer_from_audit(settings: Settings, d: Delivery, answered: dict[str, Any]) -> None:
    """The same bytes as a request already answered: point to its report, erase this copy."""
    d.path.unlink(missing_ok=True)
    erased = datetime.now(UTC).replace(tzinfo=None)
    d.status, d.duplicate_of = "DUPLICATE", answered["file_name"]
    d.reason = (f"the same bytes were answered before as {answered['file_name']} (report "
                f"{answered['report_id']}, {answered['reported_at']:%Y-%m-%d}); they were not "
                "analysed again, and this copy was erased on arrival")
    d.answer = {"request_id": answered["request_id"], "report_id": answered["report_id"],
                "report": answered["report_path"],
                "answered_from_audit": True,
                "erased_at": erased.isoformat(timespec="seconds"),
                "first_erased_at": answered["erased_at"].isoformat(timespec="seconds")}


def describe_request(d: Delivery) -> None:
    """What happens next to an accepted request, for its receipt."""
    if d.status == "ACCEPTED":
        d.answer = {"request_id": d.delivery_id, "report_id": None, "erased_at": None,
                    "next": "the data lab links these people, writes the report to "
                            "outbox/<provider>/datalab/, then erases this file and every row "
                            "made from it; this receipt is updated when that happened"}
    elif d.status == "REJECTED":
        d.answer = {"request_id": d.delivery_id, "erased_at": None,
                    "next": "not analysed; the file is held in quarantine and erased when a "
                            "corrected request from you has been answered"}


def check_feedback_alerts(con: duckdb.DuckDBPyConnection, d: Delivery) -> None:
    """A feedback row must answer an alert that was on a list sent to that same agency."""
    sent: dict[str, tuple[str, str]] = {}
    if has_table(con, "delivery", "list_items"):
        sent = {alert_id: (test_id, person_id) for alert_id, test_id, person_id in con.execute(
            "select alert_id, evidence_test_id, person_id from delivery.list_items "
            "where agency = ?", [d.agency]).fetchall()}
    kept = []
    for row in d.rows:
        if row["alert_id"] in sent:
            kept.append(row)
            if row["status"] == "WRONG_PERSON":
                d.wrong_person.append((row["alert_id"], *sent[row["alert_id"]]))
            continue
        # the same words whether or not another organisation has it: a rejection never tells
        # the sender that an id exists elsewhere
        d.rejections.append(Rejection(row["_line"], "alert_id",
                                      "alert_id is not an alert on any list sent to you",
                                      row["_raw"]))
    d.rows = kept


def _write_rows(con: duckdb.DuckDBPyConnection, d: Delivery) -> None:
    """A delivery's accepted rows into raw.<feed> and its rejected rows into
    ingest.rejected_rows, of the vault or of a request's own store."""
    if d.rows:
        cols = [c for c, _ in vault_columns(d.feed)]
        frame = pd.DataFrame.from_records(
            [[d.delivery_id, r["_line"], d.extract_date] + [r.get(c) for c in cols]
             for r in d.rows],
            columns=["_delivery_id", "_line", "_extract_date"] + [c.lower() for c in cols])
        if d.feed.semantics == "snapshot":
            frame["_row_hash"] = [r["_row_hash"] for r in d.rows]
        con.register("incoming", frame)
        names = ", ".join(f'"{c}"' for c in frame.columns)
        con.execute(f"insert into raw.{d.feed.name} ({names}) select {names} from incoming")
        con.unregister("incoming")
    if d.carried:
        # rows sent exactly as in the previous snapshot: copied as accepted then, under this
        # delivery and its own line numbers
        cols = ", ".join(f'"{c.lower()}"' for c, _ in vault_columns(d.feed))
        picked = ", ".join(f'p."{c.lower()}"' for c, _ in vault_columns(d.feed))
        con.register("carried", pd.DataFrame(d.carried, columns=["line", "hash"]))
        con.execute(
            f"insert into raw.{d.feed.name} (_delivery_id, _line, _extract_date, {cols}, "
            f"_row_hash) select ?, c.line, ?, {picked}, p._row_hash from carried as c join "
            f"(select * from raw.{d.feed.name} where _delivery_id = ? "
            "qualify row_number() over (partition by _row_hash order by _line) = 1) as p "
            "on p._row_hash = c.hash", [d.delivery_id, d.extract_date, d.carried_from])
        con.unregister("carried")
    if d.rejections:
        con.executemany(
            "insert into ingest.rejected_rows values (?, ?, ?, ?, ?, ?)",
            [[d.delivery_id, d.path.name, r.line, r.field, r.reason, r.raw]
             for r in d.rejections])


def _record_request_rows(settings: Settings, d: Delivery) -> None:
    """An accepted request's rows and rejected rows, in the request's own store only."""
    with connect(settings.request_store(d.delivery_id)) as store:
        store.execute(REJECTED_ROWS_DDL)
        store.execute(raw_table_ddl(d.feed))
        store.execute(f"delete from raw.{d.feed.name}")  # a re-read after a crash starts clean
        store.execute("delete from ingest.rejected_rows")
        _write_rows(store, d)


def _quarantine_file(settings: Settings, d: Delivery, data: bytes) -> None:
    target = settings.quarantine / d.agency / f"{d.delivery_id}_{d.path.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _record(con: duckdb.DuckDBPyConnection, d: Delivery, settings: Settings) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    if d.feed.store == "request" and d.status == "ACCEPTED":
        _record_request_rows(settings, d)
    con.execute("begin transaction")
    try:
        if d.feed.store == "request":
            if d.status == "ACCEPTED":
                con.execute(
                    "insert into datalab.requests (request_id, provider, program, file_name, "
                    "path, sha256, received_at, status, rows_read, rows_accepted, "
                    "rows_rejected) values (?, ?, ?, ?, ?, ?, ?, 'RECEIVED', ?, ?, ?)",
                    [d.delivery_id, d.agency, d.rows[0]["program"] if d.rows else None,
                     d.path.name, d.relative, d.sha256, now, d.rows_read, d.rows_accepted,
                     d.rows_rejected])
        else:
            _write_rows(con, d)
        if d.wrong_person:
            # the neutral record linkage reads: which records an organisation said are not one
            # child (linkage never reads delivery's tables)
            con.executemany(
                "insert into feedback.wrong_person values (?, ?, ?, ?, ?, ?)",
                [[a, d.agency, t, p, d.delivery_id, now] for a, t, p in d.wrong_person])
        con.execute(
            "insert into ingest.deliveries (delivery_id, agency, feed, path, file_name, sha256, "
            "size_bytes, extract_date, received_at, encoding, status, reason, duplicate_of, "
            "rows_read, rows_accepted, rows_rejected, rows_unchanged, file_mtime_ns) values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [d.delivery_id, d.agency, d.feed.name, d.relative, d.path.name, d.sha256, d.size,
             d.extract_date, now, d.encoding, d.status, d.reason, d.duplicate_of,
             d.rows_read, d.rows_accepted, d.rows_rejected, len(d.carried), d.mtime_ns])
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


# ---------------------------------------------------------------- receipts


def deliver_receipt(con: duckdb.DuckDBPyConnection, settings: Settings, d: Delivery,
                    write: bool = True) -> None:
    """Write the receipt the ledger row promises, then mark it written."""
    if write:
        write_receipt(settings, d)
    con.execute("update ingest.deliveries set receipt_written_at = ? where sha256 = ? and "
                "path = ? and receipt_written_at is null",
                [datetime.now(UTC).replace(tzinfo=None), d.sha256, d.relative])


def owed_receipts(con: duckdb.DuckDBPyConnection, settings: Settings, feed: Feed) -> int:
    """Receipts a run that died after its ledger commit never wrote: written now, from the
    ledger and the rejected rows (a partner always hears back)."""
    owed = con.execute(
        "select delivery_id, path, sha256, size_bytes, extract_date, encoding, status, reason, "
        "duplicate_of, rows_read, rows_accepted from ingest.deliveries "
        "where feed = ? and receipt_written_at is null and status <> 'NOT_READ'",
        [feed.name]).fetchall()
    for (delivery_id, relative, sha, size, extract, encoding, status, reason, duplicate_of,
         rows_read, accepted) in owed:
        d = Delivery(feed, settings.landing / relative, relative, sha, size, extract,
                     encoding or "", status, reason or "", rows_read or 0,
                     duplicate_of=duplicate_of or "", accepted=accepted or 0)
        if receipt_path(settings, d).exists():  # written before the mark (or by a release
            deliver_receipt(con, settings, d, write=False)  # that kept no mark)
            continue
        d.rejections = [Rejection(line, field_name, why) for line, field_name, why in con.execute(
            "select line, field, reason from ingest.rejected_rows where delivery_id = ? "
            "order by line, field", [delivery_id]).fetchall()]
        deliver_receipt(con, settings, d)
    return len(owed)



def receipt_payload(d: Delivery) -> dict[str, Any]:
    return {
        "receipt_for": d.path.name,
        "agency": d.agency,
        "feed": d.feed.name,
        "sha256": d.sha256,
        "size_bytes": d.size,
        "status": d.status,
        "reason": d.reason,
        "duplicate_of": d.duplicate_of or None,
        "encoding": d.encoding or None,
        "rows_read": d.rows_read,
        "rows_accepted": d.rows_accepted,
        "rows_rejected": d.rows_rejected,
        # a roster snapshot: how many rows came exactly as in the previous snapshot (accepted
        # as they were then; LEFT and CHANGED are judged against it as ever)
        **({"rows_unchanged_since_previous_snapshot": len(d.carried)} if d.carried else {}),
        "rejected_rows": [
            {"line": r.line, "field": r.field, "reason": r.reason} for r in d.rejections],
        **({"rows_left_unanswered": d.unanswered} if d.unanswered else {}),
        "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"request": d.answer} if d.answer else {}),
    }


def receipt_stem(file_name: str, sha256: str) -> str:
    return f"{Path(file_name).stem}.{sha256[:8]}.receipt"


def write_receipt(settings: Settings, d: Delivery) -> Path:
    """One JSON for the partner's system and one plain-text page for a person, side by side.

    Rejections name the line, field and reason; they never quote values, so a receipt carries
    nothing beyond the partner's own row position.
    """
    target = receipt_path(settings, d)
    target.parent.mkdir(parents=True, exist_ok=True)
    return save_receipt(target, receipt_payload(d))


def receipt_path(settings: Settings, d: Delivery) -> Path:
    return settings.outbox / d.agency / "receipts" / f"{receipt_stem(d.path.name, d.sha256)}.json"


def save_receipt(target: Path, payload: dict[str, Any]) -> Path:
    """Write (or rewrite, when a request's fate is known) a receipt's JSON and its text."""
    target.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    status = payload["status"] + (f": {payload['reason']}" if payload["reason"] else "")
    lines = [
        f"Receipt for {payload['receipt_for']} ({payload['agency']})",
        f"Status: {status}",
        (f"Rows read: {payload['rows_read']}   accepted: {payload['rows_accepted']}   "
         f"rejected: {payload['rows_rejected']}"),
    ]
    if payload.get("rows_unchanged_since_previous_snapshot"):
        lines.append(f"Rows exactly as in your previous snapshot (accepted as they were): "
                     f"{payload['rows_unchanged_since_previous_snapshot']}")
    if payload.get("rows_left_unanswered"):
        lines.append(f"Rows left blank (no answer yet, nothing recorded): "
                     f"{payload['rows_left_unanswered']}")
    if payload["rejected_rows"]:
        lines += ["", "Rejected rows (fix and re-send them in a new file):"]
        lines += [f"  line {r['line']}, {r['field']}: {r['reason']}"
                  for r in payload["rejected_rows"]]
    lines += ["", f"File fingerprint (SHA-256): {payload['sha256']}",
              f"Received: {payload['received_at']}"]
    if payload.get("request"):
        lines += ["", *request_lines(payload["request"])]
    target.with_suffix(".txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def request_lines(answer: dict[str, Any]) -> list[str]:
    """A data-lab request's fate in plain words, for the text receipt."""
    lines = [f"Data-lab request {answer.get('request_id')}"]
    if answer.get("report_id"):
        lines.append(f"Report: {answer['report_id']} ({answer.get('report')})")
    if answer.get("erased_at"):
        lines.append(f"Erased: {answer['erased_at']} UTC. This file, its rows and every row made "
                     "from them were deleted. What remains: the counts above, the file's "
                     "fingerprint and the report.")
    if answer.get("next"):
        lines.append(f"Next: {answer['next']}")
    return lines


def summarize(deliveries: list[Delivery]) -> dict[str, int]:
    return {
        "deliveries": len(deliveries),
        "accepted": sum(d.status == "ACCEPTED" for d in deliveries),
        "rejected": sum(d.status == "REJECTED" for d in deliveries),
        "duplicates": sum(d.status == "DUPLICATE" for d in deliveries),
        "rows_read": sum(d.rows_read for d in deliveries),
        "rows_accepted": sum(d.rows_accepted for d in deliveries),
        "rows_rejected": sum(d.rows_rejected for d in deliveries),
    }



