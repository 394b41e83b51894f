//! Data steps the way production runs them: beside an application that keeps writing. An
//! [`AppWriter`] updates, deletes and puts items while the step runs, the step's own writes go
//! through a proxy that delays them (which widens the window in which the two race), and the
//! check afterwards requires that the step lost nothing the application wrote, brought back
//! nothing it deleted, and changed no attribute it did not name.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_migrate::run::Target;
use dynamo_migrate::{DataContext, KeyAttr};
use serde::{Deserialize, Serialize};

use crate::app_writer::{AppWriter, WriterOptions, customer, summary, tally};
use crate::fault_proxy::{Delay, FaultProxy, Faults};
use crate::support::{self, Item};

/// Every operation by which the engine writes.
const WRITES: [&str; 4] = ["UpdateItem", "BatchWriteItem", "DeleteItem", "PutItem"];

/// The customer as the migration's step sees it: the attributes it reads and the one it adds.
#[derive(Serialize, Deserialize)]
struct Before {
    customer_nr: u64,
    name: String,
    email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_normalised: Option<String>,
}

fn normalised(email: &str) -> String {
    email.trim().to_lowercase()
}

/// What the deployed application puts: a customer with a name and email unique to the write,
/// and the new attribute already set, since the application knows it.
fn put_by_application(i: u64, n: u64) -> Item {
    let mut item = customer(i);
    let email = format!("  Put.{n}.Of.{i}@Example.COM ");
    item.insert("name".to_owned(), AttributeValue::S(format!("Customer {i}, put {n}")));
    item.insert("email_normalised".to_owned(), AttributeValue::S(normalised(&email)));
    item.insert("email".to_owned(), AttributeValue::S(email));
    item
}

/// The step's own attribute, after the step, of every item there is.
fn email_normalised_is_set(item: &Item) -> Result<(), String> {
    let Some(AttributeValue::S(email)) = item.get("email") else {
        return Err(format!("email is {:?}", item.get("email")));
    };
    match item.get("email_normalised") {
        Some(AttributeValue::S(got)) if *got == normalised(email) => Ok(()),
        got => Err(format!("email_normalised is {got:?}, not {:?}", normalised(email))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_backfill_beside_an_application_loses_nothing() {
    let (client, names) = (support::client().await, support::names("live_backfill"));
    let table = names.physical("customers");
    support::create_table_keyed_by(&client, &table, KeyAttr::n("customer_nr")).await;
    let seed: Vec<Item> = (0..20_000).map(customer).collect();
    DataContext::new(client.clone(), names.clone()).put_items("customers", seed.clone()).await.unwrap();

    let writer = AppWriter::start(
        client.clone(),
        &table,
        &["customer_nr"],
        seed,
        "name",
        put_by_application,
        WriterOptions { workers: 8, writes_per_second: 300.0, mix: (6, 2, 2), fresh_keys: 500 },
    );
    // The application is serving before the migration starts, and goes on after it ends.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delay = Delay::between(Duration::from_millis(5), Duration::from_millis(40));
    let proxy = FaultProxy::start_delayed(support::endpoint(), Faults::default(), delay, &WRITES).await;
    let slowed = dynamo_migrate::run::connect(&Target::local(proxy.endpoint())).await;
    let ctx = DataContext::new(slowed, names.clone());
    let backfill =
        ctx.backfill("customers", |c: Before| Some(Before { email_normalised: Some(normalised(&c.email)), ..c }));
    let report = tokio::time::timeout(Duration::from_secs(5 * 60), backfill)
        .await
        .expect("the backfill ends within 5 minutes")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = writer.stop().await;

    let violations = log.check(&client, &table, &["email_normalised"], email_normalised_is_set).await;
    println!("backfill: {report:?}; proxy: {:?}", proxy.stats());
    println!("application: {} acknowledged, {:?}", log.acknowledged(), log.counts());
    println!("violations by kind: {:?}", tally(&violations));
    // Without writes beside it, the step would prove nothing.
    assert!(log.counts().updates > 0 && log.counts().deletes > 0 && log.counts().puts > 0, "{:?}", log.counts());
    assert_eq!(log.counts().uncertain, 0, "DynamoDB Local answers every write");
    assert!(violations.is_empty(), "{}", summary(&violations));
}
