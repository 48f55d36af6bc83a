//! Background processes of the local cluster: spawn with logs, record, probe, stop.
//!
//! Every process is recorded as `name pid start-ticks` (start time from `/proc/<pid>/stat`), so
//! `cluster down` signals exactly the processes it started, even from another invocation, and a
//! recycled PID is never mistaken for one of ours.

use anyhow::{Context, bail};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One recorded process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start: u64,
    /// Whether the process leads its own process group (signals then go to the whole group).
    pub group: bool,
}

/// How a recorded process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// Exited, a zombie, or the PID now belongs to another process.
    Gone,
}

impl Proc {
    pub fn state(&self) -> State {
        match proc_stat(self.pid) {
            Some((state, start)) if start == self.start && state != 'Z' && state != 'X' => State::Running,
            _ => State::Gone,
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone.
    pub fn stop(&self, grace: Duration) {
        if self.state() == State::Gone {
            return;
        }
        self.signal("TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.state() == State::Gone {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "[cluster] {} (pid {}) ignored SIGTERM; sending SIGKILL",
            self.name, self.pid
        );
        self.signal("KILL");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.state() == State::Running {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        // Re-check right before signalling: the PID must still be the process we started.
        if self.state() == State::Gone {
            return;
        }
        let target = if self.group {
            format!("-{}", self.pid)
        } else {
            self.pid.to_string()
        };
        let _ = Command::new("kill")
            .args([format!("-{sig}"), "--".to_string(), target])
            .stderr(Stdio::null())
            .status();
    }

    fn line(&self) -> String {
        let kind = if self.group { "group" } else { "single" };
        format!("{} {} {} {kind}\n", self.name, self.pid, self.start)
    }
}

/// `(state, starttime)` of a PID, or `None` when it does not exist.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Starts `program` with its output appended to `logs/<name>.log` and records it in `pids`.
/// With `group`, the process gets its own process group, so a Ctrl-C in the terminal does not
/// reach it and a stop signal also reaches anything it spawns.
pub fn spawn(
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    logs: &Path,
    pids: &Path,
    group: bool,
) -> anyhow::Result<Proc> {
    std::fs::create_dir_all(logs)?;
    let log_path = logs.join(format!("{name}.log"));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if group {
        command.process_group(0);
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id();
    // The child handle is dropped without waiting: the process outlives this command and is
    // tracked through the pids file instead.
    drop(child);
    let start = proc_stat(pid).map(|(_, start)| start).unwrap_or(0);
    let proc = Proc {
        name: name.to_string(),
        pid,
        start,
        group,
    };
    let mut file = OpenOptions::new().create(true).append(true).open(pids)?;
    file.write_all(proc.line().as_bytes())?;
    eprintln!("[cluster] started {name} (pid {pid}), log {}", log_path.display());
    Ok(proc)
}

/// The processes recorded in `pids`, in start order (a missing file means none).
pub fn read_pids(pids: &Path) -> anyhow::Result<Vec<Proc>> {
    let text = match std::fs::read_to_string(pids) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", pids.display())),
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [name, pid, start, kind] = parts.as_slice() else {
            bail!("malformed line in {}: {line:?}", pids.display());
        };
        out.push(Proc {
            name: name.to_string(),
            pid: pid.parse().with_context(|| format!("pid in {line:?}"))?,
            start: start.parse().with_context(|| format!("start time in {line:?}"))?,
            group: *kind == "group",
        });
    }
    Ok(out)
}

/// Stops every process recorded in `pids`, newest first, then removes the file.
pub fn stop_all(pids: &Path) -> anyhow::Result<usize> {
    let procs = read_pids(pids)?;
    let mut stopped = 0;
    for proc in procs.iter().rev() {
        if proc.state() == State::Running {
            eprintln!("[cluster] stopping {} (pid {})", proc.name, proc.pid);
            proc.stop(Duration::from_secs(15));
            stopped += 1;
        }
    }
    match std::fs::remove_file(pids) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", pids.display())),
    }
    Ok(stopped)
}

/// `n` distinct free TCP ports on 127.0.0.1 (all listeners are held until every port is picked).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .context("binding 127.0.0.1:0 to find a free port")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// A plain-HTTP GET to a loopback address; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    if !addr.ip().is_loopback() {
        bail!("refusing to connect to {addr}: the harness only dials 127.0.0.0/8");
    }
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status line from {addr}{path}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_running_and_a_wrong_start_time_is_gone() {
        let pid = std::process::id();
        let (_, start) = proc_stat(pid).unwrap();
        let me = Proc {
            name: "me".into(),
            pid,
            start,
            group: false,
        };
        assert_eq!(me.state(), State::Running);
        let impostor = Proc {
            start: start + 1,
            ..me
        };
        assert_eq!(impostor.state(), State::Gone);
    }

    #[test]
    fn pids_file_round_trips_and_stop_all_kills_a_group() {
        let dir = std::env::temp_dir().join(format!("xtask-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pids = dir.join("pids");
        let sleeper = spawn(
            "sleeper",
            Path::new("sleep"),
            &["300".to_string()],
            &[],
            &dir,
            &pids,
            true,
        )
        .unwrap();
        assert_eq!(read_pids(&pids).unwrap(), vec![sleeper.clone()]);
        assert_eq!(sleeper.state(), State::Running);
        assert_eq!(stop_all(&pids).unwrap(), 1);
        assert_eq!(sleeper.state(), State::Gone);
        assert!(read_pids(&pids).unwrap().is_empty());
        // Idempotent: nothing left to stop.
        assert_eq!(stop_all(&pids).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn free_ports_are_distinct_loopback_ports() {
        let ports = free_ports(5).unwrap();
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5);
        assert!(ports.iter().all(|p| *p != 0));
    }

    #[test]
    fn http_get_refuses_non_loopback() {
        let err = http_get("10.0.0.1:80".parse().unwrap(), "/").unwrap_err();
        assert!(err.to_string().contains("127.0.0.0/8"), "{err}");
    }
}
