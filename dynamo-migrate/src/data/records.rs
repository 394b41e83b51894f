//! Reading a stream's records as they come over the wire.
//!
//! DynamoDB Local (3.3.0) sends an empty map inside a stream record's image as `{}` instead of
//! `{"M":{}}` (a scan of the same item says `{"M":{}}`), at any depth: an attribute, a member of a
//! map, an element of a list. The SDK cannot read `{}` as an attribute value, so the whole page
//! fails ("Union did not contain a valid variant") and names no record. Every `GetRecords` of a
//! replay therefore goes through [`MendRecords`], which turns such values into empty maps before
//! the SDK reads the page. Real AWS sends `{"M":{}}`: its pages pass unchanged, and are not even
//! parsed here unless their text holds `{}` somewhere (inside a string, say).
//!
//! A page that still cannot be read is read again with [`MendRecords::diagnose`], which checks
//! every attribute value of every record and fails on the first that is not one, naming the
//! record's sequence number, its keys and the attribute's path ([`UnreadableRecord`]): the replay
//! then stops there, saying which record, instead of failing on the page as a whole.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_sdk_dynamodbstreams::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_dynamodbstreams::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame};
use serde_json::{Map, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The SDK interceptor of a `GetRecords` call: mends DynamoDB Local's empty maps, and with
/// `diagnose`, names the first attribute value of the page that is not one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MendRecords {
    diagnose: bool,
}

impl MendRecords {
    /// Checks every attribute value of the page, failing on the first that is not one.
    pub(crate) fn diagnose() -> MendRecords {
        MendRecords { diagnose: true }
    }
}

impl Intercept for MendRecords {
    fn name(&self) -> &'static str {
        "MendRecords"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.response_mut().take_body();
        let mended = Mended { inner: body, read: Vec::new(), diagnose: self.diagnose, done: false };
        *context.response_mut().body_mut() = SdkBody::from_body_1_x(mended);
        Ok(())
    }
}

/// A record whose image holds a value that is no DynamoDB attribute value.
#[derive(Debug, thiserror::Error)]
#[error(
    "record {sequence} (keys {keys}): {image} attribute {path} is {value}, which is not a DynamoDB attribute value ({reason})"
)]
pub(crate) struct UnreadableRecord {
    pub sequence: String,
    /// The record's keys, as DynamoDB JSON.
    pub keys: String,
    /// `NewImage`, `OldImage` or `Keys`.
    pub image: &'static str,
    pub path: String,
    pub value: String,
    pub reason: String,
}

impl UnreadableRecord {
    /// The unreadable record an SDK error was caused by, if any.
    pub(crate) fn in_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a UnreadableRecord> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(found) = e.downcast_ref::<UnreadableRecord>() {
                return Some(found);
            }
            cause = e.source();
        }
        None
    }
}

/// The response body, read whole and mended before the SDK sees it. A page is at most 1 MB.
struct Mended {
    inner: SdkBody,
    read: Vec<u8>,
    diagnose: bool,
    done: bool,
}

impl Body for Mended {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.read.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.done = true;
                    let page = std::mem::take(&mut this.read);
                    return Poll::Ready(Some(mend(page, this.diagnose).map(|page| Frame::data(Bytes::from(page)))));
                }
            }
        }
    }
}

/// The page with every `{}` attribute value turned into `{"M":{}}`; with `diagnose`, an error
/// for the first value that is still no attribute value.
fn mend(page: Vec<u8>, diagnose: bool) -> Result<Vec<u8>, BoxError> {
    if !diagnose && !page.windows(2).any(|w| w == b"{}") {
        return Ok(page);
    }
    // An answer that is not JSON (an error page) is the SDK's to report.
    let Ok(mut parsed) = serde_json::from_slice::<Value>(&page) else { return Ok(page) };
    let mut changed = false;
    let records = parsed.get_mut("Records").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
    let mut mended = Vec::with_capacity(records.len());
    for mut record in records {
        if let Some(Value::Object(stream)) = record.get_mut("dynamodb") {
            for image in ["Keys", "NewImage", "OldImage"] {
                if let Some(Value::Object(attributes)) = stream.get_mut(image) {
                    for value in attributes.values_mut() {
                        changed |= mend_value(value);
                    }
                }
            }
            if diagnose {
                check_record(stream).map_err(|e| e as BoxError)?;
            }
        }
        mended.push(record);
    }
    if !changed {
        return Ok(page);
    }
    parsed["Records"] = Value::Array(mended);
    Ok(serde_json::to_vec(&parsed)?)
}

/// Turns `{}` into `{"M":{}}` in `value` and every member and element inside it.
fn mend_value(value: &mut Value) -> bool {
    let Value::Object(typed) = value else { return false };
    if typed.is_empty() {
        *value = serde_json::json!({ "M": {} });
        return true;
    }
    let mut changed = false;
    if let Some(Value::Object(members)) = typed.get_mut("M") {
        for member in members.values_mut() {
            changed |= mend_value(member);
        }
    }
    if let Some(Value::Array(elements)) = typed.get_mut("L") {
        for element in elements {
            changed |= mend_value(element);
        }
    }
    changed
}

