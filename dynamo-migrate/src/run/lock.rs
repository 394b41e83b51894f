//! The migration lock: one item in the ledger table, taken with a conditional write, held by a
//! lease that a heartbeat renews, and released at the end.
//!
//! **Expiry is never judged by comparing clocks.** Every take and every heartbeat writes a fresh
//! random record version number (`rvn`), as AWS's dynamodb-lock-client does, and the holder's
//! lease duration. A waiter remembers the version it sees and when it first saw it, by its own
//! monotonic clock (`Instant`); once it has seen the same version for a whole lease, the holder
//! has stopped renewing, and the waiter takes the lock with a write conditional on that version,
//! so that a heartbeat landing meanwhile wins.
//!
//! **A holder stops before its lease could lapse.** It counts, on a clock of its own machine
//! that also runs while the machine sleeps (`CLOCK_BOOTTIME` on Linux), the time since it sent
//! its last renewal that succeeded. When that reaches the lease minus a margin (a quarter of the
//! lease), or a renewal finds the lock taken or removed, the lock is lost for good: every request
//! of the run's clients is refused before it is sent (`Lock::fence`, an SDK interceptor), and the
//! run's stop signal turns true (`Lock::stop_signal`), so the data engine stops at its next
//! checkpoint. A waiter takes over no sooner than a whole lease after the holder sent that
//! renewal (it saw the version only once it was written), so the holder has stopped sending by
//! then, however long it was paused: a process stopped with SIGSTOP, or a laptop that slept,
//! finds its deadline passed when it resumes, and sends nothing more.
//!
//! What the fence cannot stop: a request handed to the network before the deadline that
//! DynamoDB applies only after the takeover, more than the margin later (a network that holds
//! packets that long), or a process paused in the microseconds between the fence's check and
//! the socket write. The ledger is fenced besides by the lock's token (see `ledger`), so such a
//! request can never record anything; a data write in place is still conditional on what it read.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::timeout::TimeoutConfig;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::ledger::now;

pub(crate) const LOCK_ID: &str = "lock";

/// The shortest lease a run may take: a heartbeat renews it every third of it, and must get
/// through in a quarter of it.
pub const MIN_LEASE: Duration = Duration::from_secs(3);

/// How a run takes the lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Who takes it: host, process and caller, for `status` and `unlock`.
    pub owner: String,
    /// How long the lock outlives its last heartbeat.
    pub lease: Duration,
    /// How long to wait for another run's lock before giving up.
    pub wait: Duration,
    /// The environment's name, for the commands that errors about the lock tell to run.
    pub env: Option<String>,
    /// Say on stderr whom the run waits for, when it starts waiting.
    pub announce: bool,
    /// The command-line option that sets `wait`, named where the run says how long it waits
    /// (`--lock-wait`); `None` for a command whose wait is fixed.
    pub wait_option: Option<&'static str>,
}

impl LockOptions {
    /// The defaults for `caller` (the command, as the owner names it): a 60 s lease, a wait of
    /// up to 10 minutes for another run's lock, no environment named, and nothing said on
    /// stderr.
    pub fn new(caller: &str) -> Self {
        LockOptions {
            owner: owner(caller),
            lease: Duration::from_secs(60),
            wait: Duration::from_secs(600),
            env: None,
            announce: false,
            wait_option: None,
        }
    }

    fn env(&self) -> &str {
        self.env.as_deref().unwrap_or("<environment>")
    }
}

/// `host pid N (caller)`, for the lock's owner.
pub fn owner(caller: &str) -> String {
    format!("{} pid {} ({caller})", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".to_owned())
}

/// This boot of this machine, where the kernel says.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_owned())
}

/// When process `pid` started (clock ticks since boot, field 22 of `/proc/<pid>/stat`), if it is
/// alive: with the PID it names one process, since a reused PID has another start time.
fn process_started(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| start_time_of(&stat))
}

