//! Online table rebuilds: the orchestration of a `RebuildStep` (stream, new version, copy,
//! catch-up), `sync`, and the replay before an old version is deleted. The stream replay itself
//! is `data::replay`; the rule it keeps is argued there.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::data::{
    DataContext, DataReport, DeadLetters, Phase, Replay, ReplayHeader, ReplayReport, ReplayStore, copy_map,
    default_segments, ensure_stream, key_attributes, now_ms,
};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::live::describe;
use crate::lock::Lock;
use crate::migration::{Migration, RebuildStep, SchemaStep, Step};
use crate::migrator::{Migrator, StepOf, StepReport};
use crate::names::TableNames;
use crate::planner::PlanError;

mod check;
/// The export path: export, transform, import.
#[cfg(feature = "export")]
pub(crate) mod export;
pub(crate) mod fill;

use fill::Fill;

pub use check::CheckReport;
use check::Convergence;

/// The longest a rebuild's copy may be estimated to take: stream records live 24 hours, and the
/// catch-up must start well before the oldest of them expire.
pub const COPY_LIMIT: Duration = Duration::from_secs(12 * 3600);

/// How long an old table must have had no writes before `delete_old_table` deletes it, unless
/// the migrator is told otherwise: none on DynamoDB Local, where nothing else writes.
pub const DEFAULT_QUIET_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The fewest items a copy's sample must read for its rate to estimate the copy's duration.
const MIN_SAMPLE: u64 = 100;

/// How the pass of an export's data files, shared with workers, ends its place
/// (`step <n>, export files`).
pub(crate) const EXPORT_FILES: &str = "export files";

/// Tables at least this large go the export way when the rebuild leaves the choice to the tool
/// (`RebuildPath::Auto`) and the environment names a bucket.
pub const AUTO_EXPORT_BYTES: i64 = 100 << 30;

/// Rounds of the convergence check before a rebuild that keeps differing is refused.
const CHECK_ROUNDS: u32 = 5;

/// Why a convergence check runs, which says whether it may repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// At the end of the rebuild, before the new version becomes current: nothing else writes it
    /// yet, so a real difference is repaired from the old table.
    BeforeCurrent,
    /// Before `delete_old_table` deletes the old version: the application may write the new one
    /// by now, so a difference is reported and the delete refused.
    BeforeDelete,
    /// `sync --check`: reported.
    Compare,
    /// `sync --check --repair`: repaired from the old table.
    Repair,
}

impl Check {
    fn repairs(self) -> bool {
        matches!(self, Check::BeforeCurrent | Check::Repair)
    }

    fn refused(self) -> &'static str {
        match self {
            Check::BeforeCurrent => "it does not become current",
            Check::BeforeDelete => "the old table is not deleted",
            Check::Compare | Check::Repair => "the rebuild is not proved",
        }
    }

    fn what_now(self, old: &str, new: &str) -> String {
        match self {
            Check::BeforeCurrent | Check::Repair => format!(
                "The differences stayed through {CHECK_ROUNDS} rounds of repairs: the transform may not be a function of the item alone (a clock, a counter, randomness), or something else writes {new}. Find out which, then run `cargo xtask recover --env <environment> --version <version> --rerun`"
            ),
            Check::BeforeDelete | Check::Compare => format!(
                "If the application has written these items in {new} since it moved there, they are its writes: delete {old} anyway with `cargo xtask migrate --env <environment> --accept-differences`. If it has not (no application writes {new} yet), rewrite them from {old} with `cargo xtask sync --env <environment> --check --repair`, then run `cargo xtask migrate --env <environment>`"
            ),
        }
    }
}

