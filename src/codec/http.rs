//! HTTP/1.1 request heads (parsed zero-copy with `httparse`) and response heads.
//!
//! Pure: takes bytes, returns borrowed views or appends to a `Vec<u8>`. Knows nothing of sockets,
//! runtimes, Engine.IO or sessions; bodies are framed by the caller from `content_length`.

use std::fmt;

use super::deflate::{self, Agreement};

/// How many header lines a request may carry; more is refused rather than allocated for.
pub const MAX_HEADERS: usize = 64;

/// The request methods the server routes on; anything else is `Other` (answered 405 upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// DELETE.
    Delete,
    /// OPTIONS (CORS preflight).
    Options,
    /// Any other method.
    Other,
}

/// A parsed request head. Every string borrows from the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'b> {
    /// Request method.
    pub method: Method,
    /// The request target before `?`.
    pub path: &'b str,
    /// The request target after `?`, `""` if none.
    pub query: &'b str,
    /// Bytes of the head including the final CRLFCRLF; the body starts here.
    pub head_len: usize,
    /// `Content-Length`, 0 when absent.
    pub content_length: usize,
    /// HTTP/1.1: true unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Sec-WebSocket-Key`, only for a complete RFC 6455 upgrade request.
    pub websocket_key: Option<&'b str>,
    /// `Upgrade: websocket` was present at all, valid upgrade or not.
    pub websocket_requested: bool,
    /// The first acceptable permessage-deflate offer of the `Sec-WebSocket-Extensions`
    /// headers (whether to take it is the server's setting).
    pub websocket_deflate: Option<Agreement>,
    /// The `Origin` header.
    pub origin: Option<&'b str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'b str>,
    /// The `Access-Control-Request-Headers` header.
    pub access_control_request_headers: Option<&'b str>,
}

/// Why a request head was refused. Every variant ends the connection after an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x syntax, or a header we rely on is not UTF-8.
    Malformed,
    /// The head did not complete within the configured limit.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// `Transfer-Encoding` present: only `Content-Length` bodies are supported.
    UnsupportedTransferEncoding,
    /// `Content-Length` repeated or not a plain decimal number.
    BadContentLength,
}

impl HttpError {
    /// The status code to answer with before closing the connection.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed | HttpError::BadContentLength => 400,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::Malformed => "malformed HTTP request head",
            HttpError::HeadTooLarge => "HTTP request head too large",
            HttpError::TooManyHeaders => "too many HTTP request headers",
            HttpError::UnsupportedTransferEncoding => "Transfer-Encoding is not supported",
            HttpError::BadContentLength => "invalid or duplicate Content-Length",
        })
    }
}

impl std::error::Error for HttpError {}

/// Parses a request head from the front of `buf`.
///
/// `Ok(None)` means the head is incomplete. A head longer than `max_head_len` is refused whether
/// or not it has completed, so the answer does not depend on how the bytes were split.
pub fn parse_request(buf: &[u8], max_head_len: usize) -> Result<Option<Request<'_>>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_head_len {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::Malformed),
    };
    if head_len > max_head_len {
        return Err(HttpError::HeadTooLarge);
    }
    // A complete parse always fills these; treat their absence as malformed rather than panic.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::Malformed);
    };
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let mut content_length = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut connection_upgrade = false;
    let mut websocket_requested = false;
    let mut websocket_version_13 = false;
    let mut key = None;
    let mut websocket_deflate = None;
    let mut origin = None;
    let mut content_type = None;
    let mut access_control_request_headers = None;

    for header in parsed.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(HttpError::BadContentLength);
            }
            content_length = Some(parse_content_length(header.value)?);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(header_str(header.value)?) {
                connection_close |= token.eq_ignore_ascii_case("close");
                connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                connection_upgrade |= token.eq_ignore_ascii_case("upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            websocket_requested |=
                tokens(header_str(header.value)?).any(|t| t.eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            websocket_version_13 = header_str(header.value)? == "13";
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            // Several headers read as one comma-separated list, in order (RFC 9110 §5.3).
            if websocket_deflate.is_none() {
                websocket_deflate = deflate::negotiate(header_str(header.value)?);
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            first(&mut key, header.value)?;
        } else if name.eq_ignore_ascii_case("origin") {
            first(&mut origin, header.value)?;
        } else if name.eq_ignore_ascii_case("content-type") {
            first(&mut content_type, header.value)?;
        } else if name.eq_ignore_ascii_case("access-control-request-headers") {
            first(&mut access_control_request_headers, header.value)?;
        }
    }

    let keep_alive = match version {
        1 => !connection_close,
        _ => connection_keep_alive && !connection_close,
    };
    // RFC 6455 §4.2.1: a GET over HTTP/1.1 with all four upgrade headers.
    let valid_upgrade = method == Method::Get
        && version == 1
        && websocket_requested
        && connection_upgrade
        && websocket_version_13;
    let websocket_key = key.filter(|k| valid_upgrade && !k.is_empty());

    Ok(Some(Request {
        method,
        path,
        query,
        head_len,
        content_length: content_length.unwrap_or(0),
        keep_alive,
        websocket_key,
        websocket_requested,
        websocket_deflate: websocket_deflate.filter(|_| websocket_key.is_some()),
        origin,
        content_type,
        access_control_request_headers,
    }))
}

/// Header values we interpret must be text; httparse already excluded CR, LF and controls.
fn header_str(value: &[u8]) -> Result<&str, HttpError> {
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| HttpError::Malformed)
}

