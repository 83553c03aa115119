"""What Plumbline publishes after each successful run: open, pseudonymous, suppressed.

- `DATA_DIR/published/`: a read-only snapshot of the published marts (Parquet per table, plus
  `plumbline.duckdb`, a small DuckDB file holding the same tables) that an analyst opens with
  DuckDB, Python or any SQL client, wherever the folder is copied. Each run writes a new
  version and swaps the file in atomically, so a reader never blocks the pipeline and the
  pipeline never blocks a reader; a publication that was killed leaves nothing the next one
  does not clear.
- `outbox/public/ocds/`: the city's contracts as an OCDS 1.1 release package, with each
  contract's outcome indicators attached as implementation metrics.
- `outbox/<agency>/personal_best.{png,html}`: the agency's own timeliness, month by month.
- `outbox/public/index.html`: the indicators page for policymakers and the public.

Only the suppressed, aggregate marts are published; nothing here can name a child.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import numbers
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import Future
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.csvsafe import write_csv
from pipelines.dbt_manifest import dbt_executable
from pipelines.pages import render
from pipelines.stores import Settings, publication_lock, seed_values, share, warehouse_lock
from pipelines.suppression import FOLLOWUP_PAIRS
from pipelines.worker import WORKER, Pending

PUBLISHED = ("policy_lead_followup_by_zip", "policy_lead_followup_by_band",
             "policy_followup_pooled", "agency_timeliness_monthly", "agency_timeliness_pooled",
             "contract_outcomes")
KEEP_VERSIONS = 5


def write_dictionary(settings: Settings, manifest: Path) -> Path:
    """outbox/public/dictionary/index.html: dbt's documentation of every model, source and
    column, as one static page (`dbt docs generate --static`), built from the parsed manifest
    without touching the warehouse (`--no-compile --empty-catalog`), so it holds descriptions
    and lineage, never data. Rebuilt only when the manifest changes."""
    target = settings.outbox / "public" / "dictionary" / "index.html"
    stamp = hashlib.sha256(manifest.read_bytes()).hexdigest()
    stamp_file = target.with_name(".manifest.sha256")
    if target.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return target
    # one build per manifest, kept beside it, serves every data dir on this checkout
    cache = manifest.parent / "dictionary" / f"{stamp}.html"
    if not cache.exists():
        project = manifest.parent.parent
        with tempfile.TemporaryDirectory(prefix="plumbline-dictionary-") as tmp:
            shutil.copyfile(manifest, Path(tmp) / "manifest.json")
            done = subprocess.run(
                [dbt_executable(), "docs", "generate", "--static",
                 "--empty-catalog", "--no-compile", "--quiet", "--target-path", tmp,
                 "--project-dir", str(project), "--profiles-dir", str(project)],
                capture_output=True, text=True, check=False,
                env={**os.environ, "PLUMBLINE_DATA_DIR": str(settings.data_dir)})
            built = Path(tmp) / "static_index.html"
            if done.returncode != 0 or not built.exists():
                raise RuntimeError("dbt docs generate failed to build the data dictionary:\n"
                                   + (done.stdout + done.stderr)[-1500:])
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.part")
            shutil.copyfile(built, partial)
            os.replace(partial, cache)
        for old in sorted(cache.parent.glob("*.html"), key=lambda p: p.stat().st_mtime)[:-5]:
            old.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cache, target)
    stamp_file.write_text(stamp)
    return target


def published_tables(wh: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    return {t: wh.execute(f"select * from marts.{t}").df() for t in PUBLISHED}


def chart_inputs(tables: dict[str, pd.DataFrame]) -> dict[str, object]:
    """What the publication's charts are drawn from (pipelines.charts.draw)."""
    pooled = tables["agency_timeliness_pooled"]
    by_zip = tables["policy_lead_followup_by_zip"]
    # every organisation with steps due gets its page, even when no period can be shown yet
    return {"personal_best": {agency: pooled[pooled["agency"] == agency] for agency
                              in sorted(set(tables["agency_timeliness_monthly"]["agency"]))},
            "tested": by_zip[by_zip["zip5"] == "ALL"].sort_values("month"),
            "followup": tables["policy_followup_pooled"]}


# Under `plumbline run` one process runs every step, so the charts can be drawn in the worker
# as soon as dbt has built the marts (draw_early), while the alert lists are written, instead
# of while the publication waits for them. The publication takes that drawing only when it
# was drawn from exactly what it publishes; otherwise it draws its own.
DRAW_EARLY = False
_early: dict[str, tuple[str, Future]] = {}


