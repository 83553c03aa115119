"""The landing sensor: every complete delivery file becomes one run of its feed's asset."""

import hashlib
import json
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.defs.datalab.assets import DATALAB_ASSET_KEYS
from pipelines.feeds import FEEDS
from pipelines.ingest import file_sha256, pending_files
from pipelines.landing import not_read
from pipelines.runs import fail_dead_runs
from pipelines.stores import data_dir_from_env, landing_from_env


def _vault_state(data_dir: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """What the vault has already read, (path, sha256) of every delivery, and the SHA-256 of
    every data-lab request answered and erased (a re-send of those is answered again).

    A busy vault (another run writing) is not waited for: the request is made anyway, and the
    ingest run itself skips what it has seen.
    """
    vault = data_dir / "vault.duckdb"
    read: set[tuple[str, str]] = set()
    erased: set[str] = set()
    if not vault.exists():
        return read, erased
    try:
        with duckdb.connect(str(vault), read_only=True) as con:
            read = set(con.execute("select path, sha256 from ingest.deliveries").fetchall())
            erased = {s for (s,) in con.execute(
                "select sha256 from datalab.requests where erased_at is not null").fetchall()}
    except duckdb.Error:
        pass
    return read, erased


@dg.sensor(
    name="landing_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[*(dg.AssetKey(f"raw_{f.name}") for f in FEEDS), *DATALAB_ASSET_KEYS,
                     dg.AssetKey("landing_not_read")],
    description=(
        "Watches PLUMBLINE_LANDING. Each complete delivery file (never a `.part`) starts one run "
        "of its feed's ingest asset; the run key is the file's path and SHA-256, so a file is "
        "requested once, and the same bytes under another name get their own DUPLICATE receipt."
    ),
)
def landing_sensor(context: dg.SensorEvaluationContext):
    # a run killed with SIGKILL stays STARTED and would hold the one-run queue for good
    stale = fail_dead_runs(context.instance)
    if stale:
        context.log.warning(f"marked {stale} dead run(s) failed so the queue moves on")
    landing = landing_from_env()
    # cursor: {relative path: [size, mtime_ns, sha256]}; a file is re-hashed only if it changed
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    current: dict[str, list] = {}
    requests = []
    done, erased = _vault_state(data_dir_from_env())
    for feed in FEEDS:
        for path in pending_files(landing, feed):
            relative = path.relative_to(landing).as_posix()
            st = path.stat()
            known = seen.get(relative)
            if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
                sha = known[2]
            else:
                sha = file_sha256(path)
            current[relative] = [st.st_size, st.st_mtime_ns, sha]
            asset = f"raw_{feed.name}"
            selection = [dg.AssetKey(asset)]
            run_key = f"{relative}@{sha[:16]}"
            if feed.store == "request":
                # a request's file is erased once answered: one still here is new, pending, or
                # the same bytes sent again (answered from the audit row, then erased again)
                if (relative, sha) in done and sha not in erased:
                    continue  # pending: the lab's next run takes it on
                selection += DATALAB_ASSET_KEYS
                run_key += f"@{st.st_mtime_ns}"
            elif (relative, sha) in done:
                continue  # read already (by a run by hand, or an earlier sensor run)
            requests.append(dg.RunRequest(
                run_key=run_key,
                asset_selection=selection,
                run_config={"ops": {asset: {"config": {"files": [relative]}}}},
                tags={"plumbline/delivery": relative, "plumbline/sha256": sha[:16],
                      "plumbline/trigger": "sensor"},
            ))
    # what is not read gets its receipt too: one run whenever that set changes
    unread = sorted(f"{n.entry.relative}|{n.entry.size}|{n.entry.mtime_ns}"
                    for n in not_read(landing))
    if unread:
        digest = hashlib.sha256("\n".join(unread).encode()).hexdigest()[:16]
        requests.append(dg.RunRequest(run_key=f"not-read@{digest}",
                                      asset_selection=[dg.AssetKey("landing_not_read")],
                                      tags={"plumbline/trigger": "sensor"}))
    context.update_cursor(json.dumps(current, sort_keys=True))
    if not requests:
        return dg.SkipReason(f"no new delivery files in {landing}")
    return requests
