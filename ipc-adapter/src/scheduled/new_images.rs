//! New images in `ImageDirectory` (`ClassifyNewImages`): each image file that appears there,
//! once it is complete.
//!
//! "Complete" is what the kernel says (inotify through the `notify` crate): a file closed after
//! being written (`IN_CLOSE_WRITE`) or moved into the folder (`IN_MOVED_TO`, how a capture script
//! that writes `.frame.tmp` and renames it publishes a frame). A file still open for writing is
//! never read half-done. Only names ending in an accepted extension count, and not hidden ones
//! (a leading `.`, the usual temporary name). Files already there at start are not new.
//!
//! Bounded: at most `max_pending` images wait; when a burst brings more, the oldest waiting ones
//! are dropped (a camera's latest frame matters most) and counted in the log. An image written
//! twice while it waits is classified once.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Config, Event, EventKind, EventKindMask, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::settings::EXTENSIONS;

/// A watch on one folder and the new images waiting to be classified.
pub struct NewImages {
    dir: PathBuf,
    shared: Arc<Shared>,
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for NewImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewImages")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

struct Shared {
    pending: Mutex<Pending>,
    arrived: Notify,
}

struct Pending {
    queue: VecDeque<PathBuf>,
    max: usize,
    dropped: u64,
}

impl NewImages {
    /// Starts watching `dir`; an error says why it cannot be watched (missing, not readable).
    pub fn watch(dir: &Path, max_pending: usize) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                queue: VecDeque::new(),
                max: max_pending.max(1),
                dropped: 0,
            }),
            arrived: Notify::new(),
        });
        let handler_shared = shared.clone();
        let handler_dir = dir.to_path_buf();
        let config = Config::default()
            .with_event_kinds(EventKindMask::ACCESS_CLOSE | EventKindMask::MODIFY_NAME);
        let mut watcher = RecommendedWatcher::new(
            move |event: notify::Result<Event>| match event {
                Ok(event) => {
                    if let Some(path) = completed_image(&event, &handler_dir) {
                        handler_shared.push(path);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watching for new images"),
            },
            config,
        )
        .map_err(|e| format!("cannot watch for new images: {e}"))?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {} for new images: {e}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            shared,
            _watcher: watcher,
        })
    }

    /// The folder watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The next new image, waiting for one.
    pub async fn next(&self) -> PathBuf {
        loop {
            if let Some(path) = self.shared.lock().queue.pop_front() {
                return path;
            }
            // `notify_one` stores a permit when nobody waits, so an image that arrives between
            // the check above and this wait is not missed.
            self.shared.arrived.notified().await;
        }
    }

    /// New images dropped since the watch began because too many were waiting.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, path: PathBuf) {
        {
            let mut pending = self.lock();
            if pending.queue.contains(&path) {
                return;
            }
            pending.queue.push_back(path);
            if pending.queue.len() > pending.max {
                pending.queue.pop_front();
                pending.dropped += 1;
                tracing::warn!(
                    waiting = pending.max,
                    dropped_in_total = pending.dropped,
                    "more new images than can wait: the oldest waiting one was dropped"
                );
            }
        }
        self.arrived.notify_one();
    }
}

/// The image an event says is complete in `dir`, if any.
fn completed_image(event: &Event, dir: &Path) -> Option<PathBuf> {
    // A rename inside the folder is also reported as `RenameMode::Both` (from, to), beside the
    // `To` event every move into the folder gets: only `To` counts, so that it counts once.
    let path = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event.paths.first()?,
        _ => return None,
    };
    is_image_in(path, dir).then(|| path.clone())
}

/// Whether `path` is a visible file of `dir` with an accepted image extension.
fn is_image_in(path: &Path, dir: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let extension = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    path.parent() == Some(dir)
        && !name.starts_with('.')
        && extension.is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    async fn next(watch: &NewImages) -> PathBuf {
        tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a new image")
    }

    #[tokio::test]
    async fn complete_visible_images_only_and_a_half_written_one_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().canonicalize().unwrap();
        std::fs::write(dir.join("before.jpg"), b"x").unwrap();
        let watch = NewImages::watch(&dir, 16).unwrap();

        // Being written: nothing yet.
        let mut open = std::fs::File::create(dir.join("slow.jpg")).unwrap();
        open.write_all(b"first half").unwrap();
        open.flush().unwrap();
        // Not images, or hidden: never.
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.join(".frame.png.tmp"), b"x").unwrap();
        // Moved in under its final name: at once.
        std::fs::rename(dir.join(".frame.png.tmp"), dir.join("frame.PNG")).unwrap();
        assert_eq!(next(&watch).await, dir.join("frame.PNG"));
        // Closed after writing: now.
        open.write_all(b"second half").unwrap();
        drop(open);
        assert_eq!(next(&watch).await, dir.join("slow.jpg"));
        // Each once, and before.jpg was never new: the next one is the next file written (a
        // rename's second report, from and to, did not queue frame.PNG again).
        std::fs::write(dir.join("last.jpg"), b"x").unwrap();
        assert_eq!(next(&watch).await, dir.join("last.jpg"));
    }

    #[tokio::test]
    async fn a_burst_keeps_the_newest_and_counts_the_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().canonicalize().unwrap();
        let watch = NewImages::watch(&dir, 3).unwrap();
        for n in 0..10 {
            std::fs::write(dir.join(format!("{n}.jpg")), b"x").unwrap();
        }
        // Wait until the last one is in, then look at what waits.
        let last_in = async {
            while !watch.shared.lock().queue.contains(&dir.join("9.jpg")) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), last_in)
            .await
            .expect("the last image arrives");
        let waiting: Vec<PathBuf> = watch.shared.lock().queue.iter().cloned().collect();
        assert_eq!(
            waiting,
            ["7.jpg", "8.jpg", "9.jpg"].map(|n| dir.join(n)),
            "the newest three"
        );
        assert_eq!(watch.dropped(), 7);
    }
}
