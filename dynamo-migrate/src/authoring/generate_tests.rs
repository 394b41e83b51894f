use dynamo_model::{
    GlobalIndex, KeyAttr, KeyType, LocalIndex, Projection, StreamView, TableClass, TableDef, diff_tables,
};
use proptest::prelude::*;

use super::*;
use crate::drift::SimulatedTables;

/// The example's customers table as migrations 1 to 3 leave it.
fn customers() -> TableDef {
    TableDef::new("customers", KeyAttr::n("customer_nr"))
        .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
        .ttl("expires_at")
}

fn steps(generation: &Generation) -> Vec<String> {
    generation.steps.iter().map(ToString::to_string).collect()
}

/// Applies the generated steps to `current` through the planner's simulation.
fn apply(current: &[TableDef], generation: &Generation) -> Result<SimulatedTables, String> {
    let mut state = SimulatedTables::from_tables(current.iter().cloned());
    for step in generation.migration_steps() {
        state.apply(&step).map_err(|e| format!("{} does not plan: {e}", step.describe()))?;
    }
    Ok(state)
}

/// The source `render` writes for `generation`, as migration 7.
fn source(generation: &Generation) -> String {
    render("m0007_change.rs", "cargo xtask new change --from-schema", generation)
}

#[test]
fn no_difference_is_no_step() {
    let generation = generate(&[customers()], &[customers()]).unwrap();
    assert_eq!(generation, Generation::default());
}

#[test]
fn an_index_and_ttl_are_steps_of_their_own() {
    let desired = customers()
        .global_index(GlobalIndex::new("by_email", KeyAttr::s("email")).projection(Projection::KeysOnly))
        .global_index(GlobalIndex::new("by_name", KeyAttr::s("name")))
        .ttl("delete_after")
        .deletion_protection(true);
    let generation = generate(std::slice::from_ref(&desired), &[customers()]).unwrap();
    assert_eq!(
        steps(&generation),
        [
            "add global index by_email to customers",
            "add global index by_name to customers",
            "enable TTL on customers.delete_after",
            "turn deletion protection of customers on",
        ]
    );
    assert_eq!(apply(&[customers()], &generation).unwrap().tables(), [desired]);
    assert_eq!(
        source(&generation),
        r#"//! Brings the tables to what the schema crate declares:
//! - add global index by_email to customers;
//! - add global index by_name to customers;
//! - enable TTL on customers.delete_after;
//! - turn deletion protection of customers on.
//!
//! Written by `cargo xtask new change --from-schema`: say here why.

use dynamo_migrate::{GlobalIndex, KeyAttr, Migration, Projection, migration};

pub fn migration() -> Migration {
    let by_email = GlobalIndex::new("by_email", KeyAttr::s("email")).projection(Projection::KeysOnly);
    migration!("m0007_change.rs")
        .add_global_index("customers", by_email)
        .add_global_index("customers", GlobalIndex::new("by_name", KeyAttr::s("name")))
        // A new TTL attribute is two calls (off, then on), and AWS refuses the second for up to an
        // hour after the first: `cargo xtask plan` says so.
        .enable_ttl("customers", "delete_after")
        .deletion_protection("customers", true)
}
"#
    );
}

#[test]
fn a_changed_projection_drops_the_index_and_creates_it_again() {
    let desired = TableDef::new("customers", KeyAttr::n("customer_nr")).ttl("expires_at").global_index(
        GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).projection(Projection::Include(vec!["name".into()])),
    );
    let generation = generate(std::slice::from_ref(&desired), &[customers()]).unwrap();
    assert_eq!(
        steps(&generation),
        [
            "delete global index by_postcode of customers (destructive: write why)",
            "add global index by_postcode to customers"
        ]
    );
    assert_eq!(apply(&[customers()], &generation).unwrap().tables(), [desired]);
    assert_eq!(
        source(&generation),
        r#"//! Brings the tables to what the schema crate declares:
//! - delete global index by_postcode of customers (destructive: write why);
//! - add global index by_postcode to customers.
//!
//! Written by `cargo xtask new change --from-schema`: say here why.
//! It compiles once every `reason_required!()` is replaced by what it asks for.

use dynamo_migrate::{Destructive, GlobalIndex, KeyAttr, Migration, Projection, migration};

pub fn migration() -> Migration {
    let by_postcode =
        GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).projection(Projection::Include(vec!["name".into()]));
    migration!("m0007_change.rs")
        // DynamoDB cannot change an index's projection in place: it is dropped here and created
        // again below, and queries on it fail until its backfill ends.
        .delete_global_index("customers", "by_postcode", Destructive::because(dynamo_migrate::reason_required!()))
        .add_global_index("customers", by_postcode)
}
"#
    );
}

