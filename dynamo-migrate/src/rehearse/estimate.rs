//! What a pass over a whole table would cost: items, read and write units, time, and the price of
//! the units on demand. `rehearse` extrapolates from what a pass did to its sample; `plan`
//! estimates from the table's description alone.
//!
//! The units are DynamoDB's: a scan costs half a read unit per 4 KB read (a whole unit strongly
//! consistent), a write one write unit per KB started of the item (an update: of the larger of the
//! item before and after). Writes to global indexes cost the same again for each index that holds
//! the item, and are not counted here. Prices are AWS's on-demand list prices in us-east-1
//! (Standard: $0.625 a million write request units, $0.125 a million read request units;
//! Standard-IA a quarter more); other regions differ. A provisioned table pays for its capacity
//! whatever the pass uses, and the pass takes at least its units divided by that capacity.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{BillingMode, TableClass};
use serde::Serialize;

use crate::error::{Error, Result};

/// US dollars a million on-demand write request units cost (us-east-1, Standard).
pub const WRITE_USD_PER_MILLION: f64 = 0.625;
/// US dollars a million on-demand read request units cost (us-east-1, Standard).
pub const READ_USD_PER_MILLION: f64 = 0.125;
/// What Standard-IA's request units cost more than Standard's.
const INFREQUENT_ACCESS: f64 = 1.25;

/// A table's throughput in capacity units a second: its provisioned capacity, or its warm
/// throughput.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UnitsPerSecond {
    /// Read capacity units a second.
    pub read: i64,
    /// Write capacity units a second.
    pub write: i64,
}

/// What DynamoDB describes of a table that an estimate needs.
#[derive(Debug, Clone, Serialize)]
pub struct TableFacts {
    /// The table's physical name.
    pub table: String,
    /// `ItemCount` (DynamoDB updates it about every six hours).
    pub item_count: i64,
    /// `TableSizeBytes`, in bytes (updated as `ItemCount` is).
    pub size_bytes: i64,
    /// Provisioned capacity; none on demand.
    pub provisioned: Option<UnitsPerSecond>,
    /// The throughput the table takes at once (DynamoDB's warm throughput), when described.
    pub warm: Option<UnitsPerSecond>,
    /// The table class is Standard-IA, whose on-demand request units cost a quarter more.
    pub infrequent_access: bool,
}

impl TableFacts {
    /// Write units a write of one of its items costs, from its average item size.
    pub fn write_units_per_item(&self) -> f64 {
        match self.item_count {
            n if n > 0 => (self.size_bytes.max(0) as f64 / n as f64 / 1024.0).ceil().max(1.0),
            _ => 1.0,
        }
    }
}

/// The table `physical` as DynamoDB describes it; `None` when it does not exist.
pub async fn facts(client: &Client, physical: &str) -> Result<Option<TableFacts>> {
    let described = match client.describe_table().table_name(physical).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => return Ok(None),
        Err(e) => return Err(Error::aws(format!("DescribeTable {physical}"))(e)),
    };
    let Some(table) = described.table else { return Ok(None) };
    let on_demand = table.billing_mode_summary().and_then(|b| b.billing_mode()) == Some(&BillingMode::PayPerRequest);
    let provisioned = table.provisioned_throughput().filter(|_| !on_demand).map(|p| UnitsPerSecond {
        read: p.read_capacity_units().unwrap_or(0),
        write: p.write_capacity_units().unwrap_or(0),
    });
    let warm = table
        .warm_throughput()
        .and_then(|w| Some(UnitsPerSecond { read: w.read_units_per_second()?, write: w.write_units_per_second()? }));
    Ok(Some(TableFacts {
        table: physical.to_owned(),
        item_count: table.item_count().unwrap_or(0),
        size_bytes: table.table_size_bytes().unwrap_or(0),
        provisioned: provisioned.filter(|p| p.read > 0 || p.write > 0),
        warm: warm.filter(|w| w.read > 0 || w.write > 0),
        infrequent_access: table.table_class_summary().and_then(|c| c.table_class())
            == Some(&TableClass::StandardInfrequentAccess),
    }))
}

/// What a pass over a whole table would take.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    /// Items it would read.
    pub items: u64,
    /// Items that would fail, at the share of the sample that failed (a rehearsal's estimate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// Read units its scans would consume: half a unit per 4 KB read, a whole one strongly
    /// consistent.
    pub read_units: f64,
    /// Write units of the table's own writes (each global index holding an item costs as much
    /// again).
    pub write_units: f64,
    /// How long it would take, when something says.
    pub seconds: Option<f64>,
    /// What the time is bounded by.
    pub limited_by: String,
    /// What its units cost on demand; none for a provisioned table (which pays for capacity).
    pub on_demand_usd: Option<f64>,
}

