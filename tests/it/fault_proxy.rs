//! A fault-injecting HTTP/1.1 proxy on loopback, in front of DynamoDB Local, for tests of retry
//! behaviour. DynamoDB Local never throttles, never fails with a 500 and never drops a connection,
//! so a test that wants to see the SDK's retries (and our code's behaviour when they run out) puts
//! this proxy between the client and the server and chooses what share of which operations fail.
//!
//! It can also hold the chosen operations' requests for a while before forwarding them
//! ([`FaultProxy::start_delayed`]), so that a test can slow one client's writes and widen the
//! window in which another client's writes race them.
//!
//! And it can tamper with the chosen operations ([`FaultProxy::start_tampering`]): hold requests
//! whose body holds a given text until the test releases them (so that a test can stop a run at a
//! known point and act there, or kill it there, whatever the machine's speed), and rewrite text
//! in responses (so that a client meets what DynamoDB Local never sends).
//!
//! And it can record every request it forwards ([`FaultProxy::start_recording`]): the operation
//! and the body, so that a test can check each call a run made (against an IAM policy, say).
//!
//! The proxy understands just enough HTTP/1.1 for the AWS SDK (`rules_proxy` uses the same parts): keep-alive connections, request
//! bodies delimited by `Content-Length`, and responses delimited by `Content-Length`, chunked
//! transfer coding or the end of the connection.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

/// The longest message head the proxy reads; the SDK's are a few hundred bytes.
const MAX_HEAD: u64 = 64 * 1024;
/// The largest body the proxy buffers; DynamoDB's requests and responses stay far below it.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// What DynamoDB answers when a table's throughput is exceeded, so the SDK classifies it as
/// throttling exactly as it would in production.
const THROTTLE_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"injected by the test proxy"}"#;
/// What DynamoDB answers when it fails internally.
const SERVER_ERROR_BODY: &str =
    r#"{"__type":"com.amazon.coral.service#InternalServerError","message":"injected by the test proxy"}"#;

/// The shares of the chosen operations' requests that fail, each in `0.0..=1.0`, summing to at
/// most 1. The rest are forwarded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Answered with `400 ProvisionedThroughputExceededException`, which the SDK retries as throttling.
    pub throttle: f64,
    /// Answered with `500 InternalServerError`, which the SDK retries as a transient error.
    pub server_error: f64,
    /// Read and then closed without an answer, which the SDK retries as a transient I/O error.
    pub drop: f64,
}

/// How long the proxy holds each chosen request that it forwards: a time drawn uniformly from
/// `min..=max` for each request. The default holds nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delay {
    pub min: Duration,
    pub max: Duration,
}

impl Delay {
    /// The same delay for every chosen request.
    pub fn fixed(delay: Duration) -> Delay {
        Delay { min: delay, max: delay }
    }

    /// A delay drawn afresh for each chosen request, so that requests sent in one order may
    /// arrive in another.
    pub fn between(min: Duration, max: Duration) -> Delay {
        Delay { min, max }
    }

    fn draw(&self) -> Duration {
        let (min, max) = (self.min.as_micros() as u64, self.max.as_micros() as u64);
        Duration::from_micros(fastrand::u64(min..=max))
    }
}

/// What the proxy does to the chosen operations beyond faults.
#[derive(Debug, Clone, Default)]
pub struct Tamper {
    /// Chosen requests whose body holds this text are held until [`FaultProxy::release`]...
    pub hold_when: Option<String>,
    /// ...once this many of them have been let through.
    pub hold_after: u64,
    /// In the responses to chosen requests, every occurrence of the first text becomes the second.
    pub rewrite: Option<(String, String)>,
}

/// How many requests the proxy has handled, by what it did with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Forwarded to the upstream and answered with its response.
    pub forwarded: u64,
    /// Answered with an injected throttling error.
    pub throttled: u64,
    /// Answered with an injected internal server error.
    pub server_errors: u64,
    /// Closed without an answer.
    pub dropped: u64,
    /// Of the forwarded ones, those held for a [`Delay`] first.
    pub delayed: u64,
    /// Requests held until [`FaultProxy::release`] (see [`Tamper`]), counted when held.
    pub held: u64,
    /// Of the forwarded ones, those whose response was rewritten.
    pub rewritten: u64,
}

