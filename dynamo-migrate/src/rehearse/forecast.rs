//! What `plan` says of pending data steps and rebuilds before anything runs: each pass's items,
//! time, read and write units and cost (from the tables' descriptions, see `estimate`), and the
//! order in which to deploy a rebuild whose old version a later migration deletes.
//!
//! A data step is async Rust, so the passes it makes are found by running it with a context in
//! which a pass is recorded and returns at once (`Collector::discovery`), over a read-only client:
//! a step that sends anything itself can only read. A step whose code depends on what its passes
//! did sees them do nothing.

use aws_sdk_dynamodb::Client;
use serde::Serialize;
use tokio::sync::watch;

use super::collect::Collector;
use super::estimate::{Estimate, Work, estimate, facts, scan_units};
use crate::client::read_only;
use crate::data::{CheckpointStore, DataContext, RateLimit};
use crate::error::Result;
use crate::migration::{Migration, SchemaStep, Step};
use crate::migrator::names_after;
use crate::names::TableNames;

/// One pass of a pending step, estimated on the whole table.
#[derive(Debug, Clone, Serialize)]
pub struct PassForecast {
    /// The table the pass reads (physical name); empty when the step's passes are not known.
    pub source: String,
    /// The table it writes (physical name; the same in place).
    pub target: String,
    /// The estimate, when the table exists now (`note` says why not otherwise).
    pub estimate: Option<Estimate>,
    /// Why there is no estimate, or what it assumes.
    pub note: Option<String>,
}

/// A pending data step or rebuild and its passes.
#[derive(Debug, Clone, Serialize)]
pub struct StepForecast {
    /// The migration's version.
    pub version: u32,
    /// The step in its migration, from 0.
    pub step: usize,
    /// Its passes: a data step's as it makes them, a rebuild's copy (with the reads of its
    /// convergence check).
    pub passes: Vec<PassForecast>,
    /// For a rebuild: how it fills its new version (a copy, or Export to S3 and Import from S3),
    /// why, and what each way costs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill: Option<String>,
}

/// What Export to S3 costs per GB of the table (a full export, from point-in-time recovery).
pub const EXPORT_USD_PER_GB: f64 = 0.10;
/// What Import from S3 costs per GB of the imported data, uncompressed.
pub const IMPORT_USD_PER_GB: f64 = 0.15;

/// How a rebuild of `rebuild` over the table `facts` describes fills its new version, and the cost
/// of both ways: the copy's (its read and write units on demand, `copy_usd`) against the export's
/// and import's (per GB, no table capacity).
pub fn fill_choice(
    rebuild: &crate::migration::RebuildStep,
    facts: Option<&super::estimate::TableFacts>,
    copy_usd: Option<f64>,
    exports: bool,
    env: &str,
) -> String {
    use crate::migration::RebuildPath;
    let gb = facts.map_or(0.0, |f| f.size_bytes.max(0) as f64 / 1e9);
    let export_usd = gb * (EXPORT_USD_PER_GB + IMPORT_USD_PER_GB);
    let costs = format!(
        "copy {} against export + import ${export_usd:.2} ({gb:.2} GB at ${EXPORT_USD_PER_GB:.2} + ${IMPORT_USD_PER_GB:.2} per GB, no table capacity, plus point-in-time recovery and S3)",
        copy_usd.map_or("(provisioned: paid as capacity)".to_owned(), |usd| format!("${usd:.2} on demand"))
    );
    let big = facts.is_some_and(|f| f.size_bytes >= crate::data::AUTO_EXPORT_BYTES);
    let lsi = rebuild.table.local_indexes.first().map(|l| l.name.clone());
    let (way, why) = match (rebuild.path, exports, lsi) {
        (RebuildPath::Copy, _, _) => ("by copy", "the rebuild says so (.via_copy())".to_owned()),
        (_, _, Some(lsi)) if rebuild.path == RebuildPath::Export => (
            "refused",
            format!(
                "it asks for the export, and ImportTable cannot create its local secondary index {lsi}: use .via_copy()"
            ),
        ),
        (RebuildPath::Export, true, None) => (
            "by Export to S3 and Import from S3",
            "the rebuild says so (.via_export()); it needs point-in-time recovery on the old table".to_owned(),
        ),
        (RebuildPath::Export, false, None) => (
            "refused on AWS (a copy on a local endpoint)",
            format!(
                "it asks for the export and environment {env} names no bucket: add [{env}.exports] to environments.toml"
            ),
        ),
        (RebuildPath::Auto, true, None) if big => (
            "by Export to S3 and Import from S3, if point-in-time recovery is on (else by copy)",
            format!("the table is at least {} GiB", crate::data::AUTO_EXPORT_BYTES >> 30),
        ),
        (RebuildPath::Auto, _, _) => (
            "by copy",
            if big {
                format!("environment {env} names no bucket for exports ([{env}.exports]), which would cost less")
            } else {
                format!("the table is under {} GiB", crate::data::AUTO_EXPORT_BYTES >> 30)
            },
        ),
        (RebuildPath::Export, _, Some(_)) => unreachable!("matched above"),
    };
    format!("fills {way}: {why}; {costs}")
}

