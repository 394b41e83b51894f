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
    #[error(
        "the environment variable {variable} is not set: set it to the table_prefix of the environment the application runs in (environments.toml)"
    )]
    Missing { variable: String },
    #[error(
        "the environment variable {variable} is {value:?}, which is no table prefix: at most {MAX_PREFIX} of a-z, A-Z, 0-9, _, - and ."
    )]
    Invalid { variable: String, value: String },
}

/// The table prefix in the environment variable `variable` (the one `environments.toml` names as
/// `application_prefix_env`). An empty value is the empty prefix; a value that no table name
/// could start with is refused, naming the variable.
pub fn table_prefix_from_env(variable: &str) -> Result<String, PrefixError> {
    let value = std::env::var(variable).map_err(|_| PrefixError::Missing { variable: variable.to_owned() })?;
    if is_prefix(&value) { Ok(value) } else { Err(PrefixError::Invalid { variable: variable.to_owned(), value }) }
}

/// True for text a DynamoDB table name may start with, no longer than [`MAX_PREFIX`].
pub fn is_prefix(text: &str) -> bool {
    text.len() <= MAX_PREFIX && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
