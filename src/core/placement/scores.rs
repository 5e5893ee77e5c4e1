//! The executors ordered by score, so that a placement finds its best executor without a pass over all of them.
//!
//! A score is the utilization after placing, `(used + cost) / capacity`: it depends on the task's cost, so there is
//! one order per cost, each built on the first placement of that cost (costs 1 to [`COSTS`]; a larger cost, rare,
//! is placed by the full pass). Each order maps a score to the executor slots that have it, in slot order, so the
//! least-loaded choice is the first bucket, the bin-pack choice the last one at or below 1, and its ties are that
//! bucket: the placer draws among them exactly as the full pass does, so both give the same executor for the same
//! draw (`same_choice_as_the_full_pass` holds them to it).
//!
//! A change of an executor's usage is applied to the orders at the next placement, not at once: a reservation
//! given back before then (the report that counts its task, a placement released at once) moves nothing.
//!
//! An executor of capacity 0 is never filed: nothing fits on it.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::{BitSet, Strategy};
use crate::core::rng::Rng;

/// The largest cost with an order of its own.
pub(super) const COSTS: u32 = 8;

/// `(used + cost) / capacity`, compared exactly (by cross-multiplication, in 128 bits).
#[derive(Clone, Copy, Debug)]
struct Score {
    num: u64,
    den: u64,
}

impl Score {
    const ONE: Score = Score { num: 1, den: 1 };

