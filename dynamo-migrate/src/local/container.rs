//! DynamoDB Local in a container, started through testcontainers on a Docker engine of this machine.
//!
//! It assumes nothing of the engine but that it answers: the image is the official one unless
//! another is configured (see [`super::image`] for one built here), the network is the host's where
//! the engine has no bridge network and a published port bound to 127.0.0.1 otherwise, and the
//! server counts as started when it answers a real `ListTables`, not when it logs a line.
//!
//! No container outlives its owner. Two mechanisms, because either alone leaves a gap:
//! - a guard process (a shell, like the Java path's) that removes the container when our end of its
//!   stdin closes, which the kernel does however this process ends, SIGKILL included; and
//! - labels naming the owner (boot id, PID, the PID's start time), so that the next start on this
//!   machine removes what a dead owner left behind, for instance when it was killed between creating
//!   the container and starting the guard.
//!
//! testcontainers' own clean-up is not used: its `Drop` needs a tokio runtime (it panics without
//! one) and its reaper is an image that cannot be pulled everywhere.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use testcontainers::bollard::Docker;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use testcontainers::core::client::docker_client_instance;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use super::{LocalOptions, free_port};
use crate::client::{Target, connect, is_local_endpoint};

/// The official image of the pinned release.
pub const OFFICIAL_IMAGE: &str = "amazon/dynamodb-local:3.3.0";
/// Overrides the image (any reference the engine has or can pull).
pub const IMAGE_ENV: &str = "DYNAMO_MIGRATE_IMAGE";
/// `host` or `published`; unset, the engine decides (host where it has no bridge network).
pub const NETWORK_ENV: &str = "DYNAMO_MIGRATE_DOCKER_NETWORK";

const LABEL_BOOT: &str = "dev.dynamo-migrate.boot-id";
const LABEL_PID: &str = "dev.dynamo-migrate.owner-pid";
const LABEL_STARTED: &str = "dev.dynamo-migrate.owner-started";

/// The port DynamoDB Local listens on inside the official image.
const IMAGE_PORT: u16 = 8000;
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How the container's port reaches this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerNetwork {
    /// The host's network where the engine has no bridge network (`dockerd --bridge=none`), a
    /// published port otherwise; `$DYNAMO_MIGRATE_DOCKER_NETWORK` overrides.
    #[default]
    Auto,
    /// The host's network: DynamoDB Local listens on a free port of this machine.
    Host,
    /// The engine's bridge, with the port published on 127.0.0.1 only.
    Published,
}

/// A running container, removed when this value is dropped.
pub(super) struct ContainerServer {
    pub(super) id: String,
    pub(super) endpoint: String,
    pub(super) image: String,
    guard: Guard,
}