def _digest(inputs: object, h=None) -> str:
    """A digest of the charts' inputs by content: their frames' columns, types and values."""
    h = h or hashlib.sha256()
    if isinstance(inputs, dict):
        for key in sorted(inputs):
            h.update(repr(key).encode())
            _digest(inputs[key], h)
    else:
        assert isinstance(inputs, pd.DataFrame)
        h.update(repr([(c, str(t)) for c, t in inputs.dtypes.items()]).encode())
        h.update(pd.util.hash_pandas_object(inputs, index=True).to_numpy().tobytes())
    return h.hexdigest()


def draw_early(wh: duckdb.DuckDBPyConnection) -> None:
    """Start drawing the charts of the marts just built (only where DRAW_EARLY says one process
    runs the publication after this; the drawing is kept for it in this process)."""
    if not DRAW_EARLY:
        return
    inputs = chart_inputs(published_tables(wh))
    drawing: Future = Future()

    def draw() -> None:
        try:
            drawing.set_result(WORKER.call("pipelines.charts:draw", inputs))
        except BaseException as exc:  # noqa: BLE001 (the publication raises it, or draws again)
            drawing.set_exception(exc)

    threading.Thread(target=draw, name="plumbline-draw-early", daemon=True).start()
    _early["charts"] = (_digest(inputs), drawing)


def _drawing(inputs: dict[str, object]) -> Future | Pending:
    """The charts of `inputs`: drawn early from the same tables, or sent to the worker now."""
    early = _early.pop("charts", None)
    if early is not None and early[0] == _digest(inputs):
        return early[1]
    return WORKER.submit("pipelines.charts:draw", inputs)  # drawn in the worker meanwhile


def publish_all(settings: Settings, manifest: Path | None = None) -> dict[str, object]:
    with (warehouse_lock(settings.data_dir),
          duckdb.connect(str(settings.warehouse_path), read_only=True) as wh):
        tables = published_tables(wh)
        contracts = wh.execute(
            "select * from staging.stg_providers__contracts qualify row_number() over "
            "(partition by contract_id order by extract_date desc) = 1 "
            "order by contract_id").df()  # one order, so the same data gives the same bytes
    pooled = tables["agency_timeliness_pooled"]
    drawing: Future | Pending | None = _drawing(chart_inputs(tables))
    try:
        with publication_lock(settings.data_dir):  # two runs at once publish one after another
            version = publish_snapshot(settings.data_dir / "published", tables)
            package = write_ocds(settings, contracts, tables["contract_outcomes"])
            if manifest is not None:
                write_dictionary(settings, manifest)
            pngs, drawing = drawing.result(), None
            charts = {agency: write_personal_best(settings, agency,
                                                  pooled[pooled["agency"] == agency], png)
                      for agency, png in pngs["personal_best"].items()}
            write_index(settings, tables, package, charts, pngs)
    finally:
        if drawing is not None:
            with contextlib.suppress(Exception):  # the error on the way out is the one told
                drawing.result()
        share(settings.data_dir / "published")
        share(settings.outbox / "public")
    return {"version": version, "ocds_releases": len(contracts), "charts": len(charts)}


# ---------------------------------------------------------------- the published warehouse


def publish_snapshot(root: Path, tables: dict[str, pd.DataFrame]) -> str:
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    folder = root / "versions" / version
    folder.mkdir(parents=True)
    for name, frame in tables.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    for stale in root.glob(".plumbline.*.duckdb*"):  # left by a publication that was killed
        stale.unlink(missing_ok=True)
    tmp = root / f".plumbline.{version}.duckdb"
    with duckdb.connect(str(tmp)) as con:
        # tables, not views over absolute Parquet paths: the file reads the same wherever the
        # published folder is copied to
        for name in tables:
            con.execute(f"create table {name} as select * from "
                        f"read_parquet('{(folder / f'{name}.parquet').as_posix()}')")
        con.execute("create table about as select ? as version, ? as published_at",
                    [version, datetime.now(UTC).isoformat(timespec="seconds")])
    os.replace(tmp, root / "plumbline.duckdb")  # readers keep the file they opened
    for old in sorted((root / "versions").iterdir())[:-KEEP_VERSIONS]:
        shutil.rmtree(old, ignore_errors=True)
    return version


# ---------------------------------------------------------------- open contracting


def _value(v: float | None) -> dict | None:
    return None if v is None or pd.isna(v) else {"amount": float(v), "currency": "USD"}


