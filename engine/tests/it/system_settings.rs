//! A system's settings in the registry (T2–T5): one transaction per save, refusals that
//! change nothing, estimates that follow their arrays.

use rusqlite::params;
use sunfleet_engine::Error;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::{
    ArrayLayout, ArraySpec, DeviceDetails, EstimateSettings, InstallerSettings, KioskContent,
    LaborClaim, NewArray, NewCompany, NewDevice, NewSystem, Placement, Registry, insert_array,
    insert_company, insert_device, insert_system,
};
use sunfleet_engine::time::CivilDate;

struct Site {
    registry: Registry,
    _dir: tempfile::TempDir,
    system_id: i64,
    other_system: i64,
    array_id: i64,
    micros: Vec<i64>,
    user: i64,
}

/// One system with an array of 1 × 3 holding two microinverters (a third not placed), a
/// battery, and a second system.
fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("registry.sqlite3")).unwrap();
    let (system_id, other_system, array_id, micros, user) = registry
        .transaction("site", |tx| {
            let company = insert_company(
                tx,
                &NewCompany {
                    name: "Soleil Pro".into(),
                    kind: "installer",
                    city: "Lyon".into(),
                    region: String::new(),
                    country: "FR".into(),
                    phone: String::new(),
                    email: String::new(),
                    created_us: 0,
                },
            )?;
            let system = |name: &str| NewSystem {
                id: None,
                name: name.into(),
                kind: "residential",
                installer_id: company,
                owner_id: None,
                installer_reference: String::new(),
                third_party_owned: false,
                street_address: String::new(),
                city: String::new(),
                region: String::new(),
                postal_code: String::new(),
                country: String::new(),
                latitude: 45.0,
                longitude: 5.0,
                elevation_m: 0.0,
                time_zone: "Europe/Paris".into(),
                stage: "ready",
                internet_connection: "wifi",
                install_date: None,
                operational_date: None,
                annual_degradation_pct: 0.5,
                threshold_pct: 90,
                threshold_days: 90,
                created_us: 0,
            };
            let system_id = insert_system(tx, &system("Maison"))?;
            let other_system = insert_system(tx, &system("Voisin"))?;
            let array_id = insert_array(
                tx,
                &NewArray {
                    system_id,
                    name: "Sud".into(),
                    tilt_deg: 30.0,
                    azimuth_deg: 180.0,
                    grid_rows: 1,
                    grid_columns: 3,
                    position: 0,
                },
            )?;
            let mut micros = Vec::new();
            for i in 0..3u16 {
                let id = insert_device(
                    tx,
                    &NewDevice {
                        serial: Serial::new(100 + u64::from(i)).unwrap(),
                        system_id,
                        model: String::new(),
                        firmware: String::new(),
                        details: DeviceDetails::Microinverter {
                            phase: 'A',
                            array_id,
                            grid_row: 0,
                            grid_column: i,
                            module_stc_w: 400.0,
                        },
                        state: "active",
                        provisioned_us: 0,
                    },
                )?;
                micros.push(id);
            }
            tx.execute(
                "UPDATE devices SET array_id = NULL, grid_row = NULL, grid_column = NULL
                  WHERE id = ?1",
                params![micros[2]],
            )
            .unwrap();
            insert_device(
                tx,
                &NewDevice {
                    serial: Serial::new(900).unwrap(),
                    system_id,
                    model: String::new(),
                    firmware: String::new(),
                    details: DeviceDetails::Battery {
                        capacity_wh: 5000.0,
                    },
                    state: "active",
                    provisioned_us: 0,
                },
            )?;
            tx.execute(
                "INSERT INTO users (email, given_name, family_name, role, company_id, created_us)
                 VALUES ('i@example.com', 'I', 'N', 'installer_user', ?1, 0)",
                params![company],
            )
            .unwrap();
            Ok((
                system_id,
                other_system,
                array_id,
                micros,
                tx.last_insert_rowid(),
            ))
        })
        .unwrap();
    Site {
        registry,
        _dir: dir,
        system_id,
        other_system,
        array_id,
        micros,
        user,
    }
}

fn places(site: &Site) -> Vec<Option<(i64, u16, u16)>> {
    let devices = site.registry.micros_and_batteries(site.system_id).unwrap();
    site.micros
        .iter()
        .map(|id| devices.iter().find(|d| d.id == *id).unwrap().place)
        .collect()
}

