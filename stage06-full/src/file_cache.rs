//! The open-file cache: a worker keeps the files it served recently open,
//! with their metadata and (for small files) their contents, for `valid`.
//! A repeated small file then costs its `writev` alone, not `openat2`,
//! `statx`, `pread` and `close` too (nginx's `open_file_cache` makes the
//! same trade). The price is staleness: a changed or deleted file is served
//! as it was for up to `valid`. Rejected: `fstat` on every hit (a system
//! call back per request, still blind to a file replaced by `rename`);
//! inotify (a watch per directory, a queue that can overflow, a descriptor
//! in every worker's loop). A second is invisible to people editing a site
//! and saves nearly every open under load; `--open-file-cache 0` turns the
//! cache off. A miss (404, 403) is not cached: a new file is served at once.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::http::path::{self, OpenFile, Opened};
use crate::http::{date, response};
use crate::sys::Root;

/// A worker's open-file cache.
pub struct FileCache {
    entries: HashMap<String, (Arc<OpenFile>, Instant)>,
    /// Zero: no caching.
    valid: Duration,
    capacity: usize,
    /// Files up to this size are kept in memory.
    small: usize,
    /// The lookup key, reused so a hit allocates nothing.
    key: String,
    pub hits: u64,
    pub misses: u64,
}

impl FileCache {
    pub fn new(valid: Duration, capacity: usize, small: usize) -> FileCache {
        FileCache {
            entries: HashMap::new(),
            valid,
            capacity,
            small,
            key: String::new(),
            hits: 0,
            misses: 0,
        }
    }

    // ANCHOR: cache_open
    /// Opens `relative` beneath `root`: from the cache when an entry younger
    /// than the validity period is there, else from the file system.
    pub fn open(
        &mut self,
        root: &Root,
        relative: &str,
        trailing_slash: bool,
        now: Instant,
    ) -> Opened {
        // `docs` and `docs/` differ: one redirects, one serves the index.
        self.key.clear();
        self.key.push_str(relative);
        if trailing_slash {
            self.key.push('/');
        }
        if let Some((file, opened_at)) = self.entries.get(&self.key)
            && now.saturating_duration_since(*opened_at) < self.valid
        {
            self.hits += 1;
            return Opened::File(Arc::clone(file));
        }
        self.misses += 1;
        let opened = open_uncached(root, relative, trailing_slash, self.small);
        if let Opened::File(file) = &opened
            && !self.valid.is_zero()
        {
            if self.entries.len() >= self.capacity {
                let valid = self.valid;
                self.entries
                    .retain(|_, (_, at)| now.saturating_duration_since(*at) < valid);
                if self.entries.len() >= self.capacity {
                    // Everything is fresh: start over rather than keep an
                    // LRU list per hit for a cache that refills in a second.
                    self.entries.clear();
                }
            }
            self.entries
                .insert(self.key.clone(), (Arc::clone(file), now));
        }
        opened
    }
    // ANCHOR_END: cache_open
}

/// Maps a failure to open a path to a status.
fn open_error_status(e: &std::io::Error) -> u16 {
    match e.raw_os_error() {
        Some(nix::libc::ENOENT | nix::libc::ENOTDIR | nix::libc::ENAMETOOLONG) => 404,
        // EXDEV: the path (through a symbolic link) leads out of the root.
        Some(nix::libc::EXDEV | nix::libc::ELOOP | nix::libc::EACCES | nix::libc::EPERM) => 403,
        // Out of descriptors: the server is full for now, not broken; the
        // client may try again (a 500 would say the request failed).
        Some(nix::libc::EMFILE | nix::libc::ENFILE) => 503,
        _ => 500,
    }
}

