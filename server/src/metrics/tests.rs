//! Sampling real processes: busy and idle CPU, memory summed over a
//! process tree, exits, restarts, and the sampling task's publishing.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::*;

const MIB: u64 = 1024 * 1024;

/// A Python program that touches 100 MiB and then sleeps.
const ALLOC_100_MIB: &str = "import time; b = bytes([120]) * (100 * 1024 * 1024); time.sleep(60)";

/// Processes started by one test. Each runs in its own process group,
/// which is SIGKILLed and reaped on drop (also when the test panics), so
/// no test leaves a busy loop or a grandchild behind.
#[derive(Default)]
struct Procs(Vec<Child>);

impl Procs {
    /// Starts `program` in a new process group and returns its pid.
    fn spawn(&mut self, program: &str, args: &[&str]) -> u32 {
        let child = Command::new(program)
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let pid = child.id();
        self.0.push(child);
        pid
    }

    fn sh(&mut self, script: &str) -> u32 {
        self.spawn("sh", &["-c", script])
    }

    /// Kills and reaps the process group led by `pid`.
    fn kill(&mut self, pid: u32) {
        if let Some(at) = self.0.iter().position(|c| c.id() == pid) {
            let mut child = self.0.remove(at);
            kill_and_reap(&mut child);
        }
    }
}

fn kill_and_reap(child: &mut Child) {
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            kill_and_reap(child);
        }
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, failing the test
/// with `what` after `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn one(sampler: &mut Sampler, pid: u32) -> Option<Sample> {
    sampler
        .sample(&[Target { id: 1, pid }])
        .samples
        .get(&1)
        .copied()
}

/// Two samples about half a second apart: the first has no CPU figure,
/// the second the CPU percentage over that interval. Also returns what the
/// kernel's own accounting (`/proc/PID/stat` utime + stime, in clock
/// ticks) says for the same window, as an independent reference.
fn cpu_over_half_a_second(pid: u32) -> (f64, f64) {
    let mut sampler = Sampler::new();
    let ticks_before = kernel_cpu_ticks(pid);
    let started = Instant::now();
    let first = one(&mut sampler, pid).expect("process is sampled");
    assert_eq!(first.cpu_percent, None, "a rate needs two samples");
    std::thread::sleep(Duration::from_millis(500));
    let ours = one(&mut sampler, pid)
        .expect("process is still sampled")
        .cpu_percent
        .expect("second sample has a CPU figure");
    let ticks = kernel_cpu_ticks(pid) - ticks_before;
    let clk_tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let kernel = ticks as f64 / clk_tck / started.elapsed().as_secs_f64() * 100.0;
    (ours, kernel)
}

/// utime + stime of `pid`, in clock ticks.
fn kernel_cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = text[text.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    // fields[0] is field 3 of stat; utime and stime are fields 14 and 15.
    fields[14 - 3].parse::<u64>().unwrap() + fields[15 - 3].parse::<u64>().unwrap()
}