impl ContainerServer {
    /// Starts DynamoDB Local in a container and waits until it answers, or says why it cannot.
    pub(super) async fn start(options: &LocalOptions) -> Result<ContainerServer, String> {
        let engine = Engine::connect().await?;
        let remover = Remover::find(&engine.host)?;
        engine.sweep_orphans().await;
        let image = options.image.clone().or_else(|| std::env::var(IMAGE_ENV).ok()).unwrap_or(OFFICIAL_IMAGE.into());
        let network = engine.network(options.network).await?;

        let port = match (network, options.port) {
            (_, Some(port)) => port,
            (ContainerNetwork::Host, None) => free_port().map_err(|e| format!("no free port on 127.0.0.1: {e}"))?,
            // Zero lets the engine choose a free port when it publishes.
            _ => 0,
        };
        let mut cmd: Vec<String> = Vec::new();
        if !options.for_throughput {
            // As on the Java path: C1 only and the serial collector halve the time to the first answer.
            cmd.extend(["-XX:TieredStopAtLevel=1".into(), "-XX:+UseSerialGC".into()]);
        }
        cmd.extend(["-jar", "DynamoDBLocal.jar", "-inMemory", "-sharedDb", "-disableTelemetry"].map(String::from));
        if network == ContainerNetwork::Host {
            cmd.extend(["-port".into(), port.to_string()]);
        }
        if options.delay_transient_statuses {
            cmd.push("-delayTransientStatuses".into());
        }

        let (name, tag) = split_reference(&image);
        let request = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_exposed_port(ContainerPort::Tcp(IMAGE_PORT))
            .with_cmd(cmd)
            .with_labels(owner_labels())
            .with_startup_timeout(Duration::from_secs(300))
            .with_host_config_modifier(move |config: &mut HostConfig| match network {
                ContainerNetwork::Host => {
                    config.network_mode = Some("host".into());
                    config.publish_all_ports = Some(false);
                    config.port_bindings = None;
                }
                ContainerNetwork::Published | ContainerNetwork::Auto => {
                    // Published on loopback only: DynamoDB Local accepts any credentials.
                    config.publish_all_ports = Some(false);
                    let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(port.to_string()) };
                    config.port_bindings = Some(HashMap::from([(format!("{IMAGE_PORT}/tcp"), Some(vec![binding]))]));
                }
            });
        let container = request.start().await.map_err(|e| format!("cannot start a container of {image}: {e}"))?;
        let id = container.id().to_owned();
        let guard = match Guard::start(&id, &remover) {
            Ok(guard) => guard,
            Err(e) => {
                remove_now(&id);
                return Err(e);
            }
        };
        let port = match network {
            ContainerNetwork::Host => Ok(port),
            _ => container.get_host_port_ipv4(IMAGE_PORT).await.map_err(|e| format!("no published port: {e}")),
        };
        let host = container.get_host().await.map(|h| h.to_string());
        // The guard removes it; testcontainers' Drop would try again, and needs a runtime.
        std::mem::forget(container);
        let port = port?;
        let host = host.map_err(|e| format!("no host for the container: {e}"))?;
        let host = if host == "localhost" { "127.0.0.1".to_owned() } else { host };
        let endpoint = format!("http://{host}:{port}");
        let server = ContainerServer { id, endpoint, image, guard };
        // A remote engine gives a remote endpoint: refused, like any endpoint that is not local.
        if !is_local_endpoint(&server.endpoint) {
            return Err(format!("the Docker engine gives endpoint {}, which is not on loopback", server.endpoint));
        }
        server.wait_answers(&engine.docker).await?;
        Ok(server)
    }

    /// Waits until DynamoDB Local answers `ListTables`, or the container ends, or time runs out.
    async fn wait_answers(&self, docker: &Docker) -> Result<(), String> {
        let client = connect(&Target::local(&self.endpoint)).await;
        let quick = aws_sdk_dynamodb::config::Builder::default().retry_config(RetryConfig::disabled()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_timeout(Duration::from_secs(2))
                .build(),
        );
        let start = Instant::now();
        let mut last_error = String::new();
        while start.elapsed() < READY_TIMEOUT {
            match client.list_tables().limit(1).customize().config_override(quick.clone()).send().await {
                Ok(_) => return Ok(()),
                Err(e) => last_error = crate::error::SdkFailure::of(&e).to_string(),
            }
            let running = docker.inspect_container(&self.id, None).await.ok().and_then(|c| c.state?.running);
            if running != Some(true) {
                return Err(format!("container {} of {} ended before it answered", short(&self.id), self.image));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "container {} of {} did not answer ListTables within {READY_TIMEOUT:?}: {last_error}",
            short(&self.id),
            self.image
        ))
    }
}

impl Drop for ContainerServer {
    fn drop(&mut self) {
        // Synchronous and runtime-free: the guard removes the container when its stdin closes.
        self.guard.release();
    }
}

/// The Docker engine testcontainers talks to, once it has answered.
pub(super) struct Engine {
    pub(super) docker: Docker,
    host: String,
}

