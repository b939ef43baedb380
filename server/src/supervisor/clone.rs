//! Starting an app directly in its run's cgroup: the raw `clone3` syscall
//! with `CLONE_INTO_CGROUP`, and the child's steps from the clone to its
//! exec. Holds nothing but the once-made decision whether this kernel can
//! do it; `process.rs` calls [`spawn`] for a run that has a cgroup, and
//! falls back to posix_spawn and a move into the cgroup when it cannot.
//!
//! Why: a process started outside its cgroup and moved in afterwards
//! leaves an instant in which what it forks stays outside, and a move
//! waits for the kernel (the cgroup threadgroup rwsem, an RCU sync) on the
//! respawn path. Started in it, the child and everything it ever forks are
//! members from their first instruction.
//!
//! On x86_64 the child shares the daemon's memory (`CLONE_VM`) and runs on
//! a stack of its own until its exec, as glibc's posix_spawn's child does,
//! so a spawn costs the same whatever the daemon's size; a few
//! instructions of assembly switch to it, since clone3 returns in the
//! child on the new stack. Elsewhere the clone has fork semantics (no
//! `CLONE_VM`): the child returns on its own copy of the stack, at the
//! price of a copy of the daemon's page tables. `CLONE_VFORK` makes the
//! calling thread wait until the child has exec'ed or exited, as
//! posix_spawn does, and `CLONE_PIDFD` hands back the pidfd the exit is
//! awaited on.
//!
//! The child is a copy of one thread of a multithreaded process: until its
//! exec it only makes syscalls, raw or through glibc's thin
//! async-signal-safe wrappers, on data prepared before the clone. It never allocates, takes
//! a lock, panics, or calls anything that reads glibc's cached thread id.
//! Its steps are those of glibc's posix_spawn with the attributes and file
//! actions `process.rs` gives it, in glibc's order: default dispositions
//! for every signal (glibc's two internal ones too, which posix_spawn
//! leaves ignored), its own process group, stdin/stdout/stderr (and the
//! IPC channel as fd 3 when the app has one), the cwd,
//! then (instead of the prlimit after posix_spawn) the app's open-file
//! limit, an empty signal mask, execve. A failing step sends its errno
//! through a close-on-exec pipe and exits 127; the parent returns that
//! errno as posix_spawn would have.

use std::ffi::{CStr, CString, c_char, c_int};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::libc;

/// `struct clone_args` of `linux/sched.h` up to `cgroup`
/// (`CLONE_ARGS_SIZE_VER2`, Linux 5.7). Defined here: libc has it for some
/// targets only; every field is a u64 on every architecture.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const _: () = assert!(size_of::<CloneArgs>() == 88);

/// libc declares it as a c_int, which its value does not fit in.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Set once clone3 with these flags was refused as unknown: the daemon
/// then moves children in after posix_spawn for the rest of its life.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Whether [`spawn`] is worth trying (it has not found the kernel lacking).
pub fn available() -> bool {
    !UNSUPPORTED.load(Ordering::Relaxed)
}

/// What to run, as posix_spawn takes it.
pub struct Exec<'a> {
    pub program: &'a CStr,
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    pub cwd: &'a CStr,
    /// stdin, stdout, stderr of the child.
    pub stdio: [BorrowedFd<'a>; 3],
    /// The app's end of its IPC channel, which becomes its fd 3
    /// (`ipc.rs`).
    pub channel: Option<BorrowedFd<'a>>,
    /// The open-file limit to give the app (soft, hard), when it is not
    /// the daemon's.
    pub nofile: Option<(u64, u64)>,
}

/// A child started in its cgroup.
pub struct Started {
    pub pid: u32,
    pub pidfd: OwnedFd,
}