#[test]
fn a_switch_to_provisioned_comes_after_the_deleted_indexes_and_before_the_new_ones() {
    let current = TableDef::new("orders", KeyAttr::s("order_id"))
        .global_index(GlobalIndex::new("by_customer", KeyAttr::s("customer_id")))
        .global_index(GlobalIndex::new("by_status", KeyAttr::s("status")));
    let desired = TableDef::new("orders", KeyAttr::s("order_id"))
        .provisioned(10, 5)
        .global_index(GlobalIndex::new("by_customer", KeyAttr::s("customer_id")).throughput(4, 2))
        .global_index(GlobalIndex::new("by_day", KeyAttr::s("day")).throughput(1, 1));
    let generation = generate(std::slice::from_ref(&desired), std::slice::from_ref(&current)).unwrap();
    assert_eq!(
        steps(&generation),
        [
            "delete global index by_status of orders (destructive: write why)",
            "provision orders with 10 RCU / 5 WCU",
            "add global index by_day to orders",
        ]
    );
    let GeneratedKind::Schema(SchemaStep::UpdateBilling { index_throughput, .. }) = &generation.steps[1].kind else {
        panic!("{:?}", generation.steps[1])
    };
    assert_eq!(index_throughput, &[("by_customer".to_owned(), Throughput { read: 4, write: 2 })]);
    let state = apply(&[current], &generation).unwrap();
    assert_eq!(diff_tables(&desired, state.current("orders").unwrap(), &[]), []);
    assert_eq!(
        source(&generation),
        r#"//! Brings the tables to what the schema crate declares:
//! - delete global index by_status of orders (destructive: write why);
//! - provision orders with 10 RCU / 5 WCU;
//! - add global index by_day to orders.
//!
//! Written by `cargo xtask new change --from-schema`: say here why.
//! It compiles once every `reason_required!()` is replaced by what it asks for.

use dynamo_migrate::{Billing, Destructive, GlobalIndex, KeyAttr, Migration, Throughput, migration};

pub fn migration() -> Migration {
    let index_throughput = vec![("by_customer".into(), Throughput { read: 4, write: 2 })];
    migration!("m0007_change.rs")
        // The schema crate no longer declares this index.
        .delete_global_index("orders", "by_status", Destructive::because(dynamo_migrate::reason_required!()))
        // AWS limits how often a table may switch billing mode in 24 hours: `cargo xtask lint`
        // flags the switch.
        .update_billing("orders", Billing::Provisioned(Throughput { read: 10, write: 5 }), index_throughput)
        .add_global_index("orders", GlobalIndex::new("by_day", KeyAttr::s("day")).throughput(1, 1))
}
"#
    );
}

#[test]
fn new_tables_come_first_and_deleted_ones_last_with_their_protection_off() {
    let current = [customers(), TableDef::new("audit", KeyAttr::s("id")).deletion_protection(true)];
    let orders = TableDef::new("orders", KeyAttr::s("order_id"))
        .sort_key(KeyAttr::n("placed_at"))
        .global_index(GlobalIndex::new("by_customer", KeyAttr::s("customer_id")).sort_key(KeyAttr::n("placed_at")))
        .local_index(LocalIndex::new("by_total", KeyAttr::n("total")).projection(Projection::KeysOnly))
        .stream(StreamView::NewAndOldImages)
        .point_in_time_recovery(true)
        .tag("team", "shop");
    let desired = [customers(), orders.clone()];
    let generation = generate(&desired, &current).unwrap();
    assert_eq!(
        steps(&generation),
        ["create table orders", "turn deletion protection of audit off", "delete table audit (destructive: write why)"]
    );
    assert_eq!(apply(&current, &generation).unwrap().tables(), [customers(), orders]);
    assert_eq!(
        source(&generation),
        r#"//! Brings the tables to what the schema crate declares:
//! - create table orders;
//! - turn deletion protection of audit off;
//! - delete table audit (destructive: write why).
//!
//! Written by `cargo xtask new change --from-schema`: say here why.
//! It compiles once every `reason_required!()` is replaced by what it asks for.

use dynamo_migrate::{
    Destructive, GlobalIndex, KeyAttr, LocalIndex, Migration, Projection, StreamView, TableDef, migration,
};

pub fn migration() -> Migration {
    let orders = TableDef::new("orders", KeyAttr::s("order_id"))
        .sort_key(KeyAttr::n("placed_at"))
        .global_index(GlobalIndex::new("by_customer", KeyAttr::s("customer_id")).sort_key(KeyAttr::n("placed_at")))
        .local_index(LocalIndex::new("by_total", KeyAttr::n("total")).projection(Projection::KeysOnly))
        .stream(StreamView::NewAndOldImages)
        .point_in_time_recovery(true)
        .tag("team", "shop");
    migration!("m0007_change.rs")
        .create_table(orders)
        .deletion_protection("audit", false)
        // The schema crate no longer declares audit.
        .delete_table("audit", Destructive::because(dynamo_migrate::reason_required!()))
}
"#
    );
}

