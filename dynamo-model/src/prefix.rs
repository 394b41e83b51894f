//! The table prefix of the environment an application runs in.
//!
//! `environments.toml` gives each environment a `table_prefix`, and may name, as
//! `application_prefix_env`, the environment variable through which the application learns it
//! (set where the application is deployed). The application then resolves its tables' physical
//! names with the schema crate: `TableDef::physical_name(&prefix)`.

/// The longest table prefix (as `environments.toml` allows).
pub const MAX_PREFIX: usize = 48;

/// Why the table prefix could not be read from the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// The variable is not set (or its value is not Unicode).
    #[error(
        "the environment variable {variable} is not set: set it to the table_prefix of the environment the application runs in (environments.toml)"
    )]
    Missing {
        /// The name of the environment variable.
        variable: String,
    },
    /// The value is longer than 48 bytes, or has a character other than `a-z`, `A-Z`, `0-9`,
    /// `_`, `-` and `.`, which no DynamoDB table name may start with.
    #[error(
        "the environment variable {variable} is {value:?}, which is no table prefix: at most {MAX_PREFIX} of a-z, A-Z, 0-9, _, - and ."
    )]
    Invalid {
        /// The name of the environment variable.
        variable: String,
        /// The value it holds.
        value: String,
    },
}

/// The table prefix in the environment variable `variable` (the one `environments.toml` names as
/// `application_prefix_env`). An empty value is the empty prefix; a value that no table name
/// could start with is refused, naming the variable.
///
/// ```
/// # use dynamo_model::{KeyAttr, PrefixError, TableDef, table_prefix_from_env};
/// // Where the application is deployed, this variable holds the environment's table_prefix.
/// match table_prefix_from_env("ORDERS_APP_TABLE_PREFIX") {
///     Ok(prefix) => println!("{}", TableDef::new("orders", KeyAttr::s("customer")).physical_name(&prefix)),
///     Err(PrefixError::Missing { variable }) => assert_eq!(variable, "ORDERS_APP_TABLE_PREFIX"),
///     Err(other) => panic!("{other}"),
/// }
/// ```
pub fn table_prefix_from_env(variable: &str) -> Result<String, PrefixError> {
    let value = std::env::var(variable).map_err(|_| PrefixError::Missing { variable: variable.to_owned() })?;
    if is_prefix(&value) { Ok(value) } else { Err(PrefixError::Invalid { variable: variable.to_owned(), value }) }
}

/// True for text a DynamoDB table name may start with, no longer than [`MAX_PREFIX`].
pub fn is_prefix(text: &str) -> bool {
    text.len() <= MAX_PREFIX && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
