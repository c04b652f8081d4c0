//! The API's one route table: method, path, access (scope), handler, and what the OpenAPI 3.1
//! document says of it. The router (`Api::router`) and the document ([`openapi`]) are both
//! built from [`TABLE`], so neither can miss a route the other has.
//!
//! Data only. Must not depend on the engine, the shard or the bus.

use std::rc::Rc;

use serde_json::{json, Map, Value};

use super::config::Scope;
use super::handlers;
use super::{Call, HandlerFuture, ShardApi};
use crate::codec::http::Method;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (health, the OpenAPI document: they hold no secret).
    Public,
    /// An API key, with this scope when one is named (a batch checks each op's).
    Key(Option<Scope>),
}

/// One route of the API.
pub(crate) struct RouteSpec {
    pub(crate) method: Method,
    /// Exact, or with `{name}` segments.
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    pub(crate) handler: fn(Rc<ShardApi>, Call) -> HandlerFuture,
    /// OpenAPI: `operationId` and `summary`.
    pub(crate) operation: &'static str,
    pub(crate) summary: &'static str,
    /// OpenAPI: the request body's schema (POST), and the 200 answer's.
    pub(crate) request: Option<fn() -> Value>,
    pub(crate) response: fn() -> Value,
    /// OpenAPI: query parameters (name, description).
    pub(crate) query: &'static [(&'static str, &'static str)],
}

/// Every route of the API.
pub(crate) static TABLE: &[RouteSpec] = &[
    RouteSpec {
        method: Method::Post,
        path: "/v1/emit",
        access: Access::Key(Some(Scope::Emit)),
        handler: handlers::emit,
        operation: "emit",
        summary: "Emit an event to the targeted sockets, optionally waiting for their acks",
        request: Some(emit_request),
        response: emit_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Post,
        path: "/v1/rooms/join",
        access: Access::Key(Some(Scope::Rooms)),
        handler: handlers::join,
        operation: "roomsJoin",
        summary: "Join the targeted sockets to rooms",
        request: Some(rooms_request),
        response: affected_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Post,
        path: "/v1/rooms/leave",
        access: Access::Key(Some(Scope::Rooms)),
        handler: handlers::leave,
        operation: "roomsLeave",
        summary: "Take the targeted sockets out of rooms",
        request: Some(rooms_request),
        response: affected_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Post,
        path: "/v1/disconnect",
        access: Access::Key(Some(Scope::Disconnect)),
        handler: handlers::disconnect,
        operation: "disconnect",
        summary: "Disconnect the targeted sockets (close: true closes their connection)",
        request: Some(disconnect_request),
        response: affected_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Post,
        path: "/v1/sockets/query",
        access: Access::Key(Some(Scope::Read)),
        handler: handlers::sockets_query,
        operation: "socketsQuery",
        summary: "Describe the targeted sockets",
        request: Some(query_request),
        response: query_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Get,
        path: "/v1/sockets/{id}",
        access: Access::Key(Some(Scope::Read)),
        handler: handlers::socket,
        operation: "socket",
        summary: "Describe one socket",
        request: None,
        response: socket_schema,
        query: &[("namespace", "the socket's namespace (default /)")],
    },
    RouteSpec {
        method: Method::Get,
        path: "/v1/rooms",
        access: Access::Key(Some(Scope::Read)),
        handler: handlers::rooms,
        operation: "rooms",
        summary: "List rooms, sorted, a page at a time",
        request: None,
        response: rooms_response,
        query: &[
            ("namespace", "default /"),
            ("prefix", "only rooms starting with it"),
            ("limit", "1 to 1000, default 100"),
            ("cursor", "next_cursor of the previous page"),
            ("scope", "local or cluster"),
        ],
    },
    RouteSpec {
        method: Method::Get,
        path: "/v1/rooms/count",
        access: Access::Key(Some(Scope::Read)),
        handler: handlers::rooms_count,
        operation: "roomsCount",
        summary: "Count a room's sockets",
        request: None,
        response: count_response,
        query: &[
            ("namespace", "default /"),
            ("room", "the room (required)"),
            ("local", "true: this node only"),
        ],
    },
    RouteSpec {
        method: Method::Get,
        path: "/v1/users/{user}/sockets",
        access: Access::Key(Some(Scope::Read)),
        handler: handlers::user_sockets,
        operation: "userSockets",
        summary: "Describe a user's sockets in every namespace",
        request: None,
        response: sockets_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Post,
        path: "/v1/users/{user}/disconnect",
        access: Access::Key(Some(Scope::Disconnect)),
        handler: handlers::user_disconnect,
        operation: "userDisconnect",
        summary: "Disconnect a user's sockets in every namespace",
        request: Some(user_disconnect_request),
        response: affected_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Post,
        path: "/v1/users/{user}/revoke",
        access: Access::Key(Some(Scope::Users)),
        handler: handlers::revoke,
        operation: "revokeUser",
        summary: "Refuse a user's tokens issued before a time and disconnect the user everywhere",
        request: Some(revoke_request),
        response: revoke_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Delete,
        path: "/v1/users/{user}/revoke",
        access: Access::Key(Some(Scope::Users)),
        handler: handlers::lift_revocation,
        operation: "liftRevocation",
        summary: "Lift a user's revocation",
        request: None,
        response: lift_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Post,
        path: "/v1/batch",
        access: Access::Key(None),
        handler: handlers::batch,
        operation: "batch",
        summary: "Run operations in order, each with its own scope",
        request: Some(batch_request),
        response: batch_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Get,
        path: "/v1/info",
        access: Access::Key(Some(Scope::Read)),
        handler: handlers::info,
        operation: "info",
        summary: "This node: version, namespaces, cluster",
        request: None,
        response: info_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Get,
        path: "/v1/health",
        access: Access::Public,
        handler: handlers::health,
        operation: "health",
        summary: "ok, or draining while shutting down",
        request: None,
        response: health_response,
        query: &[],
    },
    RouteSpec {
        method: Method::Get,
        path: "/v1/openapi.json",
        access: Access::Public,
        handler: handlers::openapi,
        operation: "openapi",
        summary: "This document",
        request: None,
        response: object_schema,
        query: &[],
    },
];

