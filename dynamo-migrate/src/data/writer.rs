//! `BatchWriteItem` in 25s: every `UnprocessedItems` retried with exponential backoff and jitter,
//! throttling, 5xx and dropped connections retried, concurrency bounded across the whole pass,
//! and an optional rate limit.

use std::sync::Arc;
use std::time::Duration;

use super::DataError;
use super::concurrency::Concurrency;
use super::fidelity::key_text;
use super::rate::Limiter;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::SdkFailure;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, WriteRequest};

/// BatchWriteItem takes at most 25 requests.
pub(crate) const BATCH: usize = 25;
/// Attempts at one batch (on top of the SDK's own retries) before the step stops.
const MAX_ATTEMPTS: u32 = 15;

/// How the rate limit counts.
#[derive(Debug)]
pub(crate) enum Rate {
    Items(Limiter),
    Capacity(Limiter),
}

/// One item DynamoDB refused, with its key.
#[derive(Debug)]
pub(crate) struct Refused {
    pub request: WriteRequest,
    pub error: String,
}

/// The writers of one pass into one table.
#[derive(Debug)]
pub(crate) struct Writer {
    pub client: Client,
    pub table: String,
    pub keys: Vec<String>,
    pub concurrency: Arc<Concurrency>,
    pub rate: Option<Rate>,
}

impl Writer {
    /// Writes one batch of at most 25 requests until DynamoDB has taken all of them. Items that
    /// DynamoDB refuses as invalid (too large, wrong key type) are returned, each with its error.
    pub(crate) async fn write(&self, batch: Vec<WriteRequest>) -> Result<Vec<Refused>, DataError> {
        let mut pending = batch;
        let mut attempt = 0;
        while !pending.is_empty() {
            let slot = self.concurrency.slot().await;
            let units = pending.len() as f64;
            match &self.rate {
                Some(Rate::Items(limiter) | Rate::Capacity(limiter)) => limiter.take(units).await,
                None => {}
            }
            let sent = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending.clone())
                .return_consumed_capacity(if matches!(self.rate, Some(Rate::Capacity(_))) {
                    ReturnConsumedCapacity::Total
                } else {
                    ReturnConsumedCapacity::None
                })
                .send()
                .await;
            match sent {
                Ok(out) => {
                    if let Some(Rate::Capacity(limiter)) = &self.rate {
                        let used: f64 = out.consumed_capacity().iter().filter_map(|c| c.capacity_units()).sum();
                        limiter.settle(used - units).await;
                    }
                    pending = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                    if pending.is_empty() {
                        self.concurrency.succeeded();
                        break;
                    }
                    // DynamoDB leaves items unprocessed when the table's capacity is exceeded.
                    self.concurrency.throttled();
                }
                Err(e) if is_invalid_request(&e) => {
                    drop(slot);
                    return self.write_one_by_one(pending).await;
                }
                Err(e) if is_retryable(&e) => {
                    if is_throttling(&e) {
                        self.concurrency.throttled();
                    }
                    tracing::debug!(table = %self.table, error = %SdkFailure::of(&e), "retrying a batch");
                }
                Err(e) => {
                    return Err(DataError::Aws {
                        action: format!("BatchWriteItem to table {}", self.table),
                        detail: SdkFailure::of(&e).to_string(),
                    });
                }
            }
            drop(slot);
            attempt += 1;
            if attempt >= MAX_ATTEMPTS {
                return Err(DataError::Unprocessed {
                    table: self.table.clone(),
                    count: pending.len(),
                    attempts: attempt,
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Ok(Vec::new())
    }

    /// A batch that DynamoDB refused as a whole: find which items it refuses by writing them one
    /// at a time, so that the error can name each one.
    async fn write_one_by_one(&self, requests: Vec<WriteRequest>) -> Result<Vec<Refused>, DataError> {
        let mut refused = Vec::new();
        for request in requests {
            let mut attempt = 0;
            loop {
                let result = if let Some(put) = &request.put_request {
                    let sent =
                        self.client.put_item().table_name(&self.table).set_item(Some(put.item.clone())).send().await;
                    sent.map(drop).map_err(|e| classify(&e))
                } else if let Some(delete) = &request.delete_request {
                    let sent = self
                        .client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(delete.key.clone()))
                        .send()
                        .await;
                    sent.map(drop).map_err(|e| classify(&e))
                } else {
                    Ok(())
                };
                match result {
                    Ok(()) => break,
                    Err((true, _)) if attempt < MAX_ATTEMPTS => {
                        attempt += 1;
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Err((_, error)) => {
                        refused.push(Refused { request, error });
                        break;
                    }
                }
            }
        }
        Ok(refused)
    }

    /// The key of a request's item, for messages.
    pub(crate) fn key_of(&self, request: &WriteRequest) -> String {
        let item = request.put_request.as_ref().map(|p| &p.item).or(request.delete_request.as_ref().map(|d| &d.key));
        item.map_or_else(|| "{}".to_owned(), |item| key_text(item, &self.keys))
    }
}

/// Whether an error is worth another try, and what DynamoDB said.
fn classify<E, R>(error: &SdkError<E, R>) -> (bool, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = match error.as_service_error().and_then(|s| s.message()) {
        Some(m) => format!("DynamoDB refused it: {m}"),
        None => SdkFailure::of(error).to_string(),
    };
    (is_retryable(error), message)
}

/// Exponential backoff with full jitter: a random delay up to 50 ms × 2^attempt, at most 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(50).saturating_mul(1 << attempt.min(10)).min(Duration::from_secs(5));
    cap.mul_f64(fastrand::f64())
}

/// Throttling, server errors, time-outs and dropped connections are worth another try.
pub(crate) fn is_retryable<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    match error {
        // A request the migration lock's fence refused to send: the run has lost its lock.
        SdkError::DispatchFailure(failure)
            if failure.as_connector_error().is_some_and(|e| crate::lock::is_fenced(e)) =>
        {
            false
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            matches!(
                code,
                "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "ThrottlingException"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "TransactionInProgressException"
            ) || code.is_empty()
        }
        _ => false,
    }
}

/// DynamoDB says the table (or the account) takes no more writes right now.
pub(crate) fn is_throttling<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(error, SdkError::ServiceError(s) if matches!(
        s.err().code(),
        Some("ProvisionedThroughputExceededException" | "RequestLimitExceeded" | "ThrottlingException")
    ))
}

/// DynamoDB refused the request as invalid: some item in it is (too large, wrong key type…).
fn is_invalid_request<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(error, SdkError::ServiceError(s) if s.err().code() == Some("ValidationException"))
}