/// The resident set size of `pid` in bytes, from `/proc/PID/statm`, as an
/// independent reference.
fn rss_of(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: u64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .unwrap()
        .unwrap() as u64;
    pages * page_size
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// A busy loop shows as the share of one core that the kernel accounted
/// to it. That share is most of a core on an idle machine, but it is
/// lower while other tests compete for the CPUs, so the reference is the
/// kernel's figure rather than a fixed number.
#[test]
fn busy_process_shows_its_share_of_a_core() {
    let mut procs = Procs::default();
    let pid = procs.sh("while :; do :; done");
    let (ours, kernel) = cpu_over_half_a_second(pid);
    println!("busy loop: sampled {ours:.1}% of a core, kernel accounted {kernel:.1}%");
    assert!(ours > 20.0, "busy loop at {ours:.1}% of a core");
    // Clock ticks are 10 ms, 2% of the window, read twice.
    assert!(
        (ours - kernel).abs() < 8.0,
        "sampled {ours:.1}% of a core, the kernel accounted {kernel:.1}%"
    );
}

/// A sleeping process shows as (almost) no CPU.
#[test]
fn sleeping_process_uses_almost_no_cpu() {
    let mut procs = Procs::default();
    let pid = procs.spawn("sleep", &["30"]);
    let (ours, _) = cpu_over_half_a_second(pid);
    assert!(ours < 5.0, "sleep at {ours:.1}% of a core");
}

/// Memory is the RSS in bytes.
#[test]
fn memory_is_resident_bytes() {
    let mut procs = Procs::default();
    let pid = procs.spawn("python3", &["-c", ALLOC_100_MIB]);
    let mut sampler = Sampler::new();
    let sample = wait_until("100 MiB resident", Duration::from_secs(20), || {
        one(&mut sampler, pid).filter(|s| s.memory_bytes >= 90 * MIB)
    });
    assert!(sample.memory_bytes < 300 * MIB, "{sample:?}");
    assert!(sample.at_ms > 0);
}

/// An instance is its leader plus descendants: a shell whose child
/// allocates reports the child's memory in the instance's sum.
#[test]
fn memory_is_summed_over_the_process_tree() {
    let mut procs = Procs::default();
    let leader = procs.sh(&format!("python3 -c \"{ALLOC_100_MIB}\" & wait"));
    let mut sampler = Sampler::new();
    let sample = wait_until(
        "the child's memory in the sum",
        Duration::from_secs(20),
        || one(&mut sampler, leader).filter(|s| s.memory_bytes >= 90 * MIB),
    );
    assert!(sample.processes >= 2, "{sample:?}");
    assert!(rss_of(leader) < 90 * MIB);
}

/// A child forked after its parent sat idle for some ticks is found: the
/// parent's CPU clock moves when it forks, which is what makes the sampler
/// look at its children again.
#[test]
fn child_forked_after_an_idle_spell_is_found() {
    let mut procs = Procs::default();
    let leader = procs.sh(&format!("sleep 1; python3 -c \"{ALLOC_100_MIB}\" & wait"));
    let mut sampler = Sampler::new();
    one(&mut sampler, leader).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    one(&mut sampler, leader).unwrap(); // the shell is waiting: idle
    wait_until("the late child's memory", Duration::from_secs(20), || {
        one(&mut sampler, leader).filter(|s| s.memory_bytes >= 90 * MIB)
    });
}

/// A process that did not run reads as idle (one syscall), and a reaped
/// one as gone; its identity fd no longer answers either.
#[test]
fn idle_and_reaped_processes_are_told_apart() {
    let mut procs = Procs::default();
    let pid = procs.spawn("sleep", &["30"]);
    let mut handle = procfs::ProcHandle::open(pid, true).unwrap();
    assert_eq!(handle.observe(), procfs::Observed::Ran);
    // `sleep` may still be starting up; once it sleeps, it stays idle.
    wait_until("sleep to sit idle", Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(50));
        (handle.observe() == procfs::Observed::Idle).then_some(())
    });
    assert_eq!(handle.cpu_delta_ns(), Some(0));
    assert!(handle.same_process());
    procs.kill(pid);
    assert_eq!(handle.observe(), procfs::Observed::Gone);
    assert!(!handle.same_process());
}

