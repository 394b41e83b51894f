//! A rules proxy: an HTTP proxy on loopback, in front of DynamoDB Local, that refuses what AWS
//! refuses and DynamoDB Local does not, with AWS's error shapes, so that tests see production's
//! answers:
//!
//! - `UpdateTimeToLive` within an hour of the table's last successful one: `ValidationException`
//!   "Time to live has been modified multiple times within a fixed interval";
//! - a fifth switch to on-demand (`BillingMode` `PAY_PER_REQUEST` on a provisioned table) in a
//!   rolling 24 hours: `LimitExceededException`;
//! - a third table class change in a trailing 30 days: `LimitExceededException`;
//! - a decrease of a table's or a GSI's provisioned throughput after 4 that UTC day, within an hour
//!   of the last one: `LimitExceededException` with AWS's message.
//!
//! It judges from its own observation of the calls that went through it and succeeded (per table
//! name; a deleted table's history goes with it). It also keeps what DynamoDB Local does not:
//! a table class change is answered by the proxy itself (DynamoDB Local accepts a class at
//! creation, keeps none, and refuses an update of it), and `DescribeTable` answers gain the
//! summary fields the planner reads and DynamoDB Local leaves out or zeroes:
//! `TableClassSummary` (class and `LastUpdateDateTime`), `NumberOfDecreasesToday` and
//! `LastDecreaseDateTime` of the table and each GSI; `DescribeTimeToLive` says ENABLING or
//! DISABLING within the hour after a change, as AWS does while it processes one.
//! `BillingModeSummary.LastUpdateToPayPerRequestDateTime` DynamoDB Local reports itself.
//!
//! [`RulesProxy::fail_next`] makes the next call of an operation fail once with
//! `AccessDeniedException` (a deploy role missing a permission), which the SDK does not retry.
//!
//! [`RulesProxy::fail_exports`] makes every `DescribeExport` say the export FAILED, with AWS's
//! `FailureCode` and `FailureMessage` (an export whose bucket policy refuses DynamoDB), in front
//! of moto, whose exports always complete; [`RulesProxy::hold_exports`] makes it say
//! `IN_PROGRESS`, as AWS does for the minutes or hours an export takes.
//!
//! moto ignores `ExportType`: asked for an incremental export, it writes a full one. The proxy
//! refuses an incremental export whose window AWS refuses (shorter than 15 minutes, longer than
//! 24 hours, or ending before it starts) with `ValidationException`, and holds every one it lets
//! through `IN_PROGRESS` until the test has written the files AWS would have written
//! ([`RulesProxy::incremental_exports`], [`RulesProxy::deliver_export`]). It does not refuse an
//! `ExportToTime` in the future: the tests that ask for incremental exports run the rebuild's
//! clock a day ahead. [`RulesProxy::trim_stream_before`] drops from `GetRecords` the records
//! created before a time, as AWS trims a stream's records after 24 hours.
//!
//! HTTP is `fault_proxy`'s: keep-alive connections, bodies delimited by `Content-Length`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::fault_proxy::{accept_connections, exchange, invalid_data, read_exact_into, read_head};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

const VALIDATION: &str = "com.amazon.coral.validate#ValidationException";
const LIMIT_EXCEEDED: &str = "com.amazonaws.dynamodb.v20120810#LimitExceededException";
const ACCESS_DENIED: &str = "com.amazon.coral.service#AccessDeniedException";

/// One request the proxy refused (or failed on purpose), as it answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub operation: String,
    pub table: String,
    /// The error's type, without its namespace: `ValidationException`, `LimitExceededException`.
    pub error: String,
    pub message: String,
}

/// An incremental export the proxy let through, as it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementalExport {
    pub arn: String,
    /// Its window, in milliseconds since the epoch.
    pub from_ms: u64,
    pub to_ms: u64,
    pub bucket: String,
    pub prefix: String,
    /// `NEW_AND_OLD_IMAGES` or `NEW_IMAGE` (AWS's default is the first).
    pub view: String,
}

/// A running rules proxy. Dropping it stops it: its listener closes and its connections end.
pub struct RulesProxy {
    endpoint: String,
    shared: Arc<Shared>,
    accept_loop: AbortHandle,
}

