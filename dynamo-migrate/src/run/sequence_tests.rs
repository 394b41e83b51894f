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
        [
            "migration 3 (enable_ttl) is in the ledger but not in the code: restore it (migrations are append-only), then run `cargo xtask plan --env <environment>`"
        ]
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
            "migration 1 (create_customers) is running since 2026-11-21T10:00:00Z (by arn:aws:iam::123456789012:user/ci): check the tables it touches, fix its file if it was wrong, then run `cargo xtask recover --env <environment> --version 1 --rerun` to apply it again (resuming its data steps), or `cargo xtask recover --env <environment> --version 1 --resolved` if you completed it by hand"
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
    assert_eq!(
        refusal(&[], &k),
        [
            "migration version 3 is used twice in the code (enable_ttl and enable_streams): give enable_streams the next free version, 4: rename its file m0004_enable_streams.rs (and the name in its migration!(..) and lib.rs), then run `cargo xtask verify`"
        ]
    );
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

fn recovered(info: &MigrationInfo, status: Status, checksum: &str) -> AppliedMigration {
    AppliedMigration {
        checksum: checksum.to_owned(),
        recovered_by: Some("an operator".to_owned()),
        ..applied(info, status)
    }
}

#[test]
fn every_unfinished_state_can_be_rerun_or_resolved_and_takes_the_code_checksum() {
    let code = info(7, "fix_orders");
    for status in [Status::Running, Status::Failed, Status::Interrupted, Status::Rerun] {
        // The file was fixed after the failure: the record still has the old checksum.
        let record = AppliedMigration { checksum: "old".to_owned(), ..applied(&code, status) };
        let rerun = plan_recovery(Some(&record), Some(&code), 7, Recovery::Rerun).unwrap();
        assert_eq!((rerun.from, rerun.to, rerun.checksum.as_str()), (status, Status::Rerun, code.checksum.as_str()));
        let resolved = plan_recovery(Some(&record), Some(&code), 7, Recovery::Resolved).unwrap();
        assert_eq!((resolved.from, resolved.to), (status, Status::Succeeded));
        assert_eq!(resolved.checksum, code.checksum, "{status}: resolving records the fixed file");
        // What the plan leaves is what the next migrate accepts.
        let after = AppliedMigration { status: resolved.to, checksum: resolved.checksum, ..record.clone() };
        assert_eq!(pending(&[after], std::slice::from_ref(&code)).unwrap(), Vec::<u32>::new());
        let after = AppliedMigration { status: rerun.to, checksum: rerun.checksum, ..record };
        assert_eq!(pending(&[after], std::slice::from_ref(&code)).unwrap(), vec![7]);
    }
}

#[test]
fn a_migration_resolved_before_its_file_was_fixed_can_be_resolved_again() {
    let code = info(7, "fix_orders");
    let record = recovered(&code, Status::Succeeded, "old");
    // The dead end this removes: migrate refuses the changed checksum ...
    assert!(
        refusal(std::slice::from_ref(&record), std::slice::from_ref(&code))[0].contains("was applied with checksum")
    );
    // ... and resolving again takes the code's.
    let plan = plan_recovery(Some(&record), Some(&code), 7, Recovery::Resolved).unwrap();
    assert_eq!(
        (plan.from, plan.to, plan.checksum.as_str()),
        (Status::Succeeded, Status::Succeeded, code.checksum.as_str())
    );
    // Not as a re-run, and not for a migration applied normally.
    let refused = plan_recovery(Some(&record), Some(&code), 7, Recovery::Rerun).unwrap_err();
    assert!(matches!(refused, RecoveryError::Applied { .. }));
    let applied_normally = AppliedMigration { checksum: "old".to_owned(), ..applied(&code, Status::Succeeded) };
    let refused = plan_recovery(Some(&applied_normally), Some(&code), 7, Recovery::Resolved).unwrap_err();
    assert!(matches!(refused, RecoveryError::Applied { .. }));
}

#[test]
fn recovery_refusals_end_with_the_command_to_run() {
    let code = info(7, "fix_orders");
    let succeeded = applied(&code, Status::Succeeded);
    for (record, code, expected) in [
        (Some(&succeeded), Some(&code), "`cargo xtask migrate --env <environment>`"),
        (None, Some(&code), "`cargo xtask migrate --env <environment>` applies it"),
        (Some(&succeeded), None, "`cargo xtask status --env <environment>`"),
    ] {
        for how in [Recovery::Rerun, Recovery::Resolved] {
            let message = plan_recovery(record, code, 7, how).unwrap_err().to_string();
            assert!(message.starts_with("migration 7"), "{message}");
            assert!(message.ends_with(expected), "{message}");
        }
    }
}

#[test]
fn a_dirty_record_names_the_complete_recover_commands() {
    let message = refusal(&[applied(&known()[0], Status::Failed)], &known()).join("\n");
    assert!(message.contains("`cargo xtask recover --env <environment> --version 1 --rerun`"), "{message}");
    assert!(message.contains("`cargo xtask recover --env <environment> --version 1 --resolved`"), "{message}");
}
