//! The kernel-style primitives under real contention, with stress-mode delay
//! injection at every preemption point so that critical sections really overlap
//! attempts to enter them.

use kvmtorture::rng::{Rng, Stream};
use kvmtorture::sched::stress::{Injection, Injector, Policy};
use kvmtorture::sched::{self, Mode};
use kvmtorture::sync::{bitlock, AtomicU64, Mutex, RawRwLock, RawSpinLock, SpinLock, Srcu};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64 as StdU64, Ordering::SeqCst};
use std::sync::Arc;

const THREADS: usize = 8;
const ROUNDS: u64 = 3_000;

/// Runs `body(worker)` on THREADS threads, each in stress mode with delays.
fn hammer(body: impl Fn(usize) + Send + Sync + 'static) {
    let body = Arc::new(body);
    let handles: Vec<_> = (0..THREADS)
        .map(|w| {
            let body = Arc::clone(&body);
            std::thread::spawn(move || {
                let _m = sched::enter(Mode::Stress(Injector::new(
                    Rng::stream(42, Stream::Delays, w as u64),
                    Injection {
                        prob: 0.05,
                        window_boost: 5.0,
                        policy: Policy::Uniform,
                    },
                    THREADS,
                )));
                body(w);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker panicked");
    }
}

/// A non-atomic read-modify-write that loses updates unless the lock excludes.
fn racy_increment(counter: &StdU64, inside: &AtomicBool) {
    assert!(
        !inside.swap(true, SeqCst),
        "two threads inside the critical section"
    );
    let v = counter.load(SeqCst);
    sched::point(sched::Site::window("test.critical"));
    counter.store(v + 1, SeqCst);
    inside.store(false, SeqCst);
}

#[test]
fn raw_spinlock_excludes() {
    let lock = Arc::new(RawSpinLock::new());
    let (count, inside) = (Arc::new(StdU64::new(0)), Arc::new(AtomicBool::new(false)));
    let (l, c, i) = (lock.clone(), count.clone(), inside.clone());
    hammer(move |_| {
        for _ in 0..ROUNDS {
            l.lock();
            racy_increment(&c, &i);
            l.unlock();
        }
    });
    assert_eq!(count.load(SeqCst), THREADS as u64 * ROUNDS);
    assert!(!lock.is_locked());
}

#[test]
fn spinlock_and_mutex_guards_exclude() {
    let spin = Arc::new(SpinLock::new(0u64));
    let mutex = Arc::new(Mutex::new(0u64));
    let (s, m) = (spin.clone(), mutex.clone());
    hammer(move |_| {
        for _ in 0..ROUNDS {
            let mut g = s.lock();
            let v = *g;
            sched::point(sched::Site::window("test.spin"));
            *g = v + 1;
            drop(g);
            let mut g = m.lock();
            *g += 1;
        }
    });
    assert_eq!(*spin.lock(), THREADS as u64 * ROUNDS);
    assert_eq!(*mutex.lock(), THREADS as u64 * ROUNDS);
}

#[test]
fn rwlock_readers_share_and_writers_exclude() {
    let lock = Arc::new(RawRwLock::new());
    let readers = Arc::new(AtomicI64::new(0));
    let writer = Arc::new(AtomicBool::new(false));
    let max_readers = Arc::new(AtomicI64::new(0));
    let (l, r, w, mx) = (lock.clone(), readers.clone(), writer.clone(), max_readers.clone());
    hammer(move |id| {
        for round in 0..ROUNDS {
            if (round + id as u64) % 4 == 0 {
                l.write_lock();
                assert!(!w.swap(true, SeqCst), "two writers");
                assert_eq!(r.load(SeqCst), 0, "a writer overlapped readers");
                sched::point(sched::Site::window("test.write"));
                w.store(false, SeqCst);
                l.write_unlock();
            } else {
                l.read_lock();
                let n = r.fetch_add(1, SeqCst) + 1;
                mx.fetch_max(n, SeqCst);
                assert!(!w.load(SeqCst), "a reader overlapped the writer");
                sched::point(sched::Site::window("test.read"));
                r.fetch_sub(1, SeqCst);
                l.read_unlock();
            }
        }
    });
    assert_eq!(lock.readers(), 0);
    assert!(!lock.is_write_locked());
    assert!(
        max_readers.load(SeqCst) > 1,
        "readers never overlapped: the test proved nothing"
    );
}

#[test]
fn bitlock_excludes_and_preserves_the_data_bits() {
    const LOCK: u64 = 1 << 63;
    let word = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicBool::new(false));
    let (wd, i) = (word.clone(), inside.clone());
    hammer(move |_| {
        for _ in 0..ROUNDS {
            let old = bitlock::lock(&wd, LOCK);
            assert!(!i.swap(true, SeqCst), "two holders of the bit lock");
            sched::point(sched::Site::window("test.bit"));
            i.store(false, SeqCst);
            bitlock::unlock_store(&wd, LOCK, (old & !LOCK) + 1);
        }
    });
    assert_eq!(
        word.peek(),
        THREADS as u64 * ROUNDS,
        "data bits counted every holder, lock bit clear"
    );
    // try_lock refuses when a forbidden bit is set, as try_lock_hpte(VALID|ABSENT) does.
    let w = AtomicU64::new(0x1);
    assert_eq!(bitlock::try_lock(&w, 0x40, 0x21), None);
    assert_eq!(bitlock::try_lock(&w, 0x40, 0x20), Some(0x1));
    assert_eq!(w.peek(), 0x41);
}

/// SRCU: after `synchronize` returns, no reader that could have seen the old
/// generation is still inside, so "freeing" it is safe.
#[test]
fn srcu_synchronize_waits_for_preexisting_readers() {
    let srcu = Arc::new(Srcu::new());
    let current = Arc::new(StdU64::new(1));
    // freed[g] is set once generation g has been reclaimed.
    let freed: Arc<Vec<AtomicBool>> = Arc::new(
        (0..=ROUNDS as usize + 1)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (s, c, f, st) = (srcu.clone(), current.clone(), freed.clone(), stop.clone());
    hammer(move |w| {
        if w == 0 {
            for g in 1..=ROUNDS {
                c.store(g + 1, SeqCst); // publish the new generation
                s.synchronize(); // wait out readers of g
                f[g as usize].store(true, SeqCst); // reclaim g
            }
            st.store(true, SeqCst);
        } else {
            while !st.load(SeqCst) {
                let idx = s.read_lock();
                let g = c.load(SeqCst);
                sched::point(sched::Site::window("test.srcu.reader"));
                assert!(
                    !f[g as usize].load(SeqCst),
                    "reader used generation {g} after it was reclaimed"
                );
                s.read_unlock(idx);
            }
        }
    });
    assert_eq!(srcu.active_readers(), 0);
}