impl RulesProxy {
    /// Starts listening on 127.0.0.1:0 in front of `upstream` ("http://127.0.0.1:PORT").
    ///
    /// Panics on an upstream that is not an `http://` URL and when no loopback port can be bound:
    /// mistakes in the test.
    pub async fn start(upstream: &str) -> RulesProxy {
        let authority = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the upstream must be an http:// URL, not {upstream}"))
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the rules proxy binds a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("a bound listener has an address"));
        let shared = Arc::new(Shared { upstream: authority, ..Shared::default() });
        let accept_loop = tokio::spawn(accept_connections(
            listener,
            Arc::clone(&shared),
            "rules proxy",
            |client, shared| async move { relay(client, &shared).await },
        ))
        .abort_handle();
        RulesProxy { endpoint, shared, accept_loop }
    }

    /// The proxy's URL, to give the SDK as its endpoint.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Makes the next request of `operation` fail with `AccessDeniedException`, once.
    pub fn fail_next(&self, operation: &str) {
        self.shared.fail_next.lock().unwrap().push(operation.to_owned());
    }

    /// While `failure` is set, every `DescribeExport` says the export FAILED with this code
    /// and message.
    pub fn fail_exports(&self, failure: Option<(&str, &str)>) {
        *self.shared.fail_exports.lock().unwrap() = failure.map(|(c, m)| (c.to_owned(), m.to_owned()));
    }

    /// While `hold` is true, every `DescribeExport` says the export is still `IN_PROGRESS`.
    pub fn hold_exports(&self, hold: bool) {
        self.shared.hold_exports.store(hold, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every incremental export let through so far, in order.
    pub fn incremental_exports(&self) -> Vec<IncrementalExport> {
        self.shared.incremental.lock().unwrap().iter().map(|(export, _)| export.clone()).collect()
    }

    /// The incremental export `arn` has its files: `DescribeExport` says what moto says of it.
    pub fn deliver_export(&self, arn: &str) {
        for (export, delivered) in self.shared.incremental.lock().unwrap().iter_mut() {
            if export.arn == arn {
                *delivered = true;
            }
        }
    }

    /// While set, `GetRecords` leaves out every record created before this time (milliseconds
    /// since the epoch), as AWS does once they are 24 hours old.
    pub fn trim_stream_before(&self, at_ms: Option<u64>) {
        *self.shared.trim_before.lock().unwrap() = at_ms;
    }

    /// Every request refused so far, in order.
    pub fn refusals(&self) -> Vec<Refused> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// The bodies of the requests of `operation` that reached DynamoDB (moto), in order: those
    /// of `ExportTableToPointInTime` and `ImportTable` only, which are few and small.
    pub fn requests(&self, operation: &str) -> Vec<Value> {
        self.shared.kept.lock().unwrap().iter().filter(|(o, _)| o == operation).map(|(_, r)| r.clone()).collect()
    }

    /// How many requests of `operation` succeeded (answered by DynamoDB Local, or by the proxy
    /// for a table class change), on any table.
    pub fn passed(&self, operation: &str) -> u64 {
        self.shared.passed.lock().unwrap().iter().filter(|((o, _), _)| o == operation).map(|(_, n)| n).sum()
    }

    /// How many requests of `operation` on table `table` succeeded.
    pub fn passed_on(&self, operation: &str, table: &str) -> u64 {
        self.shared.passed.lock().unwrap().get(&(operation.to_owned(), table.to_owned())).copied().unwrap_or(0)
    }
}

/// A client of the proxy whose retries stay in a partition of their own: the SDK retries a
/// `LimitExceededException` as throttling, which must not drain other tests' retry tokens.
pub async fn client_of(proxy: &RulesProxy) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition};
    let client = dynamo_migrate::run::connect(&dynamo_migrate::run::Target::local(proxy.endpoint())).await;
    let retry = RetryConfig::standard().with_max_attempts(2).with_initial_backoff(Duration::from_millis(10));
    let config = client
        .config()
        .to_builder()
        .retry_config(retry)
        .retry_partition(RetryPartition::new(format!("rules_proxy {}", proxy.endpoint())))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

impl Drop for RulesProxy {
    fn drop(&mut self) {
        // The accept loop owns the listener and the connection tasks: aborting it ends them all.
        self.accept_loop.abort();
    }
}

/// What the proxy has seen of one table.
#[derive(Debug, Default)]
struct TableState {
    ttl_changes: Vec<u64>,
    on_demand_switches: Vec<u64>,
    /// `None` until the proxy saw the table created.
    class: Option<String>,
    class_changes: Vec<u64>,
    /// Whether the table is provisioned, as last seen.
    provisioned: Option<bool>,
    /// Read and write capacity of the table (`""`) and each GSI, as last seen.
    capacity: BTreeMap<String, (i64, i64)>,
    /// Decreases of the table (`""`) and each GSI.
    decreases: BTreeMap<String, Vec<u64>>,
}

