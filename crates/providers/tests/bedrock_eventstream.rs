//! The event stream framing against the vectors of `awslabs/aws-c-event-stream`
//! (`tests/message_serializer_test.c`), every split of a three-message buffer, CRC mismatches,
//! and random bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use providers::bedrock::eventstream::{self, Decoder, Error, Header, HeaderValue, Message};

const FOO: &[u8] = b"{'foo':'bar'}";

fn decode_one(bytes: &[u8]) -> Message {
    let mut d = Decoder::new();
    d.push(bytes);
    let m = d.next_message().unwrap().unwrap();
    assert_eq!(d.pending(), 0);
    m
}

#[test]
fn official_vector_empty_message() {
    let expected = [
        0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8,
        0xff,
    ];
    assert_eq!(eventstream::encode(&[], b""), expected);
    assert_eq!(decode_one(&expected), Message::default());
}

#[test]
fn official_vector_payload_without_headers() {
    let mut expected = vec![
        0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a,
    ];
    expected.extend_from_slice(FOO);
    expected.extend_from_slice(&[0xc3, 0x65, 0x39, 0x36]);
    assert_eq!(eventstream::encode(&[], FOO), expected);
    assert_eq!(decode_one(&expected).payload, FOO);
}

#[test]
fn official_vector_string_header() {
    let mut expected = vec![
        0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96, 0x0C,
    ];
    expected.extend_from_slice(b"content-type");
    expected.extend_from_slice(&[0x07, 0x00, 0x10]);
    expected.extend_from_slice(b"application/json");
    expected.extend_from_slice(FOO);
    expected.extend_from_slice(&[0x8D, 0x9C, 0x08, 0xB1]);
    let headers = [Header::string("content-type", "application/json")];
    assert_eq!(eventstream::encode(&headers, FOO), expected);
    let m = decode_one(&expected);
    assert_eq!(m.headers, headers);
    assert_eq!(m.header_str("content-type"), Some("application/json"));
}

#[test]
fn official_vector_int32_header() {
    let mut expected = vec![
        0x00, 0x00, 0x00, 0x2B, 0x00, 0x00, 0x00, 0x0E, 0x34, 0x8B, 0xEC, 0x7B, 0x08,
    ];
    expected.extend_from_slice(b"event-id");
    expected.extend_from_slice(&[0x04, 0x00, 0x00, 0xA0, 0x0C]);
    expected.extend_from_slice(FOO);
    expected.extend_from_slice(&[0xD3, 0x89, 0x02, 0x85]);
    let headers = [Header {
        name: "event-id".into(),
        value: HeaderValue::Int(0x0000_A00C),
    }];
    assert_eq!(eventstream::encode(&headers, FOO), expected);
    assert_eq!(decode_one(&expected).headers, headers);
}

#[test]
fn every_header_type_round_trips() {
    let headers = vec![
        Header {
            name: "t".into(),
            value: HeaderValue::Bool(true),
        },
        Header {
            name: "f".into(),
            value: HeaderValue::Bool(false),
        },
        Header {
            name: "b".into(),
            value: HeaderValue::Byte(-3),
        },
        Header {
            name: "s".into(),
            value: HeaderValue::Short(-300),
        },
        Header {
            name: "i".into(),
            value: HeaderValue::Int(70_000),
        },
        Header {
            name: "l".into(),
            value: HeaderValue::Long(-5_000_000_000),
        },
        Header {
            name: "y".into(),
            value: HeaderValue::Bytes(vec![0, 1, 255]),
        },
        Header::string("str", "héllo"),
        Header {
            name: "ts".into(),
            value: HeaderValue::Timestamp(1_700_000_000_000),
        },
        Header {
            name: "u".into(),
            value: HeaderValue::Uuid([7; 16]),
        },
    ];
    let m = decode_one(&eventstream::encode(&headers, b"x"));
    assert_eq!(m.headers, headers);
}

