//! `environments.toml`: one table per environment, read into typed config.
//!
//! Credentials never live here: they come from aws-config's standard chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::client::{Target, is_local_endpoint};
use crate::error::{COMMAND_PLACEHOLDER, ENVIRONMENT_PLACEHOLDER};
use crate::names::{DEFAULT_LEDGER_TABLE, TableNames};

// The doc comments are the descriptions in the file's JSON Schema (`cargo xtask schemas`).
/// One environment: where its tables live and how carefully to treat it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// The environment's name: its table's header in the file (`[prod]`), given with `--env`.
    #[serde(skip)]
    pub name: String,
    /// The AWS region of the tables, e.g. eu-west-1.
    pub region: String,
    /// The AWS profile whose credentials to use (else the standard chain).
    pub profile: Option<String>,
    /// A role to assume for this environment.
    pub role_arn: Option<String>,
    /// The AWS account the credentials must belong to (12 digits); required unless the endpoint is local.
    pub account_id: Option<String>,
    /// Put before every table name (and the ledger's): at most 48 of a-z, A-Z, 0-9, _, - and .
    #[serde(default)]
    pub table_prefix: String,
    /// Writes need --yes, or the environment's name typed at a prompt.
    #[serde(default)]
    pub protected: bool,
    /// A DynamoDB Local or test endpoint instead of AWS.
    pub endpoint: Option<String>,
    /// An STS endpoint instead of AWS's, for test environments (a server that answers
    /// `GetCallerIdentity`).
    pub sts_endpoint: Option<String>,
    /// The ledger table's name after the prefix (default dynamo_migrate_ledger).
    pub ledger_table: Option<String>,
    /// The environment variable through which the application learns its table prefix (set it to
    /// table_prefix where the application runs; `dynamo_model::table_prefix_from_env` reads it).
    pub application_prefix_env: Option<String>,
    /// This environment uses the same tables as another one on purpose (same endpoint, prefix
    /// and ledger): without it, two such environments are refused, since they would silently
    /// share one ledger.
    #[serde(default)]
    pub shares_tables: bool,
    /// Where this environment's workers run, for `migrate --workers batch` and
    /// `cargo xtask workers --emit` (see README, "Beyond one machine").
    pub workers: Option<WorkersConfig>,
    /// Where a rebuild through DynamoDB's Export to S3 and Import from S3 keeps its files
    /// (`RebuildStep::via_export`; see README, "Huge tables: Export to S3, Import from S3").
    pub exports: Option<ExportsConfig>,
}

/// The S3 place of an environment's export rebuilds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportsConfig {
    /// The bucket DynamoDB exports into and imports from (in the environment's account and
    /// region; AWS's rules for bucket names: 3 to 63 of a-z, 0-9, . and -).
    pub bucket: String,
    /// The key prefix under which each rebuild gets a folder of its own (default
    /// `dynamo-migrate/<table prefix>`).
    pub prefix: Option<String>,
    /// An S3 endpoint instead of AWS's (a test stand-in on loopback).
    pub s3_endpoint: Option<String>,
    /// The ARN of a KMS key (`arn:aws:kms:<region>:<account>:key/<id>`) that encrypts every
    /// object of the rebuilds (SSE-KMS): DynamoDB's exports and the transformed parts. Without
    /// it, the bucket's default encryption applies.
    pub kms_key: Option<String>,
    /// The account that owns the bucket (12 digits), when it is not the environment's: passed to
    /// DynamoDB's export and import, and checked by S3 on every request (`ExpectedBucketOwner`),
    /// so that nothing is read from or written to a bucket of another owner.
    pub bucket_owner: Option<String>,
}

/// Whether `key` is a KMS key's ARN: `arn:<partition>:kms:<region>:<12 digits>:key/<id>`.
fn is_kms_key_arn(key: &str) -> bool {
    let parts: Vec<&str> = key.splitn(6, ':').collect();
    matches!(
        parts.as_slice(),
        ["arn", partition, "kms", region, account, resource]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|c| c.is_ascii_digit())
                && resource.strip_prefix("key/").is_some_and(|id| !id.is_empty() && !id.contains(['/', ' ']))
    )
}

