//! The one place where AWS clients are built.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_smithy_types::timeout::TimeoutConfig;

/// Where to connect: a region, credentials from the standard chain (a profile, a role to
/// assume), and, for DynamoDB Local or a test account, endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The AWS region (`eu-west-1`).
    pub region: String,
    /// The AWS profile whose credentials to use, instead of the chain's default.
    pub profile: Option<String>,
    /// A role to assume with those credentials (session name `dynamo-migrate`).
    pub role_arn: Option<String>,
    /// DynamoDB's endpoint, instead of AWS's.
    pub endpoint: Option<String>,
    /// STS's endpoint, instead of AWS's (a test server that answers `GetCallerIdentity`).
    pub sts_endpoint: Option<String>,
    /// Use a fixed test key instead of the credential chain (DynamoDB Local accepts any).
    pub test_credentials: bool,
}

impl Target {
    /// A DynamoDB Local (or other loopback) endpoint.
    pub fn local(endpoint: impl Into<String>) -> Self {
        Target {
            region: "us-east-1".to_owned(),
            endpoint: Some(endpoint.into()),
            test_credentials: true,
            ..Target::default()
        }
    }
}

/// True for `http(s)://` URLs whose host is `localhost`, in 127.0.0.0/8, or `[::1]`.
pub fn is_local_endpoint(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one attempt of a call may take: far more than the largest request this tool makes
/// needs (a `BatchWriteItem` of 25 items of 400 KB, a `Scan` page of at most 1 MB, a stream's
/// `GetRecords`; DynamoDB has no long polling), so that only a stuck connection hits it.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a call may take with the SDK's retries (three attempts and their backoff).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

/// The timeouts of every client (the lock's heartbeat has shorter ones: see `lock`).
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The shared SDK configuration of a target: region, timeouts, and credentials from aws-config's
/// standard chain (environment, profiles, SSO, instance roles), through a role if one is given.
async fn sdk_config(target: &Target) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(target.region.clone()))
        .timeout_config(timeouts());
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if target.test_credentials {
        loader = loader.credentials_provider(Credentials::new("local", "local", None, None, "dynamo-migrate-local"));
    }
    let base = loader.load().await;
    match &target.role_arn {
        None => base,
        Some(role) => {
            let mut provider = AssumeRoleProvider::builder(role).session_name("dynamo-migrate").configure(&base);
            if let Some(region) = base.region() {
                provider = provider.region(region.clone());
            }
            let provider = provider.build().await;
            base.into_builder()
                .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(provider))
                .build()
        }
    }
}

/// A DynamoDB client for `target`.
pub async fn connect(target: &Target) -> Client {
    let config = sdk_config(target).await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&config);
    if let Some(endpoint) = &target.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

/// A DynamoDB Streams client for `target`, which reads the stream a table rebuild replays.
/// DynamoDB Streams has an endpoint of its own on AWS (`streams.dynamodb.<region>…`); DynamoDB
/// Local serves it on the same port as DynamoDB, so a local target's endpoint is used for both.
pub async fn connect_streams(target: &Target) -> aws_sdk_dynamodbstreams::Client {
    let config = sdk_config(target).await;
    let mut builder = aws_sdk_dynamodbstreams::config::Builder::from(&config);
    if let Some(endpoint) = &target.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_dynamodbstreams::Client::from_conf(builder.build())
}

/// An AWS Batch client for `target` (at `endpoint` instead of AWS's, when given), to submit and
/// follow an array job of workers.
#[cfg(feature = "cli")]
pub(crate) async fn connect_batch(target: &Target, endpoint: Option<&str>) -> aws_sdk_batch::Client {
    let config = sdk_config(target).await;
    let mut builder = aws_sdk_batch::config::Builder::from(&config);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_batch::Client::from_conf(builder.build())
}

/// An S3 client for `target` (at `endpoint` instead of AWS's, when given, with path-style
/// addresses as a stand-in on loopback needs), for the files of a rebuild through Export to S3
/// and Import from S3.
#[cfg(feature = "export")]
pub async fn connect_s3(target: &Target, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let config = sdk_config(target).await;
    let mut builder = aws_sdk_s3::config::Builder::from(&config);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// The DynamoDB operations a read-only client sends (see [`read_only`]): descriptions and reads
/// of items, nothing that changes a table, an item, a tag or a backup.
pub const READ_OPERATIONS: [&str; 9] = [
    "BatchGetItem",
    "DescribeContinuousBackups",
    "DescribeTable",
    "DescribeTimeToLive",
    "GetItem",
    "ListTables",
    "ListTagsOfResource",
    "Query",
    "Scan",
];

/// A request a read-only client refused to send.
#[derive(Debug, thiserror::Error)]
#[error(
    "{operation} was refused before it was sent: this client of {target} is read-only and sends only {}",
    READ_OPERATIONS.join(", ")
)]
pub struct WriteRefused {
    /// The operation refused (`PutItem`).
    pub operation: String,
    /// What the client reads, as [`read_only`] was given it (an environment).
    pub target: String,
}

/// The interceptor of a read-only client: it lets through the operations of [`READ_OPERATIONS`]
/// and refuses every other before it is serialised, so it never reaches the network.
#[derive(Debug)]
struct ReadOnly {
    target: String,
}

