//! Conversions between the table model and the AWS SDK's request and response types.

use aws_sdk_dynamodb::types as sdk;
use dynamo_model::{
    Billing, GlobalIndex, KeyAttr, KeyType, LocalIndex, Projection, StreamView, TableClass, Throughput,
};

use crate::error::Result;

pub(crate) fn key_schema(partition: &KeyAttr, sort: Option<&KeyAttr>) -> Result<Vec<sdk::KeySchemaElement>> {
    let mut out =
        vec![sdk::KeySchemaElement::builder().attribute_name(&partition.name).key_type(sdk::KeyType::Hash).build()?];
    if let Some(sort) = sort {
        out.push(sdk::KeySchemaElement::builder().attribute_name(&sort.name).key_type(sdk::KeyType::Range).build()?);
    }
    Ok(out)
}

pub(crate) fn attribute_definitions(attrs: &[KeyAttr]) -> Result<Vec<sdk::AttributeDefinition>> {
    attrs
        .iter()
        .map(|a| {
            let ty = match a.ty {
                KeyType::S => sdk::ScalarAttributeType::S,
                KeyType::N => sdk::ScalarAttributeType::N,
                KeyType::B => sdk::ScalarAttributeType::B,
            };
            Ok(sdk::AttributeDefinition::builder().attribute_name(&a.name).attribute_type(ty).build()?)
        })
        .collect()
}

pub(crate) fn projection(p: &Projection) -> sdk::Projection {
    match p {
        Projection::All => sdk::Projection::builder().projection_type(sdk::ProjectionType::All).build(),
        Projection::KeysOnly => sdk::Projection::builder().projection_type(sdk::ProjectionType::KeysOnly).build(),
        Projection::Include(attrs) => sdk::Projection::builder()
            .projection_type(sdk::ProjectionType::Include)
            .set_non_key_attributes(Some(attrs.clone()))
            .build(),
    }
}

pub(crate) fn throughput(t: Throughput) -> Result<sdk::ProvisionedThroughput> {
    Ok(sdk::ProvisionedThroughput::builder().read_capacity_units(t.read).write_capacity_units(t.write).build()?)
}

pub(crate) fn global_index(g: &GlobalIndex) -> Result<sdk::GlobalSecondaryIndex> {
    Ok(sdk::GlobalSecondaryIndex::builder()
        .index_name(&g.name)
        .set_key_schema(Some(key_schema(&g.partition_key, g.sort_key.as_ref())?))
        .projection(projection(&g.projection))
        .set_provisioned_throughput(g.throughput.map(throughput).transpose()?)
        .build()?)
}

pub(crate) fn create_global_index(g: &GlobalIndex) -> Result<sdk::CreateGlobalSecondaryIndexAction> {
    Ok(sdk::CreateGlobalSecondaryIndexAction::builder()
        .index_name(&g.name)
        .set_key_schema(Some(key_schema(&g.partition_key, g.sort_key.as_ref())?))
        .projection(projection(&g.projection))
        .set_provisioned_throughput(g.throughput.map(throughput).transpose()?)
        .build()?)
}

pub(crate) fn local_index(l: &LocalIndex, partition: &KeyAttr) -> Result<sdk::LocalSecondaryIndex> {
    Ok(sdk::LocalSecondaryIndex::builder()
        .index_name(&l.name)
        .set_key_schema(Some(key_schema(partition, Some(&l.sort_key))?))
        .projection(projection(&l.projection))
        .build()?)
}

pub(crate) fn billing_mode(b: &Billing) -> sdk::BillingMode {
    match b {
        Billing::PayPerRequest => sdk::BillingMode::PayPerRequest,
        Billing::Provisioned(_) => sdk::BillingMode::Provisioned,
    }
}

pub(crate) fn stream_view(v: StreamView) -> sdk::StreamViewType {
    match v {
        StreamView::KeysOnly => sdk::StreamViewType::KeysOnly,
        StreamView::NewImage => sdk::StreamViewType::NewImage,
        StreamView::OldImage => sdk::StreamViewType::OldImage,
        StreamView::NewAndOldImages => sdk::StreamViewType::NewAndOldImages,
    }
}

pub(crate) fn table_class(c: TableClass) -> sdk::TableClass {
    match c {
        TableClass::Standard => sdk::TableClass::Standard,
        TableClass::StandardInfrequentAccess => sdk::TableClass::StandardInfrequentAccess,
    }
}

// From the SDK back into the model.

pub(crate) fn key_type_from(t: &sdk::ScalarAttributeType) -> Option<KeyType> {
    match t {
        sdk::ScalarAttributeType::S => Some(KeyType::S),
        sdk::ScalarAttributeType::N => Some(KeyType::N),
        sdk::ScalarAttributeType::B => Some(KeyType::B),
        _ => None,
    }
}

pub(crate) fn projection_from(p: Option<&sdk::Projection>) -> Projection {
    match p.and_then(|p| p.projection_type()) {
        Some(sdk::ProjectionType::KeysOnly) => Projection::KeysOnly,
        Some(sdk::ProjectionType::Include) => {
            Projection::Include(p.map(|p| p.non_key_attributes().to_vec()).unwrap_or_default())
        }
        _ => Projection::All,
    }
}

pub(crate) fn stream_view_from(v: &sdk::StreamViewType) -> Option<StreamView> {
    match v {
        sdk::StreamViewType::KeysOnly => Some(StreamView::KeysOnly),
        sdk::StreamViewType::NewImage => Some(StreamView::NewImage),
        sdk::StreamViewType::OldImage => Some(StreamView::OldImage),
        sdk::StreamViewType::NewAndOldImages => Some(StreamView::NewAndOldImages),
        _ => None,
    }
}

pub(crate) fn table_class_from(c: Option<&sdk::TableClass>) -> TableClass {
    match c {
        Some(sdk::TableClass::StandardInfrequentAccess) => TableClass::StandardInfrequentAccess,
        _ => TableClass::Standard,
    }
}