#[test]
fn a_layout_moves_swaps_and_creates_arrays_in_one_transaction() {
    let site = site();
    let layout = ArrayLayout {
        arrays: vec![
            ArraySpec {
                id: Some(site.array_id),
                name: "Sud-Ouest".into(),
                tilt_deg: 20.0,
                azimuth_deg: 200.0,
                grid_rows: 1,
                grid_columns: 2,
            },
            ArraySpec {
                id: None,
                name: "Garage".into(),
                tilt_deg: 10.0,
                azimuth_deg: 90.0,
                grid_rows: 2,
                grid_columns: 1,
            },
        ],
        deleted: Vec::new(),
        // The first two swap cells; the third goes to the new array.
        placements: vec![
            Placement {
                device_id: site.micros[0],
                cell: Some((0, 0, 1)),
            },
            Placement {
                device_id: site.micros[1],
                cell: Some((0, 0, 0)),
            },
            Placement {
                device_id: site.micros[2],
                cell: Some((1, 1, 0)),
            },
        ],
    };
    site.registry
        .save_array_layout(site.system_id, &layout, site.user, 1)
        .unwrap();
    let arrays = site.registry.system_arrays(site.system_id).unwrap();
    assert_eq!(
        arrays
            .iter()
            .map(|a| (a.name.as_str(), a.grid_columns, a.modules))
            .collect::<Vec<_>>(),
        vec![("Sud-Ouest", 2, 2), ("Garage", 1, 1)]
    );
    let garage = arrays[1].id;
    assert_eq!(
        places(&site),
        vec![
            Some((site.array_id, 0, 1)),
            Some((site.array_id, 0, 0)),
            Some((garage, 1, 0))
        ]
    );
    let audit = site.registry.count("audit_log").unwrap();
    assert_eq!(audit, 1);

    // Deleting an array takes its estimate with it; its microinverters were moved.
    site.registry
        .save_estimate_settings(
            site.system_id,
            &EstimateSettings {
                level: "array",
                system_monthly_kwh: None,
                array_monthly_kwh: vec![(garage, Some([10.0; 12]))],
                annual_degradation_pct: 0.5,
                threshold_pct: 90,
                threshold_days: 90,
            },
            site.user,
            2,
        )
        .unwrap();
    assert!(
        site.registry
            .system_estimates(site.system_id)
            .unwrap()
            .contains_key(&garage)
    );
    let mut without_garage = layout.clone();
    without_garage.arrays.truncate(1);
    without_garage.deleted = vec![garage];
    without_garage.placements[2].cell = None;
    site.registry
        .save_array_layout(site.system_id, &without_garage, site.user, 3)
        .unwrap();
    assert_eq!(
        site.registry.system_arrays(site.system_id).unwrap().len(),
        1
    );
    assert!(
        site.registry
            .system_estimates(site.system_id)
            .unwrap()
            .is_empty()
    );
    assert_eq!(places(&site)[2], None);
}

