//! An export's objects in its S3 bucket, for the reader: `GetObject`'s body streamed as it
//! arrives, and `ListObjectsV2` for the exports that wrote no manifest. Every request names the
//! bucket's expected owner, and every object written its KMS key, when the environment gives them.

use std::io;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::ServerSideEncryption;

use super::reader::{ExportStore, ObjectReader};

/// The objects of one bucket.
#[derive(Debug, Clone)]
pub(crate) struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// The account every request expects to own the bucket (`ExpectedBucketOwner`): S3 refuses
    /// the request when another does.
    owner: Option<String>,
    /// The KMS key every object written is encrypted with (SSE-KMS).
    kms_key: Option<String>,
}

impl S3Store {
    /// The objects of `bucket`, read with `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Store { client, bucket: bucket.into(), owner: None, kms_key: None }
    }

    /// Every request expects `owner` (an account id) to own the bucket.
    pub fn expected_owner(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }

    /// Every object written is encrypted with the KMS key `kms_key` (its ARN).
    pub fn encrypted_by(mut self, kms_key: Option<String>) -> Self {
        self.kms_key = kms_key;
        self
    }

    fn failure(&self, key: &str, error: impl std::error::Error) -> io::Error {
        io::Error::other(format!("s3://{}/{key}: {}", self.bucket, DisplayErrorContext(error)))
    }
}

impl ExportStore for S3Store {
    async fn open(&self, key: &str) -> io::Result<Option<ObjectReader>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
        {
            Ok(object) => Ok(Some(Box::pin(object.body.into_async_read()))),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.failure(key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_expected_bucket_owner(self.owner.clone())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.failure(prefix, e))?;
            keys.extend(page.contents().iter().filter_map(|object| object.key().map(str::to_owned)));
        }
        Ok(keys)
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_expected_bucket_owner(self.owner.clone())
            .set_server_side_encryption(self.kms_key.as_ref().map(|_| ServerSideEncryption::AwsKms))
            .set_ssekms_key_id(self.kms_key.clone())
            .body(bytes.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.failure(key, e))
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_expected_bucket_owner(self.owner.clone())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.failure(key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rebuild::export::fixture::{Moto, canonical, full_fixture, read_all};
    use crate::data::rebuild::export::json::Line;
    use crate::data::rebuild::export::reader::export_files;

    #[tokio::test]
    async fn an_export_uploaded_to_moto_reads_back_through_the_s3_client() {
        let Some(moto) = Moto::start() else {
            eprintln!("moto_server is not installed: the S3 round trip is not tested");
            return;
        };
        let client = moto.client();
        client.create_bucket().bucket("fixture-exports").send().await.unwrap();
        let (fixture, items) = full_fixture("exports/rebuild-7");
        let (moto_fixture, _) = full_fixture("exports/moto");
        for (key, bytes) in fixture.objects().await.into_iter().chain(moto_fixture.moto_objects().await) {
            client.put_object().bucket("fixture-exports").key(key).body(bytes.into()).send().await.unwrap();
        }
        let store = S3Store::new(client, "fixture-exports");

        for (prefix, arn) in [("exports/rebuild-7", fixture.export_arn()), ("exports/moto", moto_fixture.export_arn())]
        {
            let export = export_files(&store, prefix, &arn).await.unwrap();
            assert_eq!(export.summary.is_some(), prefix == "exports/rebuild-7");
            let read: Vec<_> = read_all(&store, &export)
                .await
                .unwrap()
                .into_iter()
                .map(|line| match line {
                    Line::Item(item) => item,
                    Line::Record(record) => panic!("a record in a full export: {record:?}"),
                })
                .collect();
            assert_eq!(canonical(&read), canonical(&items), "{prefix}");
        }
        assert!(store.open("exports/none/manifest-summary.json").await.unwrap().is_none());
        drop(moto);
    }
}
