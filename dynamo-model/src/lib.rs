#![warn(missing_docs)]

//! DynamoDB table definitions as plain data: what a table is, whether DynamoDB would accept it,
//! how two definitions differ, and how an application's typed items become DynamoDB items and back.
//!
//! This is the table model of dynamo-migrate. Everything here is plain serde data, with no
//! dependency on the AWS SDK, so that an application's schema crate can describe its tables, and
//! the application can name them and convert its items, without linking the SDK or the migration
//! engine. The engine turns these types into SDK calls.
//!
//! # Describing a table
//!
//! A [`TableDef`] starts with a logical name and a partition key ([`KeyAttr`]); builder methods
//! add the rest: a sort key, [`GlobalIndex`]es and [`LocalIndex`]es with their [`Projection`],
//! time to live, a stream, [`Billing`], deletion protection, [`TableClass`], point-in-time
//! recovery and tags. [`TableDef::validate`] checks it against DynamoDB's rules without sending
//! anything, and returns every broken rule at once as [`ValidationErrors`]. [`TableSchema`] pairs
//! the definition with the Rust item type and also checks the keys against that type.
//!
//! ```
//! use dynamo_model::{Billing, GlobalIndex, KeyAttr, Projection, TableDef};
//!
//! let orders = TableDef::new("orders", KeyAttr::s("customer"))
//!     .sort_key(KeyAttr::n("order_nr"))
//!     .global_index(GlobalIndex::new("by_status", KeyAttr::s("status")).projection(Projection::KeysOnly))
//!     .ttl("expires_at");
//! assert_eq!(orders.validate(), Ok(()));
//! assert_eq!(orders.billing, Billing::PayPerRequest);
//! assert_eq!(orders.attribute_definitions(), [KeyAttr::s("customer"), KeyAttr::n("order_nr"), KeyAttr::s("status")]);
//!
//! // A provisioned table needs a throughput on each global index: both rules are reported.
//! let broken = orders.clone().provisioned(0, 5);
//! let errors = broken.validate().unwrap_err();
//! assert_eq!(errors.0.len(), 2);
//! assert_eq!(
//!     errors.to_string(),
//!     "table orders: read and write capacity must be at least 1, got 0/5; \
//!      table orders: global index by_status needs a throughput because the table is provisioned"
//! );
//! ```
//!
//! # Physical names
//!
//! In an AWS account a table's name is the environment's table prefix, then the logical name,
//! then `_v<version>` once the table has been rebuilt (version 2 on). An application learns the
//! prefix from an environment variable with [`table_prefix_from_env`], and names its tables with
//! [`TableDef::physical_name`]; [`parse_physical_name`] goes back.
//!
//! ```
//! # use dynamo_model::{KeyAttr, TableDef, parse_physical_name};
//! let orders = TableDef::new("orders", KeyAttr::s("customer")).sort_key(KeyAttr::n("order_nr"));
//! assert_eq!(orders.physical_name("staging_"), "staging_orders");
//! let rebuilt = orders.version(2);
//! assert_eq!(rebuilt.physical_name("staging_"), "staging_orders_v2");
//! assert_eq!(parse_physical_name("staging_", "staging_orders_v2"), Some(("orders", 2)));
//! ```
//!
//! # Items, exactly
//!
//! [`to_item`] and [`from_item`] convert an application's serde types to and from an [`Item`].
//! DynamoDB numbers have up to 38 significant digits, more than an `f64` holds: a [`Number`]
//! (or [`NumberSet`]) field keeps them as text and is written as a DynamoDB number. [`from_item`]
//! refuses, with [`ItemError`], an item its type would not write back unchanged.
//!
//! ```
//! use dynamo_model::{Item, Number, from_item, to_item};
//! use serde::{Deserialize, Serialize};
//! use serde_dynamo::AttributeValue;
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Account {
//!     id: String,
//!     balance: Number,
//!     visits: u32,
//! }
//!
//! let account = Account { id: "a1".into(), balance: "12345678901234567890.123456789".parse().unwrap(), visits: 3 };
//! let item: Item = to_item(&account).unwrap();
//! assert_eq!(item.get("balance"), Some(&AttributeValue::N("12345678901234567890.123456789".into())));
//! assert_eq!(item.get("visits"), Some(&AttributeValue::N("3".into())));
//!
//! let read: Account = from_item(item).unwrap();
//! assert_eq!(read, account);
//! ```

mod diff;
mod exact;
mod item;
mod item_schema;
mod prefix;
mod table;
mod table_schema;
mod validate;

pub use diff::{FieldDiff, diff_tables};
pub use exact::{NUMBER_MARKER, NUMBER_SET_MARKER, NotANumber, Number, NumberSet};
pub use item::{ItemError, canonical_number, from_item, to_item};
pub use item_schema::check_item_schema;
pub use prefix::{PrefixError, table_prefix_from_env};
pub use table::{
    Billing, GlobalIndex, KeyAttr, KeyType, LocalIndex, Projection, StreamView, TableClass, TableDef, Throughput,
    parse_physical_name, physical_name,
};
pub use table_schema::{ExactRead, IndexProjection, TableSchema};
pub use validate::{ValidationError, ValidationErrors};

/// The type erasure of [`ExactRead`], for the engine to use the same version.
pub use erased_serde;
/// The schemars the table model is built on: a schema crate must derive `JsonSchema` with this
/// major version (or use it through here, with `#[schemars(crate = "dynamo_model::schemars")]`).
pub use schemars;
/// An item in DynamoDB's own attribute-value form, independent of any SDK version.
pub use serde_dynamo::Item;
