//! The routes: every `google.api.http` rule (and its additional bindings)
//! of every method in the descriptor pool, except the methods declared
//! `ACCESS_LOCAL_ONLY` (read through `pmdaemon_proto::method_access`, the
//! same table the authorization layer uses). Nothing here knows a method by
//! name: a new annotated RPC becomes a route by being in the pool.

use axum::http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MethodDescriptor, Value};

use super::GatewayError;
use super::template::Template;

/// Where a request's body goes.
#[derive(Debug, Clone)]
pub(crate) enum BodyRule {
    /// No body: every field not in the path comes from the query.
    None,
    /// `body: "*"`: the body is the request message (path fields merged in).
    Whole,
    /// `body: "field"`: the body is that field; the rest from the query.
    Field(FieldDescriptor),
}

#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub method: MethodDescriptor,
    pub http_method: Method,
    /// The template as written in the proto (the OpenAPI path).
    pub pattern: String,
    pub template: Template,
    pub body: BodyRule,
    /// `/pmdaemon.v1.ProcessManager/StopProcess`.
    pub grpc_path: String,
}

impl Route {
    pub(crate) fn streaming(&self) -> bool {
        self.method.is_server_streaming()
    }
}

pub(crate) fn routes(pool: &DescriptorPool) -> Result<Vec<Route>, GatewayError> {
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or(GatewayError::NoHttpOption)?;
    let mut routes = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&http) {
                continue;
            }
            let grpc_path = format!("/{}/{}", service.full_name(), method.name());
            if pmdaemon_proto::method_access(&grpc_path)
                == Some(pmdaemon_proto::v1::Access::LocalOnly)
            {
                continue;
            }
            if method.is_client_streaming() {
                return Err(GatewayError::ClientStreaming(grpc_path));
            }
            let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                return Err(GatewayError::Rule {
                    method: grpc_path,
                    why: "google.api.http is not a message".into(),
                });
            };
            let mut rules = vec![rule.clone()];
            if let Some(Value::List(more)) = rule
                .get_field_by_name("additional_bindings")
                .map(|v| v.into_owned())
            {
                rules.extend(more.into_iter().filter_map(|v| match v {
                    Value::Message(m) => Some(m),
                    _ => None,
                }));
            }
            for rule in rules {
                routes.push(route(&method, &grpc_path, &rule)?);
            }
        }
    }
    Ok(routes)
}

fn route(
    method: &MethodDescriptor,
    grpc_path: &str,
    rule: &DynamicMessage,
) -> Result<Route, GatewayError> {
    let bad = |why: String| GatewayError::Rule {
        method: grpc_path.to_string(),
        why,
    };
    let text = |name: &str| -> Option<String> {
        rule.has_field_by_name(name)
            .then(|| rule.get_field_by_name(name))
            .flatten()
            .and_then(|v| v.as_str().map(str::to_string))
    };
    let mut found = None;
    for (name, verb) in [
        ("get", Method::GET),
        ("put", Method::PUT),
        ("post", Method::POST),
        ("delete", Method::DELETE),
        ("patch", Method::PATCH),
    ] {
        if let Some(path) = text(name) {
            found = Some((verb, path));
        }
    }
    if found.is_none()
        && rule.has_field_by_name("custom")
        && let Some(Value::Message(custom)) =
            rule.get_field_by_name("custom").map(|v| v.into_owned())
    {
        let kind = custom.get_field_by_name("kind");
        let path = custom.get_field_by_name("path");
        if let (Some(kind), Some(path)) = (kind, path)
            && let (Some(kind), Some(path)) = (kind.as_str(), path.as_str())
        {
            let verb = Method::from_bytes(kind.as_bytes())
                .map_err(|_| bad(format!("custom method {kind:?}")))?;
            found = Some((verb, path.to_string()));
        }
    }
    let (http_method, pattern) = found.ok_or_else(|| bad("no HTTP method and path".into()))?;
    if text("response_body").is_some_and(|b| !b.is_empty()) {
        return Err(bad("response_body is not supported".into()));
    }
    let input = method.input();
    let body = match text("body").as_deref() {
        None | Some("") => BodyRule::None,
        Some("*") => BodyRule::Whole,
        Some(field) => BodyRule::Field(input.get_field_by_name(field).ok_or_else(|| {
            bad(format!(
                "body field {field} is not in {}",
                input.full_name()
            ))
        })?),
    };
    let template = Template::parse(&pattern)?;
    for field in template.fields() {
        super::transcode::resolve(&input, field)
            .map_err(|why| bad(format!("path variable {field}: {why}")))?;
    }
    Ok(Route {
        method: method.clone(),
        http_method,
        pattern,
        template,
        body,
        grpc_path: grpc_path.to_string(),
    })
}
