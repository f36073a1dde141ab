//! The vocabulary store that replicas share in Redis: named vocabularies in one hash, each
//! change announced on a channel, a full resync after every (re)connection and periodically.
//!
//! Writes go to Redis first (one MULTI: `HSET` + `PUBLISH`) and are acknowledged only once Redis
//! has them; reads never touch Redis: every replica serves from its local copy, which the
//! subscriber task keeps current. Redis down: reads keep working from that copy, writes fail
//! with [`EngineError::StoreUnavailable`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::engine::error::{EngineError, Result};
use crate::vocab::spec::{VocabLimits, VocabSpec};

/// The registry of named vocabularies, shared by the store and the subscriber task.
pub(crate) type Named = Arc<RwLock<BTreeMap<String, VocabSpec>>>;

/// Redis keys: the hash of vocabularies (field: name, value: the spec as JSON) and the channel
/// on which each write publishes the name it changed.
const HASH: &str = "dosod:vocabularies";
const CHANNEL: &str = "dosod:vocabularies:changed";
/// The revision counter: every write takes the next number, stored with the value
/// (`{"rev": N, "spec": …}`), so a replica never lets an older state replace a newer one.
const REV: &str = "dosod:vocabularies:rev";
/// A put: the next revision, the value with it, the announcement; returns the revision.
const PUT_SCRIPT: &str = "local rev = redis.call('INCR', KEYS[2]) \
    redis.call('HSET', KEYS[1], ARGV[1], '{\"rev\":' .. rev .. ',\"spec\":' .. ARGV[2] .. '}') \
    redis.call('PUBLISH', KEYS[3], ARGV[1]) return rev";
/// A delete: the next revision, the removal, the announcement; returns {revision, removed}.
const DELETE_SCRIPT: &str = "local rev = redis.call('INCR', KEYS[2]) \
    local n = redis.call('HDEL', KEYS[1], ARGV[1]) \
    redis.call('PUBLISH', KEYS[3], ARGV[1]) return {rev, n}";
/// Connecting, and each command, give up after this: a dead Redis answers 503 quickly.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The subscriber pings this often; a missing pong reconnects (a half-open TCP connection).
const PING_EVERY: Duration = Duration::from_secs(2);
/// A full resync this often even without a reconnect (a missed message cannot last longer).
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// What `/health/ready` and `/v1/info` report about a Redis store.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RedisState {
    /// The URL without its password.
    pub target: String,
    /// The subscriber holds a live connection.
    pub connected: bool,
    /// The local copy has been loaded from Redis at least once.
    pub synced: bool,
    /// Full resyncs so far (start-up, reconnects, periodic).
    pub resyncs: u64,
    /// The last connection or command failure, if the connection is down.
    pub error: Option<String>,
}

struct Shared {
    target: String,
    named: Named,
    limits: VocabLimits,
    /// The revision of the state this replica holds for each name it has seen (a deletion
    /// too). Taken before `named`, always.
    revs: Mutex<HashMap<String, u64>>,
    connected: AtomicBool,
    synced: AtomicBool,
    resyncs: AtomicU64,
    error: Mutex<Option<String>>,
}

/// A stored value: the spec and the revision that wrote it.
#[derive(serde::Deserialize)]
struct Stored {
    rev: u64,
    spec: VocabSpec,
}

