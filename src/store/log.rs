//! The change log in front of the SQLite tables, as Redis' append-only file in front of
//! its snapshot (commit durability, the embedded store's default).
//!
//! A group commit appends the group's rows to the log as one record and syncs it
//! (`fdatasync`): that is when its writes count as committed and their waiters are
//! answered. The tables are brought up to date from memory in the background
//! ([`Applier`]), every 250 ms (`[store] apply_ms`), in one transaction that holds the
//! latest row of each entity over that time (a conversation opened, assigned, answered and closed
//! within it is one row written once, where the group commits wrote it four times) and
//! records the last group it applied (`switchboard_meta.change_log_applied`). Once
//! that transaction is synced, the log's segments wholly applied are deleted.
//!
//! At start, [`recover`] applies the groups after `change_log_applied` (a crash between
//! the tables' sync and the log's cut leaves groups applied twice over: they are
//! skipped), then deletes the log. A record cut short or failing its checksum at the end
//! of the last segment is a write the crash interrupted, never acknowledged (the
//! waiters are answered after the sync): it is dropped with a warning. The same damage
//! anywhere else, where acknowledged groups follow it, stops start-up with an error
//! that names the file; nothing is replaced.
//!
//! File format: segments `<db>-changes.<first group, 20 digits>` beside the database;
//! a record is `len: u32 LE`, `crc32(payload): u32 LE`, then the payload, a
//! [`bincode`] (standard configuration) encoding of the group's number and rows. A
//! segment's records are numbered from its name on, one by one; the first record that
//! is not the next number (a segment is written over an old, applied one: its stale
//! records follow the live ones) or is all zeros (a new segment is zero-filled) ends it.
//!
//! Segments are written in place, never grown: a `fdatasync` of a write that grows a
//! file also writes its inode, which doubled a group commit's time. So the applier
//! keeps a spare segment ready (`<db>-changes.spare`): a segment it has wholly applied,
//! renamed, or at first a zero-filled one; the writer renames the spare when it starts
//! a segment (and without one, makes a file that grows).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::sqlite::Sqlite;
use super::{Backend, Row, StoreMetrics};

/// A segment is cut when it passes this size: the applier deletes whole segments.
const SEGMENT_BYTES: u64 = 64 << 20;

/// The applier writes to the tables at the latest when this many rows wait for it.
const MAX_PENDING_ROWS: usize = 50_000;

const HEADER: usize = 8;

/// Groups logged and not yet taken by the applier, at most (then the writer waits).
pub(super) const APPLY_QUEUE: usize = 16_384;

#[derive(Serialize)]
struct GroupRef<'a> {
    n: u64,
    rows: &'a [Row],
}

#[derive(Deserialize)]
struct Group {
    n: u64,
    rows: Vec<Row>,
}

/// The segment that starts at group `first`.
fn segment_path(db: &Path, first: u64) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-changes.{first:020}"));
    db.with_file_name(name)
}

/// The log's segments beside `db`, by their first group.
fn segments(db: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut prefix = db.file_name().unwrap_or_default().to_string_lossy().into_owned();
    prefix.push_str("-changes.");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// The spare segment, ready for the writer's next one.
fn spare_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-changes.spare");
    db.with_file_name(name)
}

