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

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from pipelines.feeds import FEEDS, Feed, vault_columns
from pipelines.parsing import BadValue
from pipelines.stores import Settings, connect

csv.field_size_limit(10 * 1024 * 1024)


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

    @property
    def delivery_id(self) -> str:
        return self.sha256[:16]

    @property
    def rows_rejected(self) -> int:
        return len({r.line for r in self.rejections})


def decode(data: bytes) -> tuple[str, str]:
    """UTF-8 (with or without BOM), else Windows-1252: accents survive either way."""
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


def parse_delivery(delivery: Delivery, data: bytes, today: date) -> None:
    """Fill `delivery` with typed rows and rejections, or raise UnreadableDelivery."""
    feed = delivery.feed
    if not data.strip():
        raise UnreadableDelivery("the file is empty")
    text, delivery.encoding = decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise UnreadableDelivery(f"the header row cannot be read as CSV ({exc})") from None
    header = [h.strip() for h in header]
    missing = [c for c in feed.columns if c not in header]
    unknown = [h for h in header if h not in feed.columns]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s) " + ", ".join(unknown))
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
        raise UnreadableDelivery(
            f"line {prev_end + 1} cannot be read as CSV ({exc}); the upload looks cut short"
        ) from None
    if records and not ends_with_newline and len(records[-1][1]) < len(header):
        raise UnreadableDelivery(
            f"the last line ({records[-1][0]}) has {len(records[-1][1])} of {len(header)} "
            "fields and no line ending: the upload looks cut short")
    for line, values in records:
        if not any(v.strip() for v in values):
            continue  # a blank line is not a row
        delivery.rows_read += 1
        if len(values) != len(header):
            delivery.rejections.append(Rejection(
                line, "(row)", f"has {len(values)} fields where the header has {len(header)}",
                _raw(values)))
            continue
        row: dict[str, Any] = {}
        errors: list[Rejection] = []
        for f in feed.fields:
            try:
                row[f.column] = f.parse(values[index[f.column]], today)
            except BadValue as exc:
                errors.append(Rejection(line, f.column, f"{f.column} {exc}", _raw(values, header)))
        if errors:
            delivery.rejections.extend(errors)
            continue
        if feed.extra:
            row.update(feed.extra(row))
        row["_line"] = line
        delivery.rows.append(row)


def _raw(values: list[str], header: list[str] | None = None) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


# ---------------------------------------------------------------- the vault

LEDGER_DDL = """
create schema if not exists ingest;
create schema if not exists raw;
create table if not exists ingest.deliveries (
    delivery_id varchar, agency varchar, feed varchar, file_name varchar, sha256 varchar,
    size_bytes bigint, extract_date date, received_at timestamp, encoding varchar,
    status varchar, reason varchar, duplicate_of varchar,
    rows_read integer, rows_accepted integer, rows_rejected integer
);
create table if not exists ingest.rejected_rows (
    delivery_id varchar, file_name varchar, line integer, field varchar, reason varchar,
    raw_text varchar
);
"""


def ensure_vault(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)
    for feed in FEEDS:
        cols = ", ".join(f'"{c.lower()}" {t}' for c, t in vault_columns(feed))
        con.execute(
            f"create table if not exists raw.{feed.name} (_delivery_id varchar, _line integer, "
            f"_extract_date date, {cols})")


def pending_files(settings: Settings, feed: Feed) -> list[Path]:
    """The feed's complete files in landing, oldest extract first (`.part` is never read)."""
    folder = settings.landing / feed.folder
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and feed.match(p.name)]
    return sorted(files, key=lambda p: (extract_date_of(feed, p.name) or date.min, p.name))


def extract_date_of(feed: Feed, file_name: str) -> date | None:
    m = feed.match(file_name)
    if not m:
        return None
    try:
        return datetime.strptime(m.groups()[-1], "%Y%m%d").date()
    except ValueError:
        return None


