//! `GET /metrics` on the TCP listener: the Prometheus text exposition of
//! every instance (labels name, id, instance) and of the daemon itself.
//! Reads what the core already has (`Supervisor::views`, whose samples come
//! from the one sampler's channel) and `/proc/self` for the daemon: no
//! second sampler. Any valid token may read it (the Scope extension is
//! required: the authentication layer let the request through).
//!
//! Talks to: the supervisor (views), `auth::token::Scope`.

use std::fmt::Write;

use axum::Extension;
use axum::response::IntoResponse;
use http::{StatusCode, header};
use pmdaemon_proto::Target;

use crate::auth::token::Scope;
use crate::supervisor::Supervisor;
use crate::supervisor::instance::Health;

/// The `/metrics` route.
pub(crate) fn router(sup: Supervisor) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |scope: Option<Extension<Scope>>| {
            let sup = sup.clone();
            async move {
                // Fails closed if it is ever mounted without the layer.
                if scope.is_none() {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                match render(&sup) {
                    Ok(text) => (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
                }
            }
        }),
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render(sup: &Supervisor) -> Result<String, crate::error::Error> {
    let views = sup.views(&Target::All)?;
    let now_ms = crate::supervisor::instance::now_ms();
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = String>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for row in rows {
                let _ = writeln!(out, "{name}{row}");
            }
        };
    let labels = |v: &crate::supervisor::InstanceView, extra: &str| {
        format!(
            "{{name=\"{}\",id=\"{}\",instance=\"{}\"{extra}}}",
            escape(&v.name),
            v.id,
            v.index
        )
    };
    family(
        "pmdaemon_instance_up",
        "gauge",
        "1 while the instance's process runs.",
        &mut views.iter().map(|v| {
            format!(
                "{} {}",
                labels(v, ""),
                u8::from(v.shared.state.is_running())
            )
        }),
    );
    family(
        "pmdaemon_instance_state",
        "gauge",
        "The instance's state (1 on the series of its current state).",
        &mut views.iter().map(|v| {
            let state = format!(",state=\"{}\"", v.shared.state.word());
            format!("{} 1", labels(v, &state))
        }),
    );
    family(
        "pmdaemon_instance_restarts_total",
        "counter",
        "Restarts of the instance.",
        &mut views
            .iter()
            .map(|v| format!("{} {}", labels(v, ""), v.shared.restarts)),
    );
    family(
        "pmdaemon_instance_cpu_percent",
        "gauge",
        "CPU use over the last sampling interval, percent of one core.",
        &mut views.iter().filter_map(|v| {
            let cpu = v.sample.as_ref()?.cpu_percent?;
            Some(format!("{} {cpu}", labels(v, "")))
        }),
    );
    family(
        "pmdaemon_instance_resident_bytes",
        "gauge",
        "Resident memory of the instance's processes.",
        &mut views.iter().filter_map(|v| {
            let bytes = v.sample.as_ref()?.memory_bytes;
            Some(format!("{} {bytes}", labels(v, "")))
        }),
    );
    family(
        "pmdaemon_instance_uptime_seconds",
        "gauge",
        "Time since the instance's process started.",
        &mut views.iter().filter_map(|v| {
            let started = v
                .shared
                .started_at_ms
                .filter(|_| v.shared.state.is_running())?;
            let secs = (now_ms - started).max(0) as f64 / 1000.0;
            Some(format!("{} {secs}", labels(v, "")))
        }),
    );
    family(
        "pmdaemon_instance_health",
        "gauge",
        "The health check's verdict (1 on the series of the current one; none without a check).",
        &mut views.iter().filter_map(|v| {
            let word = match v.shared.health {
                Health::None => return None,
                Health::Unknown => "unknown",
                Health::Healthy => "healthy",
                Health::Unhealthy => "unhealthy",
            };
            Some(format!("{} 1", labels(v, &format!(",health=\"{word}\""))))
        }),
    );
    family(
        "pmdaemon_instance_port",
        "gauge",
        "The port assigned to the instance.",
        &mut views.iter().filter_map(|v| {
            let port = v.plan.effective_port()?;
            Some(format!("{} {port}", labels(v, "")))
        }),
    );
    // A balanced app's instances: their part of the public port.
    let balanced = || {
        views
            .iter()
            .filter_map(|v| v.balance.as_ref().map(|(_, i)| (v, i)))
    };
    family(
        "pmdaemon_instance_balanced_in_pool",
        "gauge",
        "1 while the balanced instance takes new connections from its app's public port.",
        &mut balanced().map(|(v, i)| format!("{} {}", labels(v, ""), u8::from(i.in_pool))),
    );
    family(
        "pmdaemon_instance_balanced_connections",
        "gauge",
        "Connections open through the public port to the instance.",
        &mut balanced().map(|(v, i)| format!("{} {}", labels(v, ""), i.active)),
    );
    family(
        "pmdaemon_instance_balanced_connections_total",
        "counter",
        "Connections forwarded to the instance since the daemon started.",
        &mut balanced().map(|(v, i)| format!("{} {}", labels(v, ""), i.total)),
    );
    family(
        "pmdaemon_instance_balanced_bytes_total",
        "counter",
        "Bytes through the public port: from clients to the instance (in), and back (out).",
        &mut balanced().flat_map(|(v, i)| {
            [
                format!("{} {}", labels(v, ",direction=\"in\""), i.bytes_in),
                format!("{} {}", labels(v, ",direction=\"out\""), i.bytes_out),
            ]
        }),
    );
    let mut pools: Vec<(&str, &crate::balancer::PoolStatus)> = views
        .iter()
        .filter_map(|v| Some((v.name.as_str(), &v.balance.as_ref()?.0)))
        .collect();
    pools.dedup_by_key(|(name, _)| *name);
    family(
        "pmdaemon_app_balanced_refused_total",
        "counter",
        "Connections a balanced app's public port refused (no ready instance in time, the wait queue full).",
        &mut pools.iter().map(|(name, p)| {
            format!(
                "{{name=\"{}\",port=\"{}\"}} {}",
                escape(name),
                p.public_port,
                p.refused
            )
        }),
    );
    let mut apps: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
    apps.sort_unstable();
    apps.dedup();
    let own = own_process();
    family(
        "pmdaemon_apps",
        "gauge",
        "Apps the daemon manages.",
        &mut std::iter::once(format!(" {}", apps.len())),
    );
    family(
        "pmdaemon_daemon_resident_bytes",
        "gauge",
        "The daemon's own resident memory.",
        &mut own.rss.map(|b| format!(" {b}")).into_iter(),
    );
    family(
        "pmdaemon_daemon_cpu_seconds_total",
        "counter",
        "CPU time the daemon itself used (user + system).",
        &mut own.cpu_seconds.map(|s| format!(" {s}")).into_iter(),
    );
    family(
        "pmdaemon_daemon_open_fds",
        "gauge",
        "File descriptors the daemon holds open.",
        &mut own.open_fds.map(|n| format!(" {n}")).into_iter(),
    );
    Ok(out)
}

struct Own {
    rss: Option<u64>,
    cpu_seconds: Option<f64>,
    open_fds: Option<usize>,
}

fn own_process() -> Own {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| {
            let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .unwrap_or(4096) as u64;
            pages * page
        });
    let cpu_seconds = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .ok()
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        });
    let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count());
    Own {
        rss,
        cpu_seconds,
        open_fds,
    }
}
