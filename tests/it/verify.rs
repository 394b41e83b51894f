//! `verify` on the example workspace, and each way it must fail, naming table, index or key.

use dynamo_migrate::local::{LocalError, LocalOptions, VerifyOptions, VerifyReport, verify};
use dynamo_migrate::{DataStep, GlobalIndex, KeyAttr, Migration, TableDef, TableSchema};
use serde::{Deserialize, Serialize};

use crate::support;

/// Each verify starts its own DynamoDB Local, as `cargo xtask verify` does. (On the server the
/// other tests share, DynamoDB Local 3.3.0 was seen to leave a new GSI CREATING for good while
/// dozens of tests created, filled and deleted tables around it; verify itself never does that.)
fn options() -> VerifyOptions {
    VerifyOptions {
        local: LocalOptions { docker: dynamo_migrate::local::Docker::Never, ..LocalOptions::default() },
        table_prefix: support::names("verify").prefix().to_owned(),
        // Most tests verify a part of the example's migrations; the files are checked by the
        // example's own test, and by `cargo xtask verify`.
        check_files: false,
    }
}

async fn run(tables: &[TableSchema], migrations: &[Migration]) -> VerifyReport {
    verify(tables, migrations, &options()).await.expect("verify runs")
}

#[tokio::test]
async fn the_example_workspace_verifies() {
    let report = run(&schema::tables(), &migrations::all()).await;
    assert_eq!(report.problems, Vec::<String>::new());
    assert_eq!(report.applied.len(), migrations::all().len());
    assert_eq!(report.second_run_applied, Some(0));
    let customers = &report.tables[0];
    assert!(customers.exists && customers.diffs.is_empty());
    assert_eq!(customers.not_checked, ["tags", "point_in_time_recovery", "table_class"]);
    assert_eq!(customers.items_read, 3, "the fixture customers, backfilled");
    let backfill = report.applied.iter().find(|m| m.name == "backfill_email_normalised").unwrap();
    let counts = backfill.steps[0].data.unwrap();
    assert_eq!((counts.scanned, counts.written), (3, 3));
    let rebuild = report.applied.iter().find(|m| m.name == "rebuild_customers_with_records").unwrap();
    assert_eq!(rebuild.steps[0].data.unwrap().written, 3);
}

#[tokio::test]
async fn an_index_the_schema_declares_but_no_migration_creates_is_named() {
    let mut tables = schema::tables();
    let def = tables[0].def.clone().global_index(GlobalIndex::new("by_name", KeyAttr::s("name")));
    tables[0] = TableSchema::new::<schema::customers::Customer>(def);
    let report = run(&tables, &migrations::all()).await;
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    let problem = &report.problems[0];
    assert!(
        problem.starts_with(
            "table customers: global index by_name is declared in the schema crate but no migration creates it ({"
        ),
        "{problem}"
    );
}

#[tokio::test]
async fn an_index_a_migration_creates_but_the_schema_does_not_declare_is_named() {
    let mut migrations = migrations::all();
    migrations.push(
        Migration::new(99, "add_by_email", "add by_email")
            .add_global_index("customers", GlobalIndex::new("by_name", KeyAttr::s("name"))),
    );
    let report = run(&schema::tables(), &migrations).await;
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(
        report.problems[0].starts_with(
            "table customers: global index by_name is created by the migrations but the schema crate does not declare it"
        ),
        "{}",
        report.problems[0]
    );
}

#[tokio::test]
async fn an_old_version_left_behind_is_named() {
    let migrations = &migrations::all()[..5];
    let report = run(&schema::tables(), migrations).await;
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(
        report.problems[0].starts_with("table customers: version 1 (")
            && report.problems[0].ends_with(
                ") is left by the migrations but the schema crate declares version 2: delete it in a migration (delete_old_table), or declare version 1"
            ),
        "{}",
        report.problems[0]
    );
}

#[tokio::test]
async fn a_table_the_schema_does_not_know_is_named() {
    let mut migrations = migrations::all();
    migrations.push(
        Migration::new(99, "create_orders", "create orders")
            .create_table(TableDef::new("orders", KeyAttr::s("order_id"))),
    );
    let report = run(&schema::tables(), &migrations).await;
    assert_eq!(
        report.problems,
        [
            "table orders is created by the migrations but the schema crate does not declare it: declare it in the schema crate, or delete it in a migration"
        ]
    );
}

#[tokio::test]
async fn a_declared_table_no_migration_creates_is_named() {
    let report = run(&schema::tables(), &migrations::all()[..0]).await;
    let physical = format!("{}customers_v2", report.tables[0].physical.strip_suffix("customers_v2").unwrap());
    assert_eq!(
        report.problems,
        [format!("table customers version 2 ({physical}) is declared in the schema crate but no migration creates it")]
    );
}

#[derive(Serialize, Deserialize)]
struct Partial {
    customer_nr: u64,
    record: String,
    name: String,
}

#[tokio::test]
async fn an_item_that_does_not_read_as_its_type_is_named_by_key() {
    let mut migrations = migrations::all();
    let bad = DataStep::new("write_partial_customer", |_| async { Ok(Default::default()) })
        .fixtures("customers", [Partial { customer_nr: 2001, record: "profile".into(), name: "No Email".into() }]);
    migrations.push(Migration::new(99, "partial_customer", "partial").data(bad));
    let report = run(&schema::tables(), &migrations).await;
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(
        report.problems[0]
            .starts_with("table customers: 1 item(s) do not read as Customer; the first is {customer_nr: 2001, record: \"profile\"}: "),
        "{}",
        report.problems[0]
    );
    assert!(report.problems[0].contains("email"), "{}", report.problems[0]);
}

#[tokio::test]
async fn a_schema_that_breaks_the_rules_is_named_before_anything_runs() {
    let mut def = schema::customers::table().def;
    def.partition_key = KeyAttr::s("customer_nr");
    let tables = [TableSchema::new::<schema::customers::Customer>(def)];
    let report = run(&tables, &migrations::all()).await;
    assert!(
        report.problems.contains(&"table customers: key attribute customer_nr is S in the table but the item type Customer has it as integer".to_owned()),
        "{:#?}",
        report.problems
    );
}

#[tokio::test]
async fn an_endpoint_that_is_not_local_is_refused() {
    let options = VerifyOptions {
        local: LocalOptions {
            endpoint: Some("https://dynamodb.eu-west-1.amazonaws.com".into()),
            ..LocalOptions::default()
        },
        table_prefix: String::new(),
        check_files: true,
    };
    let error = verify(&schema::tables(), &migrations::all(), &options).await.unwrap_err();
    assert!(matches!(error, LocalError::NotLocal(_)));
    assert_eq!(
        error.to_string(),
        "endpoint https://dynamodb.eu-west-1.amazonaws.com is not local (localhost, 127.0.0.0/8 or [::1]); verify and local only run against DynamoDB Local"
    );
}

/// The committed JSON Schemas (of the items and of environments.toml) are what the code gives.
#[test]
fn the_committed_json_schemas_are_fresh() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let stale = dynamo_migrate::authoring::stale_schemas(&dir, &schema::tables());
    assert_eq!(stale, Vec::<String>::new(), "stale: run `cargo xtask schemas` and commit the result");
}