#[test]
fn a_new_sort_key_is_a_rebuild_with_a_conversion_to_write() {
    // Migration 5 of the example, generated.
    let v2 = TableDef::new("customers", KeyAttr::n("customer_nr"))
        .version(2)
        .sort_key(KeyAttr::s("record"))
        .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
        .local_index(LocalIndex::new("by_email", KeyAttr::s("email_normalised")))
        .ttl("expires_at");
    let generation = generate(std::slice::from_ref(&v2), &[customers()]).unwrap();
    assert_eq!(
        steps(&generation),
        ["rebuild table customers as version 2 with a conversion (write the values it marks)"]
    );
    assert_eq!(generation.notes.len(), 1);
    assert!(generation.notes[0].starts_with("version 1 of table customers stays until a later migration deletes it"));
    assert!(generation.notes[0].ends_with("`cargo xtask new delete_customers_v1 --from-schema` writes it"));
    let state = apply(&[customers()], &generation).unwrap();
    assert_eq!(state.current("customers"), Some(&v2));
    assert_eq!(
        source(&generation),
        r#"//! Brings the tables to what the schema crate declares:
//! - rebuild table customers as version 2 with a conversion (write the values it marks).
//!
//! Written by `cargo xtask new change --from-schema`: say here why.
//! It compiles once every `value_required!(..)` is replaced by what it asks for.

use dynamo_migrate::{GlobalIndex, KeyAttr, LocalIndex, Migration, Number, RebuildStep, TableDef, migration};
use serde::{Deserialize, Serialize};

/// An item of customers as version 1 holds it. Add every attribute its items have: one that this
/// type does not hold stops the rebuild, naming it (unless it says `.drop_unknown_attributes()`).
#[derive(Debug, Serialize, Deserialize)]
struct CustomersV1 {
    customer_nr: Number,
}

/// An item of customers as version 2 holds it.
#[derive(Debug, Serialize)]
struct CustomersV2 {
    customer_nr: Number,
    record: String,
}

fn convert_customers(old: CustomersV1) -> Option<CustomersV2> {
    Some(CustomersV2 {
        customer_nr: old.customer_nr,
        // Every item of version 2 needs its record, its new sort key.
        record: dynamo_migrate::value_required!("record (S), the sort key of every item of version 2"),
    })
}

pub fn migration() -> Migration {
    let customers_v2 = TableDef::new("customers", KeyAttr::n("customer_nr"))
        .version(2)
        .sort_key(KeyAttr::s("record"))
        .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
        .local_index(LocalIndex::new("by_email", KeyAttr::s("email_normalised")))
        .ttl("expires_at");
    migration!("m0007_change.rs")
        // Version 2 is a new table: every item is converted into it, then the stream is replayed
        // until the application moves to it.
        .rebuild_table(RebuildStep::convert(customers_v2, convert_customers))
}
"#
    );
}

#[test]
fn a_new_local_index_is_a_rebuild_that_copies() {
    let current = TableDef::new("events", KeyAttr::s("id")).sort_key(KeyAttr::n("at"));
    let desired = current.clone().version(2).local_index(LocalIndex::new("by_kind", KeyAttr::s("kind")));
    let generation = generate(std::slice::from_ref(&desired), std::slice::from_ref(&current)).unwrap();
    assert_eq!(steps(&generation), ["rebuild table events as version 2, copying every item"]);
    assert!(!generation.steps[0].needs_author());
    let source = source(&generation);
    assert!(source.contains("        .rebuild_table(RebuildStep::copy(events_v2))\n"), "{source}");
    assert!(!source.contains("serde"), "{source}");
}

#[test]
fn a_rebuild_replaces_a_stream_it_cannot_replay_first() {
    let current = TableDef::new("events", KeyAttr::s("id")).stream(StreamView::KeysOnly);
    let desired = TableDef::new("events", KeyAttr::s("id")).version(2).sort_key(KeyAttr::n("at"));
    let generation = generate(&[desired], std::slice::from_ref(&current)).unwrap();
    assert_eq!(
        steps(&generation),
        [
            "replace the stream of events by a NEW_AND_OLD_IMAGES one (destructive: write why)",
            "rebuild table events as version 2 with a conversion (write the values it marks)"
        ]
    );
    // A NEW_IMAGE stream serves a plain copy, and no stream at all gets one from the rebuild.
    let copy = TableDef::new("events", KeyAttr::s("id")).version(2).stream(StreamView::NewImage);
    let generation = generate(&[copy], &[TableDef::new("events", KeyAttr::s("id")).stream(StreamView::NewImage)]);
    assert_eq!(steps(&generation.unwrap()), ["rebuild table events as version 2, copying every item"]);
}

