//! Activation moves on by itself (F3): after each round of fleet checks, microinverters a
//! gateway reported that the registry does not know are registered under its system, and
//! every system not yet Ready has the checklist steps its data now proves completed.
//!
//! - gateways reported: a gateway of the system connected or its devices sent readings;
//! - good communication: readings arrived within the past hour;
//! - operation verified: the expected number of microinverters (or every registered one)
//!   reported within the past hour and the system produced;
//! - arrays built: every microinverter has a place in an array;
//! - system operational: 24 hours past the permission-to-operate date, status normal;
//! - owner access granted: the owner gets a sign-in once the system is operational.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sunfleet_engine::activity::UnregisteredDevices;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::ActivatingSystem;

use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::scope::Scope;

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// What one activation round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivationRound {
    /// Systems that got newly reported microinverters.
    pub systems_with_new_devices: usize,
    /// Systems that completed at least one step.
    pub advanced: usize,
}

/// Recent telemetry of one system.
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    reporting_micros: u32,
    max_ac_power_w: f64,
}

/// Registers reported devices and advances every activating system at `now_us`.
pub async fn advance_activations(
    engine: &QueryEngine,
    unregistered: BTreeMap<Serial, UnregisteredDevices>,
    now_us: i64,
) -> Result<ActivationRound, QueryError> {
    let registry = Arc::clone(engine.registry());
    let directory = engine.store().directory().clone();
    let (new_devices, activating) = blocking(move || {
        let mut systems = Vec::new();
        for (gateway, devices) in &unregistered {
            let micros: Vec<Serial> = devices.micros.iter().copied().collect();
            if micros.is_empty() {
                continue;
            }
            if let Some(system) = registry.register_reported_micros(*gateway, &micros, now_us)? {
                registry.load_system_into(system, &directory)?;
                systems.push(system);
            }
        }
        Ok((systems, registry.activating_systems()?))
    })
    .await?;
    let mut round = ActivationRound {
        systems_with_new_devices: new_devices.len(),
        advanced: 0,
    };
    if activating.is_empty() {
        return Ok(round);
    }
    let recent = recent_telemetry(engine, &activating, now_us).await?;
    let mut advances = Vec::new();
    for system in &activating {
        let recent = recent.get(&system.system_id).copied().unwrap_or_default();
        let steps = steps_now_done(
            system,
            recent,
            new_devices.contains(&system.system_id),
            now_us,
        );
        if !steps.is_empty() {
            advances.push((system.system_id, steps));
        }
    }
    round.advanced = advances.len();
    if advances.is_empty() {
        return Ok(round);
    }
    let registry = Arc::clone(engine.registry());
    blocking(move || {
        for (system, steps) in &advances {
            let stage = registry.complete_activation_steps(*system, steps, now_us)?;
            tracing::info!(system, ?steps, stage, "activation advanced");
        }
        Ok(())
    })
    .await?;
    Ok(round)
}

/// Microinverters that reported in the past hour and the highest power among them, per
/// activating system with registered microinverters.
async fn recent_telemetry(
    engine: &QueryEngine,
    activating: &[ActivatingSystem],
    now_us: i64,
) -> Result<HashMap<i64, Recent>, QueryError> {
    let ids: Vec<String> = activating
        .iter()
        .filter(|s| s.microinverters > 0)
        .map(|s| s.system_id.to_string())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT CAST(system_id AS BIGINT), CAST(count(DISTINCT device_id) AS BIGINT),
                CAST(max(ac_power_w) AS DOUBLE)
           FROM readings
          WHERE time > to_timestamp_micros({since}) AND time <= to_timestamp_micros({now_us})
            AND system_id IN ({ids})
          GROUP BY 1",
        since = now_us - HOUR_US,
        ids = ids.join(", ")
    );
    let answer = engine.internal_sql(&Scope::Fleet, &sql).await?;
    let systems = answer.i64s(0);
    let counts = answer.i64s(1);
    let powers = answer.f64s(2);
    Ok(systems
        .into_iter()
        .zip(counts)
        .zip(powers)
        .filter_map(|((system, count), power)| {
            Some((
                system?,
                Recent {
                    reporting_micros: u32::try_from(count.unwrap_or(0)).unwrap_or(u32::MAX),
                    max_ac_power_w: power.unwrap_or(0.0),
                },
            ))
        })
        .collect())
}

