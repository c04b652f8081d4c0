//! Wire-format hot paths, each on its own: WebSocket frame decoding (masked client frames) and
//! encoding (server frames), unmasking, Engine.IO packets and polling payloads (v4 and v3),
//! Socket.IO packets (binary attachments included), and the JSON work an incoming event costs
//! (array split, event name, ack id, first argument); and socket.io-msgpack-parser packets
//! (`--parser msgpack`) converted to and from the same JSON and attachments.
//!
//! Every input is built once, before timing, from a realistic ~100-byte event
//! `42["message",{"n":1,"text":"..."}]` (or a 16 KiB one); decoders that consume their buffer
//! get a fresh copy per iteration outside the timed section.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringcast::internals::codec::eio::{self, Version};
use ringcast::internals::codec::frame::Frame;
use ringcast::internals::codec::{json, msgpack, sio, ws};

/// The mask key of every client frame here.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Frames in the "many frames in one read" buffer.
const FRAMES_PER_READ: usize = 64;
/// Packets in one polling payload.
const PACKETS_PER_PAYLOAD: usize = 32;
/// Largest message the decoders accept (the server's default `max_payload`).
const MAX_PAYLOAD: usize = 1_000_000;

/// An Engine.IO message carrying a Socket.IO event, exactly `len` bytes long:
/// `42["message",{"n":1,"text":"lorem ipsum ..."}]`.
fn event_message(len: usize) -> Vec<u8> {
    let head = br#"42["message",{"n":1,"text":""#;
    let tail = br#""}]"#;
    let filler = b"lorem ipsum dolor sit amet ";
    let mut out = head.to_vec();
    let text_len = len - head.len() - tail.len();
    out.extend(filler.iter().cycle().take(text_len));
    out.extend_from_slice(tail);
    assert_eq!(out.len(), len);
    out
}

/// The Socket.IO packet inside [`event_message`] (without the Engine.IO `4`).
fn event_packet(len: usize) -> Vec<u8> {
    event_message(len + 1)[1..].to_vec()
}

/// A masked client text frame (RFC 6455 §5.2) carrying `payload`.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    let start = out.len();
    out.extend_from_slice(payload);
    ws::unmask(&mut out[start..], MASK);
    out
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(50)
        .without_plots()
}

