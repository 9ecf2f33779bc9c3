//! Every call this project makes that only some operating systems have, each behind the
//! platform that has it and with a portable fallback, so the workspace builds and runs on any
//! Unix (and compiles elsewhere). What a fallback loses is said on each function.

use std::process::Command;

/// Asks process `pid` to stop (SIGTERM); returns whether the request was sent.
///
/// Fallback (not Unix): nothing is sent and it returns `false`, so the caller kills the process
/// at once; the process loses its chance to shut down cleanly.
pub fn terminate(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
        // SAFETY: kill(2) only sends a signal; a stale pid at worst signals nothing (ESRCH).
        unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// Makes the child `command` starts receive SIGTERM when its parent dies (Linux's parent-death
/// signal), so no child outlives a parent that is killed outright.
///
/// Fallback (not Linux): nothing is arranged. Children are still stopped when the parent shuts
/// down in order (its handles stop them when dropped), but a parent killed with SIGKILL or
/// crashing leaves them running.
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe and touches no memory shared with the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Raises this process's soft limit on open files to its hard limit, so a server holds as many
/// connections as the system lets it (the default soft limit, often 1,024, runs out under a
/// flood of idle connections). Returns the limit now in force.
///
/// Fallback (not Unix): nothing is changed and it returns `None`.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit(2) and setrlimit(2) only read and write the struct passed by pointer,
        // which lives on this stack frame for the whole call.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        // `rlim_t` is not `u64` on every Unix.
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// Memory available to new work (Linux `MemAvailable`), in bytes.
///
/// Fallback (not Linux, or no /proc): 0, meaning unknown.
pub fn available_memory_bytes() -> u64 {
    proc_kib("/proc/meminfo", "MemAvailable:").map_or(0, |kib| kib * 1024)
}

/// This process's peak resident memory (Linux `VmHWM`), in bytes.
///
/// Fallback (not Linux, or no /proc): 0, meaning unknown.
pub fn peak_rss_bytes() -> u64 {
    proc_kib("/proc/self/status", "VmHWM:").map_or(0, |kib| kib * 1024)
}

/// The 1-minute load average.
///
/// Fallback (not Linux, or no /proc): `None`.
pub fn load_average() -> Option<f64> {
    let text = proc_text("/proc/loadavg")?;
    text.split_whitespace().next()?.parse().ok()
}

/// The kibibytes on the line of `file` that starts with `key` (`key:   1234 kB`).
fn proc_kib(file: &str, key: &str) -> Option<u64> {
    let text = proc_text(file)?;
    let rest = text.lines().find_map(|line| line.strip_prefix(key))?;
    rest.trim().trim_end_matches("kB").trim().parse().ok()
}

/// A /proc file's text, on the one system that has these files.
fn proc_text(file: &str) -> Option<String> {
    if cfg!(target_os = "linux") { std::fs::read_to_string(file).ok() } else { None }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn linux_reports_memory_and_load() {
        assert!(available_memory_bytes() > 0);
        assert!(peak_rss_bytes() > 0);
        assert!(load_average().is_some_and(|l| l >= 0.0));
    }

    #[test]
    fn a_child_is_signalled_when_asked_to_stop() {
        let mut command = Command::new("sleep");
        command.arg("30");
        die_with_parent(&mut command);
        let mut child = command.spawn().expect("sleep(1) starts");
        assert!(terminate(child.id()));
        let status = child.wait().map(|s| std::os::unix::process::ExitStatusExt::signal(&s));
        assert_eq!(status.ok().flatten(), Some(libc::SIGTERM));
    }
}
