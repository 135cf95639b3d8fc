//! Topic and subject templates of the bus sinks: text with `{protocol}`, `{device_id}` and
//! `{kind}` filled per record. A filled-in value is always exactly one level of the bus's
//! naming (device ids come off the wire): the level separator, the wildcards and control
//! characters in it become `_`, and an empty value becomes `_`.

use trackgate_codecs::Record;

/// How one bus names things: MQTT topics, NATS subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Naming {
    /// What the bus calls a name, for errors ("MQTT topic").
    pub what: &'static str,
    /// Characters that may not appear in a name to publish to (wildcards, NUL).
    pub forbidden: &'static [char],
    /// Characters a filled-in value may not bring in (the level separator and the above).
    pub unsafe_in_value: &'static [char],
    /// The level separator, where an empty level is not a name (NATS: `a..b`).
    pub no_empty_levels: Option<char>,
}

/// MQTT 3.1.1: levels split by `/`, wildcards `+` and `#`.
pub const MQTT: Naming = Naming {
    what: "MQTT topic",
    forbidden: &['+', '#', '\0'],
    unsafe_in_value: &['/', '+', '#'],
    no_empty_levels: None,
};

/// NATS: tokens split by `.`, wildcards `*` and `>`, no white space, no empty token.
pub const NATS: Naming = Naming {
    what: "NATS subject",
    forbidden: &['*', '>', ' ', '\t', '\r', '\n', '\0'],
    unsafe_in_value: &['.', '*', '>', ' '],
    no_empty_levels: Some('.'),
};

/// A record field a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Protocol,
    DeviceId,
    Kind,
}

const PLACEHOLDERS: [(&str, Field); 3] =
    [("{protocol}", Field::Protocol), ("{device_id}", Field::DeviceId), ("{kind}", Field::Kind)];

/// A piece of a template: text as given, or a field filled per record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A template taken apart once, at parse time, for filling per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    text: String,
    parts: Vec<Part>,
    naming: Naming,
}

impl TopicTemplate {
    /// Takes `text` apart: not empty, nothing forbidden, every brace a known placeholder's.
    pub fn parse(text: &str, naming: Naming) -> Result<TopicTemplate, String> {
        let what = naming.what;
        if text.is_empty() || text.len() > 1024 {
            return Err(format!("the {what} {text:?} is empty or over 1024 bytes"));
        }
        if text.contains(naming.forbidden) {
            return Err(format!("the {what} {text:?} has a wildcard; records are published to one name each"));
        }
        if let Some(sep) = naming.no_empty_levels {
            if text.split(sep).any(str::is_empty) {
                return Err(format!("the {what} {text:?} has an empty level"));
            }
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(brace) = rest.find(['{', '}']) {
            let after = &rest[brace..];
            let Some((name, field)) = PLACEHOLDERS.iter().find(|(name, _)| after.starts_with(name)) else {
                return Err(format!("the {what} {text:?}: placeholders are {{protocol}}, {{device_id}} and {{kind}}"));
            };
            if brace > 0 {
                parts.push(Part::Text(rest[..brace].to_owned()));
            }
            parts.push(Part::Field(*field));
            rest = &after[name.len()..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(TopicTemplate { text: text.to_owned(), parts, naming })
    }

    /// The template as given, placeholders and all.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name for `record` into `out`: the placeholders filled, each value one safe level.
    pub fn fill(&self, record: &Record, out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(Field::Protocol) => self.push_level(out, record.protocol.as_str()),
                Part::Field(Field::DeviceId) => self.push_level(out, record.device_id.as_deref().unwrap_or("unknown")),
                Part::Field(Field::Kind) => self.push_level(out, record.kind.as_str()),
            }
        }
    }

    /// Appends `value` as (part of) one level.
    fn push_level(&self, out: &mut String, value: &str) {
        let unsafe_char = |c: char| self.naming.unsafe_in_value.contains(&c) || c.is_control();
        if value.is_empty() {
            out.push('_');
        } else if !value.contains(unsafe_char) {
            // The usual case (an IMEI): as it is.
            out.push_str(value);
            return;
        }
        for c in value.chars() {
            out.push(if unsafe_char(c) { '_' } else { c });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackgate_codecs::{Kind, Protocol};

    #[test]
    fn topics_are_filled_one_safe_level_per_value() {
        let t = TopicTemplate::parse("fleet/{protocol}/{device_id}/{kind}", MQTT).unwrap();
        let mut r = Record::new(Protocol::Gt06, Kind::Position, "0x22");
        let mut topic = String::new();
        t.fill(&r, &mut topic);
        assert_eq!(topic, "fleet/gt06/unknown/position");
        r.device_id = Some("a/b+#\n".into());
        t.fill(&r, &mut topic);
        assert_eq!(topic, "fleet/gt06/a_b___/position");
        r.device_id = Some("".into());
        t.fill(&r, &mut topic);
        assert_eq!(topic, "fleet/gt06/_/position");
        let joined = TopicTemplate::parse("{kind}-{protocol}.v1", MQTT).unwrap();
        joined.fill(&r, &mut topic);
        assert_eq!(topic, "position-gt06.v1");
        let nats = TopicTemplate::parse("fleet.{protocol}.{device_id}", NATS).unwrap();
        r.device_id = Some("a.b* >c".into());
        nats.fill(&r, &mut topic);
        assert_eq!(topic, "fleet.gt06.a_b___c");
    }
}