/// A running proxy. Dropping it stops it: its listener closes and its open connections end.
pub struct FaultProxy {
    endpoint: String,
    shared: Arc<Shared>,
    accept_loop: AbortHandle,
}

impl FaultProxy {
    /// Starts listening on 127.0.0.1:0 and forwards to `upstream` ("http://127.0.0.1:PORT").
    /// Faults apply only to requests whose `X-Amz-Target` header ends with one of `operations`
    /// (e.g. `["BatchWriteItem", "Scan"]`); other requests are always forwarded. The whole
    /// operation name after the target's last `.` must match, so that choosing `GetItem` does
    /// not also choose `BatchGetItem`.
    ///
    /// Panics on shares outside `0.0..=1.0` or summing to more than 1, on an upstream that is not
    /// an `http://` URL, and when no loopback port can be bound: these are mistakes in the test.
    pub async fn start(upstream: &str, faults: Faults, operations: &[&str]) -> FaultProxy {
        FaultProxy::start_delayed(upstream, faults, Delay::default(), operations).await
    }

    /// As [`FaultProxy::start`], and every chosen request that is forwarded is held for `delay`
    /// first (the upstream sees it late; the answer is relayed at once).
    ///
    /// Panics as [`FaultProxy::start`] does, and on a delay whose `min` exceeds its `max`.
    pub async fn start_delayed(upstream: &str, faults: Faults, delay: Delay, operations: &[&str]) -> FaultProxy {
        FaultProxy::start_with(upstream, faults, delay, Tamper::default(), operations).await
    }

    /// A proxy that forwards everything and records each request: see [`FaultProxy::recorded`].
    pub async fn start_recording(upstream: &str) -> FaultProxy {
        let proxy = FaultProxy::start(upstream, Faults::default(), &[]).await;
        *proxy.shared.recording.lock().unwrap() = Some(Vec::new());
        proxy
    }

    /// The requests forwarded so far by a recording proxy, in the order they arrived: each one's
    /// operation (`CreateTable`, `GetRecords`) and JSON body.
    pub fn recorded(&self) -> Vec<(String, serde_json::Value)> {
        self.shared.recording.lock().unwrap().clone().unwrap_or_default()
    }

    /// As [`FaultProxy::start`] without faults, tampering with the chosen operations as `tamper`
    /// says.
    pub async fn start_tampering(upstream: &str, tamper: Tamper, operations: &[&str]) -> FaultProxy {
        FaultProxy::start_with(upstream, Faults::default(), Delay::default(), tamper, operations).await
    }

    async fn start_with(
        upstream: &str,
        faults: Faults,
        delay: Delay,
        tamper: Tamper,
        operations: &[&str],
    ) -> FaultProxy {
        assert!(delay.min <= delay.max, "a delay's min must not exceed its max: {delay:?}");
        let Faults { throttle, server_error, drop: dropped } = faults;
        for share in [throttle, server_error, dropped] {
            assert!((0.0..=1.0).contains(&share), "a fault share must be within 0..=1, not {share}");
        }
        // A little slack lets shares such as 0.7 + 0.2 + 0.1 through despite rounding.
        assert!(throttle + server_error + dropped <= 1.0 + 1e-9, "the fault shares must sum to at most 1: {faults:?}");
        let authority = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the upstream must be an http:// URL, not {upstream}"))
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the fault proxy binds a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("a bound listener has an address"));
        let shared = Arc::new(Shared {
            upstream: authority,
            faults,
            delay,
            tamper,
            released: tokio::sync::watch::channel(false).0,
            operations: operations.iter().map(|&operation| operation.to_owned()).collect(),
            counters: Counters::default(),
            recording: std::sync::Mutex::new(None),
        });
        let accept_loop = tokio::spawn(accept_connections(
            listener,
            Arc::clone(&shared),
            "fault proxy",
            |client, shared| async move { relay(client, &shared).await },
        ))
        .abort_handle();
        FaultProxy { endpoint, shared, accept_loop }
    }

    /// The proxy's URL, "http://127.0.0.1:PORT", to give the SDK as its endpoint.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The requests handled so far. A request is counted before its answer is written, so a
    /// call that has returned is always counted.
    pub fn stats(&self) -> FaultStats {
        let counters = &self.shared.counters;
        FaultStats {
            forwarded: counters.forwarded.load(Ordering::Relaxed),
            throttled: counters.throttled.load(Ordering::Relaxed),
            server_errors: counters.server_errors.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            delayed: counters.delayed.load(Ordering::Relaxed),
            held: counters.held.load(Ordering::Relaxed),
            rewritten: counters.rewritten.load(Ordering::Relaxed),
        }
    }

    /// Every request the proxy has read so far, by the operation its `X-Amz-Target` names
    /// (chosen or not, whatever its fate): what reached this endpoint.
    pub fn operations(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.counters.operations.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets every held request through, and every later one that would be held.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns the listener and the set of connection tasks, so aborting it
        // closes the port and aborts every connection.
        self.accept_loop.abort();
    }
}

