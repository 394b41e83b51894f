//! AWS's control-plane rules that depend on a table's recent history, which DynamoDB Local does
//! not enforce (so `verify` passes where production would fail):
//!
//! - another `UpdateTimeToLive` on a table is refused for up to an hour after one
//!   (ValidationException "Time to live has been modified multiple times within a fixed interval");
//! - a table switches from provisioned to on-demand at most 4 times in a rolling 24 hours;
//! - a table's class changes at most twice in a trailing 30 days;
//! - a table's (and, separately, each GSI's) provisioned throughput decreases 4 times in a UTC
//!   day, then once an hour after an hour without a decrease (27 a day at most).
//!
//! A [`RuleBook`] is pure: it is given what is known of each table's recent changes and the
//! current time, then checks each step's planned calls in the order a run makes them, adding those
//! it admits to the history, so that changes made earlier in the same run count too. What is
//! known of a table comes from two places (see [`History::new`]):
//! - what DynamoDB describes ([`Described`]): `BillingModeSummary.LastUpdateToPayPerRequestDateTime`,
//!   `TableClassSummary.LastUpdateDateTime`, `ProvisionedThroughput.NumberOfDecreasesToday` and
//!   `LastDecreaseDateTime` (table and GSIs), and `TimeToLiveStatus` ENABLING / DISABLING. These
//!   see changes made by anyone, but only the last one of each kind, and never when a TTL change
//!   was made;
//! - what this tool recorded in its ledger when it made such a change ([`Recorded`]: TTL changes,
//!   switches to on-demand, table class changes, with the migration that made them), which
//!   counts every change but only this tool's.
//!
//! Decreases are judged from DynamoDB's own count alone: it is exact and covers every client.
//! Unit-tested without a database in `rules_tests.rs`.

use std::collections::BTreeMap;
use std::fmt;

use dynamo_model::{Billing, TableDef};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ledger::rfc3339_millis;
use crate::planner::Call;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// How long after a TTL change AWS refuses another on the same table.
pub const TTL_COOL_DOWN_MS: u64 = HOUR_MS;
/// Switches from provisioned to on-demand allowed in [`ON_DEMAND_WINDOW_MS`].
pub const ON_DEMAND_SWITCHES: usize = 4;
pub const ON_DEMAND_WINDOW_MS: u64 = DAY_MS;
/// Table class changes allowed in [`TABLE_CLASS_WINDOW_MS`].
pub const TABLE_CLASS_CHANGES: usize = 2;
pub const TABLE_CLASS_WINDOW_MS: u64 = 30 * DAY_MS;
/// Decreases of a table's or a GSI's throughput allowed at any time in a UTC day; after them,
/// one more each time an hour has passed without a decrease.
pub const FREE_DECREASES: u32 = 4;
pub const DECREASE_SPACING_MS: u64 = HOUR_MS;

/// Two reports of one change (the ledger's and DynamoDB's) closer than this are the same change.
const SAME_CHANGE_MS: u64 = 5 * 60_000;

/// A kind of change the ledger records because AWS counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// An `UpdateTimeToLive` call, enabling or disabling TTL.
    Ttl,
    /// A switch from provisioned to on-demand billing.
    OnDemand,
    /// A change of the table class.
    TableClass,
}

/// One change this tool made, as its ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// What kind of change.
    pub kind: ChangeKind,
    /// When it was made, in milliseconds since the epoch.
    pub at_ms: u64,
    /// The migration that made it.
    pub version: u32,
}

/// The changes of `calls` (made on a table that was `current`) that the ledger records.
pub fn counted(current: Option<&TableDef>, call: &Call) -> Option<ChangeKind> {
    match call {
        Call::EnableTtl { .. } | Call::DisableTtl { .. } => Some(ChangeKind::Ttl),
        Call::UpdateBilling { billing: Some(Billing::PayPerRequest), .. }
            if current.is_some_and(|c| matches!(c.billing, Billing::Provisioned(_))) =>
        {
            Some(ChangeKind::OnDemand)
        }
        Call::SetTableClass { .. } => Some(ChangeKind::TableClass),
        _ => None,
    }
}

