//! MQTT 3.1.1 packets as bytes, without a socket: what the sink writes, laid out as the
//! OASIS standard says (section 2 for the fixed header, 3.1 CONNECT, 3.3 PUBLISH).

use crate::config::MqttTarget;

/// MQTT control packet types (the high nibble of the first byte).
pub(super) mod packet_type {
    pub(crate) const CONNECT: u8 = 0x10;
    pub(crate) const CONNACK: u8 = 0x20;
    pub(crate) const PUBLISH_QOS1: u8 = 0x32;
    pub(crate) const PUBACK: u8 = 0x40;
    pub(crate) const DISCONNECT: u8 = 0xE0;
    /// The DUP flag of a PUBLISH: this packet may have reached the broker before.
    pub(crate) const DUP: u8 = 0x08;
}

/// Writes the fixed header's remaining length (1 to 4 bytes).
pub(super) fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A QoS 1 PUBLISH of `payload` to `topic`. None past the protocol's limits (a topic over
/// 65,535 bytes or a packet over 256 MiB), which no record reaches.
pub(super) fn publish(topic: &str, id: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let len = 2 + topic.len() + 2 + payload.len();
    if topic.len() > usize::from(u16::MAX) || len > 268_435_455 {
        return None;
    }
    let mut out = Vec::with_capacity(len + 5);
    out.push(packet_type::PUBLISH_QOS1);
    put_remaining_length(&mut out, len);
    put_str(&mut out, topic.as_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

pub(super) fn connect_packet(target: &MqttTarget) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level: 3.1.1
    let mut flags = 0x02; // clean session
    if target.user.is_some() {
        flags |= 0x80;
        if target.password.is_some() {
            flags |= 0x40;
        }
    }
    body.push(flags);
    body.extend_from_slice(&0u16.to_be_bytes()); // keep-alive off (see the module's notes)
    put_str(&mut body, target.client_id.as_bytes());
    if let Some(user) = &target.user {
        put_str(&mut body, user.as_bytes());
        if let Some(password) = &target.password {
            put_str(&mut body, password.as_bytes());
        }
    }
    let mut out = vec![packet_type::CONNECT];
    put_remaining_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_laid_out_as_mqtt_3_1_1_says() {
        let mut len = Vec::new();
        for (n, bytes) in [
            (0, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        ] {
            len.clear();
            put_remaining_length(&mut len, n);
            assert_eq!(len, bytes, "{n}");
        }
        assert_eq!(publish("a/b", 0x0102, b"{}").unwrap(), [0x32, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'{', b'}']);
        let target = MqttTarget {
            user: Some("u".into()),
            password: Some("p".into()),
            client_id: "c".into(),
            ..MqttTarget::parse("//b/t").unwrap()
        };
        assert_eq!(
            connect_packet(&target),
            [0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 0, 0, 1, b'c', 0, 1, b'u', 0, 1, b'p']
        );
    }
}
