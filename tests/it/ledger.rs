//! The run sequence against DynamoDB Local: every refusal of the ledger, with nothing written.

use std::time::Duration;

use dynamo_migrate::run::{
    AppliedMigration, Ledger, Lock, LockOptions, Migrator, Recovery, SequenceError, Status, plan_recovery,
};
use dynamo_migrate::{
    DataStep, Destructive, Error, GlobalIndex, KeyAttr, LocalIndex, Migration, RebuildStep, TableDef,
};

use crate::support;

fn create(version: u32, table: &str) -> Migration {
    Migration::new(version, format!("create_{table}"), &format!("create {table}"))
        .create_table(TableDef::new(table, KeyAttr::s("id")))
}

fn three() -> Vec<Migration> {
    vec![create(1, "alpha"), create(2, "beta"), create(3, "gamma")]
}

async fn migrator(test: &str) -> (Migrator, Ledger) {
    let migrator = Migrator::new(support::client().await, support::names(test), true, "test")
        .with_streams(support::streams().await);
    let ledger = migrator.ledger();
    (migrator, ledger)
}

fn refusals(error: &Error) -> &[SequenceError] {
    match error {
        Error::Sequence(e) => &e.0,
        other => panic!("expected a ledger refusal, got {other:#}"),
    }
}

#[tokio::test]
async fn applies_in_order_records_success_and_then_has_nothing_to_do() {
    let (migrator, ledger) = migrator("in_order").await;
    let report = migrator.run(&three(), Some(2)).await.unwrap();
    assert_eq!(report.applied.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2]);
    let report = migrator.run(&three(), None).await.unwrap();
    assert_eq!(report.applied.iter().map(|m| m.version).collect::<Vec<_>>(), [3]);
    let records = ledger.records().await.unwrap();
    assert_eq!(records.len(), 3);
    for (record, migration) in records.iter().zip(three()) {
        assert_eq!(
            (record.version, &record.name, &record.checksum),
            (migration.version, &migration.name, &migration.checksum)
        );
        assert_eq!(record.status, Status::Succeeded);
        assert!(record.finished_at.is_some());
        assert_eq!(record.tool_version, env!("CARGO_PKG_VERSION"));
    }
    assert!(migrator.run(&three(), None).await.unwrap().applied.is_empty());
}

#[tokio::test]
async fn a_changed_migration_is_refused_and_nothing_is_written() {
    let (migrator, ledger) = migrator("changed").await;
    migrator.run(&three()[..1], None).await.unwrap();
    let before = ledger.records().await.unwrap();
    let mut changed = three();
    changed[0] = Migration::new(1, "create_alpha", "create alpha, edited")
        .create_table(TableDef::new("alpha", KeyAttr::s("id")));
    let failure = migrator.run(&changed, None).await.unwrap_err();
    assert!(failure.report.applied.is_empty());
    assert!(matches!(refusals(&failure.error), [SequenceError::ChangedChecksum { version: 1, .. }]));
    assert!(failure.error.to_string().contains("migration 1 (create_alpha) was applied with checksum"));
    assert_eq!(ledger.records().await.unwrap(), before, "the ledger is untouched");
}

#[tokio::test]
async fn a_migration_missing_from_the_code_is_refused() {
    let (migrator, _) = migrator("missing").await;
    migrator.run(&three(), None).await.unwrap();
    let failure = migrator.run(&three()[..2], None).await.unwrap_err();
    assert!(matches!(refusals(&failure.error), [SequenceError::Missing { version: 3, .. }]));
    assert!(failure.error.to_string().contains("migration 3 (create_gamma) is in the ledger but not in the code"));
}

#[tokio::test]
async fn an_out_of_order_migration_is_refused() {
    let (migrator, ledger) = migrator("out_of_order").await;
    let all = three();
    migrator.run(&[all[0].clone(), all[2].clone()], None).await.unwrap();
    let failure = migrator.run(&all, None).await.unwrap_err();
    assert!(matches!(refusals(&failure.error), [SequenceError::OutOfOrder { version: 2, later: 3, .. }]));
    assert_eq!(ledger.records().await.unwrap().len(), 2, "beta was not applied");
}