/// What the accept loop and every connection task share.
struct Shared {
    /// The upstream's `host:port`.
    upstream: String,
    faults: Faults,
    delay: Delay,
    tamper: Tamper,
    /// Turns true when the test releases held requests.
    released: tokio::sync::watch::Sender<bool>,
    operations: Vec<String>,
    counters: Counters,
    /// Every forwarded request's operation and body, when recording.
    recording: std::sync::Mutex<Option<Vec<(String, serde_json::Value)>>>,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    held: AtomicU64,
    rewritten: AtomicU64,
    /// Requests that matched `hold_when`, held or not.
    matched: AtomicU64,
    /// Every request read, by operation.
    operations: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// What the proxy does with one request.
enum Fate {
    /// Forwarded, after this delay unless it is zero.
    Forward(Duration),
    Throttle,
    ServerError,
    Drop,
}

impl Shared {
    /// Whether the request is of one of the chosen operations.
    fn chosen(&self, request: &Head) -> bool {
        request
            .header("x-amz-target")
            .and_then(|target| target.rsplit_once('.'))
            .is_some_and(|(_, operation)| self.operations.iter().any(|chosen| chosen == operation))
    }

    fn fate(&self, chosen: bool) -> Fate {
        if !chosen {
            return Fate::Forward(Duration::ZERO);
        }
        let Faults { throttle, server_error, drop: dropped } = self.faults;
        let roll = fastrand::f64();
        if roll < throttle {
            Fate::Throttle
        } else if roll < throttle + server_error {
            Fate::ServerError
        } else if roll < throttle + server_error + dropped {
            Fate::Drop
        } else {
            Fate::Forward(self.delay.draw())
        }
    }
}

/// Accepts connections on `listener` and serves each with `relay` in a task of its own, until
/// the task running this is aborted. The proxies of these tests (this one and the rules proxy)
/// share it.
pub(crate) async fn accept_connections<S, F, Fut>(listener: TcpListener, shared: Arc<S>, name: &'static str, relay: F)
where
    S: Send + Sync + 'static,
    F: Fn(TcpStream, Arc<S>) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    // Connection tasks live in this set so that aborting this task, which drops the set, aborts
    // them too; finished ones are reaped as they end so that the set does not grow.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let relayed = relay(stream, Arc::clone(&shared));
                    // A failure ends only this connection.
                    connections.spawn(async move {
                        if let Err(e) = relayed.await {
                            eprintln!("{name}: closing the connection from {peer}: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Such errors (out of file descriptors, a connection reset before it was
                    // accepted) pass; the pause keeps the loop from spinning while they last.
                    eprintln!("{name}: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(joined) = connections.join_next() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    eprintln!("{name}: a connection task panicked: {e}");
                }
            }
        }
    }
}

async fn relay(client: TcpStream, shared: &Shared) -> io::Result<()> {
    // Small writes of whole messages should leave at once rather than wait for an acknowledgement.
    client.set_nodelay(true)?;
    let mut client = BufReader::new(client);
    // One upstream connection per client connection keeps requests in order without a pool.
    let mut upstream = None;
    while let Some(head) = read_head(&mut client).await? {
        if head.header("transfer-encoding").is_some() {
            return Err(invalid_data("request bodies with a transfer coding are not supported"));
        }
        let closes = head.closes();
        let operation = head.header("x-amz-target").map_or("(none)", |t| t.rsplit_once('.').map_or(t, |(_, op)| op));
        *shared
            .counters
            .operations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(operation.to_owned())
            .or_default() += 1;
        let chosen = shared.chosen(&head);
        let operation = head.header("x-amz-target").and_then(|t| t.rsplit_once('.')).map(|(_, o)| o.to_owned());
        let fate = shared.fate(chosen);
        let length = head.content_length()?.unwrap_or(0);
        let head_length = head.raw.len();
        let mut request = head.raw;
        read_exact_into(&mut client, length, &mut request).await?;
        let counters = &shared.counters;
        match fate {
            Fate::Throttle => {
                counters.throttled.fetch_add(1, Ordering::Relaxed);
                client.get_mut().write_all(&injected("400 Bad Request", THROTTLE_BODY)).await?;
            }
            Fate::ServerError => {
                counters.server_errors.fetch_add(1, Ordering::Relaxed);
                client.get_mut().write_all(&injected("500 Internal Server Error", SERVER_ERROR_BODY)).await?;
            }
            Fate::Drop => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                // A FIN rather than a reset, so the client sees a connection closed mid-exchange
                // rather than whatever its OS makes of a reset.
                return client.get_mut().shutdown().await;
            }
            Fate::Forward(delay) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                    counters.delayed.fetch_add(1, Ordering::Relaxed);
                }
                let body = &request[head_length..];
                if let Some(recorded) = shared.recording.lock().expect("the recording").as_mut() {
                    let body = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
                    recorded.push((operation.clone().unwrap_or_default(), body));
                }
                let matches = shared
                    .tamper
                    .hold_when
                    .as_deref()
                    .is_some_and(|needle| chosen && contains(body, needle.as_bytes()));
                let hold = matches && counters.matched.fetch_add(1, Ordering::Relaxed) >= shared.tamper.hold_after;
                if hold && !*shared.released.borrow() {
                    counters.held.fetch_add(1, Ordering::Relaxed);
                    let mut released = shared.released.subscribe();
                    // The sender lives as long as the proxy, whose drop aborts this task.
                    let _ = released.wait_for(|released| *released).await;
                }
                let mut response = exchange(&mut upstream, &shared.upstream, &request, &head.start).await?;
                if let (true, Some((from, to))) = (chosen, &shared.tamper.rewrite) {
                    response.bytes = rewrite(&response.bytes, from, to)?;
                    counters.rewritten.fetch_add(1, Ordering::Relaxed);
                }
                counters.forwarded.fetch_add(1, Ordering::Relaxed);
                client.get_mut().write_all(&response.bytes).await?;
                if response.closes {
                    // The upstream's `Connection: close` went to the client, which now expects the end.
                    return client.get_mut().shutdown().await;
                }
            }
        }
        if closes {
            return client.get_mut().shutdown().await;
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window == needle)
}