/// Field 22 of a `/proc/<pid>/stat` text.
fn start_time_of(stat: &str) -> Option<String> {
    // The command name (field 2) may hold spaces and parentheses; what follows its last ')' does not.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// Time on this machine's clock that also runs while the machine sleeps: the holder's own
/// measure of how long ago its lease was renewed (`CLOCK_BOOTTIME` on Linux; elsewhere the
/// monotonic clock, which on some systems stops during sleep).
fn holder_clock() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// A fresh record version number.
fn new_version() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    /// Who took it: `host pid N (caller)`.
    pub owner: String,
    /// The fencing token of the holder's tenure: the same from its take to its release.
    pub token: String,
    /// The record version number: new at every take and heartbeat.
    pub version: String,
    /// How long the holder's lease is: the lock is taken over once its version has not changed
    /// for that long.
    pub lease_ms: u64,
    /// The holder's machine, by its host name.
    pub host: String,
    /// The holder's process id on that machine, when it recorded one.
    pub pid: Option<u32>,
    /// The holder process's start time (field 22 of its `/proc/<pid>/stat`).
    pub pid_started: Option<String>,
    /// The boot of the holder's machine (`/proc/sys/kernel/random/boot_id`): on this machine, a
    /// holder of an earlier boot is dead, whatever its process id.
    pub boot_id: Option<String>,
    /// When the holder took the lock (RFC 3339), by its own clock.
    pub acquired_at: String,
    /// When the holder last renewed the lock, by its own clock (shown, never compared).
    pub heartbeat_at: String,
    /// A lock written by an older version of this tool, without a record version number.
    #[serde(skip)]
    legacy: bool,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} since {} (last heartbeat {} by its clock, lease {} s)",
            self.owner,
            self.acquired_at,
            self.heartbeat_at,
            self.lease_ms.div_ceil(1000)
        )
    }
}

/// Whether a holder's process lives, as far as this machine can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderProcess {
    /// On another machine (or one that records no process): only its heartbeat tells.
    Elsewhere,
    /// On this machine, and running (or stopped, or hung: only its heartbeat tells which).
    Alive(u32),
    /// On this machine, and gone (or this machine was booted again since).
    Dead(u32),
}

impl LockHolder {
    fn from_item(item: &std::collections::HashMap<String, AttributeValue>) -> LockHolder {
        let text = |k: &str| match item.get(k) {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        };
        let number = |k: &str| match item.get(k) {
            Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
            _ => None,
        };
        // An older lock item has no version, but its heartbeat changes its lease's end.
        let (version, legacy) = match (text("rvn"), item.get("lease_until_ms")) {
            (Some(v), _) => (v, false),
            (None, Some(AttributeValue::N(until))) => (until.clone(), true),
            (None, _) => (String::new(), true),
        };
        LockHolder {
            owner: text("owner").unwrap_or_default(),
            token: text("token").unwrap_or_default(),
            version,
            lease_ms: number("lease_ms").unwrap_or(0),
            host: text("host").unwrap_or_default(),
            pid: number("pid").and_then(|p| u32::try_from(p).ok()),
            pid_started: text("pid_started"),
            boot_id: text("boot_id"),
            acquired_at: text("acquired_at").unwrap_or_default(),
            heartbeat_at: text("heartbeat_at").unwrap_or_default(),
            legacy,
        }
    }

    /// The holder's lease, or `fallback` for a lock that does not say.
    fn lease(&self, fallback: Duration) -> Duration {
        if self.lease_ms == 0 { fallback } else { Duration::from_millis(self.lease_ms) }
    }

    /// Whether the holder's process lives, when it ran on this machine.
    pub fn process(&self) -> HolderProcess {
        self.process_given(&hostname(), boot_id().as_deref(), process_started)
    }

    fn process_given(&self, host: &str, boot: Option<&str>, started: impl Fn(u32) -> Option<String>) -> HolderProcess {
        let Some(pid) = self.pid else { return HolderProcess::Elsewhere };
        if self.host.is_empty() || self.host != host {
            return HolderProcess::Elsewhere;
        }
        if let (Some(then), Some(now)) = (self.boot_id.as_deref(), boot)
            && then != now
        {
            return HolderProcess::Dead(pid);
        }
        match (started(pid), &self.pid_started) {
            (None, _) => HolderProcess::Dead(pid),
            (Some(now), Some(then)) if &now != then => HolderProcess::Dead(pid),
            _ => HolderProcess::Alive(pid),
        }
    }
}

