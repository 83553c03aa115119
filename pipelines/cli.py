"""`plumbline`: generate a synthetic city, run the asset graph once, or do both (demo).

    plumbline generate OUT --people N --seed S --as-of DATE [--mess clean|normal|messy]
    plumbline run          materialize every asset from PLUMBLINE_LANDING into PLUMBLINE_DATA_DIR
    plumbline datalab      answer pending data-lab requests on the warehouse as last built
    plumbline review       work the linkage review queue in a browser (127.0.0.1 only)
    plumbline demo         generate a small city into the data dir and run it
    plumbline prepare      parse the dbt project if it changed (before `dagster dev`)
    plumbline rotate-key   change the pseudonym key on purpose and re-key every pseudonym

`run` uses the same Definitions the Dagster UI loads; its runs are recorded in
DATA_DIR/dagster_home unless DAGSTER_HOME says otherwise, so `make ui` shows them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
from datetime import date
from pathlib import Path

from pipelines.runs import fail_dead_runs, process_tags, run_tags
from pipelines.stores import (
    AGENCIES,
    Settings,
    connect,
    data_dir_from_env,
    held_open,
    landing_from_env,
    load_settings,
    private_by_default,
)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in YYYY-MM-DD form") from None


def cmd_generate(args: argparse.Namespace) -> int:
    from pipelines.synth.generator import generate_city

    out = generate_city(Path(args.out), people=args.people, seed=args.seed, as_of=args.as_of,
                        mess=args.mess, lead_burden=args.lead_burden,
                        program_reach=args.program_reach)
    print(f"Generated {out['people']} people, {out['records']} person-records in "
          f"{out['files']} files.")
    print(f"  landing folder: {out['landing']}")
    print(f"  ground truth:   {out['ground_truth']}")
    return 0


TEMPLATE_HEADER = "# DAGSTER_HOME/dagster.yaml for Plumbline"
OLD_EVENT_STORAGE = ("  module: dagster._core.storage.event_log\n"
                     "  class: ConsolidatedSqliteEventLogStorage\n")
EVENT_STORAGE = "  module: pipelines.dagster_storage\n  class: PlumblineEventLogStorage\n"


def prepare_dagster_home(home: Path) -> None:
    """The instance config that queues runs one at a time (DuckDB has one writer per file)."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        text = Path(__file__).with_name("dagster_instance.yaml").read_text()
        target.write_text(text.replace("{home}", home.resolve().as_posix()))
        return
    # a home made before pipelines/dagster_storage.py: the same file and tables, read and
    # written by the faster storage from now on (an operator's own storage is left alone)
    text = target.read_text()
    if OLD_EVENT_STORAGE in text and text.startswith(TEMPLATE_HEADER):
        target.write_text(text.replace(OLD_EVENT_STORAGE, EVENT_STORAGE))