impl TableState {
    fn class(&self) -> &str {
        self.class.as_deref().unwrap_or("STANDARD")
    }

    /// The targets (`""`: the table; a GSI's name) whose capacity `update` lowers.
    fn decreased(&self, update: &Value) -> Vec<String> {
        if self.provisioned != Some(true) || update["BillingMode"] == "PAY_PER_REQUEST" {
            return vec![];
        }
        let lower = |target: &str, throughput: &Value| {
            let (Some(read), Some(write)) =
                (throughput["ReadCapacityUnits"].as_i64(), throughput["WriteCapacityUnits"].as_i64())
            else {
                return false;
            };
            self.capacity.get(target).is_some_and(|(r, w)| read < *r || write < *w)
        };
        let mut targets = Vec::new();
        if lower("", &update["ProvisionedThroughput"]) {
            targets.push(String::new());
        }
        for index_update in update["GlobalSecondaryIndexUpdates"].as_array().into_iter().flatten() {
            let change = &index_update["Update"];
            if let Some(index) = change["IndexName"].as_str()
                && lower(index, &change["ProvisionedThroughput"])
            {
                targets.push(index.to_owned());
            }
        }
        targets
    }

    fn decreases_today(&self, target: &str, now: u64) -> Vec<u64> {
        self.decreases.get(target).into_iter().flatten().copied().filter(|at| at / DAY_MS == now / DAY_MS).collect()
    }

    fn remember_capacity(&mut self, target: &str, throughput: &Value) {
        if let (Some(read), Some(write)) =
            (throughput["ReadCapacityUnits"].as_i64(), throughput["WriteCapacityUnits"].as_i64())
        {
            self.capacity.insert(target.to_owned(), (read, write));
        }
    }
}

#[derive(Default)]
struct Shared {
    upstream: String,
    tables: Mutex<HashMap<String, TableState>>,
    fail_next: Mutex<Vec<String>>,
    /// `FailureCode` and `FailureMessage` every `DescribeExport` answers with, while set.
    fail_exports: Mutex<Option<(String, String)>>,
    /// Every `DescribeExport` answers `IN_PROGRESS`, while set.
    hold_exports: std::sync::atomic::AtomicBool,
    /// Incremental exports let through, and whether the test has delivered their files.
    incremental: Mutex<Vec<(IncrementalExport, bool)>>,
    /// `GetRecords` leaves out records created before this time, while set.
    trim_before: Mutex<Option<u64>>,
    refused: Mutex<Vec<Refused>>,
    /// Successful requests by operation and table.
    passed: Mutex<BTreeMap<(String, String), u64>>,
    /// The request bodies of the operations a test asked to keep, in order.
    kept: Mutex<Vec<(String, Value)>>,
}