/// Estimates the passes of every data step and rebuild of the `pending` migrations against the
/// tables `client` describes (as they are now: a table an earlier pending step creates is empty);
/// `env` names the environment in the commands the notes suggest.
pub async fn forecast(
    client: &Client,
    base: &TableNames,
    migrations: &[Migration],
    pending: &[u32],
    env: &str,
    exports: bool,
) -> Result<Vec<StepForecast>> {
    let client = read_only(client, "the environment (plan)");
    let mut forecasts = Vec::new();
    for migration in migrations.iter().filter(|m| pending.contains(&m.version)) {
        let mut names = names_after(base, migrations.iter().filter(|m| m.version < migration.version));
        for (index, step) in migration.steps.iter().enumerate() {
            let mut fill = None;
            let passes = match step {
                Step::Data(data) => {
                    let discovery = Collector::discovery().for_migration(migration.version);
                    let (_, cancel) = watch::channel(false);
                    let context = DataContext::in_migration(
                        client.clone(),
                        names.clone(),
                        CheckpointStore::default(),
                        index,
                        cancel,
                        false,
                    )
                    .rehearsing(Some(discovery.clone()));
                    match data.run(context).await {
                        Ok(_) => {
                            let mut passes = Vec::new();
                            for run in discovery.runs() {
                                let rate = match run.rate {
                                    Some(RateLimit::ItemsPerSecond(n)) => {
                                        Some((n, format!("its rate limit of {n} items/s")))
                                    }
                                    _ => None,
                                };
                                passes.push(
                                    pass(&client, &run.source, &run.target, (1.0, run.consistent_read), rate, env)
                                        .await?,
                                );
                            }
                            passes
                        }
                        Err(e) => vec![PassForecast {
                            source: String::new(),
                            target: String::new(),
                            estimate: None,
                            note: Some(format!("its passes are not known: run without them, the step failed: {e:#}")),
                        }],
                    }
                }
                Step::Rebuild(rebuild) => {
                    let (old, new) = (
                        names.physical(&rebuild.table.name),
                        names.physical_version(&rebuild.table.name, rebuild.table.version),
                    );
                    // The copy reads the old table strongly consistent, and the convergence
                    // check reads both once more the same way.
                    let copy = pass(&client, &old, &new, (3.0, true), None, env).await?;
                    let copy_usd = copy.estimate.as_ref().and_then(|e| e.on_demand_usd);
                    fill = Some(fill_choice(rebuild, facts(&client, &old).await?.as_ref(), copy_usd, exports, env));
                    vec![copy]
                }
                Step::Schema(_) => vec![],
            };
            if !passes.is_empty() {
                forecasts.push(StepForecast { version: migration.version, step: index, passes, fill });
            }
            if let Some((table, version)) = step.sets_version() {
                names.set_version(table, version);
            }
        }
    }
    Ok(forecasts)
}