/// sysinfo is asked about the followed processes only, memory is re-read
/// for an idle process when it is due, and sysinfo's table does not keep
/// processes that are no longer followed.
#[test]
fn sysinfo_holds_only_followed_processes() {
    let mut procs = Procs::default();
    let pids: Vec<u32> = (0..3).map(|_| procs.spawn("sleep", &["30"])).collect();
    let targets: Vec<Target> = pids
        .iter()
        .zip(1..)
        .map(|(&pid, id)| Target { id, pid })
        .collect();
    let mut sampler = Sampler::new();
    let snapshot = sampler.sample(&targets);
    assert_eq!(sampler.sysinfo_processes(), 3, "no full refresh");
    for sample in snapshot.samples.values() {
        assert!(sample.memory_bytes > 0, "{sample:?}");
    }
    // Once the sleeps sit idle, a due re-read still gives their memory.
    sampler.set_memory_every(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(100));
    sampler.sample(&targets);
    let snapshot = sampler.sample(&targets);
    assert_eq!(snapshot.samples.len(), 3);
    for (id, sample) in &snapshot.samples {
        let pid = targets[*id as usize - 1].pid;
        let reference = rss_of(pid);
        assert!(
            sample.memory_bytes.abs_diff(reference) <= 64 * 1024,
            "{sample:?} vs statm {reference}"
        );
    }
    // A reaped process leaves sysinfo's table with the next tick.
    procs.kill(pids[0]);
    sampler.sample(&targets);
    assert_eq!(sampler.sysinfo_processes(), 2);
    // Live processes that are no longer targeted are dropped by a rebuild
    // once they are too many (here, leaders of instances restarted many
    // times over).
    for round in 0..100 {
        let pid = procs.spawn("sleep", &["30"]);
        sampler.sample(&[Target { id: 9, pid }]);
        if round % 10 == 9 {
            for pid in procs.0.iter().skip(3).map(Child::id).collect::<Vec<_>>() {
                procs.kill(pid);
            }
        }
    }
    // Without the rebuild, it would hold the 100 leaders and 2 sleeps.
    assert_eq!(sampler.followed_processes(), 1);
    assert!(
        sampler.sysinfo_processes() <= 2 + 64,
        "sysinfo keeps {} processes",
        sampler.sysinfo_processes()
    );
}

/// A descendant that was seen once stays counted after its parent exits
/// and it is reparented out of the instance's tree.
#[test]
fn reparented_descendant_stays_counted() {
    let mut procs = Procs::default();
    // The inner shell starts the allocating child, then exits after 3 s.
    let leader = procs.sh(&format!(
        "sh -c 'python3 -c \"{ALLOC_100_MIB}\" & sleep 3'; sleep 60"
    ));
    let mut sampler = Sampler::new();
    wait_until("the grandchild's memory", Duration::from_secs(3), || {
        one(&mut sampler, leader).filter(|s| s.memory_bytes >= 90 * MIB)
    });
    let python = sampler
        .followed_pids(1)
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("python"))
        })
        .expect("the python grandchild is followed");
    let first_parent = parent_of(python).unwrap();
    wait_until("the inner shell to exit", Duration::from_secs(10), || {
        (parent_of(python)? != first_parent).then_some(())
    });
    let sample = one(&mut sampler, leader).unwrap();
    assert!(sample.memory_bytes >= 90 * MIB, "{sample:?}");
}

/// Children forked by a thread other than the main one are found by the
/// thread sweep (the kernel lists them under the forking thread).
#[test]
fn children_of_other_threads_are_found() {
    let mut procs = Procs::default();
    let script = "import subprocess, threading, time\n\
                  t = threading.Thread(target=lambda: subprocess.run(['sleep', '60']))\n\
                  t.start(); t.join()";
    let pid = procs.spawn("python3", &["-c", script]);
    let mut sampler = Sampler::new();
    sampler.set_thread_sweep_every(Duration::ZERO);
    wait_until("the thread's child", Duration::from_secs(20), || {
        one(&mut sampler, pid).filter(|s| s.processes >= 2)
    });
}

/// A target whose process exited disappears from the snapshot, and the
/// sampler lets go of it. A pid that never existed is simply absent.
#[test]
fn exited_target_disappears() {
    let mut procs = Procs::default();
    let gone = procs.spawn("sleep", &["30"]);
    let stays = procs.spawn("sleep", &["30"]);
    let targets = [Target { id: 1, pid: gone }, Target { id: 2, pid: stays }];
    let mut sampler = Sampler::new();
    let snapshot = sampler.sample(&targets);
    assert_eq!(snapshot.samples.len(), 2);
    assert_eq!(sampler.followed_processes(), 2);

    procs.kill(gone);
    let snapshot = sampler.sample(&targets);
    assert!(!snapshot.samples.contains_key(&1));
    assert!(snapshot.samples[&2].cpu_percent.is_some());
    assert_eq!(sampler.followed_processes(), 1);

    let snapshot = sampler.sample(&[Target { id: 3, pid: gone }, Target { id: 4, pid: 0 }]);
    assert!(snapshot.samples.is_empty());
    assert_eq!(
        sampler.followed_processes(),
        0,
        "untargeted instances are forgotten"
    );
}