def ocds_release(contract: pd.Series, outcomes: pd.DataFrame, as_of: date,
                 ocid_prefix: str = "ocds-plumbline", buyer: str = "City Health Department"
                 ) -> dict:
    cid = str(contract["contract_id"])
    codes = list(contract["service_codes"]) if contract["service_codes"] is not None else []
    supplier = {"id": str(contract["provider_code"]), "name": str(contract["provider_name"])}
    mine = outcomes[(outcomes["contract_id"] == cid) & (outcomes["month"] != "ALL")
                    & outcomes["month_complete"].astype(bool)].sort_values("month")
    metrics = []
    for column, title in (("services", "Services delivered"),
                          ("children_served", "Children served"),
                          ("case_management_in_time",
                           "Lead-referred children with case management within the window"),
                          ("next_test_lower", "Lead-referred children with a lower next test")):
        observations = [
            {"id": f"{column}-{row['month']}",
             "period": {"startDate": f"{row['month']}-01T00:00:00Z"},
             "measure": None if pd.isna(row[column]) else int(row[column]),
             "notes": "suppressed (fewer than 11)" if pd.isna(row[column]) else None}
            for _, row in mine.iterrows()]
        metrics.append({"id": column, "title": title,
                        "observations": [{k: v for k, v in o.items() if v is not None}
                                         for o in observations]})
    status = "active" if contract["end_date"] is None or pd.Timestamp(
        contract["end_date"]).date() >= as_of else "terminated"
    period = {"startDate": f"{pd.Timestamp(contract['start_date']).date()}T00:00:00Z",
              "endDate": f"{pd.Timestamp(contract['end_date']).date()}T23:59:59Z"}
    return {
        "ocid": f"{ocid_prefix}-{cid}",
        "id": f"{cid}-{as_of:%Y%m%d}",
        "date": f"{as_of}T00:00:00Z",
        "tag": ["contract", "implementation"],
        "initiationType": "tender",
        "language": "en",
        "parties": [{"id": "buyer", "name": buyer, "roles": ["buyer"]},
                    {**supplier, "roles": ["supplier"]}],
        "buyer": {"id": "buyer", "name": buyer},
        "awards": [{"id": f"{cid}-award", "status": "active", "value": _value(
            contract["amount_usd"]), "suppliers": [supplier], "contractPeriod": period}],
        "contracts": [{
            "id": cid, "awardID": f"{cid}-award", "title": f"{supplier['name']}: {cid}",
            "description": str(contract["target_description"] or ""), "status": status,
            "period": period, "value": _value(contract["amount_usd"]),
            "items": [{"id": str(i + 1), "description": code,
                       "classification": {"scheme": "x_plumbline_service_code", "id": code}}
                      for i, code in enumerate(codes)],
            "implementation": {"metrics": metrics},
        }],
    }


def write_ocds(settings: Settings, contracts: pd.DataFrame, outcomes: pd.DataFrame) -> Path:
    package = {
        "uri": f"{settings.ocid_prefix}/release_package_{settings.as_of:%Y%m%d}.json",
        "version": "1.1",
        # the data's as-of date, so the same data always gives the same bytes
        "publishedDate": f"{settings.as_of}T00:00:00Z",
        "publisher": {"name": settings.buyer_name},
        "license": "https://creativecommons.org/publicdomain/zero/1.0/",
        "extensions": [("https://raw.githubusercontent.com/open-contracting-extensions/"
                       "ocds_metric_extension/master/extension.json")],
        "releases": [ocds_release(c, outcomes, settings.as_of, settings.ocid_prefix,
                                  settings.buyer_name) for _, c in contracts.iterrows()],
    }
    path = settings.outbox / "public" / "ocds" / f"release_package_{settings.as_of:%Y%m%d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(package, indent=2, default=str))
    return path


# ---------------------------------------------------------------- charts and pages


def with_bounds(frame: pd.DataFrame) -> pd.Series:
    """The share in time, or where its count is suppressed the bound that the suppression
    already implies ("under 8%")."""
    share = frame["share_in_time"].astype(object)
    if "share_bound" in frame:
        share = share.where(share.notna(), frame["share_bound"])
    return share


