//! Several instances of one app (issue #3): `pmd start -i N`, addressing
//! all instances by name and one by id, and `pmd scale`.

use std::collections::BTreeSet;

use pmdaemon_tests::*;

use crate::said;

/// The `id` of each entry.
fn ids_of(apps: &[serde_json::Value]) -> Vec<u64> {
    apps.iter().map(|a| a["id"].as_u64().unwrap()).collect()
}

/// `-i 3` runs three processes, each its own row with its own id and pid,
/// `instance` 0, 1, 2, and `PMD_INSTANCE_ID` / `NODE_APP_INSTANCE` set to
/// that index in its environment.
#[test]
fn instances_flag_runs_n_processes_with_their_index() {
    let d = TestDaemon::start();
    d.pmd_ok(&[
        "start", "sleep", "--name", "trio", "-i", "3", "--", "100000",
    ]);
    let trio = d.wait_instances_online("trio", 3);
    let pids = pids_of(&trio);
    let ids = ids_of(&trio);
    assert_eq!(pids.iter().collect::<BTreeSet<_>>().len(), 3, "{pids:?}");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3, "{ids:?}");
    for (index, (row, pid)) in trio.iter().zip(&pids).enumerate() {
        assert_eq!(row["instance"], index, "{row}");
        assert!(pid_alive(*pid));
        let env = env_of(*pid);
        assert_eq!(env["PMD_INSTANCE_ID"], index.to_string(), "pid {pid}");
        assert_eq!(env["NODE_APP_INSTANCE"], index.to_string(), "pid {pid}");
    }
    let mut running = d.app_pids();
    running.sort_unstable();
    let mut expected = pids.clone();
    expected.sort_unstable();
    assert_eq!(running, expected);
}

/// An id addresses one instance (`pmd stop ID`, `pmd restart ID`); the
/// name addresses all of them (`pmd stop NAME`, `pmd start NAME`).
#[test]
fn a_name_addresses_every_instance_and_an_id_one() {
    let d = TestDaemon::start();
    d.pmd_ok(&[
        "start", "sleep", "--name", "herd", "-i", "3", "--", "100000",
    ]);
    let herd = d.wait_instances_online("herd", 3);
    let pids = pids_of(&herd);
    let ids = ids_of(&herd);

    d.pmd_ok(&["stop", &ids[1].to_string()]);
    let now = d.instances("herd");
    assert_eq!(now[1]["status"], "stopped", "{now:#?}");
    assert!(!pid_alive(pids[1]));
    assert_eq!(now[0]["pid"], pids[0], "{now:#?}");
    assert_eq!(now[2]["pid"], pids[2], "{now:#?}");

    d.pmd_ok(&["restart", &ids[0].to_string()]);
    let now = wait_for_value("instance 0 online with a new pid", WAIT, || {
        let now = d.instances("herd");
        (now[0]["status"] == "online" && pid_of(&now[0]).is_some_and(|p| p != pids[0]))
            .then_some(now)
    });
    assert_eq!(now[1]["status"], "stopped", "{now:#?}");
    assert_eq!(now[2]["pid"], pids[2], "instance 2 was restarted too");

    d.pmd_ok(&["stop", "herd"]);
    let now = d.instances("herd");
    assert_eq!(now.len(), 3);
    assert!(now.iter().all(|a| a["status"] == "stopped"), "{now:#?}");
    wait_for("every instance to be gone", WAIT, || {
        d.app_pids().is_empty()
    });

    d.pmd_ok(&["start", "herd"]);
    let back = d.wait_instances_online("herd", 3);
    assert_eq!(ids_of(&back), ids, "ids changed");
}

