//! The example application (`app/`) against DynamoDB Local: it writes and reads the customers
//! table with the schema crate's types and the physical name its prefix gives, reads the
//! `by_postcode` index into the type the schema crate declares for it, keeps exact numbers and
//! sets exactly, and takes its prefix from the variable environments.toml names.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::schema_steps::ExecOptions;
use dynamo_migrate::{GlobalIndex, KeyAttr, Number, NumberSet, Projection, SchemaStep, TableDef, TableSchema};
use schema::customers::{Customer, CustomerInPostcode, PROFILE};
use serde::{Deserialize, Serialize};

use crate::support;

/// Creates `def` as `physical` on the shared DynamoDB Local, as its migrations would.
async fn create(client: &aws_sdk_dynamodb::Client, physical: &str, def: TableDef) {
    let calls = dynamo_migrate::schema_steps::plan_step(None, &SchemaStep::CreateTable { table: def }).unwrap().0;
    for call in calls {
        dynamo_migrate::schema_steps::execute(client, physical, &call, &ExecOptions::new(true)).await.unwrap();
    }
}

fn customer(nr: u64, name: &str, postcode: Option<&str>) -> Customer {
    let email = format!("{name}@Example.com");
    Customer {
        customer_nr: nr,
        record: PROFILE.to_owned(),
        name: name.to_owned(),
        email_normalised: Customer::normalise_email(&email),
        email,
        postcode: postcode.map(str::to_owned),
        expires_at: None,
    }
}

#[tokio::test]
async fn the_application_reads_and_writes_with_the_schema_crates_types_and_names() {
    let client = support::example_client().await;
    let names = support::names("app");
    let shop = app::Shop::new(client.clone(), names.prefix());
    // The current version of the table, by the schema crate's name for it.
    assert_eq!(shop.customers_table(), format!("{}customers_v2", names.prefix()));
    create(&client, shop.customers_table(), schema::customers::table().def).await;

    let ada = customer(1, "Ada", Some("N1"));
    shop.put_customer(&ada).await.unwrap();
    shop.put_customer(&customer(2, "Grace", Some("N1"))).await.unwrap();
    shop.put_customer(&customer(3, "Edsger", None)).await.unwrap();
    assert_eq!(shop.customer(1).await.unwrap(), Some(ada));
    assert_eq!(shop.customer(4).await.unwrap(), None);
    // An absent postcode is not written (a NULL index key would be refused).
    let stored = client
        .get_item()
        .table_name(shop.customers_table())
        .key("customer_nr", AttributeValue::N("3".into()))
        .key("record", AttributeValue::S(PROFILE.into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!stored.contains_key("postcode"), "{stored:?}");

    // The index, read into the type the schema crate declares for it (verify checks it).
    let mut in_n1 = shop.customers_in_postcode("N1").await.unwrap();
    in_n1.sort_by_key(|c| c.customer_nr);
    let expected = |nr: u64, name: &str| CustomerInPostcode {
        customer_nr: nr,
        record: PROFILE.to_owned(),
        postcode: "N1".to_owned(),
        name: name.to_owned(),
    };
    assert_eq!(in_n1, [expected(1, "Ada"), expected(2, "Grace")]);
    assert_eq!(schema::customers::table().validate(), Ok(()));
    // A TTL table left on the shared server takes one of the threads DynamoDB Local also
    // creates indexes with: each test deletes its own.
    support::delete_tables(&client, &names).await;
}

/// An account with numbers and sets that plain serde would change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    id: String,
    balance: Number,
    limits: NumberSet,
    #[serde(with = "serde_dynamo::string_set")]
    tags: Vec<String>,
}

/// What a `KEYS_ONLY` index on the accounts returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct AccountKey {
    id: String,
    region: String,
}

