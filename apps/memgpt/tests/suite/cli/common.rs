//! A `memgpt serve` process on a free loopback port, and running the command.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub use memgpt_testkit::{data, root};

/// `memgpt` with `args`, at `addr` when given.
pub fn memgpt(addr: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_memgpt"));
    c.args(args).env_remove("MEMGPT_API_KEY").env("MEMGPT_LOG", "error");
    if let Some(a) = addr {
        c.env("MEMGPT_ADDR", a);
    }
    c
}

/// Runs and returns (success, stdout, stderr).
pub fn run(mut c: Command) -> (bool, String, String) {
    let Output { status, stdout, stderr } = c.output().expect("memgpt runs");
    (status.success(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// Runs and fails the test unless it succeeds; stdout.
pub fn ok(c: Command) -> String {
    let (success, out, err) = run(c);
    assert!(success, "memgpt failed:\nstdout: {out}\nstderr: {err}");
    out
}

/// A running `memgpt serve`, killed on drop.
pub struct Serve {
    /// Its address, host:port.
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `memgpt serve` on 127.0.0.1 port 0 with `extra` arguments, and waits until it
    /// reports serving (it prints its address only once the gateway's health is SERVING).
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = memgpt(None, &["serve", "--listen", "127.0.0.1:0", "--threads", "2", "--device", "cpu", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("memgpt serve starts");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().unwrap_or_else(|| panic!("memgpt serve exited before serving: {:?}", child.wait())).unwrap();
            if let Some(rest) = line.strip_prefix("memgpt serving on ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { addr, child, _dir: dir }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of a JSONL file as JSON values.
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).expect("each output line is whole JSON")).collect()
}
