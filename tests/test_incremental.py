"""Weekly runs that cost what the week brought: a re-sent roster row is carried, not parsed
again, and a week's records are linked incrementally into the same people a full relink finds."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.feeds import ENROLLMENT, HEALTH, RESIDENTS, SERVICES, person_records_sql
from pipelines.ingest import ingest_feed, pending_files
from pipelines.linking import relink
from pipelines.stores import Settings, connect
from tests.conftest import AS_OF, City

NEWEST = f"{AS_OF:%Y%m%d}.csv"


def _ingest(settings: Settings, keep) -> None:
    for feed in (HEALTH, RESIDENTS, ENROLLMENT, SERVICES):
        files = [p.relative_to(settings.landing).as_posix()
                 for p in pending_files(settings.landing, feed) if keep(p)]
        ingest_feed(settings, feed, only=files)


def _crosswalk(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select source || ':' || record_key, person_id "
                            "from linkage.person_crosswalk").fetchall())


@pytest.fixture(scope="module")
def weekly(city: City, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Link the city without its newest week, then link the newest week incrementally."""
    data = tmp_path_factory.mktemp("incremental")
    settings = Settings(city.landing, data, AS_OF, b"incremental-test")
    _ingest(settings, lambda p: not p.name.endswith(NEWEST))
    with connect(settings.vault_path) as con:
        first = relink(con, settings)
        before = _crosswalk(con)
    _ingest(settings, lambda p: True)
    with connect(settings.vault_path) as con:
        bound = con.execute("select current_setting('memory_limit')").fetchone()[0]
        week = relink(con, settings)
        after = _crosswalk(con)
        # Splink worked beside the vault: its scratch database went, the vault's bound is back
        left = {"databases": [d for (d,) in con.execute(
                    "select database_name from duckdb_databases() where not internal"
                    ).fetchall()],
                "bound": (bound, con.execute("select current_setting('memory_limit')"
                                             ).fetchone()[0])}
        pairs = con.execute("select unique_id_l, unique_id_r, round(match_weight, 6) "
                            "from linkage.link_pairs").fetchall()
    return {"settings": settings, "first": first, "week": week, "before": before,
            "after": after, "pairs": pairs, "left": left}


def test_a_week_is_linked_incrementally(weekly: dict) -> None:
    first, week = weekly["first"], weekly["week"]
    assert first["incremental"] == 0 and first["model_trained"] == 1
    assert week["incremental"] == 1 and week["model_trained"] == 0
    assert 0 < week["records_scored"] < week["records"]
    # the first run read every record; the week only those of its new deliveries
    assert first["records_read"] == first["records"]
    assert week["records_scored"] <= week["records_read"] < week["records"]
    assert week["records_relinked"] < week["records"]
    assert len(weekly["after"]) == week["records"]


def test_a_weeks_scoring_leaves_the_vault_as_it_found_it(weekly: dict) -> None:
    assert weekly["left"]["databases"] == ["vault"]
    assert weekly["left"]["bound"][0] == weekly["left"]["bound"][1]


def test_incremental_linkage_finds_what_a_full_relink_finds(weekly: dict, tmp_path: Path) -> None:
    """The same pairs, the same people and the same person_ids as scoring every record again
    with the same model."""
    settings: Settings = weekly["settings"]
    copy = tmp_path / "data"
    shutil.copytree(settings.data_dir, copy)
    full_settings = Settings(settings.landing, copy, AS_OF, b"incremental-test")
    with connect(full_settings.vault_path) as con:
        stats = relink(con, full_settings, full=True)
        full = _crosswalk(con)
        pairs = con.execute("select unique_id_l, unique_id_r, round(match_weight, 6) "
                            "from linkage.link_pairs").fetchall()
    assert stats["incremental"] == 0 and stats["model_trained"] == 0
    assert {frozenset(p[:2]): p[2] for p in pairs} == {
        frozenset(p[:2]): p[2] for p in weekly["pairs"]}
    assert full == weekly["after"]