/// A response with every `from` in its body replaced by `to`, and its `Content-Length` made
/// to fit. DynamoDB Local always sends a `Content-Length`.
fn rewrite(response: &[u8], from: &str, to: &str) -> io::Result<Vec<u8>> {
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| invalid_data("a response without the end of its head"))?;
    let head = std::str::from_utf8(&response[..split]).map_err(|_| invalid_data("a response head is not UTF-8"))?;
    let body = String::from_utf8_lossy(&response[split + 4..]).replace(from, to);
    let mut lines: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("transfer-encoding:") {
            return Err(invalid_data("rewriting a chunked response is not supported"));
        }
        if line.to_ascii_lowercase().starts_with("content-length:") {
            lines.push(format!("Content-Length: {}", body.len()));
        } else {
            lines.push(line.to_owned());
        }
    }
    Ok(format!("{}\r\n\r\n{body}", lines.join("\r\n")).into_bytes())
}

/// An injected error response, with the headers DynamoDB sends.
fn injected(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: fault-proxy-{:016x}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        fastrand::u64(..),
        body.len()
    )
    .into_bytes()
}

/// A response read from the upstream: its bytes as received, and whether the upstream connection
/// ends after it.
pub(crate) struct Response {
    pub(crate) bytes: Vec<u8>,
    pub(crate) closes: bool,
}

