//! How a rebuild fills its new version before the stream catch-up: by a copy through the
//! tables, or by DynamoDB's Export to S3 and Import from S3 (`RebuildStep::via_export`), chosen
//! and checked before anything is written.

use crate::error::{Error, Result};
use crate::migration::{RebuildPath, RebuildStep};
use crate::migrator::Migrator;

#[cfg(feature = "export")]
use super::AUTO_EXPORT_BYTES;
#[cfg(feature = "export")]
use super::export::path::{ExportPlace, ExportRebuild, SharedFiles, Transform};
#[cfg(feature = "export")]
use crate::data::{DataReport, ReplayHeader, ReplayStore, copy_map, key_attributes};
#[cfg(feature = "export")]
use crate::migration::Migration;
#[cfg(feature = "export")]
use crate::migrator::StepReport;

/// The way a rebuild's new version is filled.
pub(crate) enum Fill<'a> {
    /// A parallel scan of the old table written into the new one; with a line for the report
    /// when the rebuild asked for the export and runs where there is none.
    Copy(Option<String>),
    /// Export, transform, import, through the environment's bucket.
    #[cfg(feature = "export")]
    Export(&'a ExportPlace),
    /// Without the feature there is no other way (the lifetime is the export's).
    #[cfg(not(feature = "export"))]
    #[allow(dead_code, reason = "never made: it carries the lifetime")]
    Never(std::convert::Infallible, std::marker::PhantomData<&'a ()>),
}

impl Migrator {
    /// Chooses how `rebuild` fills its new version, and for the export, checks what it needs:
    /// point-in-time recovery on `old`, no local secondary index in the new version, a bucket.
    pub(crate) async fn choose_fill(&self, rebuild: &RebuildStep, old: &str) -> Result<Fill<'_>> {
        let refuse = |reason: String| Error::Rebuild { table: rebuild.table.name.clone(), reason };
        match rebuild.path {
            RebuildPath::Copy => Ok(Fill::Copy(None)),
            RebuildPath::Auto => {
                #[cfg(feature = "export")]
                if let Some(place) = &self.export
                    && rebuild.table.local_indexes.is_empty()
                    && self.table_size(old).await? >= AUTO_EXPORT_BYTES
                    && self.point_in_time_recovery(old).await?
                {
                    return Ok(Fill::Export(place));
                }
                Ok(Fill::Copy(None))
            }
            RebuildPath::Export => {
                #[cfg(not(feature = "export"))]
                {
                    let _ = old;
                    Err(refuse(
                        "the rebuild asks for Export to S3 (.via_export()), and this build of the engine has no `export` feature: build the runner with dynamo-migrate's `export` feature (the `cli` feature has it)".to_owned(),
                    ))
                }
                #[cfg(feature = "export")]
                {
                    let env = &self.environment;
                    let Some(place) = &self.export else {
                        if self.exec.local {
                            return Ok(Fill::Copy(Some(format!(
                                "{old}: copied, not exported: this endpoint has no Export to S3 and environment {env} names no bucket; the transform is the same"
                            ))));
                        }
                        return Err(refuse(format!(
                            "the rebuild asks for Export to S3 (.via_export()), and environment {env} names no bucket for it: add `[{env}.exports]` with `bucket = \"<bucket>\"` to environments.toml (see README, \"Huge tables: Export to S3, Import from S3\"), or rebuild by copy with .via_copy(); nothing was written"
                        )));
                    };
                    if let Some(local) = rebuild.table.local_indexes.first() {
                        return Err(refuse(format!(
                            "version {} has the local secondary index {}, and ImportTable cannot create local secondary indexes: rebuild it by copy (.via_copy()); nothing was written",
                            rebuild.table.version, local.name
                        )));
                    }
                    if !self.point_in_time_recovery(old).await? {
                        return Err(refuse(format!(
                            "point-in-time recovery is off on {old}, and Export to S3 reads the table from it: turn it on with `aws dynamodb update-continuous-backups --table-name {old} --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true` (it costs about $0.20 per GB-month of the table; the export then costs about $0.10 per GB, and uses no read capacity), then run the migration again; or rebuild by copy with .via_copy(). Nothing was written"
                        )));
                    }
                    Ok(Fill::Export(place))
                }
            }
        }
    }

    #[cfg(feature = "export")]
    async fn point_in_time_recovery(&self, table: &str) -> Result<bool> {
        use aws_sdk_dynamodb::types::PointInTimeRecoveryStatus;
        let out = self
            .client
            .describe_continuous_backups()
            .table_name(table)
            .send()
            .await
            .map_err(Error::aws(format!("DescribeContinuousBackups {table}")))?;
        Ok(out
            .continuous_backups_description
            .and_then(|d| d.point_in_time_recovery_description)
            .and_then(|p| p.point_in_time_recovery_status)
            == Some(PointInTimeRecoveryStatus::Enabled))
    }

    #[cfg(feature = "export")]
    async fn table_size(&self, table: &str) -> Result<i64> {
        let out = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(Error::aws(format!("DescribeTable {table}")))?;
        Ok(out.table.and_then(|t| t.table_size_bytes).unwrap_or(0))
    }

    /// Fills the new version by export, transform and import (see `export::path`), resuming
    /// what an earlier run began; the new table exists after it, the stream not yet replayed.
    #[cfg(feature = "export")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn fill_by_export(
        &self,
        place: &ExportPlace,
        ledger: &crate::ledger::Ledger,
        names: &crate::names::TableNames,
        store: &ReplayStore,
        migration: &Migration,
        index: usize,
        rebuild: &RebuildStep,
        header: &ReplayHeader,
        report: &mut StepReport,
    ) -> Result<DataReport> {
        let run = self.export_rebuild(place, ledger, names, store, migration, index, rebuild, header).await?;
        let outcome = run.run(header.copy_started_ms, &mut report.calls).await?;
        let [export, transform, check, import] = outcome.took.map(|d| d.as_secs_f64());
        report.calls.push(format!(
            "exported {} and imported {}: {} file(s), {} item(s) read, {} written in {} part(s), {} left out, {} failed (export {export:.1} s, transform {transform:.1} s at {:.0} items/s, check {check:.1} s, import {import:.1} s; {}, {})",
            header.source,
            header.target,
            outcome.files,
            outcome.read,
            outcome.written,
            outcome.parts,
            outcome.left_out,
            outcome.failed,
            outcome.read as f64 / transform.max(0.001),
            outcome.export_arn,
            outcome.import_arn
        ));
        Ok(DataReport {
            scanned: outcome.read,
            written: outcome.written,
            unchanged: outcome.left_out,
            failed: outcome.failed,
            ..DataReport::default()
        })
    }

    /// The export rebuild of `rebuild`, as this migrator runs it.
    #[cfg(feature = "export")]
    #[allow(clippy::too_many_arguments)]
    async fn export_rebuild<'a>(
        &'a self,
        place: &'a ExportPlace,
        ledger: &crate::ledger::Ledger,
        names: &crate::names::TableNames,
        store: &'a ReplayStore,
        migration: &Migration,
        index: usize,
        rebuild: &'a RebuildStep,
        header: &ReplayHeader,
    ) -> Result<ExportRebuild<'a>> {
        let transform = transform_of(&self.client, rebuild, &header.source, &header.target).await?;
        let dead_letters = if self.rehearsal.is_some() { None } else { dead_letters_of(rebuild)? };
        Ok(ExportRebuild {
            client: &self.client,
            place,
            replay: store,
            table: &rebuild.table,
            transform,
            version: migration.version,
            step: index as u32,
            max_failed: rebuild.options.max_failed,
            dead_letters,
            concurrency: rebuild.options.writers.max(1),
            poll: if self.exec.local {
                std::time::Duration::from_millis(200)
            } else {
                std::time::Duration::from_secs(15)
            },
            part_bytes: super::export::path::PART_BYTES,
            wait_for_recovery: !self.exec.local,
            // The files are claimed under leases, and opened to workers when the run has them.
            shared: Some(SharedFiles {
                checkpoints: self.data_context(ledger, migration, index, names).checkpoints().clone(),
                cancel: self.cancel.clone(),
                open: matches!(self.sharing, crate::data::Sharing::Open { .. }),
            }),
            now: self.clock,
        })
    }

    /// Bridges, by incremental exports, the changes of the old table since the export that its
    /// stream may no longer hold (see `export::bridge`); then the stream's catch-up starts where
    /// the bridge ends. Does nothing once a catch-up has completed.
    #[cfg(feature = "export")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn bridge_by_export(
        &self,
        place: &ExportPlace,
        ledger: &crate::ledger::Ledger,
        names: &crate::names::TableNames,
        store: &ReplayStore,
        migration: &Migration,
        index: usize,
        rebuild: &RebuildStep,
        header: &mut ReplayHeader,
        replay: &crate::data::replay::Replay,
        report: &mut StepReport,
    ) -> Result<()> {
        if header.synced_from_ms.is_some() {
            return Ok(());
        }
        let run = self.export_rebuild(place, ledger, names, store, migration, index, rebuild, header).await?;
        let bridged = run.bridge(replay, &mut report.calls).await?;
        if let Some(until) = bridged.until_ms {
            // The stream's catch-up goes on from there: every change before it is applied.
            header.synced_from_ms = Some(until);
            header.records += bridged.records;
            header.failed += bridged.failed;
            store.save_header(header).await?;
        }
        Ok(())
    }

    /// The settings of the new version ImportTable cannot set, where the imported table lacks
    /// them: its stream, deletion protection, table class and tags.
    #[cfg(feature = "export")]
    pub(crate) async fn after_import(&self, new: &str, rebuild: &RebuildStep, report: &mut StepReport) -> Result<()> {
        use crate::planner::Call;
        let table = &rebuild.table;
        let Some(live) = crate::live::describe(&self.client, new, &table.name, table.version, self.exec.local).await?
        else {
            return Err(Error::Rebuild {
                table: table.name.clone(),
                reason: format!("{new} is not there after its import completed"),
            });
        };
        let mut calls = Vec::new();
        if let Some(view) = table.stream
            && live.def.stream.is_none()
        {
            calls.push(Call::EnableStream { table: table.name.clone(), view });
        }
        if table.deletion_protection && !live.def.deletion_protection {
            calls.push(Call::SetDeletionProtection { table: table.name.clone(), enabled: true });
        }
        if table.table_class != live.def.table_class && !live.not_checked.contains(&"table_class") {
            calls.push(Call::SetTableClass { table: table.name.clone(), class: table.table_class });
        }
        let missing: Vec<(String, String)> = table
            .tags
            .iter()
            .filter(|(k, v)| live.def.tags.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !missing.is_empty() && !live.not_checked.contains(&"tags") {
            calls.push(Call::TagTable { table: table.name.clone(), tags: missing });
        }
        for call in &calls {
            let line = call.describe(new);
            match crate::executor::execute(&self.client, new, call, &self.exec).await? {
                crate::executor::Outcome::Done => report.calls.push(line),
                crate::executor::Outcome::Skipped(why) => report.skipped.push(format!("{line}: {why}")),
            }
        }
        Ok(())
    }
}