def test_linkage_reads_every_record_again_when_what_it_linked_changed(weekly: dict,
                                                                     tmp_path: Path) -> None:
    """A week reads only its new deliveries' records. Every record is read again when the
    records' SQL changed (a feed declared or changed) or a delivery linked before changed."""
    from pipelines.feeds import FEEDS
    from pipelines.linking import _changed_records_sql, deliveries_now

    settings: Settings = weekly["settings"]
    copy = tmp_path / "data"
    shutil.copytree(settings.data_dir, copy)
    with connect(copy / "vault.duckdb") as con:
        (fp,), = con.execute("select distinct fingerprint from linkage.linked_deliveries"
                             ).fetchall()
        deliveries_now(con, FEEDS)
        assert _changed_records_sql(con, FEEDS, fp) is not None
        assert _changed_records_sql(con, FEEDS, "another declaration") is None
        # a row of a delivery linked last week is no longer there
        con.execute("delete from raw.health__blood_lead where _delivery_id = (select min("
                    "_delivery_id) from raw.health__blood_lead) and _line = 2")
        deliveries_now(con, FEEDS)
        assert _changed_records_sql(con, FEEDS, fp) is None
        again = relink(con, Settings(settings.landing, copy, AS_OF, settings.pseudonym_key))
        assert again["incremental"] == 1 and again["records_read"] == again["records"]
        # and the run after it reads only what is new again (nothing)
        quiet = relink(con, Settings(settings.landing, copy, AS_OF, settings.pseudonym_key))
        assert quiet["records_read"] == 0 and quiet["records_scored"] == 0


def test_each_record_says_whether_the_model_saw_its_names(weekly: dict) -> None:
    """Each linked record carries whether its first name or surname is one the frozen term
    frequencies never saw, and the week's drift share is the share of such records."""
    settings: Settings = weekly["settings"]
    with duckdb.connect(str(settings.vault_path), read_only=True) as con:
        wrong, share, unseen = con.execute(
            "select count(*) filter (where unseen_name is distinct from ("
            "(first_name is not null and first_name not in (select first_name from "
            "linkage.tf_first_name)) or (last_name is not null and last_name not in "
            "(select last_name from linkage.tf_last_name)))), avg(unseen_name::int), "
            "count(*) filter (where unseen_name) from linkage.person_records").fetchone()
    assert wrong == 0 and unseen > 0
    assert weekly["week"]["unseen_name_share"] == pytest.approx(share)


def test_the_model_is_retrained_when_the_records_drifted(weekly: dict, tmp_path: Path) -> None:
    from linkage.run import run_linkage

    settings: Settings = weekly["settings"]
    copy = tmp_path / "data"
    shutil.copytree(settings.data_dir, copy)
    with connect(copy / "vault.duckdb") as con:
        kept = run_linkage(con, copy / "linkage", 0.95, person_records_sql(),
                           drift={"growth": 100.0, "unseen_names": 1.0})
        grown = run_linkage(con, copy / "linkage", 0.95, person_records_sql(),
                            drift={"growth": 1.0001, "unseen_names": 1.0})
    assert kept["model_trained"] == 0 and kept["incremental"] == 1
    assert kept["records_scored"] == 0  # nothing changed since the last run
    assert grown["model_trained"] == 1 and grown["incremental"] == 0
    assert "grew" in grown["retrain_reason"]


# ---------------------------------------------------------------- snapshot diffing


def _roster(city: City) -> tuple[list[str], list[list[str]]]:
    path = next((city.landing / "housing").glob("residents_*.csv"))
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    return rows[0], rows[1:]


