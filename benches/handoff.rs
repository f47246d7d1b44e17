//! The floor under a det switch: a bare park/unpark handoff between OS threads.
//!
//! `cargo bench --bench handoff` passes a baton round a ring of 2 and 16 threads, each
//! waiting with `thread::park` until the baton names it and waking its successor with
//! `unpark` (one futex wake and one futex wait a handoff, what `src/sched/baton.rs`
//! does once a waiter parks), first with the threads free to run on any core, then
//! with all of them pinned to one core. It prints the median handoffs/s over `RUNS`
//! runs of each. On a virtual machine a wake that lands on another, idle core wakes a
//! halted vCPU, which is why det mode pins its workers when they outnumber the cores.
//! Environment: `BENCH_RUNS` (default 5), `BENCH_ROUNDS` (handoffs per thread, default
//! 20000).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Instant;

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Handoffs/s of one ring of `n` threads, `rounds` handoffs each, on core `pin` if given.
fn ring(n: usize, rounds: usize, pin: Option<usize>) -> f64 {
    let holder = Arc::new(AtomicUsize::new(0));
    let seats: Arc<OnceLock<Vec<std::thread::Thread>>> = Arc::new(OnceLock::new());
    let start = Arc::new(Barrier::new(n + 1));
    let workers: Vec<_> = (0..n)
        .map(|me| {
            let (holder, seats, start) = (holder.clone(), seats.clone(), start.clone());
            std::thread::spawn(move || {
                if let Some(cpu) = pin {
                    let mut set = nix::sched::CpuSet::new();
                    set.set(cpu).expect("cpu in range");
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                        .expect("sched_setaffinity");
                }
                start.wait();
                let seats = seats.get().expect("seats set before start");
                for _ in 0..rounds {
                    while holder.load(SeqCst) != me {
                        std::thread::park();
                    }
                    let next = (me + 1) % n;
                    holder.store(next, SeqCst);
                    seats[next].unpark();
                }
            })
        })
        .collect();
    let _ = seats.set(workers.iter().map(|w| w.thread().clone()).collect());
    start.wait();
    let t = Instant::now();
    for w in workers {
        w.join().expect("ring thread");
    }
    (n * rounds) as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs = env_or("BENCH_RUNS", 5);
    let rounds = env_or("BENCH_ROUNDS", 20000);
    let cpu = nix::sched::sched_getcpu().unwrap_or(0);
    println!("| threads | any core (handoffs/s) | one core (handoffs/s) | one core / any |");
    println!("|---:|---:|---:|---:|");
    for n in [2, 16] {
        let free = median((0..runs).map(|_| ring(n, rounds, None)).collect());
        let pinned = median((0..runs).map(|_| ring(n, rounds, Some(cpu))).collect());
        println!("| {n} | {free:.0} | {pinned:.0} | {:.1}x |", pinned / free);
    }
}
