//! The PostgreSQL backend (for clusters, and for operators who keep their state
//! there). The same tables as SQLite; a group commit is one transaction of one
//! multi-row statement per table (`UNNEST` of arrays), so a group of hundreds of
//! changes costs a handful of round trips.

use anyhow::Context;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use crate::cluster::placement::shard_of;

use super::{add_shard_column, decode, Backend, Row, Snapshot, StoredEvent, ENTITY_TABLES, SCHEMA, SCHEMA_VERSION};
use super::{event_era_key, event_id_column, Trim, NEXT_EVENT_ERA, SELECT_EVENTS};
use crate::cluster::lease::{fence, Fenced, Lease};
use crate::domain::conversation::Conversation;

/// A `postgres::Client` that may be dropped anywhere. The synchronous client closes its
/// connection on its own runtime when dropped, which panics on a thread that drives
/// tokio (seen when a cluster node's last handle to its store went away inside
/// `RunningServer::stop`, failing a rolling restart with exit 101). There the drop
/// moves to a thread of its own.
pub(crate) struct PgClient(Option<Client>);

impl std::ops::Deref for PgClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("a client until dropped")
    }
}

impl std::ops::DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("a client until dropped")
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("pg-close".into())
                    .spawn(move || drop(client));
            }
        }
    }
}

pub struct Postgres {
    client: PgClient,
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
        let client = connect(url).with_context(|| format!("connecting to the PostgreSQL store {shown}"))?;
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
            Some("1") => {
                for table in ENTITY_TABLES {
                    tx.execute(&add_shard_column(table), &[])?;
                    let ids: Vec<String> = tx
                        .query(&format!("SELECT id FROM {table}"), &[])?
                        .into_iter()
                        .map(|r| r.get(0))
                        .collect();
                    let shards: Vec<i32> = ids.iter().map(|id| i32::from(shard_of(id))).collect();
                    tx.execute(
                        &format!(
                            "UPDATE {table} AS t SET shard = v.shard FROM UNNEST($1::text[], $2::int[]) AS v(id, shard) \
                             WHERE t.id = v.id"
                        ),
                        &[&ids, &shards],
                    )?;
                }
                tx.execute(
                    "UPDATE switchboard_meta SET value = $1 WHERE key = 'schema_version'",
                    &[&SCHEMA_VERSION],
                )?;
                tracing::info!(url = %self.shown, "store migrated from schema version 1 to {SCHEMA_VERSION}");
            }
            Some(other) => anyhow::bail!("schema version {other} (this build reads version {SCHEMA_VERSION})"),
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads one table's `(id, record)` rows (those of `shards`, or all) as they stream
    /// in, decoding them on every core meanwhile.
    fn rows<T: Send>(
        &mut self,
        table: &str,
        shards: Option<&[i32]>,
        decode_row: impl Fn(&str, &str) -> anyhow::Result<T> + Sync,
    ) -> anyhow::Result<Vec<T>> {
        let mut rows = match shards {
            None => self
                .client
                .query_raw(&format!("SELECT id, record FROM {table}"), std::iter::empty::<&[i32]>())?,
            Some(shards) => self.client.query_raw(
                &format!("SELECT id, record FROM {table} WHERE shard = ANY($1)"),
                std::iter::once(shards),
            )?,
        };
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

    /// Reads every table (the rows of `shards`, or all).
    fn load_where(&mut self, shards: Option<&[i32]>) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            // Every skill, whatever the shards: skills are the same on every node.
            skills: self.rows("skills", None, |id, r| decode("skills", id, r))?,
            agents: self.rows("agents", shards, |id, r| decode("agents", id, r))?,
            conversations: self.rows("conversations", shards, |id, r| decode("conversations", id, r))?,
            consumers: self.rows("consumers", shards, |id, r| {
                let consumer = crate::ids::ConsumerId::new(id)
                    .map_err(|e| anyhow::anyhow!("row {id:?} of table consumers: {e}"))?;
                Ok((consumer, decode("consumers", id, r)?))
            })?,
            held_elsewhere: Vec::new(),
        })
    }
}

impl Backend for Postgres {
    fn load(&mut self) -> anyhow::Result<Snapshot> {
        let shown = self.shown.clone();
        self.load_where(None)
            .with_context(|| format!("reading the PostgreSQL store {shown}"))
    }

    fn load_shards(&mut self, shards: &[u16]) -> anyhow::Result<Snapshot> {
        let shown = self.shown.clone();
        self.reconnect_if_lost()?;
        let shards: Vec<i32> = shards.iter().map(|s| i32::from(*s)).collect();
        self.load_where(Some(&shards))
            .with_context(|| format!("reading shards of the PostgreSQL store {shown}"))
    }