/// A new leader pid for the same instance (a restart) starts over: no CPU
/// figure on its first sample.
#[test]
fn restart_starts_a_new_rate() {
    let mut procs = Procs::default();
    let before = procs.spawn("sleep", &["30"]);
    let after = procs.spawn("sleep", &["30"]);
    let mut sampler = Sampler::new();
    one(&mut sampler, before).unwrap();
    assert!(one(&mut sampler, before).unwrap().cpu_percent.is_some());
    assert_eq!(one(&mut sampler, after).unwrap().cpu_percent, None);
    assert_eq!(sampler.followed_processes(), 1);
}

/// The task publishes one snapshot per interval, the first without CPU,
/// and ends when its owner is gone, dropping the sender, which ends every
/// reader.
#[tokio::test]
async fn sampler_task_publishes_each_interval() {
    let mut procs = Procs::default();
    let pid = procs.spawn("sleep", &["30"]);
    let (tx, mut rx) = channel();
    let owner = Arc::new(());
    let weak = Arc::downgrade(&owner);
    let task = spawn_sampler(
        MIN_INTERVAL,
        move || weak.upgrade().map(|_| vec![Target { id: 7, pid }]),
        tx,
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("a snapshot within 10 s")
            .expect("sender alive");
        seen.push((Instant::now(), rx.borrow_and_update().clone()));
    }
    assert_eq!(seen[0].1.samples[&7].cpu_percent, None);
    assert!(seen[2].1.samples[&7].cpu_percent.is_some());
    assert!(seen[0].1.at_ms < seen[2].1.at_ms);
    // Ticks are at least MIN_INTERVAL apart (less some receive latency).
    assert!(seen[2].0 - seen[0].0 >= 2 * MIN_INTERVAL - Duration::from_millis(100));

    drop(owner);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task ends within an interval")
        .unwrap();
    assert!(rx.changed().await.is_err(), "the sender is dropped");
}

/// With nothing to sample, the task publishes nothing. A callback that
/// returns a plain `Vec` is accepted too (the task then runs until the
/// runtime stops).
#[tokio::test]
async fn idle_sampler_publishes_nothing() {
    let (tx, rx) = channel();
    let task = spawn_sampler(MIN_INTERVAL, Vec::new, tx);
    tokio::time::sleep(3 * MIN_INTERVAL).await;
    assert!(!rx.has_changed().unwrap());
    task.abort();
}

/// Prints (does not assert) what one tick costs for 50 idle apps. Run in
/// release mode, one test at a time, for meaningful numbers:
/// `cargo test --release -p pmdaemond metrics::tests::cost -- --nocapture --test-threads=1`
/// (add `--include-ignored` for the 10 s measurement).
#[test]
fn cost_of_one_tick_for_50_idle_processes() {
    let mut procs = Procs::default();
    let targets = fifty_instances(&mut procs, 0);
    let mut sampler = Sampler::new();
    let cold = Instant::now();
    assert_eq!(sampler.sample(&targets).samples.len(), 50);
    let cold = cold.elapsed();
    // Steady state: no thread sweep (that runs every THREAD_SWEEP_EVERY).
    // Few rounds in debug builds: the numbers mean little there, and this
    // must not starve the CPU tests running alongside.
    let rounds: u32 = if cfg!(debug_assertions) { 3 } else { 200 };
    let warm = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(sampler.sample(&targets));
    }
    let warm = warm.elapsed() / rounds;
    sampler.set_thread_sweep_every(Duration::ZERO);
    let sweep = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(sampler.sample(&targets));
    }
    let sweep = sweep.elapsed() / rounds;
    // Every process due for its periodic memory re-read: all 50 go
    // through sysinfo (what happens once every STATM_EVERY).
    sampler.set_thread_sweep_every(THREAD_SWEEP_EVERY);
    sampler.set_memory_every(Duration::ZERO);
    let due = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(sampler.sample(&targets));
    }
    let due = due.elapsed() / rounds;
    println!(
        "metrics: one tick for 50 idle processes: first {cold:?}, steady {warm:?} \
         ({:?} per process), with thread sweep {sweep:?}, with all memory re-reads \
         due {due:?} ({:?} per process)",
        warm / 50,
        due / 50
    );
}

