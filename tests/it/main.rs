//! Integration tests against DynamoDB Local, in one binary that shares one server; each test
//! uses its own table prefix. The server is the product's own `DynamoDbLocal`.

mod app;
mod app_writer;
mod authoring;
mod aws_rules;
mod bad_input;
mod container;
mod converge;
mod data;
mod environments;
mod exact;
mod export;
mod fault_proxy;
mod iam;
mod init;
mod interrupt;
mod ledger;
mod live;
mod local;
mod lock;
mod rebuild;
mod refusals;
mod rehearse;
mod rules_proxy;
mod schema_steps;
mod support;
mod tooling;
mod verify;
mod workers;
