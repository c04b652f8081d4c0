//! The `polling` scenario: the echo scenario over Engine.IO v4 HTTP long-polling, one
//! keep-alive connection per client doing POST (send) then GET (receive) in turn.

use std::ops::Range;
use std::rc::Rc;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::conn::{self, ConnError, Target};
use crate::payload::{self, Stamp};
use crate::run::{Counters, Phase};
use crate::scenarios::{wait_phase, Worker};
use crate::wire::{self, Incoming};

/// Engine.IO v4 separates the packets of one polling payload with this byte.
const RECORD_SEPARATOR: u8 = 0x1e;

/// A minimal HTTP/1.1 keep-alive client for Engine.IO polling requests.
struct Http {
    stream: TcpStream,
    /// The last response, head and body; `body` says where its body lies.
    buf: conn::FrameBuf,
    request: Vec<u8>,
    body: Range<usize>,
}

impl Http {
    /// Sends one request and reads the whole response.
    async fn send(
        &mut self,
        target: &Target,
        method: &str,
        query: &str,
        body: &[u8],
    ) -> Result<u16, ConnError> {
        self.request.clear();
        let request = &mut self.request;
        request.extend_from_slice(method.as_bytes());
        request.push(b' ');
        request.extend_from_slice(target.path.as_bytes());
        request.push(b'?');
        request.extend_from_slice(query.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        request.extend_from_slice(target.host.as_bytes());
        if method == "POST" {
            request.extend_from_slice(b"\r\nContent-Type: text/plain;charset=UTF-8");
        }
        request.extend_from_slice(b"\r\nContent-Length: ");
        wire::put_decimal(request, body.len() as u64);
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        let (result, buf) = self
            .stream
            .write_all(std::mem::take(&mut self.request))
            .await;
        self.request = buf;
        result?;
        let (status, body) = self.buf.read_response(&mut self.stream).await?;
        self.body = body;
        Ok(status)
    }

    fn body(&self) -> &[u8] {
        self.buf.bytes(self.body.clone())
    }
}

/// Sends `echo` with an ack over polling and waits for it, over and over.
pub async fn polling_client(worker: Rc<Worker>, client: usize, payload_size: usize) {
    if let Err(error) = polling_run(&worker, client, payload_size).await {
        if worker.run.phase() < Phase::Done {
            worker
                .run
                .fail(worker.index, format!("client {client}: {error}"));
        }
    }
}

async fn polling_run(worker: &Worker, client: usize, payload_size: usize) -> Result<(), ConnError> {
    let target = worker.target(client);
    let stream = conn::tcp_connect(target, client).await?;
    let mut http = Http {
        stream,
        buf: conn::FrameBuf::new(4096),
        request: Vec::with_capacity(512),
        body: 0..0,
    };
    let status = http
        .send(target, "GET", "EIO=4&transport=polling", b"")
        .await?;
    let sid = match (status, session_id(http.body())) {
        (200, Some(sid)) => sid,
        _ => {
            return Err(ConnError::Handshake(format!(
                "polling open answered {status}: {}",
                String::from_utf8_lossy(http.body())
            )))
        }
    };
    let query = format!("EIO=4&transport=polling&sid={sid}");
    post(&mut http, target, &query, &target.connect).await?;
    let mut connected = false;
    while !connected {
        expect_ok(http.send(target, "GET", &query, b"").await?, &http)?;
        let mut pong = false;
        for packet in http.body().split(|&b| b == RECORD_SEPARATOR) {
            match wire::classify(packet) {
                Incoming::Connected => connected = true,
                Incoming::Ping => pong = true,
                Incoming::ConnectError(why) => {
                    return Err(ConnError::Refused(
                        String::from_utf8_lossy(why).into_owned(),
                    ))
                }
                Incoming::Closed => return Err(ConnError::Closed),
                _ => {}
            }
        }
        if pong {
            post(&mut http, target, &query, b"3").await?;
        }
    }
    Counters::add(&worker.counters().ready, 1);
    wait_phase(&worker.run, Phase::Warmup).await;

    let (mut text, mut body) = (Vec::new(), Vec::new());
    let mut seq = 0u64;
    while worker.run.phase() < Phase::Drain {
        seq += 1;
        let sent_ns = worker.run.now_ns();
        body.clear();
        let stamp = Stamp {
            sender: client as u32,
            seq,
            sent_ns,
        };
        payload::put(&mut body, stamp, payload_size);
        text.clear();
        wire::put_event(&mut text, "echo", Some(seq), &[&body]);
        post(&mut http, target, &query, &text).await?;
        Counters::add(&worker.counters().sent, 1);
        let expected = &body[1..body.len() - 1];
        let intact = loop {
            expect_ok(http.send(target, "GET", &query, b"").await?, &http)?;
            let mut pong = false;
            let mut answer = None;
            for packet in http.body().split(|&b| b == RECORD_SEPARATOR) {
                match wire::classify(packet) {
                    Incoming::Ping => pong = true,
                    Incoming::Ack(id, args) if id == seq => {
                        answer = Some(payload::ack_content(args) == Some(expected));
                    }
                    Incoming::Closed => return Err(ConnError::Closed),
                    _ => {}
                }
            }
            if pong {
                post(&mut http, target, &query, b"3").await?;
            }
            if let Some(intact) = answer {
                break intact;
            }
        };
        if !intact {
            Counters::add(&worker.counters().corrupt, 1);
        }
        worker.done(sent_ns);
    }
    // Keep the session alive (answering pings) until every worker is done.
    loop {
        expect_ok(http.send(target, "GET", &query, b"").await?, &http)?;
        if http
            .body()
            .split(|&b| b == RECORD_SEPARATOR)
            .any(|packet| packet == b"2")
        {
            post(&mut http, target, &query, b"3").await?;
        }
    }
}

async fn post(http: &mut Http, target: &Target, query: &str, body: &[u8]) -> Result<(), ConnError> {
    let status = http.send(target, "POST", query, body).await?;
    expect_ok(status, http)
}

fn expect_ok(status: u16, http: &Http) -> Result<(), ConnError> {
    if status == 200 {
        Ok(())
    } else {
        Err(ConnError::Handshake(format!(
            "server answered {status}: {}",
            String::from_utf8_lossy(http.body())
        )))
    }
}

/// The `sid` of an Engine.IO open packet `0{"sid":"...",...}`.
fn session_id(body: &[u8]) -> Option<String> {
    let open = body.strip_prefix(b"0")?;
    let value: serde_json::Value = serde_json::from_slice(open).ok()?;
    Some(value.get("sid")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_session_id() {
        assert_eq!(
            super::session_id(br#"0{"sid":"abc","upgrades":[],"pingInterval":25000}"#),
            Some("abc".to_owned())
        );
        assert_eq!(super::session_id(b"40"), None);
    }
}