    fn load_consumer(&mut self, id: &str) -> anyhow::Result<Option<String>> {
        self.reconnect_if_lost()?;
        let row = self
            .client
            .query_opt("SELECT record FROM consumers WHERE id = $1", &[&id])?;
        Ok(row.map(|r| r.get(0)))
    }

    fn load_held(&mut self, agents: &[String], shards: &[u16]) -> anyhow::Result<Vec<Conversation>> {
        self.reconnect_if_lost()?;
        let shards: Vec<i32> = shards.iter().map(|s| i32::from(*s)).collect();
        let rows = self.client.query(
            "SELECT id, record FROM conversations \
             WHERE state = 'assigned' AND agent_id = ANY($1) AND NOT (shard = ANY($2))",
            &[&agents, &shards],
        )?;
        rows.iter()
            .map(|r| {
                let (id, record): (String, String) = (r.get(0), r.get(1));
                decode("conversations", &id, &record)
            })
            .collect()
    }

    fn load_states(&mut self, ids: &[String]) -> anyhow::Result<Vec<(String, String, Option<String>)>> {
        self.reconnect_if_lost()?;
        let rows = self.client.query(
            "SELECT id, state, agent_id FROM conversations WHERE id = ANY($1)",
            &[&ids],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    fn next_event_era(&mut self, node: &str) -> anyhow::Result<u64> {
        self.reconnect_if_lost()?;
        let era: String = self.client.query_one(NEXT_EVENT_ERA, &[&event_era_key(node)])?.get(0);
        Ok(era.parse()?)
    }

    fn load_events(&mut self, node: &str, after: u64, through: u64, limit: usize) -> anyhow::Result<Vec<StoredEvent>> {
        self.reconnect_if_lost()?;
        let rows = self.client.query(
            SELECT_EVENTS,
            &[
                &node,
                &event_id_column(after),
                &event_id_column(through),
                &(limit as i64),
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| StoredEvent {
                id: r.get::<_, i64>(0) as u64,
                skill: r.get(1),
                kind: r.get(2),
                record: r.get(3),
            })
            .collect())
    }

    fn commit(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        self.reconnect_if_lost()?;
        let mut tx = self.client.transaction()?;
        write_rows(&mut tx, rows)?;
        tx.commit()?;
        Ok(())
    }

    fn commit_fenced(&mut self, rows: &[Row], node: &str, leases: &[Lease]) -> anyhow::Result<Result<(), Fenced>> {
        self.reconnect_if_lost()?;
        let mut tx = self.client.transaction()?;
        // First: the lease rows stay locked (FOR SHARE) until the commit, so no takeover
        // commits between this check and the writes.
        if let Err(lost) = fence(&mut tx, node, leases)? {
            tx.rollback()?;
            return Ok(Err(lost));
        }
        write_rows(&mut tx, rows)?;
        tx.commit()?;
        Ok(Ok(()))
    }
}

impl Postgres {
    /// A lost connection (the database restarted, the network dropped) is not coming
    /// back: connect again, and the writer's retry succeeds once the database answers.
    fn reconnect_if_lost(&mut self) -> anyhow::Result<()> {
        if reconnect_if_lost(&mut self.client, &self.url, "the PostgreSQL store")? {
            tracing::info!(url = %self.shown, "connected again to the PostgreSQL store");
        }
        Ok(())
    }
}

/// Writes a group's rows: one multi-row statement per table.
fn write_rows(tx: &mut postgres::Transaction<'_>, rows: &[Row]) -> anyhow::Result<()> {
    let (mut skills, mut agents, mut convs, mut consumers) =
        (Columns::new(2), Columns::new(3), Columns::new(6), Columns::new(2));
    let (mut forget_convs, mut forget_consumers) = (Vec::<&str>::new(), Vec::<&str>::new());
    let mut events = EventColumns::default();
    let mut trims: Vec<(&str, Trim)> = Vec::new();
    let mut log_applied = None;
    for row in rows {
        match row {
            Row::Skill { id, record } => skills.push(&[Some(id), Some(record)], row.shard()),
            Row::Agent { id, status, record } => agents.push(&[Some(id), Some(status), Some(record)], row.shard()),
            Row::Conversation {
                id,
                skill,
                state,
                agent_id,
                consumer_id,
                record,
            } => convs.push(
                &[
                    Some(id),
                    Some(skill),
                    Some(state),
                    agent_id.as_deref(),
                    Some(consumer_id),
                    Some(record),
                ],
                row.shard(),
            ),
            Row::Consumer { id, record } => consumers.push(&[Some(id), Some(record)], row.shard()),
            Row::DeleteConversation(id) => forget_convs.push(id),
            Row::DeleteConsumer(id) => forget_consumers.push(id),
            Row::Event {
                node,
                id,
                skill,
                kind,
                record,
            } => {
                events.node.push(node);
                events.id.push(*id);
                events.skill.push(skill.as_deref());
                events.kind.push(kind);
                events.record.push(record);
            }
            Row::TrimEvents { node, trim } => trims.push((node, *trim)),
            Row::LogApplied(n) => log_applied = Some(n.to_string()),
        }
    }
    skills.upsert(
        tx,
        "INSERT INTO skills (id, record, shard) SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[]) \
         ON CONFLICT (id) DO UPDATE SET record = excluded.record, shard = excluded.shard",
    )?;
    agents.upsert(
        tx,
        "INSERT INTO agents (id, status, record, shard) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[]) \
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, record = excluded.record, shard = excluded.shard",
    )?;
    convs.upsert(
        tx,
        "INSERT INTO conversations (id, skill, state, agent_id, consumer_id, record, shard) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[]) \
         ON CONFLICT (id) DO UPDATE SET skill = excluded.skill, state = excluded.state, \
         agent_id = excluded.agent_id, consumer_id = excluded.consumer_id, record = excluded.record, \
         shard = excluded.shard",
    )?;
    consumers.upsert(
        tx,
        "INSERT INTO consumers (id, record, shard) SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[]) \
         ON CONFLICT (id) DO UPDATE SET record = excluded.record, shard = excluded.shard",
    )?;
    if !forget_convs.is_empty() {
        tx.execute("DELETE FROM conversations WHERE id = ANY($1)", &[&forget_convs])?;
    }
    if !forget_consumers.is_empty() {
        tx.execute("DELETE FROM consumers WHERE id = ANY($1)", &[&forget_consumers])?;
    }
    if !events.id.is_empty() {
        tx.execute(
            "INSERT INTO events (node, id, skill, type, record) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) \
             ON CONFLICT (node, id) DO NOTHING",
            &[&events.node, &events.id, &events.skill, &events.kind, &events.record],
        )?;
    }
    // After the group's events: a trim keeps the newest, these among them.
    for (node, trim) in trims {
        let (sql, bound) = trim.statement();
        tx.execute(sql, &[&node, &bound])?;
    }
    if let Some(n) = log_applied {
        tx.execute(super::SET_LOG_APPLIED, &[&n])?;
    }
    Ok(())
}

/// A group's events as arrays for `UNNEST`.
#[derive(Default)]
struct EventColumns<'a> {
    node: Vec<&'a str>,
    id: Vec<i64>,
    skill: Vec<Option<&'a str>>,
    kind: Vec<&'a str>,
    record: Vec<&'a str>,
}

/// Connects `client` again if its connection was lost (the database restarted, the
/// network dropped): the `postgres` client never comes back by itself. `what` names the
/// database in the error. True when it connected again.
pub(crate) fn reconnect_if_lost(client: &mut PgClient, url: &str, what: &str) -> anyhow::Result<bool> {
    if !client.is_closed() {
        return Ok(false);
    }
    *client = connect(url).with_context(|| format!("connecting again to {what} {}", super::redact_url(url)))?;
    Ok(true)
}

/// Connects, with the session bounded in time: a statement waits at most 1 s for a
/// row lock, and a transaction left idle for 1 s is ended by the server. A process
/// paused in the middle of a transaction (SIGSTOP, a long GC-like stall) thus holds its
/// locks (a fenced write's lease rows) for a second, not until it wakes: the other
/// nodes' lease keepers are never stuck behind it, and its write is rolled back.
pub(crate) fn connect(url: &str) -> anyhow::Result<PgClient> {
    let mut client = Client::connect(url, NoTls)?;
    client.batch_execute("SET lock_timeout = '1s'; SET idle_in_transaction_session_timeout = '1s'")?;
    Ok(PgClient(Some(client)))
}

/// The columns of one table's rows in a group, as arrays for `UNNEST`: the text
/// columns, then the rows' shards.
struct Columns<'a> {
    columns: Vec<Vec<Option<&'a str>>>,
    shards: Vec<i32>,
}

impl<'a> Columns<'a> {
    fn new(n: usize) -> Self {
        Columns {
            columns: vec![Vec::new(); n],
            shards: Vec::new(),
        }
    }

    fn push(&mut self, values: &[Option<&'a str>], shard: i32) {
        for (column, value) in self.columns.iter_mut().zip(values) {
            column.push(*value);
        }
        self.shards.push(shard);
    }

    fn upsert(&self, tx: &mut postgres::Transaction<'_>, sql: &str) -> anyhow::Result<()> {
        if self.shards.is_empty() {
            return Ok(());
        }
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = self
            .columns
            .iter()
            .map(|c| c as &(dyn postgres::types::ToSql + Sync))
            .collect();
        params.push(&self.shards);
        tx.execute(sql, &params)?;
        Ok(())
    }
}