async fn read_lock(client: &Client, table: &str) -> Result<Option<LockHolder>> {
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
    Ok(out.item.as_ref().map(LockHolder::from_item))
}

/// The lock's holder, if any.
pub async fn holder(client: &Client, table: &str) -> Result<Option<LockHolder>> {
    read_lock(client, table).await
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

/// Removes the lock if it still has the record version `seen` has: nobody renewed it since.
pub async fn remove_unchanged(client: &Client, table: &str, seen: &LockHolder) -> Result<bool> {
    let (condition, value) = version_condition(seen);
    let deleted = client
        .delete_item()
        .table_name(table)
        .key("id", AttributeValue::S(LOCK_ID.to_owned()))
        .condition_expression(condition)
        .set_expression_attribute_names(legacy_names(seen))
        .expression_attribute_values(":rvn", value)
        .send()
        .await;
    match deleted {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
        Err(e) => Err(Error::aws(format!("DeleteItem {table} (the lock)"))(e)),
    }
}

/// The condition that the lock item still has `seen`'s version, and its value.
fn version_condition(seen: &LockHolder) -> (&'static str, AttributeValue) {
    if seen.legacy {
        ("attribute_not_exists(#rvn) AND #lease = :rvn", AttributeValue::N(seen.version.clone()))
    } else {
        ("#rvn = :rvn", AttributeValue::S(seen.version.clone()))
    }
}

/// The attribute names `version_condition` uses.
fn legacy_names(seen: &LockHolder) -> Option<std::collections::HashMap<String, String>> {
    let mut names = std::collections::HashMap::from([("#rvn".to_owned(), "rvn".to_owned())]);
    if seen.legacy {
        names.insert("#lease".to_owned(), "lease_until_ms".to_owned());
    }
    Some(names)
}

/// What a watcher of the lock has seen: a version, since when by its own monotonic clock, and
/// the lease the holder wrote with it.
#[derive(Debug, Clone)]
pub(crate) struct Sighting {
    version: String,
    since: Instant,
    lease: Duration,
    /// The version changed at least once while watched: the holder was seen renewing.
    renewed: bool,
}

impl Sighting {
    fn new(holder: &LockHolder, lease: Duration, now: Instant) -> Self {
        Sighting { version: holder.version.clone(), since: now, lease, renewed: false }
    }

    /// Notes the holder as seen at `now`; true when its version has not changed for a whole lease.
    fn stale(&mut self, holder: &LockHolder, lease: Duration, now: Instant) -> bool {
        if holder.version != self.version {
            *self = Sighting { renewed: true, ..Sighting::new(holder, lease, now) };
            return false;
        }
        self.lease = lease;
        now.duration_since(self.since) >= self.lease
    }
}

/// What watching a lock for one lease showed (see `watch`).
#[derive(Debug, Clone)]
pub enum Watched {
    /// Released, or removed, meanwhile.
    Gone,
    /// Its version changed: its holder's heartbeat runs.
    Renewed(LockHolder),
    /// Its version stayed the same for a whole lease: its holder stopped renewing it.
    Stale(LockHolder),
}

/// Watches the lock held by `seen` until its version changes or a whole lease (the one it says)
/// passes by this process's monotonic clock without a change.
pub async fn watch(client: &Client, table: &str, seen: &LockHolder) -> Result<Watched> {
    let lease = seen.lease(Duration::from_secs(60));
    let mut sighting = Sighting::new(seen, lease, Instant::now());
    loop {
        tokio::time::sleep(poll_interval(lease)).await;
        let Some(current) = read_lock(client, table).await? else { return Ok(Watched::Gone) };
        if current.token != seen.token {
            return Ok(Watched::Renewed(current));
        }
        if sighting.stale(&current, current.lease(lease), Instant::now()) {
            return Ok(Watched::Stale(current));
        }
        if sighting.renewed {
            return Ok(Watched::Renewed(current));
        }
    }
}

/// How often a waiter reads the lock: often enough to see it free soon, rarely enough to cost
/// nothing (a strongly consistent read of one small item).
fn poll_interval(lease: Duration) -> Duration {
    (lease / 10).clamp(Duration::from_millis(200), Duration::from_secs(2)) + Duration::from_millis(fastrand::u64(..100))
}

/// How long after the last renewal it sent a holder stops: a quarter of the lease before it
/// ends, for requests in flight to land before a waiter can take the lock over.
pub(crate) fn deadline(lease: Duration) -> Duration {
    lease - lease / 4
}

/// How long one heartbeat may take, retries included: a quarter of the lease, so that a
/// partitioned heartbeat fails fast and the next one is tried before the deadline.
pub(crate) fn heartbeat_timeout(lease: Duration) -> Duration {
    lease / 4
}

/// The client the lock's own requests go through: short timeouts (see `heartbeat_timeout`), and
/// no fence, so that a lost lock can still be released.
fn lock_client(client: &Client, lease: Duration) -> Client {
    let timeout = heartbeat_timeout(lease);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    Client::from_conf(client.config().to_builder().timeout_config(timeouts).build())
}

/// Why a run no longer holds its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockLoss {
    /// A renewal found another run's lock in its place.
    TakenOver {
        /// The new holder, as [`LockHolder`] displays it.
        by: String,
    },
    /// A renewal found no lock: it was removed (`unlock --force`).
    Removed,
    /// No renewal got through for so long that the lease may run out before a request sent now
    /// lands.
    Unrenewed {
        /// How long ago the last renewal that got through was sent, in milliseconds.
        for_ms: u64,
        /// The run's lease, in milliseconds.
        lease_ms: u64,
        /// Why the last renewal failed; `None` when none was tried (the process was paused, or
        /// its machine slept).
        last_error: Option<String>,
    },
}

