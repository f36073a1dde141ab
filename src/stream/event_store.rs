//! Where events persist: one SQLite database (`events.db`) and each event's snapshot,
//! thumbnail and clip files under `[events] dir`, with retention by age and by total size,
//! oldest first. Errors never name a path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::events::EventObject;

/// The storage layer's errors; messages say what failed, never where on disk.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    #[error("event store: {0}")]
    Database(String),
    #[error("event store: {what}: {kind}")]
    Io {
        what: &'static str,
        kind: std::io::ErrorKind,
    },
}

impl From<rusqlite::Error> for EventStoreError {
    fn from(e: rusqlite::Error) -> Self {
        // SQLite's messages name no file; keep the reason.
        EventStoreError::Database(e.to_string())
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> EventStoreError {
    move |e| EventStoreError::Io {
        what,
        kind: e.kind(),
    }
}

/// `GET /v1/events` filters.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub struct EventQuery {
    pub camera: Option<String>,
    pub label: Option<String>,
    /// Events that entered this zone.
    pub zone: Option<String>,
    /// Started at or after (seconds since the epoch).
    pub after: Option<f64>,
    /// Started before (seconds since the epoch).
    pub before: Option<f64>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// The files of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Snapshot,
    Thumbnail,
    Clip,
}

impl Media {
    fn file_name(self, id: &str) -> String {
        match self {
            Media::Snapshot => format!("{id}.jpg"),
            Media::Thumbnail => format!("{id}-thumb.jpg"),
            Media::Clip => format!("{id}.mp4"),
        }
    }
}

pub struct EventStore {
    conn: Mutex<Connection>,
    dir: PathBuf,
    /// Events deleted through the API: a later state of one (an update, its clip) is not stored.
    deleted: Mutex<std::collections::HashSet<String>>,
}

/// An id as the tracker makes them (`1764650000.123456-k3x9q2`): safe as a file name.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !id.starts_with('.')
}

impl EventStore {
    /// Opens (or creates) `dir/events.db` and the media folders.
    pub fn open(dir: &Path) -> Result<EventStore, EventStoreError> {
        std::fs::create_dir_all(dir.join("media")).map_err(io("creating the events folder"))?;
        let conn = Connection::open(dir.join("events.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS events (
                 id TEXT PRIMARY KEY,
                 camera TEXT NOT NULL,
                 label TEXT NOT NULL,
                 start_time REAL NOT NULL,
                 end_time REAL,
                 zones TEXT NOT NULL,
                 media_bytes INTEGER NOT NULL DEFAULT 0,
                 data TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS events_start ON events (start_time);
             CREATE INDEX IF NOT EXISTS events_camera ON events (camera, start_time);",
        )?;
        // Events a killed process left open end at their last frame: nothing will end them now.
        conn.execute(
            "UPDATE events SET end_time = json_extract(data, '$.frame_time'),
                 data = json_set(data, '$.end_time', json_extract(data, '$.frame_time'),
                                 '$.active', json('false'), '$.has_clip', json('false'))
             WHERE end_time IS NULL",
            [],
        )?;
        Ok(EventStore {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
            deleted: Mutex::new(std::collections::HashSet::new()),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where an event's file lives (`media/<camera>/<file>`); `None` for an id that is not one.
    pub fn media_path(&self, camera: &str, id: &str, media: Media) -> Option<PathBuf> {
        (valid_id(id) && !camera.contains(['/', '\\']) && !camera.starts_with('.')).then(|| {
            self.dir
                .join("media")
                .join(camera)
                .join(media.file_name(id))
        })
    }

    /// Writes one of an event's files (through a temporary file, so readers never see half).
    pub fn write_media(
        &self,
        camera: &str,
        id: &str,
        media: Media,
        bytes: &[u8],
    ) -> Result<(), EventStoreError> {
        let path = self
            .media_path(camera, id, media)
            .ok_or_else(|| EventStoreError::Database(format!("invalid event id `{id}`")))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating a media folder"))?;
        }
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, bytes).map_err(io("writing a snapshot"))?;
        std::fs::rename(&tmp, &path).map_err(io("writing a snapshot"))?;
        Ok(())
    }

    /// Whether the event was deleted through the API (its later states and files are not
    /// stored).
    pub fn is_deleted(&self, id: &str) -> bool {
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Saves an event's latest state (not for an event deleted through the API).
    pub fn upsert(&self, o: &EventObject) -> Result<(), EventStoreError> {
        if self.is_deleted(&o.id) {
            return Ok(());
        }
        let data = serde_json::to_string(o).expect("serialisable");
        let zones = serde_json::to_string(&o.entered_zones).expect("serialisable");
        let bytes = [Media::Snapshot, Media::Thumbnail, Media::Clip]
            .iter()
            .filter_map(|m| self.media_path(&o.camera, &o.id, *m))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len() as i64)
            .sum::<i64>();
        self.conn().execute(
            "INSERT INTO events (id, camera, label, start_time, end_time, zones, media_bytes, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET end_time = ?5, zones = ?6, media_bytes = ?7, data = ?8",
            params![
                o.id,
                o.camera,
                o.label,
                o.start_time,
                o.end_time,
                zones,
                bytes,
                data
            ],
        )?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<EventObject>, EventStoreError> {
        let data: Option<String> = self
            .conn()
            .query_row("SELECT data FROM events WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        data.map(|d| parse(&d)).transpose()
    }

    /// Events matching `q`, newest first.
    pub fn list(&self, q: &EventQuery) -> Result<Vec<EventObject>, EventStoreError> {
        let limit = i64::from(q.limit.unwrap_or(100).min(10_000));
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT data FROM events
             WHERE (?1 IS NULL OR camera = ?1) AND (?2 IS NULL OR label = ?2)
               AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(events.zones) WHERE value = ?3))
               AND (?4 IS NULL OR start_time >= ?4) AND (?5 IS NULL OR start_time < ?5)
             ORDER BY start_time DESC LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![q.camera, q.label, q.zone, q.after, q.before, limit],
            |r| r.get::<_, String>(0),
        )?;
        rows.map(|r| parse(&r?)).collect()
    }

    /// Deletes an event and its files; whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool, EventStoreError> {
        let Some(o) = self.get(id)? else {
            return Ok(false);
        };
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(o.id.clone());
        self.remove(&o.camera, &o.id)?;
        Ok(true)
    }