/// The OpenAPI 3.1 document of [`TABLE`].
pub(crate) fn openapi() -> Value {
    let mut paths = Map::new();
    for spec in TABLE {
        let method = match spec.method {
            Method::Get => "get",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Options => "options",
            Method::Other => continue,
        };
        let mut operation = Map::new();
        operation.insert("operationId".into(), json!(spec.operation));
        operation.insert("summary".into(), json!(spec.summary));
        let mut parameters: Vec<Value> = spec
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        parameters.extend(spec.query.iter().map(|(name, description)| {
            json!({
                "name": name, "in": "query", "required": false,
                "description": description, "schema": { "type": "string" }
            })
        }));
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(request) = spec.request {
            operation.insert(
                "requestBody".into(),
                json!({
                    "required": true,
                    "content": { "application/json": { "schema": request() } }
                }),
            );
        }
        let error = json!({
            "description": "an error",
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
        });
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({
                "description": "success",
                "content": { "application/json": { "schema": (spec.response)() } }
            }),
        );
        match spec.access {
            Access::Public => {
                operation.insert("security".into(), json!([]));
            }
            Access::Key(scope) => {
                responses.insert("401".into(), error.clone());
                if scope.is_some() {
                    responses.insert("403".into(), error.clone());
                }
                if let Some(scope) = scope {
                    operation.insert("x-ringcast-scope".into(), json!(scope.as_str()));
                }
            }
        }
        responses.insert("default".into(), error);
        operation.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(spec.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(method.into(), Value::Object(operation));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ringcast server API",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "security": [ { "bearer": [] }, { "hmac": [] } ],
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "hmac": {
                    "type": "apiKey", "in": "header", "name": "Ringcast-Signature",
                    "description": "with Ringcast-Key: t=<unix>,v1=hex(HMAC-SHA256(secret, t.METHOD.path_and_query.body))"
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" },
                            },
                        },
                    },
                },
                "Targets": targets_schema(),
                "Socket": socket_schema(),
            },
        },
    })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn targets_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "rooms": strings(), "sockets": strings(), "users": strings(),
            "except_rooms": strings(), "except_sockets": strings(), "except_users": strings(),
        },
    })
}

fn targets_ref() -> Value {
    json!({ "$ref": "#/components/schemas/Targets" })
}

fn object_schema() -> Value {
    json!({ "type": "object" })
}

fn emit_request() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["event"],
        "properties": {
            "namespace": { "type": "string", "default": "/" },
            "to": targets_ref(),
            "event": { "type": "string" },
            "args": { "type": "array" },
            "attachments": { "type": "array", "items": { "type": "string", "contentEncoding": "base64" } },
            "volatile": { "type": "boolean" },
            "local": { "type": "boolean" },
            "ack": {
                "type": "object",
                "required": ["timeout_ms"],
                "properties": { "timeout_ms": { "type": "integer", "minimum": 1, "maximum": 60000 } },
            },
        },
    })
}

fn emit_response() -> Value {
    json!({
        "oneOf": [
            {
                "type": "object",
                "required": ["local_recipients", "published"],
                "properties": {
                    "local_recipients": { "type": "integer" },
                    "published": { "type": "boolean" },
                },
            },
            {
                "type": "object",
                "required": ["expected", "received", "acks", "timed_out"],
                "properties": {
                    "expected": { "type": "integer" },
                    "received": { "type": "integer" },
                    "acks": { "type": "array" },
                    "timed_out": { "type": "boolean" },
                },
            },
        ],
    })
}

fn rooms_request() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["rooms"],
        "properties": {
            "namespace": { "type": "string" },
            "to": targets_ref(),
            "rooms": strings(),
            "local": { "type": "boolean" },
        },
    })
}

fn disconnect_request() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "namespace": { "type": "string" },
            "to": targets_ref(),
            "reason": { "type": "string" },
            "close": { "type": "boolean", "default": false },
            "local": { "type": "boolean" },
        },
    })
}

