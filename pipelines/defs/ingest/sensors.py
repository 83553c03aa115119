"""The landing sensor: every complete delivery file becomes one run of its feed's asset."""

import hashlib
import json
import os
from pathlib import Path

import dagster as dg

from pipelines.feeds import FEEDS
from pipelines.ingest import pending_files
from pipelines.stores import data_dir_from_env


def landing_from_env() -> Path:
    return Path(os.environ.get("PLUMBLINE_LANDING", data_dir_from_env() / "landing")).resolve()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dg.sensor(
    name="landing_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[f"raw_{f.name}" for f in FEEDS],
    description=(
        "Watches PLUMBLINE_LANDING. Each complete delivery file (never a `.part`) starts one run "
        "of its feed's ingest asset; the run key is the file's path and SHA-256, so a file is "
        "requested once, and the same bytes under another name get their own DUPLICATE receipt."
    ),
)
def landing_sensor(context: dg.SensorEvaluationContext):
    landing = landing_from_env()
    # cursor: {relative path: [size, mtime_ns, sha256]}; a file is re-hashed only if it changed
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    current: dict[str, list] = {}
    requests = []
    for feed in FEEDS:
        for path in pending_files(landing, feed):
            relative = path.relative_to(landing).as_posix()
            st = path.stat()
            known = seen.get(relative)
            if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
                sha = known[2]
            else:
                sha = _sha256(path)
            current[relative] = [st.st_size, st.st_mtime_ns, sha]
            asset = f"raw_{feed.name}"
            requests.append(dg.RunRequest(
                run_key=f"{relative}@{sha[:16]}",
                asset_selection=[dg.AssetKey(asset)],
                run_config={"ops": {asset: {"config": {"files": [relative]}}}},
                tags={"plumbline/delivery": relative, "plumbline/sha256": sha[:16]},
            ))
    context.update_cursor(json.dumps(current, sort_keys=True))
    if not requests:
        return dg.SkipReason(f"no delivery files in {landing}")
    return requests
