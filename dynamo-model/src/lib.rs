//! The table model shared by the schema crate and the engine.
//!
//! Everything here is plain serde data, so that an application's schema crate can describe its
//! tables without linking the AWS SDK. The engine converts these types to and from SDK calls.

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
