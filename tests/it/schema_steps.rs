//! Every schema step against DynamoDB Local: the table read back equals the planner's end state.

use aws_sdk_dynamodb::Client;
use dynamo_migrate::model::diff_tables;
use dynamo_migrate::run::TableNames;
use dynamo_migrate::schema_steps::{ExecOptions, PlanError, describe, execute, plan_step};
use dynamo_migrate::{
    Billing, Destructive, GlobalIndex, KeyAttr, LocalIndex, Projection, SchemaStep, StreamView, TableClass, TableDef,
    Throughput,
};

use crate::support;

/// Plans `step` against the live table, makes the calls, and checks that the table read back
/// is what the planner said it would be. Returns the number of calls made.
async fn apply(client: &Client, names: &TableNames, step: SchemaStep) -> Result<usize, PlanError> {
    let logical = step.table().to_owned();
    let physical = names.physical(&logical);
    let live = describe(client, &physical, &logical, 1, true).await.unwrap();
    let current = live.map(|live| match &step {
        SchemaStep::CreateTable { table } => live.assuming_unchecked_as(table),
        _ => live.def,
    });
    let (calls, after) = plan_step(current.as_ref(), &step)?;
    for call in &calls {
        execute(client, &physical, call, &ExecOptions::new(true)).await.unwrap();
    }
    let live = describe(client, &physical, &logical, 1, true).await.unwrap();
    match (after, live) {
        (None, None) => {}
        (Some(expected), Some(live)) => {
            // Indexes are matched by name; what DynamoDB Local cannot report is left out.
            assert_eq!(diff_tables(&expected, &live.def, &live.not_checked), [], "after {step}");
        }
        (expected, live) => panic!("after {step}: expected {expected:?}, found {live:?}"),
    }
    Ok(calls.len())
}

fn customers() -> TableDef {
    TableDef::new("customers", KeyAttr::n("customer_nr"))
}

#[tokio::test]
async fn create_table_with_every_feature_reads_back_the_same() {
    let (client, names) = (support::client().await, support::names("create_all"));
    let def = TableDef::new("orders", KeyAttr::s("customer"))
        .sort_key(KeyAttr::n("order_nr"))
        .global_index(
            GlobalIndex::new("by_status", KeyAttr::s("status"))
                .sort_key(KeyAttr::n("placed_at"))
                .projection(Projection::Include(vec!["total".into(), "currency".into()]))
                .throughput(2, 3),
        )
        .global_index(GlobalIndex::new("by_sku", KeyAttr::b("sku")).projection(Projection::KeysOnly).throughput(1, 1))
        .local_index(LocalIndex::new("by_date", KeyAttr::s("date")).projection(Projection::KeysOnly))
        .ttl("expires_at")
        .stream(StreamView::NewAndOldImages)
        .provisioned(5, 7)
        .deletion_protection(true)
        .table_class(TableClass::StandardInfrequentAccess)
        .point_in_time_recovery(true)
        .tag("team", "billing");
    assert_eq!(apply(&client, &names, SchemaStep::CreateTable { table: def.clone() }).await.unwrap(), 3);
    // The same step again is a no-op.
    assert_eq!(apply(&client, &names, SchemaStep::CreateTable { table: def }).await.unwrap(), 0);
}

#[tokio::test]
async fn global_indexes_are_added_and_deleted_in_place() {
    let (client, names) = (support::client().await, support::names("gsi"));
    apply(&client, &names, SchemaStep::CreateTable { table: customers() }).await.unwrap();
    let by_postcode = GlobalIndex::new("by_postcode", KeyAttr::s("postcode"));
    let add = || SchemaStep::AddGlobalIndex { table: "customers".into(), index: by_postcode.clone() };
    assert_eq!(apply(&client, &names, add()).await.unwrap(), 1);
    assert_eq!(apply(&client, &names, add()).await.unwrap(), 0);
    let by_name = GlobalIndex::new("by_name", KeyAttr::s("name")).sort_key(KeyAttr::n("customer_nr"));
    apply(&client, &names, SchemaStep::AddGlobalIndex { table: "customers".into(), index: by_name }).await.unwrap();

    let changed = by_postcode.clone().projection(Projection::KeysOnly);
    let refused =
        apply(&client, &names, SchemaStep::AddGlobalIndex { table: "customers".into(), index: changed }).await;
    assert!(matches!(refused, Err(PlanError::IndexDiffers { ref index, .. }) if index == "by_postcode"), "{refused:?}");

    let delete = SchemaStep::DeleteGlobalIndex {
        table: "customers".into(),
        index: "by_postcode".into(),
        destructive: Destructive::because("test"),
    };
    assert_eq!(apply(&client, &names, delete).await.unwrap(), 1);
}

#[tokio::test]
async fn ttl_is_enabled_changed_and_disabled() {
    let (client, names) = (support::client().await, support::names("ttl"));
    apply(&client, &names, SchemaStep::CreateTable { table: customers() }).await.unwrap();
    let ttl = |a: Option<&str>| SchemaStep::UpdateTtl { table: "customers".into(), attribute: a.map(Into::into) };
    assert_eq!(apply(&client, &names, ttl(Some("expires_at"))).await.unwrap(), 1);
    assert_eq!(apply(&client, &names, ttl(Some("expires_at"))).await.unwrap(), 0);
    assert_eq!(apply(&client, &names, ttl(Some("valid_until"))).await.unwrap(), 2);
    assert_eq!(apply(&client, &names, ttl(None)).await.unwrap(), 1);
}

