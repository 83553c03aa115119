"""One asset per partner feed: each reads its new deliveries into the vault's raw table."""


from collections import Counter

import dagster as dg

from pipelines.defs.resources import PlumblineSettings
from pipelines.feeds import FEEDS, Feed
from pipelines.ingest import ingest_feed, report_not_read, summarize
from pipelines.stores import ingest_setting


class IngestConfig(dg.Config):
    """Which delivery files to read (paths below the landing root); empty means every new one."""

    files: list[str] = []  # noqa: RUF012 (pydantic copies defaults)


def _feed_asset(feed: Feed) -> dg.AssetsDefinition:
    key = dg.AssetKey(f"raw_{feed.name}")

    @dg.asset(
        name=f"raw_{feed.name}",
        check_specs=[dg.AssetCheckSpec(
            "delivery_suite", asset=key,
            description="This run's deliveries passed the feed's Great Expectations suite: "
                        "no file rejected whole, and rejected rows within the seed's share.")],
        group_name="ingest",
        owners=["team:data-engineering"],
        kinds={"duckdb", "csv"},
        deps=["ingest_settings", "feed_cadence"],
        description=(
            (f"Vault table raw.{feed.name}: every accepted row of {feed.agency}'s "
             if feed.store == "vault" else
             "Data-lab requests: each accepted request's rows go to its own store "
             "(`DATA_DIR/requests/REQUEST_ID.duckdb`), erased once it is answered; from ")
            + f"`{feed.folder}/{feed.pattern.pattern}` deliveries, with its delivery and line. "
            "Each new file is read once (known by its SHA-256), validated row by row, and "
            "answered with a receipt in the sending organisation's `outbox/ORGANISATION/receipts/`."
        ),
    )
    def _asset(context: dg.AssetExecutionContext, config: IngestConfig,
               plumbline: PlumblineSettings):
        deliveries = ingest_feed(plumbline.settings(), feed, only=config.files or None)
        summary = summarize(deliveries)
        # reasons name the field and the rule, never a value: safe for metadata
        reasons = Counter(r.reason for d in deliveries for r in d.rejections)
        for d in deliveries:
            # file names and counts only: never a value from a row
            context.log.info(
                f"{d.path.name}: {d.status}, read {d.rows_read}, accepted {d.rows_accepted}, "
                f"rejected {d.rows_rejected}" + (f" ({d.reason})" if d.status == "REJECTED" else ""))
        rejected_files = {d.path.name: d.reason for d in deliveries if d.status == "REJECTED"}
        yield dg.MaterializeResult(metadata={
            **{k: dg.MetadataValue.int(v) for k, v in summary.items()},
            "rejects_by_reason": dg.MetadataValue.json(dict(reasons.most_common())),
            "rejected_deliveries": dg.MetadataValue.json(rejected_files),
        })
        share = summary["rows_rejected"] / summary["rows_read"] if summary["rows_read"] else 0.0
        limit = ingest_setting("max_rejected_row_share")
        yield dg.AssetCheckResult(
            check_name="delivery_suite", asset_key=key,
            passed=not rejected_files and share <= limit,
            severity=dg.AssetCheckSeverity.WARN,
            description=(f"{len(deliveries)} new deliveries; {len(rejected_files)} rejected whole;"
                         f" {summary['rows_rejected']} of {summary['rows_read']} rows rejected"
                         f" ({share:.1%}, limit {limit:.0%}). Receipts tell partners what to fix."),
            metadata={"rejected_row_share": dg.MetadataValue.float(share),
                      "rejected_deliveries": dg.MetadataValue.json(rejected_files)})

    return _asset




@dg.asset(
    name="landing_not_read",
    group_name="ingest",
    owners=["team:data-engineering"],
    kinds={"duckdb"},
    description=(
        "What in the landing folder is not read, and why: links (never followed), sub-folders, "
        "other extensions, names that do not follow the agreement, folders no agency owns. Each "
        "gets a NOT_READ receipt in its organisation's outbox (or a line in the operator's "
        "DATA_DIR/logs/landing.log) and a row in the vault's ingest.not_read, once."
    ),
)
def landing_not_read(context: dg.AssetExecutionContext, plumbline: PlumblineSettings
                     ) -> dg.MaterializeResult:
    new = report_not_read(plumbline.settings())
    reasons = Counter(n.reason for n in new)  # fixed sentences, never a name or a value
    for reason, n in reasons.most_common():
        context.log.warning(f"{n} landing entr{'ies' if n != 1 else 'y'} not read: {reason}")
    return dg.MaterializeResult(metadata={
        "newly_not_read": dg.MetadataValue.int(len(new)),
        "reasons": dg.MetadataValue.json(dict(reasons.most_common()))})


ingest_assets = [*(_feed_asset(f) for f in FEEDS), landing_not_read]
