-- The e-mail outbox becomes a delivery queue (issue #8, C1 and C2): a mail is queued in the
-- transaction that causes it, then a deliverer claims it (state 'sending' until
-- next_attempt_us, a lease), sends it over SMTP and marks it sent; a temporary failure
-- puts it back with a later next_attempt_us (backoff), a permanent one (or too many) ends
-- it as 'failed'. A server without SMTP marks it 'held' ("not delivered: no SMTP server
-- configured"); a later start with SMTP sends held mails too.
ALTER TABLE email_outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'queued'
    CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'held'));
ALTER TABLE email_outbox ADD COLUMN next_attempt_us INTEGER NOT NULL DEFAULT 0;
-- What the mail is (`owner_access`, `owner_details_changed`, `owner_operational`), its
-- language (`en`, `fr`) and the system it is about, for the platform administrator's page.
ALTER TABLE email_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE email_outbox ADD COLUMN language TEXT NOT NULL DEFAULT 'en';
ALTER TABLE email_outbox ADD COLUMN system_id INTEGER REFERENCES systems (id);
-- A one-time sign-in link the body carries: kept in clear only while the mail may still
-- be delivered, then cut out of the body (password tokens are otherwise stored as digests
-- only).
ALTER TABLE email_outbox ADD COLUMN secret TEXT;
UPDATE email_outbox SET state = 'sent' WHERE sent_us IS NOT NULL;
CREATE INDEX email_outbox_due ON email_outbox (state, next_attempt_us);
CREATE INDEX email_outbox_newest ON email_outbox (created_us, id);
