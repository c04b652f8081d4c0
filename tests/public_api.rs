//! The public API is the paved path: a server is built, run, reached from outside and shut
//! down with the crate root's items only (and `apps`). This file names nothing else of
//! ringcast; `tests/layering.rs` checks that it never reaches past the root.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringcast::{
    apps, AckError, AckSender, Args, BroadcastAcks, BroadcastOperator, CloseReason, Config,
    ConnectError, CorsConfig, DisconnectReason, EngineConfig, Handshake, HandshakeInfo, HttpConfig,
    JsonError, Message, MiddlewareFuture, Namespace, Observer, OpError, OpFuture, Parser,
    SendError, Server, ServerBuilder, ServerHandle, ServerOperator, ShardId, SlowConsumerPolicy,
    Socket, SocketInfo, SocketIoConfig,
};
use tungstenite::protocol::WebSocket;

/// Every item the crate root exports, by name: removing or renaming one breaks this build.
#[test]
fn every_root_export_can_be_named() {
    type RootApi = (
        (Server, ServerBuilder, ServerHandle, ServerOperator),
        (
            Namespace,
            Socket,
            AckSender,
            Args,
            Message,
            BroadcastOperator,
        ),
        (
            OpFuture<()>,
            OpError,
            SocketInfo,
            HandshakeInfo,
            Box<dyn Observer>,
        ),
        (
            Handshake,
            ConnectError,
            DisconnectReason,
            AckError,
            BroadcastAcks,
        ),
        (SendError, CloseReason, JsonError, MiddlewareFuture, ShardId),
        (Config, EngineConfig, HttpConfig, SocketIoConfig, CorsConfig),
        (SlowConsumerPolicy, Parser),
    );
    let none: Option<RootApi> = None;
    assert!(none.is_none());
    let builtin: fn() -> Namespace = apps::builtin_namespace;
    let conformance: fn(Config) -> ServerBuilder = apps::conformance;
    let _ = (builtin, conformance);
}

/// Counts the sockets that connected, on any shard.
struct Connections(Arc<AtomicUsize>);

impl Observer for Connections {
    fn connected(&self, _socket: &Socket) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Asynchronous middleware as a plain function: admits a client that sends `token=open`.
fn check_token(handshake: Handshake) -> MiddlewareFuture {
    Box::pin(async move {
        match handshake.query_param("token").as_deref() {
            Some("open") => Ok(()),
            _ => Err(ConnectError::new("no token")),
        }
    })
}

#[test]
fn a_server_built_from_root_items_serves_a_client() {
    let connections = Arc::new(AtomicUsize::new(0));
    let observed = connections.clone();
    let config = Config {
        cores: 1,
        host: [127, 0, 0, 1].into(),
        port: 0,
        pin_cores: false,
        force_epoll: std::env::var_os("RINGCAST_TEST_EPOLL").is_some_and(|v| v == "1"),
        engine: EngineConfig {
            slow_consumer: SlowConsumerPolicy::Drop,
            ..EngineConfig::default()
        },
        ..Config::default()
    };
    let namespace = Namespace::new()
        .async_middleware(check_token)
        .on_connect(|socket| {
            socket.join("lobby");
        })
        .on("echo", |_socket, message, ack| {
            if let Some(ack) = ack {
                ack.send(&message.to_args()).expect("ack sent");
            }
        });
    let handle = Server::builder()
        .config(config)
        .namespace("/", namespace)
        .observer(move |_shard| Box::new(Connections(observed.clone())))
        .start()
        .expect("start the server");

    let mut client = Client::connect(handle.local_addr(), "token=open");
    client.send("40");
    let connected = client.receive();
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    client.send("421[\"echo\",\"hi\",{\"n\":1}]");
    assert_eq!(client.receive(), "431[\"hi\",{\"n\":1}]");

    // From outside the shards: an emit to the room, then an operation awaited on this thread.
    let args = Args::json(&"hello").expect("serialisable");
    handle
        .of("/")
        .to("lobby")
        .emit("news", &args)
        .expect("emit");
    assert_eq!(client.receive(), "42[\"news\",\"hello\"]");
    let sockets = block_on(handle.of("/").fetch_sockets()).expect("fetch sockets");
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].rooms.len(), 2, "its id room and lobby");

    // The middleware refuses a client without the token.
    let mut refused = Client::connect(handle.local_addr(), "token=wrong");
    refused.send("40");
    let reply = refused.receive();
    assert!(reply.starts_with("44{\"message\":\"no token\""), "{reply}");

    handle.shutdown(Duration::from_secs(2));
}

/// Runs `future` to completion on this thread.
fn block_on<T>(future: OpFuture<T>) -> Result<T, OpError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A blocking Engine.IO v4 WebSocket client; `receive` answers the server's pings itself.
struct Client(WebSocket<TcpStream>);

impl Client {
    fn connect(addr: SocketAddr, query: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&{query}");
        let (socket, _) = tungstenite::client(url, stream).expect("WebSocket handshake");
        let mut client = Client(socket);
        let open = client.receive();
        assert!(open.starts_with("0{\"sid\":"), "{open}");
        client
    }

    fn send(&mut self, text: &str) {
        self.0.send(text.into()).expect("send");
    }

    fn receive(&mut self) -> String {
        loop {
            match self.0.read().expect("read") {
                tungstenite::Message::Text(text) if text == "2" => self.send("3"),
                tungstenite::Message::Text(text) => return text.to_string(),
                _ => {}
            }
        }
    }
}