#[tokio::test]
async fn billing_switches_between_on_demand_and_provisioned() {
    let (client, names) = (support::client().await, support::names("billing"));
    let def = customers().global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")));
    apply(&client, &names, SchemaStep::CreateTable { table: def }).await.unwrap();
    let provisioned = Billing::Provisioned(Throughput { read: 4, write: 2 });
    let step = SchemaStep::UpdateBilling {
        table: "customers".into(),
        billing: provisioned,
        index_throughput: vec![("by_postcode".into(), Throughput { read: 3, write: 1 })],
    };
    assert_eq!(apply(&client, &names, step).await.unwrap(), 1);
    let more = Billing::Provisioned(Throughput { read: 8, write: 2 });
    let step = SchemaStep::UpdateBilling {
        table: "customers".into(),
        billing: more,
        index_throughput: vec![("by_postcode".into(), Throughput { read: 3, write: 1 })],
    };
    assert_eq!(apply(&client, &names, step).await.unwrap(), 1);
    let step = SchemaStep::UpdateBilling {
        table: "customers".into(),
        billing: Billing::PayPerRequest,
        index_throughput: vec![],
    };
    assert_eq!(apply(&client, &names, step).await.unwrap(), 1);
}

#[tokio::test]
async fn streams_are_turned_on_changed_and_off() {
    let (client, names) = (support::client().await, support::names("stream"));
    apply(&client, &names, SchemaStep::CreateTable { table: customers() }).await.unwrap();
    let stream = |s| SchemaStep::UpdateStream { table: "customers".into(), stream: s };
    assert_eq!(apply(&client, &names, stream(Some(StreamView::KeysOnly))).await.unwrap(), 1);
    // Another view replaces the stream, which its consumers must be told: only a step that says so.
    let refused = apply(&client, &names, stream(Some(StreamView::NewImage))).await;
    assert!(matches!(refused, Err(PlanError::StreamViewChange { .. })), "{refused:?}");
    let replace = SchemaStep::ReplaceStream {
        table: "customers".into(),
        stream: StreamView::NewImage,
        destructive: Destructive::because("test"),
    };
    assert_eq!(apply(&client, &names, replace.clone()).await.unwrap(), 2);
    assert_eq!(apply(&client, &names, replace).await.unwrap(), 0);
    assert_eq!(apply(&client, &names, stream(None)).await.unwrap(), 1);
}

#[tokio::test]
async fn a_global_index_is_replaced_by_deleting_and_creating_it() {
    let (client, names) = (support::client().await, support::names("gsi_replace"));
    let keys_only = GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).projection(Projection::KeysOnly);
    apply(&client, &names, SchemaStep::CreateTable { table: customers().global_index(keys_only) }).await.unwrap();
    let replace = SchemaStep::ReplaceGlobalIndex {
        table: "customers".into(),
        index: GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).sort_key(KeyAttr::n("since")),
        destructive: Destructive::because("test"),
    };
    assert_eq!(apply(&client, &names, replace.clone()).await.unwrap(), 2);
    assert_eq!(apply(&client, &names, replace).await.unwrap(), 0);
}

#[tokio::test]
async fn a_table_class_change_is_skipped_on_dynamodb_local_which_keeps_none() {
    let (client, names) = (support::client().await, support::names("class"));
    apply(&client, &names, SchemaStep::CreateTable { table: customers() }).await.unwrap();
    let physical = names.physical("customers");
    let step = SchemaStep::SetTableClass { table: "customers".into(), class: TableClass::StandardInfrequentAccess };
    let current = describe(&client, &physical, "customers", 1, true).await.unwrap().unwrap().def;
    let (calls, _) = plan_step(Some(&current), &step).unwrap();
    let outcome = execute(&client, &physical, &calls[0], &ExecOptions::new(true)).await.unwrap();
    assert_eq!(outcome, dynamo_migrate::schema_steps::Outcome::Skipped("DynamoDB Local keeps no table class"));
}

#[tokio::test]
async fn deletion_protection_guards_delete_table() {
    let (client, names) = (support::client().await, support::names("protect"));
    apply(&client, &names, SchemaStep::CreateTable { table: customers() }).await.unwrap();
    let protect = |on| SchemaStep::SetDeletionProtection { table: "customers".into(), enabled: on };
    assert_eq!(apply(&client, &names, protect(true)).await.unwrap(), 1);
    let delete = || SchemaStep::DeleteTable {
        table: "customers".into(),
        version: None,
        destructive: Destructive::because("test"),
    };
    let refused = apply(&client, &names, delete()).await;
    assert!(matches!(refused, Err(PlanError::DeletionProtected { ref table }) if table == "customers"));
    assert_eq!(apply(&client, &names, protect(false)).await.unwrap(), 1);
    assert_eq!(apply(&client, &names, delete()).await.unwrap(), 1);
    // Deleting it again finds nothing to delete: an error, not a silent success.
    assert!(matches!(apply(&client, &names, delete()).await, Err(PlanError::NothingToDelete { .. })));
}