impl ExportsConfig {
    /// The key prefix of the environment's rebuild folders, without a trailing `/`.
    pub fn prefix_or_default(&self, table_prefix: &str) -> String {
        match &self.prefix {
            Some(prefix) => prefix.trim_matches('/').to_owned(),
            None => format!("dynamo-migrate/{}", table_prefix.trim_end_matches(['_', '-', '.']))
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    /// What is wrong with the bucket's name or the prefix, if anything.
    fn problem(&self) -> Option<String> {
        let b = &self.bucket;
        let chars_ok = b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
        let ends_ok = b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric());
        if !(3..=63).contains(&b.len()) || !chars_ok || !ends_ok || b.contains("..") {
            return Some(format!(
                "bucket {b:?} is not an S3 bucket name (3 to 63 of a-z, 0-9, . and -, starting and ending with a letter or digit)"
            ));
        }
        if let Some(prefix) = &self.prefix
            && (prefix.len() > 512 || prefix.contains("//") || prefix.chars().any(char::is_control))
        {
            return Some(format!(
                "prefix {prefix:?} is not a key prefix (at most 512 characters, no //, no control characters)"
            ));
        }
        if let Some(endpoint) = &self.s3_endpoint
            && let Err(reason) = check_url(endpoint)
        {
            return Some(format!("s3_endpoint {endpoint:?} is not a URL ({reason})"));
        }
        if let Some(key) = &self.kms_key
            && !is_kms_key_arn(key)
        {
            return Some(format!(
                "kms_key {key:?} is not a KMS key's ARN (arn:aws:kms:<region>:<account>:key/<key id>; `aws kms describe-key --key-id <alias or id>` prints it as Arn)"
            ));
        }
        if let Some(owner) = &self.bucket_owner
            && !(owner.len() == 12 && owner.bytes().all(|c| c.is_ascii_digit()))
        {
            return Some(format!("bucket_owner {owner:?} is not an AWS account id (12 digits)"));
        }
        None
    }
}

/// How an environment's workers are started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// How many workers: an AWS Batch array job's size, a Kubernetes Indexed Job's completions
    /// (2 to 10000).
    pub count: Option<u32>,
    /// The AWS Batch job queue the array job is submitted to.
    pub job_queue: Option<String>,
    /// The AWS Batch job definition whose container image is the team's runner
    /// (`cargo xtask build-runner`); its command is set to `worker`.
    pub job_definition: Option<String>,
    /// The container image of the team's runner, for the Kubernetes manifest.
    pub image: Option<String>,
    /// An AWS Batch endpoint instead of AWS's (a test stand-in on loopback).
    pub batch_endpoint: Option<String>,
    /// A budget of write capacity units per second for each shared pass, split among the
    /// processes working it (recomputed as they come and go), so that many workers do not
    /// throttle the application.
    pub max_write_units: Option<u32>,
}

impl Environment {
    /// True when DynamoDB is on this machine's loopback (DynamoDB Local, or a test stand-in).
    pub fn is_local(&self) -> bool {
        self.endpoint.as_deref().is_some_and(is_local_endpoint)
    }

    /// True when writes must first prove that the credentials belong to `account_id`: every
    /// environment that names an account (all real ones must).
    pub fn guarded(&self) -> bool {
        self.account_id.is_some()
    }

    /// Where the environment's tables live, as the file says it.
    pub fn location(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("endpoint {}", endpoint.trim_end_matches('/')),
            None => format!("account {} in {}", self.account_id.as_deref().unwrap_or("?"), self.region),
        }
    }

    /// Where the environment's tables live, as one string for every spelling of one place: an
    /// endpoint (any loopback host of a port is the same server), or an account and region.
    fn place(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => {
                let url = url::Url::parse(endpoint).ok();
                match url.as_ref().and_then(|u| Some((u.port_or_known_default()?, u))) {
                    Some((port, _)) if self.is_local() => format!("endpoint on loopback port {port}"),
                    Some((port, url)) => {
                        format!("endpoint {}://{}:{port}", url.scheme(), url.host_str().unwrap_or_default())
                    }
                    None => format!("endpoint {}", endpoint.trim_end_matches('/')),
                }
            }
            None => format!("account {} in {}", self.account_id.as_deref().unwrap_or("?"), self.region),
        }
    }

    /// How the environment names its tables: its `table_prefix`, and its ledger table
    /// (`ledger_table`, or `dynamo_migrate_ledger`) after the prefix.
    pub fn names(&self) -> TableNames {
        TableNames::with_ledger(self.table_prefix.clone(), self.ledger_table.as_deref().unwrap_or(DEFAULT_LEDGER_TABLE))
    }

    /// Where to connect for this environment: its region, profile, role and endpoints, with a
    /// fixed test key instead of the credential chain on a local endpoint that names no account.
    pub fn target(&self) -> Target {
        Target {
            region: self.region.clone(),
            profile: self.profile.clone(),
            role_arn: self.role_arn.clone(),
            endpoint: self.endpoint.clone(),
            sts_endpoint: self.sts_endpoint.clone(),
            // DynamoDB Local takes any key; an environment with an account uses the real chain.
            test_credentials: self.is_local() && !self.guarded(),
        }
    }
}

