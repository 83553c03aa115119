"""The clerical review queue: the record pairs linkage was least sure of, worked in a browser.

    plumbline review [--port 8765]

Each linkage run queues the undecided pairs whose match weight is nearest the threshold
(`review_queue_size` in seeds/linkage_settings.csv), in the vault's `linkage.review_queue`.
This command serves one local page (bound to 127.0.0.1) that shows each queued pair side by
side: both records as the partners sent them (standardised), each field's comparison and its
weight, and whether this run linked them. The reviewer answers "the same child" or "not the
same child"; the answer is saved in the vault (`linkage.review_decisions`: the pair, the answer,
who and when), and every later linkage run honours it: a must-link joins the two records'
people, a cannot-link keeps them apart, as a caseworker's WRONG_PERSON does.

Names appear only on this page, which only a user who can open the vault can start. The server
logs the method and path of each request, never a query string, a form or a value.
"""

from __future__ import annotations

import getpass
import math
import secrets
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from linkage.constraints import REVIEW_DDL, record_review_decision
from pipelines.pages import render
from pipelines.stores import Settings, connect, has_table, linkage_setting

FIELDS = (("source", "source"), ("record_key", "the partner's record"),
          ("first_name", "first name"), ("middle_name", "middle name"),
          ("last_name", "last name"), ("dob", "birth date"), ("sex", "sex"),
          ("street_line", "street"), ("unit", "unit"), ("zip", "ZIP"),
          ("guardian_first", "guardian's given name"), ("guardian_last", "guardian's surname"))


def threshold_weight() -> float:
    """The match weight at the linkage threshold (seeds/linkage_settings.csv)."""
    t = linkage_setting("match_probability_threshold")
    return math.log2(t / (1 - t))


def queue(settings: Settings) -> list[dict[str, Any]]:
    """The queued pairs not yet answered, nearest the threshold first, each with both
    records' fields and the comparison of each field in words."""
    with connect(settings.vault_path) as vault:
        if not has_table(vault, "linkage", "review_queue"):
            return []
        vault.execute("create schema if not exists linkage")
        vault.execute(REVIEW_DDL)
        reason = ("q.reason" if "reason" in {r[0] for r in vault.execute(
            "select column_name from information_schema.columns where table_schema = "
            "'linkage' and table_name = 'review_queue'").fetchall()}
            else "'near the match threshold'")
        pairs = vault.execute(f"""
            select q.unique_id_l, q.unique_id_r, q.match_probability, q.match_weight,
                   q.comparison, q.linked, {reason} as reason
            from linkage.review_queue as q
            where not exists (
                select 1 from linkage.review_decisions as d
                where (d.uid_a = q.unique_id_l and d.uid_b = q.unique_id_r)
                   or (d.uid_a = q.unique_id_r and d.uid_b = q.unique_id_l))
            order by reason = 'near the match threshold', abs(q.match_weight - ?),
                     q.unique_id_l, q.unique_id_r
            """, [threshold_weight()]).fetchall()
        columns = [c for c, _ in FIELDS]
        present = {r[0] for r in vault.execute(
            "select column_name from information_schema.columns where table_schema = "
            "'linkage' and table_name = 'person_records'").fetchall()}
        shown = [c for c in columns if c in present]
        records = {}
        uids = sorted({u for p in pairs for u in p[:2]})
        if uids:
            rows = vault.execute(
                f"select unique_id, {', '.join(shown)} from linkage.person_records "
                f"where unique_id in (select unnest(?))", [uids]).fetchall()
            records = {r[0]: dict(zip(shown, r[1:], strict=True)) for r in rows}
    items = []
    for left, right, probability, weight, comparison, linked, why in pairs:
        a, b = records.get(left, {}), records.get(right, {})
        items.append({
            "uid_a": left, "uid_b": right, "linked": bool(linked), "reason": why,
            "probability": f"{100 * probability:.1f}%", "weight": f"{weight:+.1f}",
            "fields": [(label, _text(a.get(col)), _text(b.get(col)),
                        _text(a.get(col)) == _text(b.get(col)))
                       for col, label in FIELDS if col in a or col in b],
            "comparison": [part for part in (comparison or "").split("; ") if part]})
    return items


def _text(value: object) -> str:
    return "" if value is None else str(value)


def make_handler(settings: Settings, token: str, reviewer: str) -> type[BaseHTTPRequestHandler]:
    class Review(BaseHTTPRequestHandler):
        server_version = "PlumblineReview"

        def log_message(self, format: str, *args: object) -> None:
            # the method and path only: never a query string, a form field or a value
            sys.stderr.write(f"review: {self.command} {urlsplit(self.path).path}\n")

        def _send(self, status: HTTPStatus, body: str, content_type: str = "text/html") -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy", "default-src 'self'; style-src "
                             "'unsafe-inline'; form-action 'self'")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/":
                self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
                return
            saved = parse_qs(url.query).get("saved", [""])[0]
            self._send(HTTPStatus.OK, render(
                "review_queue.html.j2", items=queue(settings), token=token,
                reviewer=reviewer, saved=saved in ("SAME", "DIFFERENT") and saved))

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/decide":
                self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= 10_000:
                self._send(HTTPStatus.BAD_REQUEST, "a review answer is a short form",
                           "text/plain")
                return
            body = self.rfile.read(length).decode("utf-8", errors="replace")
            form = {k: v[0] for k, v in parse_qs(body).items()}
            if not secrets.compare_digest(form.get("token", ""), token):
                self._send(HTTPStatus.FORBIDDEN, "this form is from another session",
                           "text/plain")
                return
            pair = (form.get("uid_a", ""), form.get("uid_b", ""))
            if not any((i["uid_a"], i["uid_b"]) == pair for i in queue(settings)):
                self._send(HTTPStatus.CONFLICT, "that pair is not in the queue (any more)",
                           "text/plain")
                return
            decision = form.get("decision", "")
            if decision not in ("SAME", "DIFFERENT"):
                self._send(HTTPStatus.BAD_REQUEST, "the answer is SAME or DIFFERENT",
                           "text/plain")
                return
            with connect(settings.vault_path) as vault:
                record_review_decision(vault, *pair, decision, reviewer)
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", f"/?saved={decision}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Review


def serve(settings: Settings, port: int = 8765) -> ThreadingHTTPServer:
    """The review page's server on 127.0.0.1:`port` (not yet serving)."""
    reviewer = f"{getpass.getuser()}@{socket.gethostname()}"
    handler = make_handler(settings, secrets.token_urlsafe(24), reviewer)
    return ThreadingHTTPServer(("127.0.0.1", port), handler)
