"""Record linkage: one person_id per child across every agency's records."""


import dagster as dg

from pipelines.defs.resources import PlumblineSettings
from pipelines.feeds import FEEDS, person_feeds
from pipelines.linking import relink
from pipelines.stores import connect, engine_from_env, linkage_setting

# every person-bearing feed, and the feedback whose WRONG_PERSON answers become cannot-links
PERSON_FEEDS = [f"raw_{f.name}" for f in FEEDS if f in person_feeds() or f.answers_lists]


class LinkageConfig(dg.Config):
    """Retrain the Splink model on the current records and relink every record (otherwise the
    city's saved model is reused, only the week's new and changed records are scored, and the
    model is retrained only when the seed's drift bounds say so). `full` relinks every record
    with the saved model."""

    retrain: bool = False
    full: bool = False


@dg.asset(
    group_name="linkage",
    check_specs=[
        dg.AssetCheckSpec("cluster_size_bound", asset="person_crosswalk", blocking=True,
                          description="No person has more records than the seed's bound "
                                      "(a sign of strangers chained together)."),
        dg.AssetCheckSpec("match_rate_stable", asset="person_crosswalk",
                          description="The share of records linked to another moved no more "
                                      "than the seed's drift since the last run."),
    ],
    owners=["team:data-engineering"],
    kinds={"duckdb", "splink", *(["spark"] if engine_from_env() == "spark" else [])},
    deps=[*PERSON_FEEDS, "linkage_settings"],
    description=(
        "Vault table linkage.person_crosswalk (source, record_key, person_id): every "
        "person-record linked by a Splink model trained on the records themselves. person_ids "
        "are random and stable across runs; identities never leave the vault."
    ),
)
def person_crosswalk(context: dg.AssetExecutionContext, config: LinkageConfig,
                     plumbline: PlumblineSettings):
    settings = plumbline.settings()
    with connect(settings.vault_path) as vault:
        stats = relink(vault, settings, retrain=config.retrain, full=config.full)
    context.log.info(
        f"linked {stats['records']} records into {stats['persons']} persons "
        f"({stats['new_person_ids']} new ids, largest cluster {stats['largest_cluster']})")
    linked, previous = stats.pop("linked_share"), stats.pop("previous_linked_share")
    unseen, why = stats.pop("unseen_name_share"), stats.pop("retrain_reason")
    yield dg.MaterializeResult(metadata={
        **{k: dg.MetadataValue.int(v) for k, v in stats.items()},
        "linked_share": dg.MetadataValue.float(linked),
        # drift since the model was trained, and why it was trained this run (if it was)
        "unseen_name_share": dg.MetadataValue.float(unseen),
        "retrained_because": dg.MetadataValue.text(why or "not retrained")})
    bound = linkage_setting("max_cluster_records")
    yield dg.AssetCheckResult(
        check_name="cluster_size_bound", passed=stats["largest_cluster"] <= bound,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"largest person has {stats['largest_cluster']} records (bound {bound:.0f})")
    drift = linkage_setting("max_link_rate_drift")
    moved = abs(linked - previous) if previous is not None else 0.0
    yield dg.AssetCheckResult(
        check_name="match_rate_stable", passed=moved <= drift,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{linked:.1%} of records linked to another"
                     + (f" (last run {previous:.1%})" if previous is not None else
                        " (first run)")),
        metadata={"linked_share": dg.MetadataValue.float(linked),
                  "change": dg.MetadataValue.float(moved)})
