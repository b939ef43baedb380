//! The OpenAPI 3 document of the gateway, generated from the same routes
//! the router serves (`rules`): every path and method with its path and
//! query parameters, request and response schemas (components from the
//! messages and enums, described with their proto comments), the streaming
//! routes as `application/x-ndjson` (and WebSocket), the error body, and the
//! bearer scheme on every operation.

use std::collections::BTreeMap;

use prost_reflect::{EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};
use tonic::Code;

use super::OPENAPI_PATH;
use super::rules::{BodyRule, Route};

const ERROR_SCHEMA: &str = "Status";

/// A signed 64-bit integer as proto3 JSON writes it: decimal digits.
const INT64_PATTERN: &str = "^-?[0-9]{1,19}$";
/// An unsigned 64-bit integer as proto3 JSON writes it.
const UINT64_PATTERN: &str = "^[0-9]{1,20}$";

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The leading comment of the element at `path` in `file`, when the
/// descriptor kept source info.
fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let text = text
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn describe(mut schema: Value, description: Option<String>) -> Value {
    if let (Some(d), Some(o)) = (description, schema.as_object_mut()) {
        if o.contains_key("$ref") {
            // Siblings of $ref are ignored in OpenAPI 3.0: wrap it.
            let reference = std::mem::take(o);
            return json!({ "allOf": [Value::Object(reference)], "description": d });
        }
        o.insert("description".into(), Value::String(d));
    }
    schema
}

struct Schemas {
    schemas: BTreeMap<String, Value>,
}

impl Schemas {
    fn message(&mut self, message: &MessageDescriptor) -> Value {
        let name = message.full_name().to_string();
        if !self.schemas.contains_key(&name) {
            // Placeholder first: recursive messages end here.
            self.schemas.insert(name.clone(), Value::Null);
            let mut properties = Map::new();
            for field in message.fields() {
                let mut schema = self.field(&field);
                if let Some(oneof) = field.containing_oneof()
                    && !field.field_descriptor_proto().proto3_optional()
                {
                    let note = format!("At most one field of `{}` is set.", oneof.name());
                    let text = match comment(&field.parent_file(), field.path()) {
                        Some(c) => format!("{c}\n\n{note}"),
                        None => note,
                    };
                    schema = describe(schema, Some(text));
                } else {
                    schema = describe(schema, comment(&field.parent_file(), field.path()));
                }
                properties.insert(field.json_name().to_string(), schema);
            }
            // Unknown fields are refused (400 naming the field), so the
            // document says no others are allowed. (The proto names, e.g.
            // `kill_timeout_ms`, are accepted too, as proto3 JSON asks.)
            let schema = describe(
                json!({
                    "type": "object",
                    "properties": properties,
                    "additionalProperties": false,
                }),
                comment(&message.parent_file(), message.path()),
            );
            self.schemas.insert(name.clone(), schema);
        }
        schema_ref(&name)
    }

    fn enumeration(&mut self, e: &EnumDescriptor) -> Value {
        let name = e.full_name().to_string();
        if !self.schemas.contains_key(&name) {
            let values: Vec<Value> = e.values().map(|v| Value::from(v.name())).collect();
            let notes: Vec<String> = e
                .values()
                .filter_map(|v| {
                    comment(&e.parent_file(), v.path()).map(|c| format!("- `{}`: {c}", v.name()))
                })
                .collect();
            let mut text = comment(&e.parent_file(), e.path()).unwrap_or_default();
            if !notes.is_empty() {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(&notes.join("\n"));
            }
            let schema = describe(
                json!({ "type": "string", "enum": values }),
                (!text.is_empty()).then_some(text),
            );
            self.schemas.insert(name.clone(), schema);
        }
        schema_ref(&name)
    }

