//! Commands held for devices, kept in a file (`commands_hold_file`) so that a restart does
//! not lose what a `202 held` answer promised.
//!
//! The file is a log, one JSON object a line:
//!
//! ```text
//! {"held":7,"protocol":"gt06","device":"123456789012345","until_ms":1764000000000,"command":{"text":"RELAY,1#"}}
//! {"done":7}
//! ```
//!
//! A `held` line is written (and synced to disk) before the command is held or queued, and
//! a `done` line once it has an outcome: written to its device, refused, expired. Opening
//! the file reads back the commands still held and rewrites it with only those; so does a
//! new held command that finds more than `2 × held + COMPACT_SLACK` lines in the file, so a
//! gateway that runs for months keeps a file about the size of what it holds (each
//! compaction reads and rewrites the file once, after at least `COMPACT_SLACK` lines of
//! outcomes: a few milliseconds every few thousand commands, on the HTTP endpoint's task,
//! under the file's lock and outside the registry's). `done` lines are not synced: after
//! the machine itself crashes (not the gateway), a command written just before may be
//! written again once its device reconnects; commands are delivered at least once.
//!
//! Device ids and commands are personal data and secrets (commands carry device
//! passwords): the file is created readable by its owner only.
//!
//! A line that cannot be read back (cut short by a crash, not UTF-8, longer than any held
//! command's line can be, or not a line this file writes) is never erased silently: it is
//! copied to `<file>.rejected` beside the file, with a warning naming the line, and the
//! gateway starts with the rest. Lines are read with a length limit, so a damaged file
//! cannot make the start read hundreds of megabytes into memory.
//!
//! Writes are plain blocking file calls, made by whoever holds or finishes a command: the
//! HTTP endpoint's task (one synced write a held command) and the connections' tasks (one
//! unsynced write a command done). Commands are rare next to frames; a slow disk delays
//! command requests, not acks.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::warn;
use trackgate_codecs::{Downlink, Protocol};

/// How many lines past twice the commands held the file may grow before it is compacted.
const COMPACT_SLACK: u64 = 4096;

/// The longest line read back. A held command's line is its JSON: a command body of at most
/// 4 KiB, escaped, plus the device id and a few numbers.
const MAX_LINE: usize = 64 * 1024;

/// The file, open for appending.
#[derive(Debug)]
pub struct HoldFile {
    path: PathBuf,
    log: Mutex<Log>,
    /// Set once the gateway has stopped: commands dropped from memory after that are still
    /// held, so nothing more is written.
    detached: AtomicBool,
    compact_slack: u64,
}

/// The open file and what it holds, counted as lines are written.
#[derive(Debug)]
struct Log {
    file: File,
    /// Lines in the file.
    lines: u64,
    /// `held` lines without their `done` (an estimate between compactions: a command done
    /// twice counts twice, which only brings the next compaction forward).
    held: u64,
}

