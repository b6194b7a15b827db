//! Budgets and cost accountability. Limits are set per run, per agent or globally, in a cost dimension, for the
//! whole lifetime or per UTC day. Deciding *reserves* the estimate; the outcome *settles* the actual cost and
//! releases the rest. All of it is derived from `BudgetSet` / `BudgetReserved` / `BudgetSettled` /
//! `BudgetReleased` events, and reservations are checked under the runtime's serialised decision, so the sum of
//! reservations never exceeds a limit.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};
use crate::ids::{EventId, RunId, Timestamp};
use crate::principal::Principal;
use crate::proposal::{Cost, Dimension};

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// Whom a budget limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum BudgetScope {
    /// One run.
    Run {
        /// The run.
        run_id: RunId,
    },
    /// One principal (usually an agent), across runs.
    Agent {
        /// The principal.
        principal: Principal,
    },
    /// Everything in the ledger.
    Global,
}

/// The window a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// For ever.
    #[default]
    Total,
    /// Per UTC day.
    Day,
}

impl Period {
    /// The bucket a time falls in (0 for `Total`, the day number for `Day`).
    pub fn bucket(self, t: Timestamp) -> i64 {
        match self {
            Self::Total => 0,
            Self::Day => t.0.div_euclid(DAY_MICROS),
        }
    }
}

/// One budget: scope, dimension and period.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BudgetKey {
    /// Whom it limits.
    #[serde(flatten)]
    pub scope: BudgetScope,
    /// What it counts.
    pub dimension: Dimension,
    /// Over what window.
    #[serde(default)]
    pub period: Period,
}

impl fmt::Display for BudgetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            BudgetScope::Run { run_id } => write!(f, "run:{run_id}")?,
            BudgetScope::Agent { principal } => write!(f, "agent:{principal}")?,
            BudgetScope::Global => f.write_str("global")?,
        }
        write!(f, "/{}", self.dimension)?;
        if self.period == Period::Day {
            f.write_str("/day")?;
        }
        Ok(())
    }
}

impl FromStr for BudgetScope {
    type Err = Rejection;
    /// `run:RUN_ID`, `agent:KIND:NAME` or `global`.
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let bad = || {
            Rejection::new(
                ErrorCode::BadBudget,
                format!("budget scope `{s}` must be run:RUN_ID, agent:KIND:NAME or global"),
            )
        };
        match s.trim() {
            "global" => Ok(Self::Global),
            other => match other.split_once(':') {
                Some(("run", id)) => Ok(Self::Run { run_id: id.parse().map_err(|_| bad())? }),
                Some(("agent", p)) => Ok(Self::Agent { principal: p.parse().map_err(|_| bad())? }),
                _ => Err(bad()),
            },
        }
    }
}

/// Payload of `BudgetSet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSet {
    /// Which budget.
    #[serde(flatten)]
    pub key: BudgetKey,
    /// The limit (in the dimension's unit).
    pub limit: u64,
}

/// One budget line charged by a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// Which budget.
    pub budget: BudgetKey,
    /// The period bucket (day number, or 0).
    pub bucket: i64,
    /// Amount reserved.
    pub amount: u64,
}

/// Payload of `BudgetReserved`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetReserved {
    /// The proposal the reservation is for.
    pub proposal_id: EventId,
    /// Every budget charged (amount 0 where the estimate has nothing in that dimension, so settlement of an actual
    /// cost still lands on it).
    pub charges: Vec<Charge>,
}

/// Payload of `BudgetSettled` (actual cost) and `BudgetReleased` (no cost, `actual` empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSettled {
    /// The proposal whose reservation is settled.
    pub proposal_id: EventId,
    /// The actual cost.
    #[serde(default)]
    pub actual: Cost,
    /// Why (for releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A budget's derived state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BudgetLine {
    /// The limit.
    pub limit: u64,
    /// Settled spend per bucket.
    pub spent: BTreeMap<i64, u64>,
    /// Open reservations per bucket.
    pub reserved: BTreeMap<i64, u64>,
}