impl std::fmt::Display for LockLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockLoss::TakenOver { by } => write!(f, "another run took it over: it is held by {by}"),
            LockLoss::Removed => write!(f, "it was removed (by `unlock --force`) while this run held it"),
            LockLoss::Unrenewed { for_ms, lease_ms, last_error } => {
                let lease = Duration::from_millis(*lease_ms);
                write!(
                    f,
                    "its last renewal that got through was sent {:.1} s ago, and a run stops {:.1} s after one, before its {:.0} s lease can run out and another run take the lock over",
                    *for_ms as f64 / 1000.0,
                    deadline(lease).as_secs_f64(),
                    lease.as_secs_f64()
                )?;
                match last_error {
                    Some(e) => write!(f, " (the last renewal failed: {e})"),
                    None => write!(f, " (this process did not run meanwhile: it was paused, or its machine slept)"),
                }
            }
        }
    }
}

/// The error a fenced client gives instead of sending a request once its lock is lost.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not sent: this run no longer holds the migration lock in {table}: {loss}")]
pub struct LockFenced {
    /// The ledger table the lock lives in.
    pub table: String,
    /// How the lock was lost.
    pub loss: LockLoss,
}

/// True when `error`, or one of its sources, is a request a fenced client refused to send.
pub(crate) fn is_fenced(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<LockFenced>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// What the heartbeat and the fence share.
#[derive(Debug)]
struct Lease {
    table: String,
    lease: Duration,
    /// When the last renewal that succeeded was sent, by `holder_clock`.
    renewed: Mutex<Duration>,
    last_error: Mutex<Option<String>>,
    lost: OnceLock<LockLoss>,
    signal: watch::Sender<bool>,
}

impl Lease {
    /// Ok while requests may still be sent; the first time it is not, the lock is lost for good.
    fn check(&self) -> Result<(), LockFenced> {
        if let Some(loss) = self.lost.get() {
            return Err(LockFenced { table: self.table.clone(), loss: loss.clone() });
        }
        let since = holder_clock().saturating_sub(*self.renewed.lock().unwrap_or_else(|e| e.into_inner()));
        if since >= deadline(self.lease) {
            let last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            self.lose(LockLoss::Unrenewed {
                for_ms: since.as_millis() as u64,
                lease_ms: self.lease.as_millis() as u64,
                last_error,
            });
            return Err(LockFenced { table: self.table.clone(), loss: self.lost.get().expect("just lost").clone() });
        }
        Ok(())
    }

    fn lose(&self, loss: LockLoss) {
        if self.lost.set(loss).is_ok() {
            tracing::error!(table = %self.table, "the migration lock is lost: {}", self.lost.get().expect("set"));
        }
        self.signal.send_replace(true);
    }

    fn renewed(&self, sent: Duration) {
        let mut renewed = self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        *renewed = (*renewed).max(sent);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How long until the deadline, by `holder_clock`.
    fn until_deadline(&self) -> Duration {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        (renewed + deadline(self.lease)).saturating_sub(holder_clock())
    }
}

/// The SDK interceptor of `Lock::fence`: checks the lease right before each request goes out.
#[derive(Debug)]
struct Fence(Arc<Lease>);

impl Intercept for Fence {
    fn name(&self) -> &'static str {
        "MigrationLockFence"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.check().map_err(Into::into)
    }
}

/// A lock this run holds, with its heartbeat running.
#[derive(Debug)]
pub struct Lock {
    client: Client,
    table: String,
    token: String,
    lease: Arc<Lease>,
    heartbeat: JoinHandle<()>,
    forwarders: Mutex<Vec<JoinHandle<()>>>,
}

impl Lock {
    /// Takes the lock: at once when it is free; otherwise once its holder has not renewed it for
    /// a whole lease (its record version stayed the same that long, by this process's monotonic
    /// clock), with a write conditional on that version. Gives up after `options.wait`.
    pub async fn acquire(client: &Client, table: &str, options: &LockOptions) -> Result<Lock> {
        let token = new_version();
        let start = Instant::now();
        let mut sighting: Option<Sighting> = None;
        let mut announced = false;
        let renewed = loop {
            let current = read_lock(client, table).await?;
            if let Some(holder) = &current {
                let lease = holder.lease(options.lease);
                let now = Instant::now();
                let stale = match &mut sighting {
                    Some(s) => s.stale(holder, lease, now),
                    None => {
                        sighting = Some(Sighting::new(holder, lease, now));
                        false
                    }
                };
                if !stale {
                    if start.elapsed() >= options.wait {
                        return Err(held(table, start.elapsed(), holder, sighting.as_ref(), options));
                    }
                    if options.announce && !announced {
                        eprintln!(
                            "waiting for the migration lock in {table}, held by {holder}; it is taken over once its heartbeat has not renewed it for {} s; waiting at most {} s{}",
                            lease.as_secs(),
                            options.wait.as_secs(),
                            options.wait_option.map(|o| format!(" ({o})")).unwrap_or_default()
                        );
                        announced = true;
                    }
                    tokio::time::sleep(poll_interval(lease).min(options.wait.saturating_sub(start.elapsed()))).await;
                    continue;
                }
            }
            let sent = holder_clock();
            let mut put = client
                .put_item()
                .table_name(table)
                .item("id", AttributeValue::S(LOCK_ID.to_owned()))
                .item("owner", AttributeValue::S(options.owner.clone()))
                .item("token", AttributeValue::S(token.clone()))
                .item("rvn", AttributeValue::S(new_version()))
                .item("lease_ms", AttributeValue::N(options.lease.as_millis().to_string()))
                .item("host", AttributeValue::S(hostname()))
                .item("pid", AttributeValue::N(std::process::id().to_string()))
                .item("acquired_at", AttributeValue::S(now()))
                .item("heartbeat_at", AttributeValue::S(now()));
            if let Some(started) = process_started(std::process::id()) {
                put = put.item("pid_started", AttributeValue::S(started));
            }
            if let Some(boot) = boot_id() {
                put = put.item("boot_id", AttributeValue::S(boot));
            }
            put = match &current {
                None => put.condition_expression("attribute_not_exists(#id)").expression_attribute_names("#id", "id"),
                Some(stale) => {
                    let (condition, value) = version_condition(stale);
                    put.condition_expression(condition)
                        .set_expression_attribute_names(legacy_names(stale))
                        .expression_attribute_values(":rvn", value)
                }
            };
            match put.send().await {
                Ok(_) => {
                    if let Some(stale) = &current {
                        tracing::warn!(
                            table,
                            "took over the migration lock of {stale}: it was not renewed for a whole lease"
                        );
                    }
                    break sent;
                }
                // Renewed, released or taken meanwhile: look again.
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(Error::aws(format!("PutItem {table} (take the lock)"))(e)),
            }
        };
        let (signal, _) = watch::channel(false);
        let lease = Arc::new(Lease {
            table: table.to_owned(),
            lease: options.lease,
            renewed: Mutex::new(renewed),
            last_error: Mutex::new(None),
            lost: OnceLock::new(),
            signal,
        });
        let heartbeat = tokio::spawn(heartbeat(lock_client(client, options.lease), token.clone(), lease.clone()));
        Ok(Lock {
            client: client.clone(),
            table: table.to_owned(),
            token,
            lease,
            heartbeat,
            forwarders: Mutex::default(),
        })
    }

    /// The fencing token that the ledger writes carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `client`, with every request checked against this lock right before it is sent: once the
    /// lock is lost (see the module's documentation), requests fail with [`LockFenced`] unsent.
    pub fn fence(&self, client: &Client) -> Client {
        Client::from_conf(client.config().to_builder().interceptor(Fence(self.lease.clone())).build())
    }

    /// A signal that turns true when `also` does (Ctrl-C) or when the lock is lost, for the run's
    /// work to stop at its next checkpoint.
    pub fn stop_signal(&self, mut also: watch::Receiver<bool>) -> watch::Receiver<bool> {
        let (stop, stopped) = watch::channel(*also.borrow() || self.lease.lost.get().is_some());
        let mut lost = self.lease.signal.subscribe();
        let forwarder = tokio::spawn(async move {
            // A sender that is gone never turns true.
            let also = async {
                if also.wait_for(|on| *on).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let lost = async {
                if lost.wait_for(|on| *on).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = also => {}
                () = lost => {}
            }
            stop.send_replace(true);
        });
        self.forwarders.lock().unwrap_or_else(|e| e.into_inner()).push(forwarder);
        stopped
    }

    /// Why the lock was lost, if it was: found taken or removed, or past its deadline when a
    /// request or the heartbeat looked.
    pub fn lost(&self) -> Option<LockLoss> {
        self.lease.lost.get().cloned()
    }

    /// Stops the heartbeat and removes the lock, if it is still ours.
    pub async fn release(self) -> Result<()> {
        self.stop();
        force_unlock(&self.client, &self.table, &self.token).await.map(drop)
    }

    fn stop(&self) {
        self.heartbeat.abort();
        for forwarder in self.forwarders.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            forwarder.abort();
        }
    }
}

impl Drop for Lock {
    /// A lock dropped without `release` stops renewing its lease, so that it runs out: as if
    /// its run had died.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The error of a wait that ran out: who holds the lock, and what to do about it.
fn held(
    table: &str,
    waited: Duration,
    holder: &LockHolder,
    sighting: Option<&Sighting>,
    options: &LockOptions,
) -> Error {
    let env = options.env();
    let advice = match holder.process() {
        HolderProcess::Dead(pid) => format!(
            "its process {pid} on this machine ({}) is dead; remove its lock at once with `cargo xtask unlock --env {env} --force`, then run again",
            holder.host
        ),
        process => {
            let alive = match process {
                HolderProcess::Alive(pid) => format!(" (its process {pid} on this machine runs)"),
                _ => String::new(),
            };
            let seen = if sighting.is_some_and(|s| s.renewed) {
                "its heartbeat renewed the lock while this run waited"
            } else {
                "its lease has not run out since this run first saw it"
            };
            format!(
                "its holder is alive{alive}: {seen}. Wait for it to finish (`cargo xtask status --env {env}` shows the ledger), or stop it, then run again; if it is dead, `cargo xtask unlock --env {env} --force` removes its lock once it has not been renewed for a whole lease"
            )
        }
    };
    Error::LockHeld { table: table.to_owned(), waited_s: waited.as_secs(), holder: holder.to_string(), advice }
}

/// Renews the lease every third of it, until the lock is released, found taken or removed, or
/// not renewed before its deadline; each of those but the release loses the lock for good.
async fn heartbeat(client: Client, token: String, lease: Arc<Lease>) {
    let every = lease.lease / 3;
    let mut next = every;
    loop {
        // Sleeps until the next renewal, or the deadline if that comes first.
        let until_deadline = lease.until_deadline();
        tokio::time::sleep(next.min(until_deadline)).await;
        if lease.check().is_err() {
            return;
        }
        let sent = holder_clock();
        let request = client
            .update_item()
            .table_name(&lease.table)
            .key("id", AttributeValue::S(LOCK_ID.to_owned()))
            .update_expression("SET #rvn = :rvn, lease_ms = :lease, heartbeat_at = :now")
            .condition_expression("#token = :token")
            .expression_attribute_names("#rvn", "rvn")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":rvn", AttributeValue::S(new_version()))
            .expression_attribute_values(":lease", AttributeValue::N(lease.lease.as_millis().to_string()))
            .expression_attribute_values(":now", AttributeValue::S(now()))
            .expression_attribute_values(":token", AttributeValue::S(token.clone()))
            .send();
        let renewed = tokio::select! {
            renewed = request => renewed,
            () = tokio::time::sleep(lease.until_deadline()) => {
                let _ = lease.check();
                return;
            }
        };
        match renewed {
            Ok(_) => {
                lease.renewed(sent);
                next = every.saturating_sub(holder_clock().saturating_sub(sent));
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                let loss = match read_lock(&client, &lease.table).await {
                    Ok(Some(other)) => LockLoss::TakenOver { by: other.to_string() },
                    Ok(None) => LockLoss::Removed,
                    Err(_) => LockLoss::TakenOver { by: "another run".to_owned() },
                };
                lease.lose(loss);
                return;
            }
            // Tried again soon: the deadline leaves room for a few more.
            Err(e) => {
                let error = DisplayErrorContext(&e).to_string();
                tracing::warn!(table = %lease.table, error, "renewing the migration lock failed");
                *lease.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                next = lease.lease / 12;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(version: &str, lease_ms: u64) -> LockHolder {
        LockHolder {
            owner: "host-a pid 7 (ci)".into(),
            token: "t".into(),
            version: version.into(),
            lease_ms,
            host: "host-a".into(),
            pid: Some(7),
            pid_started: Some("1234".into()),
            boot_id: Some("boot-1".into()),
            acquired_at: String::new(),
            heartbeat_at: String::new(),
            legacy: false,
        }
    }

    #[test]
    fn a_version_unchanged_for_a_whole_lease_is_stale_and_a_new_one_starts_over() {
        let lease = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut seen = Sighting::new(&holder("v1", 3000), lease, t0);
        assert!(!seen.stale(&holder("v1", 3000), lease, t0 + Duration::from_millis(2999)));
        assert!(seen.stale(&holder("v1", 3000), lease, t0 + lease));
        // A renewal just before: the whole lease is counted again from when it was seen.
        let mut seen = Sighting::new(&holder("v1", 3000), lease, t0);
        assert!(!seen.stale(&holder("v2", 3000), lease, t0 + Duration::from_millis(2900)));
        assert!(seen.renewed);
        assert!(!seen.stale(&holder("v2", 3000), lease, t0 + Duration::from_millis(5800)));
        assert!(seen.stale(&holder("v2", 3000), lease, t0 + Duration::from_millis(5900)));
    }

    #[test]
    fn the_holder_stops_before_its_lease_and_renews_well_within_it() {
        for secs in [3, 10, 60, 3600] {
            let lease = Duration::from_secs(secs);
            assert!(deadline(lease) < lease);
            assert!(heartbeat_timeout(lease) < lease / 3, "a partitioned heartbeat fails within a third");
            // A renewal every third: two of them are tried before the deadline.
            assert!(lease / 3 + heartbeat_timeout(lease) < deadline(lease));
        }
    }

    #[test]
    fn the_heartbeat_client_gives_up_within_a_quarter_of_the_lease() {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(300)).build())
            .build();
        let client = lock_client(&Client::from_conf(config), Duration::from_secs(60));
        let timeouts = client.config().timeout_config().expect("timeouts");
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(15)));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(Duration::from_secs(15)));
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn a_holder_on_this_machine_is_dead_when_its_pid_is_gone_or_reused() {
        let h = holder("v", 3000);
        let same = |started: Option<&'static str>| move |_pid: u32| started.map(str::to_owned);
        assert_eq!(h.process_given("host-a", Some("boot-1"), same(Some("1234"))), HolderProcess::Alive(7));
        assert_eq!(h.process_given("host-a", Some("boot-1"), same(None)), HolderProcess::Dead(7));
        assert_eq!(h.process_given("host-a", Some("boot-1"), same(Some("9999"))), HolderProcess::Dead(7), "reused");
        assert_eq!(h.process_given("host-a", Some("boot-2"), same(Some("1234"))), HolderProcess::Dead(7), "rebooted");
        assert_eq!(h.process_given("host-b", Some("boot-1"), same(None)), HolderProcess::Elsewhere);
        assert_eq!(LockHolder { pid: None, ..h }.process_given("host-a", None, same(None)), HolderProcess::Elsewhere);
    }

    #[test]
    fn this_process_has_a_start_time_and_the_parser_reads_field_22() {
        assert!(process_started(std::process::id()).is_some());
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(start_time_of(stat).as_deref(), Some("98765"));
    }

    #[test]
    fn an_older_lock_item_is_versioned_by_its_lease_end() {
        let item = std::collections::HashMap::from([
            ("owner".to_owned(), AttributeValue::S("old".into())),
            ("lease_until_ms".to_owned(), AttributeValue::N("1700000000000".into())),
        ]);
        let h = LockHolder::from_item(&item);
        assert_eq!((h.version.as_str(), h.legacy), ("1700000000000", true));
        assert_eq!(version_condition(&h).0, "attribute_not_exists(#rvn) AND #lease = :rvn");
        assert_eq!(h.lease(Duration::from_secs(60)), Duration::from_secs(60), "no lease written: the waiter's own");
    }

    #[test]
    fn a_paused_holder_finds_its_deadline_passed_and_stays_lost() {
        let (signal, mut stopped) = watch::channel(false);
        let lease = Lease {
            table: "ledger".into(),
            lease: Duration::from_secs(4),
            renewed: Mutex::new(holder_clock()),
            last_error: Mutex::new(None),
            lost: OnceLock::new(),
            signal,
        };
        assert!(lease.check().is_ok());
        // As if the process had been stopped for the whole deadline.
        *lease.renewed.lock().unwrap() = holder_clock().saturating_sub(deadline(lease.lease));
        let refused = lease.check().unwrap_err();
        assert!(matches!(refused.loss, LockLoss::Unrenewed { last_error: None, .. }));
        assert!(refused.to_string().contains("this process did not run meanwhile"), "{refused}");
        assert!(*stopped.borrow_and_update());
        // A renewal that lands afterwards does not undo it.
        lease.renewed(holder_clock());
        assert!(lease.check().is_err());
        let boxed: Box<dyn std::error::Error + Send + Sync> = refused.into();
        assert!(is_fenced(boxed.as_ref()));
    }
}