impl Migrator {
    /// The rebuild's replay of `header`'s stream (see `data::replay`).
    async fn replay(&self, store: &ReplayStore, rebuild: &RebuildStep, header: &ReplayHeader) -> Result<Replay> {
        let streams = self.streams.clone().ok_or_else(|| Error::Rebuild {
            table: rebuild.table.name.clone(),
            reason: "the migrator has no DynamoDB Streams client (Migrator::with_streams), so it cannot replay the old table's writes".to_owned(),
        })?;
        let source_keys = key_attributes(&self.client, &header.source).await?;
        let target_keys = key_attributes(&self.client, &header.target).await?;
        Ok(Replay {
            dynamo: self.client.clone(),
            streams,
            source: header.source.clone(),
            keys_carry_over: rebuild.map.is_none() && source_keys == target_keys,
            source_keys,
            target: header.target.clone(),
            target_keys,
            stream_arn: header.stream_arn.clone(),
            map: rebuild.map.clone().unwrap_or_else(copy_map),
            drop_unknown_attributes: rebuild.options.drop_unknown_attributes,
            store: store.clone(),
            cancel: self.cancel.clone(),
            writers: rebuild.options.writers,
            progress: self.progress,
            coarse_times: self.exec.local,
            now: self.clock,
            dead_letters: match (
                &self.rehearsal,
                &rebuild.options.dead_letter,
                rebuild.options.max_failed.accepts_any(),
            ) {
                // A rehearsal keeps the records it cannot transform in a file of its own.
                (Some(rehearsal), _, _) => {
                    Some(open_dead_letters(&rehearsal.replay_file(header.version, header.step))?)
                }
                (None, Some(path), true) => Some(open_dead_letters(path)?),
                _ => None,
            },
        })
    }

