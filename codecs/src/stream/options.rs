//! The settings every protocol's decoder options share: how the bytes arrive, and which
//! devices are let in.

use std::collections::HashSet;
use std::sync::Arc;

/// How a decoder's bytes arrive: a byte stream cut into frames (TCP, a capture), or
/// datagrams that are each whole (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Transport::Tcp),
            "udp" => Ok(Transport::Udp),
            _ => Err(format!("unknown transport {s:?} (expected tcp or udp)")),
        }
    }
}

/// The devices a decoder lets in, by the id their protocol gives (a Teltonika IMEI at the
/// handshake, a JT808 terminal number at registration). The others are refused by the
/// protocol's own means (`00` to the handshake, registration result 4).
///
/// ```
/// use trackgate_codecs::stream::AllowList;
///
/// let fleet = AllowList::ids(["356307042441013", "356307042441014"]);
/// assert!(fleet.allows("356307042441013") && !fleet.allows("356307042441015"));
/// let test_range = AllowList::rule(|id| id.starts_with("35630704"));
/// assert!(test_range.allows("356307042441015"));
/// ```
#[derive(Clone)]
pub struct AllowList(Allow);

#[derive(Clone)]
enum Allow {
    Ids(Arc<HashSet<Box<str>>>),
    Rule(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl AllowList {
    /// Exactly these ids.
    pub fn ids<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        AllowList(Allow::Ids(Arc::new(ids.into_iter().map(Into::into).collect())))
    }

    /// The ids `rule` accepts (a range, a lookup elsewhere). It is called on the decoding
    /// thread, once per handshake or registration: it must answer at once.
    pub fn rule(rule: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        AllowList(Allow::Rule(Arc::new(rule)))
    }

    pub fn allows(&self, id: &str) -> bool {
        match &self.0 {
            Allow::Ids(ids) => ids.contains(id),
            Allow::Rule(rule) => rule(id),
        }
    }
}

impl<S: Into<Box<str>>> FromIterator<S> for AllowList {
    fn from_iter<I: IntoIterator<Item = S>>(ids: I) -> Self {
        AllowList::ids(ids)
    }
}

/// Lists of ids are equal when they hold the same ids; rules only when they are the same rule.
impl PartialEq for AllowList {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Allow::Ids(a), Allow::Ids(b)) => a == b,
            (Allow::Rule(a), Allow::Rule(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for AllowList {}

/// Device ids are personal data: a list shows only how many it holds.
impl std::fmt::Debug for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Allow::Ids(ids) => write!(f, "AllowList({} ids)", ids.len()),
            Allow::Rule(_) => f.write_str("AllowList(rule)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_compare_by_ids_and_never_print_them() {
        let a = AllowList::ids(["1", "2"]);
        assert_eq!(a, ["2", "1"].into_iter().collect::<AllowList>());
        assert_ne!(a, AllowList::ids(["1"]));
        assert_eq!(format!("{a:?}"), "AllowList(2 ids)");
        let rule = AllowList::rule(|id| id == "1");
        assert_eq!(rule, rule.clone());
        assert_ne!(rule, AllowList::rule(|id| id == "1"));
        assert!(rule.allows("1") && !rule.allows("2"));
        assert_eq!(format!("{rule:?}"), "AllowList(rule)");
    }

    #[test]
    fn transports_parse_and_print() {
        for t in [Transport::Tcp, Transport::Udp] {
            assert_eq!(t.as_str().parse::<Transport>(), Ok(t));
            assert_eq!(t.to_string().to_uppercase().parse::<Transport>(), Ok(t));
        }
        assert!("sctp".parse::<Transport>().is_err());
    }
}