/// Sends `request` upstream on the kept connection, opening one if there is none, and reads the
/// response.
pub(crate) async fn exchange(
    upstream: &mut Option<BufReader<TcpStream>>,
    authority: &str,
    request: &[u8],
    request_line: &str,
) -> io::Result<Response> {
    let head_only = request_line.starts_with("HEAD ");
    loop {
        let (mut connection, reused) = match upstream.take() {
            Some(connection) => (connection, true),
            None => {
                let stream = TcpStream::connect(authority).await?;
                stream.set_nodelay(true)?;
                (BufReader::new(stream), false)
            }
        };
        match round_trip(&mut connection, request, head_only).await {
            Ok(Some(response)) => {
                if !response.closes {
                    *upstream = Some(connection);
                }
                return Ok(response);
            }
            // A kept connection may have been closed by the upstream while it was idle; like any
            // HTTP client, the proxy then sends the request again, once, on a fresh connection.
            Ok(None) if reused => {}
            Err(e) if reused && is_stale(&e) => {}
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection without a response",
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Errors that mean a kept connection had been closed by the other end before this exchange.
fn is_stale(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// Writes `request` and reads one response; `None` if the connection closed before any of it.
async fn round_trip(
    connection: &mut BufReader<TcpStream>,
    request: &[u8],
    head_only: bool,
) -> io::Result<Option<Response>> {
    connection.get_mut().write_all(request).await?;
    let mut bytes = Vec::new();
    let head = loop {
        let Some(head) = read_head(connection).await? else {
            return if bytes.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the upstream closed after an interim response"))
            };
        };
        let status = head.status()?;
        bytes.extend_from_slice(&head.raw);
        // Interim responses (`100 Continue`) precede the real one and have no body.
        if !(100..200).contains(&status) || status == 101 {
            break head;
        }
    };
    let status = head.status()?;
    let mut closes = head.closes();
    if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
        // These responses have no body whatever their headers say.
    } else if head.is_chunked() {
        read_chunked(connection, &mut bytes).await?;
    } else if let Some(length) = head.content_length()? {
        read_exact_into(connection, length, &mut bytes).await?;
    } else {
        // Without a length or chunks the body is everything until the upstream closes.
        (&mut *connection).take(MAX_BODY).read_to_end(&mut bytes).await?;
        closes = true;
    }
    Ok(Some(Response { bytes, closes }))
}

/// Relays a chunked body unchanged into `out`: chunks until the zero-length one, then trailers
/// until the empty line.
async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    loop {
        let line = read_line(reader, out).await?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| invalid_data(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            while !read_line(reader, out).await?.trim_end().is_empty() {}
            return Ok(());
        }
        if (out.len() - start) as u64 + size > MAX_BODY {
            return Err(invalid_data("the chunked body is too large"));
        }
        // The chunk's data and the line end that follows it.
        read_exact_into(reader, size + 2, out).await?;
    }
}

/// Appends one line, with its line end, to `out` and returns it.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, out: &mut Vec<u8>) -> io::Result<String> {
    let start = out.len();
    let read = (&mut *reader).take(MAX_HEAD).read_until(b'\n', out).await?;
    if read == 0 || out.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed inside a chunked body"));
    }
    Ok(String::from_utf8_lossy(&out[start..]).into_owned())
}

/// Appends exactly `length` bytes to `out`.
pub(crate) async fn read_exact_into<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    length: u64,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if length > MAX_BODY {
        return Err(invalid_data(format!("a body of {length} bytes is too large")));
    }
    let start = out.len();
    (&mut *reader).take(length).read_to_end(out).await?;
    if ((out.len() - start) as u64) < length {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed inside a body"));
    }
    Ok(())
}

/// A message head: its bytes as received, its start line and its headers (names lowercased).
pub(crate) struct Head {
    pub(crate) raw: Vec<u8>,
    pub(crate) start: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }

    /// The tokens of every header `name`, lowercased: `Connection: keep-alive, Upgrade` gives two.
    fn tokens(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, value)| value.split(','))
            .map(|token| token.trim().to_ascii_lowercase())
            .collect()
    }

    pub(crate) fn content_length(&self) -> io::Result<Option<u64>> {
        self.header("content-length")
            .map(|value| value.parse().map_err(|_| invalid_data(format!("bad Content-Length {value:?}"))))
            .transpose()
    }

    fn is_chunked(&self) -> bool {
        self.tokens("transfer-encoding").last().is_some_and(|coding| coding == "chunked")
    }

    /// Whether the connection ends after this message: `Connection: close`, or HTTP/1.0 without
    /// `Connection: keep-alive`.
    pub(crate) fn closes(&self) -> bool {
        let connection = self.tokens("connection");
        connection.iter().any(|token| token == "close")
            || (self.start.contains("HTTP/1.0") && !connection.iter().any(|token| token == "keep-alive"))
    }

    /// A response's status code.
    fn status(&self) -> io::Result<u16> {
        self.start
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid_data(format!("bad status line {:?}", self.start)))
    }
}