    /// Online rebuild (see `data::replay` for the rule it keeps): makes sure the old table has a
    /// stream, creates the next version, copies every item into it through the transform with
    /// strongly consistent reads, then replays every stream record since before the copy. The
    /// new table is then current as of the end of the step; the old one stays, and writes to it
    /// are replayed by `sync` and by the `delete_old_table` step that ends it.
    pub(crate) async fn rebuild(
        &self,
        ledger: &Ledger,
        migration: &Migration,
        index: usize,
        rebuild: &RebuildStep,
        names: &TableNames,
        report: &mut StepReport,
    ) -> Result<DataReport> {
        let table = &rebuild.table.name;
        let current = names.version(table);
        if rebuild.table.version != current + 1 {
            return Err(Error::Rebuild {
                table: table.clone(),
                reason: format!(
                    "the current version is {current}, so the rebuild must create version {}, not {}",
                    current + 1,
                    rebuild.table.version
                ),
            });
        }
        let old = names.physical(table);
        let new = names.physical_version(table, rebuild.table.version);
        let Some(live) = describe(&self.client, &old, table, current, self.exec.local).await? else {
            return Err(PlanError::TableMissing { table: table.clone(), step: report.step.clone() }.into());
        };
        if self.streams.is_none() {
            return Err(Error::Rebuild {
                table: table.clone(),
                reason: "the migrator has no DynamoDB Streams client (Migrator::with_streams), so it cannot replay the old table's writes".to_owned(),
            });
        }
        // Which way the new version is filled, decided (and its pre-flight passed) before
        // anything is written.
        // The export path's futures are large: boxed, they do not grow every future that awaits
        // a rebuild (a debug build's stack holds them).
        let fill = Box::pin(self.choose_fill(rebuild, &old)).await?;
        let key_names = |def: &dynamo_model::TableDef| def.keys().map(|k| k.name.clone()).collect::<Vec<_>>();
        let needs_old_images = rebuild.map.is_some() || key_names(&live.def) != key_names(&rebuild.table);
        let stream = ensure_stream(&self.client, &old, table, needs_old_images, self.exec.wait_timeout).await?;
        let store = ReplayStore::open(ledger.clone(), migration.version, index as u32, &new).await?;
        let mut header = match store.header().await? {
            Some(header) if header.stream_arn != stream.arn => {
                return Err(crate::data::ReplayError::StreamChanged {
                    table: old.clone(),
                    target: new.clone(),
                    version: migration.version,
                    then: header.stream_arn,
                    now: stream.arn,
                }
                .into());
            }
            Some(header) => header,
            None => {
                let header = ReplayHeader {
                    version: migration.version,
                    step: index as u32,
                    source: old.clone(),
                    target: new.clone(),
                    stream_arn: stream.arn.clone(),
                    phase: Phase::Copying,
                    copy_started_ms: now_ms(),
                    synced_from_ms: None,
                    last_write_ms: None,
                    records: 0,
                    failed: 0,
                    dead_letter: rebuild.options.dead_letter.as_ref().map(|p| p.display().to_string()),
                    checked_at_ms: None,
                    check: None,
                };
                store.save_header(&header).await?;
                report.calls.push(format!(
                    "stream on {old} ({}): {}",
                    if stream.old_images { "NEW_AND_OLD_IMAGES" } else { "NEW_IMAGE" },
                    stream.arn
                ));
                header
            }
        };
        let create = SchemaStep::CreateTable { table: rebuild.table.clone() };
        let at = StepOf { migration: migration.version, resume: false };
        let budget = rebuild.options.max_failed;
        let copy_started = Instant::now();
        let by_copy = matches!(fill, Fill::Copy(_));
        #[cfg(feature = "export")]
        let by_export = match &fill {
            Fill::Export(place) => Some(*place),
            _ => None,
        };
        let copied = match fill {
            Fill::Copy(why) => {
                if let Some(why) = why {
                    report.calls.push(why);
                }
                self.apply_schema_step(ledger, at, &create, (&new, rebuild.table.version), report).await?;
                let ctx = self.data_context(ledger, migration, index, names);
                let map = rebuild.map.clone().unwrap_or_else(copy_map);
                let mut options = rebuild.options.clone();
                options.consistent_read = true;
                if header.phase == Phase::Copying {
                    let estimate = self.estimate_copy(&ctx, &old, &new, &options, &map, live.item_count).await?;
                    report.calls.push(estimate);
                }
                ctx.run_pass(old.clone(), new.clone(), options, map).await?
            }
            #[cfg(not(feature = "export"))]
            Fill::Never(never, _) => match never {},
            #[cfg(feature = "export")]
            Fill::Export(place) => {
                let copied = Box::pin(
                    self.fill_by_export(place, ledger, names, &store, migration, index, rebuild, &header, report),
                )
                .await?;
                // What ImportTable cannot set (the stream, deletion protection, the class, tags),
                // then what CreateTable's step sets after the table (TTL, point-in-time recovery),
                // which also checks that the imported table is the version declared.
                Box::pin(self.after_import(&new, rebuild, report)).await?;
                self.apply_schema_step(ledger, at, &create, (&new, rebuild.table.version), report).await?;
                copied
            }
        };
        let copy_secs = copy_started.elapsed().as_secs_f64();
        if header.phase == Phase::Copying {
            header.phase = Phase::CatchingUp;
            header.failed = copied.failed;
            store.save_header(&header).await?;
        }
        let failed = match (copied.failed, &header.dead_letter) {
            (0, _) => String::new(),
            (n, Some(file)) => format!(", {n} failed and left out (the step accepts {budget}; they are in {file})"),
            // A rehearsal keeps them in a file of its own.
            (n, None) => format!(", {n} failed and left out (the step accepts {budget})"),
        };
        let rate = match copied.scanned - copied.resumed {
            0 => "all by an earlier run".to_owned(),
            this_run => format!("{:.0} items/s", this_run as f64 / copy_secs.max(0.001)),
        };
        // The export path has said what it did, phase by phase.
        if by_copy {
            report.calls.push(format!(
                "copied {old} -> {new}: {} items scanned, {} written ({rate}){failed}",
                copied.scanned, copied.written
            ));
        }

        let replay = self.replay(&store, rebuild, &header).await?;
        #[cfg(feature = "export")]
        if let Some(place) = &by_export {
            Box::pin(self.bridge_by_export(
                place,
                ledger,
                names,
                &store,
                migration,
                index,
                rebuild,
                &mut header,
                &replay,
                report,
            ))
            .await?;
        }
        let caught_up = replay.catch_up(&mut header).await?;
        report.calls.push(format!(
            "caught up from the stream of {old}: {} records ({} puts, {} deletes, {:.0} records/s)",
            caught_up.records,
            caught_up.puts,
            caught_up.deletes,
            caught_up.records as f64 / (caught_up.millis as f64 / 1000.0).max(0.001)
        ));
        report.replay = Some(caught_up);
        // The proof before the new version becomes current: nothing else writes it yet, so what
        // differs is repaired from the old table.
        let checked = self.converge(&store, &replay, rebuild, &mut header, Check::BeforeCurrent).await?;
        header.phase = Phase::WaitingForCutOver;
        store.save_header(&header).await?;
        report.calls.push(format!("checked {}; {new} is current, waiting for cut-over", checked.summary()));
        report.check = Some(checked);
        Ok(copied)
    }