/// The transform of a rebuild's export files: its function, as the copy applies it.
#[cfg(feature = "export")]
async fn transform_of(
    client: &aws_sdk_dynamodb::Client,
    rebuild: &RebuildStep,
    source: &str,
    target: &str,
) -> Result<std::sync::Arc<Transform>> {
    Ok(std::sync::Arc::new(Transform {
        map: rebuild.map.clone().unwrap_or_else(copy_map),
        target: target.to_owned(),
        target_keys: rebuild.table.keys().map(|k| k.name.clone()).collect(),
        source: source.to_owned(),
        source_keys: key_attributes(client, source).await?,
        drop_unknown_attributes: rebuild.options.drop_unknown_attributes,
    }))
}

/// The rebuild's dead-letter file, when it names one and accepts failures.
#[cfg(feature = "export")]
fn dead_letters_of(rebuild: &RebuildStep) -> Result<Option<std::sync::Arc<crate::data::DeadLetters>>> {
    match (&rebuild.options.dead_letter, rebuild.options.max_failed.accepts_any()) {
        (Some(path), true) => {
            Ok(Some(std::sync::Arc::new(crate::data::DeadLetters::open(path).map_err(|e| Error::Rebuild {
                table: rebuild.table.name.clone(),
                reason: format!("the dead-letter file {}: {e}", path.display()),
            })?)))
        }
        _ => Ok(None),
    }
}