#[tokio::test]
async fn a_failed_migration_is_recorded_with_its_error_and_stops_later_runs() {
    let (migrator, ledger) = migrator("failed").await;
    // A failure only running can find: the data step's own.
    let broken = Migration::new(2, "broken_step", "broken")
        .data(DataStep::new("explode", |_| async { anyhow::bail!("the step found a customer without a name") }));
    let migrations = vec![create(1, "alpha"), broken, create(3, "gamma")];
    let failure = migrator.run(&migrations, None).await.unwrap_err();
    assert_eq!(
        failure.report.applied.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1],
        "the report keeps what was applied"
    );
    let message = failure.error.to_string();
    assert!(
        message.starts_with("migration 2 (broken_step), data step explode: the step found a customer without a name"),
        "{message}"
    );

    let records = ledger.records().await.unwrap();
    assert_eq!(records[1].status, Status::Failed);
    assert!(records[1].error.as_deref().unwrap().contains("the step found a customer without a name"));

    let again = migrator.run(&migrations, None).await.unwrap_err();
    assert!(matches!(refusals(&again.error), [SequenceError::Dirty { version: 2, status: Status::Failed, .. }]));
    assert!(again.error.to_string().contains("then run `cargo xtask recover --env <environment> --version 2 --rerun` to apply it again (resuming its data steps), or `cargo xtask recover --env <environment> --version 2 --resolved` if you completed it by hand"));
}

/// Every problem of every pending migration, found before the first write: not even the ledger
/// table is created.
#[tokio::test]
async fn invalid_migrations_are_all_refused_before_anything_is_written() {
    let (migrator, ledger) = migrator("invalid").await;
    let six_lsis = (1..=6).fold(TableDef::new("orders", KeyAttr::s("customer")).sort_key(KeyAttr::s("id")), |t, i| {
        t.local_index(LocalIndex::new(format!("by_{i}"), KeyAttr::s(format!("a{i}"))))
    });
    let migrations = vec![
        create(1, "alpha"),
        Migration::new(2, "six_lsis", "six").create_table(six_lsis),
        // The key type contradicts the table's own (id is S in alpha).
        Migration::new(3, "contradicting_key", "n")
            .add_global_index("alpha", GlobalIndex::new("by_id", KeyAttr::n("id"))),
        Migration::new(4, "delete_nothing", "gone").delete_table("nosuch", Destructive::because("unused")),
        Migration::new(5, "delete_no_index", "gone").delete_global_index(
            "alpha",
            "by_nothing",
            Destructive::because("unused"),
        ),
    ];
    let failure = migrator.run(&migrations, None).await.unwrap_err();
    let message = failure.error.to_string();
    assert!(message.starts_with("nothing was applied: 4 problem(s) in the migrations to apply: "), "{message}");
    for expected in [
        "migration 2 (six_lsis), create table orders: ",
        "migration 3 (contradicting_key), add global index by_id to alpha: ",
        "migration 4 (delete_nothing), DESTRUCTIVE delete table nosuch (unused): table nosuch does not exist here, so there is nothing to delete",
        "migration 5 (delete_no_index), DESTRUCTIVE delete global index by_nothing of alpha (unused): global index by_nothing of table alpha does not exist here",
    ] {
        assert!(message.contains(expected), "{expected}\n  not in: {message}");
    }
    assert!(failure.report.applied.is_empty());
    assert!(!ledger.exists().await.unwrap(), "not even the ledger table was created");
    let prefix = ledger.table().trim_end_matches("dynamo_migrate_ledger");
    let tables = dynamo_migrate::schema_steps::list_tables(&support::client().await).await.unwrap();
    assert!(!tables.iter().any(|t| t.starts_with(prefix)), "no table was created: {tables:?}");
}

