//! Which systems a company or an owner may see: the rule behind every scoped page and
//! every analyst's SQL.

use roaring::RoaringBitmap;
use rusqlite::{OptionalExtension, params};

use super::{Registry, sql_error};
use crate::Error;

impl Registry {
    /// Systems a company may see at `now_us`: those it installed and those an installer
    /// granted it (a subcontractor) until the grant's `revoked_us` (set in the future, it
    /// is an expiry).
    pub fn systems_of_company(&self, company_id: i64, now_us: i64) -> Result<RoaringBitmap, Error> {
        self.read(|connection| {
            let context = || format!("listing the systems of company {company_id}");
            let mut statement = connection
                .prepare_cached(
                    "SELECT id FROM systems WHERE installer_id = ?1
                     UNION
                     SELECT system_id FROM subcontractor_grants
                      WHERE company_id = ?1 AND (revoked_us IS NULL OR revoked_us > ?2)",
                )
                .map_err(sql_error(context()))?;
            collect_ids(statement.query_map(params![company_id, now_us], |row| row.get(0)))
                .map_err(sql_error(context()))
        })
    }

    /// Systems an owner may see: their own.
    pub fn systems_of_owner(&self, owner_id: i64) -> Result<RoaringBitmap, Error> {
        self.read(|connection| {
            let context = || format!("listing the systems of owner {owner_id}");
            let mut statement = connection
                .prepare_cached("SELECT id FROM systems WHERE owner_id = ?1")
                .map_err(sql_error(context()))?;
            collect_ids(statement.query_map(params![owner_id], |row| row.get(0)))
                .map_err(sql_error(context()))
        })
    }
}

fn collect_ids(
    rows: rusqlite::Result<impl Iterator<Item = rusqlite::Result<i64>>>,
) -> rusqlite::Result<RoaringBitmap> {
    let mut systems = RoaringBitmap::new();
    for id in rows? {
        // System ids are u32 everywhere (telemetry columns); the registry never hands out
        // larger ones.
        if let Ok(id) = u32::try_from(id?) {
            systems.insert(id);
        }
    }
    Ok(systems)
}

impl Registry {
    /// Companies a company may see at `now_us`: itself and the installers of the systems
    /// it was granted.
    pub fn companies_visible_to(&self, company_id: i64, now_us: i64) -> Result<Vec<i64>, Error> {
        self.read(|connection| {
            let context = || format!("listing the companies visible to company {company_id}");
            let mut statement = connection
                .prepare_cached(
                    "SELECT ?1
                     UNION
                     SELECT s.installer_id FROM subcontractor_grants g
                       JOIN systems s ON s.id = g.system_id
                      WHERE g.company_id = ?1 AND (g.revoked_us IS NULL OR g.revoked_us > ?2)
                     ORDER BY 1",
                )
                .map_err(sql_error(context()))?;
            let ids: Vec<i64> = statement
                .query_map(params![company_id, now_us], |row| row.get(0))
                .map_err(sql_error(context()))?
                .collect::<Result<_, _>>()
                .map_err(sql_error(context()))?;
            Ok(ids)
        })
    }
}

impl Registry {
    /// The company's name, if it is registered.
    pub fn company_name(&self, company_id: i64) -> Result<Option<String>, Error> {
        self.read(|connection| {
            connection
                .query_row(
                    "SELECT name FROM companies WHERE id = ?1",
                    params![company_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error(format!("looking up company {company_id}")))
        })
    }
}