/// Why the environments file cannot be used. Each message ends with what to do next; the
/// commands it suggests name the command that was run as [`COMMAND_PLACEHOLDER`] and the
/// environment as [`ENVIRONMENT_PLACEHOLDER`], which the command line fills in.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The environments file does not exist.
    #[error(
        "there is no environments file {}: write it (`cargo xtask init` writes environments.toml at the workspace root), or name yours with --environments <file>; then run `cargo xtask {COMMAND_PLACEHOLDER} --env {ENVIRONMENT_PLACEHOLDER}`",
        .path.display()
    )]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The environments file exists but cannot be read.
    #[error("cannot read {}: {error}; make it readable, then run {}", .path.display(), again(.path, None))]
    Read {
        /// The environments file.
        path: PathBuf,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// The file is not TOML, or not the environments' shape (an unknown key, a value of the
    /// wrong type).
    #[error("{}: {message}; fix it, then run {}", .path.display(), again(.path, None))]
    Parse {
        /// The environments file.
        path: PathBuf,
        /// toml's message on one line, with where in the file.
        message: String,
    },
    /// An environment that is not on a local endpoint names no `account_id`, so the account
    /// guard could not check its credentials.
    #[error(
        "{}: environment {env} has no account_id; every environment that is not on a local endpoint needs the AWS account id its credentials must belong to{}; add account_id = \"<12 digits>\" to [{env}], then run {}",
        .path.display(),
        .endpoint.as_ref().map(|e| format!(" (its endpoint {e} is not on this machine's loopback: localhost, 127.0.0.0/8 or [::1])")).unwrap_or_default(),
        again(.path, Some(.env))
    )]
    MissingAccount {
        /// The environments file.
        path: PathBuf,
        /// The environment's name.
        env: String,
        /// Its endpoint, when it has one that is not on this machine's loopback.
        endpoint: Option<String>,
    },
    /// An `account_id` that is not 12 digits.
    #[error(
        "{}: environment {env}: account_id {account} must be 12 digits; fix it, then run {}",
        .path.display(),
        again(.path, Some(.env))
    )]
    BadAccount {
        /// The environments file.
        path: PathBuf,
        /// The environment's name.
        env: String,
        /// The `account_id` as written.
        account: String,
    },
    /// A `region` that cannot be an AWS region's name.
    #[error(
        "{}: environment {env}: region {region:?} is not an AWS region (lowercase letters, digits and -, like eu-west-1); fix it, then run {}",
        .path.display(),
        again(.path, Some(.env))
    )]
    BadRegion {
        /// The environments file.
        path: PathBuf,
        /// The environment's name.
        env: String,
        /// The `region` as written.
        region: String,
    },
    /// An `endpoint` or `sts_endpoint` that is not an http(s) URL with a host to connect to.
    #[error(
        "{}: environment {env}: {key} = {value:?} is not a URL ({reason}); write it as http://127.0.0.1:8000 or https://dynamodb.eu-west-1.amazonaws.com, then run {}",
        .path.display(),
        again(.path, Some(.env))
    )]
    BadEndpoint {
        /// The environments file.
        path: PathBuf,
        /// The environment's name.
        env: String,
        /// Which key: `endpoint` or `sts_endpoint`.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong with it as a URL.
        reason: String,
    },
    /// A `table_prefix` with characters DynamoDB refuses in a table name, longer than 48
    /// characters, or that makes one of the workspace's table names invalid.
    #[error(
        "{}: environment {env}: table_prefix {prefix:?} {problem}; DynamoDB table names are 3 to 255 characters of a-z, A-Z, 0-9, _, - and .; fix it, then run {}",
        .path.display(),
        again(.path, Some(.env))
    )]
    BadPrefix {
        /// The environments file.
        path: PathBuf,
        /// The environment's name.
        env: String,
        /// The `table_prefix` as written.
        prefix: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An `application_prefix_env` that is not a portable environment variable name.
    #[error(
        "{}: environment {env}: application_prefix_env {variable:?} is not an environment variable's name (a letter or _, then letters, digits and _, like SHOP_TABLE_PREFIX); fix it, then run {}",
        .path.display(),
        again(.path, Some(.env))
    )]
    BadPrefixVariable {
        /// The environments file.
        path: PathBuf,
        /// The environment's name.
        env: String,
        /// The variable's name as written.
        variable: String,
    },
    /// A `ledger_table` that, after the prefix, is not a valid table name, or is the name of one
    /// of the tables the migrations create.
    #[error(
        "{}: environment {env}: ledger_table {ledger:?} {problem}; fix it, then run {}",
        .path.display(),
        again(.path, Some(.env))
    )]
    BadLedger {
        /// The environments file.
        path: PathBuf,
        /// The environment's name.
        env: String,
        /// The ledger table's name after the prefix.
        ledger: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An environment's `[<env>.exports]` whose bucket is no S3 bucket name, whose prefix is
    /// no key prefix, or whose `s3_endpoint` is no URL.
    #[error(
        "{}: environment {env}: [{env}.exports] {problem}; fix it, then run {}",
        .path.display(),
        again(.path, Some(.env))
    )]
    BadExports {
        /// The environments file.
        path: PathBuf,
        /// The environment's name.
        env: String,
        /// What is wrong, and with which setting.
        problem: String,
    },
    /// Two environments in one place (endpoint, or account and region) whose physical table
    /// names meet, without both saying `shares_tables = true`.
    #[error(
        "{}: environments {first} and {second} use the same tables ({tables}), so they would overwrite each other's tables, whatever their ledgers: give one its own table_prefix, or, if they are meant to be the same, set shares_tables = true in both; then run {}",
        .path.display(),
        again(.path, None)
    )]
    SharedTables {
        /// The environments file.
        path: PathBuf,
        /// The first environment's name.
        first: String,
        /// The second environment's name.
        second: String,
        /// Where they meet: the place and prefixes, and the table both would write.
        tables: String,
    },
    /// `--env` names an environment the file does not define; the message suggests the closest
    /// name, at most two edits away.
    #[error(
        "unknown environment {env:?}; {} defines: {}; {}",
        .path.display(),
        .known.join(", "),
        match closest(.env, .known) {
            Some(near) => format!("did you mean {near}? `cargo xtask {COMMAND_PLACEHOLDER} --env {near}{}`", environments_option(.path)),
            None => format!("name one of them: `cargo xtask {COMMAND_PLACEHOLDER} --env <name>{}`", environments_option(.path)),
        }
    )]
    Unknown {
        /// The name given.
        env: String,
        /// The environments file.
        path: PathBuf,
        /// The environments the file defines.
        known: Vec<String>,
    },
    /// The file defines no environment at all.
    #[error(
        "{} defines no environment: add one as a table, e.g. [{env}] with region = \"eu-west-1\" and account_id = \"123456789012\" (or endpoint = \"http://127.0.0.1:8000\" for DynamoDB Local), then run `cargo xtask {COMMAND_PLACEHOLDER} --env {env}{}`",
        .path.display(),
        environments_option(.path)
    )]
    NoEnvironments {
        /// The name given, used in the example the message suggests.
        env: String,
        /// The environments file.
        path: PathBuf,
    },
}