fn websocket(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_decode");
    for (name, len) in [("text_100B", 100), ("text_16KiB", 16 << 10)] {
        let wire = client_frame(&event_message(len));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            let mut decoder = ws::Decoder::new(MAX_PAYLOAD);
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| decoder.decode(buf).expect("valid frame").expect("complete"),
                BatchSize::SmallInput,
            )
        });
    }
    // One socket read that holds many small frames: decode until the buffer is empty.
    let one = client_frame(&event_message(100));
    let wire: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * FRAMES_PER_READ)
        .collect();
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function(format!("text_100B_x{FRAMES_PER_READ}_one_buffer"), |b| {
        let mut decoder = ws::Decoder::new(MAX_PAYLOAD);
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| {
                let mut messages = 0;
                while let Some(message) = decoder.decode(buf).expect("valid frames") {
                    black_box(message);
                    messages += 1;
                }
                assert_eq!(messages, FRAMES_PER_READ);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("ws_encode");
    for (name, len) in [("text_100B", 100), ("text_16KiB", 16 << 10)] {
        let packet = event_message(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| b.iter(|| Frame::text(black_box(&packet))));
    }
    let data = vec![0xa5u8; 16 << 10];
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("binary_16KiB", |b| {
        b.iter(|| Frame::binary(black_box(&data)))
    });
    group.finish();

    let mut group = c.benchmark_group("ws_unmask");
    for len in [16usize, 100, 1 << 10, 16 << 10, 64 << 10] {
        let mut buf = vec![0x5au8; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("unmask", len), &len, |b, _| {
            b.iter(|| ws::unmask(black_box(&mut buf), MASK))
        });
        group.bench_with_input(BenchmarkId::new("unmask_scalar", len), &len, |b, _| {
            b.iter(|| ws::unmask_scalar(black_box(&mut buf), MASK))
        });
    }
    group.finish();
}

/// `<packet>` joined by the v4 record separator.
fn v4_payload(packets: &[Vec<u8>]) -> Vec<u8> {
    packets.join(&eio::RECORD_SEPARATOR)
}

/// `<len>:<packet>` repeated (v3 text payload; all packets here are ASCII, so the UTF-16 length
/// is the byte length).
fn v3_text_payload(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for packet in packets {
        out.extend_from_slice(packet.len().to_string().as_bytes());
        out.push(eio::V3_LENGTH_END);
        out.extend_from_slice(packet);
    }
    out
}

fn base64(data: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(data)
        .into_bytes()
}

fn engine_io(c: &mut Criterion) {
    let message = Bytes::from(event_message(100));
    let texts: Vec<Vec<u8>> = (0..PACKETS_PER_PAYLOAD)
        .map(|_| event_message(100))
        .collect();
    let blob = vec![0xa5u8; 1 << 10];
    // Every fourth packet a 1 KiB binary message, as base64 (`b` + data in v4, `b4` in v3).
    let mixed = |prefix: &[u8]| -> Vec<Vec<u8>> {
        (0..PACKETS_PER_PAYLOAD)
            .map(|i| {
                if i % 4 == 3 {
                    [prefix, &base64(&blob)].concat()
                } else {
                    event_message(100)
                }
            })
            .collect()
    };

    let mut group = c.benchmark_group("eio_decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ws_text_v4_100B", |b| {
        b.iter(|| eio::decode_ws_text(black_box(message.clone()), Version::V4).expect("valid"))
    });
    let inputs: [(&str, Vec<u8>, Version, bool); 5] = [
        ("payload_v4_text", v4_payload(&texts), Version::V4, false),
        (
            "payload_v4_b64_binary",
            v4_payload(&mixed(b"b")),
            Version::V4,
            false,
        ),
        (
            "payload_v3_text",
            v3_text_payload(&texts),
            Version::V3,
            false,
        ),
        (
            "payload_v3_b64_binary",
            v3_text_payload(&mixed(b"b4")),
            Version::V3,
            false,
        ),
        (
            "payload_v3_xhr2_binary",
            v3_xhr2_payload(&texts, &blob),
            Version::V3,
            true,
        ),
    ];
    for (name, body, version, binary_body) in inputs {
        let body = Bytes::from(body);
        let count = eio::decode_payload(body.clone(), version, binary_body)
            .expect("valid payload")
            .len();
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("{name}_x{count}"), |b| {
            b.iter(|| {
                eio::decode_payload(black_box(body.clone()), version, binary_body).expect("valid")
            })
        });
    }
    group.finish();

    let text_frames: Vec<Frame> = texts.iter().map(|t| Frame::text(t)).collect();
    let mixed_frames: Vec<Frame> = (0..PACKETS_PER_PAYLOAD)
        .map(|i| {
            if i % 4 == 3 {
                Frame::binary(&blob)
            } else {
                Frame::text(&event_message(100))
            }
        })
        .collect();
    let mut group = c.benchmark_group("eio_encode");
    let cases: [(&str, &[Frame], Version, bool); 5] = [
        ("payload_v4_text", &text_frames, Version::V4, true),
        ("payload_v4_b64_binary", &mixed_frames, Version::V4, true),
        ("payload_v3_text", &text_frames, Version::V3, false),
        ("payload_v3_b64_binary", &mixed_frames, Version::V3, false),
        ("payload_v3_xhr2_binary", &mixed_frames, Version::V3, true),
    ];
    for (name, frames, version, supports_binary) in cases {
        group.throughput(Throughput::Elements(frames.len() as u64));
        let mut out = Vec::with_capacity(64 << 10);
        group.bench_function(format!("{name}_x{}", frames.len()), |b| {
            b.iter(|| {
                out.clear();
                eio::encode_payload(black_box(frames), version, supports_binary, &mut out)
            })
        });
    }
    group.finish();
}

/// A v3 binary (XHR2) body: string packets, then one binary message of `blob`.
fn v3_xhr2_payload(texts: &[Vec<u8>], blob: &[u8]) -> Vec<u8> {
    let digits = |n: usize| -> Vec<u8> { n.to_string().bytes().map(|d| d - b'0').collect() };
    let mut out = Vec::new();
    for text in texts {
        out.push(eio::V3_BINARY_STRING);
        out.extend(digits(text.len()));
        out.push(eio::V3_BINARY_LENGTH_END);
        out.extend_from_slice(text);
    }
    out.push(eio::V3_BINARY_BINARY);
    out.extend(digits(blob.len() + 1));
    out.push(eio::V3_BINARY_LENGTH_END);
    out.push(eio::PacketType::Message as u8);
    out.extend_from_slice(blob);
    out
}

const PLACEHOLDERS_2: &str = r#"["message",{"_placeholder":true,"num":0},{"n":1,"text":"lorem"},{"_placeholder":true,"num":1}]"#;

fn socket_io(c: &mut Criterion) {
    const MAX_ATTACHMENTS: usize = 64;
    let event = Bytes::from(event_packet(100));
    let with_nsp_ack = Bytes::from([b"2/chat,12".as_slice(), &event[1..]].concat());
    let binary = Bytes::from(format!("52-/chat,7{PLACEHOLDERS_2}"));
    let big = Bytes::from(event_packet(16 << 10));
    let attachments = [
        Bytes::from(vec![1u8; 1 << 10]),
        Bytes::from(vec![2u8; 1 << 10]),
    ];

    let mut group = c.benchmark_group("sio_decode");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [
        ("event_100B", &event),
        ("event_nsp_ack_100B", &with_nsp_ack),
        ("binary_event_2_placeholders", &binary),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| sio::decode(black_box(text.clone()), MAX_ATTACHMENTS).expect("valid"))
        });
    }
    group.bench_function("binary_event_assemble_2_attachments", |b| {
        b.iter(|| {
            let packet = sio::decode(black_box(binary.clone()), MAX_ATTACHMENTS).expect("valid");
            let mut assembler = sio::Assembler::new(packet);
            for attachment in &attachments {
                assembler.push(attachment.clone());
            }
            assembler.finish()
        })
    });
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("event_16KiB", |b| {
        b.iter(|| sio::decode(black_box(big.clone()), MAX_ATTACHMENTS).expect("valid"))
    });
    group.finish();

    let data = &event[1..];
    let mut group = c.benchmark_group("sio_encode");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(256);
    group.bench_function("event_100B", |b| {
        b.iter(|| {
            out.clear();
            sio::encode(
                &mut out,
                sio::PacketType::Event,
                "/",
                0,
                None,
                black_box(data),
            );
        })
    });
    group.bench_function("event_nsp_ack_100B", |b| {
        b.iter(|| {
            out.clear();
            sio::encode(
                &mut out,
                sio::PacketType::Event,
                "/chat",
                0,
                Some(12),
                black_box(data),
            );
        })
    });
    group.bench_function("binary_event_2_placeholders", |b| {
        b.iter(|| {
            out.clear();
            sio::encode(
                &mut out,
                sio::PacketType::BinaryEvent,
                "/chat",
                2,
                Some(7),
                black_box(PLACEHOLDERS_2.as_bytes()),
            );
        })
    });
    group.finish();
}