impl Shared {
    fn set_error(&self, e: Option<String>) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::StoreUnavailable(format!("vocabulary store {} unavailable: {e}", self.target))
    }

    /// Replaces the local copy with a snapshot of the hash taken at revision `at`; entries that
    /// do not parse or validate are skipped with a warning (one bad writer cannot take the others
    /// down). A name this replica already holds at a newer revision (its own write, or a message
    /// applied since the snapshot was taken) keeps that state.
    fn replace_all(&self, all: HashMap<String, String>, at: u64) {
        let mut revs = self.revs.lock().unwrap_or_else(|p| p.into_inner());
        let mut named = self.named.write().unwrap_or_else(|p| p.into_inner());
        let mut fresh: BTreeMap<String, VocabSpec> = BTreeMap::new();
        let mut fresh_revs: HashMap<String, u64> = HashMap::new();
        for (name, json) in all {
            if let Some((rev, spec)) = self.parse(&name, &json) {
                fresh_revs.insert(name.clone(), rev);
                fresh.insert(name, spec);
            }
        }
        // Names held locally but absent from the snapshot: deleted as of `at`, unless newer.
        for (name, &rev) in revs.iter() {
            let snapshot_rev = fresh_revs.get(name).copied().unwrap_or(at);
            if rev > snapshot_rev {
                match named.get(name) {
                    Some(spec) => fresh.insert(name.clone(), spec.clone()),
                    None => fresh.remove(name),
                };
                fresh_revs.insert(name.clone(), rev);
            }
        }
        *named = fresh;
        *revs = fresh_revs;
        drop(named);
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        self.synced.store(true, Ordering::Release);
    }

    /// Applies one name's state at revision `rev` (`None`: deleted), unless a newer one is held.
    fn apply(&self, name: &str, spec: Option<VocabSpec>, rev: u64) {
        let mut revs = self.revs.lock().unwrap_or_else(|p| p.into_inner());
        if revs.get(name).is_some_and(|&held| held > rev) {
            return;
        }
        revs.insert(name.to_string(), rev);
        let mut named = self.named.write().unwrap_or_else(|p| p.into_inner());
        match spec {
            Some(spec) => named.insert(name.to_string(), spec),
            None => named.remove(name),
        };
    }

    /// A name's value as read with the revision counter at `at`: its own revision and spec,
    /// or deleted as of `at` (absent, or a value that does not validate).
    fn apply_read(&self, name: &str, value: Option<String>, at: u64) {
        match value.and_then(|json| self.parse(name, &json)) {
            Some((rev, spec)) => self.apply(name, Some(spec), rev),
            None => self.apply(name, None, at),
        }
    }

    fn parse(&self, name: &str, json: &str) -> Option<(u64, VocabSpec)> {
        let checked = crate::vocab::store::validate_name(name)
            .map_err(|e| e.to_string())
            .and_then(|()| serde_json::from_str::<Stored>(json).map_err(|e| e.to_string()))
            .and_then(|stored| {
                stored
                    .spec
                    .validate(&self.limits)
                    .map(|()| (stored.rev, stored.spec))
                    .map_err(|e| e.to_string())
            });
        checked
            .map_err(|e| tracing::warn!(store = %self.target, name, "skipping vocabulary: {e}"))
            .ok()
    }
}

