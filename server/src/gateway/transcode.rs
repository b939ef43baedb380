//! HTTP request → request message: the JSON body (`body: "*"` or one
//! field), the path variables and the query parameters merged into one
//! proto3 JSON object, then read by prost-reflect's canonical JSON mapping
//! (unknown fields refused, enums by name or number, 64-bit integers as
//! strings or numbers). Path and query values are typed from the field
//! they name, so `follow=true` is a JSON bool and `stream=2` an enum number.
//! Errors are INVALID_ARGUMENT statuses, answered like the service's own,
//! naming the field (its dotted JSON path) whose value is refused.

use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};
use tonic::Status;

use super::rules::{BodyRule, Route};
use super::template::decode_component;

/// What a request carries besides its route.
pub(crate) struct Input<'a> {
    /// Path variables: dotted field path and decoded value.
    pub vars: Vec<(String, String)>,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// A WebSocket has no body: every field may come from the query.
    pub websocket: bool,
}

/// The fields a dotted path (`spec.name`, proto or JSON names) leads
/// through, from the top; every one but the last a singular message.
pub(crate) fn resolve(
    desc: &MessageDescriptor,
    dotted: &str,
) -> Result<Vec<FieldDescriptor>, String> {
    let mut chain = Vec::new();
    let mut current = desc.clone();
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
            .ok_or_else(|| format!("unknown field {part:?} in {}", current.full_name()))?;
        if parts.peek().is_some() {
            match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => current = m,
                _ => return Err(format!("{part:?} is not a message field")),
            }
        }
        chain.push(field);
    }
    Ok(chain)
}

fn invalid(why: impl Into<String>) -> Status {
    Status::invalid_argument(why.into())
}

pub(crate) fn request_message(route: &Route, input: Input<'_>) -> Result<DynamicMessage, Status> {
    let desc = route.method.input();
    let mut root = Map::new();
    let json = |body: &[u8]| {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| invalid(format!("invalid JSON body: {e}")))
    };
    let body_field = match &route.body {
        BodyRule::Whole => {
            if !input.body.is_empty() {
                match json(input.body)? {
                    Value::Object(m) => root = m,
                    _ => return Err(invalid("the body must be a JSON object")),
                }
            }
            None
        }
        BodyRule::Field(f) => {
            if !input.body.is_empty() {
                root.insert(f.json_name().to_string(), json(input.body)?);
            }
            Some(f.clone())
        }
        BodyRule::None => {
            if !input.body.is_empty() {
                return Err(invalid(format!(
                    "{} {} takes no body: send its fields as query parameters",
                    route.http_method, route.pattern
                )));
            }
            None
        }
    };
    let mut from_path = Vec::new();
    for (field, value) in &input.vars {
        let chain = resolve(&desc, field).map_err(invalid)?;
        let leaf = chain.last().expect("never empty");
        let value =
            scalar(leaf, value).map_err(|why| invalid(format!("path variable {field}: {why}")))?;
        set(&mut root, &chain, value, false);
        from_path.push(leaf.full_name().to_string());
    }
    for pair in input
        .query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(key), Some(value)) = (decode_component(key, true), decode_component(value, true))
        else {
            return Err(invalid(format!(
                "query parameter {pair:?} is not valid percent-encoded UTF-8"
            )));
        };
        let bad = |why: &str| invalid(format!("query parameter {key}: {why}"));
        if matches!(route.body, BodyRule::Whole) && !input.websocket {
            return Err(bad("this route takes every field from its JSON body"));
        }
        let chain = resolve(&desc, &key).map_err(|why| bad(&why))?;
        let leaf = chain.last().expect("never empty");
        if from_path.iter().any(|p| p == leaf.full_name()) {
            return Err(bad("already set by the path"));
        }
        if body_field.as_ref().is_some_and(|f| *f == chain[0]) {
            return Err(bad("already set by the body"));
        }
        let value = scalar(leaf, &value).map_err(|why| bad(&why))?;
        set(&mut root, &chain, value, leaf.is_list());
    }
    // The JSON mapping's errors do not say where ("invalid digit found in
    // string"): the tracked path names the field, in the body's own
    // terms, which are also the query parameters' names.
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(Value::Object(root), &mut track);
    DynamicMessage::deserialize_with_options(desc, tracked, &DeserializeOptions::new()).map_err(
        |e| match track.path().to_string() {
            at if at.is_empty() || at == "." => invalid(format!("invalid request: {e}")),
            at => invalid(format!("invalid request: {at}: {e}")),
        },
    )
}

/// Puts `value` at `chain` in `root`, creating the objects on the way; a
/// repeated field gathers its values. A field already there under its
/// proto name (the body may use either) is moved to its JSON name first,
/// so the message never sees the same field twice.
fn set(root: &mut Map<String, Value>, chain: &[FieldDescriptor], value: Value, append: bool) {
    let mut object = root;
    for (i, field) in chain.iter().enumerate() {
        let key = field.json_name();
        if field.name() != key
            && let Some(old) = object.remove(field.name())
        {
            object.insert(key.to_string(), old);
        }
        if i + 1 == chain.len() {
            if append {
                let slot = object
                    .entry(key)
                    .or_insert_with(|| Value::Array(Vec::new()));
                match slot {
                    Value::Array(items) => items.push(value),
                    other => *other = Value::Array(vec![value]),
                }
            } else {
                object.insert(key.to_string(), value);
            }
            return;
        }
        let slot = object
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        object = slot.as_object_mut().expect("just made an object");
    }
}

/// A path or query string as the JSON value proto3 JSON expects for
/// `field`; range and format are left to the JSON mapping (whose refusal
/// `request_message` prefixes with the field's path).
fn scalar(field: &FieldDescriptor, s: &str) -> Result<Value, String> {
    if field.is_map() {
        return Err("a map cannot be set from the path or the query".into());
    }
    let number_or_string = |s: &str| match s.parse::<i64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(s),
    };
    Ok(match field.kind() {
        Kind::Bool => match s {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(format!("{s:?} is not true or false")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => {
            number_or_string(s)
        }
        Kind::Enum(_) => number_or_string(s),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            Value::from(s)
        }
        Kind::Float | Kind::Double => match s.parse::<f64>() {
            Ok(f) if f.is_finite() => Value::from(f),
            _ => Value::from(s),
        },
        Kind::String | Kind::Bytes => Value::from(s),
        Kind::Message(_) => {
            return Err("a message cannot be set from the path or the query".into());
        }
    })
}
