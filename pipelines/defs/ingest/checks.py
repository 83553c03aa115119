"""Freshness per feed: did each feed deliver within its contract cadence?"""

import dagster as dg

from pipelines.defs.resources import PlumblineSettings
from pipelines.freshness import cadence_feeds, feed_freshness
from pipelines.stores import connect


def _freshness_check(feed_name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(f"raw_{feed_name}"),
        name="fresh_per_contract_cadence",
        description=("The feed delivered within its cadence plus grace (seeds/feed_cadence.csv); "
                     "the same verdict puts a stale-feed warning on the agencies' lists."),
    )
    def _check(plumbline: PlumblineSettings) -> dg.AssetCheckResult:
        settings = plumbline.settings()
        with connect(settings.vault_path) as vault:
            (f,) = [x for x in feed_freshness(vault, settings.as_of) if x.feed == feed_name]
        return dg.AssetCheckResult(
            passed=not f.stale,
            severity=dg.AssetCheckSeverity.WARN,
            description=f.sentence() if f.stale else (
                f"last delivery dated {f.last_extract}, {f.age_days} days before "
                f"{settings.as_of}; expected every {f.cadence_days} days"),
            metadata={"last_extract": dg.MetadataValue.text(str(f.last_extract)),
                      "age_days": dg.MetadataValue.int(f.age_days if f.age_days is not None
                                                       else -1),
                      "cadence_days": dg.MetadataValue.int(f.cadence_days)},
        )

    return _check


# every declared feed with a contract cadence (seeds/feed_cadence.csv)
freshness_checks = [_freshness_check(f) for f in cadence_feeds()]
