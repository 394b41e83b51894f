use super::*;

fn info(version: u32, name: &str) -> MigrationInfo {
    MigrationInfo { version, name: name.to_owned(), checksum: crate::migration::checksum(name) }
}

fn applied(info: &MigrationInfo, status: Status) -> AppliedMigration {
    AppliedMigration {
        version: info.version,
        name: info.name.clone(),
        checksum: info.checksum.clone(),
        status,
        started_at: "2026-11-21T10:00:00Z".to_owned(),
        finished_at: None,
        applied_by: "arn:aws:iam::123456789012:user/ci".to_owned(),
        tool_version: "0.1.0".to_owned(),
        error: None,
        recovered_by: None,
        recovered_at: None,
    }
}

fn known() -> Vec<MigrationInfo> {
    vec![info(1, "create_customers"), info(2, "add_postcode_index"), info(3, "enable_ttl")]
}

fn refusal(applied: &[AppliedMigration], known: &[MigrationInfo]) -> Vec<String> {
    pending(applied, known).unwrap_err().0.iter().map(ToString::to_string).collect()
}

#[test]
fn from_empty_everything_is_pending_in_order() {
    assert_eq!(pending(&[], &known()), Ok(vec![1, 2, 3]));
}

#[test]
fn applied_migrations_are_skipped() {
    let k = known();
    assert_eq!(pending(&[applied(&k[0], Status::Succeeded)], &k), Ok(vec![2, 3]));
    let all: Vec<_> = k.iter().map(|i| applied(i, Status::Succeeded)).collect();
    assert_eq!(pending(&all, &k), Ok(vec![]));
}

#[test]
fn a_changed_checksum_is_refused() {
    let k = known();
    let mut record = applied(&k[0], Status::Succeeded);
    record.checksum = "ab12".repeat(16);
    let errors = refusal(&[record], &k);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .starts_with("migration 1 (create_customers) was applied with checksum ab12ab12ab12…, the code now has "),
        "{errors:?}"
    );
}

#[test]
fn a_missing_migration_is_refused() {
    let k = known();
    let records: Vec<_> = k.iter().map(|i| applied(i, Status::Succeeded)).collect();
    assert_eq!(
        refusal(&records, &k[..2]),
        ["migration 3 (enable_ttl) is in the ledger but not in the code: restore it (migrations are append-only)"]
    );
}

#[test]
fn an_out_of_order_migration_is_refused() {
    let k = known();
    let records = [applied(&k[0], Status::Succeeded), applied(&k[2], Status::Succeeded)];
    assert_eq!(
        refusal(&records, &k),
        [
            "migration 2 (add_postcode_index) is not applied but the later migration 3 is: give the new migration a version after 3"
        ]
    );
}

#[test]
fn running_and_failed_records_are_refused_with_how_to_recover() {
    let k = known();
    let records = [applied(&k[0], Status::Running)];
    assert_eq!(
        refusal(&records, &k),
        [
            "migration 1 (create_customers) is running since 2026-11-21T10:00:00Z (by arn:aws:iam::123456789012:user/ci): check the tables it touches, then run `recover --version 1 --rerun` to apply it again (resuming its data steps), or `recover --version 1 --resolved` if you completed it by hand"
        ]
    );
    let mut failed = applied(&k[0], Status::Failed);
    failed.error = Some("table customers: index by_postcode already exists".to_owned());
    let errors = refusal(&[failed], &k);
    assert!(errors[0].contains("is failed since") && errors[0].contains("error: table customers: index by_postcode"));
}

#[test]
fn the_code_must_list_unique_versions_in_order() {
    let mut k = known();
    k.push(info(3, "enable_streams"));
    assert_eq!(refusal(&[], &k), ["migration version 3 is used twice in the code (enable_ttl and enable_streams)"]);
    let k = vec![info(2, "b"), info(1, "a")];
    assert_eq!(refusal(&[], &k), ["migrations 1 and 2 are listed out of order in the code; list them by version"]);
}

#[test]
fn every_reason_is_reported_at_once() {
    let k = known();
    let mut changed = applied(&k[0], Status::Failed);
    changed.checksum = "00".repeat(32);
    let ghost = applied(&info(9, "ghost"), Status::Succeeded);
    assert_eq!(refusal(&[changed, ghost], &k).len(), 5, "dirty, changed, missing and two out of order");
}

#[test]
fn interrupted_and_rerun_migrations_are_pending_again() {
    let k = known();
    let records = [applied(&k[0], Status::Succeeded), applied(&k[1], Status::Interrupted)];
    assert_eq!(pending(&records, &k), Ok(vec![2, 3]));
    let records = [applied(&k[0], Status::Rerun)];
    assert_eq!(pending(&records, &k), Ok(vec![1, 2, 3]));
}

#[test]
fn a_migration_marked_for_rerun_may_have_been_fixed() {
    let k = known();
    let mut record = applied(&k[0], Status::Rerun);
    record.checksum = "00".repeat(32);
    assert_eq!(pending(&[record], &k), Ok(vec![1, 2, 3]));
}