impl BudgetLine {
    /// Spent + reserved in a bucket.
    pub fn used(&self, bucket: i64) -> u64 {
        self.spent.get(&bucket).copied().unwrap_or(0).saturating_add(self.reserved.get(&bucket).copied().unwrap_or(0))
    }
}

/// Why a reservation does not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetExceeded {
    /// The budget that would overflow.
    pub budget: BudgetKey,
    /// Its limit.
    pub limit: u64,
    /// Settled spend in the bucket.
    pub spent: u64,
    /// Open reservations in the bucket.
    pub reserved: u64,
    /// What the proposal asked for.
    pub requested: u64,
}

/// All budgets and open reservations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Budgets {
    #[serde(with = "crate::state::pairs")]
    lines: BTreeMap<BudgetKey, BudgetLine>,
    open: crate::hashed::HashedMap<EventId, Vec<Charge>>,
}

/// Where one budget line stands in the current period, as `ice budget show` and `GET /v1/budgets` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetUsage {
    /// `scope/dimension/period`.
    pub budget: String,
    /// The limit.
    pub limit: u64,
    /// Settled in the current period.
    pub spent: u64,
    /// Reserved by open permits in the current period.
    pub reserved: u64,
    /// What is left.
    pub left: u64,
}

impl Budgets {
    /// Every line's usage in the period `now` falls in.
    pub fn usage(&self, now: Timestamp) -> Vec<BudgetUsage> {
        self.lines
            .iter()
            .map(|(key, line)| {
                let bucket = key.period.bucket(now);
                let spent = line.spent.get(&bucket).copied().unwrap_or(0);
                let reserved = line.reserved.get(&bucket).copied().unwrap_or(0);
                BudgetUsage {
                    budget: key.to_string(),
                    limit: line.limit,
                    spent,
                    reserved,
                    left: line.limit.saturating_sub(spent.saturating_add(reserved)),
                }
            })
            .collect()
    }

    /// Every budget line.
    pub fn lines(&self) -> &BTreeMap<BudgetKey, BudgetLine> {
        &self.lines
    }

    /// Digest work ahead of [`Budgets::root_parts`].
    pub fn hash_changed(
        &self,
        into: &mut crate::hashed::Adoptions<crate::LedgerState>,
    ) -> Result<(), crate::error::Rejection> {
        self.open.hash_changed(into, |st| &st.authority().budgets().open)
    }

    /// Feeds the budgets' part of the state root to `h`: the lines canonically, open reservations by cached entry
    /// hashes (they accumulate with every allowed proposal not yet settled).
    pub fn root_parts(&self, h: &mut blake3::Hasher) -> Result<(), crate::error::Rejection> {
        let lines: Vec<(&BudgetKey, &BudgetLine)> = self.lines.iter().collect();
        let value = serde_json::to_value(&lines).map_err(|e| {
            crate::error::Rejection::new(
                crate::error::ErrorCode::BadPayloadStructure,
                format!("state cannot be encoded: {e}"),
            )
        })?;
        crate::state::hash_canonical("budget_lines", &value, h)?;
        self.open.digest("reservations", h)
    }

    /// The open reservation for a proposal.
    pub fn reservation(&self, proposal: EventId) -> Option<&[Charge]> {
        self.open.get(&proposal).map(Vec::as_slice)
    }

    /// Plans the charges for a proposal by `actor` in `run` at `now`, or says which budget would overflow.
    pub fn plan(
        &self,
        actor: &Principal,
        run: Option<RunId>,
        estimate: &Cost,
        now: Timestamp,
    ) -> Result<Vec<Charge>, BudgetExceeded> {
        let mut charges = Vec::new();
        for (key, line) in &self.lines {
            let applies = match &key.scope {
                BudgetScope::Run { run_id } => Some(*run_id) == run,
                BudgetScope::Agent { principal } => principal == actor,
                BudgetScope::Global => true,
            };
            if !applies {
                continue;
            }
            let bucket = key.period.bucket(now);
            let amount = estimate.get(key.dimension);
            let used = line.used(bucket);
            if used.saturating_add(amount) > line.limit {
                return Err(BudgetExceeded {
                    budget: key.clone(),
                    limit: line.limit,
                    spent: line.spent.get(&bucket).copied().unwrap_or(0),
                    reserved: line.reserved.get(&bucket).copied().unwrap_or(0),
                    requested: amount,
                });
            }
            charges.push(Charge { budget: key.clone(), bucket, amount });
        }
        Ok(charges)
    }

