//! The crate's only unsafe code: eight libc calls that neither std nor our
//! dependencies wrap. Each wrapper is safe to call with any argument; on
//! other platforms they do nothing and report so.

use std::fs::File;

/// Put the calling thread in the `SCHED_IDLE` CPU class and the idle I/O
/// class. Returns whether the CPU class was accepted (the I/O class is best
/// effort).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[must_use]
pub fn enter_idle_class() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the
    // call; pid 0 names the calling thread; nothing else is touched.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    // ioprio_set(IOPRIO_WHO_PROCESS, this thread, IOPRIO_CLASS_IDLE << 13):
    // the server's reads and log fsyncs are dispatched first by the
    // schedulers that honour priorities (mq-deadline, bfq).
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_IDLE: libc::c_long = 3 << 13;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let _ = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_IDLE) };
    rc == 0
}

/// See the Linux version.
#[cfg(not(target_os = "linux"))]
#[must_use]
pub fn enter_idle_class() -> bool {
    false
}

/// Start writing back `len` bytes of `file` at `off` without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the disk works while more
/// data is produced and the final fsync has little left to do. Best effort:
/// errors are left for that fsync to report.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn start_writeback(file: &File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(off), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for the lifetime of `file`; the call
    // reads no memory of ours.
    let _ =
        unsafe { libc::sync_file_range(file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE) };
}

/// See the Linux version.
#[cfg(not(target_os = "linux"))]
pub fn start_writeback(_file: &File, _off: u64, _len: u64) {}

/// `posix_fadvise(file, off, len, advice)`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn fadvise(file: &File, off: u64, len: u64, advice: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(off), i64::try_from(len)) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: the descriptor is open for the lifetime of `file`; the call
    // reads and writes no memory of ours.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, len, advice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// Tell the kernel that `file` will be read once from start to end
/// (`posix_fadvise(POSIX_FADV_SEQUENTIAL)`: a larger read-ahead window).
/// Best effort: a file system that ignores the advice reads as before.
#[cfg(target_os = "linux")]
pub fn advise_sequential(file: &File) {
    let _ = fadvise(file, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
}

/// See the Linux version.
#[cfg(not(target_os = "linux"))]
pub fn advise_sequential(_file: &File) {}

/// Keep freed 1 MiB batch buffers in the allocator for reuse. By default
/// glibc serves such blocks with fresh `mmap`s (or trims them off the heap
/// when freed), so every batch costs 256 page faults, zeroing by the kernel
/// and an `munmap`, about 5 % of a backup's CPU. With a fixed mmap threshold
/// of 4 MiB and a trim threshold of 16 MiB, a steady pipeline reuses the
/// same memory (measured: less system time and a lower peak RSS than both
/// the default and 64/128 MiB). Call once at start, before threads. No
/// effect off glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_freed_buffers() {
    // SAFETY: mallopt takes two integers and only changes allocator tuning.
    unsafe {
        let _ = libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        let _ = libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

/// See the glibc version.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_buffers() {}

/// Write back every dirty page and inode of the filesystem that holds
/// `file` and wait for it (`syncfs(2)`): one call makes a whole restore
/// durable instead of an `fsync` per file. Since Linux 5.8 it reports a
/// writeback error of any file of that filesystem that happened since
/// `file` was opened (earlier kernels report none; see README).
///
/// # Errors
/// The call's error (`EIO`, `ENOSPC`, …).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn syncfs(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the lifetime of `file`; the call
    // reads no memory of ours.
    let rc = unsafe { libc::syncfs(file.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The memory the kernel could give without swapping (`MemAvailable` in
/// `/proc/meminfo`), in bytes; `None` where it cannot be read.
#[must_use]
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Ask the kernel to read `len` bytes at `off` of `file` into the page
/// cache in the background (`posix_fadvise(POSIX_FADV_WILLNEED)`), so that
/// many scattered reads that follow overlap on the device instead of
/// waiting one by one. A hint: the data read later is the same either way.
///
/// # Errors
/// The call's error (`EBADF`, `EINVAL`).
#[cfg(target_os = "linux")]
pub fn prefetch(file: &File, off: u64, len: u64) -> std::io::Result<()> {
    fadvise(file, off, len, libc::POSIX_FADV_WILLNEED)
}

/// Tell the kernel that `len` bytes at `off` of `file` will not be read
/// again (`posix_fadvise(POSIX_FADV_DONTNEED)`): their clean pages leave
/// the page cache now, instead of being reclaimed later while other
/// writes wait for memory. A hint: nothing read or written changes.
///
/// # Errors
/// The call's error (`EBADF`, `EINVAL`).
#[cfg(target_os = "linux")]
pub fn drop_cached(file: &File, off: u64, len: u64) -> std::io::Result<()> {
    fadvise(file, off, len, libc::POSIX_FADV_DONTNEED)
}

/// Off Linux: no hint.
#[cfg(not(target_os = "linux"))]
pub fn drop_cached(_file: &File, _off: u64, _len: u64) -> std::io::Result<()> {
    Ok(())
}

/// Off Linux: no hint.
#[cfg(not(target_os = "linux"))]
pub fn prefetch(_file: &File, _off: u64, _len: u64) -> std::io::Result<()> {
    Ok(())
}

/// Off Linux: `fsync` of `file` only, which is not enough; the restore
/// engine is Linux-only in practice.
#[cfg(not(target_os = "linux"))]
pub fn syncfs(file: &File) -> std::io::Result<()> {
    file.sync_all()
}

/// The operating-system login name of the effective user, as the MariaDB
/// client takes it when no user is given: `root` for uid 0, else the
/// password database's name for the effective uid, else `$USER` or
/// `$LOGNAME`. `None` when none of these is known.
#[allow(unsafe_code)]
#[must_use]
pub fn login_name() -> Option<String> {
    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return Some("root".to_owned());
    }
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid value of the plain C struct.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live memory of the stated length; on
    // success `result` points at `pwd`, whose strings point into `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: pw_name is a NUL-terminated string inside `buf`, alive here.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        if let Ok(n) = name.to_str() {
            if !n.is_empty() {
                return Some(n.to_owned());
            }
        }
    }
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Send SIGTERM to process `pid` (a child we started). Errors (the
/// process is gone) are ignored.
#[allow(unsafe_code)]
pub fn terminate(pid: u32) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        if p > 0 {
            // SAFETY: kill(2) takes plain integers; a positive pid names one process.
            let _ = unsafe { libc::kill(p, libc::SIGTERM) };
        }
    }
}

/// A fault-injection point for the tests (compiled only with the
/// `testkit` feature): when `HOTBAK_FAILPOINT` is `NAME:N` and `name`
/// reaches its `n`-th pass, the process aborts on the spot, as a crash or
/// `kill -9` would stop it, so that a test can prove a rerun recovers.
#[cfg(feature = "testkit")]
pub fn failpoint(name: &str, n: u64) {
    if let Ok(v) = std::env::var("HOTBAK_FAILPOINT") {
        if v == format!("{name}:{n}") {
            eprintln!("hotbak: failpoint {v}: aborting");
            std::process::abort();
        }
    }
}
