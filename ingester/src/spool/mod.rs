//! The local durable spool: where a verified webhook goes when the broker cannot confirm it, so
//! that a broker outage is still a 200 — "on this ingester's disk" — and never a lost event.
//!
//! # Storage
//!
//! A directory of append-only segment files `<id>.seg` (ids grow), each a run of records framed
//! with their length and CRC-32C ([`record`]). One writer thread appends: requests hand it their
//! encoded record and wait; it takes every record waiting, writes them in one go, `fdatasync`s
//! once, and only then answers them all (group commit: one fsync for many requests). A new
//! segment's directory entry is fsync'd before its first record is acknowledged. The directory
//! is locked: one ingester per spool.
//!
//! # Draining
//!
//! [`Spool::drain`] reads records oldest first, up to the durable end of each segment, publishes
//! them with confirms, and moves past a record only after the broker's `Ack`. A segment wholly
//! drained is deleted. After a crash the drain starts again at the start of each remaining
//! segment, so a message may reach the broker twice (the worker de-duplicates); none is lost.
//!
//! # Recovery
//!
//! On open, every segment is read through; the first bytes that are not a whole, intact record
//! (a write torn by `kill -9` or power loss — never acknowledged, since the fsync had not
//! returned) are cut off, and the records before them are drained.
//!
//! # Bounds
//!
//! `max_bytes` on disk and `max_age` of the oldest undrained message: past either, or for a
//! second after a failed write (disk full, I/O error), [`Spool::append`] refuses and the request
//! gets the 503 it would have had without a spool. Nothing already spooled is ever dropped.
//!
//! # Quarantine
//!
//! A record the broker refuses every time it is sent would stop every record behind it: it is
//! moved to `quarantine/` beside the segments ([`quarantine`]), with its reason, and the rest
//! drains in order.

pub mod drain;
pub mod quarantine;
pub mod record;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use countersign::config::{SPOOL_RECORD_HEADROOM, SpoolConfig};
use tokio::sync::{Notify, oneshot};

use crate::metrics::Metrics;
pub use record::Message;
use record::{Encoded, Next};

/// A segment is closed for appends once it is this large (records are not split: one record
/// may make it larger).
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// The most bytes one group commit writes before its fsync.
const GROUP_BYTES: u64 = 64 * 1024 * 1024;
const LOCK_FILE: &str = "lock";
/// After a failed write (disk full, I/O error), appends are refused at once for this long rather
/// than each trying the disk again.
const FAILED_WRITE_PAUSE: Duration = Duration::from_secs(1);
const SEGMENT_SUFFIX: &str = ".seg";

/// Why a message was not spooled; the request gets 503.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({bytes} of {max_bytes} bytes)")]
    Full { bytes: u64, max_bytes: u64 },
    #[error("the spool's oldest message is older than {max_age:?}")]
    TooOld { max_age: Duration },
    #[error("the spool's last write failed: {0}")]
    Failing(String),
    #[error("the spool could not write the message: {0}")]
    Disk(#[source] io::Error),
    #[error(transparent)]
    Encode(#[from] record::EncodeError),
    #[error("the spool is closed")]
    Closed,
}

impl SpoolError {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            SpoolError::Full { .. } => "spool_full",
            SpoolError::TooOld { .. } => "spool_too_old",
            SpoolError::Failing(_) | SpoolError::Disk(_) => "spool_failed",
            SpoolError::Encode(_) => "spool_unencodable",
            SpoolError::Closed => "spool_closed",
        }
    }
}

/// What the spool holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub messages: u64,
    pub bytes: u64,
    /// Age of the oldest message not yet drained.
    pub oldest_age: Option<Duration>,
}

pub struct Spool {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<Append>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    state: Mutex<State>,
    /// Wakes the drainer: records became durable.
    appended: Notify,
    metrics: Metrics,
    /// Held (locked) for as long as the spool is open.
    _lock: File,
}