fn open_uncached(root: &Root, relative: &str, trailing_slash: bool, small: usize) -> Opened {
    let mut name = relative.to_string();
    let mut file = match root.open_beneath(&name) {
        Ok(f) => f,
        Err(e) => return Opened::Status(open_error_status(&e)),
    };
    let Ok(mut meta) = file.metadata() else {
        return Opened::Status(500);
    };
    if meta.is_dir() {
        if !trailing_slash {
            return Opened::Redirect;
        }
        name = if name.is_empty() {
            "index.html".into()
        } else {
            format!("{name}/index.html")
        };
        file = match root.open_beneath(&name) {
            Ok(f) => f,
            Err(e) => return Opened::Status(open_error_status(&e)),
        };
        meta = match file.metadata() {
            Ok(m) => m,
            Err(_) => return Opened::Status(500),
        };
    }
    if !meta.is_file() {
        // A device, a FIFO, a socket, a directory named index.html.
        return Opened::Status(403);
    }
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let len = meta.len();
    let contents = if len <= small as u64 {
        let mut bytes = vec![0; len as usize];
        if file.read_exact_at(&mut bytes, 0).is_err() {
            return Opened::Status(500);
        }
        Some(bytes)
    } else {
        None
    };
    let last_modified = date::format(modified);
    let content_type = path::content_type(&name);
    Opened::File(Arc::new(OpenFile {
        file,
        len,
        modified_secs: modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        fields: response::file_fields(content_type, len, &last_modified),
        last_modified,
        content_type,
        contents,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(tag: &str) -> (std::path::PathBuf, Root) {
        let dir = std::env::temp_dir().join(format!("stage06-cache-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("a.txt"), "first").unwrap();
        std::fs::write(dir.join("docs/index.html"), "<p>docs</p>").unwrap();
        let root = Root::open(&dir).unwrap();
        (dir, root)
    }

    fn body(opened: Opened) -> Vec<u8> {
        match opened {
            Opened::File(f) => f.contents.clone().unwrap(),
            Opened::Redirect => b"redirect".to_vec(),
            Opened::Status(s) => s.to_string().into_bytes(),
        }
    }

    #[test]
    fn a_fresh_entry_is_served_from_memory_and_an_old_one_is_reopened() {
        let (dir, root) = site("fresh");
        let mut cache = FileCache::new(Duration::from_secs(1), 8, 1024);
        let t0 = Instant::now();
        assert_eq!(body(cache.open(&root, "a.txt", false, t0)), b"first");
        std::fs::write(dir.join("a.txt"), "second").unwrap();
        // Within the validity period: the snapshot (the documented price).
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(body(cache.open(&root, "a.txt", false, t1)), b"first");
        assert_eq!((cache.hits, cache.misses), (1, 1));
        // After it: the file as it is now.
        let t2 = t0 + Duration::from_secs(1);
        assert_eq!(body(cache.open(&root, "a.txt", false, t2)), b"second");
        std::fs::remove_file(dir.join("a.txt")).unwrap();
        let t3 = t2 + Duration::from_secs(2);
        assert_eq!(body(cache.open(&root, "a.txt", false, t3)), b"404");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_with_and_without_its_slash_are_different_entries() {
        let (dir, root) = site("dir");
        let mut cache = FileCache::new(Duration::from_secs(60), 8, 1024);
        let now = Instant::now();
        assert_eq!(body(cache.open(&root, "docs", true, now)), b"<p>docs</p>");
        assert_eq!(body(cache.open(&root, "docs", false, now)), b"redirect");
        assert_eq!(body(cache.open(&root, "missing", false, now)), b"404");
        assert_eq!(cache.entries.len(), 1, "only files are cached");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_errors_have_their_statuses() {
        let status = |errno| open_error_status(&std::io::Error::from_raw_os_error(errno));
        assert_eq!(status(nix::libc::ENOENT), 404);
        assert_eq!(status(nix::libc::EXDEV), 403);
        assert_eq!(
            status(nix::libc::EMFILE),
            503,
            "out of descriptors is temporary"
        );
        assert_eq!(status(nix::libc::EIO), 500);
    }

    #[test]
    fn the_cache_is_bounded_and_can_be_turned_off() {
        let (dir, root) = site("bounded");
        for i in 0..10 {
            std::fs::write(dir.join(format!("{i}.txt")), "x").unwrap();
        }
        let now = Instant::now();
        let mut cache = FileCache::new(Duration::from_secs(60), 4, 1024);
        for i in 0..10 {
            cache.open(&root, &format!("{i}.txt"), false, now);
            assert!(cache.entries.len() <= 4);
        }
        let mut off = FileCache::new(Duration::ZERO, 4, 1024);
        off.open(&root, "a.txt", false, now);
        off.open(&root, "a.txt", false, now);
        assert_eq!((off.hits, off.misses, off.entries.len()), (0, 2, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