/// CPU time used by the calling thread so far (user + system).
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Starts 50 instances, `busy` of them a busy loop and the others `sleep`.
fn fifty_instances(procs: &mut Procs, busy: u32) -> Vec<Target> {
    (0..50)
        .map(|id| Target {
            id,
            pid: if id < busy {
                procs.sh("while :; do :; done")
            } else {
                procs.spawn("sleep", &["120"])
            },
        })
        .collect()
}

/// Prints (does not assert) what one tick costs for 45 idle apps and 5
/// busy ones, in wall time and in the sampling thread's CPU time (the
/// busy loops compete for the cores, so wall time includes preemption).
/// Release builds only: in debug builds, busy loops would slow the other
/// tests down for nothing.
#[test]
fn cost_of_one_tick_with_5_busy_processes() {
    if cfg!(debug_assertions) {
        println!("metrics: busy-tick cost is measured in release builds only");
        return;
    }
    let mut procs = Procs::default();
    let targets = fifty_instances(&mut procs, 5);
    let mut sampler = Sampler::new();
    assert_eq!(sampler.sample(&targets).samples.len(), 50);
    std::thread::sleep(Duration::from_millis(200));
    let rounds = 200u32;
    let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        // Let the busy loops run between ticks, as they do between real ones.
        std::thread::sleep(Duration::from_millis(2));
        let (wall_before, cpu_before) = (Instant::now(), thread_cpu());
        std::hint::black_box(sampler.sample(&targets));
        cpu += thread_cpu() - cpu_before;
        wall += wall_before.elapsed();
    }
    println!(
        "metrics: one tick for 45 idle + 5 busy processes: {:?} wall, {:?} CPU",
        wall / rounds,
        cpu / rounds
    );
}

/// Prints (does not assert) the sampling thread's CPU time over 10 s of
/// sampling at the default 1 s interval (11 ticks, at 0 s .. 10 s, the
/// first one cold), for 50 idle apps and for 45 idle + 5 busy ones. Takes
/// 22 s, so it is ignored by default:
/// `cargo test --release -p pmdaemond metrics::tests::cost -- --nocapture --include-ignored`.
/// `PMD_METRICS_COST_SECONDS=30` measures 30 s instead (the daemon's
/// budget window, which holds one periodic memory re-read of every
/// process, see [`STATM_EVERY`]).
#[test]
#[ignore = "takes 22 s; run with --include-ignored in release mode"]
fn cost_of_10_seconds_at_1_s() {
    let seconds: u32 = std::env::var("PMD_METRICS_COST_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for busy in [0, 5] {
        let mut procs = Procs::default();
        let targets = fifty_instances(&mut procs, busy);
        let mut sampler = Sampler::new();
        let mut ticks = Vec::new();
        let started = Instant::now();
        for tick in 0..=seconds {
            let due = started + DEFAULT_INTERVAL * tick;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let cpu = thread_cpu();
            std::hint::black_box(sampler.sample(&targets));
            ticks.push(thread_cpu() - cpu);
        }
        let total: Duration = ticks.iter().sum();
        let max = ticks[1..].iter().max().unwrap();
        println!(
            "metrics: {seconds} s at 1 s, 50 apps ({busy} busy): sampler CPU {total:?}, \
             {:?} without the first tick ({:?}); slowest later tick {max:?}; ticks {:?}",
            total - ticks[0],
            ticks[0],
            ticks.iter().map(|t| t.as_micros()).collect::<Vec<_>>(),
        );
    }
}