/// Reads a message head up to its empty line; `None` if the connection closed before any of it.
pub(crate) async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let room = MAX_HEAD.saturating_sub(before as u64);
        if room == 0 {
            return Err(invalid_data("a message head is longer than 64 KiB"));
        }
        let read = (&mut *reader).take(room).read_until(b'\n', &mut raw).await?;
        if read == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed inside a message head"))
            };
        }
        let line = &raw[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // An empty line before a message may be ignored (RFC 9112, section 2.2).
                raw.clear();
                continue;
            }
            break;
        }
    }
    let text = std::str::from_utf8(&raw).map_err(|_| invalid_data("a message head is not UTF-8"))?;
    let mut lines = text.lines();
    let start = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.split_once(':')
                .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
                .ok_or_else(|| invalid_data(format!("bad header line {line:?}")))
        })
        .collect::<io::Result<_>>()?;
    Ok(Some(Head { raw, start, headers }))
}

pub(crate) fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition};
    use aws_sdk_dynamodb::error::SdkError;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    use super::{Delay, FaultProxy, FaultStats, Faults, read_chunked, read_head};
    use crate::support;

    /// A client of the proxy allowing `attempts` attempts per call, with short backoffs so that
    /// retried calls stay quick. Each client gets a retry partition of its own: the SDK shares one
    /// retry token bucket among all clients of a partition in the process, and the failures
    /// injected here must neither drain other tests' retries nor be refused retries by theirs.
    async fn client_of(proxy: &FaultProxy, attempts: u32) -> Client {
        let client = dynamo_migrate::run::connect(&dynamo_migrate::run::Target::local(proxy.endpoint())).await;
        let retry = RetryConfig::standard().with_max_attempts(attempts).with_initial_backoff(Duration::from_millis(10));
        let config = client
            .config()
            .to_builder()
            .retry_config(retry)
            .retry_partition(RetryPartition::new(format!("fault_proxy {}", proxy.endpoint())))
            .build();
        Client::from_conf(config)
    }

    async fn create_table(client: &Client, table: &str) {
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn without_faults_every_request_is_forwarded() {
        let proxy = FaultProxy::start(support::endpoint(), Faults::default(), &["GetItem", "PutItem"]).await;
        let client = dynamo_migrate::run::connect(&dynamo_migrate::run::Target::local(proxy.endpoint())).await;
        let table = support::names("proxy").physical("items");

        client.list_tables().send().await.unwrap();
        create_table(&client, &table).await;
        client
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S("a".into()))
            .item("value", AttributeValue::N("1".into()))
            .send()
            .await
            .unwrap();
        let got = client.get_item().table_name(&table).key("id", AttributeValue::S("a".into())).send().await.unwrap();

        assert_eq!(got.item().and_then(|item| item.get("value")), Some(&AttributeValue::N("1".into())));
        assert_eq!(proxy.stats(), FaultStats { forwarded: 4, ..FaultStats::default() });
    }

    #[tokio::test]
    async fn delayed_requests_are_forwarded_whole_and_only_the_chosen_ones_wait() {
        let delay = Delay::fixed(Duration::from_millis(3));
        let proxy = FaultProxy::start_delayed(support::endpoint(), Faults::default(), delay, &["PutItem"]).await;
        let client = dynamo_migrate::run::connect(&dynamo_migrate::run::Target::local(proxy.endpoint())).await;
        let table = support::names("proxy_delay").physical("items");
        create_table(&client, &table).await;

        for i in 0..5 {
            client
                .put_item()
                .table_name(&table)
                .item("id", AttributeValue::S(format!("item-{i}")))
                .item("value", AttributeValue::N(i.to_string()))
                .send()
                .await
                .unwrap();
        }
        let got =
            client.get_item().table_name(&table).key("id", AttributeValue::S("item-4".into())).send().await.unwrap();

        assert_eq!(got.item().and_then(|item| item.get("value")), Some(&AttributeValue::N("4".into())));
        // The table's creation and the read pass without a delay; each put waits once.
        assert_eq!(proxy.stats(), FaultStats { forwarded: 7, delayed: 5, ..FaultStats::default() });
    }

    #[tokio::test]
    async fn throttled_calls_are_retried_and_fail_as_throughput_exceeded() {
        let proxy =
            FaultProxy::start(support::endpoint(), Faults { throttle: 1.0, ..Faults::default() }, &["GetItem"]).await;
        let client = client_of(&proxy, 3).await;

        let err = client
            .get_item()
            .table_name("never_reaches_the_server")
            .key("id", AttributeValue::S("a".into()))
            .send()
            .await
            .unwrap_err();
        assert!(err.as_service_error().is_some_and(|e| e.is_provisioned_throughput_exceeded_exception()), "{err:?}");
        // Operations not chosen pass untouched through the same proxy.
        client.list_tables().send().await.unwrap();

        // Three attempts show that the SDK took the injected answer for throttling and retried it.
        assert_eq!(proxy.stats(), FaultStats { forwarded: 1, throttled: 3, ..FaultStats::default() });
    }

    #[tokio::test]
    async fn server_errors_and_dropped_connections_are_retried_and_then_fail() {
        let proxy =
            FaultProxy::start(support::endpoint(), Faults { server_error: 1.0, ..Faults::default() }, &["ListTables"])
                .await;
        let err = client_of(&proxy, 3).await.list_tables().send().await.unwrap_err();
        assert_eq!(err.raw_response().map(|response| response.status().as_u16()), Some(500), "{err:?}");
        assert!(err.as_service_error().is_some_and(|e| e.is_internal_server_error()), "{err:?}");
        assert_eq!(proxy.stats(), FaultStats { server_errors: 3, ..FaultStats::default() });

        let proxy =
            FaultProxy::start(support::endpoint(), Faults { drop: 1.0, ..Faults::default() }, &["ListTables"]).await;
        let err = client_of(&proxy, 3).await.list_tables().send().await.unwrap_err();
        assert!(matches!(&err, SdkError::DispatchFailure(_)), "{err:?}");
        assert!(err.raw_response().is_none(), "{err:?}");
        assert_eq!(proxy.stats(), FaultStats { dropped: 3, ..FaultStats::default() });
    }

    #[tokio::test]
    async fn with_enough_attempts_every_write_survives_a_mix_of_faults() {
        let faults = Faults { throttle: 0.1, server_error: 0.05, drop: 0.05 };
        let proxy = FaultProxy::start(support::endpoint(), faults, &["PutItem"]).await;
        let client = client_of(&proxy, 10).await;
        let table = support::names("proxy_mix").physical("items");
        create_table(&client, &table).await;

        for i in 0..200 {
            client
                .put_item()
                .table_name(&table)
                .item("id", AttributeValue::S(format!("item-{i}")))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {i}: {e:?}"));
        }
        let mut count = 0;
        let mut start = None;
        loop {
            let page = client.scan().table_name(&table).set_exclusive_start_key(start).send().await.unwrap();
            count += page.count();
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }

        assert_eq!(count, 200);
        let stats = proxy.stats();
        assert!(stats.throttled + stats.server_errors + stats.dropped > 0, "{stats:?}");
        // Every put was forwarded exactly once, since only forwarded ones succeed and none failed
        // for good; the table's creation and the scan's pages were forwarded too.
        assert_eq!(stats.forwarded, 202, "{stats:?}");
    }

    #[tokio::test]
    async fn a_chunked_response_is_relayed_whole_and_leaves_the_next_one_intact() {
        // DynamoDB Local always sends a Content-Length, so the chunked path is checked on bytes.
        let stream: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let mut reader = stream;
        let head = read_head(&mut reader).await.unwrap().unwrap();
        assert!(head.is_chunked() && !head.closes());
        let mut out = head.raw;
        read_chunked(&mut reader, &mut out).await.unwrap();
        assert_eq!(out.len(), stream.len() - b"HTTP/1.1 204 No Content\r\n\r\n".len());
        assert_eq!(read_head(&mut reader).await.unwrap().unwrap().status().unwrap(), 204);
        assert!(read_head(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_port_and_its_connections() {
        let proxy = FaultProxy::start(support::endpoint(), Faults::default(), &[]).await;
        let address = proxy.endpoint().trim_start_matches("http://").to_owned();
        let mut open = TcpStream::connect(&address).await.unwrap();
        drop(proxy);

        // The open connection ends as its task is aborted with the accept loop.
        let mut buffer = [0; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
        // The listener has closed too; an abort takes effect when the runtime next runs the task,
        // so the first attempts may still find the port open.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(&address).await.is_ok() {
            assert!(Instant::now() < deadline, "the proxy still accepts connections after it was dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