impl aws_sdk_dynamodb::config::Intercept for ReadOnly {
    fn name(&self) -> &'static str {
        "ReadOnly"
    }

    fn read_before_serialization(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        config: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        // Every operation of the SDK names itself in its configuration; one that did not would
        // be refused too.
        let operation = config.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>().map(|m| m.name());
        match operation {
            Some(operation) if READ_OPERATIONS.contains(&operation) => Ok(()),
            other => Err(Box::new(WriteRefused {
                operation: other.unwrap_or("an operation that does not name itself").to_owned(),
                target: self.target.clone(),
            })),
        }
    }
}

/// The same client, read-only by construction: every request that is not one of
/// [`READ_OPERATIONS`] fails with [`WriteRefused`] before it is sent. `target` names what the
/// client reads (an environment) in that error.
pub fn read_only(client: &Client, target: impl Into<String>) -> Client {
    Client::from_conf(client.config().to_builder().interceptor(ReadOnly { target: target.into() }).build())
}

/// An STS client for `target`, to ask whose credentials these are.
pub async fn connect_sts(target: &Target) -> aws_sdk_sts::Client {
    let config = sdk_config(target).await;
    let mut builder = aws_sdk_sts::config::Builder::from(&config);
    if let Some(endpoint) = &target.sts_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_sts::Client::from_conf(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_client_has_timeouts() {
        let client = connect(&Target::local("http://127.0.0.1:9")).await;
        let timeouts = client.config().timeout_config().expect("timeouts are set");
        assert_eq!(timeouts.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(timeouts.operation_timeout(), Some(OPERATION_TIMEOUT));
        let streams = connect_streams(&Target::local("http://127.0.0.1:9")).await;
        assert_eq!(streams.config().timeout_config().and_then(|t| t.operation_timeout()), Some(OPERATION_TIMEOUT));
    }

    /// Nothing answers on port 9: a request that is let through fails to connect, one that is
    /// refused never tries.
    #[tokio::test]
    async fn a_read_only_client_sends_reads_and_refuses_everything_else_before_sending_it() {
        use aws_sdk_dynamodb::types::AttributeValue;

        let client = read_only(&connect(&Target::local("http://127.0.0.1:9")).await, "environment prod");
        let refused = |e: &dyn std::error::Error| crate::error::error_chain(e).contains("is read-only");
        let scan = client.scan().table_name("t").send().await.unwrap_err();
        assert!(matches!(scan, aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)), "a read is sent: {scan:?}");
        let described = client.describe_table().table_name("t").send().await.unwrap_err();
        assert!(!refused(&described), "{described:?}");

        let item = || std::collections::HashMap::from([("id".to_owned(), AttributeValue::S("1".into()))]);
        // Whether the request was sent (it failed to connect), and the error's whole chain.
        fn seen<E: std::error::Error + 'static, R: std::fmt::Debug>(
            error: aws_sdk_dynamodb::error::SdkError<E, R>,
        ) -> (bool, String) {
            let sent = matches!(error, aws_sdk_dynamodb::error::SdkError::DispatchFailure(_));
            (sent, crate::error::error_chain(&error))
        }
        let writes = [
            seen(client.put_item().table_name("t").set_item(Some(item())).send().await.unwrap_err()),
            seen(client.delete_item().table_name("t").set_key(Some(item())).send().await.unwrap_err()),
            seen(client.update_item().table_name("t").set_key(Some(item())).send().await.unwrap_err()),
            seen(client.delete_table().table_name("t").send().await.unwrap_err()),
            seen(client.create_table().table_name("t").send().await.unwrap_err()),
            seen(client.execute_statement().statement("SELECT * FROM t").send().await.unwrap_err()),
            seen(client.batch_write_item().send().await.unwrap_err()),
            seen(client.transact_write_items().send().await.unwrap_err()),
            seen(client.update_time_to_live().table_name("t").send().await.unwrap_err()),
            seen(client.tag_resource().resource_arn("arn").send().await.unwrap_err()),
        ];
        for (sent, chain) in writes {
            assert!(!sent, "never sent: {chain}");
            assert!(
                chain.contains("was refused before it was sent: this client of environment prod is read-only and sends only BatchGetItem, DescribeContinuousBackups"),
                "{chain}"
            );
        }
        // The engine's data passes make a client without retries from a client's configuration:
        // the interceptor stays.
        let derived = crate::data::without_retries(&client);
        let error = derived.put_item().table_name("t").set_item(Some(item())).send().await.unwrap_err();
        assert!(crate::error::error_chain(&error).contains("PutItem was refused"), "{error:?}");
    }

    #[test]
    fn only_loopback_endpoints_are_local() {
        for local in [
            "http://localhost:8000",
            "http://127.0.0.1:8000/",
            "http://127.8.9.1",
            "http://[::1]:9000",
            "https://LOCALHOST",
        ] {
            assert!(is_local_endpoint(local), "{local}");
        }
        for remote in [
            "https://dynamodb.eu-west-1.amazonaws.com",
            "http://10.0.0.5:8000",
            "http://localhost.example.com:8000",
            "http://user@127.0.0.1.evil.com",
            "localhost:8000",
            "http://[::2]:8000",
        ] {
            assert!(!is_local_endpoint(remote), "{remote}");
        }
    }
}