#[derive(Debug)]
pub enum Failure {
    /// The kernel has no clone3 or no `CLONE_INTO_CGROUP` (ENOSYS, EINVAL,
    /// E2BIG before Linux 5.7); [`available`] says no from now on.
    Unsupported(io::Error),
    /// clone3 failed for this spawn (the cgroup refused the child, a
    /// resource ran out): posix_spawn may still start it.
    Clone(io::Error),
    /// The spawn failed as posix_spawn's would: the child's error before
    /// its exec (ENOENT, EACCES, ENOEXEC, a bad cwd), or no pipe for it.
    Spawn(io::Error),
}

/// Starts `exec` as a member of the cgroup whose directory is `cgroup`
/// (opened O_RDONLY | O_DIRECTORY), in a process group of its own.
pub fn spawn(exec: &Exec<'_>, cgroup: BorrowedFd<'_>) -> Result<Started, Failure> {
    // Everything the child touches, built now: it may not allocate.
    let argv = pointers(exec.argv);
    let envp = pointers(exec.envp);
    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Failure::Spawn(e.into()))?;
    let last_signal = libc::SIGRTMAX();
    let child = Child {
        program: exec.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: exec.cwd.as_ptr(),
        stdio: exec.stdio.map(|fd| fd.as_raw_fd()),
        channel: exec.channel.map_or(-1, |fd| fd.as_raw_fd()),
        nofile: exec.nofile.map(|(soft, hard)| libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        }),
        last_signal,
        // The kernel's sigset_t: one bit per signal (_NSIG / 8 bytes).
        sigset_size: usize::try_from(last_signal + 1).unwrap_or(0) / 8,
        report: report_w.as_raw_fd(),
    };
    let mut pidfd: c_int = -1;
    let args = CloneArgs {
        flags: (libc::CLONE_PIDFD | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        pidfd: std::ptr::addr_of_mut!(pidfd).expose_provenance() as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(cgroup.as_raw_fd()).unwrap_or(u64::MAX),
        ..CloneArgs::default()
    };

    // Every signal blocked across the clone, as posix_spawn does: the
    // child starts with the daemon's handlers installed (a handler of the
    // runtime's would write to the daemon's own signal pipe) until it has
    // reset them.
    // SAFETY: sigset_t is plain data; sigfillset initialises it, and
    // pthread_sigmask gets valid pointers for both sets.
    let old_mask = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let ret = clone3(args, &child);
    let clone_error = (ret < 0).then(io::Error::last_os_error);
    // SAFETY: `old_mask` is the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
    if let Some(e) = clone_error {
        return Err(match e.raw_os_error() {
            Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG) => {
                UNSUPPORTED.store(true, Ordering::Relaxed);
                Failure::Unsupported(e)
            }
            _ => Failure::Clone(e),
        });
    }
    let pid = ret as libc::pid_t;
    // SAFETY: with CLONE_PIDFD a successful clone3 stored a fresh pidfd
    // in `pidfd`, which nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The child has exec'ed or exited (CLONE_VFORK): its end of the pipe
    // is closed either way, once ours is.
    drop(report_w);
    match read_report(&report_r) {
        None => Ok(Started {
            pid: pid.unsigned_abs(),
            pidfd,
        }),
        Some(errno) => {
            reap(pid);
            Err(Failure::Spawn(io::Error::from_raw_os_error(errno)))
        }
    }
}

