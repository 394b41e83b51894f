use dynamo_model::{GlobalIndex, KeyAttr, TableClass, Throughput};

use super::*;
use crate::migration::SchemaStep;
use crate::planner::plan_step;

/// 2026-03-10T12:00:00Z: noon, so that an hour either way stays within the UTC day.
const NOW: u64 = 1_773_144_000_000;
const MINUTE: u64 = 60_000;
const TABLE: &str = "prod_customers";

fn customers() -> TableDef {
    TableDef::new("customers", KeyAttr::n("customer_nr"))
}

fn book() -> RuleBook {
    RuleBook::new(NOW, RuleScope::Run, "prod")
}

fn recorded(kind: ChangeKind, minutes_ago: u64, version: u32) -> Recorded {
    Recorded { kind, at_ms: NOW - minutes_ago * MINUTE, version }
}

/// The calls `step` plans on `current`, checked by `book` as a step of migration `version`.
fn admit(book: &mut RuleBook, version: u32, current: &TableDef, step: SchemaStep) -> Result<(), Refusal> {
    let (calls, _) = plan_step(Some(current), &step).unwrap();
    book.admit(version, TABLE, Some(current), &calls)
}

fn ttl(attribute: Option<&str>) -> SchemaStep {
    SchemaStep::UpdateTtl { table: "customers".into(), attribute: attribute.map(Into::into) }
}

fn billing(billing: Billing) -> SchemaStep {
    SchemaStep::UpdateBilling { table: "customers".into(), billing, index_throughput: vec![] }
}

fn provisioned(read: i64, write: i64) -> Billing {
    Billing::Provisioned(Throughput { read, write })
}

#[test]
fn changing_the_ttl_attribute_in_one_step_is_refused_with_when_it_becomes_possible() {
    let mut book = book();
    book.learn(TABLE, History::default());
    let refusal = admit(&mut book, 7, &customers().ttl("expires_at"), ttl(Some("valid_until"))).unwrap_err();
    assert_eq!(refusal.rule, Rule::TtlCoolDown);
    assert_eq!(refusal.call, "UpdateTimeToLive prod_customers: enable on valid_until");
    assert_eq!(refusal.possible_at_ms, NOW + 60 * MINUTE);
    assert_eq!(refusal.possible_at, "2026-03-10T13:00:00Z");
    assert!(refusal.split);
    assert_eq!(
        refusal.message,
        "UpdateTimeToLive prod_customers: enable on valid_until would be refused by AWS: AWS refuses a TTL change (UpdateTimeToLive) on a table for up to an hour after the one before (ValidationException: Time to live has been modified multiple times within a fixed interval); changes that count: 2026-03-10T12:00:00Z (UpdateTimeToLive prod_customers: disable on expires_at, in this migration). This migration alone makes too many such changes: change TTL in migrations applied at least an hour apart (a new TTL attribute: disable_ttl in one, enable_ttl in a later one)."
    );
}

#[test]
fn a_ttl_change_within_the_hour_of_one_the_ledger_recorded_is_refused_and_after_it_admitted() {
    let mut book = book();
    book.learn(TABLE, History::new(&Described::default(), &[recorded(ChangeKind::Ttl, 10, 3)], None));
    let refusal = admit(&mut book, 4, &customers().ttl("expires_at"), ttl(None)).unwrap_err();
    assert_eq!(refusal.possible_at_ms, NOW + 50 * MINUTE);
    assert!(
        refusal.message.ends_with(
            "changes that count: 2026-03-10T11:50:00Z (by migration 3, recorded in the ledger). It becomes possible at 2026-03-10T12:50:00Z. Run `cargo xtask migrate --env prod` again from 2026-03-10T12:50:00Z."
        ),
        "{}",
        refusal.message
    );

    let mut book = self::book();
    book.learn(TABLE, History::new(&Described::default(), &[recorded(ChangeKind::Ttl, 61, 3)], None));
    admit(&mut book, 4, &customers().ttl("expires_at"), ttl(None)).unwrap();
}

#[test]
fn a_ttl_change_dynamodb_still_processes_refuses_another_for_up_to_an_hour() {
    let mut book = book();
    let described = Described { ttl_in_transition: true, ..Described::default() };
    book.learn(TABLE, History::new(&described, &[], None));
    let refusal = admit(&mut book, 2, &customers().ttl("expires_at"), ttl(None)).unwrap_err();
    assert_eq!(refusal.possible_at_ms, NOW + 60 * MINUTE);
    assert!(refusal.message.contains("(reported by DynamoDB)"), "{}", refusal.message);
}