/// The parts of an estimate, before its time and price are worked out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Work {
    pub items: u64,
    pub read_units: f64,
    pub write_units: f64,
}

/// Read units of a scan of `bytes`.
pub(crate) fn scan_units(bytes: f64, consistent: bool) -> f64 {
    (bytes / 4096.0).ceil() * if consistent { 1.0 } else { 0.5 }
}

/// The estimate of `work` on the table `facts` describes: its time is the longest of `rate`
/// (items a second and why) and what the table's capacity allows.
pub(crate) fn estimate(work: Work, facts: &TableFacts, rate: Option<(f64, String)>, failed: Option<u64>) -> Estimate {
    let mut bounds: Vec<(f64, String)> = Vec::new();
    if let Some((per_second, why)) = rate.filter(|(r, _)| *r > 0.0) {
        bounds.push((work.items as f64 / per_second, why));
    }
    let capacity = |throughput: UnitsPerSecond, what: &str| -> Option<(f64, String)> {
        let reads = (throughput.read > 0).then(|| work.read_units / throughput.read as f64);
        let writes = (throughput.write > 0).then(|| work.write_units / throughput.write as f64);
        let seconds =
            reads.into_iter().chain(writes).fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))))?;
        Some((seconds, format!("{what} of {} read and {} write units a second", throughput.read, throughput.write)))
    };
    if let Some(p) = facts.provisioned {
        bounds.extend(capacity(p, "its provisioned capacity"));
    } else if let Some(w) = facts.warm {
        bounds.extend(capacity(w, "its warm throughput"));
    }
    let longest = bounds.into_iter().max_by(|a, b| a.0.total_cmp(&b.0));
    let price = if facts.infrequent_access { INFREQUENT_ACCESS } else { 1.0 };
    Estimate {
        items: work.items,
        failed,
        read_units: work.read_units.ceil(),
        write_units: work.write_units.ceil(),
        seconds: longest.as_ref().map(|(s, _)| *s),
        limited_by: longest.map_or_else(|| "nothing known bounds it".to_owned(), |(_, why)| why),
        on_demand_usd: facts
            .provisioned
            .is_none()
            .then(|| price * (work.write_units * WRITE_USD_PER_MILLION + work.read_units * READ_USD_PER_MILLION) / 1e6),
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} items", self.items)?;
        if let Some(failed) = self.failed.filter(|n| *n > 0) {
            write!(f, " ({failed} would fail)")?;
        }
        match self.seconds {
            Some(s) => write!(f, ", {} ({})", duration(s), self.limited_by)?,
            None => write!(f, ", time not known")?,
        }
        write!(f, ", {:.0} read units, {:.0} write units", self.read_units, self.write_units)?;
        match self.on_demand_usd {
            Some(usd) if usd < 0.01 => write!(f, ", less than $0.01 on demand"),
            Some(usd) => write!(f, ", ${usd:.2} on demand"),
            None => write!(f, " of the provisioned capacity"),
        }
    }
}

/// Seconds for people.
pub fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_demand() -> TableFacts {
        TableFacts {
            table: "t".into(),
            item_count: 1_000_000,
            size_bytes: 300_000_000,
            provisioned: None,
            warm: None,
            infrequent_access: false,
        }
    }

    #[test]
    fn a_pass_costs_its_units_on_demand_and_takes_the_longest_of_its_bounds() {
        let work = Work { items: 1_000_000, read_units: scan_units(300_000_000.0, false), write_units: 1_000_000.0 };
        assert_eq!(work.read_units, 36_621.5);
        let e = estimate(work, &on_demand(), Some((2000.0, "measured".into())), Some(10));
        assert_eq!(e.seconds, Some(500.0));
        assert_eq!(e.limited_by, "measured");
        let usd = e.on_demand_usd.unwrap();
        assert!((usd - (0.625 + 36_621.5 * 0.125 / 1e6)).abs() < 1e-9, "{usd}");
        assert_eq!(
            e.to_string(),
            "1000000 items (10 would fail), 8 min (measured), 36622 read units, 1000000 write units, $0.63 on demand"
        );

        let provisioned = TableFacts { provisioned: Some(UnitsPerSecond { read: 100, write: 500 }), ..on_demand() };
        let e = estimate(work, &provisioned, Some((2000.0, "measured".into())), None);
        assert_eq!(e.seconds, Some(2000.0), "1,000,000 write units at 500 a second");
        assert!(e.limited_by.starts_with("its provisioned capacity"), "{}", e.limited_by);
        assert_eq!(e.on_demand_usd, None);

        let unknown = estimate(work, &on_demand(), None, None);
        assert_eq!(unknown.seconds, None);
        assert_eq!(on_demand().write_units_per_item(), 1.0);
        assert_eq!(TableFacts { size_bytes: 2_500_000_000, ..on_demand() }.write_units_per_item(), 3.0);
    }
}