impl Engine {
    /// Connects and pings, or says why there is no engine to use.
    pub(super) async fn connect() -> Result<Engine, String> {
        let host = docker_host().ok_or("no Docker engine: DOCKER_HOST is not set and no Docker socket exists")?;
        if !host_is_local(&host) {
            return Err(format!(
                "DOCKER_HOST {host} is not on this machine, so its containers would not be on loopback"
            ));
        }
        let docker = docker_client_instance().await.map_err(|e| format!("no Docker client for {host}: {e}"))?;
        match tokio::time::timeout(Duration::from_secs(3), docker.ping()).await {
            Ok(Ok(_)) => Ok(Engine { docker, host }),
            Ok(Err(e)) => Err(format!("no Docker engine answers at {host}: {e}")),
            Err(_) => Err(format!("the Docker engine at {host} did not answer within 3 s")),
        }
    }

    async fn network(&self, wanted: ContainerNetwork) -> Result<ContainerNetwork, String> {
        let wanted = match (wanted, std::env::var(NETWORK_ENV).ok().as_deref()) {
            (ContainerNetwork::Auto, Some("host")) => ContainerNetwork::Host,
            (ContainerNetwork::Auto, Some("published")) => ContainerNetwork::Published,
            (ContainerNetwork::Auto, Some(other)) => {
                return Err(format!("{NETWORK_ENV}={other} is neither host nor published"));
            }
            (wanted, _) => wanted,
        };
        if wanted != ContainerNetwork::Auto {
            return Ok(wanted);
        }
        // An engine started with --bridge=none cannot publish ports; its containers share the
        // host's network instead.
        Ok(match self.docker.inspect_network("bridge", None).await {
            Ok(_) => ContainerNetwork::Published,
            Err(_) => ContainerNetwork::Host,
        })
    }

