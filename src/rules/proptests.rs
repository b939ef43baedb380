//! Property tests of the value rules: any text or number given to a rule
//! never panics, and what a rule accepts is a value the other rules accept
//! too (it reads back as itself, it is within the limits). The dependency
//! order is compared with a naive reference (a transitive closure) on
//! small sets. Runs proptest's default 256 cases per property
//! (`PROPTEST_CASES` overrides it).

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::v1;

/// Text that looks like what users write, and text that does not: ASCII
/// with the separators the rules split on, any unicode (NUL, controls,
/// combining marks), and very long digits.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .:_/\\-+\\[\\]{}@#?=%\t\n]{0,24}",
        any::<String>(),
        "[0-9]{15,40}[a-zA-Z]{0,3}",
        "(auto:|AUTO: )?[0-9 ]{0,7}(-[0-9 ]{0,7}){0,2}",
        "(http|HTTP|https|ftp)://[a-z0-9.:\\[\\]{}@]{0,20}(/[a-z{}#?]{0,8})?",
    ]
}

proptest! {
    #[test]
    /// An accepted name is never a path, a flag or a line break, and its
    /// file-safe form is one file name of at most 64 safe bytes.
    fn names_accepted_make_safe_file_names(name in text()) {
        if validate_name(&name).is_ok() {
            prop_assert!(!name.is_empty() && name.chars().count() <= MAX_NAME_LEN);
            prop_assert!(!name.contains('/') && !name.chars().any(char::is_control));
            prop_assert!(!name.starts_with('-') && name != "." && name != "..");
            prop_assert_eq!(name.parse::<Target>(), Ok(Target::Name(name.clone())));
            let safe = file_safe_name(&name);
            prop_assert!(!safe.is_empty() && safe.len() <= MAX_NAME_LEN);
            prop_assert!(safe.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            prop_assert!(!safe.starts_with('.'));
        }
        if validate_plain_name(&name).is_ok() {
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            prop_assert!(name.as_bytes()[0].is_ascii_alphanumeric());
        }
        let _ = default_name(&name);
    }

    #[test]
    fn targets_read_back(target in text()) {
        if let Ok(parsed) = target.parse::<Target>() {
            prop_assert_eq!(parsed.to_string().parse::<Target>(), Ok(parsed));
        }
    }

    #[test]
    fn port_specs_read_back_and_stay_in_range(spec in text(), instances in any::<u32>()) {
        let Ok(parsed) = spec.parse::<PortSpec>() else { return Ok(()) };
        prop_assert_eq!(parsed.to_string().parse::<PortSpec>(), Ok(parsed));
        let ports = parsed.ports();
        prop_assert!(*ports.start() >= 1 && ports.start() <= ports.end());
        prop_assert!((1..=65_535).contains(&parsed.port_count()));
        match parsed.check_room(instances) {
            Ok(()) => prop_assert!(instances <= parsed.port_count()),
            // The refusal suggests specs that fit (within 1-65535).
            Err(e) => prop_assert!(instances > parsed.port_count(), "{}", e),
        }
    }

    #[test]
    fn sizes_are_bytes(value in text(), n in any::<u64>()) {
        let _ = parse_size("--s", &value);
        prop_assert_eq!(parse_size("--s", &n.to_string()), Ok(n));
        prop_assert_eq!(
            parse_size("--s", &format!("{n}K")).ok(),
            n.checked_mul(1024)
        );
        if let Ok(bytes) = check_log_max_size("--s", n) {
            prop_assert!((MIN_LOG_MAX_BYTES..=MAX_LOG_MAX_BYTES).contains(&bytes));
        }
    }

    #[test]
    fn durations_stay_within_the_maximum(value in text(), ms in any::<u64>()) {
        if let Ok(d) = parse_duration("--d", &value) {
            prop_assert!(d <= MAX_DURATION);
        }
        let parsed = parse_duration("--d", &ms.to_string());
        prop_assert_eq!(parsed.is_ok(), Duration::from_millis(ms) <= MAX_DURATION);
        if let Ok(d) = parsed {
            prop_assert_eq!(d, Duration::from_millis(ms));
        }
    }

    #[test]
    fn stop_signals_stop(value in text(), n in any::<i32>()) {
        for value in [value, n.to_string()] {
            if let Ok(sig) = parse_stop_signal("--s", &value) {
                use nix::sys::signal::Signal;
                prop_assert!(!matches!(
                    sig,
                    Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGCONT | Signal::SIGCHLD
                ));
                prop_assert_eq!(parse_stop_signal("--s", sig.as_str()), Ok(sig));
            }
        }
    }

    #[test]
    fn counts_and_instances_stay_within_limits(value in text(), n in any::<i64>(), wire in any::<i32>()) {
        for parsed in [value.parse::<Instances>(), Instances::from_count(n), Instances::from_wire(wire)] {
            let Ok(instances) = parsed else { continue };
            let w = instances.wire();
            prop_assert!(w == -1 || (0..=MAX_INSTANCES as i32).contains(&w));
            prop_assert_eq!(Instances::from_wire(w), Ok(instances));
            prop_assert_eq!(instances.to_string().parse::<Instances>(), Ok(instances));
            prop_assert!((1..=MAX_INSTANCES).contains(&instances.resolve(|| 4096)));
        }
        if let Ok(c) = check_count("--n", n as u64, MAX_MAX_RESTARTS) {
            prop_assert!(c <= MAX_MAX_RESTARTS);
        }
    }

    #[test]
    fn env_variables_cross_execve(name in text(), value in text()) {
        if check_env_var(&name, &value).is_ok() {
            prop_assert!(!name.is_empty() && !name.contains(['=', '\0']) && !value.contains('\0'));
            prop_assert_ne!(name.as_str(), crate::HOME_ENV);
        }
        if check_port_env(&name).is_ok() {
            prop_assert!(check_env_var(&name, &value).is_ok() || value.contains('\0'));
            prop_assert!(check_env_name(&name).is_ok() && reserved_port_env(&name).is_none());
        }
    }

    #[test]
    fn probes_parse_without_panicking(target in text(), template in any::<bool>()) {
        if let Ok(url) = health::parse_http_url(&target, template) {
            prop_assert!(!url.host.is_empty() && url.path.starts_with('/'));
            prop_assert!(url.port != 0 || template);
            prop_assert!(!url.authority.contains(char::is_whitespace));
        }
        if let Ok((host, port)) = health::parse_tcp_target(&target, template) {
            prop_assert!(!host.is_empty() && (port != 0 || template));
        }
        if health::check_probe_script(&target).is_ok() {
            prop_assert!(!target.trim().is_empty() && !target.contains('\0'));
        }
        let _ = health::check_port_placeholder(&target, template);
    }

    #[test]
    fn health_timing_stays_within_limits(ms in any::<u64>(), n in any::<u64>()) {
        if let Ok(ms) = health::check_probe_interval(ms) {
            prop_assert!((health::MIN_INTERVAL_MS..=health::MAX_DURATION_MS).contains(&ms));
        }
        if let Ok(ms) = health::check_start_period(ms) {
            prop_assert!(ms <= health::MAX_DURATION_MS);
        }
        if let Ok(n) = health::check_retries(n) {
            prop_assert!((1..=health::MAX_RETRIES).contains(&n));
        }
        if let Ok(code) = health::check_expected_status(n) {
            prop_assert!((100..=599).contains(&code));
        }
        let _ = health::human_ms(ms);
    }

    #[test]
    fn a_health_check_has_one_fitting_probe(
        kind in 0..4u8,
        probe in text(),
        expected_status in proptest::option::of(any::<u32>()),
    ) {
        use v1::health_check::Probe;
        let check = v1::HealthCheck {
            probe: match kind {
                0 => None,
                1 => Some(Probe::Http(probe)),
                2 => Some(Probe::Tcp(probe)),
                _ => Some(Probe::Script(probe)),
            },
            expected_status,
            ..Default::default()
        };
        if health::probe_of(&check).is_ok() {
            prop_assert!(check.probe.is_some());
            prop_assert!(matches!(check.probe, Some(Probe::Http(_))) || expected_status.is_none());
            prop_assert!(health::probe_text(&check).is_some());
        }
    }

    #[test]
    fn conditions_from_the_wire(raw in any::<i32>(), word in text()) {
        if let Ok(c) = DependencyCondition::from_wire(raw) {
            prop_assert_eq!(c.word().parse::<DependencyCondition>(), Ok(c));
        }
        if let Ok(c) = word.parse::<DependencyCondition>() {
            prop_assert_eq!(c.word(), word.as_str());
        }
    }

    /// Cycle detection and the start order agree with a naive reference
    /// (reachability by transitive closure) on small sets, with repeated
    /// names (the first one counts) and names outside the set.
    #[test]
    fn dependency_order_finds_a_cycle_iff_there_is_one(
        graph in (1..7usize).prop_flat_map(|n| (
            proptest::collection::vec(0..n + 2, n),
            proptest::collection::vec(proptest::collection::vec(0..n + 2, 0..4), n),
        ))
    ) {
        let (name_of, deps_of) = graph;
        let names: Vec<String> = (0..8).map(|i| format!("app{i}")).collect();
        let apps: Vec<DependencyNode<'_>> = name_of
            .iter()
            .zip(&deps_of)
            .map(|(&n, deps)| (names[n].as_str(), deps.iter().map(|&d| names[d].as_str()).collect()))
            .collect();
        let n = apps.len();
        // The reference: app i depends on the first app named as its entry.
        let first = |name: &str| apps.iter().position(|(a, _)| *a == name);
        let mut reach = vec![vec![false; n]; n];
        for (i, (_, deps)) in apps.iter().enumerate() {
            for d in deps.iter().filter_map(|d| first(d)) {
                reach[i][d] = true;
            }
        }
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    reach[i][j] |= reach[i][k] && reach[k][j];
                }
            }
        }
        let has_cycle = (0..n).any(|i| reach[i][i]);
        let edge = |i: usize, j: usize| apps[i].1.iter().any(|d| first(d) == Some(j));
        match dependency_order(&apps) {
            Err(cycle) => {
                prop_assert!(has_cycle, "cycle {} reported in an acyclic set", cycle);
                let ring = &cycle.apps;
                prop_assert!(ring.len() >= 2 && ring.first() == ring.last());
                for pair in ring.windows(2) {
                    prop_assert!(edge(pair[0], pair[1]), "{} is not a ring", cycle);
                }
                prop_assert_eq!(first(apps[ring[0]].1[cycle.entry]), Some(ring[1]));
                prop_assert!(dependency_levels(&apps).is_err());
            }
            Ok(order) => {
                prop_assert!(!has_cycle, "a cycle was missed");
                let mut sorted = order.clone();
                sorted.sort_unstable();
                prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
                let position = |i| order.iter().position(|&o| o == i);
                for i in 0..n {
                    for j in (0..n).filter(|&j| edge(i, j) && j != i) {
                        prop_assert!(position(j) < position(i));
                    }
                }
                let levels = dependency_levels(&apps).expect("no cycle, so levels");
                prop_assert_eq!(levels.iter().map(Vec::len).sum::<usize>(), n);
            }
        }
        let lenient: usize = dependency_levels_lenient(&apps).iter().map(Vec::len).sum();
        prop_assert_eq!(lenient, n);
    }
}