/// The command to run again once the file is fixed: this command, on the environment named, or
/// on the one it was run for (which the command line fills in, with its `--environments`).
fn again(path: &Path, env: Option<&String>) -> String {
    match env {
        Some(env) => format!("`cargo xtask {COMMAND_PLACEHOLDER} --env {env}{}`", environments_option(path)),
        None => format!("`cargo xtask {COMMAND_PLACEHOLDER} --env {ENVIRONMENT_PLACEHOLDER}`"),
    }
}

/// ` --environments <path>`, unless it is the default file.
fn environments_option(path: &Path) -> String {
    if path == Path::new(DEFAULT_FILE) { String::new() } else { format!(" --environments {}", path.display()) }
}

/// The environments file a command reads unless `--environments` names another.
pub const DEFAULT_FILE: &str = "environments.toml";

/// The known name `typed` most likely meant: at most two edits away.
fn closest<'a>(typed: &str, known: &'a [String]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let substituted = diagonal + usize::from(ca != *cb);
                diagonal = row[j + 1];
                row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
            }
        }
        row[b.len()]
    };
    let (best, d) = known.iter().map(|k| (k, distance(typed, k))).min_by_key(|(_, d)| *d)?;
    (d <= 2 && !typed.is_empty()).then_some(best.as_str())
}

/// A TOML error on one line: toml says where on its first line and what on its last, with the
/// line itself and a caret between them.
fn one_line(e: &toml::de::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match (lines.first(), lines.last()) {
        (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
        _ => lines.join(" "),
    }
}

/// True for an AWS region name: lowercase letters, digits and `-`, starting and ending with a
/// letter or digit (DynamoDB's endpoint is built from it, as a host name label).
fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 63
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// The longest table prefix: DynamoDB allows 255 characters in a table name, and the prefix leaves
/// room for a table name of up to 200 characters with its version suffix (`_v12345`).
pub const MAX_PREFIX: usize = 48;

/// True for a portable environment variable name: a letter or `_`, then letters, digits and `_`.
fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// What is wrong with `name` as a DynamoDB table name, if anything.
pub fn table_name_problem(name: &str) -> Option<String> {
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Some(format!("{name:?} holds {c:?}, but table names are a-z, A-Z, 0-9, _, - and ."));
    }
    if !(3..=255).contains(&name.len()) {
        return Some(format!("{name:?} is {} characters long, but table names are 3 to 255", name.len()));
    }
    None
}

/// An endpoint must be an http(s) URL with a host.
fn check_url(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the scheme is {}, not http or https", url.scheme()));
    }
    match url.host() {
        None => return Err("it has no host".to_owned()),
        Some(url::Host::Domain("")) => return Err("it has no host".to_owned()),
        // A server listens on 0.0.0.0 (every address); a client cannot connect to it as such.
        Some(url::Host::Ipv4(ip)) if ip.is_unspecified() => {
            return Err(format!("{ip} is where a server listens, not an address to connect to: use 127.0.0.1"));
        }
        Some(url::Host::Ipv6(ip)) if ip.is_unspecified() => {
            return Err(format!("[{ip}] is where a server listens, not an address to connect to: use [::1]"));
        }
        Some(_) => {}
    }
    Ok(())
}