/// How often a worker that joined a rebuild's export files looks whether the export has ended.
#[cfg(feature = "export")]
const EXPORT_WAIT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// A worker's part of a rebuild's export files, which the run opened to workers at `open`: it
/// claims files under leases (`checkpoints`, the worker's) and transforms them as the run does,
/// into the same folder; the run checks and imports them once every file is done.
#[cfg(feature = "export")]
#[allow(clippy::too_many_arguments)]
pub(crate) async fn work_export_files(
    client: &aws_sdk_dynamodb::Client,
    place: Option<&ExportPlace>,
    ledger: crate::ledger::Ledger,
    migration: &Migration,
    step: usize,
    rebuild: &RebuildStep,
    open: &crate::workers::OpenPass,
    checkpoints: crate::data::CheckpointStore,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<DataReport> {
    let Some(place) = place else {
        return Err(Error::Rebuild {
            table: open.source.clone(),
            reason: format!(
                "the pass open to workers ({}) is the export files of its rebuild, and this worker's environment names no bucket for exports: start the worker with the run's environments.toml, whose environment has `[<env>.exports]`",
                open.pass
            ),
        });
    };
    let replay = ReplayStore::open(ledger.clone(), migration.version, step as u32, &open.target).await?;
    // The run opens the pass before its export: wait for the export's files while the pass stays
    // open for the same run; leave when it is closed (the run failed, or another run took over).
    let (state, export_arn) = loop {
        let state = replay.export_state().await?.unwrap_or_default();
        if let (Some(arn), Some(_)) = (&state.export_arn, state.files) {
            let arn = arn.clone();
            break (state, arn);
        }
        match crate::workers::open_pass(&ledger).await? {
            Some(now) if now.open && now.run == open.run && now.pass == open.pass => {}
            _ => return Ok(DataReport::default()),
        }
        if *cancel.borrow() {
            return Err(Error::Interrupted { before: "the export's files".to_owned() });
        }
        tokio::time::sleep(EXPORT_WAIT_POLL).await;
    };
    let run = ExportRebuild {
        client,
        place,
        replay: &replay,
        table: &rebuild.table,
        transform: transform_of(client, rebuild, &open.source, &open.target).await?,
        version: migration.version,
        step: step as u32,
        max_failed: rebuild.options.max_failed,
        dead_letters: dead_letters_of(rebuild)?,
        concurrency: rebuild.options.writers.max(1),
        poll: std::time::Duration::from_secs(1),
        part_bytes: super::export::path::PART_BYTES,
        wait_for_recovery: false,
        shared: None,
        now: crate::data::now_ms,
    };
    run.work_files(&SharedFiles { checkpoints, cancel, open: false }, &state, &export_arn).await
}