    fn single(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double => json!({ "type": "number", "format": "double" }),
            Kind::Float => json!({ "type": "number", "format": "float" }),
            // The bounds are written out: a client (or a fuzzer) reading
            // only `type` would send a value the JSON mapping refuses.
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({
                "type": "integer", "format": "int32",
                "minimum": i32::MIN, "maximum": i32::MAX,
            }),
            Kind::Uint32 | Kind::Fixed32 => json!({
                "type": "integer", "format": "int64",
                "minimum": 0, "maximum": u32::MAX,
            }),
            // 64-bit integers are decimal strings in proto3 JSON (numbers
            // are accepted on input too); the pattern says which strings.
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": INT64_PATTERN })
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({ "type": "string", "format": "uint64", "pattern": UINT64_PATTERN })
            }
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
            Kind::Enum(e) => self.enumeration(e),
            Kind::Message(m) => self.message(m),
        }
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map()
            && let Kind::Message(entry) = field.kind()
        {
            let value = entry.map_entry_value_field();
            return json!({
                "type": "object",
                "additionalProperties": self.single(&value.kind()),
            });
        }
        let single = self.single(&field.kind());
        if field.is_list() {
            json!({ "type": "array", "items": single })
        } else {
            single
        }
    }
}

/// The query parameters of a route: every field that neither the path nor
/// the body sets, nested messages flattened into dotted names.
fn query_parameters(route: &Route, schemas: &mut Schemas) -> Vec<Value> {
    fn walk(
        message: &MessageDescriptor,
        prefix: &str,
        skip: &[String],
        depth: usize,
        schemas: &mut Schemas,
        out: &mut Vec<Value>,
    ) {
        for field in message.fields() {
            let name = format!("{prefix}{}", field.json_name());
            let proto_name = format!("{prefix}{}", field.name());
            if skip.contains(&proto_name) || skip.contains(&name) {
                continue;
            }
            match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => {
                    if depth < 3 {
                        walk(&m, &format!("{name}."), skip, depth + 1, schemas, out);
                    }
                }
                Kind::Message(_) => {}
                _ => {
                    let schema = schemas.field(&field);
                    let mut parameter = json!({
                        "name": name,
                        "in": "query",
                        "required": false,
                        "schema": schema,
                    });
                    if field.is_list() {
                        parameter["explode"] = Value::Bool(true);
                    }
                    if let Some(d) = comment(&field.parent_file(), field.path()) {
                        parameter["description"] = Value::String(d);
                    }
                    out.push(parameter);
                }
            }
        }
    }
    let mut skip: Vec<String> = route.template.fields().map(str::to_string).collect();
    match &route.body {
        BodyRule::Whole => return Vec::new(),
        BodyRule::Field(f) => skip.push(f.name().to_string()),
        BodyRule::None => {}
    }
    let mut out = Vec::new();
    walk(&route.method.input(), "", &skip, 0, schemas, &mut out);
    out
}

fn operation(route: &Route, schemas: &mut Schemas) -> Value {
    let method = &route.method;
    let input = method.input();
    let mut parameters = Vec::new();
    for field in route.template.fields() {
        let schema = match super::transcode::resolve(&input, field) {
            Ok(chain) => schemas.field(chain.last().expect("never empty")),
            Err(_) => json!({ "type": "string" }),
        };
        parameters.push(json!({
            "name": field,
            "in": "path",
            "required": true,
            "schema": schema,
        }));
    }
    parameters.extend(query_parameters(route, schemas));
    let service = method.parent_service();
    let mut op = json!({
        "operationId": format!("{}_{}", service.name(), method.name()),
        "tags": [service.name()],
        "parameters": parameters,
        "security": [{ "bearer": [] }],
        "x-grpc-method": route.grpc_path,
    });
    let mut description = comment(&service.parent_file(), method.path()).unwrap_or_default();
    let output = schemas.message(&method.output());
    let success = if route.streaming() {
        let note = "Server stream: one JSON object per line (application/x-ndjson), \
            `{\"result\": ...}` per message as it is produced and `{\"error\": ...}` as \
            the last line on failure. With `Upgrade: websocket` (request fields from the \
            path and the query), one text message per message, then a close frame: 1000 \
            at the end, 1011 on an error, 1008 when the caller may not make the call.";
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(note);
        op["x-streaming"] = Value::Bool(true);
        json!({
            "description": "A stream of messages (NDJSON)",
            // One line: exactly one of `result` and `error`.
            "content": { "application/x-ndjson": { "schema": {
                "type": "object",
                "properties": { "result": output, "error": schema_ref(ERROR_SCHEMA) },
                "minProperties": 1,
                "maxProperties": 1,
            }}},
        })
    } else {
        json!({
            "description": "The reply",
            "content": { "application/json": { "schema": output } },
        })
    };
    if !description.is_empty() {
        op["description"] = Value::String(description);
    }
    let body_schema = match &route.body {
        BodyRule::None => None,
        BodyRule::Whole => Some(schemas.message(&input)),
        BodyRule::Field(f) => Some(schemas.field(f)),
    };
    if let Some(schema) = body_schema {
        op["requestBody"] = json!({
            "required": false,
            "content": { "application/json": { "schema": schema } },
        });
    }
    let mut responses = error_responses(route);
    responses.insert("200".into(), success);
    op["responses"] = Value::Object(responses);
    op
}