@contextlib.contextmanager
def open_instance():
    """The Dagster instance in DAGSTER_HOME. Its first opening creates its SQLite tables; two
    runs starting at once on a new data dir would race to create them, so it is serialised."""
    from dagster import DagsterInstance

    home = Path(os.environ["DAGSTER_HOME"])
    with open(home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = DagsterInstance.get()
        fcntl.flock(lock, fcntl.LOCK_UN)
    with instance:
        yield instance


def run_pipeline(settings: Settings, selection: list | None = None) -> bool:
    """Materialize the whole asset graph once (or the assets in `selection`), in this process."""
    os.environ["PLUMBLINE_DATA_DIR"] = str(settings.data_dir)
    os.environ["PLUMBLINE_LANDING"] = str(settings.landing)
    os.environ["PLUMBLINE_AS_OF"] = settings.as_of.isoformat()
    prepare_dagster_home(Path(os.environ.setdefault(
        "DAGSTER_HOME", str(settings.data_dir / "dagster_home"))))

    from pipelines.worker import WORKER

    WORKER.start()  # imports Great Expectations on the other core while this one loads Dagster
    from pipelines.dbt_manifest import dbt_executable
    from pipelines.dbt_ready import ReadyDbt

    ready_dbt = ReadyDbt()
    try:
        ready_dbt.prepare(dbt_executable())  # the definitions' dbt resource starts its launcher
        return _run_job(settings, selection, ready_dbt)
    finally:
        ready_dbt.close()


LATER_IMPORTS = ("scipy.sparse", "scipy.sparse.csgraph", "sqlglot.dialects.duckdb", "jinja2")


def _import_quietly(names: tuple[str, ...]) -> None:
    """Import modules a later step needs; a failure here is the step's to report."""
    from importlib import import_module

    for name in names:
        with contextlib.suppress(Exception):
            import_module(name)


def _run_job(settings: Settings, selection: list | None, ready_dbt) -> bool:
    from pipelines.dbt_manifest import prepare

    prepare()  # the dbt manifest, parsed here when the project changed, never on import
    from pipelines import publish
    from pipelines.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"run-{date.today():%Y%m%d}-{os.getpid()}.log"
    print(f"Running the asset graph (step output in {log_file}) ...", flush=True)
    with open_instance() as instance, open(log_file, "w") as log, \
            contextlib.redirect_stdout(log):
        stale = fail_dead_runs(instance)
        if stale:
            print(f"{stale} earlier run(s) had died without ending; marked failed.",
                  file=sys.stderr)
        ready_dbt.start()  # dbt loads on the other core while the run ingests and links
        # what linkage imports (its connected components, and sqlglot's DuckDB dialect, in
        # which Splink reads the model's comparisons) and the lists' pages (Jinja2), loaded
        # while ingest waits on the worker's validation: 0.5-0.8 s of the linkage step otherwise
        threading.Thread(target=_import_quietly, args=(LATER_IMPORTS,), daemon=True,
                         name="plumbline-preload").start()
        publish.DRAW_EARLY = True  # every step runs here: charts can be drawn once dbt is done
        try:
            # the vault stays open from step to step (opened and checkpointed once)
            with held_open(settings.vault_path):
                result = job.execute_in_process(
                    instance=instance, raise_on_error=False, asset_selection=selection,
                    tags={**run_tags(settings.as_of.isoformat(), str(settings.data_dir),
                                     "cli"), **process_tags()},
                    # the summary below is what a person reads; step logs stay in the UI's
                    # run view
                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        finally:
            publish.DRAW_EARLY = False
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data:
                err = event.step_failure_data.error
                while err is not None and err.cause is not None:
                    err = err.cause  # the innermost error says what went wrong in plain words
                print(f"Step {event.step_key} failed: {err.message.strip() if err else ''}",
                      file=sys.stderr)
    return result.success


def summary(settings: Settings) -> str:
    """Counts only: deliveries, records, persons, open alerts per agency."""
    lines = [f"Plumbline run as of {settings.as_of} (data dir {settings.data_dir})"]
    with connect(settings.vault_path, read_only=True) as vault:
        rows = vault.execute(
            "select agency, status, count(*), sum(rows_read), sum(rows_accepted), "
            "sum(rows_rejected) from ingest.deliveries group by all order by all").fetchall()
        lines.append("Deliveries (agency, status: files; rows read / accepted / rejected):")
        lines += [f"  {a:<10} {s:<9} {n:>4} files; {r} / {acc} / {rej}"
                  for a, s, n, r, acc, rej in rows]
        (records, persons), = vault.execute(
            "select count(*), count(distinct person_id) from linkage.person_crosswalk").fetchall()
        lines.append(f"Linkage: {records} person-records -> {persons} persons")
    with connect(settings.warehouse_path, read_only=True) as wh:
        alerts = dict(wh.execute(
            "select assigned_agency, count(*) from marts.lead_alerts where status = 'OPEN' "
            "group by 1").fetchall())
        owners = wh.execute(
            "select assigned_organisation, count(*) from marts.lead_alerts where status = 'OPEN' "
            "group by 1 order by 1").fetchall()
    lines.append("Open alerts: " + ", ".join(f"{a} {alerts.get(a, 0)}" for a in AGENCIES))
    lines.append("  by organisation: " + ", ".join(f"{o} {n}" for o, n in owners))
    lines.append(f"Outbox (alert lists and receipts): {settings.outbox}")
    lines.append(datalab_summary(settings))
    return "\n".join(lines)


def key_problem(settings: Settings) -> str | None:
    """Why this run's pseudonym key must not be used on this data dir, or None."""
    from pipelines.keys import fingerprint, mismatch_message, recorded_fingerprint

    if not settings.vault_path.exists():
        return None
    with connect(settings.vault_path, read_only=True) as vault:
        recorded = recorded_fingerprint(vault)
    if recorded is None or recorded == fingerprint(settings.pseudonym_key):
        return None
    return mismatch_message(recorded, settings.pseudonym_key)


def cmd_prepare(args: argparse.Namespace) -> int:
    from pipelines.dbt_manifest import prepare

    print(f"dbt manifest: {prepare()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.landing.is_dir():
        print(f"Landing folder {settings.landing} does not exist: set PLUMBLINE_LANDING to the "
              "partners' drop folder (or run `plumbline demo`).", file=sys.stderr)
        return 2
    problem = key_problem(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    ok = run_pipeline(settings)
    if not ok:
        print("The run failed; see the step errors above.", file=sys.stderr)
        return 1
    print(summary(settings))
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Change the pseudonym key on purpose: check the old key, record the new one, remove a
    local old key file, then run the graph so every pseudonym is re-keyed. person_ids, alert
    ids and feedback do not depend on the key, so they stay."""
    import secrets

    from pipelines.keys import KeyMismatch, rotate

    data_dir = data_dir_from_env()
    key_file = data_dir / "pseudonym.key"
    old_text = os.environ.get("PLUMBLINE_OLD_PSEUDONYM_KEY", "").strip() or (
        key_file.read_text().strip() if key_file.exists() else "")
    new_text = os.environ.get("PLUMBLINE_PSEUDONYM_KEY", "").strip()
    if not old_text:
        print("No old key: set PLUMBLINE_OLD_PSEUDONYM_KEY to the key this data dir was built "
              "with.", file=sys.stderr)
        return 2
    if not new_text and not os.environ.get("PLUMBLINE_OLD_PSEUDONYM_KEY"):
        new_text = secrets.token_hex(32)  # the demo's local key: a fresh one replaces it
    if not new_text or new_text == old_text:
        print("Set PLUMBLINE_PSEUDONYM_KEY to the new key (different from the old one).",
              file=sys.stderr)
        return 2
    vault_path = data_dir / "vault.duckdb"
    if vault_path.exists():
        try:
            with connect(vault_path) as vault:
                rotate(vault, old_text.encode(), new_text.encode())
        except KeyMismatch as exc:
            print(str(exc), file=sys.stderr)
            return 2
    if os.environ.get("PLUMBLINE_PSEUDONYM_KEY", "").strip():
        key_file.unlink(missing_ok=True)  # the old key leaves the data dir
    else:
        key_file.write_text(new_text)
        key_file.chmod(0o600)
    print("The pseudonym key was rotated; re-keying every pseudonym now.")
    if not landing_from_env().is_dir():
        print("(No landing folder: the next `plumbline run` re-keys the warehouse.)")
        return 0
    return cmd_run(args)


def datalab_summary(settings: Settings) -> str:
    """Each data-lab request: counts, its report and when it was erased (no identities)."""
    with connect(settings.vault_path, read_only=True) as vault:
        rows = vault.execute(
            "select provider, file_name, status, rows_read, linked, matched, figures_given, "
            "report_path, erased_at from datalab.requests order by received_at").fetchall()
    if not rows:
        return "Data lab: no requests"
    lines = ["Data lab (provider, request: status; rows sent, linked, matched; report):"]
    for provider, name, status, sent, linked, matched, figures, report, erased in rows:
        lines.append(
            f"  {provider:<5} {name}: {status}; {sent} sent, {linked} linked, {matched} matched; "
            + (f"{'figures' if figures else 'no figures'} in outbox/{report}" if report
               else "no report yet")
            + (f"; erased {erased:%Y-%m-%d %H:%M}" if erased else ""))
    return "\n".join(lines)


def cmd_review(args: argparse.Namespace) -> int:
    """Serve the linkage review queue on 127.0.0.1 until interrupted."""
    from pipelines.review import serve

    settings = load_settings()
    if not settings.vault_path.exists():
        print("There is no vault yet: run `plumbline run` once first.", file=sys.stderr)
        return 2
    server = serve(settings, args.port)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops it as Ctrl-C does, even where it was ignored

    signal.signal(signal.SIGTERM, stop)
    print(f"Linkage review queue: http://127.0.0.1:{server.server_address[1]}/ "
          "(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_datalab(args: argparse.Namespace) -> int:
    """Answer pending data-lab requests without rebuilding the warehouse (the sensor's run)."""
    from dagster import AssetKey

    from pipelines.defs.datalab.assets import DATALAB_ASSET_KEYS

    settings = load_settings()
    if not settings.warehouse_path.exists():
        print("The warehouse has not been built yet: run `plumbline run` once first.",
              file=sys.stderr)
        return 2
    ok = run_pipeline(settings, [AssetKey("raw_datalab__cohort"), *DATALAB_ASSET_KEYS])
    if not ok:
        print("The data-lab run failed; nothing was erased. See the step errors above.",
              file=sys.stderr)
        return 1
    print(datalab_summary(settings))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.synth.generator import generate_city

    data_dir = data_dir_from_env()
    city = data_dir / "demo_city"
    as_of = args.as_of or date.today()
    if not (city / "landing").is_dir():
        generate_city(city, people=args.people, seed=args.seed, as_of=as_of)
    os.environ["PLUMBLINE_LANDING"] = str(city / "landing")
    os.environ.setdefault("PLUMBLINE_AS_OF", as_of.isoformat())
    settings = load_settings()
    print(f"Demo city ({args.people} synthetic people) in {city / 'landing'}")
    if not run_pipeline(settings):
        print("The demo run failed; see the step errors above.", file=sys.stderr)
        return 1
    print(summary(settings))
    print(f"Ground truth of the synthetic city: {city / 'ground_truth'}")
    print("Open the Dagster UI over the same stores with: make ui")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Why these records are one child: the links and each field's comparison (no names)."""
    settings = load_settings()
    with connect(settings.vault_path, read_only=True) as vault:
        records = vault.execute(
            "select source, record_key from linkage.person_crosswalk where person_id = ? "
            "order by all", [args.person_id]).fetchall()
        if not records:
            print(f"No person {args.person_id} in the crosswalk.", file=sys.stderr)
            return 1
        links = vault.execute(
            "select unique_id_l, unique_id_r, match_probability, comparison "
            "from linkage.link_evidence where person_id = ? order by match_weight desc",
            [args.person_id]).fetchall()
        history = vault.execute(
            "select run_at, event, other_person_id from linkage.person_id_events "
            "where person_id = ? or other_person_id = ? order by run_at",
            [args.person_id, args.person_id]).fetchall()
    print(f"{args.person_id}: {len(records)} records")
    for source, key in records:
        print(f"  {source}:{key}")
    print(f"{len(links)} links at or above the match threshold:")
    for a, b, p, words in links:
        print(f"  {a} ~ {b}  (match probability {p:.4f})\n      {words}")
    for run_at, event, other in history:
        print(f"  {run_at:%Y-%m-%d %H:%M} {event}" + (f" ({other})" if other else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    private_by_default()  # before anything is created: the stores hold identities
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="plumbline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write a synthetic city's landing folder and ground truth")
    g.add_argument("out", help="folder to write landing/ and ground_truth/ into")
    g.add_argument("--people", type=int, default=1000)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--as-of", type=_date, default=None, help="YYYY-MM-DD (default today)")
    g.add_argument("--mess", choices=["clean", "normal", "messy"], default="normal")
    g.add_argument("--lead-burden", type=float, default=1.0,
                   help="how many times the ordinary share of elevated screens (a town of old "
                        "housing: 3 to 5)")
    g.add_argument("--program-reach", type=float, default=1.0,
                   help="how many times the ordinary share of children with a confirmed level "
                        "each provider's program reaches")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="materialize the whole asset graph once")
    r.set_defaults(func=cmd_run)

    pr = sub.add_parser("prepare", help="parse the dbt project if it changed since its "
                                        "manifest was written (before `dagster dev`)")
    pr.set_defaults(func=cmd_prepare)

    d = sub.add_parser("demo", help="generate a small city into the data dir and run it")
    # big enough for the data lab's programs to have 60+ matched children each
    d.add_argument("--people", type=int, default=60000)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--as-of", type=_date, default=None)
    d.set_defaults(func=cmd_demo)

    lab = sub.add_parser("datalab", help="answer pending data-lab requests (link, report, "
                                         "erase) on the warehouse as last built")
    lab.set_defaults(func=cmd_datalab)

    rv = sub.add_parser("review", help="work the linkage review queue in a browser: the pairs "
                                       "the last run was least sure of (127.0.0.1 only)")
    rv.add_argument("--port", type=int, default=8765)
    rv.set_defaults(func=cmd_review)

    k = sub.add_parser("rotate-key", help="change the pseudonym key on purpose (old key in "
                                          "PLUMBLINE_OLD_PSEUDONYM_KEY, new in "
                                          "PLUMBLINE_PSEUDONYM_KEY) and re-key every pseudonym")
    k.set_defaults(func=cmd_rotate_key)

    e = sub.add_parser("explain", help="why a person's records were linked (no names shown)")
    e.add_argument("person_id")
    e.set_defaults(func=cmd_explain)

    args = parser.parse_args(argv)
    if getattr(args, "people", 1) < 1:
        parser.error("--people must be at least 1")
    return args.func(args)


def console() -> None:
    """The `plumbline` command: main(), then the process ends without Python's teardown.

    A run leaves some 4,000 imported modules (Dagster, dbt, Great Expectations, pandas): the
    interpreter spent 2 s of every run finalising them, after everything was written and closed.
    Every store is closed by its own context manager before main() returns; exit handlers still
    run and the output is flushed, then the process exits with main()'s code. An exception
    still ends the process the ordinary way, with its traceback."""
    import atexit

    code = main()
    atexit._run_exitfuncs()  # what sys.exit would run first (registered shutdown hooks)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code or 0))


if __name__ == "__main__":
    console()
