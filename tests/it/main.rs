//! Integration tests against DynamoDB Local, in one binary that shares one server; each test
//! uses its own table prefix. The server is the product's own `DynamoDbLocal`.

mod container;
mod data;
mod environments;
mod fault_proxy;
mod ledger;
mod local;
mod schema_steps;
mod support;
mod verify;
