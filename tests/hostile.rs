//! Hostile input, as a table: each case sends one kind of bad input to the real binary and
//! checks the answer the Node reference gives (an HTTP status and Engine.IO error, a WebSocket
//! close code, a closed session, or nothing at all), then that a bystander client on the same
//! server is unaffected. The HTTP answers were checked against socket.io 4.8.4 on Node
//! (`loadtest/peers/node`); where ringcast answers differently the case says so and why.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::ws_client::Client;

/// One case: what it sends (through `run`) and the answer expected.
struct Case {
    name: &'static str,
    run: fn(SocketAddr) -> String,
    expected: &'static str,
}

const CASES: &[Case] = &[
    // ---- HTTP and Engine.IO requests: "<status> <body>"
    Case {
        name: "not HTTP",
        run: |addr| http(addr, b"HELLO THERE\r\n\r\n"),
        expected: "400 ",
    },
    Case {
        name: "a head past the size limit",
        run: |addr| {
            let mut request = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n".to_vec();
            request.extend_from_slice(format!("X-Big: {}\r\n\r\n", "a".repeat(20_000)).as_bytes());
            http(addr, &request)
        },
        expected: "431 ",
    },
    Case {
        name: "chunked body (Node reads it; ringcast refuses, 501: no client sends one)",
        run: |addr| {
            http(
                addr,
                b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\n\
                Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            )
        },
        expected: "501 ",
    },
    Case {
        name: "unknown transport",
        run: |addr| http(addr, &get("EIO=4&transport=carrier-pigeon")),
        expected: r#"400 {"code":0,"message":"Transport unknown"}"#,
    },
    Case {
        name: "unknown sid",
        run: |addr| {
            http(
                addr,
                &get("EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA"),
            )
        },
        expected: r#"400 {"code":1,"message":"Session ID unknown"}"#,
    },
    Case {
        name: "handshake by POST",
        run: |addr| http(addr, &post("EIO=4&transport=polling", "40")),
        expected: r#"400 {"code":2,"message":"Bad handshake method"}"#,
    },
    Case {
        name: "the sid of a WebSocket session, polled",
        run: |addr| {
            let mut client = Client::open(addr, None);
            let sid = client_sid(&mut client);
            http(addr, &get(&format!("EIO=4&transport=polling&sid={sid}")))
        },
        expected: r#"400 {"code":3,"message":"Bad request"}"#,
    },
    Case {
        name: "unsupported protocol version",
        run: |addr| http(addr, &get("EIO=9&transport=polling")),
        expected: r#"400 {"code":5,"message":"Unsupported protocol version"}"#,
    },
    Case {
        name: "a POST body past maxPayload",
        run: |addr| {
            let sid = polling_sid(addr);
            let body = "4".repeat(2000);
            http(
                addr,
                &post(&format!("EIO=4&transport=polling&sid={sid}"), &body),
            )
        },
        expected: "413 ",
    },
    Case {
        name: "a polling packet of unknown type (Node: 200 ok; the official suite wants 400)",
        run: |addr| {
            let sid = polling_sid(addr);
            http(
                addr,
                &post(&format!("EIO=4&transport=polling&sid={sid}"), "9"),
            )
        },
        expected: r#"400 {"code":3,"message":"Bad request"}"#,
    },
    // ---- WebSocket frames: "close <code>", "closed" or "open"
    Case {
        name: "an unmasked client frame",
        run: |addr| ws_then(addr, &[0x81, 0x02, b'4', b'x']),
        expected: "close 1002",
    },
    Case {
        name: "a frame past maxPayload",
        run: |addr| {
            let mut frame = vec![0x81, 0x80 | 126];
            frame.extend_from_slice(&2000u16.to_be_bytes());
            frame.extend_from_slice(&[0; 4]);
            frame.extend(std::iter::repeat_n(b'4', 2000));
            ws_then(addr, &frame)
        },
        expected: "close 1009",
    },
    Case {
        name: "invalid UTF-8 in a text frame",
        run: |addr| ws_then(addr, &masked(0x81, b"4\xff\xfe")),
        expected: "close 1007",
    },
    Case {
        name: "a fragmented control frame",
        run: |addr| ws_then(addr, &masked(0x09, b"x")),
        expected: "close 1002",
    },
    Case {
        name: "an Engine.IO packet of unknown type",
        run: |addr| ws_then(addr, &masked(0x81, b"9")),
        expected: "close 1000",
    },
    // ---- Socket.IO packets, on a connected client
    Case {
        name: "an event that is not JSON",
        run: |addr| sio_then(addr, r#"42["message",]"#),
        expected: "close 1000",
    },
    Case {
        name: "a packet of unknown type",
        run: |addr| sio_then(addr, "7"),
        expected: "close 1000",
    },
    Case {
        name: "a binary placeholder out of range",
        run: |addr| sio_then(addr, r#"451-["message",{"_placeholder":true,"num":3}]"#),
        expected: "close 1000",
    },
    Case {
        name: "an attachment count past the limit",
        run: |addr| sio_then(addr, r#"4599999-["message"]"#),
        expected: "close 1000",
    },
    Case {
        name: "an ack for an unknown id (ignored)",
        run: |addr| sio_then(addr, r#"43999["late"]"#),
        expected: "open",
    },
    Case {
        name: "a CONNECT to a namespace that does not exist",
        run: |addr| {
            let mut client = Client::connect(addr, None);
            client.send("40/nowhere,");
            client.text()
        },
        expected: r#"44/nowhere,{"message":"Invalid namespace"}"#,
    },
    Case {
        name: "a flood of CONNECTs to missing namespaces (each refused, the session lives)",
        run: |addr| {
            let mut client = Client::connect(addr, None);
            for n in 0..500 {
                client.send(&format!("40/nowhere{n},"));
            }
            for _ in 0..500 {
                assert!(client.text().starts_with("44/nowhere"));
            }
            client.send(r#"421["echo","alive"]"#);
            client.text()
        },
        expected: r#"431["alive"]"#,
    },
];

#[test]
fn every_hostile_input_gets_the_reference_answer_and_no_one_else_notices() {
    let server = common::Server::start(&["--cores", "2", "--max-payload", "1000"]);
    if server.is_external() {
        return;
    }
    let mut bystander = Client::connect(server.addr, None);
    bystander.join("calm");
    let mut failures = Vec::new();
    for (n, case) in CASES.iter().enumerate() {
        let got = (case.run)(server.addr);
        println!("{:<72} {got}", case.name);
        let matches = if case.expected.ends_with(' ') {
            got.starts_with(case.expected)
        } else {
            got == case.expected
        };
        if !matches {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.expected, got
            ));
        }
        bystander.send(&format!(r#"42["publish","calm","{n}"]"#));
        assert_eq!(
            bystander.text(),
            format!(r#"42["message","{n}"]"#),
            "the bystander after {:?}",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Sends raw bytes on a fresh connection and reads the answer: "<status> <body>".
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let response = common::exchange(addr, request, Duration::from_secs(5));
    let (status, body) = common::status_and_body(&response);
    let status = if status == 0 {
        "???".to_owned()
    } else {
        status.to_string()
    };
    format!("{status} {body}")
}

fn get(query: &str) -> Vec<u8> {
    common::polling_request("GET", query, "")
}

fn post(query: &str, body: &str) -> Vec<u8> {
    common::polling_request("POST", query, body)
}

/// Opens a polling session; its sid.
fn polling_sid(addr: SocketAddr) -> String {
    common::sid_in(&http(addr, &get("EIO=4&transport=polling")))
}

/// The Engine.IO sid of a client opened with [`Client::open`].
fn client_sid(client: &mut Client) -> String {
    common::sid_in(&client.open_packet)
}

/// Opens a WebSocket session, sends `bytes`, and describes how the connection ends.
fn ws_then(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut client = Client::open(addr, None);
    client.send_raw(bytes);
    client.ending(Duration::from_secs(3))
}

/// Connects a WebSocket client to `/`, sends one Socket.IO packet, and describes the end.
fn sio_then(addr: SocketAddr, packet: &str) -> String {
    let mut client = Client::connect(addr, None);
    client.send(packet);
    client.ending(Duration::from_millis(700))
}

/// A masked client frame with a payload under 126 bytes.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7, 7, 7, 7];
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().map(|b| b ^ 7));
    frame
}