    fn remove(&self, camera: &str, id: &str) -> Result<(), EventStoreError> {
        for m in [Media::Snapshot, Media::Thumbnail, Media::Clip] {
            if let Some(p) = self.media_path(camera, id, m) {
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("deleting a media file")(e)),
                }
            }
        }
        self.conn()
            .execute("DELETE FROM events WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Deletes ended events that started before `now − retain_days`, then, oldest first, ended
    /// events until their files take at most `max_bytes` (0: no limit). Returns how many went.
    pub fn prune(
        &self,
        now: f64,
        retain_days: f64,
        max_bytes: u64,
    ) -> Result<usize, EventStoreError> {
        let mut doomed: Vec<(String, String)> = Vec::new();
        {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT camera, id, media_bytes, start_time FROM events
                 WHERE end_time IS NOT NULL ORDER BY start_time ASC",
            )?;
            let rows: Vec<(String, String, i64, f64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?;
            let total: i64 = conn.query_row(
                // The limit is on ended events' files: those in progress are still growing.
                "SELECT COALESCE(SUM(media_bytes), 0) FROM events WHERE end_time IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            let mut left = total.max(0) as u64;
            let cutoff = now - retain_days * 86_400.0;
            for (camera, id, bytes, start) in rows {
                let too_old = retain_days > 0.0 && start < cutoff;
                let too_big = max_bytes > 0 && left > max_bytes;
                if !(too_old || too_big) {
                    break; // the rest are newer, and the files fit
                }
                left = left.saturating_sub(bytes.max(0) as u64);
                doomed.push((camera, id));
            }
        }
        for (camera, id) in &doomed {
            self.remove(camera, id)?;
        }
        Ok(doomed.len())
    }
}

fn parse(data: &str) -> Result<EventObject, EventStoreError> {
    serde_json::from_str(data)
        .map_err(|e| EventStoreError::Database(format!("a stored event: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(id: &str, camera: &str, start: f64, zones: &[&str]) -> EventObject {
        EventObject {
            id: id.into(),
            camera: camera.into(),
            frame_time: start,
            label: "dog".into(),
            sub_label: None,
            top_score: 0.5,
            score: 0.5,
            bbox: [0.0, 0.0, 10.0, 10.0],
            area: 100.0,
            ratio: 1.0,
            region: [0.0, 0.0, 100.0, 100.0],
            current_zones: Vec::new(),
            entered_zones: zones.iter().map(|z| z.to_string()).collect(),
            has_snapshot: true,
            has_clip: false,
            start_time: start,
            end_time: Some(start + 5.0),
            stationary: false,
            motionless_count: 0,
            position_changes: 0,
            false_positive: false,
            active: false,
        }
    }

    #[test]
    fn events_survive_reopening_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EventStore::open(dir.path()).unwrap();
            s.upsert(&object("1.0-a", "door", 1.0, &["porch"])).unwrap();
            s.upsert(&object("2.0-b", "yard", 2.0, &[])).unwrap();
            let mut late = object("3.0-c", "door", 3.0, &["porch", "path"]);
            late.end_time = None;
            s.upsert(&late).unwrap();
            late.end_time = Some(9.0);
            s.upsert(&late).unwrap();
        }
        let s = EventStore::open(dir.path()).unwrap();
        {
            // A process killed with an event open: reopening ends it at its last frame.
            let mut open = object("4.0-d", "door", 4.0, &[]);
            open.end_time = None;
            open.frame_time = 6.5;
            s.upsert(&open).unwrap();
        }
        let s = EventStore::open(dir.path()).unwrap();
        let closed = s.get("4.0-d").unwrap().unwrap();
        assert_eq!((closed.end_time, closed.active), (Some(6.5), false));
        assert!(s.delete("4.0-d").unwrap());
        let mut late_update = closed.clone();
        late_update.top_score = 0.9;
        s.upsert(&late_update).unwrap();
        assert!(
            s.get("4.0-d").unwrap().is_none(),
            "a deleted event stays deleted"
        );
        let ids = |q: EventQuery| -> Vec<String> {
            s.list(&q).unwrap().into_iter().map(|o| o.id).collect()
        };
        assert_eq!(ids(EventQuery::default()), ["3.0-c", "2.0-b", "1.0-a"]);
        let door = EventQuery {
            camera: Some("door".into()),
            ..Default::default()
        };
        assert_eq!(ids(door), ["3.0-c", "1.0-a"]);
        let path = EventQuery {
            zone: Some("path".into()),
            ..Default::default()
        };
        assert_eq!(ids(path), ["3.0-c"]);
        let window = EventQuery {
            after: Some(1.5),
            before: Some(3.0),
            ..Default::default()
        };
        assert_eq!(ids(window), ["2.0-b"]);
        let one = EventQuery {
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(ids(one), ["3.0-c"]);
        assert_eq!(s.get("3.0-c").unwrap().unwrap().end_time, Some(9.0));
        assert!(s.delete("2.0-b").unwrap());
        assert!(!s.delete("2.0-b").unwrap());
        assert!(s.get("2.0-b").unwrap().is_none());
    }

    #[test]
    fn retention_deletes_the_oldest_first_with_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = EventStore::open(dir.path()).unwrap();
        for i in 0..5 {
            let id = format!("{i}.0-x");
            s.write_media("cam", &id, Media::Snapshot, &[0u8; 1000])
                .unwrap();
            s.upsert(&object(&id, "cam", f64::from(i) * 86_400.0, &[]))
                .unwrap();
        }
        let mut open = object("9.0-open", "cam", 0.5, &[]);
        open.end_time = None;
        s.upsert(&open).unwrap();
        let left = || -> Vec<String> {
            s.list(&EventQuery::default())
                .unwrap()
                .into_iter()
                .map(|o| o.id)
                .collect()
        };
        // Size first: 5000 bytes, at most 3000 → the two oldest ended events go.
        assert_eq!(s.prune(5.0 * 86_400.0, 0.0, 3000).unwrap(), 2);
        assert_eq!(left(), ["4.0-x", "3.0-x", "2.0-x", "9.0-open"]);
        assert!(
            !s.media_path("cam", "0.0-x", Media::Snapshot)
                .unwrap()
                .exists()
        );
        assert!(
            s.media_path("cam", "2.0-x", Media::Snapshot)
                .unwrap()
                .exists()
        );
        // Age: kept 1.5 days → only the event of day 4 stays, and the open one.
        assert_eq!(s.prune(5.0 * 86_400.0, 1.5, 0).unwrap(), 2);
        assert_eq!(left(), ["4.0-x", "9.0-open"]);
    }

    #[test]
    fn ids_and_errors_never_reach_outside_or_name_paths() {
        let dir = tempfile::tempdir().unwrap();
        let s = EventStore::open(dir.path()).unwrap();
        for bad in ["../x", "..", "a/b", "", ".hidden"] {
            assert!(s.media_path("cam", bad, Media::Clip).is_none(), "{bad}");
        }
        assert!(s.media_path("../etc", "1.0-a", Media::Clip).is_none());
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        let err = EventStore::open(&blocked).err().unwrap().to_string();
        assert!(!err.contains(path_str(&blocked)), "{err}");
    }

    fn path_str(p: &Path) -> &str {
        p.to_str().unwrap()
    }
}