/// The steps `system` has not completed that its data proves now, in checklist order.
fn steps_now_done(
    system: &ActivatingSystem,
    recent: Recent,
    reported_new_devices: bool,
    now_us: i64,
) -> Vec<&'static str> {
    let mut done: Vec<&str> = system.steps.iter().map(String::as_str).collect();
    let mut new = Vec::new();
    let mut complete = |step: &'static str, proven: bool, done: &mut Vec<&str>| {
        if proven && !done.contains(&step) {
            done.push(step);
            new.push(step);
        }
    };
    let reporting = recent.reporting_micros > 0;
    complete(
        "gateways_reported",
        system.gateway_connected_us.is_some() || reporting || reported_new_devices,
        &mut done,
    );
    complete("good_communication", reporting, &mut done);
    let expected = system
        .expected_microinverters
        .unwrap_or(system.microinverters)
        .max(1);
    complete(
        "operation_verified",
        recent.reporting_micros >= expected && recent.max_ac_power_w > 0.0,
        &mut done,
    );
    let verified = done.contains(&"operation_verified");
    complete(
        "arrays_built",
        verified
            && system.microinverters > 0
            && system.placed_microinverters == system.microinverters,
        &mut done,
    );
    // 24 hours from the start of the permission-to-operate day at the site.
    let zone = jiff::tz::TimeZone::get(&system.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let operational_from = system
        .operational_date
        .as_deref()
        .and_then(|d| d.parse::<jiff::civil::Date>().ok())
        .and_then(|d| {
            zone.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                .ok()
        })
        .map(|start| start.as_microsecond() + DAY_US);
    complete(
        "system_operational",
        verified && system.status == "normal" && operational_from.is_some_and(|t| now_us >= t),
        &mut done,
    );
    let operational = done.contains(&"system_operational");
    complete(
        "owner_access_granted",
        operational && system.owner_email.is_some(),
        &mut done,
    );
    new
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, sunfleet_engine::Error> + Send + 'static,
) -> Result<T, QueryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueryError::Runtime {
            message: format!("activation: {e}"),
        })?
        .map_err(QueryError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(steps: &[&str]) -> ActivatingSystem {
        ActivatingSystem {
            system_id: 1,
            stage: "started".into(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            expected_microinverters: Some(4),
            operational_date: Some("2026-06-01".into()),
            time_zone: "UTC".into(),
            status: "normal".into(),
            gateway_connected_us: None,
            microinverters: 4,
            placed_microinverters: 4,
            owner_email: Some("owner@example.com".into()),
        }
    }

    #[test]
    fn steps_wait_for_their_evidence() {
        let entered = ["owner_entered", "location_entered", "gateways_entered"];
        let silent = Recent::default();
        assert!(steps_now_done(&system(&entered), silent, false, 0).is_empty());

        let three = Recent {
            reporting_micros: 3,
            max_ac_power_w: 200.0,
        };
        assert_eq!(
            steps_now_done(&system(&entered), three, false, 0),
            vec!["gateways_reported", "good_communication"],
            "three of four expected microinverters do not verify operation"
        );

        let night = Recent {
            reporting_micros: 4,
            max_ac_power_w: 0.0,
        };
        assert!(
            !steps_now_done(&system(&entered), night, false, 0).contains(&"operation_verified"),
            "operation is verified only once the system produces"
        );

        let producing = Recent {
            reporting_micros: 4,
            max_ac_power_w: 250.0,
        };
        let june_2 = sunfleet_engine::time::CivilDate::from_ymd(2026, 6, 2)
            .unwrap()
            .start_micros();
        assert_eq!(
            steps_now_done(&system(&entered), producing, false, june_2 - 1),
            vec![
                "gateways_reported",
                "good_communication",
                "operation_verified",
                "arrays_built"
            ],
            "operational only 24 hours after the permission-to-operate date"
        );
        assert_eq!(
            steps_now_done(&system(&entered), producing, false, june_2),
            vec![
                "gateways_reported",
                "good_communication",
                "operation_verified",
                "arrays_built",
                "system_operational",
                "owner_access_granted"
            ]
        );
    }
}