/// The first argument of the benchmark event, as a handler would deserialise it.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // Only deserialised.
struct Chat {
    n: u64,
    text: String,
}

fn json_event(c: &mut Criterion) {
    const MAX_ATTACHMENTS: usize = 64;
    let packet = Bytes::from(event_packet(100));
    let with_ack = Bytes::from([b"212".as_slice(), &packet[1..]].concat());
    let data = packet.slice(1..);
    let elements = json::split_array(&data).expect("array");
    let name = &data[elements[0].clone()];
    let first = &data[elements[1].clone()];
    // A 16 KiB event's JSON array (the packet without its type digit).
    let big = event_packet(16 << 10)[1..].to_vec();

    let mut group = c.benchmark_group("json_event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("split_array_100B", |b| {
        b.iter(|| json::split_array(black_box(&data)).expect("array"))
    });
    group.bench_function("event_name", |b| {
        b.iter(|| json::parse_str(black_box(name)).expect("string"))
    });
    group.bench_function("event_name_escaped", |b| {
        let escaped = br#""mess\u00e4ge\n""#;
        b.iter(|| json::parse_str(black_box(escaped)).expect("string"))
    });
    group.bench_function("first_arg_deserialize", |b| {
        b.iter(|| json::from_slice::<Chat>(black_box(first)).expect("object"))
    });
    // What the server does with every incoming event: decode the packet (validating the
    // array and recording element ranges), take the ack id, the event name and the raw first
    // argument.
    group.bench_function("decode_name_ack_first_arg", |b| {
        b.iter(|| {
            let packet = sio::decode(black_box(with_ack.clone()), MAX_ATTACHMENTS).expect("valid");
            let name_range = packet.elements[0].clone();
            let name = json::parse_str(&packet.data[name_range])
                .expect("string")
                .into_owned();
            let first = packet.elements.get(1).map(|r| packet.data.slice(r.clone()));
            (name, packet.ack_id, first)
        })
    });
    group.bench_function("check_placeholders", |b| {
        b.iter(|| json::check_placeholders(black_box(PLACEHOLDERS_2.as_bytes()), 2).expect("ok"))
    });
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("validate_16KiB", |b| {
        b.iter(|| json::validate(black_box(&big)).expect("valid"))
    });
    group.finish();
}

