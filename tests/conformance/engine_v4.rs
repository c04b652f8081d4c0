//! The Engine.IO v4 behaviours that `/engine.io/` and `/socket.io/` share (conformance.md §5.1
//! tests 1-7 and 17-22, and the Engine.IO part of §5.2): handshake, heartbeat and close. The
//! macro expands to one test per behaviour for the endpoint at `/<prefix>/`, so both suites'
//! versions of a behaviour are the same code.

/// Expands to the shared Engine.IO v4 tests for the endpoint at `/$prefix/`.
#[macro_export]
macro_rules! engine_io_v4_tests {
    ($prefix:literal) => {
        use std::thread::sleep;
        use std::time::Duration;

        use $crate::support::*;

        const PREFIX: &str = $prefix;

        // ---- handshake › HTTP long-polling -------------------------------------------------------

        #[test]
        fn polling_handshake_opens_session() {
            let server = server();
            let response = get(server.addr, &format!("/{PREFIX}/?EIO=4&transport=polling"));
            assert_eq!(response.status, 200);
            check_open_packet(&response.text(), &["websocket"], false);
        }

        #[test]
        fn polling_handshake_rejects_invalid_eio() {
            let server = server();
            for path in [
                &format!("/{PREFIX}/?transport=polling"),
                &format!("/{PREFIX}/?EIO=abc&transport=polling"),
            ] {
                assert_eq!(get(server.addr, path).status, 400, "{path}");
            }
        }

        #[test]
        fn polling_handshake_rejects_invalid_transport() {
            let server = server();
            for path in [
                &format!("/{PREFIX}/?EIO=4"),
                &format!("/{PREFIX}/?EIO=4&transport=abc"),
            ] {
                assert_eq!(get(server.addr, path).status, 400, "{path}");
            }
        }

        #[test]
        fn polling_handshake_rejects_bad_method() {
            let server = server();
            let path = &format!("/{PREFIX}/?EIO=4&transport=polling");
            for method in ["POST", "PUT"] {
                let response = request(server.addr, method, path, &[], b"").unwrap();
                assert_eq!(response.status, 400, "{method}");
            }
        }

        // ---- handshake › WebSocket ---------------------------------------------------------------

        #[test]
        fn ws_handshake_opens_session() {
            let server = server();
            let mut ws = ws_open(
                server.addr,
                &format!("/{PREFIX}/?EIO=4&transport=websocket"),
            );
            check_open_packet(&ws.text(), &[], false);
        }

        #[test]
        fn ws_rejects_invalid_eio() {
            let server = server();
            // ringcast refuses before upgrading (conformance.md §4, §8); the reference pre-filter too.
            for path in [
                &format!("/{PREFIX}/?transport=websocket"),
                &format!("/{PREFIX}/?EIO=abc&transport=websocket"),
            ] {
                match ws_try_open(server.addr, path) {
                    Err(WsOpenError::Refused(status)) => assert_eq!(status, 400, "{path}"),
                    other => panic!("{path}: expected a 400 refusal, got {:?}", other.err()),
                }
            }
        }

        #[test]
        fn ws_rejects_invalid_transport() {
            let server = server();
            for path in [
                &format!("/{PREFIX}/?EIO=4"),
                &format!("/{PREFIX}/?EIO=4&transport=abc"),
            ] {
                ws_expect_rejected(server.addr, path);
            }
        }

        // ---- heartbeat (5 s limit in the suite) --------------------------------------------------

        #[test]
        fn polling_heartbeat_three_rounds() {
            let server = server();
            let session = Polling::open(server.addr, PREFIX, 4);
            for round in 0..3 {
                let polled = session.get();
                assert_eq!(polled.status, 200);
                assert_eq!(
                    polled.text(),
                    "2",
                    "round {round}: a poll must hold only the ping"
                );
                session.post_ok("3");
            }
        }

        #[test]
        fn polling_ping_timeout_closes_session() {
            let server = server();
            let session = Polling::open(server.addr, PREFIX, 4);
            // Dead pingInterval + pingTimeout after the handshake, though the client never polled.
            sleep(PING_DEADLINE);
            assert_eq!(session.get().status, 400);
        }

        #[test]
        fn ws_heartbeat_three_rounds() {
            let server = server();
            let (mut ws, _) = ws_session(server.addr, PREFIX, 4);
            for round in 0..3 {
                assert_eq!(ws.text(), "2", "round {round}");
                ws.send_text("3");
            }
        }

        #[test]
        fn ws_ping_timeout_closes_socket() {
            let server = server();
            let (mut ws, _) = ws_session(server.addr, PREFIX, 4);
            let (elapsed, _) = ws.expect_closed(Duration::from_secs(2));
            assert!(
                elapsed >= Duration::from_millis(PING_INTERVAL_MS + PING_TIMEOUT_MS - 50),
                "closed too early ({elapsed:?})"
            );
        }

        // ---- close -------------------------------------------------------------------------------

        #[test]
        fn polling_client_close_answers_pending_poll_with_noop() {
            let server = server();
            // The GET reuses the handshake connection, the POST comes on a new one right after.
            let mut conn = HttpConn::open(server.addr);
            let session = Polling::open_on(&mut conn, server.addr, PREFIX, 4, "");
            conn.send("GET", &session.path(), &[], b"").unwrap();
            let posted = session.post("1");
            assert_eq!(posted.status, 200);
            let polled = conn.receive().unwrap();
            assert_eq!(polled.status, 200);
            assert_eq!(polled.text(), "6");
            assert_eq!(session.get().status, 400);
        }

        #[test]
        fn ws_client_close_closes_socket() {
            let server = server();
            let (mut ws, _) = ws_session(server.addr, PREFIX, 4);
            ws.send_text("1");
            let (elapsed, _) = ws.expect_closed(Duration::from_secs(2));
            // reference is lax here (conformance.md §8): it ignores the close packet and only closes
            // through the ping timeout (~500 ms); ringcast must close at once.
            if !external() {
                assert!(
                    elapsed < Duration::from_millis(250),
                    "closed after {elapsed:?}"
                );
            }
        }
    };
}