/// What DynamoDB's descriptions of a table say of its recent changes (see the module header).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Described {
    /// `BillingModeSummary.LastUpdateToPayPerRequestDateTime`, in milliseconds since the epoch;
    /// `None` when the table never switched (its creation on demand is no switch).
    pub last_switch_to_on_demand_ms: Option<u64>,
    /// `TableClassSummary.LastUpdateDateTime`, in milliseconds since the epoch.
    pub last_table_class_update_ms: Option<u64>,
    /// `TimeToLiveStatus` is ENABLING or DISABLING: a TTL change is still being processed.
    pub ttl_in_transition: bool,
    /// Decreases of the table's throughput (key `""`) and of each GSI's (key: its name).
    pub decreases: BTreeMap<String, Decreases>,
}

/// `NumberOfDecreasesToday` and `LastDecreaseDateTime` of a table or a GSI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Decreases {
    /// `NumberOfDecreasesToday`: decreases in the current UTC day.
    pub today: u32,
    /// `LastDecreaseDateTime`, in milliseconds since the epoch.
    pub last_ms: Option<u64>,
}

/// Where a change that counts against a rule is known from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This tool's ledger: a migration applied earlier.
    Ledger { version: u32 },
    /// DynamoDB's description of the table: made by anyone.
    Described,
    /// A call earlier in the run being checked, by migration `version`.
    Run { version: u32, call: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    at_ms: u64,
    source: Source,
}

/// What is known of one table's recent changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ttl: Vec<Change>,
    /// A TTL change DynamoDB is still processing, whose time is unknown.
    ttl_in_transition: bool,
    on_demand: Vec<Change>,
    table_class: Vec<Change>,
    decreases: BTreeMap<String, DecreaseLog>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DecreaseLog {
    today: u32,
    last: Option<Change>,
    /// The decreases the run makes.
    made: Vec<Change>,
}

impl History {
    /// The history of a table created at `created_ms`, from what DynamoDB describes and what
    /// the ledger recorded. A recorded change older than the table was made to an earlier table
    /// of the same name and is left out. DynamoDB's last change of a kind is added unless the
    /// ledger has the same one.
    pub fn new(described: &Described, recorded: &[Recorded], created_ms: Option<u64>) -> History {
        let since = created_ms.map_or(0, |c| c.saturating_sub(SAME_CHANGE_MS));
        let of = |kind: ChangeKind, last: Option<u64>| {
            let mut changes: Vec<Change> = recorded
                .iter()
                .filter(|r| r.kind == kind && r.at_ms >= since)
                .map(|r| Change { at_ms: r.at_ms, source: Source::Ledger { version: r.version } })
                .collect();
            if let Some(last) = last
                && !changes.iter().any(|c| c.at_ms.abs_diff(last) <= SAME_CHANGE_MS)
            {
                changes.push(Change { at_ms: last, source: Source::Described });
            }
            changes.sort_by_key(|c| c.at_ms);
            changes
        };
        History {
            ttl: of(ChangeKind::Ttl, None),
            ttl_in_transition: described.ttl_in_transition,
            on_demand: of(ChangeKind::OnDemand, described.last_switch_to_on_demand_ms),
            table_class: of(ChangeKind::TableClass, described.last_table_class_update_ms),
            decreases: described
                .decreases
                .iter()
                .map(|(target, d)| {
                    let last = d.last_ms.map(|at_ms| Change { at_ms, source: Source::Described });
                    (target.clone(), DecreaseLog { today: d.today, last, made: vec![] })
                })
                .collect(),
        }
    }
}

/// Which rule a refused call breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Another TTL change on a table within an hour of the last one.
    TtlCoolDown,
    /// More than 4 switches to on-demand in a rolling 24 hours.
    OnDemandSwitches,
    /// More than 2 table class changes in a trailing 30 days.
    TableClassChanges,
    /// A throughput decrease beyond the 4 of a UTC day, less than an hour after the last one.
    ThroughputDecreases,
}