#[test]
fn versions_left_by_a_rebuild_are_deleted_last() {
    let v1 = TableDef::new("customers", KeyAttr::n("customer_nr"));
    let v2 = v1.clone().version(2).sort_key(KeyAttr::s("record"));
    let generation = generate(std::slice::from_ref(&v2), &[v1, v2.clone()]).unwrap();
    assert_eq!(steps(&generation), ["delete version 1 of table customers (destructive: write why)"]);
    assert!(source(&generation).contains(
        "        .delete_old_table(\"customers\", 1, Destructive::because(dynamo_migrate::reason_required!()))\n"
    ));
    assert_eq!(
        apply(&[TableDef::new("customers", KeyAttr::n("customer_nr")), v2.clone()], &generation).unwrap().tables(),
        [v2]
    );
}

#[test]
fn what_no_step_changes_in_place_is_listed_not_generated() {
    let desired = customers().point_in_time_recovery(true).tag("team", "shop");
    let generation = generate(&[desired], &[customers()]).unwrap();
    assert_eq!(generation.steps, []);
    let fields: Vec<&str> = generation.not_generated.iter().map(|n| n.field.as_str()).collect();
    assert_eq!(fields, ["point_in_time_recovery", "tags"]);
    assert_eq!(
        generation.not_generated[0].to_string(),
        "table customers: point_in_time_recovery changes (false -> true), and no migration step changes it in place yet: change it by hand (the AWS console or CLI), and `cargo xtask plan` will show it as drift until the migrations say so too"
    );
}

#[test]
fn what_only_a_rebuild_can_change_needs_the_next_version_declared() {
    let desired =
        customers().sort_key(KeyAttr::s("record")).local_index(LocalIndex::new("by_email", KeyAttr::s("email")));
    let errors = generate(&[desired], &[customers()]).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "table customers: the sort key (none -> record S) and local index by_email (added) change(s), which DynamoDB cannot do in place: declare version 2 in the schema crate (`.version(2)`) so that the migration rebuilds the table"
    );
    let behind = generate(&[customers()], &[customers().version(2)]).unwrap_err();
    assert_eq!(
        behind.to_string(),
        "table customers: the schema crate declares version 1, but the migrations are at version 2: declare version 2 (or 3 to rebuild the table)"
    );
    let skips = generate(&[customers().version(3)], &[customers()]).unwrap_err();
    assert_eq!(
        skips.to_string(),
        "table customers: the schema crate declares version 3, but the migrations are at version 1 and a rebuild makes the next version only: declare version 2"
    );
    let twice = generate(&[customers(), customers()], &[]).unwrap_err();
    assert_eq!(twice.to_string(), "table customers is declared twice in the schema crate");
}

#[test]
fn names_that_are_not_identifiers_become_identifiers() {
    assert_eq!(ident("order-items.v2"), "order_items_v2");
    assert_eq!(ident("2024_orders"), "t_2024_orders");
    assert_eq!(ident("match"), "match_");
    assert_eq!(field_ident("type"), ("r#type".to_owned(), false));
    assert_eq!(field_ident("customerNr"), ("customernr".to_owned(), true));
    assert_eq!(field_ident("customer_nr"), ("customer_nr".to_owned(), false));
    assert_eq!(camel("order-items"), "OrderItems");
}

#[test]
fn an_empty_migration_names_its_own_file() {
    let source = render_empty("m0007_add_orders.rs");
    assert!(source.contains("    migration!(\"m0007_add_orders.rs\")\n}\n"), "{source}");
}