fn check_record(stream: &Map<String, Value>) -> Result<(), Box<UnreadableRecord>> {
    let sequence = stream.get("SequenceNumber").and_then(Value::as_str).unwrap_or("(without a sequence number)");
    let keys = stream.get("Keys").map_or_else(|| "(none)".to_owned(), Value::to_string);
    for image in ["Keys", "NewImage", "OldImage"] {
        let Some(Value::Object(attributes)) = stream.get(image) else { continue };
        for (name, value) in attributes {
            if let Err((path, value, reason)) = check_value(&quoted(name), value) {
                return Err(Box::new(UnreadableRecord {
                    sequence: sequence.to_owned(),
                    keys,
                    image,
                    path,
                    value: shorten(&value.to_string()),
                    reason,
                }));
            }
        }
    }
    Ok(())
}

/// Whether `value` is a DynamoDB attribute value, at any depth: one of `S`, `N`, `B`, `SS`, `NS`,
/// `BS`, `M`, `L`, `BOOL`, `NULL`, with a value of its shape.
fn check_value<'a>(path: &str, value: &'a Value) -> Result<(), (String, &'a Value, String)> {
    let fail = |reason: &str| Err((path.to_owned(), value, reason.to_owned()));
    let Value::Object(typed) = value else { return fail("not an object") };
    let mut entries = typed.iter();
    let (Some((kind, inner)), None) = (entries.next(), entries.next()) else {
        return fail("an attribute value holds exactly one type");
    };
    let strings = |inner: &Value| inner.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    match kind.as_str() {
        "S" | "N" | "B" if inner.is_string() => Ok(()),
        "SS" | "NS" | "BS" if strings(inner) => Ok(()),
        "BOOL" | "NULL" if inner.is_boolean() => Ok(()),
        "M" => match inner {
            Value::Object(members) => {
                members.iter().try_for_each(|(name, member)| check_value(&format!("{path}.{}", quoted(name)), member))
            }
            _ => fail("M holds an object"),
        },
        "L" => match inner {
            Value::Array(elements) => {
                elements.iter().enumerate().try_for_each(|(i, element)| check_value(&format!("{path}[{i}]"), element))
            }
            _ => fail("L holds an array"),
        },
        "S" | "N" | "B" | "SS" | "NS" | "BS" | "BOOL" | "NULL" => {
            fail(&format!("{kind} holds a value of another shape"))
        }
        other => fail(&format!("{other:?} is no DynamoDB type")),
    }
}

/// An attribute name as a path segment: as it is when plain, quoted (control characters
/// escaped) when it holds anything that would make the path ambiguous.
fn quoted(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 120 {
        return text.to_owned();
    }
    format!("{}…", text.chars().take(120).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(new_image: &str) -> Vec<u8> {
        format!(
            r#"{{"Records":[{{"eventName":"INSERT","dynamodb":{{"Keys":{{"id":{{"S":"a"}}}},"NewImage":{new_image},"SequenceNumber":"000000000000000000007"}}}}],"NextShardIterator":"it"}}"#
        )
        .into_bytes()
    }

    fn image(page: &[u8]) -> Value {
        let parsed: Value = serde_json::from_slice(page).unwrap();
        parsed["Records"][0]["dynamodb"]["NewImage"].clone()
    }

    #[test]
    fn empty_maps_at_any_depth_become_maps_and_the_rest_stays_as_it_was() {
        // As DynamoDB Local 3.3.0 sends it (a scan of the item gives `{"M":{}}` everywhere).
        let local =
            page(r#"{"id":{"S":"a"},"m":{},"l":{"L":[{},{"L":[]}]},"nested":{"M":{"inner":{},"s":{"S":"{}"}}}}"#);
        let mended = image(&mend(local, false).unwrap());
        let want: Value = serde_json::from_str(
            r#"{"id":{"S":"a"},"m":{"M":{}},"l":{"L":[{"M":{}},{"L":[]}]},"nested":{"M":{"inner":{"M":{}},"s":{"S":"{}"}}}}"#,
        )
        .unwrap();
        assert_eq!(mended, want);
    }

    #[test]
    fn a_page_as_aws_sends_it_passes_byte_for_byte() {
        let aws = page(r#"{"id":{"S":"a"},"m":{"M":{}},"s":{"S":"{}"}}"#);
        assert_eq!(mend(aws.clone(), false).unwrap(), aws);
        let plain = page(r#"{"id":{"S":"a"}}"#);
        assert_eq!(mend(plain.clone(), true).unwrap(), plain);
    }

    #[test]
    fn diagnosing_names_the_record_the_image_and_the_path_of_a_value_that_is_none() {
        let bad = page(r#"{"id":{"S":"a"},"prefs":{"M":{"odd.name":{"L":[{"S":"x"},{"X":"?"}]}}}}"#);
        let error = mend(bad, true).unwrap_err().to_string();
        assert_eq!(
            error,
            r#"record 000000000000000000007 (keys {"id":{"S":"a"}}): NewImage attribute prefs."odd.name"[1] is {"X":"?"}, which is not a DynamoDB attribute value ("X" is no DynamoDB type)"#
        );
        let two_types = page(r#"{"id":{"S":"a","N":"1"}}"#);
        assert!(mend(two_types, true).unwrap_err().to_string().contains("holds exactly one type"));
    }
}