/// A command read back from the file, still held.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// Its id in the file (the registry goes on numbering after the largest).
    pub id: u64,
    pub protocol: Protocol,
    pub device_id: String,
    pub command: Downlink,
    /// How much of its hold is left.
    pub remaining: Duration,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Held { held: u64, protocol: Protocol, device: String, until_ms: u64, command: Downlink },
    Done { done: u64 },
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl HoldFile {
    /// Opens `path` (created if missing), returns the commands still held in it (in the
    /// order they were sent), and leaves the file holding only those. A line that cannot be
    /// read (a write cut short by a crash, an unknown protocol) is skipped with a warning.
    pub fn open(path: &Path) -> io::Result<(HoldFile, Vec<Restored>)> {
        HoldFile::open_with_slack(path, COMPACT_SLACK)
    }

    fn open_with_slack(path: &Path, compact_slack: u64) -> io::Result<(HoldFile, Vec<Restored>)> {
        let (file, restored) = compact(path)?;
        let held = restored.len() as u64;
        let log = Log { file, lines: held, held };
        let hold_file =
            HoldFile { path: path.to_owned(), log: Mutex::new(log), detached: AtomicBool::new(false), compact_slack };
        Ok((hold_file, restored))
    }

    /// Notes a command about to be held (or queued with a hold), synced before it returns.
    pub fn held(
        &self,
        id: u64,
        protocol: Protocol,
        device_id: &str,
        command: &Downlink,
        until: Instant,
    ) -> io::Result<()> {
        let left = until.saturating_duration_since(Instant::now());
        let until_ms = unix_ms(SystemTime::now() + left);
        let line = Line::Held { held: id, protocol, device: device_id.to_owned(), until_ms, command: command.clone() };
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        // Compacted here rather than where outcomes are noted: this runs on the HTTP
        // endpoint's task, outside the registry's lock, where outcomes are sometimes noted
        // under it (expiry, take-over), and a compaction there would stall every shard. The
        // file only grows through new held commands, so checking here bounds it as well.
        if log.lines > 2 * log.held + self.compact_slack {
            match compact(&self.path) {
                Ok((file, restored)) => {
                    let held = restored.len() as u64;
                    *log = Log { file, lines: held, held };
                }
                // The old file is still there and still appended to; the next command tries again.
                Err(e) => warn!(file = %self.path.display(), error = %e, "cannot compact the hold file"),
            }
        }
        append(&log.file, &line)?;
        log.lines += 1;
        log.held += 1;
        log.file.sync_data()
    }

    /// Notes that a command has its outcome (not synced: see the module's notes).
    pub fn done(&self, id: u64) {
        if self.detached.load(Ordering::Acquire) {
            return;
        }
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = append(&log.file, &Line::Done { done: id }) {
            warn!(file = %self.path.display(), error = %e, "cannot note a command's outcome in the hold file");
            return;
        }
        log.lines += 1;
        log.held = log.held.saturating_sub(1);
    }

    /// From now on nothing is written: the gateway has stopped, and the commands it still
    /// held stay in the file for the next start.
    pub fn detach(&self) {
        self.detached.store(true, Ordering::Release);
    }
}

fn append(mut file: &File, line: &Line) -> io::Result<()> {
    let mut text = serde_json::to_string(line).map_err(io::Error::other)?;
    text.push('\n');
    // One write of the whole line: the file is opened for appending, so lines from
    // different writers never interleave.
    file.write_all(text.as_bytes())
}

/// Reads the log at `path` (missing: nothing held): the `held` lines in order, and the ids
/// done. Lines that cannot be read are copied to the `.rejected` file (see the module's notes).
fn read_back(path: &Path) -> io::Result<(Vec<Line>, HashSet<u64>)> {
    let (mut held, mut done) = (Vec::new(), HashSet::new());
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((held, done)),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut rejected = Rejected::new(path);
    let mut line = Vec::new();
    let mut number = 0;
    while let Some(whole) = next_line(&mut reader, &mut line, |over| rejected.write(over))? {
        number += 1;
        let parsed = if !whole {
            Err("longer than any line this file holds".to_owned())
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            std::str::from_utf8(&line)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(|text| serde_json::from_str::<Line>(text).map_err(|e| e.to_string()))
        };
        match parsed {
            Ok(Line::Done { done: id }) => {
                done.insert(id);
            }
            Ok(l) => held.push(l),
            Err(why) => {
                if whole {
                    rejected.write(&line)?;
                }
                rejected.end_line()?;
                warn!(file = %path.display(), line = number, reason = %why, copied_to = %rejected.path.display(), "skipped a line of the hold file");
            }
        }
    }
    Ok((held, done))
}

/// Reads the next line, without its `\n`, into `line` if it is at most [`MAX_LINE`] bytes;
/// the bytes of a longer line go to `overflow` as they are read, and only as much is held as
/// one read gives. `Some(true)` a line in `line`, `Some(false)` a line too long, `None` the
/// end of the file. A last line without a newline counts as a line.
fn next_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    mut overflow: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<Option<bool>> {
    line.clear();
    let (mut any, mut whole) = (false, true);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(any.then_some(whole));
        }
        any = true;
        let end = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        if whole && line.len() + chunk.len() > MAX_LINE {
            whole = false;
            overflow(line)?;
            line.clear();
        }
        if whole {
            line.extend_from_slice(chunk);
        } else {
            overflow(chunk)?;
        }
        let used = chunk.len() + usize::from(end.is_some());
        reader.consume(used);
        if end.is_some() {
            return Ok(Some(whole));
        }
    }
}

/// `<file>.rejected`: the lines the hold file could not read back, as they were. Made when
/// the first one comes, readable by its owner only (commands carry device passwords).
struct Rejected {
    path: PathBuf,
    file: Option<File>,
}