    /// The convergence check of a rebuild (see `check`), in rounds: each compares the tables,
    /// replays what was written meanwhile, looks again at what differed, and, where `why` allows,
    /// repairs the real differences from the old table; it ends with a round that finds none (what
    /// is in flight is in the stream). Records the result in the replay header.
    async fn converge(
        &self,
        store: &ReplayStore,
        replay: &Replay,
        rebuild: &RebuildStep,
        header: &mut ReplayHeader,
        why: Check,
    ) -> Result<CheckReport> {
        let described = self
            .client
            .describe_table()
            .table_name(&header.source)
            .send()
            .await
            .map_err(Error::aws(format!("DescribeTable {}", header.source)))?;
        let (items, size) =
            described.table.map(|t| (t.item_count.unwrap_or(0), t.table_size_bytes.unwrap_or(0))).unwrap_or((0, 0));
        let convergence = Convergence {
            client: self.client.clone(),
            source: header.source.clone(),
            source_keys: replay.source_keys.clone(),
            target: header.target.clone(),
            target_keys: replay.target_keys.clone(),
            map: replay.map.clone(),
            drop_unknown_attributes: rebuild.options.drop_unknown_attributes,
            segments: rebuild.options.segments.unwrap_or_else(|| default_segments(size)),
            item_count: items,
        };
        let repair = why.repairs();
        let started = Instant::now();
        let mut report =
            CheckReport { source: header.source.clone(), target: header.target.clone(), ..CheckReport::default() };
        for round in 1..=CHECK_ROUNDS {
            report.start_round(round);
            let found = convergence.differences(&mut report).await?;
            if found.is_empty() {
                break;
            }
            replay.catch_up(header).await?;
            convergence.second_look(found, repair, &mut report).await?;
            if report.is_clean() || !repair {
                break;
            }
        }
        report.millis = started.elapsed().as_millis();
        header.checked_at_ms = Some(now_ms());
        header.check = Some(report.summary());
        store.save_header(header).await?;
        // A rehearsal reports the failures, judged by the step's budget, instead of stopping.
        if self.rehearsal.is_none() && !rebuild.options.max_failed.allows(report.failed, report.old_items) {
            return Err(Error::Rebuild {
                table: rebuild.table.name.clone(),
                reason: format!(
                    "{} of the {} items of {} fail the transform now, and the rebuild accepts {}, so {} {}; fix the transform, or accept the losses in the rebuild with .max_failed_items(n)",
                    report.failed,
                    report.old_items,
                    header.source,
                    rebuild.options.max_failed,
                    header.target,
                    why.refused()
                ),
            });
        }
        if report.is_clean() {
            return Ok(report);
        }
        Err(Error::NotConverged {
            old: header.source.clone(),
            new: header.target.clone(),
            refused: why.refused().to_owned(),
            summary: report.summary(),
            what_now: why.what_now(&header.source, &header.target),
            resumable: why == Check::BeforeDelete,
        })
    }

