"""Record linkage: one person_id per child across every agency's records."""


import dagster as dg

from linkage.run import run_linkage
from pipelines.defs.resources import PlumblineSettings
from pipelines.stores import connect

PERSON_FEEDS = ["raw_health__blood_lead", "raw_housing__residents", "raw_schools__enrollment",
                "raw_providers__services",
                # WRONG_PERSON answers become cannot-links
                "raw_feedback__alert_feedback"]


class LinkageConfig(dg.Config):
    """Retrain the Splink model on the current records (otherwise the city's saved model is
    reused, and retrained only once the data has doubled)."""

    retrain: bool = False


@dg.asset(
    group_name="linkage",
    owners=["team:data-engineering"],
    kinds={"duckdb", "splink"},
    deps=PERSON_FEEDS,
    description=(
        "Vault table linkage.person_crosswalk (source, record_key, person_id): every "
        "person-record linked by a Splink model trained on the records themselves. person_ids "
        "are random and stable across runs; identities never leave the vault."
    ),
)
def person_crosswalk(context: dg.AssetExecutionContext, config: LinkageConfig,
                     plumbline: PlumblineSettings) -> dg.MaterializeResult:
    settings = plumbline.settings()
    with connect(settings.vault_path) as vault:
        stats = run_linkage(vault, settings.data_dir / "linkage", retrain=config.retrain)
    context.log.info(
        f"linked {stats['records']} records into {stats['persons']} persons "
        f"({stats['new_person_ids']} new ids, largest cluster {stats['largest_cluster']})")
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(v) for k, v in stats.items()})
