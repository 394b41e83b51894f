//! The migration lock: one item in the ledger table, taken with a conditional write, held by a
//! lease that a heartbeat renews, and released at the end.
//!
//! A run that dies keeps the lock only until its lease runs out. Its ledger writes are fenced:
//! starting or resuming a migration is a transaction that checks the lock is still ours, and
//! writes the lock's token into the migration's record; every later write to that record is
//! conditional on the token, so a run whose lock was taken over cannot record anything more.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::ledger::now;

pub(crate) const LOCK_ID: &str = "lock";

/// How a run takes the lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Who takes it: host, process and caller, for `status` and `unlock`.
    pub owner: String,
    /// How long the lock outlives its last heartbeat.
    pub lease: Duration,
    /// How long to wait for another run's lock before giving up.
    pub wait: Duration,
}

impl LockOptions {
    pub fn new(caller: &str) -> Self {
        LockOptions { owner: owner(caller), lease: Duration::from_secs(60), wait: Duration::from_secs(600) }
    }
}

/// `host pid N (caller)`, for the lock's owner.
pub fn owner(caller: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host} pid {} ({caller})", std::process::id())
}

pub(crate) fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub owner: String,
    pub token: String,
    pub acquired_at: String,
    pub heartbeat_at: String,
    /// Milliseconds since the epoch at which the lease runs out.
    pub lease_until_ms: i64,
    /// True when the lease has run out: the holder is presumed dead.
    pub expired: bool,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let left = (self.lease_until_ms - now_millis()) as f64 / 1000.0;
        let lease =
            if self.expired { format!("lease expired {:.0} s ago", -left) } else { format!("lease {left:.0} s left") };
        write!(f, "{} since {} (last heartbeat {}, {lease})", self.owner, self.acquired_at, self.heartbeat_at)
    }
}

/// The lock's holder, if any.
pub async fn holder(client: &Client, table: &str) -> Result<Option<LockHolder>> {
    let out = client
        .get_item()
        .table_name(table)
        .key("id", AttributeValue::S(LOCK_ID.to_owned()))
        .consistent_read(true)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => return Ok(None),
        Err(e) => return Err(Error::aws(format!("GetItem {table} (the lock)"))(e)),
    };
    let Some(item) = out.item else { return Ok(None) };
    let text = |k: &str| match item.get(k) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    let lease_until_ms = match item.get("lease_until_ms") {
        Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
        _ => 0,
    };
    Ok(Some(LockHolder {
        owner: text("owner"),
        token: text("token"),
        acquired_at: text("acquired_at"),
        heartbeat_at: text("heartbeat_at"),
        lease_until_ms,
        expired: lease_until_ms < now_millis(),
    }))
}

/// Removes the lock whoever holds it, if it is still the one with `token` (so that a lock taken
/// anew meanwhile is not removed by mistake).
pub async fn force_unlock(client: &Client, table: &str, token: &str) -> Result<bool> {
    let deleted = client
        .delete_item()
        .table_name(table)
        .key("id", AttributeValue::S(LOCK_ID.to_owned()))
        .condition_expression("#token = :token")
        .expression_attribute_names("#token", "token")
        .expression_attribute_values(":token", AttributeValue::S(token.to_owned()))
        .send()
        .await;
    match deleted {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
        Err(e) => Err(Error::aws(format!("DeleteItem {table} (the lock)"))(e)),
    }
}

/// A lock this run holds, with its heartbeat running.
#[derive(Debug)]
pub struct Lock {
    client: Client,
    table: String,
    token: String,
    heartbeat: JoinHandle<()>,
}

impl Lock {
    /// Takes the lock, waiting (polling) while another run holds an unexpired lease, up to
    /// `options.wait`.
    pub async fn acquire(client: &Client, table: &str, options: &LockOptions) -> Result<Lock> {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let start = std::time::Instant::now();
        loop {
            let now = now_millis();
            let taken = client
                .put_item()
                .table_name(table)
                .item("id", AttributeValue::S(LOCK_ID.to_owned()))
                .item("owner", AttributeValue::S(options.owner.clone()))
                .item("token", AttributeValue::S(token.clone()))
                .item("acquired_at", AttributeValue::S(now_text()))
                .item("heartbeat_at", AttributeValue::S(now_text()))
                .item("lease_until_ms", AttributeValue::N((now + options.lease.as_millis() as i64).to_string()))
                .condition_expression("attribute_not_exists(#id) OR #lease < :now")
                .expression_attribute_names("#id", "id")
                .expression_attribute_names("#lease", "lease_until_ms")
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .send()
                .await;
            match taken {
                Ok(_) => break,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                    if start.elapsed() >= options.wait {
                        let holder =
                            holder(client, table).await?.map_or_else(|| "nobody".to_owned(), |h| h.to_string());
                        return Err(Error::LockHeld {
                            table: table.to_owned(),
                            waited_s: start.elapsed().as_secs(),
                            holder,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(250 + fastrand::u64(..250))).await;
                }
                Err(e) => return Err(Error::aws(format!("PutItem {table} (take the lock)"))(e)),
            }
        }
        let heartbeat = tokio::spawn(heartbeat(client.clone(), table.to_owned(), token.clone(), options.lease));
        Ok(Lock { client: client.clone(), table: table.to_owned(), token, heartbeat })
    }

    /// The fencing token that the ledger writes carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops the heartbeat and removes the lock, if it is still ours.
    pub async fn release(self) -> Result<()> {
        self.heartbeat.abort();
        force_unlock(&self.client, &self.table, &self.token).await.map(drop)
    }
}

fn now_text() -> String {
    now()
}

impl Drop for Lock {
    /// A lock dropped without `release` stops renewing its lease, so that it runs out: as if
    /// its run had died.
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Renews the lease every third of it, until the lock is released or found taken. A lost lock
/// needs no flag here: the fenced ledger writes of its run fail from then on.
async fn heartbeat(client: Client, table: String, token: String, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let renewed = client
            .update_item()
            .table_name(&table)
            .key("id", AttributeValue::S(LOCK_ID.to_owned()))
            .update_expression("SET #lease = :until, heartbeat_at = :now")
            .condition_expression("#token = :token")
            .expression_attribute_names("#lease", "lease_until_ms")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(
                ":until",
                AttributeValue::N((now_millis() + lease.as_millis() as i64).to_string()),
            )
            .expression_attribute_values(":now", AttributeValue::S(now_text()))
            .expression_attribute_values(":token", AttributeValue::S(token.clone()))
            .send()
            .await;
        match renewed {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                tracing::error!(
                    table,
                    "the migration lock was taken by another run; this run's ledger writes will fail"
                );
                return;
            }
            // A missed heartbeat is retried at the next one; the lease covers two more.
            Err(e) => {
                tracing::warn!(table, error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "heartbeat failed")
            }
        }
    }
}
