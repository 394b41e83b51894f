use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ScalarAttributeType};
use proptest::prelude::*;

use super::*;
use crate::data::fidelity::key_of;
use crate::data::rebuild::export::fixture::{DirStore, ExportFixture, Moto, TempDir, canonical, write_objects};
use crate::data::rebuild::export::json::Record;
use crate::data::{Change, Item, Mapped, ReplayStore};
use crate::ledger::Ledger;
use crate::names::TableNames;

const HOUR: u64 = 3_600_000;

#[test]
fn no_window_while_the_stream_still_holds_the_gap_with_hours_to_spare() {
    let export = 1_765_000_000_000;
    assert_eq!(next_window(export, export), None);
    assert_eq!(next_window(export, export + 12 * HOUR), None);
    assert_eq!(next_window(export, export + 12 * HOUR + 1), Some((export, export + 12 * HOUR + 1 - 10 * 60_000)));
    // Thirty hours after the export: a day, then the rest once the first is applied.
    let now = export + 30 * HOUR;
    assert_eq!(next_window(export, now), Some((export, export + 24 * HOUR)));
    assert_eq!(next_window(export + 24 * HOUR, now), None, "six hours are the stream's");
}

proptest! {
    /// Whatever the gap, the windows are contiguous from the export time, each within AWS's
    /// limits (15 minutes to 24 hours, ending before now), and they leave the stream at most
    /// `BRIDGE_AFTER` to replay.
    #[test]
    fn windows_are_contiguous_within_aws_limits_and_leave_the_stream_hours_to_spare(
        export in 1_600_000_000_000u64..1_900_000_000_000,
        gap_min in 0u64..(10 * 24 * 60),
    ) {
        let now = export + gap_min * 60_000;
        let mut covered = export;
        let mut windows = 0;
        while let Some((from, to)) = next_window(covered, now) {
            prop_assert_eq!(from, covered);
            prop_assert!(to - from >= WINDOW_MIN.as_millis() as u64, "{} ms", to - from);
            prop_assert!(to - from <= WINDOW_MAX.as_millis() as u64, "{} ms", to - from);
            prop_assert!(to <= now - WINDOW_LAG.as_millis() as u64);
            covered = to;
            windows += 1;
            prop_assert!(windows <= 11);
        }
        prop_assert!(now - covered <= BRIDGE_AFTER.as_millis() as u64);
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

/// An item of the old table: keyed by `pk`, held by `owner`.
fn thing(pk: &str, owner: &str, n: u32) -> Item {
    Item::from([
        ("pk".to_owned(), s(pk)),
        ("owner".to_owned(), s(owner)),
        ("n".to_owned(), AttributeValue::N(n.to_string())),
    ])
}

fn keys(pk: &str) -> Item {
    Item::from([("pk".to_owned(), s(pk))])
}

/// The rebuild's transform: the new table is keyed by `owner` and `pk`, so a change of owner
/// moves the item to another key; an owner named "refused" fails it.
fn by_owner(mut item: Item) -> std::result::Result<Mapped, String> {
    if item.get("owner") == Some(&s("refused")) {
        return Err("no such owner".to_owned());
    }
    item.insert("moved".to_owned(), AttributeValue::Bool(true));
    Ok(Mapped { change: Change::Put(item), seen: None, not_held: vec![], absent: vec![] })
}

fn transformed(items: &[Item]) -> Vec<String> {
    transformed_by(items, by_owner)
}

/// The canonical dump of what `map` puts for `items`.
fn transformed_by(items: &[Item], map: fn(Item) -> std::result::Result<Mapped, String>) -> Vec<String> {
    let items: Vec<Item> = items
        .iter()
        .map(|i| match map(i.clone()).unwrap().change {
            Change::Put(item) => item,
            other => panic!("{other:?}"),
        })
        .collect();
    canonical(&items)
}

async fn new_table(client: &Client, name: &str) {
    let attribute = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(attribute("owner"))
        .attribute_definitions(attribute("pk"))
        .key_schema(key("owner", KeyType::Hash))
        .key_schema(key("pk", KeyType::Range))
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

async fn scan(client: &Client, table: &str) -> Vec<Item> {
    let mut items = client.scan().table_name(table).into_paginator().items().send();
    let mut all = Vec::new();
    while let Some(item) = items.next().await {
        all.push(item.unwrap());
    }
    all
}

struct Setup {
    _moto: Moto,
    client: Client,
    replay: Replay,
}

async fn setup(test: &str, map: fn(Item) -> std::result::Result<Mapped, String>) -> Option<Setup> {
    let moto = Moto::start()?;
    let client = moto.dynamodb().await;
    let ledger = Ledger::new(client.clone(), &TableNames::new(format!("{test}_")));
    ledger.ensure().await.unwrap();
    let target = format!("{test}_new");
    new_table(&client, &target).await;
    let store = ReplayStore::open(ledger, 7, 0, &target).await.unwrap();
    let replay = Replay {
        dynamo: client.clone(),
        streams: moto.streams().await,
        source: format!("{test}_old"),
        source_keys: vec!["pk".into()],
        target,
        target_keys: vec!["owner".into(), "pk".into()],
        stream_arn: "(no stream: the bridge applies exports)".into(),
        map: Arc::new(map),
        keys_carry_over: false,
        drop_unknown_attributes: false,
        store,
        cancel: tokio::sync::watch::channel(false).1,
        writers: 4,
        progress: false,
        dead_letters: None,
        coarse_times: false,
        now: crate::data::now_ms,
    };
    Some(Setup { _moto: moto, client, replay })
}

/// An incremental export of `records` in AWS's layout, spread over three files (one empty), as a
/// folder that a store reads like the bucket.
async fn incremental(name: &str, records: Vec<Record>) -> (TempDir, DirStore, ExportFiles, String) {
    let third = records.len().div_ceil(2);
    let fixture =
        ExportFixture::incremental("bridge", vec![records[..third].to_vec(), vec![], records[third..].to_vec()]);
    let dir = TempDir::new(name);
    write_objects(&dir.0, &fixture.objects().await);
    let store = DirStore { root: dir.0.clone() };
    let export = export_files(&store, "bridge", &fixture.export_arn()).await.unwrap();
    assert!(export.is_incremental());
    (dir, store, export, fixture.export_arn())
}

fn record(before: Option<Item>, after: Option<Item>, pk: &str) -> Record {
    Record { write_micros: Some(1_765_092_514_000_000), keys: keys(pk), new_image: after, old_image: before }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_exports_applied_in_order_leave_the_transform_of_the_old_table_at_their_end() {
    let Some(setup) = setup("bridged", by_owner).await else {
        eprintln!("moto_server is not installed: the bridge is not tested against it");
        return;
    };
    // The old table at the export time, and the new one as the import left it.
    let at_export: Vec<Item> = (0..6).map(|i| thing(&format!("t{i}"), "ann", i)).collect();
    for item in &at_export {
        let Change::Put(new) = by_owner(item.clone()).unwrap().change else { unreachable!() };
        setup.client.put_item().table_name(&setup.replay.target).set_item(Some(new)).send().await.unwrap();
    }

    // The first day: t0 updated, t1 moved to another owner (another key in the new table), t2
    // deleted, t9 inserted, t8 inserted and deleted again within the day (keys only).
    let day1 = vec![
        record(Some(thing("t0", "ann", 0)), Some(thing("t0", "ann", 100)), "t0"),
        record(Some(thing("t1", "ann", 1)), Some(thing("t1", "bob", 101)), "t1"),
        record(Some(thing("t2", "ann", 2)), None, "t2"),
        record(None, Some(thing("t9", "cy", 9)), "t9"),
        record(None, None, "t8"),
    ];
    // The next hours: t1 moved again, t9 deleted, t3 moved, t2 back.
    let day2 = vec![
        record(Some(thing("t1", "bob", 101)), Some(thing("t1", "cy", 201)), "t1"),
        record(Some(thing("t9", "cy", 9)), None, "t9"),
        record(Some(thing("t3", "ann", 3)), Some(thing("t3", "bob", 203)), "t3"),
        record(None, Some(thing("t2", "ann", 202)), "t2"),
    ];
    let at_end = vec![
        thing("t0", "ann", 100),
        thing("t1", "cy", 201),
        thing("t2", "ann", 202),
        thing("t3", "bob", 203),
        thing("t4", "ann", 4),
        thing("t5", "ann", 5),
    ];
    let (_d1, store1, export1, arn1) = incremental("bridge-day1", day1).await;
    let (_d2, store2, export2, arn2) = incremental("bridge-day2", day2).await;

    let first = apply_incremental(&store1, &export1, &setup.replay, &arn1).await.unwrap();
    assert_eq!(first, Applied { records: 5, puts: 3, deletes: 2, failed: 0 });
    let second = apply_incremental(&store2, &export2, &setup.replay, &arn2).await.unwrap();
    assert_eq!(second.records, 4);
    assert_eq!(canonical(&scan(&setup.client, &setup.replay.target).await), transformed(&at_end));

    // A window applied again (a run killed before its checkpoint) changes nothing.
    apply_incremental(&store2, &export2, &setup.replay, &arn2).await.unwrap();
    assert_eq!(canonical(&scan(&setup.client, &setup.replay.target).await), transformed(&at_end));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_record_the_transform_refuses_stops_the_bridge_naming_its_key_and_file() {
    let Some(setup) = setup("refused", by_owner).await else {
        eprintln!("moto_server is not installed: the bridge is not tested against it");
        return;
    };
    let records =
        vec![record(None, Some(thing("t1", "ann", 1)), "t1"), record(None, Some(thing("t2", "refused", 2)), "t2")];
    let (_dir, store, export, arn) = incremental("bridge-refused", records).await;
    let error = apply_incremental(&store, &export, &setup.replay, &arn).await.unwrap_err().to_string();
    assert!(error.contains("t2") && error.contains("no such owner"), "{error}");
    assert!(error.contains(&arn) && error.contains(".json.gz"), "names the export and its file: {error}");
}

#[tokio::test]
async fn an_item_in_an_incremental_exports_file_is_refused_naming_the_file() {
    let mut fixture = ExportFixture::incremental("bridge", vec![vec![record(None, Some(thing("t1", "ann", 1)), "t1")]]);
    fixture.files[0].push(crate::data::rebuild::export::fixture::FixtureLine::Item(thing("t2", "ann", 2)));
    let dir = TempDir::new("bridge-item");
    write_objects(&dir.0, &fixture.objects().await);
    let store = DirStore { root: dir.0.clone() };
    let export = export_files(&store, "bridge", &fixture.export_arn()).await.unwrap();
    let Some(setup) = setup("item", by_owner).await else {
        eprintln!("moto_server is not installed: the bridge is not tested against it");
        return;
    };
    let error = apply_incremental(&store, &export, &setup.replay, &fixture.export_arn()).await.unwrap_err().to_string();
    assert!(error.contains(&fixture.data_key(0)) && error.contains("an item in an incremental export"), "{error}");
}

/// The transform of a table of seats: the new table is keyed by the seat an item holds (owner
/// "seats", pk the seat), so that the key one item leaves can be taken by another.
fn by_seat(item: Item) -> std::result::Result<Mapped, String> {
    let new = Item::from([
        ("owner".to_owned(), s("seats")),
        ("pk".to_owned(), item["seat"].clone()),
        ("who".to_owned(), item["pk"].clone()),
    ]);
    Ok(Mapped { change: Change::Put(new), seen: None, not_held: vec![], absent: vec![] })
}

fn seated(pk: &str, seat: &str) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("seat".to_owned(), s(seat))])
}

/// An incremental export holds each item once, in no order of time: a key one item left and
/// another took within the window (x leaves seat 1 for seat 2, y takes seat 1) ends with the one
/// that took it, whichever of the two records comes first, and on whichever page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_one_item_leaves_and_another_takes_within_a_window_ends_with_the_one_that_took_it() {
    let Some(setup) = setup("seats", by_seat).await else {
        eprintln!("moto_server is not installed: the bridge is not tested against it");
        return;
    };
    let at_export = [seated("x", "1"), seated("y", "3"), seated("z", "5")];
    let at_end = [seated("x", "2"), seated("y", "1"), seated("z", "5")];
    // y's record before x's, then x's before y's; and y and x 1,500 records apart (on two pages).
    let filler = |n: usize| (0..n).map(|i| record(None, Some(seated(&format!("f{i}"), &format!("f{i}"))), "f"));
    let orders: [(&str, Vec<Record>); 3] = [
        (
            "y-first",
            vec![
                record(Some(seated("y", "3")), Some(seated("y", "1")), "y"),
                record(Some(seated("x", "1")), Some(seated("x", "2")), "x"),
            ],
        ),
        (
            "x-first",
            vec![
                record(Some(seated("x", "1")), Some(seated("x", "2")), "x"),
                record(Some(seated("y", "3")), Some(seated("y", "1")), "y"),
            ],
        ),
        (
            "pages-apart",
            std::iter::once(record(Some(seated("y", "3")), Some(seated("y", "1")), "y"))
                .chain(filler(1_500))
                .chain(std::iter::once(record(Some(seated("x", "1")), Some(seated("x", "2")), "x")))
                .collect(),
        ),
    ];
    for (name, records) in orders {
        for item in scan(&setup.client, &setup.replay.target).await {
            let key = key_of(&item, &["owner".to_owned(), "pk".to_owned()]);
            setup.client.delete_item().table_name(&setup.replay.target).set_key(Some(key)).send().await.unwrap();
        }
        for item in &at_export {
            let Change::Put(new) = by_seat(item.clone()).unwrap().change else { unreachable!() };
            setup.client.put_item().table_name(&setup.replay.target).set_item(Some(new)).send().await.unwrap();
        }
        let fillers = records.len() - 2;
        let (_dir, store, export, arn) = incremental(&format!("bridge-seats-{name}"), records).await;
        apply_incremental(&store, &export, &setup.replay, &arn).await.unwrap();
        let seats: Vec<Item> = scan(&setup.client, &setup.replay.target)
            .await
            .into_iter()
            .filter(|i| !i["pk"].as_s().unwrap().starts_with('f'))
            .collect();
        assert_eq!(canonical(&seats), transformed_by(&at_end, by_seat), "{name}");
        assert_eq!(scan(&setup.client, &setup.replay.target).await.len(), 3 + fillers, "{name}");
    }
}