    /// Estimates the copy's duration from the old table's item count and the rate measured on a
    /// sample (the first page of every segment), and refuses a copy that would not end well
    /// within the stream's 24-hour retention; returns the estimate as a report line.
    async fn estimate_copy(
        &self,
        ctx: &DataContext,
        old: &str,
        new: &str,
        options: &crate::data::PassOptions,
        map: &std::sync::Arc<crate::data::MapFn>,
        item_count: Option<i64>,
    ) -> Result<String> {
        let items = item_count.unwrap_or(0).max(0) as f64;
        let (sampled, took) = ctx.sample_pass(old.to_owned(), new.to_owned(), options.clone(), map.clone()).await?;
        let measured = sampled as f64 / took.as_secs_f64().max(0.001);
        let sample = format!("a sample of {sampled} items copied in {:.2} s", took.as_secs_f64());
        // A rate measured on a few items says nothing (a page of 3 items in a millisecond); the
        // estimate is made only from a sample of at least a page of every segment's worth.
        if sampled < MIN_SAMPLE {
            return Ok(format!(
                "estimated copy: {items:.0} items (the table's ItemCount); {sample}, too few to measure a rate, so no duration is estimated"
            ));
        }
        let (rate, why) = match options.rate {
            Some(crate::data::RateLimit::ItemsPerSecond(limit)) if limit < measured => {
                (limit, format!("the step's rate limit; {sample}, at {measured:.0} items/s"))
            }
            _ => (measured, format!("measured on {sample}")),
        };
        // Shared with workers, each process copies at about the sampled rate (until the tables'
        // capacity is what limits them).
        let processes = match self.sharing {
            crate::data::Sharing::Alone => 1,
            crate::data::Sharing::Open { work, workers, .. } => (workers + u32::from(work)).max(1),
        };
        let estimate = Duration::from_secs_f64(items / (rate * f64::from(processes)).max(0.001));
        let by = if processes > 1 { format!(" by {processes} processes") } else { String::new() };
        let line = format!(
            "estimated copy: {items:.0} items (the table's ItemCount) at {rate:.0} items/s ({why}){by} = {}",
            human(estimate)
        );
        if estimate > self.copy_limit {
            // As many processes as would copy it within the limit, each at the sampled rate.
            let needed = (items / rate.max(0.001) / self.copy_limit.as_secs_f64()).ceil() as u64;
            return Err(Error::Rebuild {
                table: old.to_owned(),
                reason: format!(
                    "{line}, more than the {} a copy may take: stream records live 24 hours, and the catch-up must begin well before the first of them expire. The copy has not started (a sample of it was written to {new}). About {needed} processes at this rate would copy it in time, if the tables' capacity allows: share the copy with workers (`cargo xtask migrate --env <environment> --workers {}`, or an AWS Batch array job of {needed}: --workers batch), raise the tables' write capacity, or lift a rate limit, then run it again",
                    human(self.copy_limit),
                    needed.saturating_sub(1).max(1)
                ),
            });
        }
        Ok(line)
    }

    /// Before an old version of `logical` is deleted: when the rebuild that replaced it went the
    /// online way, replays its stream once more (what old instances wrote during the deploy), then
    /// requires the old table to have had no write for the quiet window.
    pub(crate) async fn before_cut_over(
        &self,
        ledger: &Ledger,
        migrations: &[Migration],
        logical: &str,
        old: u32,
        names: &TableNames,
    ) -> Result<Option<(ReplayReport, String)>> {
        let Some(at) = rebuild_steps(&self.names, migrations)
            .into_iter()
            .find(|at| at.rebuild.table.name == logical && at.rebuild.table.version == old + 1)
        else {
            return Ok(None);
        };
        let (rebuild, store) = (at.rebuild, at.store(ledger).await?);
        let Some(mut header) = store.header().await? else {
            tracing::warn!(
                "table {logical}: version {old} was rebuilt without a stream replay; deleting it without one"
            );
            return Ok(None);
        };
        if header.phase == Phase::CutOver || header.source != names.physical_version(logical, old) {
            return Ok(None);
        }
        let replay = self.replay(&store, rebuild, &header).await?;
        let replayed = replay.catch_up(&mut header).await?;
        let last_write = header.last_write_ms.unwrap_or(header.copy_started_ms);
        let quiet_for = Duration::from_millis(now_ms().saturating_sub(last_write));
        if quiet_for < self.quiet_window {
            return Err(Error::NotQuiet {
                table: header.source.clone(),
                new: header.target.clone(),
                since: crate::ledger::rfc3339_millis(last_write),
                quiet_s: quiet_for.as_secs(),
                window_s: self.quiet_window.as_secs(),
            });
        }
        let line = format!(
            "replayed the stream of {} once more: {} records ({} puts, {} deletes); no write for {} s (quiet window {} s)",
            header.source,
            replayed.records,
            replayed.puts,
            replayed.deletes,
            quiet_for.as_secs(),
            self.quiet_window.as_secs()
        );
        // The proof before the old version goes. The application may write the new one by now,
        // so a difference is reported, never repaired from the old table here.
        let checked = match self.converge(&store, &replay, rebuild, &mut header, Check::BeforeDelete).await {
            Ok(checked) => format!("checked {}", checked.summary()),
            Err(Error::NotConverged { summary, .. }) if self.accept_differences => {
                format!("checked {summary}; the differences are accepted (--accept-differences)")
            }
            Err(e) => return Err(e),
        };
        header.phase = Phase::CutOver;
        store.save_header(&header).await?;
        Ok(Some((replayed, format!("{line}; {checked}"))))
    }
}

