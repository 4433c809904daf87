//! A panic anywhere in the daemon ends the process with a failure.
//!
//! Tokio catches a panic in a spawned task and only ends that task: a panic in the reload
//! task, say, left the daemon running without SIGHUP or SIGTERM handling, and a later stop
//! exited 0, so systemd's `Restart=on-failure` never restarted it. The hook below writes one
//! line and exits at once with [`EXIT_PANIC`], from whichever thread or task panicked. Nothing
//! is cleaned up on the way out: the kernel detaches the programs with the process's links,
//! and the next start removes the stale socket.

use std::panic::PanicHookInfo;

/// The exit status after a panic, as Rust's own runtime uses for a panicking main thread.
pub const EXIT_PANIC: i32 = 101;

/// Installs the hook; the daemon calls it before starting anything.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        eprintln!("{}", describe(thread.name(), info));
        std::process::exit(EXIT_PANIC);
    }));
}

/// The one line a panic writes: where, in which thread, and what it said.
fn describe(thread: Option<&str>, info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let location = info
        .location()
        .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
    // A message of several lines would be several journal entries.
    let message = message.replace('\n', " ");
    format!(
        "kaipo: internal error: thread '{}' panicked{location}: {message}; exiting with status \
         {EXIT_PANIC}",
        thread.unwrap_or("unnamed")
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The hook's line for a real panic, caught here instead of exiting (a hook is global, so
    /// this one only records and the previous one is put back).
    #[test]
    fn a_panic_is_described_in_one_line() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let t = std::thread::current();
            if t.name() == Some("kaipo-panic-test") {
                sink.lock().unwrap().push(describe(t.name(), info));
            }
        }));
        let line = line!() + 3;
        let joined = std::thread::Builder::new()
            .name("kaipo-panic-test".into())
            .spawn(|| panic!("reload {}\nfailed", 7))
            .unwrap()
            .join();
        std::panic::set_hook(previous);
        assert!(joined.is_err());
        assert_eq!(
            *seen.lock().unwrap(),
            [format!(
                "kaipo: internal error: thread 'kaipo-panic-test' panicked at \
                 kaipo-user/src/daemon/fatal.rs:{line}: reload 7 failed; exiting with status 101"
            )]
        );
    }
}