/// `pmd scale` grows an app (new instances get the next indexes, running
/// ones are untouched) and shrinks it from the highest index down; the
/// count survives a daemon restart.
#[test]
fn scale_grows_shrinks_from_the_top_and_persists() {
    let mut d = TestDaemon::start();
    d.pmd_ok(&[
        "start", "sleep", "--name", "flock", "-i", "2", "--", "100000",
    ]);
    let first = d.wait_instances_online("flock", 2);

    d.pmd_ok(&["scale", "flock", "4"]);
    let grown = d.wait_instances_online("flock", 4);
    assert_eq!(
        pids_of(&grown[..2]),
        pids_of(&first),
        "running ones were touched"
    );
    assert_eq!(ids_of(&grown[..2]), ids_of(&first));
    for (index, row) in grown.iter().enumerate() {
        assert_eq!(row["instance"], index, "{row}");
        assert_eq!(
            env_of(pid_of(row).unwrap())["PMD_INSTANCE_ID"],
            index.to_string()
        );
    }

    d.pmd_ok(&["scale", "flock", "1"]);
    let shrunk = d.wait_instances_online("flock", 1);
    assert_eq!(shrunk[0]["instance"], 0, "{shrunk:#?}");
    assert_eq!(shrunk[0]["id"], first[0]["id"], "{shrunk:#?}");
    assert_eq!(
        pid_of(&shrunk[0]),
        pid_of(&first[0]),
        "instance 0 was replaced"
    );
    let removed = pids_of(&grown[1..]);
    wait_for("the removed instances to be gone", WAIT, || {
        removed.iter().all(|&p| !pid_alive(p))
    });

    d.pmd_ok(&["scale", "flock", "3"]);
    d.wait_instances_online("flock", 3);
    d.restart_daemon();
    let after = d.wait_instances_online("flock", 3);
    let indexes: Vec<_> = after.iter().map(|a| a["instance"].clone()).collect();
    assert_eq!(indexes, [0, 1, 2]);
    wait_for("exactly three processes", WAIT, || d.app_pids().len() == 3);
}

/// Deleting one instance by id keeps the instance numbers (which ports
/// and PMD_INSTANCE_ID follow) without gaps: a middle instance is refused
/// with a message pointing at `pmd scale`, and nothing changes; the highest
/// one goes and the app's count drops with it, so a later `scale` adds the
/// missing number again, on its own port.
#[test]
fn deleting_one_instance_by_id_keeps_the_numbering_whole() {
    let d = TestDaemon::start();
    let base = free_ports(3);
    let range = format!("{base}-{}", base + 2);
    d.pmd_ok(&[
        "start", "sleep", "--name", "trio", "-i", "3", "--port", &range, "--", "100000",
    ]);
    let trio = d.wait_instances_online("trio", 3);
    let ids = ids_of(&trio);

    let out = d.pmd_code(1, &["delete", &ids[1].to_string()]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("pmd scale trio 2"), "{text}");
    assert!(!text.contains("  "), "ragged message: {text}");
    assert_eq!(
        ids_of(&d.instances("trio")),
        ids,
        "a refused delete changed the app"
    );
    assert_eq!(pids_of(&d.instances("trio")), pids_of(&trio));

    d.pmd_ok(&["delete", &ids[2].to_string()]);
    let pair = d.instances("trio");
    assert_eq!(ids_of(&pair), ids[..2], "{pair:#?}");
    let desc = d.describe_json("trio");
    assert!(
        desc.to_string().contains("\"instances\":2"),
        "the app's count did not drop: {desc}"
    );

    d.pmd_ok(&["scale", "trio", "3"]);
    let again = d.wait_instances_online("trio", 3);
    let indexes: Vec<_> = again.iter().map(|a| a["instance"].clone()).collect();
    assert_eq!(indexes, [0, 1, 2], "{again:#?}");
    let ports: BTreeSet<_> = again.iter().map(|a| a["port"].as_u64().unwrap()).collect();
    assert_eq!(ports.len(), 3, "two instances share a port: {again:#?}");

    // A bulk delete by status keeps a middle instance (saying why) and
    // deletes the rest.
    let ids = ids_of(&again);
    d.pmd_ok(&["start", "sleep", "--name", "lone", "--", "100000"]);
    d.wait_online("lone");
    d.pmd_ok(&["stop", "lone"]);
    d.pmd_ok(&["stop", &ids[1].to_string()]);
    d.wait_status("lone", "stopped");
    let out = d.pmd_code(0, &["delete", "--status", "stopped"]);
    let text = said(&out);
    assert!(
        text.contains("not deleted") && text.contains("trio"),
        "{text}"
    );
    assert!(d.app("lone").is_none(), "the stopped app was not deleted");
    assert_eq!(ids_of(&d.instances("trio")), ids);

    // Ids given together go highest first: no gap on the way.
    d.pmd_ok(&["delete", &ids[1].to_string(), &ids[2].to_string()]);
    assert_eq!(ids_of(&d.instances("trio")), ids[..1]);
}