/// Makes a file's creation or removal in the directory of `db` durable.
fn sync_dir(db: &Path) -> std::io::Result<()> {
    match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => File::open(d)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// The next record of `bytes`: `Ok(None)` at the end, `Err` for a record cut short or
/// damaged.
fn parse(bytes: &[u8]) -> Result<Option<(Group, usize)>, String> {
    if bytes.is_empty() || bytes.iter().take(HEADER).all(|b| *b == 0) {
        return Ok(None);
    }
    if bytes.len() < HEADER {
        return Err(format!("a record's header cut short ({} bytes)", bytes.len()));
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let Some(payload) = bytes.get(HEADER..HEADER + len) else {
        return Err(format!("a record of {len} bytes cut short at {}", bytes.len() - HEADER));
    };
    if crc32fast::hash(payload) != crc {
        return Err("a record whose checksum does not match".into());
    }
    let (group, _) = bincode::serde::decode_from_slice::<Group, _>(payload, bincode::config::standard())
        .map_err(|e| format!("a record that does not decode: {e}"))?;
    Ok(Some((group, HEADER + len)))
}

/// Rows merged to the latest of each entity, in the order of each entity's first
/// change; events and trims are kept, in order.
#[derive(Default)]
pub(super) struct Coalesced {
    rows: Vec<Row>,
    at: HashMap<(u8, String), usize>,
}

impl Coalesced {
    pub(super) fn add(&mut self, row: Row) {
        match row.entity() {
            Some(key) => match self.at.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => self.rows[*e.get()] = row,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(self.rows.len());
                    self.rows.push(row);
                }
            },
            None => self.rows.push(row),
        }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn take(&mut self) -> Vec<Row> {
        self.at.clear();
        std::mem::take(&mut self.rows)
    }
}

/// What recovery found in the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Groups applied to the tables at start (after the last one applied before).
    pub groups: u64,
    pub rows: usize,
    /// Bytes after the segments' last records: of a write the crash cut short, or of
    /// older segments written over.
    pub ignored_bytes: usize,
    /// The log's next group number.
    pub next: u64,
}

/// Brings the tables up to date from the log a stop or a crash left, and deletes it.
pub fn recover(db: &Path, sqlite: &mut Sqlite) -> anyhow::Result<Recovered> {
    let applied = sqlite.log_applied()?;
    let found = segments(db)?;
    let mut pending = Coalesced::default();
    let mut last = applied;
    let mut seen = applied;
    let mut recovered = Recovered::default();
    for (i, (first, path)) in found.iter().enumerate() {
        let bytes = std::fs::read(path).with_context(|| format!("reading the change log {}", path.display()))?;
        let mut at = 0;
        let mut expected = *first;
        loop {
            match parse(&bytes[at..]) {
                Ok(None) => break,
                // A stale record of the segment this one was written over.
                Ok(Some((group, _))) if group.n != expected => break,
                Ok(Some((group, used))) => {
                    at += used;
                    expected += 1;
                    seen = seen.max(group.n);
                    if group.n > applied {
                        last = last.max(group.n);
                        recovered.groups += 1;
                        recovered.rows += group.rows.len();
                        for row in group.rows {
                            pending.add(row);
                        }
                    }
                }
                Err(why) => {
                    // What follows a segment's last record: what is left of the older
                    // segment it was written over, or a write the crash interrupted
                    // (never acknowledged), at the end of the last segment or of one
                    // whose successor starts with the very next group.
                    let next_first = found.get(i + 1).map(|(first, _)| *first);
                    if next_first.is_some_and(|f| f != seen + 1) {
                        anyhow::bail!(
                            "the change log {} is damaged at byte {at} ({why}) and acknowledged changes follow it; \
                             the store was left as it is",
                            path.display()
                        );
                    }
                    recovered.ignored_bytes += bytes.len() - at;
                    tracing::debug!(file = %path.display(), at, why, "the change log's segment ends");
                    break;
                }
            }
        }
    }
    if last > applied {
        let mut rows = pending.take();
        rows.push(Row::LogApplied(last));
        sqlite
            .commit(&rows)
            .with_context(|| format!("applying the change log to {}", db.display()))?;
    }
    // All applied: the last (the largest, if it was grown) becomes the spare if there
    // is none, the others are deleted.
    let spare = spare_path(db);
    for (i, (_, path)) in found.iter().enumerate() {
        if i + 1 == found.len() && !spare.exists() {
            std::fs::rename(path, &spare)
        } else {
            std::fs::remove_file(path)
        }
        .with_context(|| format!("removing the applied change log {}", path.display()))?;
    }
    if !found.is_empty() {
        sync_dir(db).with_context(|| format!("syncing the directory of {}", db.display()))?;
        tracing::info!(
            groups = recovered.groups,
            rows = recovered.rows,
            ignored_bytes = recovered.ignored_bytes,
            "change log applied to the tables"
        );
    }
    recovered.next = seen.max(last) + 1;
    Ok(recovered)
}