/// All environments of a workspace.
#[derive(Debug, Clone)]
pub struct Environments {
    /// The file they were read from, as given (named in errors).
    pub path: PathBuf,
    /// Every environment, by name.
    pub environments: BTreeMap<String, Environment>,
}

impl Environments {
    /// Reads and checks the environments file at `path` (see [`Environments::parse`]); a file
    /// that does not exist is [`ConfigError::Missing`].
    pub fn load(path: &Path) -> Result<Environments, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing { path: path.to_owned() },
            _ => ConfigError::Read { path: path.to_owned(), error },
        })?;
        Environments::parse(path, &text)
    }

    /// Parses the file's text; errors give the file, line and key (toml's messages carry both).
    pub fn parse(path: &Path, text: &str) -> Result<Environments, ConfigError> {
        let mut environments: BTreeMap<String, Environment> =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: one_line(&e) })?;
        for (name, env) in &mut environments {
            env.name = name.clone();
            // First: a malformed endpoint would otherwise read as a remote one missing its account.
            for (key, value) in [("endpoint", &env.endpoint), ("sts_endpoint", &env.sts_endpoint)] {
                if let Some(value) = value
                    && let Err(reason) = check_url(value)
                {
                    return Err(ConfigError::BadEndpoint {
                        path: path.to_owned(),
                        env: name.clone(),
                        key,
                        value: value.clone(),
                        reason,
                    });
                }
            }
            if !is_region(&env.region) {
                return Err(ConfigError::BadRegion {
                    path: path.to_owned(),
                    env: name.clone(),
                    region: env.region.clone(),
                });
            }
            match &env.account_id {
                None if !env.is_local() => {
                    return Err(ConfigError::MissingAccount {
                        path: path.to_owned(),
                        env: name.clone(),
                        endpoint: env.endpoint.clone(),
                    });
                }
                Some(account) if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(ConfigError::BadAccount {
                        path: path.to_owned(),
                        env: name.clone(),
                        account: account.clone(),
                    });
                }
                _ => {}
            }
            let bad_prefix = |problem: String| ConfigError::BadPrefix {
                path: path.to_owned(),
                env: name.clone(),
                prefix: env.table_prefix.clone(),
                problem,
            };
            if let Some(c) = env.table_prefix.chars().find(|c| !is_name_char(*c)) {
                return Err(bad_prefix(format!("holds {c:?}")));
            }
            if env.table_prefix.len() > MAX_PREFIX {
                return Err(bad_prefix(format!(
                    "is {} characters long; at most {MAX_PREFIX} leave room for table names",
                    env.table_prefix.len()
                )));
            }
            if let Some(variable) = &env.application_prefix_env
                && !is_variable_name(variable)
            {
                return Err(ConfigError::BadPrefixVariable {
                    path: path.to_owned(),
                    env: name.clone(),
                    variable: variable.clone(),
                });
            }
            if let Some(ledger) = &env.ledger_table
                && let Some(problem) = table_name_problem(&format!("{}{ledger}", env.table_prefix))
            {
                return Err(ConfigError::BadLedger {
                    path: path.to_owned(),
                    env: name.clone(),
                    ledger: ledger.clone(),
                    problem: format!("with the prefix, {problem}"),
                });
            }
            if let Some(problem) = env.exports.as_ref().and_then(ExportsConfig::problem) {
                return Err(ConfigError::BadExports { path: path.to_owned(), env: name.clone(), problem });
            }
        }
        // Two environments with the same prefix in one place have the same physical table names,
        // whatever their ledgers: they are one set of tables.
        let mut seen: BTreeMap<(String, &str), &Environment> = BTreeMap::new();
        for env in environments.values() {
            let key = (env.place(), env.table_prefix.as_str());
            if let Some(first) = seen.get(&key)
                && !(first.shares_tables && env.shares_tables)
            {
                return Err(ConfigError::SharedTables {
                    path: path.to_owned(),
                    first: first.name.clone(),
                    second: env.name.clone(),
                    tables: format!("{}, table prefix {:?}", env.location(), env.table_prefix),
                });
            }
            seen.insert(key, env);
        }
        Ok(Environments { path: path.to_owned(), environments })
    }

    /// Checks the environments against the workspace's tables: the ledger must not be one of
    /// them, and every physical name (prefix, table, version suffix) must be a valid one.
    pub fn check_tables(&self, tables: &[(String, u32)]) -> Result<(), ConfigError> {
        self.check_overlap(tables)?;
        for env in self.environments.values() {
            let names = env.names();
            for (table, version) in tables {
                let physical = names.physical_version(table, *version);
                if physical == names.ledger() {
                    return Err(ConfigError::BadLedger {
                        path: self.path.clone(),
                        env: env.name.clone(),
                        ledger: env.ledger_table.clone().unwrap_or_else(|| DEFAULT_LEDGER_TABLE.to_owned()),
                        problem: format!(
                            "is the name of table {table}, which the migrations create; name the ledger something else"
                        ),
                    });
                }
                if let Some(problem) = table_name_problem(&physical) {
                    return Err(ConfigError::BadPrefix {
                        path: self.path.clone(),
                        env: env.name.clone(),
                        prefix: env.table_prefix.clone(),
                        problem: format!("makes a table name DynamoDB refuses: {problem}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Two environments in one place whose physical names meet (one prefix continuing into the
    /// other's table names, or a ledger that is the other's table) would write each other's
    /// tables: refused unless both say `shares_tables`.
    fn check_overlap(&self, tables: &[(String, u32)]) -> Result<(), ConfigError> {
        let physical = |env: &Environment| -> BTreeMap<String, String> {
            let names = env.names();
            let mut all: BTreeMap<String, String> = tables
                .iter()
                .map(|(t, v)| (names.physical_version(t, *v), format!("its table {t} (version {v})")))
                .collect();
            all.insert(names.ledger().to_owned(), "its ledger".to_owned());
            all
        };
        let envs: Vec<&Environment> = self.environments.values().collect();
        for (i, first) in envs.iter().enumerate() {
            for second in &envs[i + 1..] {
                if first.place() != second.place() || (first.shares_tables && second.shares_tables) {
                    continue;
                }
                let theirs = physical(second);
                if let Some((name, what)) = physical(first).into_iter().find(|(n, _)| theirs.contains_key(n)) {
                    return Err(ConfigError::SharedTables {
                        path: self.path.clone(),
                        first: first.name.clone(),
                        second: second.name.clone(),
                        tables: format!(
                            "{}: {name} is {what} in {} (prefix {:?}) and {} in {} (prefix {:?})",
                            first.location(),
                            first.name,
                            first.table_prefix,
                            theirs[&name],
                            second.name,
                            second.table_prefix
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The environment named `name`: [`ConfigError::Unknown`] (with the closest name) when the
    /// file does not define it, [`ConfigError::NoEnvironments`] when it defines none.
    pub fn get(&self, name: &str) -> Result<&Environment, ConfigError> {
        if self.environments.is_empty() {
            return Err(ConfigError::NoEnvironments { env: name.to_owned(), path: self.path.clone() });
        }
        self.environments.get(name).ok_or_else(|| ConfigError::Unknown {
            env: name.to_owned(),
            path: self.path.clone(),
            known: self.environments.keys().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Environments, ConfigError> {
        Environments::parse(Path::new("environments.toml"), text)
    }

    #[test]
    fn environments_are_read_with_defaults() {
        let envs = parse(
            r#"
            [local]
            region = "us-east-1"
            endpoint = "http://127.0.0.1:8000"
            table_prefix = "dev_"

            [prod]
            region = "eu-west-1"
            account_id = "123456789012"
            protected = true
            "#,
        )
        .unwrap();
        let local = envs.get("local").unwrap();
        assert!(local.is_local());
        assert_eq!(local.names().physical("customers"), "dev_customers");
        assert_eq!(local.names().ledger(), "dev_dynamo_migrate_ledger");
        let prod = envs.get("prod").unwrap();
        assert!(prod.protected && !prod.is_local() && prod.guarded());
        assert!(!local.guarded() && local.target().test_credentials);
    }

    #[test]
    fn an_unknown_environment_lists_the_known_ones() {
        let envs = parse(
            "[local]\nregion = \"us-east-1\"\nendpoint = \"http://localhost:8000\"\n[staging]\nregion = \"x\"\naccount_id = \"111111111111\"\n",
        )
        .unwrap();
        assert_eq!(
            envs.get("nosuch").unwrap_err().to_string(),
            "unknown environment \"nosuch\"; environments.toml defines: local, staging; name one of them: `cargo xtask <command> --env <name>`"
        );
        assert_eq!(
            envs.get("stagign").unwrap_err().to_string(),
            "unknown environment \"stagign\"; environments.toml defines: local, staging; did you mean staging? `cargo xtask <command> --env staging`"
        );
        let none = parse("# nothing yet\n").unwrap();
        assert!(none.get("dev").unwrap_err().to_string().starts_with(
            "environments.toml defines no environment: add one as a table, e.g. [dev] with region = \"eu-west-1\""
        ),);
    }

    #[test]
    fn malformed_toml_names_file_and_line() {
        let message = parse("[prod]\nregion = \"eu-west-1\"\naccount_id = 1234\n").unwrap_err().to_string();
        assert!(message.starts_with("environments.toml: TOML parse error at line 3"), "{message}");
        let message = parse("[prod]\nregion = \"eu-west-1\"\nregoin = \"x\"\n").unwrap_err().to_string();
        assert!(message.contains("line 3") && message.contains("unknown field `regoin`"), "{message}");
    }

    #[test]
    fn a_real_account_needs_a_twelve_digit_account_id() {
        let message = parse("[prod]\nregion = \"eu-west-1\"\n").unwrap_err().to_string();
        assert_eq!(
            message,
            "environments.toml: environment prod has no account_id; every environment that is not on a local endpoint needs the AWS account id its credentials must belong to; add account_id = \"<12 digits>\" to [prod], then run `cargo xtask <command> --env prod`"
        );
        let message = parse("[prod]\nregion = \"eu-west-1\"\naccount_id = \"12345\"\n").unwrap_err().to_string();
        assert_eq!(
            message,
            "environments.toml: environment prod: account_id 12345 must be 12 digits; fix it, then run `cargo xtask <command> --env prod`"
        );
        // An endpoint that is not loopback is named: it is why the account is needed.
        let message =
            parse("[dev]\nregion = \"eu-west-1\"\nendpoint = \"http://10.0.0.5:8000\"\n").unwrap_err().to_string();
        assert!(message.contains("(its endpoint http://10.0.0.5:8000 is not on this machine's loopback"), "{message}");
    }

    #[test]
    fn an_endpoint_must_be_a_url() {
        let message = parse("[dev]\nregion = \"us-east-1\"\nendpoint = \"not a url\"\n").unwrap_err().to_string();
        assert!(
            message.starts_with("environments.toml: environment dev: endpoint = \"not a url\" is not a URL (relative URL without a base)"),
            "{message}"
        );
        let message =
            parse("[dev]\nregion = \"us-east-1\"\nendpoint = \"ftp://127.0.0.1:8000\"\n").unwrap_err().to_string();
        assert!(message.contains("the scheme is ftp, not http or https"), "{message}");
    }

    #[test]
    fn a_prefix_is_within_dynamodb_names_and_leaves_room() {
        let local = |prefix: &str| {
            format!(
                "[dev]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:8000\"\ntable_prefix = \"{prefix}\"\n"
            )
        };
        let message = parse(&local("dev/")).unwrap_err().to_string();
        assert!(
            message.starts_with("environments.toml: environment dev: table_prefix \"dev/\" holds '/'"),
            "{message}"
        );
        let message = parse(&local(&"p".repeat(49))).unwrap_err().to_string();
        assert!(message.contains("is 49 characters long; at most 48 leave room for table names"), "{message}");
        let envs = parse(&local(&"p".repeat(48))).unwrap();
        // The longest table name with the longest prefix still makes a valid name, one more does not.
        envs.check_tables(&[("t".repeat(200), 99_999)]).unwrap();
        let message = envs.check_tables(&[("t".repeat(205), 99_999)]).unwrap_err().to_string();
        assert!(
            message.contains("makes a table name DynamoDB refuses") && message.contains("260 characters long"),
            "{message}"
        );
    }

    #[test]
    fn environments_on_one_endpoint_do_not_share_tables_unless_marked() {
        let two = |extra: &str| {
            format!(
                "[a]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:8000\"\ntable_prefix = \"x_\"\n{extra}\
                 [b]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:8000/\"\ntable_prefix = \"x_\"\n{extra}"
            )
        };
        let message = parse(&two("")).unwrap_err().to_string();
        assert_eq!(
            message,
            "environments.toml: environments a and b use the same tables (endpoint http://127.0.0.1:8000, table prefix \"x_\"), so they would overwrite each other's tables, whatever their ledgers: give one its own table_prefix, or, if they are meant to be the same, set shares_tables = true in both; then run `cargo xtask <command> --env <environment>`"
        );
        parse(&two("shares_tables = true\n")).unwrap();
        // Their own ledgers do not make them two sets of tables, nor does another spelling of
        // loopback.
        let message = parse(&two("").replacen("x_\"\n", "x_\"\nledger_table = \"a_ledger\"\n", 1).replacen(
            "127.0.0.1",
            "localhost",
            1,
        ))
        .unwrap_err()
        .to_string();
        assert!(message.contains("environments a and b use the same tables"), "{message}");
        // The same prefix in two accounts is two sets of tables.
        parse("[a]\nregion = \"eu-west-1\"\naccount_id = \"111111111111\"\n[b]\nregion = \"eu-west-1\"\naccount_id = \"222222222222\"\n").unwrap();
    }

    #[test]
    fn prefixes_that_run_into_each_others_tables_are_refused_against_the_tables() {
        let text = "[a]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:8000\"\ntable_prefix = \"dev_\"\n\
                    [b]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:8000\"\ntable_prefix = \"dev_x_\"\n";
        let envs = parse(text).unwrap();
        envs.check_tables(&[("customers".to_owned(), 1)]).unwrap();
        let message =
            envs.check_tables(&[("customers".to_owned(), 1), ("x_customers".to_owned(), 1)]).unwrap_err().to_string();
        assert!(
            message.contains("environments a and b use the same tables (endpoint http://127.0.0.1:8000: dev_x_customers is its table x_customers (version 1) in a (prefix \"dev_\") and its table customers (version 1) in b (prefix \"dev_x_\"))"),
            "{message}"
        );
    }

    #[test]
    fn a_region_is_a_region_and_an_endpoint_is_somewhere_to_connect_to() {
        for region in ["", "eu west 1", "EU-WEST-1", "-eu"] {
            let text = format!("[dev]\nregion = \"{region}\"\nendpoint = \"http://127.0.0.1:8000\"\n");
            let message = parse(&text).unwrap_err().to_string();
            assert!(message.contains(&format!("region {region:?} is not an AWS region")), "{message}");
        }
        let message =
            parse("[dev]\nregion = \"us-east-1\"\nendpoint = \"http://0.0.0.0:8000\"\n").unwrap_err().to_string();
        assert!(
            message.contains("0.0.0.0 is where a server listens, not an address to connect to: use 127.0.0.1"),
            "{message}"
        );
    }

    #[test]
    fn an_exports_bucket_is_a_bucket_name_and_its_prefix_a_key_prefix() {
        let env = |exports: &str| {
            format!(
                "[dev]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:8000\"\ntable_prefix = \"dev_\"\n[dev.exports]\n{exports}"
            )
        };
        let envs = parse(&env("bucket = \"acme-exports\"\n")).unwrap();
        let exports = envs.get("dev").unwrap().exports.clone().unwrap();
        assert_eq!(exports.prefix_or_default("dev_"), "dynamo-migrate/dev");
        let given = parse(&env("bucket = \"acme-exports\"\nprefix = \"/rebuilds/prod/\"\n")).unwrap();
        assert_eq!(given.get("dev").unwrap().exports.clone().unwrap().prefix_or_default("dev_"), "rebuilds/prod");
        let message = parse(&env("bucket = \"Acme_Exports\"\n")).unwrap_err().to_string();
        assert_eq!(
            message,
            "environments.toml: environment dev: [dev.exports] bucket \"Acme_Exports\" is not an S3 bucket name (3 to 63 of a-z, 0-9, . and -, starting and ending with a letter or digit); fix it, then run `cargo xtask <command> --env dev`"
        );
        let message = parse(&env("bucket = \"acme\"\nprefix = \"a//b\"\n")).unwrap_err().to_string();
        assert!(message.contains("prefix \"a//b\" is not a key prefix"), "{message}");
        let message = parse(&env("bucket = \"acme\"\ns3_endpoint = \"nope\"\n")).unwrap_err().to_string();
        assert!(message.contains("s3_endpoint \"nope\" is not a URL"), "{message}");
        let message = parse(&env("bucket = \"acme\"\nregion = \"x\"\n")).unwrap_err().to_string();
        assert!(message.contains("unknown field `region`"), "{message}");
    }

    #[test]
    fn an_exports_kms_key_is_a_key_arn_and_its_bucket_owner_an_account() {
        let env = |exports: &str| {
            format!(
                "[dev]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n[dev.exports]\nbucket = \"acme\"\n{exports}"
            )
        };
        let key = "arn:aws:kms:us-east-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let envs = parse(&env(&format!("kms_key = \"{key}\"\nbucket_owner = \"210987654321\"\n"))).unwrap();
        let exports = envs.get("dev").unwrap().exports.clone().unwrap();
        assert_eq!(exports.kms_key.as_deref(), Some(key));
        assert_eq!(exports.bucket_owner.as_deref(), Some("210987654321"));
        for bad in [
            "alias/rebuilds",
            "arn:aws:kms:us-east-1:210987654321:alias/rebuilds",
            "1234abcd-12ab",
            "arn:aws:kms:us-east-1:2109:key/x",
        ] {
            let message = parse(&env(&format!("kms_key = \"{bad}\"\n"))).unwrap_err().to_string();
            assert_eq!(
                message,
                format!(
                    "environments.toml: environment dev: [dev.exports] kms_key {bad:?} is not a KMS key's ARN (arn:aws:kms:<region>:<account>:key/<key id>; `aws kms describe-key --key-id <alias or id>` prints it as Arn); fix it, then run `cargo xtask <command> --env dev`"
                )
            );
        }
        let message = parse(&env("bucket_owner = \"acme\"\n")).unwrap_err().to_string();
        assert!(
            message.contains("[dev.exports] bucket_owner \"acme\" is not an AWS account id (12 digits)"),
            "{message}"
        );
    }

    #[test]
    fn the_ledger_is_not_a_table_of_the_migrations() {
        let envs = parse(
            "[dev]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:8000\"\nledger_table = \"customers\"\n",
        )
        .unwrap();
        let message = envs.check_tables(&[("customers".to_owned(), 1)]).unwrap_err().to_string();
        assert_eq!(
            message,
            "environments.toml: environment dev: ledger_table \"customers\" is the name of table customers, which the migrations create; name the ledger something else; fix it, then run `cargo xtask <command> --env dev`"
        );
        let message =
            parse("[dev]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:8000\"\nledger_table = \"a b\"\n")
                .unwrap_err()
                .to_string();
        assert!(message.contains("ledger_table \"a b\" with the prefix, \"a b\" holds ' '"), "{message}");
    }
}
