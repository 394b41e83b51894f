//! Gives `init` the dependency versions this engine was tested with: the `Cargo.lock` of its
//! workspace (a checkout, or a git dependency) or of its package (cargo puts one in every
//! package it publishes), copied to `OUT_DIR/engine.lock`.

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("engine.lock");
    let lock = [manifest_dir.join("Cargo.lock"), manifest_dir.join("../Cargo.lock")].into_iter().find(|p| p.exists());
    match lock {
        Some(lock) => {
            println!("cargo::rerun-if-changed={}", lock.display());
            std::fs::copy(&lock, &out).expect("copying the engine's Cargo.lock");
        }
        // Nothing to pin from: init then says so and leaves the workspace's versions to cargo.
        None => std::fs::write(&out, "").expect("writing OUT_DIR"),
    }
    println!("cargo::rerun-if-changed={}", Path::new("build.rs").display());
}