/// The convergence check's comparison of two tables through `map` (no replay, no repair), as
/// the benchmark measures it.
#[cfg(all(feature = "cli", feature = "local"))]
pub(crate) async fn bench_check(
    client: aws_sdk_dynamodb::Client,
    source: &str,
    target: &str,
    map: std::sync::Arc<crate::data::MapFn>,
    segments: u32,
) -> Result<CheckReport> {
    let (source_keys, target_keys) = (key_attributes(&client, source).await?, key_attributes(&client, target).await?);
    let described = client.describe_table().table_name(source).send().await.map_err(Error::aws("DescribeTable"))?;
    let convergence = Convergence {
        client,
        source: source.to_owned(),
        source_keys,
        target: target.to_owned(),
        target_keys,
        map,
        drop_unknown_attributes: false,
        segments,
        item_count: described.table.and_then(|t| t.item_count).unwrap_or(0),
    };
    let mut report = CheckReport { source: source.to_owned(), target: target.to_owned(), ..CheckReport::default() };
    report.start_round(1);
    let started = Instant::now();
    let found = convergence.differences(&mut report).await?;
    if !found.is_empty() {
        convergence.second_look(found, false, &mut report).await?;
    }
    report.millis = started.elapsed().as_millis();
    Ok(report)
}

/// What `sync` did for one rebuild waiting for cut-over.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The migration whose rebuild this is.
    pub version: u32,
    /// The rebuild's step in its migration, from 0.
    pub step: u32,
    /// The old table (physical name), whose stream was replayed.
    pub source: String,
    /// The new version's table (physical name).
    pub target: String,
    /// Where the rebuild stands after this sync.
    pub phase: Phase,
    /// What this sync replayed, over all its catch-ups (`shards`: the last one's).
    pub replay: ReplayReport,
    /// The old table's last write the stream showed, RFC 3339.
    pub last_write: Option<String>,
    /// How long the old table has had no write, in seconds.
    pub quiet_s: u64,
    /// The convergence check, when `sync --check` asked for one and it found the tables equal.
    pub check: Option<CheckReport>,
    /// Why this rebuild's replay or check stopped, when it did: a record that cannot be replayed
    /// (or a check that finds differences) stops its own rebuild only, and the others are synced
    /// all the same.
    pub error: Option<String>,
}

/// Whether `sync` checks each rebuild's convergence after its replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncCheck {
    /// Replay only.
    #[default]
    No,
    /// Compare the new table with the transform of the old one, and report what differs.
    Compare,
    /// Compare, and rewrite what differs from the old table: only while no application writes
    /// the new version (it would undo their writes).
    Repair,
}