/// One pass over `source` into `target`, as an upper bound: every item read, and every item
/// written; it scans the table `scans` times, strongly `consistent` or not.
async fn pass(
    client: &Client,
    source: &str,
    target: &str,
    (scans, consistent): (f64, bool),
    rate: Option<(f64, String)>,
    env: &str,
) -> Result<PassForecast> {
    let place = |note: &str| PassForecast {
        source: source.to_owned(),
        target: target.to_owned(),
        estimate: None,
        note: Some(note.to_owned()),
    };
    let Some(facts) = facts(client, source).await? else {
        return Ok(place("the table does not exist yet (an earlier pending step creates it): nothing to read now"));
    };
    let read_units = scan_units(facts.size_bytes.max(0) as f64, consistent) * scans;
    let work = Work {
        items: facts.item_count.max(0) as u64,
        read_units,
        write_units: facts.item_count.max(0) as f64 * facts.write_units_per_item(),
    };
    let estimate = estimate(work, &facts, rate, None);
    let note = if estimate.seconds.is_none() {
        format!(
            "at most: every item written; the time is not known since DynamoDB describes no throughput for the table (DynamoDB Local does not): `cargo xtask rehearse --env {env}` measures a rate"
        )
    } else {
        "at most: every item written".to_owned()
    };
    Ok(PassForecast { estimate: Some(estimate), ..place(&note) })
}