impl Rule {
    fn text(self) -> &'static str {
        match self {
            Rule::TtlCoolDown => {
                "AWS refuses a TTL change (UpdateTimeToLive) on a table for up to an hour after the one before (ValidationException: Time to live has been modified multiple times within a fixed interval)"
            }
            Rule::OnDemandSwitches => {
                "AWS switches a table from provisioned to on-demand at most 4 times in a rolling 24 hours"
            }
            Rule::TableClassChanges => "AWS changes a table's class at most twice in a trailing 30 days",
            Rule::ThroughputDecreases => {
                "AWS decreases a table's or a GSI's provisioned throughput 4 times in a UTC day, then once an hour after an hour without a decrease"
            }
        }
    }

    /// How far apart the changes of one migration must be spread.
    fn split(self) -> &'static str {
        match self {
            Rule::TtlCoolDown => {
                "change TTL in migrations applied at least an hour apart (a new TTL attribute: disable_ttl in one, enable_ttl in a later one)"
            }
            Rule::OnDemandSwitches => "spread the switches to on-demand over migrations applied a day apart",
            Rule::TableClassChanges => "spread the table class changes over migrations applied 30 days apart",
            Rule::ThroughputDecreases => "spread the decreases over migrations applied an hour apart",
        }
    }

    /// How many changes of this rule one migration may make by itself.
    fn alone(self) -> usize {
        match self {
            Rule::TtlCoolDown => 1,
            Rule::OnDemandSwitches => ON_DEMAND_SWITCHES,
            Rule::TableClassChanges => TABLE_CLASS_CHANGES,
            Rule::ThroughputDecreases => FREE_DECREASES as usize,
        }
    }
}

/// A planned call AWS would refuse now, with when it becomes possible and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[error("{message}")]
pub struct Refusal {
    /// The physical table.
    pub table: String,
    /// The rule the call breaks.
    pub rule: Rule,
    /// The call, as a plan shows it.
    pub call: String,
    /// The earliest time the call can be made, RFC 3339, and in milliseconds since the epoch.
    pub possible_at: String,
    /// The same time, in milliseconds since the epoch.
    pub possible_at_ms: u64,
    /// The migration breaks the rule by itself, whatever came before: it must be split, and
    /// waiting does not help.
    pub split: bool,
    /// The whole explanation: the rule, the changes that count against it, when, and what to do.
    pub message: String,
}

/// How much history a [`RuleBook`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleScope {
    /// The tables' known history and every migration of the run: what `migrate` and `plan` do.
    #[default]
    Run,
    /// Each migration by itself, from no history: what `verify` and `local` do, since on DynamoDB
    /// Local every migration runs from empty at once, whereas an environment applies them over
    /// time. What one migration does alone is refused anywhere, so it is refused there too.
    EachMigration,
}

/// The rules' view of every table a run touches (see the module header).
#[derive(Debug, Clone)]
pub struct RuleBook {
    now_ms: u64,
    scope: RuleScope,
    /// The environment's name, for the commands a refusal suggests.
    environment: String,
    tables: BTreeMap<String, History>,
    version: Option<u32>,
}

impl RuleBook {
    /// A book judging at `now_ms` (milliseconds since the epoch) with `scope`, that knows no
    /// table yet (see [`RuleBook::learn`]); `environment` is named in the commands a refusal
    /// suggests.
    pub fn new(now_ms: u64, scope: RuleScope, environment: impl Into<String>) -> Self {
        RuleBook { now_ms, scope, environment: environment.into(), tables: BTreeMap::new(), version: None }
    }

    /// The time the book judges at, in milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The environment named in the commands a refusal suggests.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// True when the tables' history before the run counts ([`RuleScope::Run`]).
    pub fn counts_history(&self) -> bool {
        self.scope == RuleScope::Run
    }

    /// True once the history of `physical` has been given (or made by the run).
    pub fn knows(&self, physical: &str) -> bool {
        self.tables.contains_key(physical)
    }

    /// Gives what is known of `physical` before the run. In [`RuleScope::EachMigration`] the
    /// history is not used.
    pub fn learn(&mut self, physical: &str, history: History) {
        let history = if self.scope == RuleScope::Run { history } else { History::default() };
        self.tables.insert(physical.to_owned(), history);
    }