/// Numbers of 38 digits, number and string sets, written by the application and read back, are
/// what DynamoDB stores, exactly; a type that would change them is refused, naming them; and a
/// type for a `KEYS_ONLY` index that wants more than the keys is refused before any query.
#[tokio::test]
async fn the_application_keeps_exact_numbers_and_sets_and_checks_index_types() {
    let client = support::example_client().await;
    let names = support::names("app_exact");
    let table = names.physical("accounts");
    let keys_only = GlobalIndex::new("by_region", KeyAttr::s("region")).projection(Projection::KeysOnly);
    let def = TableDef::new("accounts", KeyAttr::s("id")).global_index(keys_only);
    create(&client, &table, def.clone()).await;

    let account = Account {
        id: "a1".into(),
        balance: "12345678901234567890123456789012345678".parse().unwrap(),
        limits: NumberSet(vec!["0.1".parse().unwrap(), "99999999999999999999.99".parse().unwrap()]),
        tags: vec!["gold".into(), "new".into()],
    };
    app::put(&client, &table, &account).await.unwrap();
    let key: HashMap<String, AttributeValue> = [("id".to_owned(), AttributeValue::S("a1".into()))].into();
    let stored = client.get_item().table_name(&table).set_key(Some(key.clone())).send().await.unwrap().item.unwrap();
    assert_eq!(stored["balance"], AttributeValue::N("12345678901234567890123456789012345678".into()));
    let mut limits = stored["limits"].as_ns().unwrap().clone();
    limits.sort();
    assert_eq!(limits, ["0.1", "99999999999999999999.99"]);
    assert!(stored["tags"].is_ss(), "{stored:?}");
    let read: Account = app::get(&client, &table, key.clone()).await.unwrap().unwrap();
    assert_eq!(read, account);

    // Read into a type that would lose digits and the set: refused, naming both.
    #[derive(Debug, Serialize, Deserialize)]
    struct Loose {
        id: String,
        balance: f64,
        tags: Vec<String>,
    }
    let error = app::get::<Loose>(&client, &table, key).await.unwrap_err().to_string();
    assert!(
        error.starts_with(
            "the item does not read exactly into Loose: written back, attribute(s) balance, tags would change"
        ),
        "{error}"
    );

    // The keys-only index: the type of its keys passes, one that wants the balance is refused.
    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    struct AccountItem {
        id: String,
        region: Option<String>,
        balance: Number,
    }
    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    struct WithBalance {
        id: String,
        region: String,
        balance: Number,
    }
    let schema = || TableSchema::new::<AccountItem>(def.clone());
    assert_eq!(schema().projection::<AccountKey>("by_region").validate(), Ok(()));
    let refused = schema().projection::<WithBalance>("by_region").validate().unwrap_err().to_string();
    assert!(
        refused.contains(
            "table accounts: index by_region: field balance of WithBalance: the index never returns it: the index is KEYS_ONLY and it is no key"
        ),
        "{refused}"
    );
    // What the index really returns reads into the key type.
    let mut with_region = dynamo_model::to_item(&account).unwrap();
    with_region.insert("id".into(), serde_dynamo::AttributeValue::S("a2".into()));
    with_region.insert("region".into(), serde_dynamo::AttributeValue::S("eu".into()));
    client.put_item().table_name(&table).set_item(Some(with_region.into())).send().await.unwrap();
    let returned = client
        .query()
        .table_name(&table)
        .index_name("by_region")
        .key_condition_expression("#r = :r")
        .expression_attribute_names("#r", "region")
        .expression_attribute_values(":r", AttributeValue::S("eu".into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    let keys: Vec<AccountKey> =
        returned.into_iter().map(|item| dynamo_model::from_item(item.into()).unwrap()).collect();
    assert_eq!(keys, [AccountKey { id: "a2".into(), region: "eu".into() }]);
    support::delete_tables(&client, &names).await;
}

/// Every environment of environments.toml names the variable the application reads its prefix
/// from; run with that variable (and the SDK's endpoint variable), the application finds its
/// tables; without it, it says which variable to set.
#[tokio::test]
async fn the_application_takes_its_prefix_from_the_variable_environments_toml_names() {
    let environments = dynamo_migrate::run::Environments::load(&repository().join("environments.toml")).unwrap();
    for (name, environment) in &environments.environments {
        assert_eq!(environment.application_prefix_env.as_deref(), Some(app::PREFIX_VARIABLE), "environment {name}");
    }
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let client = support::example_client().await;
    let names = support::names("app_env");
    let shop = app::Shop::new(client.clone(), names.prefix());
    create(&client, shop.customers_table(), schema::customers::table().def).await;
    shop.put_customer(&customer(9, "Barbara", Some("E2"))).await.unwrap();

    let child = |prefix: Option<&str>| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "app::child_process_running_the_application", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("AWS_ENDPOINT_URL_DYNAMODB", support::example_endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove(app::PREFIX_VARIABLE)
            .stdin(Stdio::null());
        if let Some(prefix) = prefix {
            command.env(app::PREFIX_VARIABLE, prefix);
        }
        let output = command.output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (ok, stdout) = child(Some(names.prefix()));
    assert!(ok && stdout.contains("found Barbara"), "{stdout}");
    let (ok, stdout) = child(None);
    assert!(ok && stdout.contains("the environment variable SHOP_TABLE_PREFIX is not set"), "{stdout}");
    support::delete_tables(&client, &names).await;
}

const CHILD_ENV: &str = "DYNAMO_MIGRATE_TEST_APP_CHILD";

/// Not a test of its own: the application, in a child process with its environment variables.
#[tokio::test]
async fn child_process_running_the_application() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    match app::Shop::from_env().await {
        Ok(shop) => match shop.customer(9).await.unwrap() {
            Some(found) => println!("found {}", found.name),
            None => println!("no customer 9 in {}", shop.customers_table()),
        },
        Err(e) => println!("{e}"),
    }
}

fn repository() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}