impl Migrator {
    /// Replays the pending stream records of every rebuild waiting for cut-over, holding the
    /// migration lock; with `until_quiet`, keeps following until each old table has had no write
    /// for that long (Ctrl-C stops it at a shard checkpoint).
    ///
    /// A rebuild whose replay fails (a record it cannot read or transform) is reported with its
    /// error in its [`SyncReport`], and the other rebuilds are synced all the same; the run as a
    /// whole fails only when it cannot go on at all (the lock lost, Ctrl-C, the ledger).
    pub async fn sync(&self, migrations: &[Migration], until_quiet: Option<Duration>) -> Result<Vec<SyncReport>> {
        self.sync_and_check(migrations, until_quiet, SyncCheck::No).await
    }

    /// [`Migrator::sync`], and after each rebuild's replay its convergence check, as `check`
    /// says; a check that finds differences is that rebuild's error.
    pub async fn sync_and_check(
        &self,
        migrations: &[Migration],
        until_quiet: Option<Duration>,
        check: SyncCheck,
    ) -> Result<Vec<SyncReport>> {
        let ledger = self.ledger();
        ledger.ensure().await?;
        let lock = Lock::acquire(&self.client, ledger.table(), &self.lock).await?;
        let (fenced, ledger) = self.fenced_by(&lock);
        let result = fenced.sync_locked(&ledger, migrations, until_quiet, check).await;
        match self.release(lock, "sync").await {
            None => result,
            Some(error) => Err(error),
        }
    }

    async fn sync_locked(
        &self,
        ledger: &Ledger,
        migrations: &[Migration],
        until_quiet: Option<Duration>,
        check: SyncCheck,
    ) -> Result<Vec<SyncReport>> {
        let mut reports = Vec::new();
        for at in rebuild_steps(&self.names, migrations) {
            let store = at.store(ledger).await?;
            let Some(mut header) = store.header().await? else { continue };
            if header.phase != Phase::WaitingForCutOver {
                continue;
            }
            let mut total = ReplayReport::default();
            let mut checked = None;
            let followed = async {
                let replay = self.replay(&store, at.rebuild, &header).await?;
                self.follow(&replay, &mut header, until_quiet, &mut total).await?;
                let why = match check {
                    SyncCheck::No => return Ok(()),
                    SyncCheck::Compare => Check::Compare,
                    SyncCheck::Repair => Check::Repair,
                };
                checked = Some(self.converge(&store, &replay, at.rebuild, &mut header, why).await?);
                Ok::<(), Error>(())
            };
            let error = match followed.await {
                Ok(()) => None,
                // What stops every rebuild alike stops the run.
                Err(e) if e.is_interrupted() || e.is_lock_lost() => return Err(e),
                Err(e) => Some(format!("{e:#}")),
            };
            let last_write = header.last_write_ms.unwrap_or(header.copy_started_ms);
            reports.push(SyncReport {
                version: at.version,
                step: at.step,
                source: header.source.clone(),
                target: header.target.clone(),
                phase: header.phase,
                replay: total,
                last_write: header.last_write_ms.map(crate::ledger::rfc3339_millis),
                quiet_s: now_ms().saturating_sub(last_write) / 1000,
                check: checked,
                error,
            });
        }
        Ok(reports)
    }

    /// Replays one rebuild's stream, and with `until_quiet` keeps following it until its old
    /// table has had no write for that long; adds what it replayed to `total`.
    async fn follow(
        &self,
        replay: &Replay,
        header: &mut ReplayHeader,
        until_quiet: Option<Duration>,
        total: &mut ReplayReport,
    ) -> Result<()> {
        loop {
            let done = replay.catch_up(header).await?;
            total.records += done.records;
            total.puts += done.puts;
            total.deletes += done.deletes;
            total.failed += done.failed;
            total.shards = done.shards;
            total.millis += done.millis;
            let last_write = header.last_write_ms.unwrap_or(header.copy_started_ms);
            let quiet = Duration::from_millis(now_ms().saturating_sub(last_write));
            match until_quiet {
                Some(window) if quiet < window && !*self.cancel.borrow() => {
                    tokio::time::sleep((window - quiet).min(Duration::from_secs(1))).await;
                }
                _ => return Ok(()),
            }
        }
    }
}

