//! `trackgate decode`: what one device sent on one connection, in, JSON Lines out
//! (docs/tools.md). Also the engine behind the corpus runner, so a case decodes exactly as the command
//! line would decode it.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::Serialize;
use trackgate_codecs::detect::{detect_datagram, detect_stream, Detection};
use trackgate_codecs::framing::RejectKind;
use trackgate_codecs::{Protocol, RecordDecoder, StreamEvent};

use crate::protocol::{parse_utc_offset, serves, stream_decoder, Listens, StreamOptions, Transport};
use trackgate_codecs::gt06::CrcPolicy;

/// The line `decode` prints where a frame was rejected.
#[derive(Debug, Serialize)]
pub struct ErrorRecord<'a> {
    pub kind: &'static str,
    pub offset: u64,
    pub error: &'a str,
}

/// Input that is not what `--hex` promises: a usage error, not a device's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexError {
    pub line: usize,
    pub column: usize,
    pub detail: String,
}

impl std::fmt::Display for HexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hex input line {}, column {}: {}", self.line, self.column, self.detail)
    }
}

impl std::error::Error for HexError {}

/// Decodes hex text: whitespace and `#` comments are ignored. Returns one byte string per
/// non-empty line when `per_line` (UDP datagrams), else one for the whole text.
pub fn parse_hex(text: &str, per_line: bool) -> Result<Vec<Vec<u8>>, HexError> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("");
        let mut pending: Option<(usize, u8)> = None;
        for (col, c) in content.char_indices() {
            if c.is_whitespace() {
                continue;
            }
            let Some(v) = c.to_digit(16) else {
                return Err(HexError { line: ln + 1, column: col + 1, detail: format!("{c:?} is not a hex digit") });
            };
            pending = match pending {
                None => Some((col, v as u8)),
                Some((_, hi)) => {
                    current.push(hi << 4 | v as u8);
                    None
                }
            };
        }
        if let Some((col, _)) = pending {
            return Err(HexError {
                line: ln + 1,
                column: col + 1,
                detail: "odd number of hex digits on the line".into(),
            });
        }
        if per_line && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !per_line {
        out.push(current);
    }
    Ok(out)
}

/// Decode options a `.hex` file sets in its leading comment lines
/// (`# transport: udp`, `# jt808-tz: +00:00`, and trackgate's `# gt06-crc: lenient`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HexHeader {
    pub transport: Option<Transport>,
    pub jt808_tz_minutes: Option<i32>,
    pub gt06_crc: Option<CrcPolicy>,
}

impl HexHeader {
    /// `base` with the options this header sets put over it.
    pub fn options_over(&self, base: &StreamOptions) -> StreamOptions {
        StreamOptions {
            transport: self.transport.unwrap_or(base.transport),
            jt808_tz_minutes: self.jt808_tz_minutes.unwrap_or(base.jt808_tz_minutes),
            gt06_crc: self.gt06_crc.unwrap_or(base.gt06_crc),
            allow: base.allow.clone(),
            jt808_auth: base.jt808_auth.clone(),
        }
    }
}

pub fn parse_hex_header(text: &str) -> Result<HexHeader, String> {
    let mut h = HexHeader::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else { break };
        let Some((key, value)) = comment.split_once(':') else { continue };
        match key.trim() {
            "transport" => h.transport = Some(value.trim().parse()?),
            "jt808-tz" => h.jt808_tz_minutes = Some(parse_utc_offset(value.trim())?),
            "gt06-crc" => h.gt06_crc = Some(value.trim().parse()?),
            _ => {}
        }
    }
    Ok(h)
}

/// Counts of what a decode produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeSummary {
    /// Frames decoded whole and sound; a packet of several records counts once.
    pub frames: u64,
    pub records: u64,
    pub rejected: u64,
    /// The rejections by reason (they add up to `rejected`).
    pub rejected_by: BTreeMap<RejectKind, u64>,
}