/// What the proxy does with one request.
enum Verdict {
    /// Forwarded, with this body instead of the client's when set.
    Forward(Option<Value>),
    /// Answered by the proxy: status and body.
    Answer(&'static str, Value),
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A stream record's creation time: seconds since the epoch as AWS gives it, or the ISO text
/// without a zone moto gives.
fn created_ms(value: &Value) -> Option<u64> {
    if let Some(seconds) = value.as_f64() {
        return Some((seconds * 1000.0) as u64);
    }
    let text = value.as_str()?;
    let zoned = if text.ends_with('Z') || text.contains('+') { text.to_owned() } else { format!("{text}Z") };
    DateTime::from_str(&zoned, DateTimeFormat::DateTime).ok()?.to_millis().ok().map(|ms| ms as u64)
}

fn seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn time_text(ms: u64) -> String {
    DateTime::from_millis(ms as i64).fmt(DateTimeFormat::DateTime).unwrap_or_default()
}

impl Shared {
    fn refuse(&self, operation: &str, table: &str, error: &str, message: String) -> Verdict {
        self.refused.lock().unwrap().push(Refused {
            operation: operation.to_owned(),
            table: table.to_owned(),
            error: error.rsplit('#').next().unwrap_or(error).to_owned(),
            message: message.clone(),
        });
        Verdict::Answer("400 Bad Request", json!({ "__type": error, "message": message }))
    }

    fn pass(&self, operation: &str, table: &str) {
        *self.passed.lock().unwrap().entry((operation.to_owned(), table.to_owned())).or_default() += 1;
    }

    /// Refuses what AWS would refuse now; answers a table class change itself.
    fn judge(&self, operation: &str, request: &Value) -> Verdict {
        let table = request["TableName"].as_str().unwrap_or_default().to_owned();
        let failing = {
            let mut fail_next = self.fail_next.lock().unwrap();
            let found = fail_next.iter().position(|o| o == operation);
            found.map(|i| fail_next.remove(i))
        };
        if failing.is_some() {
            let message = format!(
                "User: arn:aws:sts::000000000000:assumed-role/deploy/ci is not authorized to perform: dynamodb:{operation} on resource: table/{table} (injected once by the rules proxy)"
            );
            return self.refuse(operation, &table, ACCESS_DENIED, message);
        }
        if operation == "ExportTableToPointInTime" && request["ExportType"] == "INCREMENTAL_EXPORT" {
            let spec = &request["IncrementalExportSpecification"];
            let (from, to) = (spec["ExportFromTime"].as_f64(), spec["ExportToTime"].as_f64());
            let (Some(from), Some(to)) = (from, to) else {
                let message = "IncrementalExportSpecification must have ExportFromTime and ExportToTime (the proxy does not choose them as AWS does)".to_owned();
                return self.refuse(operation, &table, VALIDATION, message);
            };
            let minutes = (to - from) / 60.0;
            if !(15.0..=24.0 * 60.0).contains(&minutes) {
                let message = format!(
                    "Incremental export period from ExportFromTime to ExportToTime must be at least 15 minutes and at most 24 hours, not {minutes:.1} minutes"
                );
                return self.refuse(operation, &table, VALIDATION, message);
            }
        }
        let now = now_ms();
        let mut tables = self.tables.lock().unwrap();
        let state = tables.entry(table.clone()).or_default();
        match operation {
            "UpdateTimeToLive" => {
                if let Some(last) = state.ttl_changes.last()
                    && last + HOUR_MS > now
                {
                    let message = "Time to live has been modified multiple times within a fixed interval".to_owned();
                    drop(tables);
                    return self.refuse(operation, &table, VALIDATION, message);
                }
            }
            "UpdateTable" => {
                if request["BillingMode"] == "PAY_PER_REQUEST" && state.provisioned == Some(true) {
                    let recent: Vec<u64> =
                        state.on_demand_switches.iter().copied().filter(|at| at + DAY_MS > now).collect();
                    if recent.len() >= 4 {
                        let message = format!(
                            "Subscriber limit exceeded: Updates to PayPerRequest mode are limited to 4 times within a rolling 24 hours. Last update at {}",
                            time_text(*recent.last().expect("four of them"))
                        );
                        drop(tables);
                        return self.refuse(operation, &table, LIMIT_EXCEEDED, message);
                    }
                }
                if let Some(class) = request["TableClass"].as_str()
                    && class != state.class()
                {
                    let recent: Vec<u64> =
                        state.class_changes.iter().copied().filter(|at| at + 30 * DAY_MS > now).collect();
                    if recent.len() >= 2 {
                        let message = format!(
                            "Subscriber limit exceeded: Table class updates are limited to 2 within a trailing 30 days. Last update at {}",
                            time_text(*recent.last().expect("two of them"))
                        );
                        drop(tables);
                        return self.refuse(operation, &table, LIMIT_EXCEEDED, message);
                    }
                }
                for target in state.decreased(request) {
                    let today = state.decreases_today(&target, now);
                    if let Some(last) = today.last()
                        && today.len() >= 4
                        && last + HOUR_MS > now
                    {
                        // AWS's own words.
                        let message = format!(
                            "Subscriber limit exceeded: Provisioned throughput decreases are limited within a given UTC day. After the first 4 decreases, each subsequent decrease in the same UTC day can be performed at most once every 3600 seconds. Number of decreases today: {}. Last decrease at {}. Next decrease can be made at {}",
                            today.len(),
                            time_text(*last),
                            time_text(last + HOUR_MS)
                        );
                        drop(tables);
                        return self.refuse(operation, &table, LIMIT_EXCEEDED, message);
                    }
                }
                if let Some(class) = request["TableClass"].as_str() {
                    // DynamoDB Local would refuse the update: the proxy keeps the class itself.
                    if class != state.class() {
                        state.class_changes.push(now);
                    }
                    state.class = Some(class.to_owned());
                    let others =
                        request.as_object().is_some_and(|o| o.keys().any(|k| k != "TableName" && k != "TableClass"));
                    if !others {
                        let description = json!({
                            "TableDescription": {
                                "TableName": table,
                                "TableStatus": "ACTIVE",
                                "TableClassSummary": { "TableClass": class, "LastUpdateDateTime": seconds(now) },
                            }
                        });
                        drop(tables);
                        self.pass(operation, &table);
                        return Verdict::Answer("200 OK", description);
                    }
                    let mut rest = request.clone();
                    rest.as_object_mut().expect("an object has a TableClass").remove("TableClass");
                    return Verdict::Forward(Some(rest));
                }
            }
            _ => {}
        }
        Verdict::Forward(None)
    }

    /// Records what a forwarded request changed, once DynamoDB Local accepted it, and adds to a
    /// description what DynamoDB Local leaves out. Returns the body to send back, if changed.
    fn observe(&self, operation: &str, request: &Value, response: &mut Value) -> bool {
        if operation == "ExportTableToPointInTime" && request["ExportType"] == "INCREMENTAL_EXPORT" {
            let spec = &request["IncrementalExportSpecification"];
            let ms = |v: &Value| (v.as_f64().unwrap_or_default() * 1000.0).round() as u64;
            let export = IncrementalExport {
                arn: response["ExportDescription"]["ExportArn"].as_str().unwrap_or_default().to_owned(),
                from_ms: ms(&spec["ExportFromTime"]),
                to_ms: ms(&spec["ExportToTime"]),
                bucket: request["S3Bucket"].as_str().unwrap_or_default().to_owned(),
                prefix: request["S3Prefix"].as_str().unwrap_or_default().to_owned(),
                view: spec["ExportViewType"].as_str().unwrap_or("NEW_AND_OLD_IMAGES").to_owned(),
            };
            self.incremental.lock().unwrap().push((export, false));
            return false;
        }
        if operation == "GetRecords" {
            let Some(before) = *self.trim_before.lock().unwrap() else { return false };
            let Some(records) = response["Records"].as_array_mut() else { return false };
            let count = records.len();
            records.retain(|r| created_ms(&r["dynamodb"]["ApproximateCreationDateTime"]).is_none_or(|at| at >= before));
            return records.len() != count;
        }
        if operation == "DescribeExport" {
            let arn = request["ExportArn"].as_str().unwrap_or_default();
            let held = self.incremental.lock().unwrap().iter().any(|(e, delivered)| e.arn == arn && !delivered);
            if held {
                response["ExportDescription"]["ExportStatus"] = json!("IN_PROGRESS");
                return true;
            }
            if self.hold_exports.load(std::sync::atomic::Ordering::SeqCst) {
                response["ExportDescription"]["ExportStatus"] = json!("IN_PROGRESS");
                return true;
            }
            let Some((code, message)) = self.fail_exports.lock().unwrap().clone() else { return false };
            let description = &mut response["ExportDescription"];
            description["ExportStatus"] = json!("FAILED");
            description["FailureCode"] = json!(code);
            description["FailureMessage"] = json!(message);
            return true;
        }
        let table = request["TableName"].as_str().unwrap_or_default().to_owned();
        let now = now_ms();
        let mut tables = self.tables.lock().unwrap();
        match operation {
            "CreateTable" => {
                let mut state = TableState {
                    class: Some(request["TableClass"].as_str().unwrap_or("STANDARD").to_owned()),
                    provisioned: Some(request["BillingMode"] != "PAY_PER_REQUEST"),
                    ..TableState::default()
                };
                state.remember_capacity("", &request["ProvisionedThroughput"]);
                for index in request["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
                    if let Some(name) = index["IndexName"].as_str() {
                        state.remember_capacity(name, &index["ProvisionedThroughput"]);
                    }
                }
                tables.insert(table, state);
                false
            }
            "DeleteTable" => {
                tables.remove(&table);
                false
            }
            "UpdateTimeToLive" => {
                tables.entry(table).or_default().ttl_changes.push(now);
                false
            }
            "UpdateTable" => {
                let state = tables.entry(table).or_default();
                for target in state.decreased(request) {
                    state.decreases.entry(target).or_default().push(now);
                }
                match request["BillingMode"].as_str() {
                    Some("PAY_PER_REQUEST") => {
                        if state.provisioned == Some(true) {
                            state.on_demand_switches.push(now);
                        }
                        state.provisioned = Some(false);
                    }
                    Some("PROVISIONED") => state.provisioned = Some(true),
                    _ => {}
                }
                state.remember_capacity("", &request["ProvisionedThroughput"]);
                for index_update in request["GlobalSecondaryIndexUpdates"].as_array().into_iter().flatten() {
                    let change = &index_update["Update"];
                    if let Some(index) = change["IndexName"].as_str() {
                        state.remember_capacity(index, &change["ProvisionedThroughput"]);
                    }
                }
                false
            }
            "DescribeTable" => {
                let state = tables.entry(table).or_default();
                let description = &mut response["Table"];
                if !description.is_object() {
                    return false;
                }
                state.provisioned = Some(description["BillingModeSummary"]["BillingMode"] != "PAY_PER_REQUEST");
                let add_decreases = |state: &TableState, target: &str, throughput: &mut Value| {
                    let today = state.decreases_today(target, now);
                    if let (Some(last), Some(fields)) = (today.last(), throughput.as_object_mut()) {
                        fields.insert("NumberOfDecreasesToday".to_owned(), json!(today.len()));
                        fields.insert("LastDecreaseDateTime".to_owned(), seconds(*last));
                    }
                };
                state.remember_capacity("", &description["ProvisionedThroughput"]);
                add_decreases(state, "", &mut description["ProvisionedThroughput"]);
                for index in description["GlobalSecondaryIndexes"].as_array_mut().into_iter().flatten() {
                    if let Some(name) = index["IndexName"].as_str().map(str::to_owned) {
                        state.remember_capacity(&name, &index["ProvisionedThroughput"]);
                        add_decreases(state, &name, &mut index["ProvisionedThroughput"]);
                    }
                }
                if let Some(class) = &state.class {
                    let mut summary = json!({ "TableClass": class });
                    if let Some(last) = state.class_changes.last() {
                        summary["LastUpdateDateTime"] = seconds(*last);
                    }
                    description["TableClassSummary"] = summary;
                }
                true
            }
            "DescribeTimeToLive" => {
                let changing =
                    tables.get(&table).and_then(|s| s.ttl_changes.last()).is_some_and(|at| at + HOUR_MS > now);
                let status = &mut response["TimeToLiveDescription"]["TimeToLiveStatus"];
                if changing {
                    match status.as_str() {
                        Some("ENABLED") => *status = json!("ENABLING"),
                        Some("DISABLED") => *status = json!("DISABLING"),
                        _ => return false,
                    }
                    return true;
                }
                false
            }
            _ => false,
        }
    }
}

async fn relay(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut client = BufReader::new(client);
    let mut upstream = None;
    while let Some(head) = read_head(&mut client).await? {
        if head.header("transfer-encoding").is_some() {
            return Err(invalid_data("request bodies with a transfer coding are not supported"));
        }
        let closes = head.closes();
        let length = head.content_length()?.unwrap_or(0);
        let mut body = Vec::new();
        read_exact_into(&mut client, length, &mut body).await?;
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let operation = head
            .header("x-amz-target")
            .and_then(|target| target.rsplit_once('.'))
            .map(|(_, operation)| operation.to_owned())
            .unwrap_or_default();
        let answer = match shared.judge(&operation, &request) {
            Verdict::Answer(status, body) => message(&format!("HTTP/1.1 {status}\r\n"), &[], &body),
            Verdict::Forward(replaced) => {
                if matches!(operation.as_str(), "ExportTableToPointInTime" | "ImportTable") {
                    shared.kept.lock().unwrap().push((operation.clone(), replaced.clone().unwrap_or(request.clone())));
                }
                let sent = match &replaced {
                    Some(body) => message(&format!("{}\r\n", head.start), &head.headers, body),
                    None => [head.raw.as_slice(), &body].concat(),
                };
                let response = exchange(&mut upstream, &shared.upstream, &sent, &head.start).await?;
                let bytes = after(shared, &operation, &request, response.bytes);
                if response.closes {
                    client.get_mut().write_all(&bytes).await?;
                    return client.get_mut().shutdown().await;
                }
                bytes
            }
        };
        client.get_mut().write_all(&answer).await?;
        if closes {
            return client.get_mut().shutdown().await;
        }
    }
    Ok(())
}

/// Looks at a successful response from DynamoDB Local: records the change and, for a
/// description, returns it with the fields the proxy adds.
fn after(shared: &Shared, operation: &str, request: &Value, bytes: Vec<u8>) -> Vec<u8> {
    let Some(split) = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else { return bytes };
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return bytes;
    }
    shared.pass(operation, request["TableName"].as_str().unwrap_or_default());
    let Ok(mut body) = serde_json::from_slice::<Value>(&bytes[split..]) else { return bytes };
    if !shared.observe(operation, request, &mut body) {
        return bytes;
    }
    let mut lines = head.trim_end().lines();
    let start = format!("{}\r\n", lines.next().unwrap_or_default());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    message(&start, &headers, &body)
}

/// An HTTP message: `start` (with its line end), `headers` but for its length and checksum, and
/// `body` as JSON.
fn message(start: &str, headers: &[(String, String)], body: &Value) -> Vec<u8> {
    let body = body.to_string();
    let mut out = start.to_owned();
    for (name, value) in headers {
        if name != "content-length" && name != "x-amz-crc32" && name != "content-type" {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str(&format!(
        "content-type: application/x-amz-json-1.0\r\nx-amzn-requestid: rules-proxy-{:016x}\r\ncontent-length: {}\r\n\r\n{body}",
        fastrand::u64(..),
        body.len()
    ));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    //! Control tests: the proxy refuses the call sequences AWS refuses, so that a test which sees
    //! the planner avoid them shows something.

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::types::{BillingMode, ProvisionedThroughput, TableClass as SdkClass};
    use dynamo_migrate::schema_steps::{ExecOptions, execute, plan_step};
    use dynamo_migrate::{Billing, KeyAttr, SchemaStep, TableClass, TableDef, Throughput};

    use super::{RulesProxy, client_of};
    use crate::support;

    /// Plans `step` on `current` and makes its calls as the tool did before it knew the rules:
    /// one after the other. Returns the first failure.
    async fn naive(client: &Client, physical: &str, current: &TableDef, step: SchemaStep) -> Result<(), String> {
        for call in plan_step(Some(current), &step).unwrap().0 {
            execute(client, physical, &call, &ExecOptions::new(true)).await.map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    }

    async fn create(client: &Client, physical: &str, def: &TableDef) {
        for call in plan_step(None, &SchemaStep::CreateTable { table: def.clone() }).unwrap().0 {
            execute(client, physical, &call, &ExecOptions::new(true)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn changing_a_ttl_attribute_off_then_on_is_refused_as_aws_refuses_it() {
        let proxy = RulesProxy::start(support::rules_endpoint()).await;
        let client = client_of(&proxy).await;
        let physical = support::names("rp_ttl").physical("customers");
        let def = TableDef::new("customers", KeyAttr::n("nr")).ttl("expires_at");
        // Created behind the proxy's back: it has seen no TTL change of this table.
        create(&support::rules_client().await, &physical, &def).await;

        let step = SchemaStep::UpdateTtl { table: "customers".into(), attribute: Some("valid_until".into()) };
        let error = naive(&client, &physical, &def, step).await.unwrap_err();
        assert!(
            error.contains("UpdateTimeToLive")
                && error.contains("enable on valid_until")
                && error.contains("Time to live has been modified multiple times within a fixed interval"),
            "{error}"
        );
        let refusals = proxy.refusals();
        assert_eq!(refusals.len(), 1, "a ValidationException is not retried: {refusals:?}");
        assert_eq!(
            (refusals[0].operation.as_str(), refusals[0].error.as_str()),
            ("UpdateTimeToLive", "ValidationException")
        );
        assert_eq!(proxy.passed("UpdateTimeToLive"), 1, "the disable went through, the enable did not");
        let ttl = client.describe_time_to_live().table_name(&physical).send().await.unwrap();
        assert_eq!(ttl.time_to_live_description().unwrap().time_to_live_status().unwrap().as_str(), "DISABLING");
        // A table with TTL on holds one of DynamoDB Local's job threads (see `support::rules_endpoint`).
        client.delete_table().table_name(&physical).send().await.unwrap();
    }

    #[tokio::test]
    async fn a_fifth_switch_to_on_demand_in_a_day_is_refused() {
        let proxy = RulesProxy::start(support::rules_endpoint()).await;
        let client = client_of(&proxy).await;
        let physical = support::names("rp_on_demand").physical("customers");
        let provisioned = TableDef::new("customers", KeyAttr::n("nr")).provisioned(5, 5);
        create(&client, &physical, &provisioned).await;
        let on_demand = TableDef { billing: Billing::PayPerRequest, ..provisioned.clone() };
        let to = |billing| SchemaStep::UpdateBilling { table: "customers".into(), billing, index_throughput: vec![] };
        for _ in 0..4 {
            naive(&client, &physical, &provisioned, to(Billing::PayPerRequest)).await.unwrap();
            naive(&client, &physical, &on_demand, to(Billing::Provisioned(Throughput { read: 5, write: 5 })))
                .await
                .unwrap();
        }
        let error = naive(&client, &physical, &provisioned, to(Billing::PayPerRequest)).await.unwrap_err();
        assert!(
            error.contains("LimitExceededException") || error.contains("Updates to PayPerRequest mode are limited"),
            "{error}"
        );
        assert!(proxy.refusals().iter().all(|r| r.error == "LimitExceededException"));
        let described = client.describe_table().table_name(&physical).send().await.unwrap();
        assert_eq!(
            described.table().unwrap().billing_mode_summary().unwrap().billing_mode(),
            Some(&BillingMode::Provisioned)
        );
    }

    #[tokio::test]
    async fn a_third_table_class_change_in_30_days_is_refused_and_the_class_is_described() {
        let proxy = RulesProxy::start(support::rules_endpoint()).await;
        let client = client_of(&proxy).await;
        let physical = support::names("rp_class").physical("customers");
        let standard = TableDef::new("customers", KeyAttr::n("nr"));
        create(&client, &physical, &standard).await;
        let ia = standard.clone().table_class(TableClass::StandardInfrequentAccess);
        let to = |class| SchemaStep::SetTableClass { table: "customers".into(), class };
        naive(&client, &physical, &standard, to(TableClass::StandardInfrequentAccess)).await.unwrap();
        naive(&client, &physical, &ia, to(TableClass::Standard)).await.unwrap();
        let error = naive(&client, &physical, &standard, to(TableClass::StandardInfrequentAccess)).await.unwrap_err();
        assert!(error.contains("Table class updates are limited to 2"), "{error}");
        let described = client.describe_table().table_name(&physical).send().await.unwrap();
        let summary = described.table().unwrap().table_class_summary().unwrap();
        assert_eq!(summary.table_class(), Some(&SdkClass::Standard));
        assert!(summary.last_update_date_time().is_some());
    }

    #[tokio::test]
    async fn a_fifth_decrease_within_the_hour_is_refused_and_decreases_are_described() {
        let proxy = RulesProxy::start(support::rules_endpoint()).await;
        let client = client_of(&proxy).await;
        let physical = support::names("rp_decrease").physical("customers");
        create(&client, &physical, &TableDef::new("customers", KeyAttr::n("nr")).provisioned(10, 10)).await;
        for read in [9, 8, 7, 6] {
            let current = TableDef::new("customers", KeyAttr::n("nr")).provisioned(read + 1, 10);
            let step = SchemaStep::UpdateBilling {
                table: "customers".into(),
                billing: Billing::Provisioned(Throughput { read, write: 10 }),
                index_throughput: vec![],
            };
            naive(&client, &physical, &current, step).await.unwrap();
        }
        let refused = client
            .update_table()
            .table_name(&physical)
            .provisioned_throughput(
                ProvisionedThroughput::builder().read_capacity_units(5).write_capacity_units(10).build().unwrap(),
            )
            .send()
            .await
            .unwrap_err();
        assert!(refused.as_service_error().is_some_and(|e| e.is_limit_exceeded_exception()), "{refused:?}");
        let described = client.describe_table().table_name(&physical).send().await.unwrap();
        let throughput = described.table().unwrap().provisioned_throughput().unwrap();
        assert_eq!((throughput.read_capacity_units(), throughput.number_of_decreases_today()), (Some(6), Some(4)));
        assert!(throughput.last_decrease_date_time().is_some());
        // An increase is not limited.
        client
            .update_table()
            .table_name(&physical)
            .provisioned_throughput(
                ProvisionedThroughput::builder().read_capacity_units(20).write_capacity_units(10).build().unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_incremental_export_window_aws_refuses_is_refused() {
        use aws_sdk_dynamodb::primitives::DateTime;
        use aws_sdk_dynamodb::types::{ExportType, IncrementalExportSpecification};
        // Refused before anything is forwarded: the upstream is DynamoDB Local, which has no
        // export at all.
        let proxy = RulesProxy::start(support::rules_endpoint()).await;
        let client = client_of(&proxy).await;
        let from = 1_765_000_000_000;
        for minutes in [10, 24 * 60 + 1, -30] {
            let spec = IncrementalExportSpecification::builder()
                .export_from_time(DateTime::from_millis(from))
                .export_to_time(DateTime::from_millis(from + minutes * 60_000))
                .build();
            let error = client
                .export_table_to_point_in_time()
                .table_arn("arn:aws:dynamodb:us-east-1:123456789012:table/things")
                .s3_bucket("exports")
                .export_type(ExportType::IncrementalExport)
                .incremental_export_specification(spec)
                .send()
                .await
                .unwrap_err();
            let message = format!("{:?}", error.into_service_error());
            assert!(message.contains("at least 15 minutes and at most 24 hours"), "{minutes} min: {message}");
        }
        assert_eq!(proxy.refusals().len(), 3);
        assert!(
            proxy
                .refusals()
                .iter()
                .all(|r| r.error == "ValidationException" && r.operation == "ExportTableToPointInTime")
        );
        assert_eq!(proxy.incremental_exports(), vec![]);
    }
}