def ingest_feed(settings: Settings, feed: Feed) -> list[Delivery]:
    """Read every new file of one feed into the vault, and write a receipt for each."""
    done: list[Delivery] = []
    with connect(settings.vault_path) as con:
        ensure_vault(con)
        for path in pending_files(settings, feed):
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            seen = con.execute(
                "select file_name from ingest.deliveries where sha256 = ? order by received_at",
                [sha]).fetchall()
            if any(name == path.name for (name,) in seen):
                continue  # this very file was read before: nothing to do
            d = Delivery(feed, path, sha, len(data), extract_date_of(feed, path.name))
            if seen:
                d.status, d.duplicate_of = "DUPLICATE", seen[0][0]
                d.reason = f"the same bytes were delivered before as {seen[0][0]}; nothing changed"
            else:
                today = max(date.today(), d.extract_date or date.min)
                try:
                    parse_delivery(d, data, today)
                except UnreadableDelivery as exc:
                    d.status, d.reason, d.rows = "REJECTED", str(exc), []
                    _quarantine_file(settings, d, data)
            _record(con, d)
            write_receipt(settings, d)
            done.append(d)
    return done


def _quarantine_file(settings: Settings, d: Delivery, data: bytes) -> None:
    target = settings.quarantine / d.feed.agency / f"{d.delivery_id}_{d.path.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _record(con: duckdb.DuckDBPyConnection, d: Delivery) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("begin transaction")
    try:
        if d.rows:
            cols = [c for c, _ in vault_columns(d.feed)]
            frame = pd.DataFrame.from_records(
                [[d.delivery_id, r["_line"], d.extract_date] + [r.get(c) for c in cols]
                 for r in d.rows],
                columns=["_delivery_id", "_line", "_extract_date"] + [c.lower() for c in cols])
            con.register("incoming", frame)
            names = ", ".join(f'"{c}"' for c in frame.columns)
            con.execute(f"insert into raw.{d.feed.name} ({names}) select {names} from incoming")
            con.unregister("incoming")
        if d.rejections:
            con.executemany(
                "insert into ingest.rejected_rows values (?, ?, ?, ?, ?, ?)",
                [[d.delivery_id, d.path.name, r.line, r.field, r.reason, r.raw]
                 for r in d.rejections])
        con.execute(
            "insert into ingest.deliveries values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [d.delivery_id, d.feed.agency, d.feed.name, d.path.name, d.sha256, d.size,
             d.extract_date, now, d.encoding, d.status, d.reason, d.duplicate_of,
             d.rows_read, len(d.rows), d.rows_rejected])
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


# ---------------------------------------------------------------- receipts


def receipt_payload(d: Delivery) -> dict[str, Any]:
    return {
        "receipt_for": d.path.name,
        "agency": d.feed.agency,
        "feed": d.feed.name,
        "sha256": d.sha256,
        "size_bytes": d.size,
        "status": d.status,
        "reason": d.reason,
        "duplicate_of": d.duplicate_of or None,
        "encoding": d.encoding or None,
        "rows_read": d.rows_read,
        "rows_accepted": len(d.rows),
        "rows_rejected": d.rows_rejected,
        "rejected_rows": [
            {"line": r.line, "field": r.field, "reason": r.reason} for r in d.rejections],
        "received_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_receipt(settings: Settings, d: Delivery) -> Path:
    """One JSON for the partner's system and one plain-text page for a person, side by side.

    Rejections name the line, field and reason; they never quote values, so a receipt carries
    nothing beyond the partner's own row position.
    """
    folder = settings.outbox / d.feed.agency / "receipts"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(d.path.name).stem}.{d.sha256[:8]}.receipt"
    payload = receipt_payload(d)
    (folder / f"{stem}.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    lines = [
        f"Receipt for {d.path.name} ({d.feed.agency})",
        f"Status: {d.status}" + (f": {d.reason}" if d.reason else ""),
        f"Rows read: {d.rows_read}   accepted: {len(d.rows)}   rejected: {d.rows_rejected}",
    ]
    if d.rejections:
        lines += ["", "Rejected rows (fix and re-send them in a new file):"]
        lines += [f"  line {r.line}, {r.field}: {r.reason}" for r in d.rejections]
    lines += ["", f"File fingerprint (SHA-256): {d.sha256}", f"Received: {payload['received_at']}"]
    (folder / f"{stem}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / f"{stem}.json"


def summarize(deliveries: list[Delivery]) -> dict[str, int]:
    return {
        "deliveries": len(deliveries),
        "accepted": sum(d.status == "ACCEPTED" for d in deliveries),
        "rejected": sum(d.status == "REJECTED" for d in deliveries),
        "duplicates": sum(d.status == "DUPLICATE" for d in deliveries),
        "rows_read": sum(d.rows_read for d in deliveries),
        "rows_accepted": sum(len(d.rows) for d in deliveries),
        "rows_rejected": sum(d.rows_rejected for d in deliveries),
    }



