//! Integration tests against DynamoDB Local, in one binary that shares one server; each test
//! uses its own table prefix. The server is the product's own `DynamoDbLocal`.

mod app_writer;
mod aws_rules;
mod container;
mod data;
mod environments;
mod exact;
mod fault_proxy;
mod ledger;
mod live;
mod local;
mod rebuild;
mod rules_proxy;
mod schema_steps;
mod support;
mod verify;