    /// Removes the containers that owners on this machine left behind when they died.
    async fn sweep_orphans(&self) {
        let Some(boot) = boot_id() else { return };
        let filters = HashMap::from([("label", vec![format!("{LABEL_BOOT}={boot}")])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let Ok(containers) = self.docker.list_containers(Some(options)).await else { return };
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let owner = labels.get(LABEL_PID).and_then(|p| p.parse::<u32>().ok());
            let started = labels.get(LABEL_STARTED).cloned();
            let alive = owner.is_some_and(|pid| process_started(pid).is_some_and(|s| Some(s) == started));
            if alive {
                continue;
            }
            let Some(id) = container.id else { continue };
            let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            match self.docker.remove_container(&id, Some(options)).await {
                Ok(()) => tracing::info!(
                    "removed DynamoDB Local container {} left behind by process {}, which is gone",
                    short(&id),
                    owner.map_or("?".into(), |p| p.to_string())
                ),
                Err(e) => tracing::warn!("cannot remove container {} left behind by a dead process: {e}", short(&id)),
            }
        }
    }
}

/// Whether a Docker engine answers here, and if not, why (for tests that need one, and for `setup`).
pub async fn docker_engine() -> Result<(), String> {
    Engine::connect().await.map(|_| ())
}

/// The engine's address as testcontainers resolves it, minus its properties file: `$DOCKER_HOST`,
/// else the first Docker socket that exists.
fn docker_host() -> Option<String> {
    if let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
        return Some(host);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let candidates = [
        Some(PathBuf::from("/var/run/docker.sock")),
        runtime.map(|d| d.join(".docker/run/docker.sock")),
        home.as_ref().map(|d| d.join(".docker/run/docker.sock")),
        home.as_ref().map(|d| d.join(".docker/desktop/docker.sock")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists()).map(|p| format!("unix://{}", p.display()))
}

/// A socket or pipe is on this machine; a TCP or SSH host only when it is a loopback address.
fn host_is_local(host: &str) -> bool {
    if host.starts_with("unix://") || host.starts_with("npipe://") {
        return true;
    }
    let url = host.replacen("tcp://", "http://", 1);
    is_local_endpoint(&url)
}

fn split_reference(image: &str) -> (String, String) {
    let after_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[after_slash..].rfind(':') {
        Some(i) => (image[..after_slash + i].to_owned(), image[after_slash + i + 1..].to_owned()),
        None => (image.to_owned(), "latest".to_owned()),
    }
}

fn owner_labels() -> Vec<(String, String)> {
    let pid = std::process::id();
    let mut labels = vec![(LABEL_PID.to_owned(), pid.to_string())];
    if let (Some(boot), Some(started)) = (boot_id(), process_started(pid)) {
        labels.push((LABEL_BOOT.to_owned(), boot));
        labels.push((LABEL_STARTED.to_owned(), started));
    }
    labels
}

/// This boot of this machine: with the PID and its start time, it names a process uniquely.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_owned())
}

/// When a process started (clock ticks since boot, field 22 of its stat), if it is alive: a PID
/// that was reused names another process, with another start time.
fn process_started(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; what follows its last ')' does not.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// How the guard removes a container: the docker command where there is one, else curl on the
/// engine's socket.
enum Remover {
    Cli { docker: PathBuf, host: String },
    Curl { socket: String },
}

impl Remover {
    fn find(host: &str) -> Result<Remover, String> {
        if let Some(docker) = on_path("docker") {
            return Ok(Remover::Cli { docker, host: host.to_owned() });
        }
        match (host.strip_prefix("unix://"), on_path("curl")) {
            (Some(socket), Some(_)) => Ok(Remover::Curl { socket: socket.to_owned() }),
            _ => Err("neither the docker command nor curl is on PATH: one is needed to remove the container \
                      should this process be killed"
                .to_owned()),
        }
    }

    fn command(&self, id: &str) -> Command {
        match self {
            Remover::Cli { docker, host } => {
                let mut cmd = Command::new(docker);
                cmd.env("DOCKER_HOST", host).args(["rm", "--force", "--volumes", id]);
                cmd
            }
            Remover::Curl { socket } => {
                let mut cmd = Command::new("curl");
                cmd.args(["-fsS", "--max-time", "60", "-X", "DELETE", "--unix-socket", socket])
                    .arg(format!("http://localhost/containers/{id}?force=true&v=true"));
                cmd
            }
        }
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Removes the container when our end of its stdin closes. It ignores the signals a terminal
/// sends to the whole process group (Ctrl-C), so that it outlives an owner killed by them and
/// still does its work.
const GUARD_SCRIPT: &str = r#"trap '' INT TERM HUP QUIT
read -r _
"$@" >/dev/null 2>&1
"#;

struct Guard {
    child: Option<Child>,
}

impl Guard {
    fn start(id: &str, remover: &Remover) -> Result<Guard, String> {
        let remove = remover.command(id);
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(GUARD_SCRIPT).arg("dynamodb-local-container-guard").arg(remove.get_program());
        cmd.args(remove.get_args());
        for (key, value) in remove.get_envs() {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the guard that removes container {}: {e}", short(id)))?;
        Ok(Guard { child: Some(child) })
    }

    fn release(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Removes a container that has no guard yet, on a thread of its own with its own runtime, so
/// that it works inside or outside a tokio runtime.
fn remove_now(id: &str) {
    let id = id.to_owned();
    let joined = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async {
            let docker = Docker::connect_with_defaults().ok()?;
            let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            docker.remove_container(&id, Some(options)).await.ok()
        })
    })
    .join();
    if !matches!(joined, Ok(Some(()))) {
        tracing::warn!("could not remove a container that failed to start; the next start removes it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_at_the_tag_not_at_a_registry_port() {
        assert_eq!(split_reference("amazon/dynamodb-local:3.3.0"), ("amazon/dynamodb-local".into(), "3.3.0".into()));
        assert_eq!(split_reference("registry:5000/ddb"), ("registry:5000/ddb".into(), "latest".into()));
        assert_eq!(split_reference("registry:5000/ddb:1"), ("registry:5000/ddb".into(), "1".into()));
    }

    #[test]
    fn only_sockets_and_loopback_hosts_are_local() {
        assert!(host_is_local("unix:///var/run/docker.sock"));
        assert!(host_is_local("tcp://127.0.0.1:2375"));
        assert!(!host_is_local("tcp://docker:2376"));
        assert!(!host_is_local("tcp://192.0.2.7:2375"));
        assert!(!host_is_local("ssh://user@build-host"));
    }

    #[test]
    fn a_live_process_has_a_start_time_and_a_made_up_one_has_none() {
        assert!(process_started(std::process::id()).is_some());
        assert!(process_started(u32::MAX).is_none());
    }
}