/// A Redis-backed registry of named vocabularies, with its own small runtime so that the
/// synchronous [`VocabStore`](crate::vocab::store::VocabStore) can call it from any thread.
pub(crate) struct RedisStore {
    shared: Arc<Shared>,
    client: redis::Client,
    writer: Arc<tokio::sync::OnceCell<ConnectionManager>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RedisStore {
    /// Connects, loads every named vocabulary into `named` and starts the subscriber. When
    /// Redis cannot be reached: an error naming it, or with `tolerate` a warning, an empty copy
    /// and a store that is not ready until the subscriber's first sync.
    pub fn open(url: &str, tolerate: bool, named: Named, limits: VocabLimits) -> Result<Self> {
        let target = crate::config::redact_url(url);
        let client = redis::Client::open(url).map_err(|e| {
            EngineError::InvalidParameter(format!(
                "[vocabulary] store `{target}` is not a Redis URL: {e}"
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dosod-redis")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Runtime(format!("vocabulary store runtime: {e}")))?;
        let shared = Arc::new(Shared {
            target,
            named,
            limits,
            connected: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            revs: Mutex::new(HashMap::new()),
            resyncs: AtomicU64::new(0),
            error: Mutex::new(None),
        });
        let store = RedisStore {
            shared: shared.clone(),
            client: client.clone(),
            writer: Arc::new(tokio::sync::OnceCell::new()),
            runtime: Some(runtime),
        };
        // The first load, before anything is served from the copy.
        let first = store.call(async move {
            let mut con = client.get_multiplexed_async_connection().await?;
            snapshot(&mut con).await
        });
        match first {
            Ok((all, at)) => {
                store.shared.replace_all(all, at);
                tracing::info!(
                    store = %store.shared.target,
                    vocabularies = store.shared.named.read().map(|n| n.len()).unwrap_or(0),
                    "vocabulary store loaded"
                );
            }
            Err(e) if tolerate => {
                tracing::warn!(store = %store.shared.target, "{e}; not ready until it answers");
                store.shared.set_error(Some(e.to_string()));
            }
            Err(e) => return Err(e),
        }
        let rt = store.runtime.as_ref().expect("runtime until drop");
        rt.spawn(subscribe(store.client.clone(), shared));
        Ok(store)
    }

    /// Refuses a write at once while the subscriber knows Redis is down (its last attempt
    /// failed), so queued writes do not each wait out a timeout.
    fn check_up(&self) -> Result<()> {
        let s = &self.shared;
        match s.error.lock().unwrap_or_else(|p| p.into_inner()).as_deref() {
            Some(e) if !s.connected.load(Ordering::Acquire) => Err(s.unavailable(e)),
            _ => Ok(()),
        }
    }

    /// Stores `spec` as `name` and tells every replica; returns once Redis has it, with this
    /// replica's copy already showing it.
    pub fn save(&self, name: &str, spec: &VocabSpec) -> Result<()> {
        let json =
            serde_json::to_string(spec).map_err(|e| EngineError::Vocabulary(e.to_string()))?;
        let rev: u64 = self.write(PUT_SCRIPT, vec![name.to_string(), json])?;
        self.shared.apply(name, Some(spec.clone()), rev);
        Ok(())
    }

    /// Removes `name` and tells every replica; `false` if Redis had no such vocabulary.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let (rev, removed): (u64, u64) = self.write(DELETE_SCRIPT, vec![name.to_string()])?;
        self.shared.apply(name, None, rev);
        Ok(removed > 0)
    }

    /// Runs one write script over the hash, the revision counter and the channel.
    fn write<T: redis::FromRedisValue + Send + 'static>(
        &self,
        script: &'static str,
        args: Vec<String>,
    ) -> Result<T> {
        self.check_up()?;
        let (writer, client) = (self.writer.clone(), self.client.clone());
        self.call(async move {
            let con = connection(&writer, client).await?;
            once_more(async || {
                redis::cmd("EVAL")
                    .arg(script)
                    .arg(3)
                    .arg(&[HASH, REV, CHANNEL])
                    .arg(&args)
                    .query_async(&mut con.clone())
                    .await
            })
            .await
        })
    }

    pub fn state(&self) -> RedisState {
        let s = &self.shared;
        RedisState {
            target: s.target.clone(),
            connected: s.connected.load(Ordering::Acquire),
            synced: s.synced.load(Ordering::Acquire),
            resyncs: s.resyncs.load(Ordering::Relaxed),
            error: s.error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Runs `fut` on the store's runtime and waits for it, within [`TIMEOUT`] (plus one
    /// connection attempt). Safe from any thread; callers on an async runtime use
    /// `spawn_blocking`.
    fn call<T: Send + 'static>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let rt = self.runtime.as_ref().expect("runtime until drop");
        rt.spawn(async move {
            let _ = tx.send(tokio::time::timeout(2 * TIMEOUT, fut).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(self.shared.unavailable(e)),
            Ok(Err(_)) => Err(self.shared.unavailable("no answer in time")),
            Err(_) => Err(self.shared.unavailable("its client stopped")),
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // May run inside another runtime: do not wait for the store's tasks.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs a write, and once more if the connection had broken (the manager reconnects in between:
/// the first write after a Redis restart meets the old, dead socket). Both writes are
/// idempotent.
async fn once_more<T, F: Future<Output = redis::RedisResult<T>>>(
    mut write: impl FnMut() -> F,
) -> redis::RedisResult<T> {
    match write().await {
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            tracing::debug!("vocabulary store write retried: {e}");
            write().await
        }
        other => other,
    }
}

/// The writers' connection: made on first use, then reconnecting by itself.
async fn connection(
    cell: &tokio::sync::OnceCell<ConnectionManager>,
    client: redis::Client,
) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(TIMEOUT)
        .set_response_timeout(TIMEOUT)
        .set_number_of_retries(1)
        .set_max_delay(500);
    cell.get_or_try_init(|| ConnectionManager::new_with_config(client, config))
        .await
        .cloned()
}

/// The subscriber: subscribe, then resync (so no change between the two is missed), then apply
/// each announced name; on any failure mark the store disconnected and start again with a
/// back-off of 0.1 s doubling to 2 s.
async fn subscribe(client: redis::Client, shared: Arc<Shared>) {
    const FIRST: Duration = Duration::from_millis(100);
    let mut backoff = FIRST;
    loop {
        let Err(e) = follow(&client, &shared).await;
        if shared.connected.swap(false, Ordering::AcqRel) {
            // A connection that worked: the next attempt starts from the shortest wait.
            tracing::warn!(store = %shared.target, "vocabulary store lost: {e}");
            backoff = FIRST;
        }
        shared.set_error(Some(e.to_string()));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One connection's life: returns (an error) when it breaks.
async fn follow(
    client: &redis::Client,
    shared: &Shared,
) -> redis::RedisResult<std::convert::Infallible> {
    let timed = |e: tokio::time::error::Elapsed| {
        redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, e))
    };
    let pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(timed)??;
    let (mut sink, mut messages) = pubsub.split();
    tokio::time::timeout(TIMEOUT, sink.subscribe(CHANNEL))
        .await
        .map_err(timed)??;
    let mut con = tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(timed)??;
    let resync = async |con: &mut redis::aio::MultiplexedConnection| {
        let (all, at) = tokio::time::timeout(TIMEOUT, snapshot(con))
            .await
            .map_err(timed)??;
        shared.replace_all(all, at);
        redis::RedisResult::Ok(())
    };
    resync(&mut con).await?;
    if !shared.connected.swap(true, Ordering::AcqRel) {
        tracing::info!(store = %shared.target, "vocabulary store connected and synced");
    }
    shared.set_error(None);
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut full = tokio::time::interval(RESYNC_EVERY);
    full.reset();
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
                };
                let name: String = msg.get_payload()?;
                let mut read = redis::pipe();
                read.atomic().hget(HASH, &name).get(REV);
                let (value, at): (Option<String>, Option<u64>) =
                    tokio::time::timeout(TIMEOUT, read.query_async(&mut con))
                        .await
                        .map_err(timed)??;
                shared.apply_read(&name, value, at.unwrap_or(0));
            }
            _ = ping.tick() => {
                tokio::time::timeout(TIMEOUT, sink.ping::<redis::Value>()).await.map_err(timed)??;
            }
            _ = full.tick() => resync(&mut con).await?,
        }
    }
}

/// The whole hash and the revision counter, read in one transaction.
async fn snapshot(
    con: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<(HashMap<String, String>, u64)> {
    let (all, at): (HashMap<String, String>, Option<u64>) = redis::pipe()
        .atomic()
        .hgetall(HASH)
        .get(REV)
        .query_async(con)
        .await?;
    Ok((all, at.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            target: "redis://test".into(),
            named: Named::default(),
            limits: VocabLimits::default(),
            revs: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(true),
            synced: AtomicBool::new(false),
            resyncs: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    fn spec(class: &str) -> VocabSpec {
        serde_json::from_str(&format!(r#"{{"classes": ["{class}"]}}"#)).unwrap()
    }

    fn stored(rev: u64, class: &str) -> String {
        format!(r#"{{"rev": {rev}, "spec": {{"classes": ["{class}"]}}}}"#)
    }

    fn classes(s: &Shared, name: &str) -> Option<String> {
        let named = s.named.read().unwrap();
        named
            .get(name)
            .map(|v| serde_json::to_value(&v.classes).unwrap()[0].to_string())
    }

    #[test]
    fn an_older_state_never_replaces_a_newer_one() {
        let s = shared();
        // The writer's own acknowledgement (rev 5) arrives after another replica's newer
        // write (rev 6) was applied from its message: 6 stays.
        s.apply("v", Some(spec("truck")), 6);
        s.apply("v", Some(spec("van")), 5);
        assert_eq!(classes(&s, "v").as_deref(), Some("\"truck\""));
        // A deletion at 7 wins; a late message read at 6 does not bring it back.
        s.apply("v", None, 7);
        s.apply_read("v", Some(stored(6, "truck")), 6);
        assert_eq!(classes(&s, "v"), None);
        // A newer put after the deletion does.
        s.apply_read("v", Some(stored(8, "bus")), 8);
        assert_eq!(classes(&s, "v").as_deref(), Some("\"bus\""));
        // A value that does not parse reads as deleted at the counter's revision.
        s.apply_read("v", Some("{not json".into()), 9);
        assert_eq!(classes(&s, "v"), None);
    }

    #[test]
    fn a_resync_keeps_what_is_newer_than_its_snapshot() {
        let s = shared();
        s.apply("mine", Some(spec("pallet")), 12);
        s.apply("gone", None, 11);
        let snapshot: HashMap<String, String> = [
            ("old".to_string(), stored(3, "boat")),
            ("mine".to_string(), stored(9, "crate")),
            ("gone".to_string(), stored(10, "cone")),
        ]
        .into();
        s.replace_all(snapshot, 10);
        assert_eq!(classes(&s, "old").as_deref(), Some("\"boat\""));
        assert_eq!(
            classes(&s, "mine").as_deref(),
            Some("\"pallet\""),
            "rev 12 > snapshot"
        );
        assert_eq!(classes(&s, "gone"), None, "deleted at 11 > snapshot 10");
        // A later snapshot without a name deletes it.
        s.replace_all(HashMap::new(), 13);
        assert!(s.named.read().unwrap().is_empty());
        assert!(s.synced.load(Ordering::Acquire));
    }

    #[test]
    fn an_unreachable_store_is_an_error_naming_it_or_tolerated() {
        // Nothing listens on port 1.
        let named = Named::default();
        let url = "redis://127.0.0.1:1/0";
        let e = RedisStore::open(url, false, named.clone(), VocabLimits::default())
            .err()
            .expect("refused");
        assert!(matches!(e, EngineError::StoreUnavailable(_)), "{e}");
        assert!(e.to_string().contains("redis://127.0.0.1:1/0"), "{e}");
        let tolerated = RedisStore::open(url, true, named, VocabLimits::default()).unwrap();
        let state = tolerated.state();
        assert!(!state.synced && !state.connected && state.error.is_some());
        let refused = tolerated.save("a", &spec("boat")).unwrap_err();
        assert!(matches!(refused, EngineError::StoreUnavailable(_)));
        assert!(
            RedisStore::open("http://x", false, Named::default(), VocabLimits::default()).is_err()
        );
    }
}