#[derive(Default)]
struct State {
    /// Oldest first; the last one may be the writer's.
    segments: VecDeque<Segment>,
    next_id: u64,
    /// On disk and reserved by appends under way.
    bytes: u64,
    /// Durable and not yet drained.
    messages: u64,
    /// The writer is writing to the last segment now: the drainer must not delete it.
    writing: bool,
    /// The last write's error and when it happened: appends are refused for
    /// [`FAILED_WRITE_PAUSE`] after it, then tried again (the disk may have room by then).
    failing: Option<(String, Instant)>,
    /// Since when the spool has held messages, and how many it took since.
    episode: Option<(Instant, u64)>,
}

struct Segment {
    id: u64,
    /// Durable bytes: what the drainer may read.
    len: u64,
    /// Bytes before this offset are drained.
    drained_to: u64,
    /// No more appends (a full, recovered, failed or drained-out segment).
    sealed: bool,
    /// When the oldest undrained record was spooled (or a little earlier).
    oldest: Option<SystemTime>,
}

struct Append {
    record: Encoded,
    reply: oneshot::Sender<io::Result<()>>,
}

impl Spool {
    /// Opens (creating) the directory, locks it, recovers what a previous run left (cutting a
    /// torn tail), and starts the writer thread.
    pub fn open(config: &SpoolConfig, metrics: Metrics) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).with_context(|| {
            format!(
                "cannot create the spool directory {} (ingester.spool.dir)",
                dir.display()
            )
        })?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .with_context(|| format!("cannot write in the spool directory {}", dir.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "the spool directory {} is in use by another ingester (each ingester needs its own ingester.spool.dir)",
                dir.display()
            )
        })?;
        let state = recover(&dir)
            .with_context(|| format!("cannot recover the spool in {}", dir.display()))?;
        if state.messages > 0 {
            tracing::warn!(
                messages = state.messages,
                bytes = state.bytes,
                dir = %dir.display(),
                "spool holds messages from before this start; draining them once the broker takes them"
            );
        }
        let shared = Arc::new(Shared {
            dir,
            max_bytes: config.max_bytes,
            max_age: config.max_age,
            state: Mutex::new(state),
            appended: Notify::new(),
            metrics,
            _lock: lock,
        });
        shared.publish_gauges();
        let quarantined = quarantine::count(&shared.dir);
        shared
            .metrics
            .spool_quarantined
            .set(i64::try_from(quarantined).unwrap_or(i64::MAX));
        if quarantined > 0 {
            tracing::warn!(
                messages = quarantined,
                dir = %quarantine::dir(&shared.dir).display(),
                "spool quarantine holds messages the broker refused: countersign-ingester spool quarantine list"
            );
        }
        let (sender, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("spool-writer".to_owned())
            .spawn({
                let shared = shared.clone();
                move || write_loop(&shared, &receiver)
            })
            .context("cannot start the spool writer thread")?;
        Ok(Self {
            shared,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Appends `message` and returns once it is on disk (fsync'd), or why it is not.
    pub async fn append(&self, message: &Message) -> Result<(), SpoolError> {
        let record = record::encode(message, SystemTime::now())?;
        let len = record.disk_len();
        self.shared.reserve(len)?;
        let (reply, answer) = oneshot::channel();
        let sent = self
            .sender
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.send(Append { record, reply }).is_ok());
        let outcome = if sent {
            answer
                .await
                .unwrap_or_else(|_| Err(io::Error::other("spool writer stopped")))
        } else {
            Err(io::Error::other("spool closed"))
        };
        outcome.map_err(|error| {
            self.shared.release(len);
            if sent {
                SpoolError::Disk(error)
            } else {
                SpoolError::Closed
            }
        })
    }

    /// `Ok` while a webhook of ordinary size could be kept now: 1 MiB of room at least, the
    /// oldest message young enough, the last write did not fail.
    pub fn has_room(&self) -> Result<(), SpoolError> {
        self.shared
            .check(&self.shared.state.lock().unwrap(), SPOOL_RECORD_HEADROOM)
    }

    pub fn status(&self) -> Status {
        self.shared.status()
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Refreshes the gauges (the oldest message's age grows with time alone).
    pub fn publish_gauges(&self) {
        self.shared.publish_gauges();
    }

    /// Stops the writer after what it holds; later appends get [`SpoolError::Closed`].
    pub fn close(&self) {
        self.sender.lock().unwrap().take();
        if let Some(writer) = self.writer.lock().unwrap().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn check(&self, state: &State, len: u64) -> Result<(), SpoolError> {
        if let Some((error, at)) = &state.failing
            && at.elapsed() < FAILED_WRITE_PAUSE
        {
            return Err(SpoolError::Failing(error.clone()));
        }
        if state.bytes + len > self.max_bytes {
            return Err(SpoolError::Full {
                bytes: state.bytes,
                max_bytes: self.max_bytes,
            });
        }
        if oldest(state).is_some_and(|at| age(at) > self.max_age) {
            return Err(SpoolError::TooOld {
                max_age: self.max_age,
            });
        }
        Ok(())
    }

    fn reserve(&self, len: u64) -> Result<(), SpoolError> {
        let mut state = self.state.lock().unwrap();
        self.check(&state, len)?;
        state.bytes += len;
        Ok(())
    }

    fn release(&self, len: u64) {
        let mut state = self.state.lock().unwrap();
        state.bytes = state.bytes.saturating_sub(len);
    }

    fn status(&self) -> Status {
        status_of(&self.state.lock().unwrap())
    }

    fn publish_gauges(&self) {
        self.publish_gauges_locked(&self.state.lock().unwrap());
    }

    /// Sets the gauges from `state` (its lock held by the caller).
    fn publish_gauges_locked(&self, state: &State) {
        let status = status_of(state);
        let metrics = &self.metrics;
        metrics
            .spool_messages
            .set(i64::try_from(status.messages).unwrap_or(i64::MAX));
        metrics
            .spool_bytes
            .set(i64::try_from(status.bytes).unwrap_or(i64::MAX));
        metrics
            .spool_oldest_age_seconds
            .set(status.oldest_age.map_or(0.0, |a| a.as_secs_f64()));
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        segment_path(&self.dir, id)
    }
}

fn status_of(state: &State) -> Status {
    Status {
        messages: state.messages,
        bytes: state.bytes,
        oldest_age: oldest(state).map(age),
    }
}

fn oldest(state: &State) -> Option<SystemTime> {
    state
        .segments
        .iter()
        .find(|s| s.drained_to < s.len)
        .and_then(|s| s.oldest)
}

fn age(at: SystemTime) -> Duration {
    SystemTime::now().duration_since(at).unwrap_or_default()
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SEGMENT_SUFFIX}"))
}

/// Makes a directory's entries (a new or removed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads every segment the directory holds, cutting each at its first torn record.
fn recover(dir: &Path) -> io::Result<State> {
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            name.to_str()?.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    let mut state = State {
        next_id: ids.last().map_or(1, |id| id + 1),
        ..State::default()
    };
    for id in ids {
        let path = segment_path(dir, id);
        let (records, len, oldest) = scan(&path)?;
        if records == 0 {
            fs::remove_file(&path)?;
            continue;
        }
        state.messages += records;
        state.bytes += len;
        state.segments.push_back(Segment {
            id,
            len,
            drained_to: 0,
            sealed: true,
            oldest,
        });
    }
    sync_dir(dir)?;
    if state.messages > 0 {
        state.episode = Some((Instant::now(), state.messages));
    }
    Ok(state)
}

/// Counts a segment's intact records and cuts what follows them. Returns (records, length,
/// when the first was spooled).
fn scan(path: &Path) -> io::Result<(u64, u64, Option<SystemTime>)> {
    let file = File::options().read(true).write(true).open(path)?;
    let size = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, &file);
    let (mut records, mut len, mut first) = (0u64, 0u64, None);
    loop {
        match record::read(&mut reader)? {
            Next::Record(record) => {
                records += 1;
                len += record.len;
                first.get_or_insert(record.spooled_at);
            }
            Next::End => break,
            Next::Torn(what) => {
                tracing::warn!(
                    segment = %path.display(),
                    at = len,
                    cut_bytes = size - len,
                    found = what,
                    "spool: cutting a torn tail (a write that never completed, so never acknowledged)"
                );
                file.set_len(len)?;
                file.sync_all()?;
                break;
            }
        }
    }
    Ok((records, len, first))
}

/// The writer thread: group commits until the sender is dropped.
fn write_loop(shared: &Shared, receiver: &mpsc::Receiver<Append>) {
    let mut active: Option<(u64, File)> = None;
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        let mut group_bytes = group[0].record.disk_len();
        while group_bytes < GROUP_BYTES {
            match receiver.try_recv() {
                Ok(next) => {
                    group_bytes += next.record.disk_len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = write_group(shared, &mut active, &group);
        shared
            .metrics
            .spool_sync_seconds
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => shared.appended.notify_one(),
            Err(error) => {
                tracing::error!(error = %error, records = group.len(), "spool write failed; those webhooks get 503");
            }
        }
        shared.publish_gauges();
        for append in group {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            };
            let _ = append.reply.send(answer);
        }
    }
}

/// Writes and fsyncs one group to the active segment (opening one if needed). On failure the
/// segment is cut back to where it was and sealed, so nothing half-written is ever drained.
fn write_group(
    shared: &Shared,
    active: &mut Option<(u64, File)>,
    group: &[Append],
) -> io::Result<()> {
    let (id, start) = reserve_segment(shared, active);
    let result = append_and_sync(shared, active, id, group);

    let written: u64 = group.iter().map(|a| a.record.disk_len()).sum();
    let mut state = shared.state.lock().unwrap();
    state.writing = false;
    let failed = result.is_err();
    if failed {
        // Best effort: the torn bytes are past `len`, never read, and cut on the next start.
        if let Some((_, file)) = active.take() {
            let _ = file.set_len(start).and_then(|()| file.sync_data());
        }
        state.failing = result
            .as_ref()
            .err()
            .map(|e| (e.to_string(), Instant::now()));
    } else {
        state.failing = None;
        state.messages += group.len() as u64;
        let episode = state.episode.get_or_insert_with(|| {
            tracing::warn!(
                "spooling started: the broker is not confirming; webhooks are kept on this ingester's disk until it does"
            );
            (Instant::now(), 0)
        });
        episode.1 += group.len() as u64;
        shared.metrics.spool_appended.inc_by(group.len() as u64);
    }
    let segment = state
        .segments
        .iter_mut()
        .find(|s| s.id == id)
        .expect("the writer's segment stays until it is sealed");
    if failed {
        segment.sealed = true;
    } else {
        segment.len = start + written;
        segment.oldest.get_or_insert(group[0].record.spooled_at);
        if segment.len >= SEGMENT_BYTES {
            segment.sealed = true;
            *active = None;
        }
    }
    result
}

/// The segment the next group goes to and its length now: the open one the writer holds, else
/// a new one (marked as being written, so that the drainer leaves it be).
fn reserve_segment(shared: &Shared, active: &mut Option<(u64, File)>) -> (u64, u64) {
    let mut state = shared.state.lock().unwrap();
    state.writing = true;
    let current = state
        .segments
        .back()
        .filter(|s| !s.sealed)
        .map(|s| (s.id, s.len));
    match (current, active.as_ref()) {
        (Some((id, len)), Some((open, _))) if id == *open => (id, len),
        _ => {
            *active = None;
            let id = state.next_id;
            state.next_id += 1;
            state.segments.push_back(Segment {
                id,
                len: 0,
                drained_to: 0,
                sealed: false,
                oldest: None,
            });
            (id, 0)
        }
    }
}

/// Appends `group` to segment `id` (created if the writer holds no file for it) and fsyncs it.
fn append_and_sync(
    shared: &Shared,
    active: &mut Option<(u64, File)>,
    id: u64,
    group: &[Append],
) -> io::Result<()> {
    if active.is_none() {
        let file = File::options()
            .create_new(true)
            .append(true)
            .open(shared.segment_path(id))?;
        sync_dir(&shared.dir)?;
        *active = Some((id, file));
    }
    let (_, file) = active.as_ref().expect("opened above");
    let mut writer = BufWriter::with_capacity(256 * 1024, file);
    for append in group {
        writer.write_all(&append.record.head)?;
        writer.write_all(&append.record.body)?;
    }
    writer.flush()?;
    drop(writer);
    file.sync_data()
}