    fn of(capacity: u32, used: u64, cost: u32) -> Score {
        Score { num: used + u64::from(cost), den: u64::from(capacity.max(1)) }
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Score) -> Ordering {
        (u128::from(self.num) * u128::from(other.den)).cmp(&(u128::from(other.num) * u128::from(self.den)))
    }
}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Score) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Score {
    fn eq(&self, other: &Score) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

/// One cost's order: score → slots with it, ascending.
type Order = BTreeMap<Score, Vec<u32>>;

#[derive(Clone, Debug, Default)]
pub(super) struct Scores {
    /// Per slot: the (capacity, used) the orders file it under, or `None` (not schedulable, or capacity 0).
    filed: Vec<Option<(u32, u64)>>,
    /// Per slot: what it is now, once the changes since the last read are applied; and whether it changed.
    now: Vec<(Option<(u32, u64)>, bool)>,
    /// The slots changed since the orders were last read, applied at the next read: a reservation given back
    /// before then (a report that counts the task it held slots for) moves nothing.
    changed: Vec<usize>,
    /// Index `cost - 1`: that cost's order, once built.
    orders: Vec<Option<Order>>,
}

impl Scores {
    /// Files slot `i` under `key` (its capacity and usage), or takes it out with `None` (applied at the next read).
    pub(super) fn set(&mut self, i: usize, key: Option<(u32, u64)>) {
        let key = key.filter(|(capacity, _)| *capacity > 0);
        if self.now.len() <= i {
            self.now.resize(i + 1, (None, false));
            self.filed.resize(i + 1, None);
        }
        let (now, changed) = &mut self.now[i];
        *now = key;
        if !*changed {
            *changed = true;
            self.changed.push(i);
        }
    }

    /// Moves every slot changed since the last read to where it is now, in every built order.
    fn apply(&mut self) {
        for i in std::mem::take(&mut self.changed) {
            let (key, changed) = &mut self.now[i];
            *changed = false;
            let (old, key) = (std::mem::replace(&mut self.filed[i], *key), *key);
            if old == key {
                continue;
            }
            let slot = i as u32;
            for (c, order) in self.orders.iter_mut().enumerate() {
                let Some(order) = order else { continue };
                let cost = c as u32 + 1;
                if let Some((capacity, used)) = old {
                    take(order, Score::of(capacity, used, cost), slot);
                }
                if let Some((capacity, used)) = key {
                    put(order, Score::of(capacity, used, cost), slot);
                }
            }
        }
    }

    /// The slot for a task of `cost` (1 to [`COSTS`]): one of those tied for the best score among the slots it
    /// fits on within `among` (every filed slot when `None`), drawn with one draw of `rng` in slot order, as the
    /// full pass draws; `None`, with no draw, when it fits nowhere.
    pub(super) fn pick(
        &mut self,
        cost: u32,
        strategy: Strategy,
        among: Option<&BitSet>,
        rng: &mut impl Rng,
    ) -> Option<u32> {
        self.apply();
        let order = self.order(cost);
        let fitting = order.range(..=Score::ONE);
        let within = |slot: &u32| among.is_none_or(|set| set.contains(*slot as usize));
        let ties = |slots: &Vec<u32>| match among {
            None => slots.len(),
            Some(_) => slots.iter().filter(|s| within(s)).count(),
        };
        let tied = match strategy {
            Strategy::LeastLoaded => fitting.map(|(_, slots)| (ties(slots), slots)).find(|(n, _)| *n > 0),
            Strategy::BinPack => fitting.rev().map(|(_, slots)| (ties(slots), slots)).find(|(n, _)| *n > 0),
        };
        let (n, slots) = tied?;
        let k = rng.below(n as u64) as usize;
        slots.iter().filter(|s| within(s)).nth(k).copied()
    }

    /// The order of `cost`, built now if it was not.
    fn order(&mut self, cost: u32) -> &Order {
        let c = (cost - 1) as usize;
        if self.orders.len() <= c {
            self.orders.resize(c + 1, None);
        }
        let filed = &self.filed;
        self.orders[c].get_or_insert_with(|| {
            let mut order = Order::new();
            for (i, key) in filed.iter().enumerate() {
                if let Some((capacity, used)) = key {
                    put(&mut order, Score::of(*capacity, *used, cost), i as u32);
                }
            }
            order
        })
    }

    /// Checks that slot `i` is filed under `key` (as [`Scores::set`] would file it) in every built order; and, given
    /// how many slots should be filed, that no order holds any other.
    pub(super) fn check(&self, expected: &[(usize, Option<(u32, u64)>)]) -> Result<(), String> {
        if self.changed.len() != self.now.iter().filter(|(_, changed)| *changed).count() {
            return Err("placement: the score orders lost track of a changed slot".to_owned());
        }
        let mut applied = self.clone();
        applied.apply();
        applied.check_applied(expected)
    }

    fn check_applied(&self, expected: &[(usize, Option<(u32, u64)>)]) -> Result<(), String> {
        let mut filed = 0usize;
        for &(i, key) in expected {
            let key = key.filter(|(capacity, _)| *capacity > 0);
            if self.filed.get(i).copied().flatten() != key {
                return Err(format!("placement: slot {i} is scored as {:?}, not {key:?}", self.filed.get(i)));
            }
            let Some((capacity, used)) = key else { continue };
            filed += 1;
            for (c, order) in self.orders.iter().enumerate() {
                let Some(order) = order else { continue };
                let score = Score::of(capacity, used, c as u32 + 1);
                if order.get(&score).is_none_or(|slots| slots.binary_search(&(i as u32)).is_err()) {
                    return Err(format!("placement: slot {i} is missing from the order of cost {}", c + 1));
                }
            }
        }
        if self.filed.iter().flatten().count() != filed {
            return Err("placement: a slot no executor holds is scored".to_owned());
        }
        for (c, order) in self.orders.iter().enumerate() {
            let Some(order) = order else { continue };
            let n: usize = order.values().map(Vec::len).sum();
            if n != filed || order.values().any(|s| s.is_empty() || s.windows(2).any(|w| w[0] >= w[1])) {
                return Err(format!("placement: the order of cost {} holds {n} slots for {filed}", c + 1));
            }
        }
        Ok(())
    }
}

fn put(order: &mut Order, score: Score, slot: u32) {
    let slots = order.entry(score).or_default();
    if let Err(at) = slots.binary_search(&slot) {
        slots.insert(at, slot);
    }
}

fn take(order: &mut Order, score: Score, slot: u32) {
    if let Some(slots) = order.get_mut(&score) {
        if let Ok(at) = slots.binary_search(&slot) {
            slots.remove(at);
        }
        if slots.is_empty() {
            order.remove(&score);
        }
    }
}