#[tokio::test]
async fn a_record_left_running_by_a_crash_stops_the_next_run() {
    let (migrator, ledger) = migrator("running").await;
    ledger.ensure().await.unwrap();
    let crashed = AppliedMigration {
        version: 1,
        name: "create_alpha".into(),
        checksum: three()[0].checksum.clone(),
        status: Status::Running,
        started_at: "2026-11-21T10:00:00Z".into(),
        finished_at: None,
        applied_by: "a run that was killed".into(),
        tool_version: "0.1.0".into(),
        error: None,
        recovered_by: None,
        recovered_at: None,
    };
    ledger.start(&crashed).await.unwrap();
    // A second start of the same migration loses the conditional write.
    assert!(matches!(ledger.start(&crashed).await, Err(Error::LedgerConflict { version: 1, .. })));
    let failure = migrator.run(&three(), None).await.unwrap_err();
    assert_eq!(
        failure.error.to_string(),
        "the ledger refuses to run: migration 1 (create_alpha) is running since 2026-11-21T10:00:00Z (by a run that was killed): check the tables it touches, fix its file if it was wrong, then run `cargo xtask recover --env <environment> --version 1 --rerun` to apply it again (resuming its data steps), or `cargo xtask recover --env <environment> --version 1 --resolved` if you completed it by hand"
    );
}

#[tokio::test]
async fn a_rebuild_must_create_the_next_version_and_an_old_version_is_not_the_current_one() {
    let (migrator, ledger) = migrator("versions").await;
    let wrong_rebuild = vec![
        create(1, "alpha"),
        Migration::new(2, "rebuild_alpha", "rebuild")
            .rebuild_table(RebuildStep::copy(TableDef::new("alpha", KeyAttr::s("id")).version(3))),
    ];
    let failure = migrator.run(&wrong_rebuild, None).await.unwrap_err();
    assert!(
        failure
            .error
            .to_string()
            .contains("rebuild of table alpha: the current version is 1, so the rebuild must create version 2, not 3"),
        "{}",
        failure.error
    );
    assert_eq!(ledger.records().await.unwrap()[1].status, Status::Failed);

    let (migrator, _) = self::migrator("current_old").await;
    let delete_current = vec![
        create(1, "alpha"),
        Migration::new(2, "delete_alpha_v1", "delete").delete_old_table("alpha", 1, Destructive::because("test")),
    ];
    let failure = migrator.run(&delete_current, None).await.unwrap_err();
    assert!(
        failure.error.to_string().contains(
            "table alpha: version 1 is the current one; delete_old_table deletes versions left by a rebuild, delete_table the current one"
        ),
        "{}",
        failure.error
    );
}

#[tokio::test]
async fn only_a_dirty_migration_can_be_recovered() {
    let (migrator, ledger) = migrator("recover_clean").await;
    migrator.run(&three()[..1], None).await.unwrap();
    let records = ledger.records().await.unwrap();
    let code = three()[0].info();
    let error = plan_recovery(records.first(), Some(&code), 1, Recovery::Rerun).unwrap_err();
    assert_eq!(
        error.to_string(),
        "migration 1 (create_alpha) has succeeded; an applied migration never runs again and never changes: put the change in a new migration, then run `cargo xtask migrate --env <environment>`"
    );
    assert_eq!(ledger.records().await.unwrap()[0].status, Status::Succeeded, "nothing changed");
}

#[tokio::test]
async fn a_lock_held_past_the_wait_is_named_and_nothing_is_applied() {
    let (migrator, ledger) = migrator("held").await;
    ledger.ensure().await.unwrap();
    let holder = LockOptions {
        owner: "another run".into(),
        lease: Duration::from_secs(60),
        wait: Duration::ZERO,
        ..LockOptions::new("test")
    };
    let lock = Lock::acquire(&support::client().await, ledger.table(), &holder).await.unwrap();
    let impatient = migrator.with_lock(LockOptions { wait: Duration::from_secs(1), ..LockOptions::new("test") });
    let failure = impatient.run(&three(), None).await.unwrap_err();
    let message = failure.error.to_string();
    assert!(
        message.starts_with(&format!("the migration lock in {} is held by another run since ", ledger.table()))
            && message
                .contains(&format!("its holder is alive (its process {} on this machine runs)", std::process::id()))
            && message.contains("`cargo xtask unlock --env <environment> --force`"),
        "{message}"
    );
    assert!(matches!(failure.error, Error::LockHeld { .. }));
    assert_eq!(ledger.records().await.unwrap(), vec![], "nothing was applied");
    lock.release().await.unwrap();
}
