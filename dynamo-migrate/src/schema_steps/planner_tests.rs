use dynamo_model::{KeyAttr, LocalIndex, Projection, TableClass};

use super::*;
use crate::migration::Destructive;

fn customers() -> TableDef {
    TableDef::new("customers", KeyAttr::n("customer_nr"))
}

fn by_postcode() -> GlobalIndex {
    GlobalIndex::new("by_postcode", KeyAttr::s("postcode"))
}

fn calls(current: Option<&TableDef>, step: SchemaStep) -> Vec<Call> {
    plan_step(current, &step).unwrap().0
}

fn error(current: Option<&TableDef>, step: SchemaStep) -> String {
    plan_step(current, &step).unwrap_err().to_string()
}

#[test]
fn create_table_is_one_call_then_ttl_and_pitr_calls_of_their_own() {
    let def = customers().global_index(by_postcode()).ttl("expires_at").point_in_time_recovery(true);
    let (calls, after) = plan_step(None, &SchemaStep::CreateTable { table: def.clone() }).unwrap();
    assert_eq!(
        calls,
        [
            Call::CreateTable { table: def.clone() },
            Call::EnableTtl { table: "customers".into(), attribute: "expires_at".into() },
            Call::SetPointInTimeRecovery { table: "customers".into(), enabled: true },
        ]
    );
    assert_eq!(after, Some(def));
}

#[test]
fn create_table_that_exists_identically_is_a_no_op_and_otherwise_refused() {
    let def = customers();
    assert_eq!(calls(Some(&def), SchemaStep::CreateTable { table: def.clone() }), []);
    let other = customers().ttl("expires_at");
    assert_eq!(
        error(Some(&other), SchemaStep::CreateTable { table: def }),
        "table customers already exists and differs from the one to create: ttl_attribute: \"expires_at\" -> null"
    );
}

#[test]
fn create_table_validates_the_definition() {
    let bad = TableDef::new("x", KeyAttr::s("id"));
    assert!(error(None, SchemaStep::CreateTable { table: bad }).starts_with("table name \"x\" is invalid"));
}

#[test]
fn steps_on_a_missing_table_are_refused_with_the_step() {
    let step = SchemaStep::AddGlobalIndex { table: "customers".into(), index: by_postcode() };
    assert_eq!(
        error(None, step),
        "table customers does not exist, so add global index by_postcode to customers cannot run; create it in an earlier step"
    );
}

#[test]
fn one_global_index_per_call_and_an_existing_one_is_a_no_op() {
    let step = || SchemaStep::AddGlobalIndex { table: "customers".into(), index: by_postcode() };
    let (calls, after) = plan_step(Some(&customers()), &step()).unwrap();
    assert_eq!(calls.len(), 1);
    assert!(matches!(&calls[0], Call::CreateGlobalIndex { index, .. } if index.name == "by_postcode"));
    assert_eq!(after.as_ref().unwrap().global_indexes, [by_postcode()]);
    assert_eq!(plan_step(after.as_ref(), &step()).unwrap().0, []);
}

#[test]
fn an_index_projection_cannot_change_in_place() {
    let current = customers().global_index(by_postcode().projection(Projection::KeysOnly));
    let step = SchemaStep::AddGlobalIndex { table: "customers".into(), index: by_postcode() };
    assert_eq!(
        error(Some(&current), step),
        "table customers: index by_postcode already exists and differs (global_indexes.by_postcode.projection: \"keys_only\" -> \"all\"); DynamoDB cannot change an index's keys or projection in place: delete it and create it again with replace_global_index(\"customers\", <the index>, Destructive::because(\"...\")) (queries on by_postcode fail until it is backfilled)"
    );
}

#[test]
fn replacing_an_index_deletes_it_then_creates_it_and_resumes_after_the_delete() {
    let current = customers().global_index(by_postcode().projection(Projection::KeysOnly));
    let step = SchemaStep::ReplaceGlobalIndex {
        table: "customers".into(),
        index: by_postcode(),
        destructive: Destructive::because("queries by postcode may fail for a few minutes"),
    };
    let (calls, after) = plan_step(Some(&current), &step).unwrap();
    let wanted = customers().global_index(by_postcode());
    assert_eq!(
        calls,
        [
            Call::DeleteGlobalIndex { table: "customers".into(), index: "by_postcode".into() },
            Call::CreateGlobalIndex { table: "customers".into(), index: by_postcode(), definition: wanted.clone() },
        ]
    );
    assert_eq!(after.as_ref(), Some(&wanted));
    assert!(step.destructive().is_some());
    assert!(describe_step(&step).starts_with("DESTRUCTIVE replace global index by_postcode of customers"));
    // Stopped after the delete: only the create is left; done: nothing.
    assert_eq!(
        calls_of(Some(&customers()), &step),
        [Call::CreateGlobalIndex { table: "customers".into(), index: by_postcode(), definition: wanted.clone() }]
    );
    assert_eq!(calls_of(Some(&wanted), &step), []);
    // A provisioned table's new index is validated with the table.
    let provisioned = customers().provisioned(5, 5).global_index(by_postcode().throughput(1, 1));
    assert!(plan_step(Some(&provisioned), &step).is_err());
}

