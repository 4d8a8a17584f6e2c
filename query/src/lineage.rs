//! A device's lineage: the units it replaced (R2), directly or through earlier
//! replacements, read from the registry's `replaced_by`. A replacement's history continues
//! theirs — its power curve, lifetime energy and array-view cell include their readings —
//! without copying a row: the queries read the readings of the whole lineage.

use std::collections::{BTreeSet, HashMap};

use crate::{QueryEngine, QueryError, Scope};

/// Each device that replaced others → those others (every earlier generation), ascending.
pub type Predecessors = HashMap<u32, Vec<u32>>;

impl QueryEngine {
    /// The predecessors of the devices of `system` (only devices that replaced some appear).
    /// The caller has checked the system is visible to whoever asks.
    pub async fn predecessors(&self, system: u32) -> Result<Predecessors, QueryError> {
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(id AS BIGINT), CAST(replaced_by AS BIGINT) FROM devices
                     WHERE system_id = {system} AND replaced_by IS NOT NULL"
                ),
            )
            .await?;
        let successor: HashMap<u32, u32> = answer
            .i64s(0)
            .into_iter()
            .zip(answer.i64s(1))
            .filter_map(|(old, new)| Some((u32::try_from(old?).ok()?, u32::try_from(new?).ok()?)))
            .collect();
        Ok(predecessors_of(&successor))
    }

    /// `device` and its predecessors.
    pub async fn lineage(&self, system: u32, device: u32) -> Result<Vec<u32>, QueryError> {
        let mut ids = vec![device];
        ids.extend(
            self.predecessors(system)
                .await?
                .remove(&device)
                .unwrap_or_default(),
        );
        Ok(ids)
    }
}

/// Predecessors from each replaced device's successor. A cycle (which the registry never
/// writes) stops the walk instead of looping.
pub fn predecessors_of(successor: &HashMap<u32, u32>) -> Predecessors {
    let mut predecessors: HashMap<u32, BTreeSet<u32>> = HashMap::new();
    for (&old, &new) in successor {
        let mut current = new;
        for _ in 0..=successor.len() {
            if current == old {
                break;
            }
            predecessors.entry(current).or_default().insert(old);
            match successor.get(&current) {
                Some(&next) => current = next,
                None => break,
            }
        }
    }
    predecessors
        .into_iter()
        .map(|(device, olds)| (device, olds.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_inherits_every_earlier_generation() {
        // 1 was replaced by 2, which was replaced by 3; 7 by 8.
        let successor: HashMap<u32, u32> = [(1, 2), (2, 3), (7, 8)].into_iter().collect();
        let predecessors = predecessors_of(&successor);
        assert_eq!(predecessors[&3], vec![1, 2]);
        assert_eq!(predecessors[&2], vec![1]);
        assert_eq!(predecessors[&8], vec![7]);
        assert!(!predecessors.contains_key(&1));
        // A cycle ends.
        let looped: HashMap<u32, u32> = [(1, 2), (2, 1)].into_iter().collect();
        let predecessors = predecessors_of(&looped);
        assert_eq!(predecessors[&2], vec![1]);
        assert_eq!(predecessors[&1], vec![2]);
    }
}