impl Rejected {
    fn new(of: &Path) -> Self {
        let mut name = of.as_os_str().to_owned();
        name.push(".rejected");
        Rejected { path: name.into(), file: None }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            self.file = Some(options.open(&self.path)?);
        }
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => Ok(()),
        }
    }

    /// Ends the line just copied, and makes it durable: the compaction that follows removes
    /// it from the hold file.
    fn end_line(&mut self) -> io::Result<()> {
        self.write(b"\n")?;
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// Reads `path` back (missing: nothing held) and replaces it with only the commands still
/// held: not done, time not run out. Returns the new file open for appending, and those
/// commands in the order they were sent.
fn compact(path: &Path) -> io::Result<(File, Vec<Restored>)> {
    let now_ms = unix_ms(SystemTime::now());
    let (held, done) = read_back(path)?;
    let mut restored = Vec::new();
    let mut kept = String::new();
    for line in held {
        let Line::Held { held: id, protocol, device, until_ms, command } = &line else { continue };
        // Done, or its time ran out (while the gateway was down, or since the last compaction:
        // its `done` line follows when the registry sweeps it, and finds nothing to cancel).
        if done.contains(id) || *until_ms <= now_ms {
            continue;
        }
        kept.push_str(&serde_json::to_string(&line).map_err(io::Error::other)?);
        kept.push('\n');
        restored.push(Restored {
            id: *id,
            protocol: *protocol,
            device_id: device.clone(),
            command: command.clone(),
            remaining: Duration::from_millis(until_ms - now_ms),
        });
    }
    // The compacted file replaces the old one whole: written beside it, synced, opened for
    // appending, renamed over it. The handle is taken before the rename, so it is the new
    // file's whatever happens after; if the rename fails, the old file stays as it was.
    let fresh = path.with_extension("compacting");
    {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // Commands carry device passwords: the file is the operator's alone.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&fresh)?;
        f.write_all(kept.as_bytes())?;
        f.sync_all()?;
    }
    let file = OpenOptions::new().append(true).open(&fresh)?;
    std::fs::rename(&fresh, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok((file, restored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trackgate-holds-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("held.jsonl")
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }

    /// What is held and not done comes back on the next open, in order, with the rest of
    /// its hold; done, expired and unreadable lines do not, and the file is left holding
    /// only what came back.
    #[test]
    fn the_file_gives_back_what_is_still_held() {
        let path = temp_path("back");
        let (file, restored) = HoldFile::open(&path).unwrap();
        assert!(restored.is_empty());
        let hour = Instant::now() + Duration::from_secs(3600);
        let relay = Downlink::Text("RELAY,1#".into());
        let locate = Downlink::Jt808(trackgate_codecs::jt808::Command::QueryLocation);
        file.held(3, Protocol::Gt06, "123456789012345", &relay, hour).unwrap();
        file.held(4, Protocol::Jt808, "14130567872", &locate, hour).unwrap();
        file.held(5, Protocol::Gt06, "123456789012345", &Downlink::Text("WHERE#".into()), Instant::now()).unwrap();
        file.held(6, Protocol::Gt06, "9", &relay, hour).unwrap();
        file.done(6);
        drop(file);
        // A protocol this build does not know, and a write cut short by a crash.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"held\":8,\"protocol\":\"tk103\",\"device\":\"1\",\"until_ms\":99999999999999,\"command\":{\"text\":\"X\"}}\n")
            .unwrap();
        f.write_all(b"{\"held\":7,\"prot").unwrap();
        drop(f);

        let (file, restored) = HoldFile::open(&path).unwrap();
        let got: Vec<_> = restored.iter().map(|r| (r.id, r.protocol, r.device_id.as_str(), &r.command)).collect();
        assert_eq!(got, [(3, Protocol::Gt06, "123456789012345", &relay), (4, Protocol::Jt808, "14130567872", &locate)]);
        assert!(restored.iter().all(|r| r.remaining > Duration::from_secs(3500)), "{restored:?}");
        assert_eq!(lines(&path), 2, "compacted to what is still held");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Once detached (the gateway stopped), outcomes are no longer noted.
        file.detach();
        file.done(3);
        assert_eq!(lines(&path), 2);
        drop(file);
        let (file, restored) = HoldFile::open(&path).unwrap();
        assert_eq!(restored.len(), 2);
        file.done(3);
        file.done(4);
        drop(file);
        assert!(HoldFile::open(&path).unwrap().1.is_empty());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Lines that cannot be read back (a held command torn inside a multi-byte character,
    /// so not UTF-8; one cut short; one far longer than any held command) are copied to the
    /// `.rejected` file as they were, and the commands around them come back.
    #[test]
    fn damaged_lines_are_set_aside_not_erased() {
        let path = temp_path("damaged");
        let (file, _) = HoldFile::open(&path).unwrap();
        let hour = Instant::now() + Duration::from_secs(3600);
        let stop = Downlink::Text("停车#".into());
        file.held(1, Protocol::Gt06, "123456789012345", &stop, hour).unwrap();
        drop(file);
        let whole = std::fs::read(&path).unwrap();
        // The same line again, cut inside the first byte pair of `停`, then a good one.
        let cut = whole.iter().position(|&b| b >= 0x80).unwrap() + 1;
        let mut torn = whole[..cut].to_vec();
        torn.push(b'\n');
        let long = vec![b'x'; 3 * MAX_LINE];
        let mut text = whole.clone();
        text.extend_from_slice(&torn);
        text.extend_from_slice(&long);
        text.push(b'\n');
        text.extend_from_slice(b"{\"held\":4,\"prot");
        std::fs::write(&path, &text).unwrap();

        let (_file, restored) = HoldFile::open(&path).expect("a damaged file does not stop the start");
        assert_eq!(restored.iter().map(|r| (r.id, &r.command)).collect::<Vec<_>>(), [(1, &stop)]);
        let rejected = std::fs::read(path.with_file_name("held.jsonl.rejected")).unwrap();
        let mut expected = torn.clone();
        expected.extend_from_slice(&long);
        expected.push(b'\n');
        expected.extend_from_slice(b"{\"held\":4,\"prot\n");
        assert!(rejected == expected, "the rejected lines, byte for byte");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path.with_file_name("held.jsonl.rejected")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Lines are read with a limit: a line longer than it is handed on in pieces, never
    /// held whole.
    #[test]
    fn lines_are_read_with_a_limit() {
        let text = [b"short\n".to_vec(), vec![b'y'; MAX_LINE + 10], b"\nlast".to_vec()].concat();
        let mut reader = BufReader::with_capacity(1024, &text[..]);
        let (mut line, mut over, mut most) = (Vec::new(), 0, 0);
        let mut got = Vec::new();
        while let Some(whole) = next_line(&mut reader, &mut line, |b| {
            over += b.len();
            Ok(())
        })
        .unwrap()
        {
            most = most.max(line.len());
            got.push((whole, String::from_utf8_lossy(&line).into_owned()));
        }
        assert_eq!(got, [(true, "short".to_owned()), (false, String::new()), (true, "last".to_owned())]);
        assert_eq!(over, MAX_LINE + 10);
        assert!(most <= MAX_LINE);
    }

    /// A running gateway's file is compacted, when the next command is held, once outcomes
    /// outnumber what is held by the slack, and the lines written after that go to the new
    /// file.
    #[test]
    fn the_file_is_compacted_while_running() {
        let path = temp_path("compact");
        let (file, _) = HoldFile::open_with_slack(&path, 4).unwrap();
        let hour = Instant::now() + Duration::from_secs(3600);
        let relay = Downlink::Text("RELAY,1#".into());
        for id in 1..=9 {
            file.held(id, Protocol::Gt06, "123456789012345", &relay, hour).unwrap();
        }
        for id in 1..=3 {
            file.done(id);
        }
        // 12 lines, 6 held: 12 is not past 2 × 6 + 4, so the next command is appended.
        file.held(10, Protocol::Gt06, "123456789012345", &relay, hour).unwrap();
        assert_eq!(lines(&path), 13);
        // 15 lines, 5 held: past it. Outcomes do not compact (they may be noted under the
        // registry's lock); the next held command does, and is appended to the new file.
        file.done(4);
        file.done(5);
        assert_eq!(lines(&path), 15);
        file.held(11, Protocol::Gt06, "123456789012345", &relay, hour).unwrap();
        assert_eq!(lines(&path), 6, "the five still held (6-10), then 11");
        for id in 6..=8 {
            file.done(id);
        }
        assert_eq!(lines(&path), 9, "outcomes after the compaction are in the new file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        drop(file);
        let ids: Vec<u64> = HoldFile::open(&path).unwrap().1.iter().map(|r| r.id).collect();
        assert_eq!(ids, [9, 10, 11]);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
