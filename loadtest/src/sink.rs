//! `loadtest sink`: the minimal backend the hook benchmarks measure against (spec
//! control-plane.md §2.7). Keep-alive HTTP/1.1 on loopback, a thread per connection: a
//! forwarded call (`io.ringcast.event` sent alone) is answered at once with its own
//! arguments as the ack; anything else (lifecycle batches, pings) gets a 204. It checks no
//! signature: its cost must stay out of the way of what is measured (the server's).
//! Counts requests and events and prints them when it stops (after `--duration`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the sink has seen.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    events: AtomicU64,
}

/// Serves on 127.0.0.1:`port` for `duration`, then prints what it saw.
pub fn run(port: u16, duration: Duration) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("sink listening on {local}");
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let accepting = tally.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tally = accepting.clone();
            std::thread::spawn(move || serve(stream, &tally));
        }
    });
    std::thread::sleep(duration);
    let seconds = started.elapsed().as_secs_f64();
    let requests = tally.requests.load(Ordering::Relaxed);
    let events = tally.events.load(Ordering::Relaxed);
    println!(
        "sink: {requests} requests, {events} events in {seconds:.1} s ({:.0} events/s)",
        events as f64 / seconds
    );
    Ok(())
}

/// One keep-alive connection: requests read by their `Content-Length`, answered in order.
fn serve(stream: TcpStream, tally: &Tally) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).map_or(true, |n| n == 0) {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        tally.requests.fetch_add(1, Ordering::Relaxed);
        let answer = answer(&body, tally);
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

/// A call's echo, or a 204.
fn answer(body: &[u8], tally: &Tally) -> Vec<u8> {
    let single = body.first() == Some(&b'{');
    let events = if single {
        1
    } else {
        count(body, b"\"specversion\"")
    };
    tally.events.fetch_add(events, Ordering::Relaxed);
    if single {
        if let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) {
            if event["type"] == "io.ringcast.event" {
                let mut reply = serde_json::json!({ "ack": event["data"]["args"] });
                if let Some(attachments) = event["data"].get("attachments") {
                    reply["attachments"] = attachments.clone();
                }
                let reply = reply.to_string();
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    reply.len()
                )
                .into_bytes();
                answer.extend_from_slice(reply.as_bytes());
                return answer;
            }
        }
    }
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec()
}

fn count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_echoed_and_a_batch_gets_204() {
        let tally = Tally::default();
        let call = br#"{"specversion":"1.0","type":"io.ringcast.event","data":{"args":[1,"a"]}}"#;
        let echoed = String::from_utf8(answer(call, &tally)).unwrap();
        assert!(echoed.starts_with("HTTP/1.1 200"), "{echoed}");
        assert!(echoed.ends_with(r#"{"ack":[1,"a"]}"#), "{echoed}");
        let batch = br#"[{"specversion":"1.0"},{"specversion":"1.0"}]"#;
        let taken = String::from_utf8(answer(batch, &tally)).unwrap();
        assert!(taken.starts_with("HTTP/1.1 204"));
        assert_eq!(tally.events.load(Ordering::Relaxed), 3);
    }
}