/// Size of the stack the child runs on until its exec (with `CLONE_VM`):
/// its steps are a few syscalls; glibc's posix_spawn gives its child about
/// as much.
#[cfg(target_arch = "x86_64")]
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// Clones with `args`, the child running [`run_child`] on `child`;
/// returns what clone3 returned in the parent.
///
/// On x86_64 the child shares the daemon's memory (`CLONE_VM`, as glibc's
/// posix_spawn does) and runs on a stack of its own until its exec, so no
/// page table is copied and nothing of the daemon becomes copy-on-write:
/// the spawn costs the same whatever the daemon's size. clone3 returns in
/// the child on that new stack, where no Rust frame of the parent exists,
/// so the switch to [`child_entry`] is a few instructions of assembly.
/// Elsewhere the clone has fork semantics (a copy of the address space;
/// the child returns normally), which costs a page-table copy.
#[cfg(target_arch = "x86_64")]
fn clone3(mut args: CloneArgs, child: &Child) -> libc::c_long {
    // A mapping of its own, as glibc's posix_spawn makes: only the few
    // pages the child touches become resident, and they are gone with the
    // munmap below. (A zeroed heap buffer cost 64 KiB of resident heap per
    // spawn, fragmented: 8 MB more with 300 apps.)
    // SAFETY: an anonymous private mapping of a fresh range; checked below.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            CHILD_STACK_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return -1; // errno is mmap's
    }
    args.flags |= libc::CLONE_VM as u64;
    // Page-aligned, so the top is 16-byte aligned as the ABI wants at a call.
    args.stack = stack.expose_provenance() as u64;
    args.stack_size = CHILD_STACK_BYTES as u64;
    let ret: libc::c_long;
    // SAFETY: `args` is a valid clone_args of the size given, whose
    // pointers (pidfd, stack) point at live memory that outlives the
    // child's use of it: with CLONE_VFORK this thread is suspended until
    // the child exec'ed or exited, and the stack, `child` and everything
    // `child` points into are released only after that. In the child (rax
    // = 0) the kernel switched to the new stack; the code only moves
    // `child` into the first argument register and calls `child_entry`,
    // which never returns (ud2 traps if it did). The parent falls through
    // with rax = the pid or -errno; the syscall clobbers rcx and r11.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call {entry}",
            "ud2",
            "2:",
            entry = sym child_entry,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::addr_of!(args),
            in("rsi") size_of::<CloneArgs>(),
            in("r12") std::ptr::from_ref(child),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    // SAFETY: the mapping made above; the child exec'ed or exited
    // (CLONE_VFORK), so nothing runs on it any more.
    unsafe { libc::munmap(stack, CHILD_STACK_BYTES) };
    if ret < 0 {
        // The raw syscall returns -errno; callers read it as errno.
        // SAFETY: __errno_location is this thread's errno.
        unsafe { *libc::__errno_location() = (-ret) as c_int };
        return -1;
    }
    ret
}

/// The child's first frame on its own stack (x86_64, `CLONE_VM`).
#[cfg(target_arch = "x86_64")]
extern "C" fn child_entry(child: *const Child) -> ! {
    // SAFETY: called only by `clone3` in the child, with the `Child`
    // the suspended parent keeps alive, and every signal blocked.
    unsafe { run_child(&*child) }
}

#[cfg(not(target_arch = "x86_64"))]
fn clone3(args: CloneArgs, child: &Child) -> libc::c_long {
    // SAFETY: `args` is a valid clone_args of the size given, whose
    // pointer field (pidfd) points at a live c_int. Without CLONE_VM the
    // child runs on a copy of this address space, so it can return here
    // and read `child` (and the strings and arrays it points into, all
    // alive until this function returns) in its own copy; the parent is
    // suspended until the child exec'ed or exited (CLONE_VFORK).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // SAFETY: this is the child of the clone above, on its own copy of
        // the memory, with every signal blocked.
        unsafe { run_child(child) }
    }
    ret
}

