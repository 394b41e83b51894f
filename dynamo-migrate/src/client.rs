//! The one place where DynamoDB clients are built.

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};

/// Where to connect: a region and, for DynamoDB Local or a test endpoint, its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub region: String,
    pub profile: Option<String>,
    pub endpoint: Option<String>,
}

impl Target {
    /// A DynamoDB Local (or other loopback) endpoint.
    pub fn local(endpoint: impl Into<String>) -> Self {
        Target { region: "us-east-1".to_owned(), profile: None, endpoint: Some(endpoint.into()) }
    }

    /// True when the endpoint is on this machine's loopback, so it cannot be a real account.
    pub fn is_local(&self) -> bool {
        self.endpoint.as_deref().is_some_and(is_local_endpoint)
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

/// A DynamoDB client for `target`. Credentials come from aws-config's standard chain, except for
/// local endpoints, which accept any key and get a fixed test one.
pub async fn connect(target: &Target) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(target.region.clone()));
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &target.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if target.is_local() {
        loader = loader.credentials_provider(Credentials::new("local", "local", None, None, "dynamo-migrate-local"));
    }
    Client::new(&loader.load().await)
}

#[cfg(test)]
mod tests {
    use super::is_local_endpoint;

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