/// One documented error answer: the error body, under `why`.
fn error_response(why: &str) -> Value {
    json!({
        "description": why,
        "content": { "application/json": { "schema": schema_ref(ERROR_SCHEMA) } },
    })
}

/// The name of a gRPC code as the proto enum spells it (`NOT_FOUND`).
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// Every error status a route can answer with, each with the error body,
/// and no `default`: a status outside the list is a bug a client (or a
/// test) may call one. The statuses are those of every gRPC code through
/// the one mapping the gateway answers with (`respond::http_status`), so
/// the two cannot drift; PERMISSION_DENIED (403) only where a read-only
/// token is refused (the token check is its only source), and the
/// gateway's own 413 and 415 where a body is read.
fn error_responses(route: &Route) -> Map<String, Value> {
    let read_only = pmdaemon_proto::method_access(&route.grpc_path)
        == Some(pmdaemon_proto::v1::Access::ReadOnly);
    let mut codes: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for code in (1..=16).map(Code::from_i32) {
        if read_only && code == Code::PermissionDenied {
            continue;
        }
        let status = super::respond::http_status(code).as_u16();
        codes.entry(status).or_default().push(code_name(code));
    }
    let mut responses = Map::new();
    for (status, names) in codes {
        let why = match status {
            400 => " (the message names the field, the body or the query parameter, and why)",
            401 => ": no bearer token, or an unknown, revoked or expired one",
            403 => ": the route changes the daemon and the token is read-only",
            404 => ": no app or process matches the target",
            _ => "",
        };
        let mut response = error_response(&format!("{}{why}", names.join(", ")));
        if status == 401 {
            response["headers"] = json!({
                "WWW-Authenticate": { "schema": { "type": "string", "enum": ["Bearer"] } },
            });
        }
        responses.insert(status.to_string(), response);
    }
    if !matches!(route.body, BodyRule::None) {
        responses.insert(
            "413".into(),
            error_response("The body is larger than the listener's limits.max_body_bytes"),
        );
        responses.insert(
            "415".into(),
            error_response("The body is not JSON (by its Content-Type): send application/json"),
        );
    }
    responses
}

pub(crate) fn document(routes: &[Route]) -> Value {
    let mut schemas = Schemas {
        schemas: BTreeMap::new(),
    };
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes {
        let op = operation(route, &mut schemas);
        paths
            .entry(route.pattern.clone())
            .or_default()
            .insert(route.http_method.as_str().to_ascii_lowercase(), op);
    }
    paths.entry(OPENAPI_PATH.to_string()).or_default().insert(
        "get".into(),
        json!({
            "operationId": "openapi",
            "description": "This document.",
            "security": [{ "bearer": [] }],
            "responses": {
                "200": {
                    "description": "OpenAPI 3 document",
                    "content": { "application/json": { "schema": { "type": "object" } } },
                },
                "401": error_response(
                    "UNAUTHENTICATED: no bearer token, or an unknown, revoked or expired one",
                ),
            },
        }),
    );
    let mut components = schemas.schemas;
    components.insert(
        ERROR_SCHEMA.into(),
        json!({
            "type": "object",
            "description": "An error: a gRPC status (grpc-gateway's error body).",
            "properties": {
                "code": { "type": "integer", "format": "int32", "description": "The gRPC status code" },
                "message": { "type": "string" },
                "details": { "type": "array", "items": { "type": "object" } },
            },
        }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "pmdaemon",
            "version": pmdaemon_proto::VERSION,
            "description": "REST and WebSocket gateway of the pmdaemon.v1 gRPC API, \
                generated from its google.api.http annotations. Bodies and replies are \
                proto3 JSON (lowerCamelCase names, enums by name, 64-bit integers as \
                strings; default values are written).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        },
        "security": [{ "bearer": [] }],
    })
}
