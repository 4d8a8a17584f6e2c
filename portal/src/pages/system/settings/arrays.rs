//! Array details and the array builder (T5): the system's arrays (name, modules, azimuth,
//! tilt) and a page that creates, renames, re-orients, resizes and deletes them and puts
//! each microinverter in a cell of an array's grid. The builder is a plain form (an array,
//! a row and a column per microinverter); `array-builder.js` draws the grids over it so a
//! microinverter can be clicked then a cell clicked, or dragged there, and it fills in the
//! same fields. The View tab draws from what is saved here.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use sunfleet_engine::registry::{ArrayLayout, ArraySpec, Placement, SystemArray, SystemDevice};

use super::{Entered, SavedQuery, SectionLink, form_page, manageable, saved_notice, sections};
use crate::i18n::Lang;
use crate::pages::system::{SystemChrome, load};
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// The largest grid side and the most arrays a system may have.
pub const MAX_GRID_SIDE: u16 = 50;
pub const MAX_ARRAYS: usize = 50;
/// Blank "new array" slots the builder offers.
const NEW_SLOTS: usize = 2;

// ---------------------------------------------------------------- the list

pub struct ArrayLine {
    pub name: String,
    pub modules: u32,
    pub azimuth: String,
    pub tilt: String,
    pub grid: String,
}

#[derive(Template)]
#[template(path = "system/settings_arrays.html")]
struct ArraysPage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    arrays: Vec<ArrayLine>,
    unplaced: usize,
}

pub async fn arrays_page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<SavedQuery>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(&state, &principal, id, "settings").await?;
    let lang = principal.lang();
    let registry = Arc::clone(state.registry());
    let (arrays, devices) = blocking(move || {
        Ok((
            registry.system_arrays(i64::from(id))?,
            registry.micros_and_batteries(i64::from(id))?,
        ))
    })
    .await?;
    let page = ArraysPage {
        sections: sections(lang, id, "arrays"),
        notice: saved_notice(lang, query.saved.as_deref()),
        arrays: arrays
            .iter()
            .map(|a| ArrayLine {
                name: a.name.clone(),
                modules: a.modules,
                azimuth: lang.decimal(a.azimuth_deg, 0),
                tilt: lang.decimal(a.tilt_deg, 1),
                grid: format!("{} × {}", a.grid_rows, a.grid_columns),
            })
            .collect(),
        unplaced: in_service_micros(&devices)
            .filter(|d| d.place.is_none())
            .count(),
        chrome,
        system,
    };
    render("system settings arrays", &page)
}

fn in_service_micros(devices: &[SystemDevice]) -> impl Iterator<Item = &SystemDevice> {
    devices
        .iter()
        .filter(|d| d.kind == "microinverter" && d.state != "retired")
}

// ---------------------------------------------------------------- the form

fn slot_key(array_id: i64) -> String {
    format!("a{array_id}")
}

fn micro_field(device_id: i64, part: &str) -> String {
    format!("m{device_id}_{part}")
}

/// The builder's fields for what is saved.
fn layout_values(arrays: &[SystemArray], micros: &[&SystemDevice]) -> Entered {
    let mut form = Entered::default();
    for array in arrays {
        let key = slot_key(array.id);
        form.set(&format!("{key}_name"), array.name.clone());
        form.set(&format!("{key}_azimuth"), array.azimuth_deg.to_string());
        form.set(&format!("{key}_tilt"), array.tilt_deg.to_string());
        form.set(&format!("{key}_rows"), array.grid_rows.to_string());
        form.set(&format!("{key}_columns"), array.grid_columns.to_string());
    }
    for micro in micros {
        let (array, row, column) = match micro.place {
            Some((array, row, column)) => (
                slot_key(array),
                (row + 1).to_string(),
                (column + 1).to_string(),
            ),
            None => Default::default(),
        };
        form.set(&micro_field(micro.id, "array"), array);
        form.set(&micro_field(micro.id, "row"), row);
        form.set(&micro_field(micro.id, "column"), column);
    }
    form
}