def _write(folder: Path, name: str, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    (folder / "housing").mkdir(parents=True, exist_ok=True)
    (folder / "housing" / name).write_text(buf.getvalue(), encoding="utf-8")


def _raw(settings: Settings, delivery_id: str) -> list[tuple]:
    with duckdb.connect(str(settings.vault_path), read_only=True) as con:
        return con.execute(
            f"select * exclude (_delivery_id, _extract_date, _row_hash) from "
            f"raw.{RESIDENTS.name} where _delivery_id = ? order by _line",
            [delivery_id]).fetchall()


def test_a_resent_roster_row_is_carried_not_parsed_again(city: City, tmp_path: Path) -> None:
    header, rows = _roster(city)
    landing = tmp_path / "landing"
    _write(landing, "residents_20260602.csv", header, rows)
    settings = Settings(landing, tmp_path / "data", date(2026, 6, 2), b"k")
    first = ingest_feed(settings, RESIDENTS)[0]
    assert first.status == "ACCEPTED" and not first.carried

    # the next snapshot: the same rows, the columns in another order, one row changed and
    # one row with a birth date that is not a date
    order = list(reversed(range(len(header))))
    dob, name = header.index("dob"), header.index("first_name")
    later = [list(r) for r in rows]
    later[3][name] = "Renamed"
    later[5][dob] = "2019-02-30"
    _write(landing, "residents_20260609.csv", [header[i] for i in order],
           [[r[i] for i in order] for r in later])
    settings = Settings(landing, tmp_path / "data", date(2026, 6, 9), b"k")
    second = ingest_feed(settings, RESIDENTS)[0]
    assert second.status == "ACCEPTED"
    assert len(second.carried) == len(rows) - 2
    assert second.rows_accepted == len(rows) - 1
    assert [(r.line, r.field) for r in second.rejections] == [(7, "dob")]
    receipt = json.loads(next((settings.outbox).rglob("residents_20260609*.json")).read_text())
    assert receipt["rows_read"] == len(rows)
    assert receipt["rows_accepted"] == len(rows) - 1
    assert receipt["rows_unchanged_since_previous_snapshot"] == len(rows) - 2
    with duckdb.connect(str(settings.vault_path), read_only=True) as con:
        ledger = con.execute("select rows_accepted, rows_unchanged from ingest.deliveries "
                             "where delivery_id = ?", [second.delivery_id]).fetchall()
    assert ledger == [(len(rows) - 1, len(rows) - 2)]

    # what was carried is what parsing the whole file afresh would have stored
    fresh = Settings(landing, tmp_path / "fresh", date(2026, 6, 9), b"k")
    (landing / "housing" / "residents_20260602.csv").unlink()
    parsed = ingest_feed(fresh, RESIDENTS)[0]
    assert not parsed.carried and parsed.rows_accepted == len(rows) - 1
    assert _raw(settings, second.delivery_id) == _raw(fresh, parsed.delivery_id)


@pytest.mark.parametrize("key", [b"k", b"test-key-not-secret", bytes(range(64)), b"x" * 200],
                         ids=["1 byte", "19 bytes", "64 bytes", "200 bytes"])
def test_pseudonyms_in_sql_are_hmac_sha256(key: bytes) -> None:
    """The src tables and the outbox pseudonymise in SQL: the HMAC of the Python reference,
    value for value, for keys shorter and longer than SHA-256's block, and awkward values."""
    from pipelines.warehouse import pseudonym, pseudonyms_in

    values = ["T-000123", "", "O'Brien", "Ünïcödé 街", "a\x1fb", "=1+2", "x" * 300, None]
    with duckdb.connect() as con, pseudonyms_in(con, pseudonym=key):
        got = [r[0] for r in con.execute(
            "select pseudonym('test', v) from unnest(?) with ordinality as t(v, i) order by i",
            [values]).fetchall()]
        assert con.execute("select count(*) from duckdb_tables() where table_name like '_pads%'"
                           ).fetchall()[0][0] == 1
    assert got == [pseudonym(key, "test", v) if v is not None else None for v in values]


def test_street_lines_are_standardised_once_and_follow_the_sources(pipeline_run) -> None:
    """A run standardises only street lines it has not seen; a line no source holds any more
    leaves the vault's list of them."""
    from pipelines.warehouse import build_sources, refresh_street_lines

    vault_file = pipeline_run.data_dir / "vault.duckdb"
    with duckdb.connect(vault_file, read_only=True) as con:
        lines = con.execute("select count(*) from prep.street_lines").fetchall()[0][0]
    assert lines > 100
    copy = pipeline_run.data_dir.parent / "street_lines_vault.duckdb"
    shutil.copy(vault_file, copy)
    with duckdb.connect(copy) as con:
        assert refresh_street_lines(con) == 0
        con.execute("update raw.housing__inspections set address = '1 Quite New Street' "
                    "where inspection_id = (select min(inspection_id) from raw.housing__inspections)")
        assert refresh_street_lines(con) == 1
        assert con.execute("select dwelling from prep.street_lines where line = "
                           "'1 Quite New Street'").fetchall() != []
        tables = build_sources(con, b"test-key-not-secret")
    copy.unlink()
    assert "address" not in tables["housing_inspections"].column_names


def test_the_standard_zip_in_sql_is_the_linkage_one() -> None:
    """The src tables' zip5 (SQL) is linkage's std_zip, value for value."""
    from linkage.standardise import std_zip
    from pipelines.warehouse import _zip5_sql

    values = ["21202", "21202-1234", " 21 202 ", "2120", "ZIP 21230", "２１２０２", "", None,
              "212021234", "abc"]
    with duckdb.connect() as con:
        got = [r[0] for r in con.execute(
            f"select {_zip5_sql('v')} from unnest(?) with ordinality as t(v, i) order by i",
            [values]).fetchall()]
    assert got == [std_zip(v) for v in values]


def test_src_tables_written_as_they_are_built_are_replaced_all_or_none(tmp_path: Path) -> None:
    """The src step writes each table while the next is built (pipelines.warehouse
    write_sources over iter_sources): a failure on either side leaves the last run's tables,
    and the building stops with it."""
    import threading

    import pyarrow as pa

    from pipelines.warehouse import write_sources

    wh = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    assert write_sources(wh, {"a": pa.table({"x": [1]})}) == {"a": 1}

    def vault_breaks():
        yield "a", pa.table({"x": [2, 3]})
        raise RuntimeError("the vault broke")

    with pytest.raises(RuntimeError, match="the vault broke"):
        write_sources(wh, vault_breaks())
    assert wh.execute("select x from src.a").fetchall() == [(1,)]

    built: list[int] = []

    def many():
        for i in range(50):
            built.append(i)
            yield ("a" if i == 0 else "not a name;"), pa.table({"x": [i]})

    with pytest.raises(duckdb.Error):
        write_sources(wh, many())
    assert wh.execute("select x from src.a").fetchall() == [(1,)]
    assert len(built) < 5  # stopped, not built to the end
    assert not any(t.name == "plumbline-src-build" for t in threading.enumerate())
    assert write_sources(wh, iter([("a", pa.table({"x": [7]})), ("b", pa.table({"y": [8]}))])
                         ) == {"a": 1, "b": 1}
    assert wh.execute("select x from src.a union all select y from src.b").fetchall() == [
        (7,), (8,)]


# ---------------------------------------------------------------- a week's src tables


def _differs(wh: duckdb.DuckDBPyConnection, tables: dict) -> dict[str, int]:
    """Per src table, how many rows the warehouse and a whole build do not share (both ways,
    duplicates counted)."""
    out = {}
    for name, frame in tables.items():
        wh.register("whole", frame)
        cols = ", ".join(f'"{c}"' for c in frame.column_names)
        out[name] = wh.execute(
            f"select (select count(*) from (select {cols} from src.{name} except all "
            f"select {cols} from whole)) + (select count(*) from (select {cols} from whole "
            f"except all select {cols} from src.{name}))").fetchall()[0][0]
        wh.unregister("whole")
    return out


def test_a_weeks_src_tables_are_the_ones_a_whole_build_makes(weekly: dict, tmp_path: Path
                                                              ) -> None:
    """The src step makes only the units a week changed (new deliveries, records that moved
    person or birth date); the tables are row for row what building them whole makes, after a
    week, after records move between persons, and after the key is rotated."""
    from pipelines.keys import rotate
    from pipelines.warehouse import build_sources, refresh_sources, refresh_street_lines

    settings: Settings = weekly["settings"]
    data = tmp_path / "data"
    shutil.copytree(settings.data_dir, data)
    key = b"src-test-key"
    # the first week's src tables, from the vault as linkage left it before the newest week
    older = tmp_path / "older"
    older_settings = Settings(settings.landing, older, AS_OF, key)
    _ingest(older_settings, lambda p: not p.name.endswith(NEWEST))
    with connect(older_settings.vault_path) as vault:
        relink(vault, older_settings)
        wh = duckdb.connect(str(older / "warehouse.duckdb"))
        first = refresh_sources(vault, wh, key)
    assert all(n["written"] == n["rows"] for n in first.values())  # the first build is whole
    # the newest week on top of it: the same vault as `weekly`'s, built week by week
    _ingest(older_settings, lambda p: True)
    with connect(older_settings.vault_path) as vault:
        relink(vault, older_settings)
        lines_before = vault.execute("select count(*) from prep.street_lines").fetchall()
        week = refresh_sources(vault, wh, key)
        assert 0 < week["health_tests"]["written"] < week["health_tests"]["rows"]
        # the week standardised only its new deliveries' street lines, and missed none
        assert vault.execute("select count(*) from prep.street_lines").fetchall() > lines_before
        assert refresh_street_lines(vault) == 0
        built_for_week = wh.execute("select build_id from meta.src_build").fetchall()
        assert set(_differs(wh, build_sources(vault, key)).values()) == {0}

        # records move between persons (a merge, a split) and a person's birth date changes
        vault.execute("""update linkage.person_crosswalk set person_id = (
                             select min(person_id) from linkage.person_crosswalk)
                         where record_key in (select record_key from linkage.person_crosswalk
                                              where source = 'schools' order by record_key
                                              limit 3)""")
        vault.execute("""update linkage.person_crosswalk set person_id = 'P-split-off'
                         where record_key = (select max(record_key) from linkage.person_crosswalk
                                             where source = 'health')""")
        vault.execute("""update linkage.persons set birth_date = birth_date - interval 40 day
                         where person_id = (select person_id from linkage.person_crosswalk
                                            where source = 'health' order by record_key
                                            limit 1)""")
        moved = refresh_sources(vault, wh, key)
        assert 0 < moved["health_tests"]["written"] < 50
        assert 0 < moved["schools_enrollment"]["written"] < 50
        assert moved["provider_services"]["written"] == 0
        assert set(_differs(wh, build_sources(vault, key)).values()) == {0}
        stamped = wh.execute("select build_id from meta.src_build").fetchall()
        again = refresh_sources(vault, wh, key)  # nothing changed since
        assert {n["written"] for name, n in again.items()
                if name not in ("persons", "provider_contracts", "alert_feedback")} == {0}
        # the warehouse's stamp changes with its rows, and only then
        assert wh.execute("select build_id from meta.src_build").fetchall() == stamped
        assert stamped != built_for_week

        # a rotated key makes every table whole again, under the new key
        rotate(vault, key, b"src-test-key-2")
        rotated = refresh_sources(vault, wh, b"src-test-key-2")
        assert all(n["written"] == n["rows"] for n in rotated.values())
        assert set(_differs(wh, build_sources(vault, b"src-test-key-2")).values()) == {0}

        # a warehouse that is not the one the vault's record describes is made whole
        wh.execute("drop table meta.src_build")
        assert all(n["written"] == n["rows"]
                   for n in refresh_sources(vault, wh, b"src-test-key-2").values())
    wh.close()


def test_a_new_person_id_never_takes_one_a_person_outside_the_relink_has(monkeypatch) -> None:
    """New person_ids are 48 random bits, checked against every person's id after they are
    drawn: one that an untouched person has is drawn again."""
    import pandas as pd

    from linkage import run

    con = duckdb.connect()
    con.execute("create schema linkage; create table linkage.person_crosswalk as "
                "select * from (values ('health', 'T1', 'P00000000000A'), "
                "('health', 'T2', 'P00000000000B')) as t(source, record_key, person_id)")
    clusters = pd.DataFrame({"unique_id": ["health:T2", "schools:S1", "schools:S2"],
                             "cluster_id": ["c1", "c2", "c2"]})
    draws = iter(["00000000000A", "00000000000A", "00000000000C", "00000000000D"])
    monkeypatch.setattr(run.secrets, "token_hex", lambda n: next(draws))
    ids = run.person_ids(con, clusters, {"health:T2": "P00000000000B"})
    # the bigger cluster draws first: the id health:T1's person has is drawn, then refused
    assert ids == {"c2": "P00000000000C", "c1": "P00000000000B"}
