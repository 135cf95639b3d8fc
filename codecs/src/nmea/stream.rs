//! Turns one device's NMEA stream into records, keeping what the stream says across lines:
//! the device id (from an identification line) and the last date (from RMC or ZDA), which
//! GGA, GLL and GNS need because they carry only a time of day.

use std::sync::Arc;

use super::record::{blank, fill_sentence_record, identification_sentence, sentence_date, Context};
use super::sentence::{self, ParsedSentence, Sentence};
use super::{split_line, IdForm, LinePiece, NmeaFramer};
use crate::framing::{Limits, Reject, RejectKind};
use crate::record::{Kind, Protocol, Record};
use crate::stream::{drive, push_record, Driver, FrameHandler, RecordDecoder, StreamEvent};
use crate::time::Date;

/// Decodes a device's NMEA stream into records. One per connection (TCP) or per peer (UDP).
#[derive(Debug, Clone)]
pub struct NmeaDecoder {
    driver: Driver<NmeaFramer>,
    device_id: Option<Arc<str>>,
    /// The last calendar date the stream gave (RMC or ZDA).
    last_date: Option<Date>,
    /// This device has sent a checksummed sentence since it identified itself. Devices are
    /// consistent about checksums, so after that a sentence without one was cut short in
    /// transit (with its `*HH`), not sent that way.
    checksums_seen: bool,
}

impl Default for NmeaDecoder {
    fn default() -> Self {
        NmeaDecoder::new(NmeaOptions::default())
    }
}

/// How an [`NmeaDecoder`] reads its lines. NMEA has no handshake to refuse a device with,
/// and a datagram is read as the lines it holds, so there is no allow-list or transport here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NmeaOptions {
    pub limits: Limits,
}

impl Default for NmeaOptions {
    fn default() -> Self {
        NmeaOptions { limits: super::DEFAULT_LIMITS }
    }
}

impl NmeaDecoder {
    pub fn new(options: NmeaOptions) -> Self {
        NmeaDecoder {
            driver: Driver::new(NmeaFramer::new(options.limits)),
            device_id: None,
            last_date: None,
            checksums_seen: false,
        }
    }

    /// The id the device gave, if it gave one.
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    /// Sets the device id from outside (for example a gateway that knows it from elsewhere).
    pub fn set_device_id(&mut self, id: Option<String>) {
        self.device_id = id.map(Into::into);
    }

    /// Decodes one line (without its terminator) that starts at stream offset `offset`, and
    /// answers how many of its pieces (sentences, ids) it took.
    fn decode_line(&mut self, line: &[u8], offset: u64, out: &mut Vec<StreamEvent>) -> u32 {
        let mut taken = 0u32;
        split_line(line, |piece| match piece {
            // An id written in front of every sentence is addressing, not a login.
            LinePiece::Identification { id, form: IdForm::Prefix, .. } => self.identify(id),
            LinePiece::Identification { id, form, .. } => {
                self.announce(id);
                let message_type = if form == IdForm::ImeiLine { "IMEI" } else { "ID" };
                push_record(out, Protocol::Nmea, Kind::Login, message_type, self.device_id.clone());
                taken = taken.wrapping_add(1);
            }
            LinePiece::Rejected { offset: at, len, reason } => {
                out.push(StreamEvent::Rejected { offset: offset + at as u64, len, reason });
            }
            LinePiece::Sentence { offset: at, text } => match sentence::parse(text) {
                Ok(parsed) => {
                    if let Some((_, id)) = identification_sentence(&parsed.sentence) {
                        self.announce(id);
                    }
                    if parsed.checksum_present {
                        self.checksums_seen = true;
                    } else if self.checksums_seen {
                        out.push(StreamEvent::Rejected {
                            offset: offset + at as u64,
                            len: text.len(),
                            reason: Reject::new(
                                RejectKind::Truncated,
                                "no checksum, on a stream whose sentences carry one: cut short in transit",
                            ),
                        });
                        return;
                    }
                    // Filled where it lies in `out` (`push_record`): built and returned, the
                    // record was moved whole several times on its way there.
                    self.settle(&parsed);
                    let r = push_record(out, Protocol::Nmea, Kind::Unknown, "", self.device_id.clone());
                    fill_sentence_record(&self.context(), &parsed, text, r);
                    taken = taken.wrapping_add(1);
                }
                Err(reason) => {
                    out.push(StreamEvent::Rejected { offset: offset + at as u64, len: text.len(), reason });
                }
            },
        });
        taken
    }

    /// A device announced itself (an identification line or sentence): it starts over, and
    /// its checksum habit is its own.
    fn announce(&mut self, id: &str) {
        self.identify(id);
        self.checksums_seen = false;
    }

    fn identify(&mut self, id: &str) {
        if self.device_id.as_deref() != Some(id) {
            self.device_id = Some(id.into());
            // Another device on this stream: its checksum habit is its own.
            self.checksums_seen = false;
        }
    }

    fn context(&self) -> Context {
        Context { last_date: self.last_date }
    }

    /// What a sentence changes in the stream, before it is recorded: an identification
    /// sentence names the device, an RMC or ZDA with a date dates what follows.
    fn settle(&mut self, parsed: &ParsedSentence<'_>) {
        if let Some((_, id)) = identification_sentence(&parsed.sentence) {
            self.identify(id);
        }
        if let Sentence::Standard { message, .. } = &parsed.sentence {
            if let Some(date) = sentence_date(message) {
                self.last_date = Some(date);
            }
        }
    }

    /// The record for one parsed sentence. Updates the stream state (date, device id).
    pub fn sentence_record(&mut self, parsed: &ParsedSentence<'_>, text: &[u8]) -> Record {
        self.settle(parsed);
        let mut r = blank(self.device_id.clone());
        fill_sentence_record(&self.context(), parsed, text, &mut r);
        r
    }
}

impl RecordDecoder for NmeaDecoder {
    fn protocol(&self) -> Protocol {
        Protocol::Nmea
    }

    fn take_frame_count(&mut self) -> u32 {
        self.driver.take_frames()
    }

    fn decode(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize {
        drive(self, buf, at_end, out)
    }
}

impl FrameHandler for NmeaDecoder {
    type Framer = NmeaFramer;
    const PROTOCOL: &'static str = "NMEA";

    fn driver(&mut self) -> &mut Driver<NmeaFramer> {
        &mut self.driver
    }

    /// A line is never bad as a whole: each piece of it (a sentence, an id) is taken or
    /// rejected on its own.
    #[inline]
    fn frame(&mut self, line: &[u8], at: u64, _consumed: usize, out: &mut Vec<StreamEvent>) -> Result<u32, Reject> {
        Ok(self.decode_line(line, at, out))
    }

    /// Lines are independent: every rejection is reported as it is.
    fn merges(_reason: &Reject, _len: usize) -> bool {
        false
    }
}