fn calls_of(current: Option<&TableDef>, step: &SchemaStep) -> Vec<Call> {
    plan_step(current, step).unwrap().0
}

#[test]
fn a_new_index_is_validated_with_the_table() {
    let current = customers();
    let index = GlobalIndex::new("by_nr", KeyAttr::s("customer_nr"));
    let step = SchemaStep::AddGlobalIndex { table: "customers".into(), index };
    assert!(error(Some(&current), step).contains("key attribute customer_nr is declared as N and as S"));
}

#[test]
fn local_indexes_are_refused_as_in_place_changes() {
    let current = customers().sort_key(KeyAttr::s("sk")).local_index(LocalIndex::new("by_date", KeyAttr::s("date")));
    let step = SchemaStep::DeleteGlobalIndex {
        table: "customers".into(),
        index: "by_date".into(),
        destructive: Destructive::because("test"),
    };
    assert_eq!(
        error(Some(&current), step),
        "table customers: by_date is a local secondary index; it can only change by rebuilding the table"
    );
}

#[test]
fn delete_index_removes_it_and_refuses_when_there_is_none() {
    let current = customers().global_index(by_postcode());
    let step = || SchemaStep::DeleteGlobalIndex {
        table: "customers".into(),
        index: "by_postcode".into(),
        destructive: Destructive::because("unused"),
    };
    let (calls, after) = plan_step(Some(&current), &step()).unwrap();
    assert_eq!(calls, [Call::DeleteGlobalIndex { table: "customers".into(), index: "by_postcode".into() }]);
    assert!(calls[0].is_destructive());
    assert_eq!(
        error(after.as_ref(), step()),
        "global index by_postcode of table customers does not exist here, so there is nothing to delete: check the name (a wrong one would be recorded as applied while the table or index meant stays)"
    );
}

/// These are the calls a TTL attribute change needs; `rules` refuses making them in one run,
/// since AWS refuses the second within an hour of the first.
#[test]
fn changing_the_ttl_attribute_disables_then_enables() {
    let current = customers().ttl("old");
    let step = SchemaStep::UpdateTtl { table: "customers".into(), attribute: Some("new".into()) };
    assert_eq!(
        calls(Some(&current), step),
        [
            Call::DisableTtl { table: "customers".into(), attribute: "old".into() },
            Call::EnableTtl { table: "customers".into(), attribute: "new".into() },
        ]
    );
    let same = SchemaStep::UpdateTtl { table: "customers".into(), attribute: Some("old".into()) };
    assert_eq!(calls(Some(&current), same), []);
}

#[test]
fn changing_the_stream_view_is_a_destructive_replacement_of_the_stream() {
    let current = customers().stream(StreamView::KeysOnly);
    let step = SchemaStep::UpdateStream { table: "customers".into(), stream: Some(StreamView::NewAndOldImages) };
    assert_eq!(
        error(Some(&current), step),
        "table customers: changing the stream view from KeysOnly to NewAndOldImages replaces the stream: DynamoDB needs it turned off and on again, which gives it a new ARN, and its consumers (Lambda triggers, Kinesis adapters, replays) stop reading; write it as replace_stream(\"customers\", StreamView::NewAndOldImages, Destructive::because(\"...\")) and move the consumers to the new stream"
    );
    let replace = SchemaStep::ReplaceStream {
        table: "customers".into(),
        stream: StreamView::NewAndOldImages,
        destructive: Destructive::because("the indexer moves to the new stream"),
    };
    assert_eq!(
        calls_of(Some(&current), &replace),
        [
            Call::DisableStream { table: "customers".into() },
            Call::EnableStream { table: "customers".into(), view: StreamView::NewAndOldImages },
        ]
    );
    assert!(replace.destructive().is_some());
    assert_eq!(
        describe_step(&replace),
        "DESTRUCTIVE replace the stream of customers with a NewAndOldImages one: a new stream ARN, its consumers stop (the indexer moves to the new stream)"
    );
    // Stopped after turning the old stream off: only the new one is left to turn on.
    assert_eq!(
        calls_of(Some(&customers()), &replace),
        [Call::EnableStream { table: "customers".into(), view: StreamView::NewAndOldImages }]
    );
    assert_eq!(calls_of(Some(&customers().stream(StreamView::NewAndOldImages)), &replace), []);

    let off = SchemaStep::UpdateStream { table: "customers".into(), stream: None };
    assert_eq!(calls(Some(&current), off), [Call::DisableStream { table: "customers".into() }]);
    let on = SchemaStep::UpdateStream { table: "customers".into(), stream: Some(StreamView::NewImage) };
    assert_eq!(
        calls(Some(&customers()), on),
        [Call::EnableStream { table: "customers".into(), view: StreamView::NewImage }]
    );
}

