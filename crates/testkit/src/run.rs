//! The one way the tests run a program: the binary under test, a hook file, virsh.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A program to run: arguments, environment, the bytes on its stdin (written from a thread, so
/// a child that exits without reading them never blocks the test), stdout and stderr captured.
pub struct Run {
    cmd: Command,
    stdin: Vec<u8>,
    hang_after: Option<Duration>,
    stderr_to: Option<File>,
}

impl Run {
    pub fn new(program: impl AsRef<OsStr>) -> Run {
        Run {
            cmd: Command::new(program),
            stdin: Vec::new(),
            hang_after: None,
            stderr_to: None,
        }
    }

    /// `program` as user and group `uid` with no supplementary groups (through setpriv).
    pub fn as_user(uid: u32, program: impl AsRef<OsStr>) -> Run {
        let mut run = Run::new("setpriv");
        run.cmd
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(program);
        run
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.cmd.arg(arg);
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Run {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Run {
        self.cmd.env(key, value);
        self
    }

    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Run {
        self.cmd.envs(vars);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Run {
        self.cmd.env_remove(key);
        self
    }

    /// Only the environment libvirt gives a hook (none of ours: LC_ALL=C and a PATH); add to it
    /// with [`Run::env`].
    pub fn environment_of_a_hook(mut self) -> Run {
        self.cmd
            .env_clear()
            .env("LC_ALL", "C")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Run {
        self.cmd.current_dir(dir);
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Run {
        self.stdin = bytes.into();
        self
    }

    /// A run that has not ended after `limit` is killed and fails the test as a hang: a guard
    /// against hangs, not a measure of speed.
    pub fn hang_after(mut self, limit: Duration) -> Run {
        self.hang_after = Some(limit);
        self
    }

    /// Its stderr goes to `file` instead of a pipe: for a service that runs for as long as a
    /// test does and would fill a pipe nobody reads.
    pub fn stderr_to(mut self, file: File) -> Run {
        self.stderr_to = Some(file);
        self
    }

    /// Starts it with stdin, stdout and stderr piped, without feeding stdin.
    pub fn spawn(mut self) -> Child {
        let stderr = self.stderr_to.take().map_or_else(Stdio::piped, Stdio::from);
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} starts: {e}", self.cmd.get_program()))
    }

    /// Runs it to the end.
    pub fn output(self) -> Output {
        let (stdin, hang_after) = (self.stdin.clone(), self.hang_after);
        let program = self.cmd.get_program().to_owned();
        let mut child = self.spawn();
        let mut pipe = child.stdin.take().expect("piped");
        // A child that stops reading early closes the pipe; that is its business.
        let writer = std::thread::spawn(move || drop(pipe.write_all(&stdin)));
        let out = match hang_after {
            None => child.wait_with_output(),
            Some(limit) => {
                let pid = child.id();
                let (done, outcome) = mpsc::channel();
                std::thread::spawn(move || done.send(child.wait_with_output()));
                outcome.recv_timeout(limit).unwrap_or_else(|_| {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                    panic!("{program:?} hung (killed after {limit:?})");
                })
            }
        };
        writer.join().unwrap();
        out.unwrap_or_else(|e| panic!("{program:?} runs: {e}"))
    }
}
