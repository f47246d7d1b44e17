//! Ctrl-C: the first stops the workers after their current op and lets the run write
//! everything (exit 130); the second exits at once, after the hook of the run
//! directory being written (if any) has marked its summary `interrupted`.

use crate::error::exit;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

static COUNT: AtomicU32 = AtomicU32::new(0);

type Hook = Box<dyn Fn() + Send + Sync>;

/// What the second Ctrl-C runs before exiting.
static FORCED_EXIT: Mutex<Option<Hook>> = Mutex::new(None);

/// Installs the SIGINT handler (once per process).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if COUNT.fetch_add(1, Ordering::SeqCst) >= 1 {
                if let Some(h) = FORCED_EXIT.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    h();
                }
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

/// Sets the hook the second Ctrl-C runs before exiting.
pub fn on_forced_exit(h: Hook) {
    *FORCED_EXIT.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
}

pub fn clear_forced_exit() {
    *FORCED_EXIT.lock().unwrap_or_else(|e| e.into_inner()) = None;
}
