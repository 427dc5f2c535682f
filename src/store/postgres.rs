//! The PostgreSQL backend (for clusters, and for operators who keep their state
//! there). The same tables as SQLite; a group commit is one transaction of one
//! multi-row statement per table (`UNNEST` of arrays), so a group of hundreds of
//! changes costs a handful of round trips.

use anyhow::Context;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use super::{decode, Backend, Row, Snapshot, SCHEMA, SCHEMA_VERSION};

pub struct Postgres {
    client: Client,
    /// To connect again when the connection is lost (a restart of the database).
    url: String,
    /// The URL without its password, for error messages.
    shown: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    pub fn open(url: &str) -> anyhow::Result<Postgres> {
        let shown = super::redact_url(url);
        let client =
            Client::connect(url, NoTls).with_context(|| format!("connecting to the PostgreSQL store {shown}"))?;
        let mut store = Postgres {
            client,
            url: url.to_string(),
            shown,
        };
        store
            .ensure_schema()
            .with_context(|| format!("reading the PostgreSQL store {}", store.shown))?;
        Ok(store)
    }

    fn ensure_schema(&mut self) -> anyhow::Result<()> {
        let mut tx = self.client.transaction()?;
        // Two nodes creating the schema at once must not both try.
        tx.execute("SELECT pg_advisory_xact_lock(7305516281)", &[])?;
        for statement in SCHEMA {
            tx.execute(*statement, &[])?;
        }
        let version: Option<String> = tx
            .query_opt("SELECT value FROM switchboard_meta WHERE key = 'schema_version'", &[])?
            .map(|r| r.get(0));
        match version.as_deref() {
            None => {
                tx.execute(
                    "INSERT INTO switchboard_meta (key, value) VALUES ('schema_version', $1)",
                    &[&SCHEMA_VERSION],
                )?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => anyhow::bail!("schema version {other} (this build reads version {SCHEMA_VERSION})"),
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads one table's `(id, record)` rows as they stream in, decoding them on every
    /// core meanwhile.
    fn rows<T: Send>(
        &mut self,
        table: &str,
        decode_row: impl Fn(&str, &str) -> anyhow::Result<T> + Sync,
    ) -> anyhow::Result<Vec<T>> {
        let mut rows = self
            .client
            .query_raw(&format!("SELECT id, record FROM {table}"), std::iter::empty::<&str>())?;
        let read = std::iter::from_fn(|| match rows.next() {
            Ok(Some(row)) => Some(
                row.try_get(0)
                    .and_then(|id| Ok((id, row.try_get(1)?)))
                    .map_err(anyhow::Error::from),
            ),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        });
        super::decode_rows(read, decode_row).with_context(|| format!("in table {table}"))
    }
}

impl Backend for Postgres {
    fn load(&mut self) -> anyhow::Result<Snapshot> {
        let shown = self.shown.clone();
        let mut load = || -> anyhow::Result<Snapshot> {
            Ok(Snapshot {
                skills: self.rows("skills", |id, r| decode("skills", id, r))?,
                agents: self.rows("agents", |id, r| decode("agents", id, r))?,
                conversations: self.rows("conversations", |id, r| decode("conversations", id, r))?,
                consumers: self.rows("consumers", |id, r| {
                    let consumer = crate::ids::ConsumerId::new(id)
                        .map_err(|e| anyhow::anyhow!("row {id:?} of table consumers: {e}"))?;
                    Ok((consumer, decode("consumers", id, r)?))
                })?,
            })
        };
        load().with_context(|| format!("reading the PostgreSQL store {shown}"))
    }

    fn commit(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        // A lost connection (the database restarted, the network dropped) is not
        // coming back: connect again, and the writer's retry succeeds once the database
        // answers.
        if reconnect_if_lost(&mut self.client, &self.url, "the PostgreSQL store")? {
            tracing::info!(url = %self.shown, "connected again to the PostgreSQL store");
        }
        let (mut skills, mut agents, mut convs, mut consumers) =
            (Columns::new(2), Columns::new(3), Columns::new(6), Columns::new(2));
        let (mut forget_convs, mut forget_consumers) = (Vec::<&str>::new(), Vec::<&str>::new());
        for row in rows {
            match row {
                Row::Skill { id, record } => skills.push(&[Some(id), Some(record)]),
                Row::Agent { id, status, record } => agents.push(&[Some(id), Some(status), Some(record)]),
                Row::Conversation {
                    id,
                    skill,
                    state,
                    agent_id,
                    consumer_id,
                    record,
                } => convs.push(&[
                    Some(id),
                    Some(skill),
                    Some(state),
                    agent_id.as_deref(),
                    Some(consumer_id),
                    Some(record),
                ]),
                Row::Consumer { id, record } => consumers.push(&[Some(id), Some(record)]),
                Row::DeleteConversation(id) => forget_convs.push(id),
                Row::DeleteConsumer(id) => forget_consumers.push(id),
            }
        }
        let mut tx = self.client.transaction()?;
        skills.upsert(
            &mut tx,
            "INSERT INTO skills (id, record) SELECT * FROM UNNEST($1::text[], $2::text[]) \
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        )?;
        agents.upsert(
            &mut tx,
            "INSERT INTO agents (id, status, record) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, record = excluded.record",
        )?;
        convs.upsert(
            &mut tx,
            "INSERT INTO conversations (id, skill, state, agent_id, consumer_id, record) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             ON CONFLICT (id) DO UPDATE SET skill = excluded.skill, state = excluded.state, \
             agent_id = excluded.agent_id, consumer_id = excluded.consumer_id, record = excluded.record",
        )?;
        consumers.upsert(
            &mut tx,
            "INSERT INTO consumers (id, record) SELECT * FROM UNNEST($1::text[], $2::text[]) \
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        )?;
        if !forget_convs.is_empty() {
            tx.execute("DELETE FROM conversations WHERE id = ANY($1)", &[&forget_convs])?;
        }
        if !forget_consumers.is_empty() {
            tx.execute("DELETE FROM consumers WHERE id = ANY($1)", &[&forget_consumers])?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Connects `client` again if its connection was lost (the database restarted, the
/// network dropped): the `postgres` client never comes back by itself. `what` names the
/// database in the error. True when it connected again.
pub(crate) fn reconnect_if_lost(client: &mut Client, url: &str, what: &str) -> anyhow::Result<bool> {
    if !client.is_closed() {
        return Ok(false);
    }
    *client = Client::connect(url, NoTls)
        .with_context(|| format!("connecting again to {what} {}", super::redact_url(url)))?;
    Ok(true)
}

/// The columns of one table's rows in a group, as arrays for `UNNEST`.
struct Columns<'a> {
    columns: Vec<Vec<Option<&'a str>>>,
}

impl<'a> Columns<'a> {
    fn new(n: usize) -> Self {
        Columns {
            columns: vec![Vec::new(); n],
        }
    }

    fn push(&mut self, values: &[Option<&'a str>]) {
        for (column, value) in self.columns.iter_mut().zip(values) {
            column.push(*value);
        }
    }

    fn upsert(&self, tx: &mut postgres::Transaction<'_>, sql: &str) -> anyhow::Result<()> {
        if self.columns.first().is_none_or(|c| c.is_empty()) {
            return Ok(());
        }
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = self
            .columns
            .iter()
            .map(|c| c as &(dyn postgres::types::ToSql + Sync))
            .collect();
        tx.execute(sql, &params)?;
        Ok(())
    }
}