#[test]
fn a_refused_layout_changes_nothing() {
    let site = site();
    let before = (
        places(&site),
        site.registry.system_arrays(site.system_id).unwrap(),
    );
    let spec = ArraySpec {
        id: Some(site.array_id),
        name: "Renamed".into(),
        tilt_deg: 30.0,
        azimuth_deg: 180.0,
        grid_rows: 1,
        grid_columns: 3,
    };
    // Two microinverters in one cell.
    let overlap = ArrayLayout {
        arrays: vec![spec.clone()],
        deleted: Vec::new(),
        placements: vec![
            Placement {
                device_id: site.micros[0],
                cell: Some((0, 0, 2)),
            },
            Placement {
                device_id: site.micros[2],
                cell: Some((0, 0, 2)),
            },
        ],
    };
    assert!(matches!(
        site.registry
            .save_array_layout(site.system_id, &overlap, site.user, 1),
        Err(Error::Registry { .. })
    ));
    // A cell outside the grid.
    let outside = ArrayLayout {
        placements: vec![Placement {
            device_id: site.micros[2],
            cell: Some((0, 1, 0)),
        }],
        ..overlap.clone()
    };
    assert!(matches!(
        site.registry
            .save_array_layout(site.system_id, &outside, site.user, 1),
        Err(Error::OutsideGrid { .. })
    ));
    // Another system's array or microinverter.
    let foreign = ArrayLayout {
        arrays: vec![spec.clone()],
        deleted: Vec::new(),
        placements: vec![Placement {
            device_id: site.micros[0],
            cell: Some((0, 0, 0)),
        }],
    };
    assert!(matches!(
        site.registry
            .save_array_layout(site.other_system, &foreign, site.user, 1),
        Err(Error::NotOfSystem { .. })
    ));
    let after = (
        places(&site),
        site.registry.system_arrays(site.system_id).unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(site.registry.count("audit_log").unwrap(), 0);
}

#[test]
fn settings_and_estimates_are_saved_and_removed() {
    let site = site();
    let operational = "2025-04-01".parse::<CivilDate>().unwrap();
    site.registry
        .save_installer_settings(
            site.system_id,
            &InstallerSettings {
                installer_reference: "SP-1".into(),
                other_references: "EDF 42".into(),
                internet_connection: "cellular",
                attachment_type: "rack_rail".into(),
                operational_date: Some(operational),
                weather_enabled: false,
                production_source: "microinverters",
                kiosk_content: KioskContent {
                    benefits: false,
                    ..KioskContent::default()
                },
            },
            site.user,
            1,
        )
        .unwrap();
    let details = site
        .registry
        .system_details(site.system_id)
        .unwrap()
        .unwrap();
    assert_eq!(details.installer_reference, "SP-1");
    assert_eq!(details.internet_connection, "cellular");
    assert_eq!(details.operational_date.as_deref(), Some("2025-04-01"));
    assert!(!details.weather_enabled);
    assert!(!details.kiosk_content.benefits && details.kiosk_content.description);

    let estimate = |months: Option<[f64; 12]>| EstimateSettings {
        level: "system",
        system_monthly_kwh: months,
        array_monthly_kwh: Vec::new(),
        annual_degradation_pct: 1.25,
        threshold_pct: 75,
        threshold_days: 30,
    };
    site.registry
        .save_estimate_settings(site.system_id, &estimate(Some([100.0; 12])), site.user, 2)
        .unwrap();
    assert_eq!(
        site.registry.monthly_estimates().unwrap()[&site.system_id],
        [100.0; 12]
    );
    let details = site
        .registry
        .system_details(site.system_id)
        .unwrap()
        .unwrap();
    assert_eq!((details.threshold_pct, details.threshold_days), (75, 30));
    assert_eq!(details.annual_degradation_pct, 1.25);
    site.registry
        .save_estimate_settings(site.system_id, &estimate(None), site.user, 3)
        .unwrap();
    assert!(
        !site
            .registry
            .monthly_estimates()
            .unwrap()
            .contains_key(&site.system_id)
    );
    // Another system's array is refused.
    let mut foreign = estimate(None);
    foreign.array_monthly_kwh = vec![(site.array_id, None)];
    assert!(matches!(
        site.registry
            .save_estimate_settings(site.other_system, &foreign, site.user, 4),
        Err(Error::NotOfSystem { .. })
    ));
}

#[test]
fn a_labour_claim_becomes_a_new_service_request() {
    let site = site();
    let claim = |device_id| LaborClaim {
        device_id,
        serial: 100,
        defect_date: "2026-01-10".parse().unwrap(),
        claim_date: "2026-01-20".parse().unwrap(),
        labor_hours: 2.5,
        return_done: true,
        description: "Replaced".into(),
        return_request: None,
    };
    let company: i64 = site
        .registry
        .read(|c| {
            c.query_row("SELECT id FROM companies", [], |r| r.get(0))
                .map_err(|source| Error::Registry {
                    context: "company".into(),
                    source,
                })
        })
        .unwrap();
    let id = site
        .registry
        .submit_labor_claim(
            site.system_id,
            company,
            &claim(site.micros[0]),
            site.user,
            5,
        )
        .unwrap();
    let (kind, state, details): (String, String, String) = site
        .registry
        .read(|c| {
            c.query_row(
                "SELECT kind, state, details FROM service_requests WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|source| Error::Registry {
                context: "claim".into(),
                source,
            })
        })
        .unwrap();
    assert_eq!((kind.as_str(), state.as_str()), ("labor_claim", "new"));
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["defect_date"], "2026-01-10");
    assert_eq!(details["labor_hours"], 2.5);
    // A microinverter of another system is refused.
    assert!(matches!(
        site.registry.submit_labor_claim(
            site.other_system,
            company,
            &claim(site.micros[0]),
            site.user,
            6
        ),
        Err(Error::NotOfSystem { .. })
    ));
    assert_eq!(site.registry.count("service_requests").unwrap(), 1);
}
