//! Ctrl-C: the first stops the workers after their current op and lets the run write
//! everything (exit 130); the second exits at once.

use crate::error::exit;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

static COUNT: AtomicU32 = AtomicU32::new(0);

/// Installs the SIGINT handler (once per process).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if COUNT.fetch_add(1, Ordering::SeqCst) >= 1 {
                std::process::exit(exit::INTERRUPTED);
            }
            eprintln!("kvmtorture: interrupted; stopping after the current ops (Ctrl-C again to exit now)");
        });
    });
}

/// True once the first Ctrl-C arrived.
pub fn requested() -> bool {
    COUNT.load(Ordering::SeqCst) > 0
}