/// Keeps the first occurrence of a single-valued header.
fn first<'b>(slot: &mut Option<&'b str>, value: &'b [u8]) -> Result<(), HttpError> {
    let value = header_str(value)?;
    if slot.is_none() {
        *slot = Some(value);
    }
    Ok(())
}

/// The comma-separated tokens of a list-valued header, trimmed, empty elements skipped.
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Strict decimal only: signs, spaces inside, lists and overflow are refused (request smuggling).
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    let digits = header_str(value).map_err(|_| HttpError::BadContentLength)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadContentLength);
    }
    digits.parse().map_err(|_| HttpError::BadContentLength)
}

/// The first value of header `name` (any case) in a complete request head, trimmed; `None` if
/// the header is absent, its value is not UTF-8, or `head` does not parse.
pub fn header_value<'h>(head: &'h [u8], name: &str) -> Option<&'h str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(head).ok()?;
    let header = parsed
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))?;
    let value: &'h [u8] = header.value;
    header_str(value).ok()
}

/// The raw (not percent-decoded) value of the first `key` in a query string. A key without `=`
/// has the value `""`.
pub fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(name, _)| *name == key)
        .map(|(_, value)| value)
}

/// Which `Origin`s may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin.
    Any,
    /// Only these origins.
    List(Vec<String>),
}

/// The CORS policy applied to every polling response and preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Which origins may call.
    pub origins: AllowedOrigins,
    /// Whether credentials are allowed.
    pub credentials: bool,
}

impl Cors {
    /// Appends the CORS response header lines (each ending CRLF) for a request with this Origin.
    ///
    /// `Any` without credentials answers `*`; `Any` with credentials echoes the origin (browsers
    /// refuse `*` with credentials); `List` echoes only a listed origin. Whenever the answer
    /// depends on the origin, `Vary: Origin` is added so caches keep answers apart. Nothing is
    /// granted to an origin that is not allowed. A preflight also gets the allowed methods and
    /// the requested headers echoed back.
    pub fn write_headers(
        &self,
        out: &mut Vec<u8>,
        origin: Option<&str>,
        preflight: bool,
        request_headers: Option<&str>,
    ) {
        // Values are echoed into the response, so never let a caller inject a line break.
        let origin = origin.filter(|o| is_header_safe(o));
        let allow_origin = match &self.origins {
            AllowedOrigins::Any if !self.credentials => Some("*"),
            AllowedOrigins::Any => {
                out.extend_from_slice(b"Vary: Origin\r\n");
                origin
            }
            AllowedOrigins::List(list) => {
                out.extend_from_slice(b"Vary: Origin\r\n");
                origin.filter(|o| list.iter().any(|allowed| allowed == o))
            }
        };
        let Some(allow_origin) = allow_origin else {
            return;
        };
        push_header(out, "Access-Control-Allow-Origin", allow_origin);
        if self.credentials {
            out.extend_from_slice(b"Access-Control-Allow-Credentials: true\r\n");
        }
        if preflight {
            out.extend_from_slice(b"Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n");
            if let Some(headers) = request_headers.filter(|h| is_header_safe(h)) {
                push_header(out, "Access-Control-Allow-Headers", headers);
            }
        }
    }
}