impl std::fmt::Display for DecodeSummary {
    /// One line for a person: `3 frames, 4 records, 2 rejected (bad checksum 1, garbage 1)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} frame{}, {} record{}, {} rejected",
            self.frames,
            plural(self.frames),
            self.records,
            plural(self.records),
            self.rejected
        )?;
        let mut kinds = self.rejected_by.iter();
        if let Some((kind, n)) = kinds.next() {
            write!(f, " ({} {n}", kind.as_str())?;
            for (kind, n) in kinds {
                write!(f, ", {} {n}", kind.as_str())?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Decodes the byte streams (one for TCP, one per datagram for UDP) of one device and
/// writes one JSON line per record or rejection. With `auto`, the stream's first bytes (or
/// each datagram's own) name the protocol, as on the gateway's `auto` listener.
pub fn decode_to<W: Write>(
    listens: impl Into<Listens>,
    options: &StreamOptions,
    input: impl IntoIterator<Item = Vec<u8>>,
    out: &mut W,
) -> Result<DecodeSummary, DecodeError> {
    let listens = listens.into();
    let mut decoders = Decoders::default();
    let mut events = Vec::new();
    let mut summary = DecodeSummary::default();
    let mut offset = 0u64;
    for chunk in input {
        let protocol = match listens {
            Listens::One(p) => Some(p),
            Listens::Auto if options.transport == Transport::Udp => {
                detect_datagram(&chunk).filter(|&p| serves(p, Transport::Udp))
            }
            Listens::Auto => match detect_stream(&chunk, true) {
                Detection::Found(p) => Some(p),
                Detection::Undecided | Detection::Junk => None,
            },
        };
        let Some(protocol) = protocol else {
            write_undetected(offset, chunk.len() as u64, out, &mut summary)?;
            offset += chunk.len() as u64;
            continue;
        };
        offset += chunk.len() as u64;
        let decoder = decoders.of(protocol, options);
        // Each chunk is a whole stream (TCP) or a whole datagram (UDP): nothing after it
        // can complete a frame it started.
        decoder.decode(&chunk, true, &mut events);
        write_events(&mut **decoder, &mut events, out, &mut summary)?;
    }
    // A UDP session ends with the input: report what is still held (unfinished JT808
    // sub-packages).
    for decoder in decoders.0.iter_mut().map(|(_, d)| d) {
        decoder.finish(&mut events);
        write_events(&mut **decoder, &mut events, out, &mut summary)?;
    }
    Ok(summary)
}

/// One decoder per protocol heard (an `auto` capture of datagrams may hold several), in the
/// order first heard.
#[derive(Default)]
struct Decoders(Vec<(Protocol, Box<dyn RecordDecoder + Send>)>);

impl Decoders {
    fn of(&mut self, protocol: Protocol, options: &StreamOptions) -> &mut Box<dyn RecordDecoder + Send> {
        let i = match self.0.iter().position(|(p, _)| *p == protocol) {
            Some(i) => i,
            None => {
                self.0.push((protocol, stream_decoder(protocol, options)));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

/// The error line for `len` bytes at `offset` that no protocol begins as (`auto`).
fn write_undetected<W: Write>(
    offset: u64,
    len: u64,
    out: &mut W,
    summary: &mut DecodeSummary,
) -> Result<(), DecodeError> {
    summary.rejected += 1;
    *summary.rejected_by.entry(RejectKind::Garbage).or_default() += 1;
    let error = format!("{len} bytes that no protocol begins as (not gt06, jt808, teltonika or nmea)");
    serde_json::to_writer(&mut *out, &ErrorRecord { kind: "error", offset, error: &error }).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Streams raw bytes from `reader` (TCP capture) without holding the whole input. With
/// `auto`, the first bytes name the protocol; a stream they name none for is junk, one
/// error line for all of it.
pub fn decode_reader<R: Read, W: Write>(
    listens: impl Into<Listens>,
    options: &StreamOptions,
    mut reader: R,
    out: &mut W,
) -> Result<DecodeSummary, DecodeError> {
    let mut decoder = match listens.into() {
        Listens::One(p) => Some(stream_decoder(p, options)),
        Listens::Auto => None,
    };
    let (mut junk, mut junk_bytes) = (false, 0u64);
    let mut events = Vec::new();
    let mut summary = DecodeSummary::default();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecodeError::Io(e)),
        };
        let at_end = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        if decoder.is_none() && !junk {
            match detect_stream(&buf, at_end) {
                Detection::Found(p) => decoder = Some(stream_decoder(p, options)),
                Detection::Junk => junk = true,
                Detection::Undecided => {}
            }
        }
        let Some(decoder) = decoder.as_mut() else {
            // Undecided: read on (the end always decides). Junk: counted, not kept.
            if junk {
                junk_bytes += buf.len() as u64;
                buf.clear();
                if at_end {
                    write_undetected(0, junk_bytes, out, &mut summary)?;
                    return Ok(summary);
                }
            }
            continue;
        };
        let used = decoder.decode(&buf, at_end, &mut events);
        buf.drain(..used);
        write_events(&mut **decoder, &mut events, out, &mut summary)?;
        if at_end {
            decoder.finish(&mut events);
            write_events(&mut **decoder, &mut events, out, &mut summary)?;
            return Ok(summary);
        }
    }
}

/// Writes what the decoder just gave and counts it, with the frames it took.
fn write_events<W: Write>(
    decoder: &mut (dyn RecordDecoder + Send),
    events: &mut Vec<StreamEvent>,
    out: &mut W,
    summary: &mut DecodeSummary,
) -> Result<(), DecodeError> {
    summary.frames += u64::from(decoder.take_frame_count());
    let mut line = Vec::new();
    for e in events.drain(..) {
        match e {
            StreamEvent::Record(r) => {
                summary.records += 1;
                line.clear();
                r.write_json(&mut line);
                out.write_all(&line)?;
            }
            StreamEvent::Rejected { offset, reason, .. } => {
                summary.rejected += 1;
                *summary.rejected_by.entry(reason.kind).or_default() += 1;
                let detail = reason.to_string();
                serde_json::to_writer(&mut *out, &ErrorRecord { kind: "error", offset, error: &detail })
                    .map_err(io::Error::from)?;
            }
            // What a gateway would send back to the device; `decode` has no device to answer.
            StreamEvent::Reply(_) => continue,
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[derive(Debug)]
pub enum DecodeError {
    Io(io::Error),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<io::Error> for DecodeError {
    fn from(e: io::Error) -> Self {
        DecodeError::Io(e)
    }
}

/// Decodes the text of a `.hex` case (its header options applied over `base`) to the JSON
/// lines `decode` would print.
pub fn decode_hex_case(
    protocol: Protocol,
    base: &StreamOptions,
    text: &str,
) -> Result<(Vec<u8>, DecodeSummary), String> {
    let options = parse_hex_header(text)?.options_over(base);
    let chunks = parse_hex(text, options.transport == Transport::Udp).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let summary = decode_to(protocol, &options, chunks, &mut out).map_err(|e| e.to_string())?;
    Ok((out, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_with_comments_and_whitespace() {
        let text = "# transport: udp\n24 47 # a comment\n\n5048 4454\n";
        assert_eq!(parse_hex(text, false).unwrap(), [b"$GPHDT".to_vec()]);
        assert_eq!(parse_hex(text, true).unwrap(), [b"$G".to_vec(), b"PHDT".to_vec()]);
        let e = parse_hex("24 4\n", false).unwrap_err();
        assert_eq!((e.line, e.column), (1, 4));
        let e = parse_hex("zz", false).unwrap_err();
        assert!(e.to_string().contains("'z' is not a hex digit"), "{e}");
    }

    #[test]
    fn header_options() {
        let h = parse_hex_header("# transport: udp\n# jt808-tz: +00:00\n# note: x\n00\n# transport: tcp\n").unwrap();
        assert_eq!(h, HexHeader { transport: Some(Transport::Udp), jt808_tz_minutes: Some(0), gt06_crc: None });
        let h = parse_hex_header("# gt06-crc: lenient\n").unwrap();
        assert_eq!(h.gt06_crc, Some(CrcPolicy::Lenient));
        assert!(parse_hex_header("# gt06-crc: sloppy\n").is_err());
        assert!(parse_hex_header("# transport: sctp\n").is_err());
    }

    #[test]
    fn rejections_print_in_place_with_offsets() {
        let input = b"$GPHDT,274.07,T*03\r\n$GPHDT,274.07,T*04\r\n$GPHDT,,T*1B\r\n".to_vec();
        let mut out = Vec::new();
        let s = decode_to(Protocol::Nmea, &StreamOptions::default(), [input], &mut out).unwrap();
        let by_kind = BTreeMap::from([(RejectKind::Checksum, 1)]);
        assert_eq!(s, DecodeSummary { frames: 2, records: 2, rejected: 1, rejected_by: by_kind });
        assert_eq!(s.to_string(), "2 frames, 2 records, 1 rejected (bad checksum 1)");
        let lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        assert_eq!(
            lines[1],
            r#"{"kind":"error","offset":20,"error":"bad checksum: computed 0x03, frame carries 0x04"}"#
        );
        assert!(lines[2].contains(r#""message_type":"HDT""#));
    }

    #[test]
    fn reader_and_whole_input_agree() {
        let input = b"$PGID,359853000144328*0F\r\nnoise\n$GPHDT,274.07,T*03".to_vec();
        let mut a = Vec::new();
        decode_to(Protocol::Nmea, &StreamOptions::default(), [input.clone()], &mut a).unwrap();
        let mut b = Vec::new();
        decode_reader(Protocol::Nmea, &StreamOptions::default(), &input[..], &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(std::str::from_utf8(&a).unwrap().lines().count(), 3);
    }
}