/// The keys of the new-array slots posted (`n1`, `n2`, …), in order.
fn new_slot_keys(form: &Entered) -> Vec<String> {
    let mut numbers: BTreeSet<u32> = form
        .values
        .keys()
        .filter_map(|k| k.strip_prefix('n')?.strip_suffix("_name")?.parse().ok())
        .collect();
    // Some blank slots to add arrays with, after those posted.
    // Saturating: a posted `n4294967295_name` must not overflow (it then gets no blank slot).
    let next = numbers.last().map_or(1, |n| n.saturating_add(1));
    let blank = (0..)
        .map(|i| next + i)
        .take(NEW_SLOTS.saturating_sub(numbers.len()).max(1));
    numbers.extend(blank);
    numbers.into_iter().map(|n| format!("n{n}")).collect()
}

/// Checks the builder form against the system's arrays and microinverters in service;
/// `Err` carries the form with its errors.
pub fn parse_layout(
    mut form: Entered,
    arrays: &[SystemArray],
    micros: &[&SystemDevice],
    lang: Lang,
) -> Result<ArrayLayout, Entered> {
    let mut layout = ArrayLayout::default();
    // Slot key → index in `layout.arrays`.
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut deleted_keys = BTreeSet::new();
    // Arrays whose own fields were refused: their microinverters wait for them.
    let mut refused_keys = BTreeSet::new();
    for array in arrays {
        let key = slot_key(array.id);
        if form.checked(&format!("{key}_delete")) {
            layout.deleted.push(array.id);
            deleted_keys.insert(key);
            continue;
        }
        let spec = if form.has(&format!("{key}_name")) {
            array_spec(&mut form, &key, Some(array.id), lang)
        } else {
            // Not on the form (added meanwhile): kept as it is.
            Some(ArraySpec {
                id: Some(array.id),
                name: array.name.clone(),
                tilt_deg: array.tilt_deg,
                azimuth_deg: array.azimuth_deg,
                grid_rows: array.grid_rows,
                grid_columns: array.grid_columns,
            })
        };
        match spec {
            Some(spec) => {
                slots.insert(key, layout.arrays.len());
                layout.arrays.push(spec);
            }
            None => {
                refused_keys.insert(key);
            }
        }
    }
    let assigned: BTreeSet<String> = micros
        .iter()
        .map(|m| form.get(&micro_field(m.id, "array")).to_owned())
        .collect();
    for key in new_slot_keys(&form) {
        let in_use = !form.get(&format!("{key}_name")).is_empty() || assigned.contains(&key);
        if !in_use {
            continue;
        }
        match array_spec(&mut form, &key, None, lang) {
            Some(spec) => {
                slots.insert(key, layout.arrays.len());
                layout.arrays.push(spec);
            }
            None => {
                refused_keys.insert(key);
            }
        }
    }
    if layout.arrays.len() > MAX_ARRAYS {
        form.refuse(
            "layout",
            lang.fill("At most {} arrays per system.", &[&MAX_ARRAYS]),
        );
    }
    // Cell → the serial of the microinverter already there.
    let mut taken: HashMap<(usize, u16, u16), u64> = HashMap::new();
    for micro in micros {
        let array_field = micro_field(micro.id, "array");
        if !form.has(&array_field) {
            continue;
        }
        let error_field = format!("m{}", micro.id);
        let serial = format!("{:012}", micro.serial);
        let key = form.get(&array_field).to_owned();
        if key.is_empty() {
            layout.placements.push(Placement {
                device_id: micro.id,
                cell: None,
            });
            continue;
        }
        if deleted_keys.contains(&key) {
            form.refuse(
                error_field,
                lang.fill(
                    "{} is on an array you are deleting: move it, or leave it not placed.",
                    &[&serial],
                ),
            );
            continue;
        }
        let Some(&index) = slots.get(&key) else {
            // A refused array's own fields carry the reason.
            if !refused_keys.contains(&key) {
                form.refuse(
                    error_field,
                    lang.fill("{}: choose one of the arrays listed.", &[&serial]),
                );
            }
            continue;
        };
        let Some(array) = layout.arrays.get(index) else {
            continue;
        };
        let (rows, columns, name) = (array.grid_rows, array.grid_columns, array.name.clone());
        let cell = |form: &Entered, part: &str, limit: u16| -> Option<u16> {
            form.get(&micro_field(micro.id, part))
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=limit).contains(n))
        };
        match (cell(&form, "row", rows), cell(&form, "column", columns)) {
            (Some(row), Some(column)) => {
                let at = (index, row - 1, column - 1);
                if let Some(other) = taken.get(&at) {
                    form.refuse(
                        error_field,
                        lang.fill(
                            "{} and {} are both in row {}, column {} of {}: one cell holds one microinverter.",
                            &[&serial, &format!("{other:012}"), &row, &column, &name],
                        ),
                    );
                } else {
                    taken.insert(at, micro.serial);
                    layout.placements.push(Placement {
                        device_id: micro.id,
                        cell: Some(at),
                    });
                }
            }
            _ => form.refuse(
                error_field,
                lang.fill(
                    "{} is outside the grid of {}: choose a row from 1 to {} and a column from 1 to {}.",
                    &[&serial, &name, &rows, &columns],
                ),
            ),
        }
    }
    if form.has_errors() {
        Err(form)
    } else {
        Ok(layout)
    }
}