fn three_messages() -> (Vec<u8>, Vec<Message>) {
    let messages = vec![
        Message {
            headers: vec![
                Header::string(":event-type", "messageStart"),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ],
            payload: br#"{"role":"assistant"}"#.to_vec(),
        },
        Message {
            headers: vec![Header::string(":event-type", "contentBlockDelta")],
            payload: br#"{"contentBlockIndex":0,"delta":{"text":"Hello"}}"#.to_vec(),
        },
        Message {
            headers: vec![],
            payload: Vec::new(),
        },
    ];
    let mut bytes = Vec::new();
    for m in &messages {
        bytes.extend(eventstream::encode(&m.headers, &m.payload));
    }
    (bytes, messages)
}

#[test]
fn every_split_position_of_three_messages() {
    let (bytes, messages) = three_messages();
    for split in 0..=bytes.len() {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for piece in [&bytes[..split], &bytes[split..]] {
            d.push(piece);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, messages, "split at {split}");
        assert_eq!(d.pending(), 0);
    }
    for size in 1..=bytes.len() {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for piece in bytes.chunks(size) {
            d.push(piece);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, messages, "chunks of {size}");
    }
}

#[test]
fn crc_mismatches_are_rejected_and_stick() {
    let (bytes, _) = three_messages();
    // A flipped payload byte breaks the message CRC.
    let mut bad = bytes.clone();
    bad[40] ^= 0x01;
    let mut d = Decoder::new();
    d.push(&bad);
    let err = d.next_message().unwrap_err();
    assert!(matches!(err, Error::MessageCrc { .. }), "{err}");
    assert_eq!(
        d.next_message().unwrap_err(),
        err,
        "the stream stays failed"
    );
    // A flipped length byte breaks the prelude CRC.
    let mut bad = bytes.clone();
    bad[3] ^= 0x01;
    let mut d = Decoder::new();
    d.push(&bad);
    assert!(matches!(d.next_message(), Err(Error::PreludeCrc { .. })));
    // Good messages before a corrupt one are delivered first.
    let mut bad = bytes;
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut d = Decoder::new();
    d.push(&bad);
    assert!(d.next_message().unwrap().is_some());
    assert!(d.next_message().unwrap().is_some());
    assert!(matches!(d.next_message(), Err(Error::MessageCrc { .. })));
}

#[test]
fn impossible_lengths_are_rejected_before_buffering() {
    // A valid prelude CRC over a total length of 4 GiB.
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&u32::MAX.to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    prelude.extend_from_slice(&eventstream::crc32(&prelude).to_be_bytes());
    let mut d = Decoder::new();
    d.push(&prelude);
    assert!(matches!(d.next_message(), Err(Error::Length { .. })));
    // Headers longer than the message.
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&20u32.to_be_bytes());
    prelude.extend_from_slice(&10u32.to_be_bytes());
    prelude.extend_from_slice(&eventstream::crc32(&prelude).to_be_bytes());
    let mut d = Decoder::new();
    d.push(&prelude);
    assert!(matches!(d.next_message(), Err(Error::Length { .. })));
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Re-seals a message's CRCs so mutations reach the header parser.
fn reseal(bytes: &mut [u8]) {
    if bytes.len() < 16 {
        return;
    }
    let crc = eventstream::crc32(&bytes[..8]);
    bytes[8..12].copy_from_slice(&crc.to_be_bytes());
    let end = bytes.len() - 4;
    let crc = eventstream::crc32(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(2024);
    let (valid, _) = three_messages();
    for round in 0..5000 {
        let mut bytes = match round % 3 {
            0 => (0..rng.below(400))
                .map(|_| rng.next() as u8)
                .collect::<Vec<_>>(),
            1 => valid.clone(),
            _ => {
                let headers = [Header::string(":event-type", "x"), Header::string("k", "v")];
                eventstream::encode(&headers, b"payload")
            }
        };
        for _ in 0..rng.below(6) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        if round % 3 == 2 {
            reseal(&mut bytes);
        }
        let mut d = Decoder::new();
        let mut at = 0;
        while at < bytes.len() {
            let n = 1 + rng.below(64);
            let end = (at + n).min(bytes.len());
            d.push(&bytes[at..end]);
            at = end;
            while let Ok(Some(_)) = d.next_message() {}
        }
    }
}
