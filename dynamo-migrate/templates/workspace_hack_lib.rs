//! Nothing to call: see this crate's Cargo.toml, which exists for cargo's feature resolution.