/// A replay's dead-letter file.
fn open_dead_letters(path: &std::path::Path) -> Result<std::sync::Arc<DeadLetters>> {
    let open = DeadLetters::open(path)
        .map_err(|e| crate::data::ReplayError::DeadLetter { path: path.display().to_string(), error: e.to_string() })?;
    Ok(std::sync::Arc::new(open))
}

/// A duration for people: seconds, minutes or hours.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Where one rebuild stands, for `status` and `plan`.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildState {
    /// The rebuild's replay header as the ledger holds it (its fields are this value's own in
    /// JSON).
    #[serde(flatten)]
    pub header: ReplayHeader,
    /// The old table's last write the stream showed, RFC 3339.
    pub last_write: Option<String>,
    /// How long ago that was, in seconds: the replay's lag while catching up, the quiet time while
    /// waiting for cut-over.
    pub since_s: Option<u64>,
}

impl std::fmt::Display for RebuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.header;
        write!(f, "migration {}: {} -> {}: {}", h.version, h.source, h.target, h.phase)?;
        match (h.phase, &self.last_write, self.since_s) {
            (Phase::CatchingUp, Some(at), Some(s)) => write!(f, " (newest record applied written at {at}, {s} s ago)"),
            (Phase::WaitingForCutOver, Some(at), Some(s)) => {
                write!(f, " (quiet since {at}, {s} s; `cargo xtask sync` replays what is written meanwhile)")
            }
            _ => Ok(()),
        }?;
        write!(f, "; {} stream records replayed", h.records)?;
        if h.failed > 0 {
            write!(f, "; {} item(s) failed the transform and were left out", h.failed)?;
            if let Some(file) = &h.dead_letter {
                write!(f, " (in {file})")?;
            }
        }
        match (h.checked_at_ms, &h.check) {
            (Some(at), Some(check)) => {
                write!(f, "; last convergence check at {}: {check}", crate::ledger::rfc3339_millis(at))
            }
            _ => write!(f, "; not checked yet"),
        }
    }
}

/// Where every rebuild of `migrations` that went the online way stands.
pub async fn rebuild_states(
    ledger: &Ledger,
    names: &TableNames,
    migrations: &[Migration],
) -> Result<Vec<RebuildState>> {
    let mut states = Vec::new();
    for at in rebuild_steps(names, migrations) {
        let Some(header) = at.store(ledger).await?.header().await? else { continue };
        let last = header.last_write_ms;
        states.push(RebuildState {
            last_write: last.map(crate::ledger::rfc3339_millis),
            since_s: last.map(|ms| now_ms().saturating_sub(ms) / 1000),
            header,
        });
    }
    Ok(states)
}

/// One rebuild step of the migrations, where it stands among them.
pub(crate) struct RebuildAt<'a> {
    pub version: u32,
    /// Its step in its migration, from 0.
    pub step: u32,
    pub rebuild: &'a RebuildStep,
    /// The physical name of the version it rebuilds into.
    pub target: String,
}

impl RebuildAt<'_> {
    /// The ledger items of this rebuild's replay.
    pub(crate) async fn store(&self, ledger: &Ledger) -> Result<ReplayStore> {
        Ok(ReplayStore::open(ledger.clone(), self.version, self.step, &self.target).await?)
    }
}

/// Every rebuild step of `migrations`, in order, with the physical name of the version it
/// creates (table versions as the migrations before it leave them, from `names`).
pub(crate) fn rebuild_steps<'a>(names: &TableNames, migrations: &'a [Migration]) -> Vec<RebuildAt<'a>> {
    let mut names = names.clone();
    let mut found = Vec::new();
    for migration in migrations {
        for (step, at) in migration.steps.iter().enumerate() {
            if let Step::Rebuild(rebuild) = at {
                let target = names.physical_version(&rebuild.table.name, rebuild.table.version);
                found.push(RebuildAt { version: migration.version, step: step as u32, rebuild, target });
            }
            if let Some((table, version)) = at.sets_version() {
                names.set_version(table, version);
            }
        }
    }
    found
}