    /// Folds `BudgetSet`.
    pub fn apply_set(&mut self, set: &BudgetSet) {
        self.lines.entry(set.key.clone()).or_default().limit = set.limit;
    }

    /// Folds `BudgetReserved`.
    pub fn apply_reserved(&mut self, r: &BudgetReserved) {
        for c in &r.charges {
            let line = self.lines.entry(c.budget.clone()).or_default();
            *line.reserved.entry(c.bucket).or_default() += c.amount;
        }
        self.open.insert(r.proposal_id, r.charges.clone());
    }

    /// Folds `BudgetSettled` (spend `actual`) or `BudgetReleased` (spend nothing): the reservation closes.
    pub fn apply_settled(&mut self, s: &BudgetSettled) {
        let Some(charges) = self.open.remove(&s.proposal_id) else { return };
        for c in charges.iter() {
            let line = self.lines.entry(c.budget.clone()).or_default();
            let reserved = line.reserved.entry(c.bucket).or_default();
            *reserved = reserved.saturating_sub(c.amount);
            let spent = line.spent.entry(c.bucket).or_default();
            *spent = spent.saturating_add(s.actual.get(c.budget.dimension));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Principal {
        "agent:a".parse().unwrap()
    }

    #[test]
    fn reserve_until_full_then_settle_releases_the_rest() {
        let mut b = Budgets::default();
        let key = BudgetKey {
            scope: BudgetScope::Agent { principal: agent() },
            dimension: Dimension::Calls,
            period: Period::Total,
        };
        b.apply_set(&BudgetSet { key: key.clone(), limit: 3 });
        let est = Cost::of(Dimension::Calls, 2);
        let now = Timestamp(0);
        let charges = b.plan(&agent(), None, &est, now).unwrap();
        let p1 = EventId(uuid::Uuid::from_u64_pair(1, 1));
        b.apply_reserved(&BudgetReserved { proposal_id: p1, charges });
        let over = b.plan(&agent(), None, &est, now).unwrap_err();
        assert_eq!((over.spent, over.reserved, over.requested, over.limit), (0, 2, 2, 3));
        b.apply_settled(&BudgetSettled { proposal_id: p1, actual: Cost::of(Dimension::Calls, 1), reason: None });
        assert_eq!(b.lines()[&key].used(0), 1);
        assert!(b.plan(&agent(), None, &est, now).is_ok());
        // other agents are not limited by this budget
        assert!(b.plan(&"agent:b".parse().unwrap(), None, &Cost::of(Dimension::Calls, 99), now).is_ok());
    }

    #[test]
    fn daily_budgets_reset_each_utc_day() {
        let mut b = Budgets::default();
        let key = BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Tokens, period: Period::Day };
        b.apply_set(&BudgetSet { key, limit: 10 });
        let day1 = Timestamp::from_secs(86_400 * 20_000 + 5);
        let charges = b.plan(&agent(), None, &Cost::of(Dimension::Tokens, 10), day1).unwrap();
        b.apply_reserved(&BudgetReserved { proposal_id: EventId(uuid::Uuid::nil()), charges });
        assert!(b.plan(&agent(), None, &Cost::of(Dimension::Tokens, 1), day1).is_err());
        assert!(b.plan(&agent(), None, &Cost::of(Dimension::Tokens, 10), day1.plus_micros(DAY_MICROS)).is_ok());
    }

    #[test]
    fn scopes_parse() {
        assert_eq!("global".parse::<BudgetScope>().unwrap(), BudgetScope::Global);
        assert!(matches!("agent:agent:x".parse::<BudgetScope>().unwrap(), BudgetScope::Agent { .. }));
        assert!("team:x".parse::<BudgetScope>().is_err());
    }
}
