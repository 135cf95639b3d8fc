//! The JSON Lines sink: one record a line, to a file (appended) or standard output. A commit
//! flushes, and with `fsync = "every-commit"` syncs the file's data before it returns.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

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
    /// Appends to the file at `path`, made if missing.
    pub fn file(path: &Path, fsync: FsyncPolicy) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
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