    /// Checks `calls`, planned by a step of migration `version` on `physical` (which is
    /// `current` before them), in order; admits them into the history, or refuses the first
    /// that AWS would refuse now.
    pub fn admit(
        &mut self,
        version: u32,
        physical: &str,
        current: Option<&TableDef>,
        calls: &[Call],
    ) -> Result<(), Refusal> {
        if self.scope == RuleScope::EachMigration && self.version != Some(version) {
            self.tables.clear();
        }
        self.version = Some(version);
        let now = self.now_ms;
        for call in calls {
            let here = || Change { at_ms: now, source: Source::Run { version, call: call.describe(physical) } };
            let history = self.tables.entry(physical.to_owned()).or_default();
            match call {
                Call::CreateTable { .. } | Call::DeleteTable { .. } => *history = History::default(),
                Call::EnableTtl { .. } | Call::DisableTtl { .. } => {
                    let recent: Vec<Change> =
                        history.ttl.iter().filter(|c| c.at_ms + TTL_COOL_DOWN_MS > now).cloned().collect();
                    if let Some(last) = recent.last() {
                        return Err(self.refuse(
                            version,
                            physical,
                            call,
                            Rule::TtlCoolDown,
                            last.at_ms + TTL_COOL_DOWN_MS,
                            &recent,
                            None,
                        ));
                    }
                    if history.ttl_in_transition {
                        let described = [Change { at_ms: now, source: Source::Described }];
                        return Err(self.refuse(
                            version,
                            physical,
                            call,
                            Rule::TtlCoolDown,
                            now + TTL_COOL_DOWN_MS,
                            &described,
                            None,
                        ));
                    }
                    history.ttl.push(here());
                }
                Call::SetTableClass { .. } => {
                    check_count(&history.table_class, now, TABLE_CLASS_WINDOW_MS, TABLE_CLASS_CHANGES).map_err(
                        |(at_ms, window)| {
                            self.refuse(version, physical, call, Rule::TableClassChanges, at_ms, &window, None)
                        },
                    )?;
                    self.tables.get_mut(physical).expect("entered above").table_class.push(here());
                }
                Call::UpdateBilling { billing, index_throughput, .. } => {
                    let before = current.map(|c| c.billing);
                    let switches =
                        *billing == Some(Billing::PayPerRequest) && matches!(before, Some(Billing::Provisioned(_)));
                    let switch = if switches {
                        check_count(&history.on_demand, now, ON_DEMAND_WINDOW_MS, ON_DEMAND_SWITCHES)
                    } else {
                        Ok(())
                    };
                    let targets = decreased(current, billing.as_ref(), index_throughput);
                    let logs: Vec<DecreaseLog> =
                        targets.iter().map(|t| history.decreases.get(t).cloned().unwrap_or_default()).collect();
                    if let Err((at_ms, window)) = switch {
                        return Err(self.refuse(version, physical, call, Rule::OnDemandSwitches, at_ms, &window, None));
                    }
                    // A request that decreases the table and a GSI is refused when either may not
                    // decrease: DynamoDB processes no request in part.
                    for (target, log) in targets.iter().zip(logs) {
                        if let Err(at_ms) = check_decrease(&log, now) {
                            let whose =
                                if target.is_empty() { "the table".to_owned() } else { format!("GSI {target}") };
                            let detail = format!("{whose} has had {} decrease(s) today", today(&log, now));
                            let mut window = log.made.clone();
                            if let Some(last) = log.last.filter(|l| !log.made.contains(l)) {
                                window.insert(0, last);
                            }
                            return Err(self.refuse(
                                version,
                                physical,
                                call,
                                Rule::ThroughputDecreases,
                                at_ms,
                                &window,
                                Some(detail),
                            ));
                        }
                    }
                    let history = self.tables.get_mut(physical).expect("entered above");
                    if switches {
                        history.on_demand.push(here());
                    }
                    for target in targets {
                        let log = history.decreases.entry(target).or_default();
                        log.today = today(log, now) + 1;
                        log.last = Some(here());
                        log.made.push(here());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    #[expect(clippy::too_many_arguments, reason = "one refusal's facts, each named")]
    fn refuse(
        &self,
        version: u32,
        physical: &str,
        call: &Call,
        rule: Rule,
        possible_at_ms: u64,
        window: &[Change],
        detail: Option<String>,
    ) -> Refusal {
        let possible_at = rfc3339_millis(possible_at_ms);
        let counted: Vec<String> = window
            .iter()
            .map(|c| format!("{} ({})", rfc3339_millis(c.at_ms), SourceText(&c.source, version)))
            .collect();
        let this_migration =
            window.iter().filter(|c| matches!(&c.source, Source::Run { version: v, .. } if *v == version)).count();
        let earlier_in_run =
            window.iter().any(|c| matches!(&c.source, Source::Run { version: v, .. } if *v != version));
        let env = &self.environment;
        let split = this_migration >= rule.alone();
        let advice = if split {
            format!("This migration alone makes too many such changes: {}.", rule.split())
        } else if earlier_in_run {
            format!(
                "Apply the migrations before {} now (`cargo xtask migrate --env {env} --target {}`) and the rest from {possible_at} (`cargo xtask migrate --env {env}`).",
                version,
                version.saturating_sub(1)
            )
        } else {
            format!("Run `cargo xtask migrate --env {env}` again from {possible_at}.")
        };
        let described = call.describe(physical);
        Refusal {
            table: physical.to_owned(),
            rule,
            call: described.clone(),
            possible_at: possible_at.clone(),
            possible_at_ms,
            split,
            message: format!(
                "{described} would be refused by AWS: {}; changes that count: {}{}.{} {advice}",
                rule.text(),
                counted.join(", "),
                detail.map(|d| format!(" ({d})")).unwrap_or_default(),
                if split { String::new() } else { format!(" It becomes possible at {possible_at}.") }
            ),
        }
    }
}

/// A source as a refusal names it, seen from migration `current`.
struct SourceText<'a>(&'a Source, u32);

impl fmt::Display for SourceText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Source::Ledger { version } => write!(f, "by migration {version}, recorded in the ledger"),
            Source::Described => f.write_str("reported by DynamoDB"),
            Source::Run { version, call } if *version == self.1 => write!(f, "{call}, in this migration"),
            Source::Run { version, call } => write!(f, "{call}, by migration {version} earlier in this run"),
        }
    }
}

/// `Ok` when fewer than `allowed` of `changes` fall within `window` before `now`; otherwise the
/// time the oldest of the last `allowed` leaves the window, and the changes in the window.
fn check_count(changes: &[Change], now: u64, window: u64, allowed: usize) -> Result<(), (u64, Vec<Change>)> {
    let mut within: Vec<Change> = changes.iter().filter(|c| c.at_ms + window > now).cloned().collect();
    within.sort_by_key(|c| c.at_ms);
    if within.len() < allowed {
        return Ok(());
    }
    Err((within[within.len() - allowed].at_ms + window, within))
}

/// The decreases of `log` made on the UTC day of `now`.
fn today(log: &DecreaseLog, now: u64) -> u32 {
    match &log.last {
        Some(last) if last.at_ms / DAY_MS == now / DAY_MS => log.today,
        _ => 0,
    }
}

/// `Ok` when one more decrease is allowed now; otherwise when it is: an hour after the last
/// decrease, or the next UTC midnight if that is sooner.
fn check_decrease(log: &DecreaseLog, now: u64) -> Result<(), u64> {
    let Some(last) = &log.last else { return Ok(()) };
    if today(log, now) < FREE_DECREASES || last.at_ms + DECREASE_SPACING_MS <= now {
        return Ok(());
    }
    Err((last.at_ms + DECREASE_SPACING_MS).min((now / DAY_MS + 1) * DAY_MS))
}

/// The targets (`""`: the table; a GSI's name) whose provisioned throughput the update lowers.
/// A switch from on-demand to provisioned lowers nothing.
fn decreased(
    current: Option<&TableDef>,
    billing: Option<&Billing>,
    index_throughput: &[(String, dynamo_model::Throughput)],
) -> Vec<String> {
    let Some(current) = current else { return vec![] };
    let Billing::Provisioned(old) = current.billing else { return vec![] };
    let lower =
        |old: dynamo_model::Throughput, new: dynamo_model::Throughput| new.read < old.read || new.write < old.write;
    let mut targets = Vec::new();
    if let Some(Billing::Provisioned(new)) = billing
        && lower(old, *new)
    {
        targets.push(String::new());
    }
    for (index, new) in index_throughput {
        if let Some(old) = current.global_index_named(index).and_then(|g| g.throughput)
            && lower(old, *new)
        {
            targets.push(index.clone());
        }
    }
    targets
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
