//! The JSON Lines sink: one record a line, to a file (appended) or standard output. A commit
//! flushes, and with `fsync = "every-commit"` syncs the file's data before it returns.
//!
//! A file whose last line was cut short (the machine lost power mid-write) is ended with a
//! newline before anything is appended: the fragment stays a fragment on its own line, and
//! the next record, which a device will have been acknowledged for, is whole on the next.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use tracing::warn;
use trackgate_codecs::Record;

use super::group::RecordSink;
use crate::config::FsyncPolicy;

/// Bytes gathered before a write to the file or standard output.
const BUFFER: usize = 256 * 1024;

/// JSON Lines to a file (appending) or to standard output.
#[derive(Debug)]
pub struct JsonlSink {
    out: JsonlTarget,
    fsync: FsyncPolicy,
    /// One record's line, reused: built whole, then handed to the buffered writer in one
    /// call (through `serde_json` it was a call per token).
    line: Vec<u8>,
}

#[derive(Debug)]
enum JsonlTarget {
    File(BufWriter<File>),
    Stdout(BufWriter<io::Stdout>),
}

impl JsonlSink {
    /// Appends to the file at `path`, made if missing, after ending a torn last line.
    pub fn file(path: &Path, fsync: FsyncPolicy) -> io::Result<Self> {
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
        if !file.metadata()?.is_file() {
            // A device or a pipe (`/dev/null` for a benchmark, a FIFO to another program):
            // it has no tail to mend and nothing to sync (Linux refuses fsync there, EINVAL).
            return Ok(JsonlSink::new(JsonlTarget::File(BufWriter::with_capacity(BUFFER, file)), FsyncPolicy::Never));
        }
        if let Some(offset) = torn_tail(&mut file)? {
            // The offset says where to look; the fragment itself may hold personal data.
            warn!(file = %path.display(), offset, "the file's last line was cut short; records go on from the next line");
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        Ok(JsonlSink::new(JsonlTarget::File(BufWriter::with_capacity(BUFFER, file)), fsync))
    }

    /// Writes to standard output (fsync does not apply).
    pub fn stdout() -> Self {
        JsonlSink::new(JsonlTarget::Stdout(BufWriter::with_capacity(BUFFER, io::stdout())), FsyncPolicy::Never)
    }

    fn new(out: JsonlTarget, fsync: FsyncPolicy) -> Self {
        JsonlSink { out, fsync, line: Vec::with_capacity(1024) }
    }

    fn writer(&mut self) -> &mut dyn Write {
        writer(&mut self.out)
    }
}

/// Where the file's last line starts, if the file does not end with a newline.
fn torn_tail(file: &mut File) -> io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    // Back to the line's start, a block at a time, for the warning's offset.
    let mut end = len;
    let mut block = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64 + 1));
        }
        end = start;
    }
    Ok(Some(0))
}

fn writer(out: &mut JsonlTarget) -> &mut dyn Write {
    match out {
        JsonlTarget::File(w) => w,
        JsonlTarget::Stdout(w) => w,
    }
}

impl RecordSink for JsonlSink {
    fn write(&mut self, records: &[Record]) -> io::Result<()> {
        let w = writer(&mut self.out);
        for r in records {
            self.line.clear();
            r.write_json(&mut self.line);
            self.line.push(b'\n');
            w.write_all(&self.line)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> io::Result<()> {
        self.writer().flush()?;
        if let (JsonlTarget::File(w), FsyncPolicy::EveryCommit) = (&self.out, self.fsync) {
            w.get_ref().sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackgate_codecs::{Kind, Protocol};

    /// `jsonl:/dev/null` takes records and commits, fsync or not.
    #[test]
    fn a_device_file_is_written_without_syncing() {
        let mut sink = JsonlSink::file(Path::new("/dev/null"), FsyncPolicy::EveryCommit).unwrap();
        sink.write(&[Record::new(Protocol::Nmea, Kind::Position, "RMC")]).unwrap();
        sink.commit().unwrap();
    }

    fn one_record(path: &Path) {
        let mut sink = JsonlSink::file(path, FsyncPolicy::EveryCommit).unwrap();
        sink.write(&[Record::new(Protocol::Gt06, Kind::Heartbeat, "0x13")]).unwrap();
        sink.commit().unwrap();
    }

    /// A restart after a write cut short: the fragment keeps its own line, and the record
    /// appended after it is a whole line that any JSON reader takes.
    #[test]
    fn a_torn_last_line_is_ended_before_records_are_appended() {
        let dir = std::env::temp_dir().join(format!("trackgate-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, before) in [
            ("torn", "{\"schema\":1,\"protocol\":\"gt06\"}\n{\"schema\":1,\"prot".to_owned()),
            ("torn-alone", "{\"schema\":1,\"prot".to_owned()),
            ("whole", "{\"schema\":1,\"protocol\":\"gt06\"}\n".to_owned()),
            ("empty", String::new()),
            ("torn-long", "x".repeat(10_000)),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, &before).unwrap();
            assert_eq!(
                torn_tail(&mut File::open(&path).unwrap()).unwrap().is_some(),
                !before.is_empty() && !before.ends_with('\n'),
                "{name}"
            );
            one_record(&path);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with(&before), "{name}: what was there is kept");
            let last = text.lines().last().unwrap();
            let record: serde_json::Value =
                serde_json::from_str(last).unwrap_or_else(|e| panic!("{name}: {e}: {last}"));
            assert_eq!(record["kind"], "heartbeat", "{name}");
            assert_eq!(text.lines().count(), before.lines().count() + 1, "{name}");
        }
        let path = dir.join("torn");
        let mut file = File::open(&path).unwrap();
        std::fs::write(&path, "{\"a\":1}\n{\"b\"").unwrap();
        assert_eq!(torn_tail(&mut file).unwrap(), Some(8), "where the torn line starts");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