#[test]
fn ttl_changes_by_two_migrations_of_one_run_say_to_apply_the_first_alone() {
    let mut book = book();
    book.learn(TABLE, History::default());
    admit(&mut book, 2, &customers(), ttl(Some("expires_at"))).unwrap();
    let refusal = admit(&mut book, 3, &customers().ttl("expires_at"), ttl(None)).unwrap_err();
    assert!(
        refusal.message.contains("(UpdateTimeToLive prod_customers: enable on expires_at, by migration 2 earlier in this run)")
            && refusal.message.ends_with(
                "Apply the migrations before 3 now (`cargo xtask migrate --env prod --target 2`) and the rest from 2026-03-10T13:00:00Z (`cargo xtask migrate --env prod`)."
            ),
        "{}",
        refusal.message
    );
}

#[test]
fn each_migration_alone_ignores_history_and_earlier_migrations_but_not_its_own_changes() {
    let mut book = RuleBook::new(NOW, RuleScope::EachMigration, "verify");
    book.learn(TABLE, History::new(&Described::default(), &[recorded(ChangeKind::Ttl, 1, 1)], None));
    admit(&mut book, 2, &customers(), ttl(Some("expires_at"))).unwrap();
    admit(&mut book, 3, &customers().ttl("expires_at"), ttl(None)).unwrap();
    let refusal = admit(&mut book, 4, &customers().ttl("expires_at"), ttl(Some("valid_until"))).unwrap_err();
    assert_eq!(refusal.rule, Rule::TtlCoolDown);
}

#[test]
fn a_fifth_switch_to_on_demand_in_24_hours_is_refused_until_the_oldest_leaves_the_window() {
    let mut book = book();
    // DynamoDB's last switch is the ledger's last one: counted once.
    let described = Described { last_switch_to_on_demand_ms: Some(NOW - 60 * MINUTE), ..Described::default() };
    let history = History::new(
        &described,
        &[
            recorded(ChangeKind::OnDemand, 23 * 60, 1),
            recorded(ChangeKind::OnDemand, 120, 2),
            recorded(ChangeKind::OnDemand, 60, 3),
        ],
        None,
    );
    book.learn(TABLE, history);
    let provisioned_table = customers().provisioned(5, 5);
    admit(&mut book, 4, &provisioned_table, billing(Billing::PayPerRequest)).unwrap();
    // Back to provisioned is not counted.
    admit(&mut book, 5, &customers(), billing(provisioned(5, 5))).unwrap();
    let refusal = admit(&mut book, 6, &provisioned_table, billing(Billing::PayPerRequest)).unwrap_err();
    assert_eq!(refusal.rule, Rule::OnDemandSwitches);
    assert_eq!(refusal.possible_at_ms, NOW + 60 * MINUTE, "when the switch 23 h ago leaves the 24 h");
    assert!(refusal.message.contains("at most 4 times in a rolling 24 hours"), "{}", refusal.message);
    assert!(refusal.message.contains("by migration 4 earlier in this run"), "{}", refusal.message);
}

#[test]
fn a_switch_dynamodb_reports_but_the_ledger_does_not_know_counts_too() {
    let mut book = book();
    let described = Described { last_switch_to_on_demand_ms: Some(NOW - 5 * 60 * MINUTE), ..Described::default() };
    let recorded: Vec<Recorded> = (1..=3).map(|v| recorded(ChangeKind::OnDemand, 10 * u64::from(v), v)).collect();
    book.learn(TABLE, History::new(&described, &recorded, None));
    let refusal = admit(&mut book, 4, &customers().provisioned(5, 5), billing(Billing::PayPerRequest)).unwrap_err();
    assert!(refusal.message.contains("2026-03-10T07:00:00Z (reported by DynamoDB)"), "{}", refusal.message);
    assert_eq!(refusal.possible_at_ms, NOW - 5 * 60 * MINUTE + ON_DEMAND_WINDOW_MS);
}

#[test]
fn a_third_table_class_change_in_30_days_is_refused() {
    let day = 24 * 60;
    let mut book = book();
    let described = Described { last_table_class_update_ms: Some(NOW - 10 * day * MINUTE), ..Described::default() };
    book.learn(TABLE, History::new(&described, &[recorded(ChangeKind::TableClass, 20 * day, 1)], None));
    let class = |c| SchemaStep::SetTableClass { table: "customers".into(), class: c };
    let refusal = admit(&mut book, 2, &customers(), class(TableClass::StandardInfrequentAccess)).unwrap_err();
    assert_eq!(refusal.rule, Rule::TableClassChanges);
    assert_eq!(refusal.possible_at_ms, NOW + 10 * day * MINUTE);
    assert_eq!(refusal.possible_at, "2026-03-20T12:00:00Z");

    // In one run, from no history: the third change is refused, the first two are not.
    let mut book = self::book();
    book.learn(TABLE, History::default());
    let ia = customers().table_class(TableClass::StandardInfrequentAccess);
    admit(&mut book, 2, &customers(), class(TableClass::StandardInfrequentAccess)).unwrap();
    admit(&mut book, 3, &ia, class(TableClass::Standard)).unwrap();
    let refusal = admit(&mut book, 4, &customers(), class(TableClass::StandardInfrequentAccess)).unwrap_err();
    assert!(refusal.message.contains("--target 3"), "{}", refusal.message);
}

