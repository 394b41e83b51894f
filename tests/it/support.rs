//! One DynamoDB Local for the whole test binary, and a unique table prefix per test.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::Client;
use dynamo_migrate::{Docker, DynamoDbLocal, LocalOptions, TableNames, Target, connect};

static SERVER: OnceLock<DynamoDbLocal> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The shared server's endpoint, started on first use. It stops when the test binary exits:
/// the guard around Java sees its stdin close.
pub fn endpoint() -> &'static str {
    SERVER
        .get_or_init(|| {
            // Started on a thread of its own: tests call this from inside their tokio runtimes.
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime
                    .block_on(DynamoDbLocal::start(&LocalOptions { docker: Docker::Never, ..LocalOptions::default() }))
                    .expect("DynamoDB Local starts")
            })
            .join()
            .unwrap()
        })
        .endpoint()
}

/// A client of the shared server.
pub async fn client() -> Client {
    connect(&Target::local(endpoint())).await
}

/// Table names with a prefix no other test uses.
pub fn names(test: &str) -> TableNames {
    TableNames::new(format!("t{}_{test}_", NEXT.fetch_add(1, Ordering::Relaxed)))
}