/// `instances:` in an ecosystem file runs that many instances; `max` runs
/// one per CPU.
#[test]
fn instances_in_a_file_including_max() {
    let d = TestDaemon::start();
    let file = d.write_file(
        "apps.yaml",
        "apps:\n  - name: pair\n    script: sleep\n    args: \"100000\"\n    instances: 2\n  \
         - name: wide\n    script: sleep\n    args: \"100000\"\n    instances: max\n",
    );
    d.pmd_ok(&["start", arg(&file)]);
    d.wait_instances_online("pair", 2);
    // The CPUs this process may use, or all online CPUs (as PM2 counts).
    let usable = std::thread::available_parallelism().unwrap().get();
    let online = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let wide = wait_for_value("every instance of `wide` online", WAIT, || {
        let rows = d.instances("wide");
        (!rows.is_empty() && rows.iter().all(|a| a["status"] == "online")).then_some(rows)
    });
    assert!(
        wide.len() == usable || wide.len() == online,
        "instances: max gave {} instances on {usable} usable / {online} online CPUs",
        wide.len()
    );
}

/// Two `pmd scale` at once run one after the other: the app ends with the
/// count one of them asked for, and its saved count says the same.
#[test]
fn concurrent_scales_do_not_interleave() {
    let d = TestDaemon::start();
    d.pmd_ok(&[
        "start", "sleep", "--name", "flux", "-i", "3", "--", "100000",
    ]);
    d.wait_instances_online("flux", 3);
    let children: Vec<_> = ["6", "1"]
        .iter()
        .map(|n| d.pmd_command(&["scale", "flux", n]).spawn().unwrap())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    let instances = d.instances("flux");
    let count = instances.len();
    assert!(count == 6 || count == 1, "{count} instances");
    let saved = d.describe_json("flux");
    assert!(
        saved
            .to_string()
            .contains(&format!("\"instances\":{count}")),
        "saved count differs from {count}: {saved}"
    );
    let indexes: BTreeSet<_> = instances
        .iter()
        .map(|i| i["instance"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes.len(), count);
}

/// Scaling up keeps clear of a `--port` override of a running instance,
/// and a stopped app grows stopped.
#[test]
fn scale_keeps_clear_of_overrides_and_follows_a_stopped_app() {
    let d = TestDaemon::start();
    let base = free_ports(4);
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "xs",
        "--port",
        &format!("auto:{base}-{}", base + 3),
        "--",
        "100000",
    ]);
    d.wait_online("xs");
    d.pmd_ok(&["restart", "xs", "--port", &(base + 1).to_string()]);
    d.wait_online("xs");
    d.pmd_ok(&["scale", "xs", "2"]);
    let xs = d.wait_instances_online("xs", 2);
    let ports: BTreeSet<_> = xs.iter().map(|i| i["port"].as_u64().unwrap()).collect();
    assert_eq!(ports.len(), 2, "two instances share a port: {xs:#?}");

    d.pmd_ok(&["stop", "xs"]);
    d.pmd_ok(&["scale", "xs", "3"]);
    let all = d.instances("xs");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|i| i["status"] == "stopped"), "{all:#?}");
}