fn is_header_safe(value: &str) -> bool {
    !value.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// Appends the header line `name: value` if the name is an RFC 9110 token and the value holds
/// no line break; whether it was written. For headers whose text may come from a peer.
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &str) -> bool {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token || !is_header_safe(value) {
        return false;
    }
    push_header(out, name, value);
    true
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase sent with a status code (any text is valid; these are the customary ones).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes a full response head: status line, `Content-Type` (if any), `Content-Length`,
/// `Connection`, the `extra_headers` lines (already CRLF-terminated), then the blank line.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    content_length: usize,
    keep_alive: bool,
    extra_headers: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(content_type) = content_type {
        push_header(out, "Content-Type", content_type);
    }
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, content_length);
    out.extend_from_slice(if keep_alive {
        b"\r\nConnection: keep-alive\r\n"
    } else {
        b"\r\nConnection: close\r\n"
    });
    out.extend_from_slice(extra_headers);
    out.extend_from_slice(b"\r\n");
}

/// The 101 answer to a WebSocket upgrade, with its `Sec-WebSocket-Accept` value and the
/// permessage-deflate answer when the extension was agreed.
pub fn write_switching_protocols(out: &mut Vec<u8>, accept: &str, deflate: Option<&Agreement>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    push_header(out, "Sec-WebSocket-Accept", accept);
    if let Some(agreement) = deflate {
        push_header(out, "Sec-WebSocket-Extensions", agreement.response_value());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without going through the formatting machinery.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20]; // usize::MAX has 20 decimal digits
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    /// name, policy, Origin, preflight, Access-Control-Request-Headers, expected lines
    type CorsCase<'a> = (
        &'a str,
        &'a Cors,
        Option<&'a str>,
        bool,
        Option<&'a str>,
        String,
    );
    /// status, content type, content length, keep-alive, extra headers, expected head
    type HeadCase = (
        u16,
        Option<&'static str>,
        usize,
        bool,
        &'static [u8],
        &'static str,
    );

    fn base() -> Request<'static> {
        Request {
            method: Method::Get,
            path: "/",
            query: "",
            head_len: 0,
            content_length: 0,
            keep_alive: true,
            websocket_key: None,
            websocket_requested: false,
            websocket_deflate: None,
            origin: None,
            content_type: None,
            access_control_request_headers: None,
        }
    }

    const UPGRADE: &str = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn ok_cases() -> Vec<(&'static str, String, Request<'static>)> {
        let ws = Request {
            path: "/socket.io/",
            query: "EIO=4&transport=websocket",
            websocket_key: Some("dGhlIHNhbXBsZSBub25jZQ=="),
            websocket_requested: true,
            ..base()
        };
        let broken_upgrade = Request {
            websocket_key: None,
            ..ws.clone()
        };
        vec![
            ("minimal 1.1", "GET / HTTP/1.1\r\n\r\n".into(), base()),
            (
                "query",
                "GET /socket.io/?EIO=4&transport=polling&t=N8 HTTP/1.1\r\nHost: a\r\n\r\n".into(),
                Request {
                    path: "/socket.io/",
                    query: "EIO=4&transport=polling&t=N8",
                    ..base()
                },
            ),
            (
                "empty query",
                "GET /x? HTTP/1.1\r\n\r\n".into(),
                Request {
                    path: "/x",
                    ..base()
                },
            ),
            (
                "1.1 close",
                "GET / HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
                Request {
                    keep_alive: false,
                    ..base()
                },
            ),
            (
                "1.1 close among tokens, any case",
                "GET / HTTP/1.1\r\nconnection: foo, CLOSE\r\n\r\n".into(),
                Request {
                    keep_alive: false,
                    ..base()
                },
            ),
            (
                "1.0 default close",
                "GET / HTTP/1.0\r\n\r\n".into(),
                Request {
                    keep_alive: false,
                    ..base()
                },
            ),
            (
                "1.0 keep-alive",
                "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n".into(),
                base(),
            ),
            (
                "post with body and headers",
                "POST /p?sid=abc HTTP/1.1\r\ncontent-length: 5\r\nContent-Type: text/plain;charset=UTF-8\r\nOrigin: http://a.test\r\n\r\nhello".into(),
                Request {
                    method: Method::Post,
                    path: "/p",
                    query: "sid=abc",
                    content_length: 5,
                    content_type: Some("text/plain;charset=UTF-8"),
                    origin: Some("http://a.test"),
                    ..base()
                },
            ),
            (
                "preflight",
                "OPTIONS / HTTP/1.1\r\nOrigin: http://a.test\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n".into(),
                Request {
                    method: Method::Options,
                    origin: Some("http://a.test"),
                    access_control_request_headers: Some("content-type"),
                    ..base()
                },
            ),
            ("other method", "PUT / HTTP/1.1\r\n\r\n".into(), Request { method: Method::Other, ..base() }),
            ("websocket upgrade", UPGRADE.into(), ws.clone()),
            (
                "upgrade, token lists and odd case",
                UPGRADE
                    .replace("Upgrade: websocket", "upgrade: WebSocket")
                    .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade"),
                ws.clone(),
            ),
            (
                "upgrade without version",
                UPGRADE.replace("Sec-WebSocket-Version: 13\r\n", ""),
                broken_upgrade.clone(),
            ),
            (
                "upgrade with version 8",
                UPGRADE.replace("Version: 13", "Version: 8"),
                broken_upgrade.clone(),
            ),
            (
                "upgrade without key",
                UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                broken_upgrade.clone(),
            ),
            (
                "upgrade without Connection: upgrade",
                UPGRADE.replace("Connection: Upgrade", "Connection: keep-alive"),
                broken_upgrade.clone(),
            ),
            (
                "upgrade by POST",
                UPGRADE.replace("GET", "POST"),
                Request {
                    method: Method::Post,
                    ..broken_upgrade.clone()
                },
            ),
            (
                "upgrade over 1.0",
                UPGRADE.replace("HTTP/1.1", "HTTP/1.0"),
                Request {
                    keep_alive: false,
                    ..broken_upgrade.clone()
                },
            ),
            (
                "key without upgrade",
                UPGRADE.replace("Upgrade: websocket\r\n", ""),
                Request {
                    websocket_requested: false,
                    ..broken_upgrade
                },
            ),
            (
                "first of repeated single headers",
                "GET / HTTP/1.1\r\nOrigin: a\r\nOrigin: b\r\n\r\n".into(),
                Request {
                    origin: Some("a"),
                    ..base()
                },
            ),
            (
                "64 headers",
                format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS)),
                base(),
            ),
        ]
    }

    fn err_cases() -> Vec<(&'static str, String, HttpError)> {
        vec![
            (
                "garbage",
                "\x01\x02 / HTTP/1.1\r\n\r\n".into(),
                HttpError::Malformed,
            ),
            (
                "bad version",
                "GET / HTTP/2.0\r\n\r\n".into(),
                HttpError::Malformed,
            ),
            (
                "space in header name",
                "GET / HTTP/1.1\r\nA b: c\r\n\r\n".into(),
                HttpError::Malformed,
            ),
            (
                "65 headers",
                format!(
                    "GET / HTTP/1.1\r\n{}\r\n",
                    "X: y\r\n".repeat(MAX_HEADERS + 1)
                ),
                HttpError::TooManyHeaders,
            ),
            (
                "chunked",
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                HttpError::UnsupportedTransferEncoding,
            ),
            (
                "te and cl",
                "POST / HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: identity\r\n\r\n"
                    .into(),
                HttpError::UnsupportedTransferEncoding,
            ),
            (
                "duplicate content-length",
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n".into(),
                HttpError::BadContentLength,
            ),
            (
                "cl list",
                "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n".into(),
                HttpError::BadContentLength,
            ),
            (
                "cl sign",
                "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n".into(),
                HttpError::BadContentLength,
            ),
            (
                "cl empty",
                "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n".into(),
                HttpError::BadContentLength,
            ),
            (
                "cl hex",
                "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n".into(),
                HttpError::BadContentLength,
            ),
            (
                "cl overflow",
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".into(),
                HttpError::BadContentLength,
            ),
            (
                "head too large",
                format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX)),
                HttpError::HeadTooLarge,
            ),
        ]
    }

    #[test]
    fn the_first_acceptable_deflate_offer_is_kept_only_on_an_upgrade() {
        let with = |extensions: &str| {
            let head = UPGRADE.replace(
                "Sec-WebSocket-Version: 13\r\n",
                &format!("Sec-WebSocket-Version: 13\r\n{extensions}"),
            );
            parse_request(head.as_bytes(), 4096)
                .expect("valid")
                .expect("complete")
                .websocket_deflate
                .map(|agreement| agreement.response_value())
        };
        let plain = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        assert_eq!(with(""), None);
        assert_eq!(
            with("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
            Some(plain)
        );
        // Two headers read as one list: the first offer is declined, the second taken.
        assert_eq!(
            with(
                "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate\r\n"
            ),
            Some(plain)
        );
        assert_eq!(
            with("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"),
            None
        );
        // Not an upgrade: nothing to answer.
        let polling = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n\
                       Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        let request = parse_request(polling.as_bytes(), 4096)
            .expect("valid")
            .expect("complete");
        assert_eq!(request.websocket_deflate, None);
    }

    #[test]
    fn parses_whole_and_split_requests() {
        for (name, text, expected) in ok_cases() {
            let bytes = text.as_bytes();
            let parsed = parse_request(bytes, MAX).unwrap().unwrap();
            let body = if name.starts_with("post") { 5 } else { 0 };
            let expected = Request {
                head_len: bytes.len() - body,
                ..expected
            };
            assert_eq!(parsed, expected, "{name}");
            for cut in 0..bytes.len() {
                let partial = parse_request(&bytes[..cut], MAX);
                if cut < expected.head_len {
                    assert_eq!(partial, Ok(None), "{name} cut at {cut}");
                } else {
                    assert_eq!(partial, Ok(Some(expected.clone())), "{name} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn refuses_bad_requests_whole_and_split() {
        for (name, text, expected) in err_cases() {
            let bytes = text.as_bytes();
            assert_eq!(parse_request(bytes, MAX), Err(expected), "{name}");
            // Every prefix is either still incomplete or already the same error.
            for cut in 0..bytes.len() {
                let partial = parse_request(&bytes[..cut], MAX);
                assert!(
                    partial == Ok(None) || partial == Err(expected),
                    "{name} cut at {cut}: {partial:?}"
                );
            }
        }
    }

    #[test]
    fn head_limit_applies_before_and_after_completion() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(parse_request(head, head.len()).unwrap().is_some());
        assert_eq!(
            parse_request(head, head.len() - 1),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(parse_request(&head[..10], 9), Err(HttpError::HeadTooLarge));
        assert_eq!(parse_request(&head[..10], 10), Ok(None));
        assert_eq!(parse_request(b"", 0), Ok(None));
    }

    #[test]
    fn error_statuses() {
        let cases = [
            (HttpError::Malformed, 400),
            (HttpError::BadContentLength, 400),
            (HttpError::HeadTooLarge, 431),
            (HttpError::TooManyHeaders, 431),
            (HttpError::UnsupportedTransferEncoding, 501),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn query_params() {
        let cases = [
            ("EIO=4&transport=polling&t=abc", "EIO", Some("4")),
            (
                "EIO=4&transport=polling&t=abc",
                "transport",
                Some("polling"),
            ),
            ("EIO=4&transport=polling&t=abc", "t", Some("abc")),
            ("EIO=4&transport=polling&t=abc", "sid", None),
            ("EIO=4&EIO=3", "EIO", Some("4")),
            ("b64&EIO=4", "b64", Some("")),
            ("b64=1", "b", None),
            ("sid=a%2Bb", "sid", Some("a%2Bb")),
            ("a==b", "a", Some("=b")),
            ("", "EIO", None),
            ("&&EIO=", "EIO", Some("")),
        ];
        for (query, key, expected) in cases {
            assert_eq!(query_param(query, key), expected, "{query} {key}");
        }
    }

    #[test]
    fn header_values() {
        let head = b"GET /x HTTP/1.1\r\nHost: a\r\nAuthorization:  Bearer t \r\nX-Two: 1\r\nx-two: 2\r\nX-Bin: \xff\r\n\r\n";
        let cases = [
            ("authorization", Some("Bearer t")),
            ("HOST", Some("a")),
            ("x-two", Some("1")),
            ("x-bin", None),
            ("missing", None),
        ];
        for (name, expected) in cases {
            assert_eq!(header_value(head, name), expected, "{name}");
        }
        assert_eq!(header_value(b"not http\r\n\r\n", "host"), None);
    }

    #[test]
    fn header_lines_refuse_injection() {
        let cases = [
            ("Cache-Control", "no-store", true),
            ("X-A", "", true),
            ("X-A", "a\r\nSet-Cookie: b", false),
            ("X-A", "a\nb", false),
            ("X A", "b", false),
            ("X-A:", "b", false),
            ("", "b", false),
        ];
        for (name, value, written) in cases {
            let mut out = Vec::new();
            assert_eq!(write_header(&mut out, name, value), written, "{name:?}");
            let expected = if written {
                format!("{name}: {value}\r\n").into_bytes()
            } else {
                Vec::new()
            };
            assert_eq!(out, expected, "{name:?}");
        }
    }

    #[test]
    fn cors_headers() {
        let any = Cors {
            origins: AllowedOrigins::Any,
            credentials: false,
        };
        let any_cred = Cors {
            origins: AllowedOrigins::Any,
            credentials: true,
        };
        let list = Cors {
            origins: AllowedOrigins::List(vec!["http://a.test".into(), "http://b.test".into()]),
            credentials: false,
        };
        let list_cred = Cors {
            credentials: true,
            ..list.clone()
        };
        let a = Some("http://a.test");
        let evil = Some("http://evil.test");
        let methods = "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n";
        let cases: Vec<CorsCase> = vec![
            ("any", &any, a, false, None, "Access-Control-Allow-Origin: *\r\n".into()),
            ("any no origin", &any, None, false, None, "Access-Control-Allow-Origin: *\r\n".into()),
            (
                "any preflight",
                &any,
                a,
                true,
                Some("content-type, x-a"),
                format!("Access-Control-Allow-Origin: *\r\n{methods}Access-Control-Allow-Headers: content-type, x-a\r\n"),
            ),
            (
                "any preflight without requested headers",
                &any,
                a,
                true,
                None,
                format!("Access-Control-Allow-Origin: *\r\n{methods}"),
            ),
            (
                "any credentials",
                &any_cred,
                a,
                false,
                None,
                "Vary: Origin\r\nAccess-Control-Allow-Origin: http://a.test\r\nAccess-Control-Allow-Credentials: true\r\n".into(),
            ),
            ("any credentials no origin", &any_cred, None, false, None, "Vary: Origin\r\n".into()),
            (
                "any credentials preflight",
                &any_cred,
                a,
                true,
                Some("x"),
                format!("Vary: Origin\r\nAccess-Control-Allow-Origin: http://a.test\r\nAccess-Control-Allow-Credentials: true\r\n{methods}Access-Control-Allow-Headers: x\r\n"),
            ),
            ("list hit", &list, a, false, None, "Vary: Origin\r\nAccess-Control-Allow-Origin: http://a.test\r\n".into()),
            ("list miss", &list, evil, false, None, "Vary: Origin\r\n".into()),
            ("list miss preflight", &list, evil, true, Some("x"), "Vary: Origin\r\n".into()),
            ("list no origin", &list, None, false, None, "Vary: Origin\r\n".into()),
            (
                "list credentials preflight",
                &list_cred,
                Some("http://b.test"),
                true,
                None,
                format!("Vary: Origin\r\nAccess-Control-Allow-Origin: http://b.test\r\nAccess-Control-Allow-Credentials: true\r\n{methods}"),
            ),
            ("header injection", &any_cred, Some("a\r\nX: y"), false, None, "Vary: Origin\r\n".into()),
            (
                "header injection in request headers",
                &any,
                a,
                true,
                Some("x\r\nY: z"),
                format!("Access-Control-Allow-Origin: *\r\n{methods}"),
            ),
        ];
        for (name, cors, origin, preflight, request_headers, expected) in cases {
            let mut out = b"prefix\r\n".to_vec();
            cors.write_headers(&mut out, origin, preflight, request_headers);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("prefix\r\n{expected}"),
                "{name}"
            );
        }
    }

    #[test]
    fn response_heads() {
        let cases: [HeadCase; 5] = [
            (
                200,
                Some("text/plain; charset=UTF-8"),
                5,
                true,
                b"",
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
            ),
            (
                204,
                None,
                0,
                true,
                b"Access-Control-Allow-Origin: *\r\n",
                "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: keep-alive\r\nAccess-Control-Allow-Origin: *\r\n\r\n",
            ),
            (
                400,
                Some("application/json"),
                1234567890,
                false,
                b"",
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 1234567890\r\nConnection: close\r\n\r\n",
            ),
            (
                431,
                None,
                10,
                false,
                b"",
                "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
            ),
            (
                599,
                None,
                usize::MAX,
                false,
                b"",
                "HTTP/1.1 599 Unknown\r\nContent-Length: 18446744073709551615\r\nConnection: close\r\n\r\n",
            ),
        ];
        for (status, content_type, len, keep_alive, extra, expected) in cases {
            let mut out = Vec::new();
            write_response_head(&mut out, status, content_type, len, keep_alive, extra);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn switching_protocols() {
        let mut out = Vec::new();
        write_switching_protocols(&mut out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn decimal() {
        for n in [0usize, 1, 9, 10, 99, 100, 65535, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