def write_personal_best(settings: Settings, agency: str, frame: pd.DataFrame,
                        png: bytes) -> Path:
    folder = settings.outbox / agency
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "personal_best.png").write_bytes(png)
    pooled = sorted(set(frame["grain"]) - {"month"})
    rows = frame.sort_values("period_start").tail(12)
    page = render(
        "personal_best.html.j2", organisation=agency, png=base64.b64encode(png).decode(),
        pooled=" and ".join(g + "s" for g in pooled),
        periods=table(rows.assign(partial=rows["partial"].map({True: "not yet complete",
                                                              False: ""}),
                                  share_in_time=with_bounds(rows)),
                      ["period", "grain", "steps_due", "steps_in_time", "share_in_time",
                       "partial"]))
    (folder / "personal_best.html").write_text(page, encoding="utf-8")
    # the public copy: the public folder stands alone and links into no organisation's folder
    public = settings.outbox / "public" / "personal_best"
    public.mkdir(parents=True, exist_ok=True)
    (public / f"{agency}.html").write_text(page, encoding="utf-8")
    return folder / "personal_best.png"


MONEY_COLUMNS = ("monthly_amount_usd", "cost_per_child_with_lower_next_test")


def shown(column: str, value: object) -> str:
    """A published figure as a reader expects it: suppressed as –, shares as percentages,
    money as dollars, counts as whole numbers."""
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return "–"
    if column.startswith("share_"):
        return f"{float(value):.0%}"
    if column in MONEY_COLUMNS:
        return f"${float(value):,.0f}"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    return str(value)


def table(frame: pd.DataFrame, columns: list[str]) -> dict[str, list]:
    """A published table for a page template: column labels and formatted cells (escaped by
    the template)."""
    return {"columns": [c.replace("_", " ") for c in columns],
            "rows": [[shown(c, r[c]) for c in columns] for _, r in frame.iterrows()]}


SERVICE_COLUMNS = ("services", "children_served", "lead_referred_children",
                   "case_management_in_time")
OUTCOME_COLUMNS = ("next_test_lower", "cost_per_child_with_lower_next_test")


def contract_rows(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Each contract's last three months and its to-date row, with "not yet" where a month is
    still under way or its outcomes' window has not ended (never a 0 that means "too soon")."""
    f = outcomes.copy()
    f["order"] = f["month"].where(f["month"] != "ALL", "9999")
    f = f.sort_values(["contract_id", "order"]).groupby("contract_id").tail(4)
    f = f.astype({c: object for c in (*SERVICE_COLUMNS, *OUTCOME_COLUMNS)})
    f.loc[~f["month_complete"].astype(bool) & (f["month"] != "ALL"),
          list(SERVICE_COLUMNS)] = "not yet"
    f.loc[~f["outcomes_final"].astype(bool), list(OUTCOME_COLUMNS)] = "not yet"
    f["month"] = f["month"].replace({"ALL": "to date"})
    return f


def write_index(settings: Settings, tables: dict[str, pd.DataFrame], package: Path,
                charts: dict[str, Path], pngs: dict[str, object]) -> Path:
    by_zip = tables["policy_lead_followup_by_zip"]
    city = by_zip[by_zip["zip5"] == "ALL"].sort_values("month")
    tested_png, followup_png = pngs["tested"], pngs["followup"]
    pooled = tables["policy_followup_pooled"]
    recent = (pooled.sort_values(["rule_title", "period_start"]).groupby("rule_title").tail(6)
              .assign(partial=lambda d: d["partial"].map({True: "not yet complete",
                                                          False: ""}),
                      share_in_time=with_bounds))
    latest = by_zip["month"].max() if len(by_zip) else ""
    outcome_days = int(seed_values("lead_parameters", key="parameter")["outcome_window_days"])
    # every published table as a CSV beside the page (spreadsheet-safe), linked under its table
    data_dir = settings.outbox / "public" / "data"
    for name in PUBLISHED:
        write_csv(tables[name], data_dir / f"{name}.csv")

    page = render(
        "indicators.html.j2", as_of=settings.as_of, package=package.name,
        organisations=sorted(charts), outcome_days=outcome_days, latest=str(latest),
        followup_png=base64.b64encode(followup_png).decode(),
        tested_png=base64.b64encode(tested_png).decode(),
        followup=table(recent, ["rule_title", "period", "grain", "steps_due", "steps_in_time",
                                "share_in_time", "partial"]),
        city=table(city.tail(12), ["month", "children_tested", "children_elevated",
                                   "children_confirmed",
                                   *(f"share_{in_time}" for _, in_time in FOLLOWUP_PAIRS)]),
        by_zip=table(by_zip[by_zip["month"] == latest],
                     ["zip5", "children_tested", "children_elevated", "children_confirmed"]),
        contracts=table(contract_rows(tables["contract_outcomes"]),
                        ["contract_id", "provider_name", "month", "monthly_amount_usd",
                         "services", "children_served", "lead_referred_children",
                         "case_management_in_time", "next_test_lower",
                         "cost_per_child_with_lower_next_test"]))
    path = settings.outbox / "public" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
