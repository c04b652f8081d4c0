//! The route seam over real sockets: two listeners on one host, each with its own router (the
//! main one with Engine.IO, a second with routes only), as a metrics or API port would run.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::*;
use crate::codec::http::{AllowedOrigins, Method};
use crate::key::ShardId;

/// A host with an engine and nothing above it: `pump` and `forward` have nothing to run.
struct TestHost {
    engine: RefCell<Engine>,
    config: EngineConfig,
    http: HttpConfig,
    cors: Cors,
    in_flight: Cell<usize>,
}

impl Host for TestHost {
    fn engine(&self) -> &RefCell<Engine> {
        &self.engine
    }
    fn engine_config(&self) -> &EngineConfig {
        &self.config
    }
    fn http_config(&self) -> &HttpConfig {
        &self.http
    }
    fn cors(&self) -> &Cors {
        &self.cors
    }
    fn shard(&self) -> ShardId {
        ShardId::new(0)
    }
    fn shards(&self) -> u16 {
        1
    }
    fn endpoint(&self, path: &str) -> Option<u8> {
        (path == "/socket.io/").then_some(0)
    }
    fn pump(&self) {}
    fn forward(&self, _to: ShardId, _forward: Forward) {}
    fn requests_in_flight(&self) -> &Cell<usize> {
        &self.in_flight
    }
}

fn routes() -> Router {
    let mut router = Router::routes_only();
    router.route(Method::Get, "/metrics", |_| async {
        Response::new(200, "text/plain; version=0.0.4", "up 1\n")
            .with_header("Cache-Control", "no-store")
            // A value with a line break never reaches the wire.
            .with_header("X-Bad", "a\r\nSet-Cookie: b")
    });
    router.route(Method::Post, "/api/echo", |request: Request| async move {
        let token = request.header("authorization").unwrap_or("none").to_owned();
        let to = request.query_param("to").unwrap_or("").to_owned();
        Response::new(201, "application/octet-stream", request.body)
            .with_header("X-Token", token)
            .with_header("X-To", to)
    });
    router
}

async fn listen(host: &Rc<TestHost>, router: Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("local address");
    let listener = TcpListener::from_std(listener).expect("adopt listener");
    let stop = std::future::pending();
    monoio::spawn(accept_loop(host.clone(), Rc::new(router), listener, stop));
    addr
}

/// Sends one request (which asks the server to close) and reads the answer to the end.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = monoio::net::TcpStream::connect(addr)
        .await
        .expect("connect");
    let (written, _) = stream.write_all(request.as_bytes().to_vec()).await;
    written.expect("write");
    let mut answer = Vec::new();
    loop {
        let (read, buf) = stream.read(Vec::with_capacity(4096)).await;
        if read.expect("read") == 0 {
            break;
        }
        answer.extend_from_slice(&buf);
    }
    String::from_utf8(answer).expect("text answer")
}

#[test]
fn a_second_listener_answers_its_own_routes_and_no_engine_io() {
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let host = Rc::new(TestHost {
            engine: RefCell::new(Engine::new(ShardId::new(0), EngineConfig::default())),
            config: EngineConfig::default(),
            http: HttpConfig::default(),
            cors: Cors {
                origins: AllowedOrigins::Any,
                credentials: false,
            },
            in_flight: Cell::new(0),
        });
        let main = listen(&host, Router::with_engine_io()).await;
        let api = listen(&host, routes()).await;

        let metrics = exchange(api, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert_eq!(
            metrics,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 5\r\n\
             Connection: close\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: no-store\r\n\
             \r\nup 1\n"
        );

        let echo = exchange(
            api,
            "POST /api/echo?to=room HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nhello",
        )
        .await;
        assert!(echo.starts_with("HTTP/1.1 201 "), "{echo}");
        assert!(
            echo.contains("\r\nX-Token: Bearer t\r\nX-To: room\r\n"),
            "{echo}"
        );
        assert!(echo.ends_with("\r\n\r\nhello"), "{echo}");

        // A body over max_payload is refused unread, as Engine.IO's is.
        let big = format!(
            "POST /api/echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            EngineConfig::default().max_payload + 1
        );
        let refused = exchange(api, &big).await;
        assert!(refused.starts_with("HTTP/1.1 413 "), "{refused}");
        assert!(refused.contains("Connection: close"), "{refused}");

        // The routes are this listener's: the main one has none, the API port no Engine.IO.
        let handshake =
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nConnection: close\r\n\r\n";
        let on_api = exchange(api, handshake).await;
        assert!(on_api.starts_with("HTTP/1.1 404 "), "{on_api}");
        let on_main = exchange(main, handshake).await;
        assert!(on_main.starts_with("HTTP/1.1 200 "), "{on_main}");
        assert!(on_main.contains("\"sid\""), "{on_main}");
        let metrics_on_main =
            exchange(main, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert!(
            metrics_on_main.starts_with("HTTP/1.1 404 "),
            "{metrics_on_main}"
        );
        // Only the method a route was registered for reaches it.
        let wrong_method =
            exchange(api, "GET /api/echo HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert!(wrong_method.starts_with("HTTP/1.1 404 "), "{wrong_method}");
        assert_eq!(host.in_flight.get(), 0);
    });
}
