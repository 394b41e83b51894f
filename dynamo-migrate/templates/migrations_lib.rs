//! The application's migrations: ordered, append-only, forward-only.
//!
//! Each file is one migration, named for its version and purpose (`cargo xtask new <name>` writes
//! and registers it). Once a migration is applied anywhere, its file never changes (its SHA-256 is
//! in the ledger): put any change in a new one.

use dynamo_migrate::Migration;

/// Every migration, in version order.
pub fn all() -> Vec<Migration> {
    vec![]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `mNNNN_*.rs` file here is registered, each registers its own file, and the versions
    /// are in order (verify and migrate check the same).
    #[test]
    fn files_and_registrations_agree() {
        let all = all();
        assert!(all.iter().all(|m| m.registration_error.is_none()));
        let unregistered = dynamo_migrate::authoring::check_files(&all);
        assert_eq!(unregistered, Vec::<String>::new());
        let known: Vec<_> = all.iter().map(Migration::info).collect();
        let pending = dynamo_migrate::run::pending(&[], &known).unwrap();
        assert_eq!(pending.len(), known.len());
    }
}