/// The log's writing end, owned by the store's writer thread.
#[derive(Debug)]
pub(super) struct ChangeLog {
    db: PathBuf,
    file: File,
    /// Held while the spare segment is taken or put back.
    spare: Arc<std::sync::Mutex<()>>,
    /// Bytes written to the current segment, for the applier.
    position: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes in the current segment.
    len: u64,
    next: u64,
    buf: Vec<u8>,
}

impl ChangeLog {
    /// Starts the log at group `next` (after [`recover`]: no segment is left).
    pub fn create(db: &Path, next: u64, shared: &Shared) -> anyhow::Result<ChangeLog> {
        let file = Self::segment(db, next, &shared.spare)?;
        Ok(ChangeLog {
            db: db.to_path_buf(),
            file,
            spare: Arc::clone(&shared.spare),
            position: Arc::clone(&shared.position),
            len: 0,
            next,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Starts the segment of group `first`: the spare renamed, or a new file.
    fn segment(db: &Path, first: u64, spare: &std::sync::Mutex<()>) -> anyhow::Result<File> {
        let path = segment_path(db, first);
        let recycled = {
            let _spare = spare.lock().unwrap_or_else(|p| p.into_inner());
            std::fs::rename(spare_path(db), &path).is_ok()
        };
        let file = if recycled {
            OpenOptions::new().write(true).open(&path)
        } else {
            OpenOptions::new().create(true).truncate(true).write(true).open(&path)
        }
        .with_context(|| format!("creating the change log {}", path.display()))?;
        sync_dir(db).with_context(|| format!("syncing the directory of {}", path.display()))?;
        Ok(file)
    }

    /// Appends a group's rows and syncs them; returns the group's number. After a
    /// failure nothing of the group counts: the segment is cut back to its last whole
    /// record and the next attempt goes to a new segment.
    pub fn append(&mut self, rows: &[Row]) -> anyhow::Result<u64> {
        let n = self.next;
        self.buf.clear();
        self.buf.extend_from_slice(&[0; HEADER]);
        bincode::serde::encode_into_std_write(GroupRef { n, rows }, &mut self.buf, bincode::config::standard())
            .context("encoding a group for the change log")?;
        let len = u32::try_from(self.buf.len() - HEADER).context("a group too large for the change log")?;
        let crc = crc32fast::hash(&self.buf[HEADER..]);
        self.buf[0..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        if self.len > 0 && self.len + self.buf.len() as u64 > SEGMENT_BYTES {
            self.file = Self::segment(&self.db, n, &self.spare)?;
            self.len = 0;
        }
        // In place (a recycled or zero-filled segment is not grown by it).
        let written = std::os::unix::fs::FileExt::write_all_at(&self.file, &self.buf, self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // The next attempt starts a segment of its own (after a failed sync the
            // file's state is not to be trusted); whatever of this group reached the
            // old one is a damaged record at its end that recovery drops, since the
            // next segment starts with the same group.
            if let Ok(file) = Self::segment(&self.db, n, &self.spare) {
                self.file = file;
                self.len = 0;
            }
            return Err(anyhow::Error::new(e).context(format!("appending to the change log of {}", self.db.display())));
        }
        self.len += self.buf.len() as u64;
        self.position.store(self.len, Ordering::Relaxed);
        self.next += 1;
        Ok(n)
    }
}

/// What the applier is asked.
#[derive(Debug)]
pub(super) enum Apply {
    /// A group appended to the log: its number and rows.
    Group(u64, Vec<Row>),
    /// Bring the tables up to date now, then answer (a read of the tables, a clean
    /// stop).
    Settle(tokio::sync::oneshot::Sender<()>),
}

/// The thread that brings the tables up to date from the groups logged, and cuts the
/// log behind them.
pub(super) struct Applier {
    pub db: PathBuf,
    pub backend: Box<dyn Backend>,
    pub rx: mpsc::Receiver<Apply>,
    pub every: Duration,
    pub metrics: StoreMetrics,
    /// False while its last transaction failed.
    pub healthy: Arc<AtomicBool>,
    /// What the writer shares with it.
    pub shared: Shared,
}

/// What the log's writer and its applier share.
#[derive(Clone, Debug, Default)]
pub(super) struct Shared {
    /// Held while the spare segment is taken or put back.
    spare: Arc<std::sync::Mutex<()>>,
    /// Bytes the writer has written to its current segment.
    position: Arc<std::sync::atomic::AtomicU64>,
}

impl Applier {
    pub fn run(mut self) {
        if let Err(e) = self.cut(0) {
            tracing::warn!(error = %format!("{e:#}"), "no spare segment for the change log");
        }
        let mut pending = Coalesced::default();
        let mut last: Option<u64> = None;
        let mut due: Option<Instant> = None;
        loop {
            let next = match due {
                None => self.rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(due) => self.rx.recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            match next {
                Ok(Apply::Group(n, rows)) => {
                    for row in rows {
                        pending.add(row);
                    }
                    last = Some(n);
                    due.get_or_insert_with(|| Instant::now() + self.every);
                    if pending.len() >= MAX_PENDING_ROWS {
                        self.apply(&mut pending, &mut last);
                        due = None;
                    }
                }
                Ok(Apply::Settle(done)) => {
                    self.apply(&mut pending, &mut last);
                    due = None;
                    let _ = done.send(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.apply(&mut pending, &mut last);
                    due = None;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.apply(&mut pending, &mut last);
                    return;
                }
            }
        }
    }

    /// Writes what is pending in one transaction (retried until it succeeds), then
    /// deletes the segments it covers.
    fn apply(&mut self, pending: &mut Coalesced, last: &mut Option<u64>) {
        let Some(n) = last.take() else { return };
        let mut rows = pending.take();
        rows.push(Row::LogApplied(n));
        let backend = &mut self.backend;
        let took = super::retry(
            "applying the change log to the tables failed",
            rows.len(),
            &self.metrics,
            &self.healthy,
            || {
                let started = Instant::now();
                backend.commit(&rows)?;
                Ok(started.elapsed())
            },
        );
        self.metrics.apply_seconds.observe(took.as_secs_f64());
        self.metrics.apply_rows.observe((rows.len() - 1) as f64);
        self.healthy.store(true, Ordering::Release);
        if let Err(e) = self.cut(n) {
            tracing::warn!(error = %format!("{e:#}"), "the change log could not be cut (it is cut after the next apply)");
        }
    }

    /// Removes the segments whose groups are all applied (through `n`): one becomes
    /// the spare if there is none, the others are deleted. Counts the bytes left.
    fn cut(&self, n: u64) -> anyhow::Result<()> {
        let found = segments(&self.db)?;
        let spare = spare_path(&self.db);
        let mut left = 0;
        for (i, (_, path)) in found.iter().enumerate() {
            match found.get(i + 1) {
                Some((next_first, _)) if *next_first <= n + 1 => {
                    let _spare = self.shared.spare.lock().unwrap_or_else(|p| p.into_inner());
                    if spare.exists() {
                        std::fs::remove_file(path)?;
                    } else {
                        std::fs::rename(path, &spare)?;
                    }
                }
                _ => left += std::fs::metadata(path).map_or(0, |m| m.len()),
            }
        }
        self.metrics.log_bytes.set(i64::try_from(left).unwrap_or(i64::MAX));
        // None recycled by the time the writer is halfway through its segment (the
        // first, or a burst): one is made, off the writer's path.
        if !spare.exists() && self.shared.position.load(Ordering::Relaxed) > SEGMENT_BYTES / 2 {
            zero_filled(&spare)?;
        }
        Ok(())
    }
}

/// Writes a zero-filled segment at `path` (under a temporary name, renamed when
/// synced, so that a crash never leaves a short spare).
fn zero_filled(path: &Path) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..SEGMENT_BYTES / zeros.len() as u64 {
        file.write_all(&zeros)
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Durability;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("switchboard-log-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("dir");
            Dir(dir)
        }

        fn db(&self) -> PathBuf {
            self.0.join("switchboard.db")
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn consumer(id: &str, record: &str) -> Row {
        Row::Consumer {
            id: id.into(),
            record: record.into(),
        }
    }

    fn stored(db: &Path, id: &str) -> Option<String> {
        let conn = rusqlite::Connection::open(db).expect("sqlite");
        conn.query_row("SELECT record FROM consumers WHERE id = $1", [id], |r| r.get(0))
            .ok()
    }

    fn append_bytes(path: &Path, bytes: &[u8]) {
        let mut file = OpenOptions::new().append(true).open(path).expect("segment");
        file.write_all(bytes).expect("append");
    }

    #[test]
    fn a_record_cut_short_at_the_end_is_dropped_and_every_whole_group_is_applied_once() {
        let dir = Dir::new("torn");
        let db = dir.db();
        let mut sqlite = Sqlite::open(&db, Durability::Commit).expect("open");
        let mut log = ChangeLog::create(&db, 1, &Shared::default()).expect("log");
        assert_eq!(
            log.append(&[consumer("u1", "\"v1\""), consumer("u2", "\"v1\"")])
                .expect("append"),
            1
        );
        // Group 1 reached the tables before the crash (the applier's transaction
        // records it), group 2 did not.
        sqlite
            .commit(&[consumer("u1", "\"v1\""), Row::LogApplied(1)])
            .expect("applied");
        assert_eq!(
            log.append(&[consumer("u1", "\"v2\""), Row::DeleteConsumer("u2".into())])
                .expect("append"),
            2
        );
        // A third write, cut short by the crash: its header and part of its payload.
        append_bytes(&segment_path(&db, 1), &[40, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
        drop(log);

        let recovered = recover(&db, &mut sqlite).expect("recovers");
        assert_eq!(
            recovered,
            Recovered {
                groups: 1,
                rows: 2,
                ignored_bytes: 10,
                next: 3
            },
            "group 1, already applied, is skipped"
        );
        assert_eq!(stored(&db, "u1").as_deref(), Some("\"v2\""));
        assert_eq!(stored(&db, "u2"), None);
        assert_eq!(sqlite.log_applied().expect("applied"), 2);
        assert!(
            segments(&db).expect("list").is_empty(),
            "the log is applied and removed"
        );
        assert!(spare_path(&db).exists(), "its segment is the spare");
        // Nothing to do the next time.
        assert_eq!(recover(&db, &mut sqlite).expect("again").groups, 0);
    }

    #[test]
    fn damage_followed_by_acknowledged_groups_stops_start_up_and_leaves_the_log() {
        let dir = Dir::new("damaged");
        let db = dir.db();
        let mut sqlite = Sqlite::open(&db, Durability::Commit).expect("open");
        let mut log = ChangeLog::create(&db, 1, &Shared::default()).expect("log");
        log.append(&[consumer("u1", "\"v1\"")]).expect("append");
        log.append(&[consumer("u1", "\"v2\"")]).expect("append");
        drop(log);
        // One bit of group 2 flipped; group 3 in the next segment.
        let first = segment_path(&db, 1);
        let mut bytes = std::fs::read(&first).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&first, &bytes).expect("write");
        let mut next = ChangeLog::create(&db, 3, &Shared::default()).expect("log");
        next.append(&[consumer("u1", "\"v3\"")]).expect("append");

        let e = format!("{:#}", recover(&db, &mut sqlite).expect_err("refused"));
        assert!(e.contains(&first.display().to_string()), "names the file: {e}");
        assert!(e.contains("checksum"), "says why: {e}");
        assert_eq!(stored(&db, "u1"), None, "nothing applied");
        assert_eq!(segments(&db).expect("list").len(), 2, "the log is left as it is");

        // The same damage where the next segment starts with the very next group (a
        // write that failed, retried in a new segment) is a write never acknowledged.
        std::fs::remove_file(segment_path(&db, 3)).expect("remove");
        let mut next = ChangeLog::create(&db, 2, &Shared::default()).expect("log");
        next.append(&[consumer("u1", "\"v3\"")]).expect("append");
        let recovered = recover(&db, &mut sqlite).expect("recovers");
        assert_eq!((recovered.groups, recovered.next), (2, 3));
        assert_eq!(stored(&db, "u1").as_deref(), Some("\"v3\""));
    }

    #[test]
    fn a_segment_written_over_an_old_one_ends_at_its_last_record() {
        let dir = Dir::new("recycled");
        let db = dir.db();
        let mut sqlite = Sqlite::open(&db, Durability::Commit).expect("open");
        let shared = Shared::default();
        let mut log = ChangeLog::create(&db, 1, &shared).expect("log");
        for v in 1..=3 {
            log.append(&[consumer(&format!("old{v}"), "\"v1\"")]).expect("append");
        }
        sqlite.commit(&[Row::LogApplied(3)]).expect("applied");
        // The applier recycles the applied segment; the next segment the writer starts
        // is written over it. Its first record is not as long as the old ones: what
        // follows it is the middle of an old record.
        std::fs::rename(segment_path(&db, 1), spare_path(&db)).expect("recycle");
        let mut log = ChangeLog::create(&db, 4, &shared).expect("log");
        assert!(!spare_path(&db).exists(), "the spare is taken");
        log.append(&[consumer("n", "\"v\"")]).expect("append");
        drop(log);
        let size = std::fs::metadata(segment_path(&db, 4)).expect("segment").len();
        let recovered = recover(&db, &mut sqlite).expect("recovers");
        assert_eq!((recovered.groups, recovered.next), (1, 5), "group 4 only");
        assert!(recovered.ignored_bytes > 0 && (recovered.ignored_bytes as u64) < size);
        assert_eq!(stored(&db, "n").as_deref(), Some("\"v\""));
        assert_eq!(stored(&db, "old2"), None, "stale records are not applied");

        // An old record that is whole and where a record begins: its number ends it.
        let mut log = ChangeLog::create(&db, 5, &shared).expect("log");
        for v in 5..=7 {
            log.append(&[consumer("same", &format!("\"{v}\""))]).expect("append");
        }
        drop(log);
        sqlite.commit(&[Row::LogApplied(7)]).expect("applied");
        std::fs::rename(segment_path(&db, 5), spare_path(&db)).expect("recycle");
        let mut log = ChangeLog::create(&db, 8, &shared).expect("log");
        log.append(&[consumer("same", "\"8\"")]).expect("append");
        drop(log);
        let recovered = recover(&db, &mut sqlite).expect("recovers");
        assert_eq!((recovered.groups, recovered.next, recovered.ignored_bytes), (1, 9, 0));
        assert_eq!(stored(&db, "same").as_deref(), Some("\"8\""), "not the stale 6 or 7");
    }

    #[test]
    fn the_applier_writes_the_latest_row_of_each_entity_and_cuts_the_segments_behind_it() {
        let dir = Dir::new("applier");
        let db = dir.db();
        let sqlite = Sqlite::open(&db, Durability::Commit).expect("open");
        let (tx, rx) = mpsc::channel();
        let metrics = StoreMetrics::new();
        let applier = Applier {
            db: db.clone(),
            backend: Box::new(sqlite),
            rx,
            every: Duration::from_secs(3600),
            metrics: metrics.clone(),
            healthy: Arc::new(AtomicBool::new(true)),
            shared: Shared::default(),
        };
        let thread = std::thread::spawn(move || applier.run());
        // Two segments: the first wholly applied after the settle, then cut.
        let mut log = ChangeLog::create(&db, 1, &Shared::default()).expect("log");
        let rows = vec![consumer("u1", "\"v1\""), consumer("u2", "\"v1\"")];
        tx.send(Apply::Group(log.append(&rows).expect("append"), rows))
            .expect("send");
        let mut log = ChangeLog::create(&db, 2, &Shared::default()).expect("log");
        let rows = vec![consumer("u1", "\"v2\""), Row::DeleteConsumer("u2".into())];
        tx.send(Apply::Group(log.append(&rows).expect("append"), rows))
            .expect("send");
        assert_eq!(stored(&db, "u1"), None, "not applied before it is due");
        let (done, wait) = tokio::sync::oneshot::channel();
        tx.send(Apply::Settle(done)).expect("send");
        wait.blocking_recv().expect("settled");
        assert_eq!(stored(&db, "u1").as_deref(), Some("\"v2\""));
        assert_eq!(stored(&db, "u2"), None);
        assert_eq!(metrics.apply_rows.get_sample_sum(), 2.0, "u1 and u2 once each");
        let left: Vec<u64> = segments(&db).expect("list").into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            left,
            vec![2],
            "the segment wholly applied is cut, the one written to is kept"
        );
        assert!(spare_path(&db).exists(), "the segment cut is the spare");
        drop(tx);
        thread.join().expect("the applier stops with its senders");
    }
}