/// The rendered sources are what rustfmt makes of them with this workspace's settings, where
/// rustfmt is installed (it comes with cargo through rustup; a test that cannot run it says so).
#[test]
fn rendered_sources_are_rustfmt_clean() {
    let v1 = TableDef::new("customers", KeyAttr::n("customer_nr"));
    let cases = [
        generate(&[customers().global_index(GlobalIndex::new("by_email", KeyAttr::s("email")))], &[customers()]),
        generate(
            &[TableDef::new("customers", KeyAttr::n("customer_nr")).ttl("expires_at").global_index(
                GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).projection(Projection::KeysOnly),
            )],
            &[customers()],
        ),
        generate(&[v1.clone().version(2).sort_key(KeyAttr::s("record"))], std::slice::from_ref(&v1)),
        generate(&[], &[v1.clone().deletion_protection(true), v1.clone().version(2)]),
        generate(
            &[TableDef::new("a_table_with_a_rather_long_name_for_its_purpose", KeyAttr::s("identifier"))
                .provisioned(5, 5)
                .global_index(
                    GlobalIndex::new("an_index_with_a_long_name_as_well", KeyAttr::s("some_attribute"))
                        .sort_key(KeyAttr::n("another_attribute"))
                        .projection(Projection::Include(vec!["first".into(), "second".into()]))
                        .throughput(5, 5),
                )],
            &[],
        ),
    ];
    let mut checked = 0;
    for generation in cases {
        let source = source(&generation.unwrap());
        let Some(formatted) = rustfmt(&source) else {
            println!("skipped: rustfmt is not installed");
            return;
        };
        assert_eq!(formatted, source, "rustfmt formats this differently");
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// `source` through rustfmt (edition 2024, this workspace's width), or `None` without rustfmt.
fn rustfmt(source: &str) -> Option<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout", "--config", "max_width=120,use_small_heuristics=Max"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take().expect("stdin").write_all(source.as_bytes()).expect("rustfmt reads");
    let output = child.wait_with_output().expect("rustfmt runs");
    assert!(output.status.success(), "rustfmt refuses the source: {}", String::from_utf8_lossy(&output.stderr));
    Some(String::from_utf8(output.stdout).expect("UTF-8"))
}

/// A migration that exercises most of the rendering: a rebuild with a conversion (and the stream
/// it needs), an index dropped and created again, a billing switch, a stream, a new table and a
/// deleted one.
fn everything() -> (Vec<TableDef>, Vec<TableDef>) {
    let current = vec![
        customers().stream(StreamView::KeysOnly),
        TableDef::new("orders", KeyAttr::s("order_id"))
            .global_index(GlobalIndex::new("by_customer", KeyAttr::s("customer_id")))
            .global_index(GlobalIndex::new("by_status", KeyAttr::s("status"))),
        TableDef::new("audit", KeyAttr::s("id")).deletion_protection(true),
    ];
    let desired = vec![
        TableDef::new("customers", KeyAttr::n("customer_nr"))
            .version(2)
            .sort_key(KeyAttr::s("record"))
            .global_index(GlobalIndex::new("by_postcode", KeyAttr::s("postcode")))
            .ttl("expires_at"),
        TableDef::new("orders", KeyAttr::s("order_id"))
            .provisioned(10, 5)
            .global_index(
                GlobalIndex::new("by_customer", KeyAttr::s("customer_id"))
                    .projection(Projection::KeysOnly)
                    .throughput(5, 5),
            )
            .global_index(GlobalIndex::new("by_status", KeyAttr::s("status")).throughput(1, 1))
            .stream(StreamView::NewImage),
        TableDef::new("invoices", KeyAttr::s("invoice_id")).sort_key(KeyAttr::b("digest")),
    ];
    (desired, current)
}

/// The rendering of `everything()`, with what its author must write filled in, is checked in
/// (`generate/m0007_everything.rs`) and compiled with these tests: the generated source
/// type-checks against the real builder API once reasons and values are written (and, by the
/// `compile_fail` examples of `reason_required!` and `value_required!`, not before).
// rustfmt leaves it as rendered: filling a hole in may shorten a line that the rendering had to
// break, which rustfmt would join again.
#[rustfmt::skip]
#[path = "generate/m0007_everything.rs"]
mod m0007_everything;

#[test]
fn a_generated_migration_compiles_once_its_author_has_written_what_it_asks_for() {
    let (desired, current) = everything();
    let generation = generate(&desired, &current).unwrap();
    let source = render("m0007_everything.rs", "cargo xtask new everything --from-schema", &generation);
    let reasons = source.matches("dynamo_migrate::reason_required!()").count();
    assert_eq!(reasons, 3, "{source}");
    let hole = "dynamo_migrate::value_required!(\"record (S), the sort key of every item of version 2\")";
    assert!(source.contains(hole), "{source}");
    let filled =
        source.replace("dynamo_migrate::reason_required!()", "\"reviewed\"").replace(hole, "\"profile\".to_owned()");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/authoring/generate/m0007_everything.rs");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(filled.as_str()) {
        std::fs::write(&path, &filled).unwrap();
        panic!("{} was not the current rendering: it is now; build and run the tests again", path.display());
    }

    let compiled = m0007_everything::migration();
    let described: Vec<String> = compiled.steps.iter().map(Step::describe).collect();
    let expected: Vec<String> =
        generation.migration_steps().iter().map(|s| s.describe().replace("()", "(reviewed)")).collect();
    let expected: Vec<String> =
        expected.into_iter().map(|s| s.replace("version 2", "version 2 with a conversion")).collect();
    assert_eq!(described, expected);
}

