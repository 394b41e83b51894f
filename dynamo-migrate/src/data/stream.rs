//! The stream on a rebuilt table's old version: made sure of before the copy starts, so that
//! every write the application makes from then on is there for the replay (see `replay`).
//!
//! The replay needs, for every record, the item's new image (INSERT and MODIFY write the
//! transform of it), and for a REMOVE or a MODIFY that moves the item, the key the item had in the
//! new table: that is the transform of the *old* image whenever the conversion may change the key
//! (a new sort key filled from an attribute, a converted partition key), since the new table's key
//! need not be made of the old table's key attributes. So:
//! - no stream: one is enabled with `NEW_AND_OLD_IMAGES`, the view that serves every rebuild;
//! - `NEW_AND_OLD_IMAGES`: reused;
//! - `NEW_IMAGE`: reused only by a plain copy whose new table has exactly the old key
//!   attributes (a REMOVE's `Keys` are then the new table's key). A conversion, or a changed key
//!   schema, cannot find the key of a deleted item in it, and is refused;
//! - `KEYS_ONLY`, `OLD_IMAGE`: no new image at all, refused.
//!
//! A refused stream is never replaced here: changing a stream's view replaces the stream, and
//! every consumer of the old one (a Lambda trigger, a replication) stops receiving records. That is
//! for the migration to say, in a step of its own that `plan` shows.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::executor::wait_until_active;

/// The stream a rebuild replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceStream {
    pub arn: String,
    /// The stream's records carry the old image (`NEW_AND_OLD_IMAGES`).
    pub old_images: bool,
}

/// Makes sure that `table` has a stream the replay can use, enabling one if it has none.
/// `needs_old_images` is true unless the rebuild copies items unchanged into a table with the
/// same key attributes.
pub(crate) async fn ensure_stream(
    client: &Client,
    table: &str,
    logical: &str,
    needs_old_images: bool,
    timeout: Duration,
) -> Result<SourceStream> {
    if let Some(stream) = current(client, table, logical, needs_old_images).await? {
        return Ok(stream);
    }
    let spec = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()?;
    client
        .update_table()
        .table_name(table)
        .stream_specification(spec)
        .send()
        .await
        .map_err(Error::aws(format!("UpdateTable {table} (enable a stream for the rebuild)")))?;
    wait_until_active(client, table, timeout).await?;
    current(client, table, logical, needs_old_images).await?.ok_or_else(|| Error::Rebuild {
        table: logical.to_owned(),
        reason: format!("{table} has no stream ARN after its stream was enabled"),
    })
}

/// The table's stream, if it has one the replay can use; an unusable one is an error.
async fn current(client: &Client, table: &str, logical: &str, needs_old_images: bool) -> Result<Option<SourceStream>> {
    let out = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(Error::aws(format!("DescribeTable {table} (its stream)")))?;
    let Some(description) = out.table else { return Ok(None) };
    let Some(spec) = description.stream_specification().filter(|s| s.stream_enabled()) else { return Ok(None) };
    let Some(arn) = description.latest_stream_arn() else { return Ok(None) };
    let view = spec.stream_view_type().cloned().unwrap_or(StreamViewType::KeysOnly);
    let refuse = |why: &str| Error::Rebuild {
        table: logical.to_owned(),
        reason: format!(
            "{table} already has a stream with view {}, which {why}. Replacing it would stop its consumers, so the rebuild does not: add a step `.replace_stream(\"{logical}\", StreamView::NewAndOldImages, Destructive::because(\"...\"))` in a migration before the rebuild, once its consumers can move to the new stream (plan shows it), then run `cargo xtask migrate --env <environment>` again",
            view.as_str()
        ),
    };
    match view {
        StreamViewType::NewAndOldImages => Ok(Some(SourceStream { arn: arn.to_owned(), old_images: true })),
        StreamViewType::NewImage if !needs_old_images => {
            Ok(Some(SourceStream { arn: arn.to_owned(), old_images: false }))
        }
        StreamViewType::NewImage => Err(refuse(
            "lacks the old images the replay needs to find the new key of a deleted item (the rebuild converts items or changes the key)",
        )),
        _ => Err(refuse("lacks the new images the replay writes")),
    }
}