fn user_disconnect_request() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "reason": { "type": "string" },
            "close": { "type": "boolean", "default": false },
            "local": { "type": "boolean" },
        },
    })
}

fn revoke_request() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "before": { "type": "integer", "description": "unix seconds; default now" },
            "ttl": {
                "type": ["string", "integer"],
                "description": "how long the revocation holds: ms, or \"24h\"; default users.revocation_ttl",
            },
            "local": { "type": "boolean" },
        },
    })
}

fn revoke_response() -> Value {
    json!({
        "type": "object",
        "required": ["revoked_before"],
        "properties": { "revoked_before": { "type": "integer" } },
    })
}

fn lift_response() -> Value {
    json!({
        "type": "object",
        "required": ["lifted"],
        "properties": { "lifted": { "type": "boolean" } },
    })
}

fn affected_response() -> Value {
    json!({
        "type": "object",
        "required": ["local_affected", "published"],
        "properties": {
            "local_affected": { "type": "integer" },
            "published": { "type": "boolean" },
        },
    })
}

fn query_request() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "namespace": { "type": "string" },
            "to": targets_ref(),
            "limit": { "type": "integer", "minimum": 0, "default": 1000 },
            "local": { "type": "boolean" },
        },
    })
}

fn socket_ref() -> Value {
    json!({ "$ref": "#/components/schemas/Socket" })
}

fn query_response() -> Value {
    json!({
        "type": "object",
        "required": ["sockets", "partial"],
        "properties": {
            "sockets": { "type": "array", "items": socket_ref() },
            "partial": { "type": "boolean" },
            "nodes_expected": { "type": "integer" },
            "nodes_answered": { "type": "integer" },
        },
    })
}

fn sockets_response() -> Value {
    json!({
        "type": "object",
        "required": ["sockets"],
        "properties": {
            "sockets": { "type": "array", "items": socket_ref() },
            "partial": { "type": "boolean" },
        },
    })
}

fn socket_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "namespace", "rooms", "handshake"],
        "properties": {
            "id": { "type": "string" },
            "namespace": { "type": "string" },
            "user": { "type": ["string", "null"] },
            "rooms": strings(),
            "data": {},
            "handshake": {
                "type": "object",
                "properties": {
                    "address": { "type": ["string", "null"] },
                    "time": { "type": ["string", "null"] },
                    "issued": { "type": ["integer", "null"] },
                    "query": { "type": "object" },
                    "headers": { "type": "object" },
                },
            },
            "node": { "type": ["string", "null"] },
        },
    })
}

fn rooms_response() -> Value {
    json!({
        "type": "object",
        "required": ["rooms", "partial"],
        "properties": {
            "rooms": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "local_sockets"],
                    "properties": {
                        "name": { "type": "string" },
                        "local_sockets": { "type": "integer" },
                    },
                },
            },
            "next_cursor": { "type": ["string", "null"] },
            "partial": { "type": "boolean" },
        },
    })
}

fn count_response() -> Value {
    json!({
        "type": "object",
        "required": ["room", "sockets", "partial"],
        "properties": {
            "room": { "type": "string" },
            "sockets": { "type": "integer" },
            "partial": { "type": "boolean" },
        },
    })
}

fn batch_request() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["ops"],
        "properties": {
            "ops": {
                "type": "array",
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["op"],
                    "properties": {
                        "op": { "enum": ["emit", "join", "leave", "disconnect", "query"] },
                    },
                },
            },
            "stop_on_error": { "type": "boolean", "default": false },
        },
    })
}

fn batch_response() -> Value {
    json!({
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "oneOf": [
                        { "type": "object", "required": ["ok"] },
                        { "$ref": "#/components/schemas/Error" },
                    ],
                },
            },
        },
    })
}

fn info_response() -> Value {
    json!({
        "type": "object",
        "required": ["version", "node", "boot_id", "started_at", "cores", "namespaces", "cluster"],
        "properties": {
            "version": { "type": "string" },
            "node": { "type": "string" },
            "boot_id": { "type": "string" },
            "started_at": { "type": "integer" },
            "cores": { "type": "integer" },
            "namespaces": { "type": "array" },
            "cluster": { "type": "object" },
        },
    })
}

fn health_response() -> Value {
    json!({
        "type": "object",
        "required": ["status"],
        "properties": { "status": { "enum": ["ok", "draining"] } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_of_the_table() {
        let document = openapi();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().expect("paths");
        let mut documented = 0;
        for (path, methods) in paths {
            documented += methods.as_object().expect("methods").len();
            assert!(TABLE.iter().any(|spec| spec.path == path), "{path}");
        }
        assert_eq!(documented, TABLE.len());
        for spec in TABLE {
            let method = match spec.method {
                Method::Get => "get",
                Method::Delete => "delete",
                _ => "post",
            };
            let operation = &document["paths"][spec.path][method];
            assert_eq!(operation["operationId"], spec.operation);
            assert!(operation["responses"]["200"].is_object());
        }
    }
}