// ---------------------------------------------------------------------------------------------
// The property: from a random state, towards a random change of it, the generated steps applied
// through the planner's simulation leave exactly the desired tables.
// ---------------------------------------------------------------------------------------------

const ATTRIBUTES: [&str; 6] = ["id", "at", "email", "zip", "score", "kind"];
const TABLES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

fn key_type() -> impl Strategy<Value = KeyType> {
    prop_oneof![Just(KeyType::S), Just(KeyType::N), Just(KeyType::B)]
}

fn projection() -> impl Strategy<Value = Projection> {
    prop_oneof![
        Just(Projection::All),
        Just(Projection::KeysOnly),
        proptest::sample::subsequence(vec!["name", "total", "note"], 1..=3)
            .prop_map(|a| Projection::Include(a.into_iter().map(str::to_owned).collect())),
    ]
}

fn capacity() -> impl Strategy<Value = (i64, i64)> {
    (1..4i64, 1..4i64)
}

/// A GSI: its name (of three), its keys (attributes by position) and projection.
#[derive(Debug, Clone)]
struct Gsi {
    name: usize,
    pk: usize,
    sk: Option<usize>,
    projection: Projection,
    capacity: (i64, i64),
}

fn gsi() -> impl Strategy<Value = Gsi> {
    (0..3usize, 0..6usize, proptest::option::of(0..6usize), projection(), capacity())
        .prop_map(|(name, pk, sk, projection, capacity)| Gsi { name, pk, sk, projection, capacity })
}

#[derive(Debug, Clone)]
struct Lsi {
    name: usize,
    sk: usize,
    projection: Projection,
}

fn lsi() -> impl Strategy<Value = Lsi> {
    (0..2usize, 0..6usize, projection()).prop_map(|(name, sk, projection)| Lsi { name, sk, projection })
}

/// A table, as positions into the attribute list with a type per attribute; made valid by
/// `build`.
#[derive(Debug, Clone)]
struct Spec {
    types: Vec<KeyType>,
    pk: usize,
    sk: Option<usize>,
    gsis: Vec<Gsi>,
    lsis: Vec<Lsi>,
    ttl: Option<usize>,
    stream: Option<StreamView>,
    provisioned: Option<(i64, i64)>,
    protection: bool,
    pitr: bool,
    infrequent: bool,
    tags: Vec<(u8, u8)>,
    version: u32,
}

fn stream() -> impl Strategy<Value = Option<StreamView>> {
    proptest::option::of(prop_oneof![
        Just(StreamView::KeysOnly),
        Just(StreamView::NewImage),
        Just(StreamView::OldImage),
        Just(StreamView::NewAndOldImages),
    ])
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (proptest::collection::vec(key_type(), 6), 0..6usize, proptest::option::of(0..6usize)),
        (proptest::collection::vec(gsi(), 0..3), proptest::collection::vec(lsi(), 0..2)),
        (proptest::option::of(0..6usize), stream(), proptest::option::of(capacity())),
        (any::<bool>(), any::<bool>(), any::<bool>(), proptest::collection::vec((0..3u8, 0..2u8), 0..2), 1..3u32),
    )
        .prop_map(
            |(
                (types, pk, sk),
                (gsis, lsis),
                (ttl, stream, provisioned),
                (protection, pitr, infrequent, tags, version),
            )| {
                Spec {
                    types,
                    pk,
                    sk,
                    gsis,
                    lsis,
                    ttl,
                    stream,
                    provisioned,
                    protection,
                    pitr,
                    infrequent,
                    tags,
                    version,
                }
            },
        )
}