/// The same events as socket.io-msgpack-parser packets: decoded into JSON plus attachments
/// (what `--parser msgpack` does per received packet) and encoded from them (per packet sent,
/// or once per broadcast).
fn msgpack_packets(c: &mut Criterion) {
    const MAX_ATTACHMENTS: usize = 64;
    let encoded = |nsp: &str, ack: Option<u64>, text: &[u8], bins: &[Bytes]| {
        let packet = sio::decode(Bytes::copy_from_slice(text), MAX_ATTACHMENTS).expect("valid");
        let mut out = Vec::new();
        msgpack::encode(&mut out, packet.kind, nsp, ack, &packet.data, bins).expect("encodes");
        (packet.data, out)
    };
    let bins = [
        Bytes::from(vec![1u8; 1 << 10]),
        Bytes::from(vec![2u8; 1 << 10]),
    ];
    let cases = [
        ("event_100B", encoded("/", None, &event_packet(100), &[])),
        (
            "event_nsp_ack_100B",
            encoded("/chat", Some(12), &event_packet(100), &[]),
        ),
        (
            "binary_event_2_bins",
            encoded(
                "/chat",
                Some(7),
                format!("52-{PLACEHOLDERS_2}").as_bytes(),
                &bins,
            ),
        ),
        (
            "event_16KiB",
            encoded("/", None, &event_packet(16 << 10), &[]),
        ),
    ];

    let mut group = c.benchmark_group("msgpack_decode");
    group.throughput(Throughput::Elements(1));
    for (name, (_, bytes)) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| msgpack::decode(black_box(bytes), MAX_ATTACHMENTS).expect("valid"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("msgpack_encode");
    group.throughput(Throughput::Elements(1));
    for (name, (json, _)) in &cases {
        let attachments: &[Bytes] = if name.starts_with("binary") {
            &bins
        } else {
            &[]
        };
        let mut out = Vec::with_capacity(32 << 10);
        group.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                msgpack::encode(
                    &mut out,
                    sio::PacketType::Event,
                    "/",
                    None,
                    black_box(json),
                    attachments,
                )
                .expect("encodes");
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = websocket, engine_io, socket_io, json_event, msgpack_packets
}
criterion_main!(benches);