#[test]
fn decreases_are_refused_after_four_in_a_day_until_an_hour_without_one() {
    let described = |minutes_ago: u64| Described {
        decreases: [(String::new(), Decreases { today: 4, last_ms: Some(NOW - minutes_ago * MINUTE) })].into(),
        ..Described::default()
    };
    let table = customers().provisioned(10, 10);
    let mut book = book();
    book.learn(TABLE, History::new(&described(10), &[], None));
    let refusal = admit(&mut book, 2, &table, billing(provisioned(5, 10))).unwrap_err();
    assert_eq!(refusal.rule, Rule::ThroughputDecreases);
    assert_eq!(refusal.possible_at_ms, NOW + 50 * MINUTE);
    assert!(refusal.message.contains("(the table has had 4 decrease(s) today)"), "{}", refusal.message);
    // An increase is no decrease.
    admit(&mut book, 2, &table, billing(provisioned(20, 10))).unwrap();

    let mut book = self::book();
    book.learn(TABLE, History::new(&described(61), &[], None));
    admit(&mut book, 2, &table, billing(provisioned(5, 10))).unwrap();
    let refusal = admit(&mut book, 3, &customers().provisioned(5, 10), billing(provisioned(4, 10))).unwrap_err();
    assert_eq!(refusal.possible_at_ms, NOW + 60 * MINUTE, "an hour after the decrease this run made");

    // Four decreases yesterday leave four for today.
    let yesterday = Described {
        decreases: [(String::new(), Decreases { today: 4, last_ms: Some(NOW - 13 * 60 * MINUTE) })].into(),
        ..Described::default()
    };
    let mut book = self::book();
    book.learn(TABLE, History::new(&yesterday, &[], None));
    for (version, read) in [(2, 9), (3, 8), (4, 7), (5, 6)] {
        admit(&mut book, version, &customers().provisioned(read + 1, 10), billing(provisioned(read, 10))).unwrap();
    }
    let refusal = admit(&mut book, 6, &customers().provisioned(6, 10), billing(provisioned(5, 10))).unwrap_err();
    assert!(refusal.message.contains("--target 5"), "{}", refusal.message);
}

#[test]
fn a_gsi_has_its_own_decreases_and_a_request_lowering_both_needs_both() {
    let index = GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).throughput(10, 10);
    let table = customers().provisioned(10, 10).global_index(index);
    let described = Described {
        decreases: [(String::new(), Decreases { today: 4, last_ms: Some(NOW - 5 * MINUTE) })].into(),
        ..Described::default()
    };
    let mut book = book();
    book.learn(TABLE, History::new(&described, &[], None));
    let lower_index = |table_billing| SchemaStep::UpdateBilling {
        table: "customers".into(),
        billing: table_billing,
        index_throughput: vec![("by_postcode".into(), Throughput { read: 5, write: 5 })],
    };
    admit(&mut book, 2, &table, lower_index(provisioned(10, 10))).unwrap();
    let refusal = admit(&mut book, 3, &table, lower_index(provisioned(5, 10))).unwrap_err();
    assert!(refusal.message.contains("(the table has had 4 decrease(s) today)"), "{}", refusal.message);
}

#[test]
fn a_switch_to_provisioned_is_neither_counted_nor_a_decrease() {
    let mut book = book();
    book.learn(TABLE, History::new(&Described::default(), &[], None));
    for version in 1..=10 {
        admit(&mut book, version, &customers(), billing(provisioned(1, 1))).unwrap();
    }
}

#[test]
fn changes_recorded_before_the_table_was_created_belong_to_an_older_table() {
    let history = History::new(&Described::default(), &[recorded(ChangeKind::Ttl, 30, 1)], Some(NOW - 10 * MINUTE));
    let mut book = book();
    book.learn(TABLE, history);
    admit(&mut book, 2, &customers(), ttl(Some("expires_at"))).unwrap();
}

#[test]
fn only_ttl_switches_to_on_demand_and_class_changes_are_recorded() {
    let provisioned_table = customers().provisioned(5, 5);
    let (calls, _) = plan_step(Some(&provisioned_table), &billing(Billing::PayPerRequest)).unwrap();
    assert_eq!(counted(Some(&provisioned_table), &calls[0]), Some(ChangeKind::OnDemand));
    let (calls, _) = plan_step(Some(&customers()), &billing(provisioned(5, 5))).unwrap();
    assert_eq!(counted(Some(&customers()), &calls[0]), None);
    let (calls, _) = plan_step(Some(&customers()), &ttl(Some("expires_at"))).unwrap();
    assert_eq!(counted(Some(&customers()), &calls[0]), Some(ChangeKind::Ttl));
}