/// One change to a table the schema crate could make.
#[derive(Debug, Clone)]
enum Change {
    AddGsi(Gsi),
    RemoveGsi(usize),
    GsiProjection(usize, Projection),
    GsiKey(usize, usize),
    GsiCapacity(usize, (i64, i64)),
    Ttl(Option<usize>),
    Stream(Option<StreamView>),
    Billing(Option<(i64, i64)>),
    Protection(bool),
    Pitr(bool),
    Infrequent(bool),
    Tag(u8, Option<u8>),
    // Only a rebuild makes these: the table's version goes up.
    Retype(usize, KeyType),
    SortKey(Option<usize>),
    PartitionKey(usize),
    AddLsi(Lsi),
    RemoveLsi(usize),
    NextVersion,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => gsi().prop_map(Change::AddGsi),
        2 => (0..3usize).prop_map(Change::RemoveGsi),
        2 => (0..3usize, projection()).prop_map(|(i, p)| Change::GsiProjection(i, p)),
        1 => (0..3usize, 0..6usize).prop_map(|(i, a)| Change::GsiKey(i, a)),
        1 => (0..3usize, capacity()).prop_map(|(i, c)| Change::GsiCapacity(i, c)),
        2 => proptest::option::of(0..6usize).prop_map(Change::Ttl),
        2 => stream().prop_map(Change::Stream),
        2 => proptest::option::of(capacity()).prop_map(Change::Billing),
        1 => any::<bool>().prop_map(Change::Protection),
        1 => any::<bool>().prop_map(Change::Pitr),
        1 => any::<bool>().prop_map(Change::Infrequent),
        1 => (0..3u8, proptest::option::of(0..2u8)).prop_map(|(k, v)| Change::Tag(k, v)),
        1 => (0..6usize, key_type()).prop_map(|(a, t)| Change::Retype(a, t)),
        1 => proptest::option::of(0..6usize).prop_map(Change::SortKey),
        1 => (0..6usize).prop_map(Change::PartitionKey),
        1 => lsi().prop_map(Change::AddLsi),
        1 => (0..2usize).prop_map(Change::RemoveLsi),
        1 => Just(Change::NextVersion),
    ]
}

impl Spec {
    fn apply(&mut self, change: &Change) {
        fn gsi(gsis: &mut [Gsi], i: usize) -> Option<&mut Gsi> {
            let n = gsis.len();
            (n > 0).then(|| i % n).map(move |i| &mut gsis[i])
        }
        match change {
            Change::AddGsi(g) => self.gsis.push(g.clone()),
            Change::RemoveGsi(i) if !self.gsis.is_empty() => {
                let n = self.gsis.len();
                self.gsis.remove(i % n);
            }
            Change::GsiProjection(i, p) => gsi(&mut self.gsis, *i).into_iter().for_each(|g| g.projection = p.clone()),
            Change::GsiKey(i, a) => gsi(&mut self.gsis, *i).into_iter().for_each(|g| g.pk = *a),
            Change::GsiCapacity(i, c) => gsi(&mut self.gsis, *i).into_iter().for_each(|g| g.capacity = *c),
            Change::Ttl(t) => self.ttl = *t,
            Change::Stream(s) => self.stream = *s,
            Change::Billing(b) => self.provisioned = *b,
            Change::Protection(p) => self.protection = *p,
            Change::Pitr(p) => self.pitr = *p,
            Change::Infrequent(i) => self.infrequent = *i,
            Change::Tag(k, v) => {
                self.tags.retain(|(key, _)| key != k);
                self.tags.extend(v.map(|v| (*k, v)));
            }
            Change::Retype(a, t) => self.types[*a] = *t,
            Change::SortKey(s) => self.sk = *s,
            Change::PartitionKey(p) => self.pk = *p,
            Change::AddLsi(l) => self.lsis.push(l.clone()),
            Change::RemoveLsi(i) if !self.lsis.is_empty() => {
                let n = self.lsis.len();
                self.lsis.remove(i % n);
            }
            Change::RemoveGsi(_) | Change::RemoveLsi(_) | Change::NextVersion => {}
        }
    }

    /// The table this spec stands for, made valid where the parts would clash (a sort key equal
    /// to the partition key is dropped, and so on).
    fn build(&self, name: &str) -> TableDef {
        let key = |i: usize| KeyAttr::new(ATTRIBUTES[i], self.types[i]);
        let mut table = TableDef::new(name, key(self.pk)).version(self.version);
        table.sort_key = self.sk.filter(|s| *s != self.pk).map(key);
        for g in &self.gsis {
            let name = format!("gsi_{}", g.name);
            if table.global_index_named(&name).is_some() {
                continue;
            }
            let mut index = GlobalIndex::new(name, key(g.pk)).projection(g.projection.clone());
            index.sort_key = g.sk.filter(|s| *s != g.pk).map(key);
            index.throughput = self.provisioned.map(|_| Throughput { read: g.capacity.0, write: g.capacity.1 });
            table.global_indexes.push(index);
        }
        if table.sort_key.is_some() {
            for l in &self.lsis {
                let name = format!("lsi_{}", l.name);
                if l.sk != self.pk && !table.local_indexes.iter().any(|x| x.name == name) {
                    table.local_indexes.push(LocalIndex::new(name, key(l.sk)).projection(l.projection.clone()));
                }
            }
        }
        table.ttl_attribute = self.ttl.map(|t| format!("expires_{t}"));
        table.stream = self.stream;
        if let Some((read, write)) = self.provisioned {
            table = table.provisioned(read, write);
        }
        table.deletion_protection = self.protection;
        table.point_in_time_recovery = self.pitr;
        if self.infrequent {
            table.table_class = TableClass::StandardInfrequentAccess;
        }
        table.tags = self.tags.iter().map(|(k, v)| (format!("tag{k}"), format!("value{v}"))).collect();
        table
    }
}

