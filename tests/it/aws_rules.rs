//! AWS's control-plane rules that DynamoDB Local does not enforce, against the rules proxy
//! (`rules_proxy`), which refuses what AWS refuses: each rule is reported by `plan` and by
//! `migrate`'s pre-flight before anything is written (the table as it was, no ledger record),
//! or avoided; the proxy's own tests show it refusing the naive call sequences.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveSpecification};
use dynamo_migrate::run::{AppliedMigration, Ledger, Migrator, Status, TableNames};
use dynamo_migrate::schema_steps::{AwsRule as Rule, Pending, PlannedStep, Refusal, describe, preview};
use dynamo_migrate::{
    Billing, Destructive, Error, GlobalIndex, KeyAttr, Migration, Projection, StreamView, TableClass, TableDef,
    Throughput,
};

use crate::rules_proxy::{RulesProxy, client_of};
use crate::support;

/// A migrator, its ledger and the table names of one test, all behind a rules proxy.
struct Setup {
    proxy: RulesProxy,
    client: Client,
    names: TableNames,
    migrator: Migrator,
    ledger: Ledger,
}

async fn setup(test: &str) -> Setup {
    let proxy = RulesProxy::start(support::rules_endpoint()).await;
    let client = client_of(&proxy).await;
    let names = support::names(test);
    let migrator = Migrator::new(client.clone(), names.clone(), true, "test").with_environment("prod");
    let ledger = migrator.ledger();
    Setup { proxy, client, names, migrator, ledger }
}

impl Setup {
    /// Deletes the test's tables: on DynamoDB Local, each table with TTL on holds a thread
    /// (see `support::rules_endpoint`).
    async fn end(self) {
        support::delete_tables(&support::rules_client().await, &self.names).await;
    }

    fn physical(&self) -> String {
        self.names.physical("customers")
    }

    /// What can be seen of the table: its definition as read back, and its TTL status.
    async fn table(&self) -> String {
        let physical = self.physical();
        let live = describe(&self.client, &physical, "customers", 1, true).await.unwrap().map(|l| l.def);
        let ttl = match &live {
            Some(_) => {
                let out = self.client.describe_time_to_live().table_name(&physical).send().await.unwrap();
                format!("{:?}", out.time_to_live_description().and_then(|d| d.time_to_live_status()))
            }
            None => "no table".to_owned(),
        };
        format!("{live:?}, TTL {ttl}")
    }

    async fn records(&self) -> Vec<AppliedMigration> {
        self.ledger.records().await.unwrap()
    }

    /// The plan of every migration not yet applied.
    async fn plan(&self, migrations: &[Migration]) -> Vec<PlannedStep> {
        let applied: Vec<u32> = self.records().await.iter().map(|r| r.version).collect();
        let pending: Vec<u32> = migrations.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect();
        let pending = Pending { versions: &pending, resuming: &[] };
        let planned = preview(&self.client, &self.names, migrations, pending, true, "prod").await.unwrap();
        planned.into_iter().flat_map(|m| m.steps).collect()
    }

    /// Runs the migrations, expects the pre-flight to refuse them, and checks that nothing was
    /// written: the table reads back as before and the ledger has no new record.
    async fn refused_before_any_write(&self, migrations: &[Migration]) -> Refusal {
        let (table, records) = (self.table().await, self.records().await);
        let failure = self.migrator.run(migrations, None).await.unwrap_err();
        assert!(failure.report.applied.is_empty());
        assert_eq!(self.table().await, table, "the table is as it was");
        assert_eq!(self.records().await, records, "no ledger record was written");
        match failure.error {
            Error::Step { cause, .. } => match *cause {
                Error::Refused(refusal) => refusal,
                other => panic!("expected a refusal before any write, got {other:#}"),
            },
            other => panic!("expected a refusal before any write, got {other:#}"),
        }
    }
}

fn customers() -> TableDef {
    TableDef::new("customers", KeyAttr::n("customer_nr"))
}

fn create(def: TableDef) -> Migration {
    Migration::new(1, "create_customers", "create").create_table(def)
}

/// The one refused step of a plan.
fn refused(plan: &[PlannedStep]) -> &Refusal {
    let refused: Vec<&Refusal> = plan.iter().filter_map(|s| s.refused.as_ref()).collect();
    assert_eq!(refused.len(), 1, "{plan:#?}");
    refused[0]
}