#[test]
fn a_create_that_stopped_after_create_table_goes_on_with_the_calls_left() {
    let def = customers().ttl("expires_at").point_in_time_recovery(true);
    let create = SchemaStep::CreateTable { table: def.clone() };
    // CreateTable was made; its TTL call failed.
    assert_eq!(
        calls_of(Some(&customers()), &create),
        [
            Call::EnableTtl { table: "customers".into(), attribute: "expires_at".into() },
            Call::SetPointInTimeRecovery { table: "customers".into(), enabled: true },
        ]
    );
    // The TTL call was made; point-in-time recovery failed.
    assert_eq!(
        calls_of(Some(&customers().ttl("expires_at")), &create),
        [Call::SetPointInTimeRecovery { table: "customers".into(), enabled: true }]
    );
    assert_eq!(calls_of(Some(&def), &create), []);
    // A table of that name made otherwise is not taken for ours.
    let other = customers().ttl("valid_until");
    assert!(error(Some(&other), create.clone()).starts_with("table customers already exists and differs"));
    assert!(error(Some(&customers().sort_key(KeyAttr::s("sk"))), create).starts_with("table customers already exists"));
}

#[test]
fn the_table_class_is_one_call_and_none_when_it_holds() {
    let step = SchemaStep::SetTableClass { table: "customers".into(), class: TableClass::StandardInfrequentAccess };
    let (calls, after) = plan_step(Some(&customers()), &step).unwrap();
    assert_eq!(calls, [Call::SetTableClass { table: "customers".into(), class: TableClass::StandardInfrequentAccess }]);
    assert_eq!(
        calls[0].describe("prod_customers"),
        "UpdateTable prod_customers: table class STANDARD_INFREQUENT_ACCESS"
    );
    assert_eq!(calls_of(after.as_ref(), &step), []);
}

#[test]
fn switching_to_provisioned_needs_every_index_throughput() {
    let current = customers().global_index(by_postcode());
    let billing = Billing::Provisioned(Throughput { read: 5, write: 5 });
    let step = SchemaStep::UpdateBilling { table: "customers".into(), billing, index_throughput: vec![] };
    assert_eq!(
        error(Some(&current), step),
        "table customers: switching to provisioned billing needs a throughput for global index by_postcode"
    );
    let t = Throughput { read: 2, write: 3 };
    let step = SchemaStep::UpdateBilling {
        table: "customers".into(),
        billing,
        index_throughput: vec![("by_postcode".into(), t)],
    };
    let (calls, after) = plan_step(Some(&current), &step).unwrap();
    assert_eq!(
        calls,
        [Call::UpdateBilling {
            table: "customers".into(),
            billing: Some(billing),
            index_throughput: vec![("by_postcode".into(), t)]
        }]
    );
    let after = after.unwrap();
    assert_eq!(after.billing, billing);
    assert_eq!(after.global_indexes[0].throughput, Some(t));
    assert_eq!(plan_step(Some(&after), &step).unwrap().0, []);

    // Only what changes is sent: DynamoDB refuses an update to the current capacity.
    let more = Billing::Provisioned(Throughput { read: 9, write: 5 });
    let step = SchemaStep::UpdateBilling {
        table: "customers".into(),
        billing: more,
        index_throughput: vec![("by_postcode".into(), t)],
    };
    assert_eq!(
        plan_step(Some(&after), &step).unwrap().0,
        [Call::UpdateBilling { table: "customers".into(), billing: Some(more), index_throughput: vec![] }]
    );
}

#[test]
fn deletion_protection_blocks_delete_table() {
    let current = customers().deletion_protection(true);
    let delete = || SchemaStep::DeleteTable {
        table: "customers".into(),
        version: None,
        destructive: Destructive::because("gone"),
    };
    assert_eq!(
        error(Some(&current), delete()),
        "table customers has deletion protection on; turn it off in an earlier step (deletion_protection(\"customers\", false))"
    );
    let (calls, after) = plan_step(Some(&customers()), &delete()).unwrap();
    assert_eq!(calls, [Call::DeleteTable { table: "customers".into() }]);
    assert_eq!(after, None);
    assert!(error(None, delete()).starts_with("table customers does not exist here, so there is nothing to delete"));
}

#[test]
fn destructive_steps_say_so_with_their_reason() {
    let step = SchemaStep::DeleteTable {
        table: "customers_v1".into(),
        version: None,
        destructive: Destructive::because("replaced by v2"),
    };
    assert_eq!(describe_step(&step), "DESTRUCTIVE delete table customers_v1 (replaced by v2)");
    assert!(step.destructive().is_some());
    assert!(SchemaStep::CreateTable { table: customers() }.destructive().is_none());
}
