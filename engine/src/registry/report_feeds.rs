//! Third-party reporting (F5): a company's feed links. A third party (a utility, an
//! incentive programme) fetches the company's monthly production with the link's token;
//! the company revokes the link when the arrangement ends. Only a digest of the token is
//! kept, as for sessions and API keys.

use rusqlite::{OptionalExtension, params};

use super::audit::insert_audit;
use super::secret_links::{NewSecret, SecretSummary, list_secrets, new_secret};
use super::sessions::digest;
use super::{Registry, sql_error};
use crate::Error;

/// Every feed token starts with this.
pub const FEED_TOKEN_PREFIX: &str = "sff_";

/// A feed just created: `secret` is its token, shown once.
pub type NewReportFeed = NewSecret;
/// A feed as the company's list shows it (`name`: who receives it).
pub type ReportFeed = SecretSummary;

impl Registry {
    pub fn create_report_feed(
        &self,
        company_id: i64,
        name: &str,
        by_user: i64,
        now_us: i64,
    ) -> Result<NewReportFeed, Error> {
        let (token, prefix, token_digest) = new_secret(FEED_TOKEN_PREFIX);
        self.transaction("creating a report feed", |tx| {
            tx.execute(
                "INSERT INTO report_feeds (company_id, name, prefix, token_digest, created_by, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![company_id, name, prefix, token_digest, by_user, now_us],
            )
            .map_err(sql_error("creating a report feed"))?;
            let id = tx.last_insert_rowid();
            insert_audit(tx, Some(by_user), "report_feed_created", "report_feed", Some(id), name, now_us)?;
            Ok(NewSecret {
                id,
                secret: token.clone(),
            })
        })
    }

    /// A company's feeds, newest first.
    pub fn report_feeds_of(&self, company_id: i64) -> Result<Vec<ReportFeed>, Error> {
        list_secrets(
            &self.connection(),
            "SELECT id, name, prefix, created_us, last_used_us, revoked_us FROM report_feeds
             WHERE company_id = ?1 ORDER BY created_us DESC, id DESC",
            company_id,
            "listing report feeds",
        )
    }

    /// Revokes one of the company's live feeds; `false` when it has no such feed.
    pub fn revoke_report_feed(
        &self,
        company_id: i64,
        feed_id: i64,
        by_user: i64,
        now_us: i64,
    ) -> Result<bool, Error> {
        self.transaction("revoking a report feed", |tx| {
            let changed = tx
                .execute(
                    "UPDATE report_feeds SET revoked_us = ?1
                     WHERE id = ?2 AND company_id = ?3 AND revoked_us IS NULL",
                    params![now_us, feed_id, company_id],
                )
                .map_err(sql_error("revoking a report feed"))?;
            if changed > 0 {
                insert_audit(
                    tx,
                    Some(by_user),
                    "report_feed_revoked",
                    "report_feed",
                    Some(feed_id),
                    "",
                    now_us,
                )?;
            }
            Ok(changed > 0)
        })
    }

    /// The company a live feed token belongs to (and notes its use).
    pub fn report_feed_company(&self, token: &str, now_us: i64) -> Result<Option<i64>, Error> {
        if !token.starts_with(FEED_TOKEN_PREFIX) {
            return Ok(None);
        }
        let token_digest = digest(token);
        let connection = self.connection();
        let company = connection
            .query_row(
                "SELECT company_id FROM report_feeds WHERE token_digest = ?1 AND revoked_us IS NULL",
                params![token_digest],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error("looking up a report feed"))?;
        if company.is_some() {
            connection
                .execute(
                    "UPDATE report_feeds SET last_used_us = ?1 WHERE token_digest = ?2",
                    params![now_us, token_digest],
                )
                .map_err(sql_error("noting a report feed's use"))?;
        }
        Ok(company)
    }
}