const HOUR_MS: u64 = 3_600_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
async fn a_ttl_change_soon_after_another_or_twice_in_a_migration_is_refused_before_any_write() {
    let s = setup("rules_ttl_attribute").await;
    // The table was made before this tool's time: no TTL change is known.
    support::create_table_keyed_by(&support::rules_client().await, &s.physical(), KeyAttr::n("customer_nr")).await;
    s.client
        .update_time_to_live()
        .table_name(s.physical())
        .time_to_live_specification(
            TimeToLiveSpecification::builder().enabled(true).attribute_name("expires_at").build().unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let migrations = vec![Migration::new(2, "no_ttl", "no ttl").disable_ttl("customers")];
    let plan = s.plan(&migrations).await;
    let in_plan = refused(&plan).clone();
    assert_eq!(in_plan.rule, Rule::TtlCoolDown);
    assert!(plan[0].would_fail && plan[0].note.as_deref() == Some(in_plan.message.as_str()));

    let refusal = s.refused_before_any_write(&migrations).await;
    assert_eq!(refusal.rule, Rule::TtlCoolDown);
    assert!(refusal.possible_at_ms > now_ms() && refusal.possible_at_ms <= now_ms() + HOUR_MS, "{refusal:?}");
    assert!(refusal.message.contains("(reported by DynamoDB)"), "{}", refusal.message);

    s.end().await;

    // A migration that changes TTL twice by itself: the history refuses its first call, but it
    // must be split whenever it runs, and that is what the pre-flight says.
    let s = setup("rules_ttl_attribute_alone").await;
    s.migrator.run(&[create(customers().ttl("expires_at"))], None).await.unwrap();
    let change = Migration::new(2, "ttl_on_valid_until", "ttl").enable_ttl("customers", "valid_until");
    let migrations = vec![create(customers().ttl("expires_at")), change];
    let refusal = s.refused_before_any_write(&migrations).await;
    assert!(refusal.split && refusal.call.ends_with("enable on valid_until"), "{refusal:?}");
    assert!(refusal.message.contains("disable on expires_at, in this migration"), "{}", refusal.message);

    let verify_like = Migrator::new(s.client.clone(), s.names.clone(), true, "test")
        .with_rules(dynamo_migrate::schema_steps::RuleScope::EachMigration);
    let failure = verify_like.run(&migrations, None).await.unwrap_err();
    let message = failure.error.to_string();
    assert!(
        message.contains("This migration alone makes too many such changes: change TTL in migrations applied at least an hour apart (a new TTL attribute: disable_ttl in one, enable_ttl in a later one). Nothing was applied."),
        "{message}"
    );
    assert_eq!(s.proxy.refusals(), [], "no call reached the proxy to be refused");
    s.end().await;
}

#[tokio::test]
async fn a_ttl_change_within_the_hour_of_the_tools_last_is_refused_with_when_it_becomes_possible() {
    let s = setup("rules_ttl_hour").await;
    let migrations =
        vec![create(customers().ttl("expires_at")), Migration::new(2, "no_ttl", "no ttl").disable_ttl("customers")];
    s.migrator.run(&migrations, Some(1)).await.unwrap();
    let before = now_ms();

    let plan = s.plan(&migrations).await;
    let in_plan = refused(&plan);
    assert_eq!(in_plan.call, format!("UpdateTimeToLive {}: disable on expires_at", s.physical()));

    let refusal = s.refused_before_any_write(&migrations).await;
    assert_eq!(refusal.rule, Rule::TtlCoolDown);
    assert!(refusal.possible_at_ms > before && refusal.possible_at_ms <= before + HOUR_MS, "{refusal:?}");
    assert!(
        refusal.message.contains("by migration 1, recorded in the ledger")
            && refusal
                .message
                .ends_with(&format!("Run `cargo xtask migrate --env prod` again from {}.", refusal.possible_at)),
        "{}",
        refusal.message
    );
    assert_eq!(s.proxy.refusals(), []);
    s.end().await;
}

#[tokio::test]
async fn two_ttl_changes_in_one_run_are_refused_before_the_first_migration_is_applied() {
    let s = setup("rules_ttl_run").await;
    let migrations = vec![
        create(customers()),
        Migration::new(2, "ttl", "ttl").enable_ttl("customers", "expires_at"),
        Migration::new(3, "no_ttl", "no ttl").disable_ttl("customers"),
    ];
    let refusal = s.refused_before_any_write(&migrations).await;
    assert_eq!(s.table().await, "None, TTL no table", "not even the table of migration 1 was created");
    assert!(
        refusal.message.contains("by migration 2 earlier in this run")
            && refusal
                .message
                .contains("Apply the migrations before 3 now (`cargo xtask migrate --env prod --target 2`)"),
        "{}",
        refusal.message
    );
    // What it says to do works: up to 2 now, the rest is refused until the hour has passed.
    s.migrator.run(&migrations, Some(2)).await.unwrap();
    let refusal = s.refused_before_any_write(&migrations).await;
    assert!(refusal.message.contains("by migration 2, recorded in the ledger"), "{}", refusal.message);
    assert_eq!(s.proxy.refusals(), []);
    s.end().await;
}

#[tokio::test]
async fn switches_to_on_demand_beyond_four_in_a_day_are_refused_before_any_write() {
    let s = setup("rules_on_demand").await;
    let mut migrations = vec![create(customers().provisioned(5, 5))];
    for version in 2..=10 {
        let billing = if version % 2 == 0 {
            Billing::PayPerRequest
        } else {
            Billing::Provisioned(Throughput { read: 5, write: 5 })
        };
        migrations.push(Migration::new(version, format!("billing_{version}"), "billing").update_billing(
            "customers",
            billing,
            vec![],
        ));
    }
    let refusal = s.refused_before_any_write(&migrations).await;
    assert_eq!(refusal.rule, Rule::OnDemandSwitches);
    assert!(refusal.message.contains("--target 9"), "{}", refusal.message);

    // Four switches go through the proxy, which refuses none; the fifth is refused from the ledger.
    s.migrator.run(&migrations, Some(9)).await.unwrap();
    assert_eq!(s.proxy.refusals(), []);
    let refusal = s.refused_before_any_write(&migrations).await;
    assert_eq!(refusal.rule, Rule::OnDemandSwitches);
    assert!(refusal.message.contains("recorded in the ledger"), "{}", refusal.message);
    assert!(refusal.possible_at_ms > now_ms() + 23 * HOUR_MS, "{refusal:?}");
    let in_plan = refused(&s.plan(&migrations).await).clone();
    assert_eq!((in_plan.rule, in_plan.call), (refusal.rule, refusal.call));
    s.end().await;
}

#[tokio::test]
async fn table_class_changes_beyond_two_in_30_days_are_refused_before_any_write() {
    let s = setup("rules_class").await;
    let class = |version: u32, class| {
        Migration::new(version, format!("class_{version}"), "class").set_table_class("customers", class)
    };
    let migrations = vec![
        create(customers()),
        class(2, TableClass::StandardInfrequentAccess),
        class(3, TableClass::Standard),
        class(4, TableClass::StandardInfrequentAccess),
    ];
    let refusal = s.refused_before_any_write(&migrations).await;
    assert_eq!(refusal.rule, Rule::TableClassChanges);
    assert!(refusal.message.contains("--target 3"), "{}", refusal.message);

    s.migrator.run(&migrations, Some(3)).await.unwrap();
    assert_eq!(s.proxy.refusals(), []);
    assert_eq!(s.proxy.passed_on("UpdateTable", &s.physical()), 2, "both changes were made, not skipped");
    let refusal = s.refused_before_any_write(&migrations).await;
    assert!(refusal.possible_at_ms > now_ms() + 29 * 24 * HOUR_MS, "{refusal:?}");
    assert!(refusal.message.contains("by migration 2, recorded in the ledger"), "{}", refusal.message);
    s.end().await;
}

#[tokio::test]
async fn a_decrease_after_four_today_is_refused_before_any_write() {
    let s = setup("rules_decrease").await;
    let lower = |version: u32, read| {
        Migration::new(version, format!("read_{read}"), "lower").update_billing(
            "customers",
            Billing::Provisioned(Throughput { read, write: 10 }),
            vec![],
        )
    };
    let migrations = vec![create(customers().provisioned(10, 10)), lower(2, 5)];
    s.migrator.run(&migrations, Some(1)).await.unwrap();
    // Someone else (auto scaling, the console) decreased it four times today.
    for read in [9, 8, 7, 6] {
        let throughput = aws_sdk_dynamodb::types::ProvisionedThroughput::builder()
            .read_capacity_units(read)
            .write_capacity_units(10)
            .build()
            .unwrap();
        s.client.update_table().table_name(s.physical()).provisioned_throughput(throughput).send().await.unwrap();
        dynamo_migrate::schema_steps::wait_until_active(&s.client, &s.physical(), std::time::Duration::from_secs(60))
            .await
            .unwrap();
    }
    let refusal = s.refused_before_any_write(&migrations).await;
    assert_eq!(refusal.rule, Rule::ThroughputDecreases);
    assert!(refusal.message.contains("(the table has had 4 decrease(s) today)"), "{}", refusal.message);
    assert!(refusal.message.contains("(reported by DynamoDB)"), "{}", refusal.message);
    assert_eq!(s.proxy.refusals(), []);
    s.end().await;
}

#[tokio::test]
async fn a_stream_view_change_is_a_destructive_replacement_that_says_its_consumers_stop() {
    let s = setup("rules_stream").await;
    let create = create(customers().stream(StreamView::KeysOnly));
    s.migrator.run(std::slice::from_ref(&create), None).await.unwrap();
    let old_arn = stream_arn(&s).await;

    let unacknowledged = vec![
        create.clone(),
        Migration::new(2, "new_images", "s").update_stream("customers", Some(StreamView::NewImage)),
    ];
    let plan = s.plan(&unacknowledged).await;
    let note = plan[0].note.as_deref().unwrap();
    assert!(plan[0].would_fail && note.contains("its consumers (Lambda triggers, Kinesis adapters, replays) stop reading; write it as replace_stream(\"customers\", StreamView::NewImage, Destructive::because(\"...\"))"), "{note}");

    let replace = Migration::new(2, "new_images", "s").replace_stream(
        "customers",
        StreamView::NewImage,
        Destructive::because("the search indexer reads the new stream from its deploy on"),
    );
    let migrations = vec![create, replace];
    let plan = s.plan(&migrations).await;
    assert!(plan[0].destructive);
    assert!(plan[0].step.contains("a new stream ARN, its consumers stop"), "{}", plan[0].step);
    assert_eq!(
        plan[0].calls,
        [
            format!("UpdateTable {}: disable stream", s.physical()),
            format!("UpdateTable {}: enable stream NewImage", s.physical())
        ]
    );
    s.migrator.run(&migrations, None).await.unwrap();
    assert_ne!(stream_arn(&s).await, old_arn, "a new stream");
    assert!(
        describe(&s.client, &s.physical(), "customers", 1, true).await.unwrap().unwrap().def.stream
            == Some(StreamView::NewImage)
    );
    s.end().await;
}

async fn stream_arn(s: &Setup) -> String {
    let out = s.client.describe_table().table_name(s.physical()).send().await.unwrap();
    out.table().unwrap().latest_stream_arn().unwrap().to_owned()
}

#[tokio::test]
async fn a_gsi_projection_change_deletes_and_recreates_the_index_instead_of_a_rebuild() {
    let s = setup("rules_gsi").await;
    let keys_only = GlobalIndex::new("by_postcode", KeyAttr::s("postcode")).projection(Projection::KeysOnly);
    let create = create(customers().global_index(keys_only));
    s.migrator.run(std::slice::from_ref(&create), None).await.unwrap();
    for nr in 0..20 {
        s.client
            .put_item()
            .table_name(s.physical())
            .item("customer_nr", AttributeValue::N(nr.to_string()))
            .item("postcode", AttributeValue::S(format!("{:04}", nr % 3)))
            .item("name", AttributeValue::S(format!("customer {nr}")))
            .send()
            .await
            .unwrap();
    }
    let all = GlobalIndex::new("by_postcode", KeyAttr::s("postcode"));
    let in_place = vec![create.clone(), Migration::new(2, "gsi_all", "g").add_global_index("customers", all.clone())];
    let note = s.plan(&in_place).await[0].note.clone().unwrap();
    assert!(note.contains("replace_global_index(\"customers\""), "{note}");

    let replace = Migration::new(2, "gsi_all", "g").replace_global_index(
        "customers",
        all,
        Destructive::because("queries by postcode may fail while the index backfills"),
    );
    let migrations = vec![create, replace];
    let plan = s.plan(&migrations).await;
    assert!(plan[0].destructive);
    assert_eq!(
        plan[0].calls,
        [
            format!("UpdateTable {}: delete GSI by_postcode", s.physical()),
            format!("UpdateTable {}: create GSI by_postcode on postcode", s.physical())
        ]
    );
    let report = s.migrator.run(&migrations, None).await.unwrap();
    assert_eq!(report.applied[0].steps[0].calls.len(), 2);
    let live = describe(&s.client, &s.physical(), "customers", 1, true).await.unwrap().unwrap().def;
    assert_eq!(live.global_index_named("by_postcode").unwrap().projection, Projection::All);
    let found = s
        .client
        .query()
        .table_name(s.physical())
        .index_name("by_postcode")
        .key_condition_expression("postcode = :p")
        .expression_attribute_values(":p", AttributeValue::S("0001".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(found.count(), 7, "the new index is backfilled");
    assert!(found.items().iter().all(|i| i.contains_key("name")), "and projects every attribute");
    s.end().await;
}

#[tokio::test]
async fn a_create_whose_ttl_call_failed_completes_on_the_next_run_from_that_call() {
    let s = setup("rules_resume").await;
    let migrations = vec![create(customers().ttl("expires_at"))];
    s.proxy.fail_next("UpdateTimeToLive");
    let failure = s.migrator.run(&migrations, None).await.unwrap_err();
    let message = format!("{:#}", failure.error);
    assert!(message.contains("AccessDeniedException") || message.contains("not authorized"), "{message}");
    assert_eq!(s.records().await[0].status, Status::Failed);
    assert!(s.table().await.starts_with("Some("), "CreateTable was made");
    assert!(s.table().await.contains("ttl_attribute: None"), "{}", s.table().await);

    support::rerun(&s.ledger, &migrations, 1).await;
    let report = s.migrator.run(&migrations, None).await.unwrap();
    assert_eq!(report.applied[0].steps[0].calls, [format!("UpdateTimeToLive {}: enable on expires_at", s.physical())]);
    assert_eq!(s.records().await[0].status, Status::Succeeded);
    assert!(s.table().await.contains("ttl_attribute: Some(\"expires_at\")"), "{}", s.table().await);
    assert_eq!(s.proxy.passed_on("CreateTable", &s.physical()), 1, "the table was created once");
    assert_eq!(s.proxy.passed_on("UpdateTimeToLive", &s.physical()), 1);
    s.end().await;
}

/// `ListTagsOfResource` answers a page at a time (moto, as AWS, with a `NextToken`; moto's pages
/// hold 10 tags): a table's 23 tags all read back, so that none looks like drift to untag or
/// re-tag.
#[tokio::test]
async fn a_table_with_more_tags_than_one_page_reads_back_every_tag() {
    let Some(endpoint) = support::moto_endpoint() else {
        println!("skipped: moto's server is not installed");
        return;
    };
    let client = dynamo_migrate::run::connect(&dynamo_migrate::run::Target::local(endpoint)).await;
    let physical = support::names("tag_pages").physical("customers");
    let declared: std::collections::BTreeMap<String, String> =
        (0..23).map(|i| (format!("team-{i:02}"), format!("value {i}"))).collect();
    let tags: Vec<aws_sdk_dynamodb::types::Tag> = declared
        .iter()
        .map(|(k, v)| aws_sdk_dynamodb::types::Tag::builder().key(k).value(v).build().unwrap())
        .collect();
    client
        .create_table()
        .table_name(&physical)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("nr")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("nr")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
    let first = client
        .list_tags_of_resource()
        .resource_arn(
            client.describe_table().table_name(&physical).send().await.unwrap().table.unwrap().table_arn.unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(first.next_token.is_some() && first.tags().len() < 23, "one page does not hold them all: {first:?}");
    let live = describe(&client, &physical, "customers", 1, false).await.unwrap().unwrap();
    assert_eq!(live.def.tags, declared);
    client.delete_table().table_name(&physical).send().await.unwrap();
}

/// A `DescribeTable` refused while `DeleteTable`'s waiter waits for the table to go is that call's
/// error, naming it and the table: not a time-out "waiting for the table to become ACTIVE".
#[tokio::test]
async fn a_describe_refused_while_a_deletion_is_awaited_names_the_call_not_a_time_out() {
    use dynamo_migrate::schema_steps::{Call, ExecOptions, execute};
    let s = setup("rp_delete_wait").await;
    let physical = s.names.physical("customers");
    s.migrator.run(&[create(customers())], None).await.unwrap();
    s.proxy.fail_next("DescribeTable");
    let error =
        execute(&s.client, &physical, &Call::DeleteTable { table: "customers".into() }, &ExecOptions::new(true))
            .await
            .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Aws { .. }), "{message}");
    assert!(
        message.contains(&format!("DescribeTable {physical} (waiting for its deletion)"))
            && message.contains("AccessDeniedException"),
        "{message}"
    );
    assert!(!message.contains("timed out"), "{message}");
    s.end().await;
}
