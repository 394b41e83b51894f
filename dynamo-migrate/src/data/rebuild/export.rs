//! A rebuild through DynamoDB's Export to S3 and Import from S3 (`RebuildStep::via_export`): the
//! export's files read as DynamoDB writes them, and the files ImportTable reads written.

pub(crate) mod bridge;
#[cfg(test)]
pub(crate) mod fixture;
pub(crate) mod json;
pub(crate) mod path;
pub(crate) mod reader;
pub(crate) mod s3;
