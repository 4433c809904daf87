//! A child process whose stdout arrives as lines on a channel, so every wait on it has a
//! deadline, and which is killed when dropped, so a failing test leaves nothing running.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};

/// Granularity of `wait`: std has no wait-with-timeout, so it polls `try_wait` until a deadline.
const WAIT_STEP: Duration = Duration::from_millis(1);

pub struct Spawned {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `cmd` with piped stdin, stdout and stderr. `label` names it in error messages.
    pub fn spawn(label: &str, mut cmd: Command) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {label}: {cmd:?}"))?;
        let stdout = child.stdout.take().context("child stdout was not piped")?;
        let stderr_pipe = child.stderr.take().context("child stderr was not piped")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr_pipe);
            let mut buf = [0_u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Ok(Self {
            label: label.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            status: None,
        })
    }

    /// The child's pid as the host sees it (`ip netns exec` execs in place, so this is the pid of
    /// the program it runs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The next stdout line; an error when `timeout` passes first or stdout closes.
    pub fn next_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(anyhow!(
                "{}: no output within {timeout:?}; stderr: {}",
                self.label,
                self.stderr()
            )),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait(Duration::from_secs(2)).map(|s| s.to_string());
                Err(anyhow!(
                    "{}: stdout closed ({}); stderr: {}",
                    self.label,
                    status.unwrap_or_else(|e| format!("{e:#}")),
                    self.stderr()
                ))
            }
        }
    }

    /// Reads the next line, which must be `KEY` or `KEY VALUE...`, and returns `VALUE...`.
    pub fn expect(&mut self, key: &str, timeout: Duration) -> anyhow::Result<String> {
        let line = self.next_line(timeout)?;
        let value = line.strip_prefix(key).and_then(|rest| match rest {
            "" => Some(""),
            _ => rest.strip_prefix(' '),
        });
        match value {
            Some(value) => Ok(value.to_owned()),
            None => bail!("{}: expected a `{key} ...` line, got {line:?}", self.label),
        }
    }

    /// Like [`Self::expect`], for a numeric value.
    pub fn expect_num<T: std::str::FromStr>(
        &mut self,
        key: &str,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let value = self.expect(key, timeout)?;
        value
            .parse()
            .map_err(|_| anyhow!("{}: `{key} {value}` is not a number", self.label))
    }

    /// Every line still to come, up to the close of stdout, which must happen within `timeout`.
    pub fn rest_of_output(&mut self, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return Ok(lines),
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{}: stdout still open after {timeout:?} ({} lines read); stderr: {}",
                    self.label,
                    lines.len(),
                    self.stderr()
                ),
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would.
    pub fn interrupt(&self) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill has no memory-safety preconditions; the child is ours and not yet reaped.
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            bail!(
                "{}: kill(SIGINT): {}",
                self.label,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    pub fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .with_context(|| format!("{}: stdin closed", self.label))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("{}: writing to stdin", self.label))
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let polled = self
                .child
                .try_wait()
                .with_context(|| format!("{}: wait", self.label))?;
            if let Some(status) = polled {
                self.status = Some(status);
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: still running after {timeout:?}; stderr: {}",
                    self.label,
                    self.stderr()
                );
            }
            thread::sleep(WAIT_STEP);
        }
    }

    /// Waits for the child to exit and fails unless it exited with status 0.
    pub fn wait_success(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let status = self.wait(timeout)?;
        if !status.success() {
            bail!(
                "{} failed ({status}); stderr: {}",
                self.label,
                self.stderr()
            );
        }
        Ok(())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
