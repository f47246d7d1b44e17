//! Who holds a lock: each thread's holder id, recorded by the locks of this module.
//!
//! A check that finds a lock in the wrong state ("re-initialised while held", "left
//! held at teardown") should say *who* held it, from state and not from knowing which
//! protocol runs. The engine names each worker thread once with [`set_current`]; the
//! locks store that id when they are taken and clear it when they are released. The
//! record is ghost state (plain std atomics, no preemption point): it never changes
//! what the protocol does.

use std::cell::Cell;

thread_local! {
    static CURRENT: Cell<u32> = const { Cell::new(NOBODY) };
}

/// The id of "no holder" (and of threads the engine did not name, e.g. unit tests).
pub const NOBODY: u32 = u32::MAX;

/// Names this thread `id` (a worker index) for every lock it takes from now on.
pub fn set_current(id: u32) {
    CURRENT.with(|c| c.set(id));
}

/// This thread's holder id, [`NOBODY`] if unnamed.
pub fn current() -> u32 {
    CURRENT.with(|c| c.get())
}

/// `worker 3`, or `an unnamed thread`.
pub fn describe(id: u32) -> String {
    if id == NOBODY {
        "an unnamed thread".to_string()
    } else {
        format!("worker {id}")
    }
}

/// The holder ids set in a bit mask of readers (ids 0..64; later ids share bit 63).
pub fn bit(id: u32) -> u64 {
    1u64 << id.min(63)
}

/// `workers 1, 4` for a reader mask.
pub fn describe_mask(mask: u64) -> String {
    let ids: Vec<String> = (0..64)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| b.to_string())
        .collect();
    match ids.len() {
        0 => "nobody".to_string(),
        1 => format!("worker {}", ids[0]),
        _ => format!("workers {}", ids.join(", ")),
    }
}