/// A table as the migrations leave it, what the schema crate makes of it, and whether an older
/// version of it is still there.
#[derive(Debug, Clone)]
struct Fate {
    current: Spec,
    older: Option<Spec>,
    deleted: bool,
    changes: Vec<Change>,
}

fn fate() -> impl Strategy<Value = Fate> {
    (spec(), proptest::option::of(spec()), proptest::bool::weighted(0.15), proptest::collection::vec(change(), 0..6))
        .prop_map(|(current, older, deleted, changes)| Fate { current, older, deleted, changes })
}

/// The current tables and the desired ones.
#[derive(Debug, Clone)]
struct Case {
    current: Vec<TableDef>,
    desired: Vec<TableDef>,
}

fn case() -> impl Strategy<Value = Case> {
    (proptest::collection::vec(fate(), 0..=TABLES.len()), proptest::collection::vec(spec(), 0..2))
        .prop_map(|(fates, new)| {
            let (mut current, mut desired) = (Vec::new(), Vec::new());
            for (fate, name) in fates.iter().zip(TABLES) {
                let table = fate.current.build(name);
                if let Some(older) = &fate.older
                    && table.version > 1
                {
                    current.push(Spec { version: table.version - 1, ..older.clone() }.build(name));
                }
                current.push(table.clone());
                if fate.deleted {
                    continue;
                }
                let mut spec = fate.current.clone();
                for change in &fate.changes {
                    spec.apply(change);
                }
                let mut want = spec.build(name);
                let structural = !structural_changes(&table, &want).is_empty();
                if structural || fate.changes.iter().any(|c| matches!(c, Change::NextVersion)) {
                    want.version = table.version + 1;
                }
                desired.push(want);
            }
            for (i, spec) in new.iter().enumerate() {
                desired.push(spec.build(&format!("new_{i}")));
            }
            Case { current, desired }
        })
        .prop_filter("every table is valid", |case| {
            case.current.iter().chain(&case.desired).all(|t| t.validate().is_ok())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn the_generated_steps_lead_to_exactly_the_desired_tables(case in case()) {
        let generation = generate(&case.desired, &case.current).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let state = apply(&case.current, &generation).map_err(TestCaseError::fail)?;

        // Every desired table is current, and differs at most where the generator said it could not help.
        for want in &case.desired {
            let got = state.current(&want.name).ok_or_else(|| TestCaseError::fail(format!("no table {}", want.name)))?;
            let differing: BTreeSet<String> = diff_tables(want, got, &[])
                .into_iter()
                .map(|d| d.field.split('.').next().unwrap_or_default().to_owned())
                .collect();
            let declared: BTreeSet<String> =
                generation.not_generated.iter().filter(|n| n.table == want.name).map(|n| n.field.clone()).collect();
            prop_assert_eq!(differing, declared, "table {}", want.name);
        }

        // Nothing else is left, but the versions the rebuilds here replaced.
        let replaced: BTreeSet<(String, u32)> = generation
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                GeneratedKind::Rebuild { from, .. } => Some((from.name.clone(), from.version)),
                GeneratedKind::Schema(_) => None,
            })
            .collect();
        for table in state.tables() {
            let desired = case.desired.iter().any(|d| d.name == table.name && d.version == table.version);
            prop_assert!(
                desired || replaced.contains(&(table.name.clone(), table.version)),
                "table {} version {} is left over",
                table.name,
                table.version
            );
        }

        // Generating again from there deletes only what the rebuilds replaced.
        let again = generate(&case.desired, &state.tables()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let deletes: BTreeSet<(String, u32)> = again
            .steps
            .iter()
            .map(|s| match &s.kind {
                GeneratedKind::Schema(SchemaStep::DeleteTable { table, version: Some(v), .. }) => Ok((table.clone(), *v)),
                other => Err(TestCaseError::fail(format!("a second generation still has {other:?}"))),
            })
            .collect::<Result<_, _>>()?;
        prop_assert_eq!(deletes, replaced);

        // Every destructive step waits for its reason, in the source.
        let source = source(&generation);
        let destructive = generation.steps.iter().filter(|s| matches!(&s.kind, GeneratedKind::Schema(s) if s.destructive().is_some())).count();
        prop_assert_eq!(source.matches("reason_required!()").count() - usize::from(source.contains("`reason_required!()`")), destructive);
    }
}