/// For each pending rebuild whose old version a later pending migration deletes, the order to
/// deploy in, in words; also for an applied rebuild whose delete is pending.
pub fn deploy_sequence(migrations: &[Migration], pending: &[u32], env: &str) -> Vec<String> {
    let mut sequences = Vec::new();
    for rebuilder in migrations {
        for step in &rebuilder.steps {
            let Step::Rebuild(rebuild) = step else { continue };
            let (table, new) = (&rebuild.table.name, rebuild.table.version);
            let deleter = migrations.iter().find(|m| {
                m.steps.iter().any(|s| {
                    matches!(s, Step::Schema(SchemaStep::DeleteTable { table: t, version: Some(v), .. }) if t == table && *v + 1 == new)
                })
            });
            let Some(deleter) = deleter.filter(|d| pending.contains(&d.version)) else { continue };
            let reads = format!(
                "deploy the application that reads and writes {table} version {new} (the schema crate resolves its physical name)"
            );
            let replay = format!(
                "replay what old instances write to version {} meanwhile (`cargo xtask sync --env {env} --until-quiet 900`)",
                new - 1
            );
            if pending.contains(&rebuilder.version) && deleter.version > rebuilder.version {
                sequences.push(format!(
                    "migration {} rebuilds {table} as version {new} and migration {} deletes version {}: apply up to the rebuild (`cargo xtask migrate --env {env} --target {}`), {reads}, {replay}, then apply the rest (`cargo xtask migrate --env {env}`)",
                    rebuilder.version,
                    deleter.version,
                    new - 1,
                    rebuilder.version
                ));
            } else if !pending.contains(&rebuilder.version) {
                sequences.push(format!(
                    "migration {} deletes version {} of {table}, which migration {} replaced: first {reads}, then {replay}, then apply it (`cargo xtask migrate --env {env}`)",
                    deleter.version,
                    new - 1,
                    rebuilder.version
                ));
            }
        }
    }
    sequences
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_rebuild_says_how_it_fills_its_new_version_why_and_what_each_way_costs() {
        use crate::migration::RebuildStep;
        use dynamo_model::{KeyAttr, LocalIndex, TableDef};
        let table = TableDef::new("orders", KeyAttr::s("id")).version(2);
        let facts = |bytes: i64| super::super::estimate::TableFacts {
            table: "prod_orders".into(),
            item_count: bytes / 1000,
            size_bytes: bytes,
            provisioned: None,
            warm: None,
            infrequent_access: false,
        };
        let (small, big) = (facts(2_000_000_000), facts(200_000_000_000));
        let auto = RebuildStep::copy(table.clone());
        let said = fill_choice(&auto, Some(&small), Some(3.1), true, "prod");
        assert!(
            said.starts_with(
                "fills by copy: the table is under 100 GiB; copy $3.10 on demand against export + import $0.50 (2.00 GB"
            ),
            "{said}"
        );
        let said = fill_choice(&auto, Some(&big), Some(310.0), true, "prod");
        assert!(said.starts_with("fills by Export to S3 and Import from S3, if point-in-time recovery is on (else by copy): the table is at least 100 GiB; copy $310.00 on demand against export + import $50.00"), "{said}");
        let said = fill_choice(&auto, Some(&big), Some(310.0), false, "prod");
        assert!(
            said.starts_with("fills by copy: environment prod names no bucket for exports ([prod.exports])"),
            "{said}"
        );
        let said = fill_choice(&auto.clone().via_export(), Some(&small), None, true, "prod");
        assert!(
            said.starts_with("fills by Export to S3 and Import from S3: the rebuild says so (.via_export())"),
            "{said}"
        );
        assert!(said.contains("copy (provisioned: paid as capacity)"), "{said}");
        let said = fill_choice(&auto.clone().via_export(), Some(&small), None, false, "prod");
        assert!(said.starts_with("fills refused on AWS (a copy on a local endpoint): it asks for the export and environment prod names no bucket: add [prod.exports]"), "{said}");
        let with_lsi =
            RebuildStep::copy(table.local_index(LocalIndex::new("by_date", KeyAttr::s("date")))).via_export();
        let said = fill_choice(&with_lsi, Some(&big), None, true, "prod");
        assert!(
            said.starts_with(
                "fills refused: it asks for the export, and ImportTable cannot create its local secondary index by_date"
            ),
            "{said}"
        );
        let said = fill_choice(&auto.via_copy(), Some(&big), Some(1.0), true, "prod");
        assert!(said.starts_with("fills by copy: the rebuild says so (.via_copy())"), "{said}");
    }
    use super::*;
    use crate::migration::{Destructive, RebuildStep};
    use dynamo_model::{KeyAttr, TableDef};

    fn migrations() -> Vec<Migration> {
        let v1 = TableDef::new("customers", KeyAttr::n("customer_nr"));
        vec![
            Migration::new(1, "create", "1").create_table(v1.clone()),
            Migration::new(2, "rebuild", "2").rebuild_table(RebuildStep::copy(v1.version(2).sort_key(KeyAttr::s("r")))),
            Migration::new(3, "delete", "3").delete_old_table("customers", 1, Destructive::because("v2 holds all")),
        ]
    }

    #[test]
    fn a_rebuild_and_its_delete_are_deployed_around_the_application() {
        let both = deploy_sequence(&migrations(), &[2, 3], "prod");
        assert_eq!(both.len(), 1);
        assert!(both[0].starts_with("migration 2 rebuilds customers as version 2 and migration 3 deletes version 1: apply up to the rebuild (`cargo xtask migrate --env prod --target 2`), deploy the application that reads and writes customers version 2"), "{}", both[0]);
        assert!(both[0].ends_with("then apply the rest (`cargo xtask migrate --env prod`)"), "{}", both[0]);
        let delete_only = deploy_sequence(&migrations(), &[3], "prod");
        assert!(
            delete_only[0]
                .starts_with("migration 3 deletes version 1 of customers, which migration 2 replaced: first deploy"),
            "{delete_only:?}"
        );
        assert!(deploy_sequence(&migrations(), &[2], "prod").is_empty());
        assert!(deploy_sequence(&migrations(), &[], "prod").is_empty());
    }
}