/// A NULL-terminated array of pointers to `strings`, as execve takes it.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The errno the child sent before it exited, or None when it exec'ed.
fn read_report(pipe: &OwnedFd) -> Option<c_int> {
    let mut buf = [0u8; size_of::<c_int>()];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(pipe, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    // A partial report cannot come from a 4-byte write to an empty pipe.
    (got == buf.len()).then(|| c_int::from_ne_bytes(buf))
}

/// Reaps a child that failed before its exec.
fn reap(pid: libc::pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc != -1 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// What the child needs, as raw values and pointers into memory the
/// parent keeps alive until the child exec'ed or exited.
struct Child {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    cwd: *const c_char,
    stdio: [RawFd; 3],
    /// The app's end of its IPC channel, or -1.
    channel: RawFd,
    nofile: Option<libc::rlimit>,
    /// The highest signal number (SIGRTMAX).
    last_signal: c_int,
    /// The size of the kernel's sigset_t, as rt_sigaction takes it.
    sigset_size: usize,
    /// The close-on-exec pipe the errno of a failed step goes to.
    report: RawFd,
}

/// The child's steps, posix_spawn's order. Only syscalls, raw or through
/// glibc's thin async-signal-safe wrappers, on `c`'s prepared values.
///
/// # Safety
///
/// Only in the child of [`clone3`], with `c` built by [`spawn`] and every
/// signal blocked.
unsafe fn run_child(c: &Child) -> ! {
    // SAFETY (whole function): the child is single-threaded and runs
    // either on its own copy of the memory (fork semantics) or, with
    // CLONE_VM, on the daemon's memory while the thread that cloned it is
    // suspended: it only reads `c`, writes its own stack and that
    // thread's errno, and its signal dispositions are its own (no
    // CLONE_SIGHAND). Every pointer in `c` points at a NUL-terminated
    // string or a NULL-terminated array of them, alive until the exec;
    // each call below is a syscall wrapper that neither allocates nor
    // locks.
    unsafe {
        // Default disposition for every signal: an exec resets handled
        // signals but keeps ignored ones (the daemon ignores SIGPIPE), and
        // a handler must not run in this child before the exec.
        // posix_spawn's SETSIGDEF with a full set does the same. Raw
        // rt_sigaction, since glibc's sigaction refuses its two internal
        // signals, which the daemon may have inherited ignored. An all-zero
        // kernel sigaction is SIG_DFL, no flags, an empty mask, whatever
        // the architecture's layout (none is larger than this buffer).
        // SIGKILL and SIGSTOP refuse (EINVAL), with nothing to reset.
        let default = [0u64; 8];
        let mut signal = 1;
        while signal <= c.last_signal {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                c.sigset_size,
            );
            signal += 1;
        }
        if libc::setpgid(0, 0) != 0 {
            fail(c.report);
        }
        for (target, fd) in (0..).zip(c.stdio) {
            // dup2 onto itself would keep close-on-exec: clear it instead,
            // as glibc's file action does.
            let rc = if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if rc == -1 {
                fail(c.report);
            }
        }
        // The IPC channel at its fixed number, after stdio (whose sources
        // may have had that number in the daemon), as posix_spawn's file
        // action does it.
        if c.channel >= 0 {
            let target = pmdaemon_proto::IPC_CHANNEL_FD;
            let rc = if c.channel == target {
                libc::fcntl(c.channel, libc::F_SETFD, 0)
            } else {
                libc::dup2(c.channel, target)
            };
            if rc == -1 {
                fail(c.report);
            }
        }
        if libc::chdir(c.cwd) != 0 {
            fail(c.report);
        }
        // Lowering the soft limit cannot fail; if it did, the app would
        // run with the daemon's limit, as after a failed prlimit.
        if let Some(limit) = &c.nofile {
            libc::setrlimit(libc::RLIMIT_NOFILE, limit);
        }
        // An empty signal mask, raw as above.
        let empty = [0u64; 2];
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            empty.as_ptr(),
            std::ptr::null_mut::<u64>(),
            c.sigset_size,
        );
        libc::execve(c.program, c.argv, c.envp);
        fail(c.report)
    }
}

/// Sends this thread's errno to the parent and exits 127 (posix_spawn's
/// status for a child that failed before its exec).
fn fail(report: RawFd) -> ! {
    // SAFETY: errno is this thread's; the write gets a valid 4-byte
    // buffer; _exit ends the child without running anything of the
    // parent's (no atexit handlers, no stdio flush).
    unsafe {
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}
