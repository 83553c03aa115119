"""The clerical review queue, as a data engineer works it: in Debian's Chromium, one answer,
and the next run's people follow it."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import duckdb
import pandas as pd

from tests.conftest import AS_OF, PLUMBLINE, Run, plumbline_env


def person_of(vault: Path, uid: str) -> str:
    source, key = uid.split(":", 1)
    with duckdb.connect(str(vault), read_only=True) as con:
        return con.execute("select person_id from linkage.person_crosswalk where source = ? "
                           "and record_key = ?", [source, key]).fetchone()[0]


def test_an_answer_in_the_review_queue_changes_the_next_runs_people(
        pipeline_run: Run, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.test_ui_browser import ARGS, CHROMIUM

    data = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data)
    env = plumbline_env(data, pipeline_run.city.landing)
    vault = data / "vault.duckdb"
    with duckdb.connect(str(vault), read_only=True) as con:
        queued = con.execute("select count(*) from linkage.review_queue").fetchone()[0]
        first_names = {r[0] for r in con.execute(
            "select first_name from linkage.person_records where first_name is not null "
            "and length(first_name) >= 4").fetchall()}
    assert queued > 0

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(PLUMBLINE), "review", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "Linkage review queue" in server.stdout.readline()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            first = page.locator(".pair").first
            uid_a, uid_b = first.get_attribute("data-pair").split("|")
            linked = "linked them as one child" in first.inner_text()
            assert "How each field compared, and its weight" in first.inner_text()
            answer = "Not the same child" if linked else "The same child"
            first.get_by_role("button", name=answer, exact=True).click()
            page.wait_for_url("**/?saved=*")
            assert "Saved:" in page.inner_text("body")
            # answered pairs leave the queue
            assert page.locator(f'.pair[data-pair="{uid_a}|{uid_b}"]').count() == 0
            browser.close()
    finally:
        server.terminate()
        try:
            _, log = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, log = server.communicate(timeout=30)
    # the server's log holds methods and paths, never a name
    assert "review: POST /decide" in log
    assert not [n for n in first_names if n in log]
    with duckdb.connect(str(vault), read_only=True) as con:
        (decision, who), = con.execute(
            "select decision, decided_by from linkage.review_decisions").fetchall()
    assert decision == ("DIFFERENT" if linked else "SAME") and who

    # the next run's linkage stage, as the person_crosswalk asset runs it
    from pipelines.linking import relink
    from pipelines.stores import Settings

    with duckdb.connect(str(vault)) as con:
        stats = relink(con, Settings(pipeline_run.city.landing, data, AS_OF,
                                     b"test-key-not-secret"))
    assert stats["must_links"] == (0 if linked else 1)
    same = person_of(vault, uid_a) == person_of(vault, uid_b)
    assert same is not linked  # the answer was honoured
    with duckdb.connect(str(vault), read_only=True) as con:
        still = con.execute("select count(*) from linkage.review_queue where "
                            "(unique_id_l = ? and unique_id_r = ?) or "
                            "(unique_id_l = ? and unique_id_r = ?)",
                            [uid_a, uid_b, uid_b, uid_a]).fetchone()[0]
    assert still == 0


def test_two_records_of_one_roster_are_two_children_unless_the_evidence_is_overwhelming() -> None:
    """One household's two members, or two StudentIDs, linked in one cluster are kept apart
    for the run; a near-certain pair (a roster listing the same child twice) or a reviewer's
    "the same child" is not."""
    import pandas as pd

    from linkage.model import roster_cannot_links, roster_group

    rosters = {"housing": 1, "schools": 0}
    assert roster_group("housing:H12-1", rosters) == "housing:H12"
    assert roster_group("schools:S9", rosters) == "schools"
    assert roster_group("health:T1", rosters) is None
    clusters = pd.DataFrame({
        "unique_id": ["housing:H1-1", "housing:H1-2", "housing:H2-1", "health:T1",
                      "schools:S1", "schools:S2", "schools:S3", "schools:S4"],
        "cluster_id": ["a", "a", "a", "a", "b", "b", "c", "c"]})
    con = duckdb.connect()
    con.execute("create table pairs as select * from (values "
                "('housing:H1-1', 'housing:H1-2', 0.97), ('schools:S1', 'schools:S2', 0.99995), "
                "('schools:S3', 'schools:S4', 0.96)) as t(unique_id_l, unique_id_r, "
                "match_probability)")
    apart = roster_cannot_links(con, clusters, "pairs", rosters, 0.9999,
                                must={frozenset(("schools:S3", "schools:S4"))})
    # H1-1 and H1-2 share a household: apart; H2-1 is another household (a move): allowed;
    # S1/S2 overwhelming: allowed; S3/S4 a reviewer joined: allowed
    assert apart == {frozenset(("housing:H1-1", "housing:H1-2"))}


def test_a_person_over_the_cluster_bound_sends_its_weakest_links_to_the_queue(
        pipeline_run: Run, tmp_path: Path) -> None:
    """The health check flags a person with more records than the bound; the run queues the
    weakest links inside it (up to half the queue), each saying why, before the near ones."""
    from linkage.run import run_linkage
    from pipelines.feeds import distinct_rosters, person_records_sql

    data = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data, ignore=shutil.ignore_patterns("dagster_home"))
    with duckdb.connect(str(data / "vault.duckdb")) as con:
        run_linkage(con, data / "linkage", 0.95, person_records_sql(), review_size=10,
                    rosters=distinct_rosters(), overwhelming=0.9999, flag_size=3)
        queue = con.execute("select unique_id_l, unique_id_r, linked, reason "
                            "from linkage.review_queue").df()
        person = dict(con.execute("select source || ':' || record_key, person_id "
                                  "from linkage.person_crosswalk").fetchall())
    sizes = pd.Series(person).value_counts()
    flagged = queue[queue.reason.str.startswith("a weak link inside a person with")]
    assert 1 <= len(flagged) <= 5 and len(queue) == 10
    for a, b in zip(flagged.unique_id_l, flagged.unique_id_r, strict=True):
        assert person[a] == person[b] and sizes[person[a]] > 3
    assert flagged.linked.all()
    assert (queue.reason == "near the match threshold").sum() == len(queue) - len(flagged)