/// One array's fields, or `None` (with errors on the form) when one is wrong.
fn array_spec(form: &mut Entered, key: &str, id: Option<i64>, lang: Lang) -> Option<ArraySpec> {
    let field = |part: &str| format!("{key}_{part}");
    let name = form.get(&field("name")).to_owned();
    let mut fine = true;
    if name.is_empty() {
        form.refuse(field("name"), lang.t("Enter the array's name."));
        fine = false;
    } else if name.chars().count() > 100 {
        form.refuse(field("name"), lang.fill("At most {} characters.", &[&100]));
        fine = false;
    }
    let azimuth = form.number(
        &field("azimuth"),
        0.0..=360.0,
        lang.t("Azimuth: degrees from 0 to 360 (180 faces south)."),
    );
    let tilt = form.number(
        &field("tilt"),
        0.0..=90.0,
        lang.t("Tilt: degrees from 0 (flat) to 90."),
    );
    let mut side = |part: &str, message: &str| {
        let name = field(part);
        match form.get(&name).parse::<u16>() {
            Ok(n) if (1..=MAX_GRID_SIDE).contains(&n) => Some(n),
            _ => {
                form.refuse(name, lang.fill(message, &[&MAX_GRID_SIDE]));
                None
            }
        }
    };
    let rows = side("rows", "Rows: a whole number from 1 to {}.");
    let columns = side("columns", "Columns: a whole number from 1 to {}.");
    match (fine, azimuth, tilt, rows, columns) {
        (true, Some(azimuth_deg), Some(tilt_deg), Some(grid_rows), Some(grid_columns)) => {
            Some(ArraySpec {
                id,
                name,
                tilt_deg,
                azimuth_deg,
                grid_rows,
                grid_columns,
            })
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- the page

pub struct GridCell {
    pub device_id: i64,
    pub serial: String,
    pub short_serial: String,
}

pub struct Slot {
    pub key: String,
    pub is_new: bool,
    /// The array's name, or "New array n".
    pub legend: String,
    pub name: String,
    pub azimuth: String,
    pub tilt: String,
    pub rows: String,
    pub columns: String,
    pub delete: bool,
    pub name_error: Option<String>,
    pub azimuth_error: Option<String>,
    pub tilt_error: Option<String>,
    pub rows_error: Option<String>,
    pub columns_error: Option<String>,
    /// The grid as the form places microinverters now; empty while its size is not valid.
    pub grid: Vec<Vec<Option<GridCell>>>,
}

pub struct SlotChoice {
    pub key: String,
    pub label: String,
    pub selected: bool,
}

pub struct MicroRow {
    pub id: i64,
    pub serial: String,
    pub short_serial: String,
    pub array_field: String,
    pub row_field: String,
    pub column_field: String,
    pub row: String,
    pub column: String,
    pub choices: Vec<SlotChoice>,
    pub placed: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "system/settings_builder.html")]
struct BuilderPage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    form: Entered,
    slots: Vec<Slot>,
    micros: Vec<MicroRow>,
    unplaced: Vec<GridCell>,
    max_side: u16,
}

fn short(serial: u64) -> String {
    let text = format!("{serial:012}");
    text[text.len().saturating_sub(6)..].to_owned()
}

async fn builder(
    state: &AppState,
    principal: &Principal,
    id: u32,
    form: Option<Entered>,
    notice: Option<String>,
) -> Result<BuilderPage, PortalError> {
    let (chrome, system) = load(state, principal, id, "settings").await?;
    let lang = principal.lang();
    let registry = Arc::clone(state.registry());
    let (arrays, devices) = blocking(move || {
        Ok((
            registry.system_arrays(i64::from(id))?,
            registry.micros_and_batteries(i64::from(id))?,
        ))
    })
    .await?;
    let micros: Vec<&SystemDevice> = in_service_micros(&devices).collect();
    let form = form.unwrap_or_else(|| layout_values(&arrays, &micros));
    let mut keys: Vec<(String, Option<&SystemArray>)> =
        arrays.iter().map(|a| (slot_key(a.id), Some(a))).collect();
    keys.extend(new_slot_keys(&form).into_iter().map(|k| (k, None)));
    let side = |key: &str, part: &str| -> Option<u16> {
        form.get(&format!("{key}_{part}"))
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=MAX_GRID_SIDE).contains(n))
    };
    // Where the form puts each microinverter: slot key → cell → device.
    let mut placed: HashMap<(String, u16, u16), &SystemDevice> = HashMap::new();
    for micro in &micros {
        let key = form.get(&micro_field(micro.id, "array"));
        let at = |part| form.get(&micro_field(micro.id, part)).parse::<u16>().ok();
        if let (false, Some(row), Some(column)) = (key.is_empty(), at("row"), at("column")) {
            placed.entry((key.to_owned(), row, column)).or_insert(micro);
        }
    }
    let mut new_number = 0;
    let slots: Vec<Slot> = keys
        .iter()
        .map(|(key, array)| {
            let field = |part: &str| format!("{key}_{part}");
            let name = form.get(&field("name")).to_owned();
            let legend = match array {
                Some(array) => array.name.clone(),
                None => {
                    new_number += 1;
                    lang.fill("New array {}", &[&new_number])
                }
            };
            let is_new = array.is_none();
            let default = |part: &str, value: &str| {
                let typed = form.get(&field(part));
                if typed.is_empty() && is_new && !form.has(&field(part)) {
                    value.to_owned()
                } else {
                    typed.to_owned()
                }
            };
            let grid = match (side(key, "rows"), side(key, "columns")) {
                (Some(rows), Some(columns)) => (1..=rows)
                    .map(|row| {
                        (1..=columns)
                            .map(|column| {
                                placed.get(&(key.clone(), row, column)).map(|m| GridCell {
                                    device_id: m.id,
                                    serial: format!("{:012}", m.serial),
                                    short_serial: short(m.serial),
                                })
                            })
                            .collect()
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Slot {
                key: key.clone(),
                is_new,
                legend,
                azimuth: default("azimuth", "180"),
                tilt: default("tilt", "30"),
                rows: default("rows", "2"),
                columns: default("columns", "6"),
                delete: form.checked(&field("delete")),
                name_error: form.error(&field("name")),
                azimuth_error: form.error(&field("azimuth")),
                tilt_error: form.error(&field("tilt")),
                rows_error: form.error(&field("rows")),
                columns_error: form.error(&field("columns")),
                grid,
                name,
            }
        })
        .collect();
    let micro_rows = micros
        .iter()
        .map(|micro| {
            let array_field = micro_field(micro.id, "array");
            let current = form.get(&array_field).to_owned();
            let mut choices = vec![SlotChoice {
                key: String::new(),
                label: lang.t("Not placed").to_owned(),
                selected: current.is_empty(),
            }];
            choices.extend(slots.iter().map(|slot| SlotChoice {
                key: slot.key.clone(),
                label: if slot.name.is_empty() {
                    slot.legend.clone()
                } else {
                    slot.name.clone()
                },
                selected: slot.key == current,
            }));
            MicroRow {
                id: micro.id,
                serial: format!("{:012}", micro.serial),
                short_serial: short(micro.serial),
                row: form.get(&micro_field(micro.id, "row")).to_owned(),
                column: form.get(&micro_field(micro.id, "column")).to_owned(),
                row_field: micro_field(micro.id, "row"),
                column_field: micro_field(micro.id, "column"),
                placed: !current.is_empty(),
                error: form.error(&format!("m{}", micro.id)),
                array_field,
                choices,
            }
        })
        .collect::<Vec<_>>();
    let unplaced = micro_rows
        .iter()
        .filter(|m| !m.placed)
        .map(|m| GridCell {
            device_id: m.id,
            serial: m.serial.clone(),
            short_serial: m.short_serial.clone(),
        })
        .collect();
    Ok(BuilderPage {
        sections: sections(lang, id, "arrays"),
        notice,
        form,
        slots,
        micros: micro_rows,
        unplaced,
        max_side: MAX_GRID_SIDE,
        chrome,
        system,
    })
}

pub async fn builder_page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<SavedQuery>,
) -> Result<Response, PortalError> {
    let notice = saved_notice(principal.lang(), query.saved.as_deref());
    let page = builder(&state, &principal, id, None, notice).await?;
    render("system settings array builder", &page)
}

pub async fn save_builder(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let (form, csrf) = Entered::from_fields(fields);
    principal.check_csrf(csrf.as_deref())?;
    manageable(&state, &principal, id).await?;
    let registry = Arc::clone(state.registry());
    let (arrays, devices) = blocking(move || {
        Ok((
            registry.system_arrays(i64::from(id))?,
            registry.micros_and_batteries(i64::from(id))?,
        ))
    })
    .await?;
    let micros: Vec<&SystemDevice> = in_service_micros(&devices).collect();
    let layout = match parse_layout(form, &arrays, &micros, principal.lang()) {
        Ok(layout) => layout,
        Err(form) => {
            let page = builder(&state, &principal, id, Some(form), None).await?;
            return Ok(form_page(
                render("system settings array builder", &page)?,
                &page.form,
            ));
        }
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.save_array_layout(i64::from(id), &layout, user, now)?)
    })
    .await?;
    // Array-level estimates follow the arrays: the production check judges again.
    state.query().rechecks().request(id);
    Ok(Redirect::to(&format!("/systems/{id}/settings/arrays/builder?saved=1")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::form_fuzz;
    use proptest::prelude::*;

    fn arrays() -> Vec<SystemArray> {
        vec![SystemArray {
            id: 5,
            name: "South".into(),
            tilt_deg: 30.0,
            azimuth_deg: 180.0,
            grid_rows: 2,
            grid_columns: 3,
            modules: 2,
        }]
    }

    fn devices() -> Vec<SystemDevice> {
        (1..=3)
            .map(|i| SystemDevice {
                id: i,
                serial: 100_000_000_000 + i as u64,
                kind: "microinverter".into(),
                model: String::new(),
                state: "active".into(),
                provisioned_us: 0,
                place: (i < 3).then_some((5, 0, i as u16 - 1)),
            })
            .collect()
    }

    fn parse(fields: &[(&str, &str)]) -> Result<ArrayLayout, Entered> {
        let devices = devices();
        let micros: Vec<&SystemDevice> = devices.iter().collect();
        let mut form = layout_values(&arrays(), &micros);
        for (k, v) in fields {
            form.set(k, *v);
        }
        parse_layout(form, &arrays(), &micros, Lang::En)
    }

    #[test]
    fn the_saved_layout_reads_back_unchanged() {
        let layout = parse(&[]).unwrap();
        assert_eq!(layout.arrays.len(), 1);
        assert_eq!(layout.arrays[0].id, Some(5));
        assert_eq!(
            layout.placements,
            vec![
                Placement {
                    device_id: 1,
                    cell: Some((0, 0, 0))
                },
                Placement {
                    device_id: 2,
                    cell: Some((0, 0, 1))
                },
                Placement {
                    device_id: 3,
                    cell: None
                },
            ]
        );
    }

    #[test]
    fn a_new_array_is_created_with_the_microinverters_put_on_it() {
        let layout = parse(&[
            ("n1_name", "Garage"),
            ("n1_azimuth", "90"),
            ("n1_tilt", "15,5"),
            ("n1_rows", "1"),
            ("n1_columns", "2"),
            ("m3_array", "n1"),
            ("m3_row", "1"),
            ("m3_column", "2"),
            ("a5_name", "South roof"),
        ])
        .unwrap();
        assert_eq!(layout.arrays[0].name, "South roof");
        assert_eq!(layout.arrays[1].id, None);
        assert_eq!(layout.arrays[1].tilt_deg, 15.5);
        assert_eq!(layout.placements[2].cell, Some((1, 0, 1)));
        // Blank new slots are ignored.
        assert_eq!(layout.arrays.len(), 2);
    }

    #[test]
    fn overlaps_and_cells_outside_the_grid_are_refused_by_name() {
        let form = parse(&[("m3_array", "a5"), ("m3_row", "1"), ("m3_column", "1")]).unwrap_err();
        let error = form.error("m3").unwrap();
        assert!(
            error.contains("100000000003") && error.contains("100000000001"),
            "{error}"
        );
        let form = parse(&[("m3_array", "a5"), ("m3_row", "3"), ("m3_column", "1")]).unwrap_err();
        assert!(form.error("m3").unwrap().contains("outside the grid"));
        // Shrinking the array leaves microinverters outside it.
        let form = parse(&[("a5_columns", "1")]).unwrap_err();
        assert!(form.error("m2").unwrap().contains("outside the grid"));
        assert!(form.error("m1").is_none());
    }

    #[test]
    fn array_fields_are_checked_one_by_one() {
        let form = parse(&[
            ("a5_name", ""),
            ("a5_azimuth", "400"),
            ("a5_tilt", "-1"),
            ("a5_rows", "0"),
            ("a5_columns", "51"),
        ])
        .unwrap_err();
        for field in ["a5_name", "a5_azimuth", "a5_tilt", "a5_rows", "a5_columns"] {
            assert!(form.error(field).is_some(), "{field}");
        }
        // A microinverter put on a new array without a name: the name is asked for.
        let form = parse(&[("m3_array", "n1"), ("m3_row", "1"), ("m3_column", "1")]).unwrap_err();
        assert!(form.error("n1_name").is_some());
    }

    #[test]
    fn a_deleted_array_must_be_emptied_first() {
        let form = parse(&[("a5_delete", "on")]).unwrap_err();
        assert!(form.error("m1").unwrap().contains("deleting"));
        let layout = parse(&[("a5_delete", "on"), ("m1_array", ""), ("m2_array", "")]).unwrap();
        assert_eq!(layout.deleted, vec![5]);
        assert!(layout.arrays.is_empty());
        assert!(layout.placements.iter().all(|p| p.cell.is_none()));
    }

    #[test]
    fn a_new_slot_numbered_at_the_largest_is_read() {
        let layout = parse(&[
            ("n4294967295_name", "Far"),
            ("n4294967295_azimuth", "180"),
            ("n4294967295_tilt", "30"),
            ("n4294967295_rows", "1"),
            ("n4294967295_columns", "1"),
        ])
        .unwrap();
        assert_eq!(layout.arrays.len(), 2);
        assert_eq!(layout.arrays[1].name, "Far");
    }

    /// The saved layout, as the builder posts it back.
    fn saved_fields() -> Vec<(String, String)> {
        let devices = devices();
        let micros: Vec<&SystemDevice> = devices.iter().collect();
        layout_values(&arrays(), &micros)
            .values
            .into_iter()
            .collect()
    }

    fn layout_names() -> Vec<String> {
        let mut names: Vec<String> = ["a5", "a6", "n0", "n1", "n2", "n4294967295"]
            .iter()
            .flat_map(|key| {
                ["name", "azimuth", "tilt", "rows", "columns", "delete"]
                    .map(|part| format!("{key}_{part}"))
            })
            .collect();
        for id in 1..=4 {
            for part in ["array", "row", "column"] {
                names.push(micro_field(id, part));
            }
        }
        names
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any builder form becomes a layout that fits its grids (one microinverter a
        /// cell), or every problem is reported on its field.
        #[test]
        fn any_builder_form_is_read_or_refused_with_messages(
            fields in form_fuzz::form(saved_fields(), layout_names()),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            let devices = devices();
            let micros: Vec<&SystemDevice> = devices.iter().collect();
            let (form, _) = Entered::from_fields(fields);
            match parse_layout(form, &arrays(), &micros, lang) {
                Ok(layout) => {
                    prop_assert!(layout.arrays.len() <= MAX_ARRAYS);
                    for array in &layout.arrays {
                        prop_assert!((1..=MAX_GRID_SIDE).contains(&array.grid_rows));
                        prop_assert!((1..=MAX_GRID_SIDE).contains(&array.grid_columns));
                        prop_assert!(!array.name.is_empty() && array.name.chars().count() <= 100);
                    }
                    let mut cells = BTreeSet::new();
                    for (index, row, column) in layout.placements.iter().filter_map(|p| p.cell) {
                        let array = layout.arrays.get(index);
                        prop_assert!(
                            array.is_some_and(|a| row < a.grid_rows && column < a.grid_columns),
                            "({}, {}, {}) is off the grids",
                            index,
                            row,
                            column
                        );
                        prop_assert!(cells.insert((index, row, column)), "a cell holds two");
                    }
                }
                Err(form) => form_fuzz::explained(&form.errors)?,
            }
        }
    }
}
