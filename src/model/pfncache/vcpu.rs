//! vCPUs that use a cache in guest mode, and the eviction an invalidation makes of
//! them (982ed0de's `KVM_GUEST_USES_PFN` design, dropped in a4bff3df).
//!
//! Each worker is a vCPU with `vcpu->mode` and `vcpu->requests`. Its KVM_RUN
//! (`vcpu_run()` → `vcpu_enter_guest()`) refreshes its own guest-mode cache ("the
//! architecture will need to refresh any caches it still needs to access before
//! entering guest mode again"), sets `IN_GUEST_MODE` with `smp_store_mb()`, and
//! cancels the entry if `kvm_vcpu_exit_request()` (kicked, or any request pending) or
//! if the cache it is about to use was invalidated meanwhile. In guest mode the guest
//! reaches the pfn directly, with no lock: G1 says that page must still be the one the
//! host maps at the cache's hva.
//!
//! **Eviction.** The gpc walk collects the vCPUs of the guest-mode caches in range
//! and calls `kvm_make_vcpus_request_mask()` with `KVM_REQUEST_WAIT`: a vCPU not
//! outside guest mode is switched to `EXITING_GUEST_MODE` and waited for
//! (`kvm_request_needs_ipi()`: with WAIT, `mode != OUTSIDE_GUEST_MODE`) before the host
//! changes the page. 982ed0de collected only the vCPUs of caches it cleared `valid`
//! of; a second invalidation of the same range, finding the cache already invalid,
//! then changed the page while the first was still kicking the vCPU — one of the
//! holes of a design no caller ever used (dropped in a4bff3df). The model collects the
//! vCPU of every guest-mode cache whose uhva is in range, so that G1 tests the
//! eviction and not that hole. Mainline of that era, after df06dae3, makes `KVM_REQ_OUTSIDE_GUEST_MODE`
//! (`KVM_REQUEST_NO_ACTION`: no bit in `vcpu->requests`); before it, the walk set
//! `KVM_REQ_GPC_INVALIDATE`, which no arch consumed, so every later entry saw a request
//! pending and bailed: "the vCPU [gets] stuck in an infinite loop during KVM_RUN".
//! Nothing checks the request; the watchdog (stress) or the det scheduler's livelock
//! detection sees a KVM_RUN that never returns, and the report shows which vCPU
//! cancels its entries on which request.

use super::cache::Gpc;
use super::{cov, Op, PfnCache};
use crate::model::mem::{Pfn, PAGE_SIZE};
use crate::sync::{AtomicU64, Backoff};
use std::fmt::Write;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool as StdBool, AtomicU64 as StdU64};

/// `vcpu->mode` values.
const OUTSIDE_GUEST_MODE: u64 = 0;
const IN_GUEST_MODE: u64 = 1;
const EXITING_GUEST_MODE: u64 = 2;

/// `KVM_REQ_GPC_INVALIDATE`'s bit in `vcpu->requests` (982ed0de).
const KVM_REQ_GPC_INVALIDATE: u64 = 1 << 0;

/// Guest entries one KVM_RUN makes before returning to userspace.
const GUEST_ENTRIES: u32 = 2;
/// Guest accesses through the cache's pfn per entry.
const GUEST_ACCESSES: u32 = 3;
/// Bytes the guest reaches through its cache.
const LEN: u64 = 8;

pub(super) struct GuestVcpu {
    /// `vcpu->mode`.
    mode: AtomicU64,
    /// `vcpu->requests`.
    requests: AtomicU64,
    /// Guest exits so far: an IPI sent with `KVM_REQUEST_WAIT` is acknowledged once
    /// this moves (the vCPU re-enabled interrupts outside guest mode).
    exits: AtomicU64,
    /// Ghost: inside KVM_RUN, and guest entries cancelled since the last one made.
    in_run: StdBool,
    cancelled: StdU64,
}

impl GuestVcpu {
    pub fn new() -> Self {
        GuestVcpu {
            mode: AtomicU64::new(OUTSIDE_GUEST_MODE),
            requests: AtomicU64::new(0),
            exits: AtomicU64::new(0),
            in_run: StdBool::new(false),
            cancelled: StdU64::new(0),
        }
    }
}

impl GuestVcpu {
    /// `vcpu->mode = OUTSIDE_GUEST_MODE; local_irq_enable()`: a pending IPI is taken.
    fn leave_guest_mode(&self) {
        self.mode.store(OUTSIDE_GUEST_MODE, SeqCst);
        self.exits.fetch_add(1, SeqCst);
    }
}

impl PfnCache {
    /// The vCPU whose guest-mode cache `c` is (`gpc->vcpu` of a `KVM_GUEST_USES_PFN`
    /// cache), if it is one.
    pub(super) fn guest_vcpu_of(&self, c: &Gpc) -> Option<usize> {
        c.id.checked_sub(self.params.caches)
    }

    /// One KVM_RUN of this worker's vCPU.
    pub(super) fn kvm_run(&self, op: &mut Op) {
        let w = op.cx.worker();
        let v = &self.vcpus[w];
        let c = &self.caches[self.params.caches + w];
        op.cx.op_args("vcpu{a}, gpc{b}", w as u64, c.id as u64);
        v.in_run.store(true, Relaxed);
        let mut resched = Backoff::new("vcpu_run.cancelled_entry");
        let mut entries = 0;
        while entries < GUEST_ENTRIES {
            // The arch refreshes what the guest will use; no request of the model has a
            // handler (KVM_REQ_GPC_INVALIDATE never had one).
            let mapping = self.guest_cache(op, c);
            // local_irq_disable(); smp_store_mb(vcpu->mode, IN_GUEST_MODE);
            v.mode.store(IN_GUEST_MODE, SeqCst);
            crate::sync::atomic::fence();
            crate::window!("vcpu.in_guest_mode");
            // kvm_vcpu_exit_request(), and the arch's re-test of the cache it will use.
            let kicked = v.mode.load(SeqCst) == EXITING_GUEST_MODE;
            let requests = v.requests.load(SeqCst);
            let invalidated = mapping.is_some() && !c.valid.load(SeqCst);
            if kicked || requests != 0 || invalidated {
                v.leave_guest_mode();
                if invalidated {
                    op.cover(cov::ENTRY_CANCELLED_INVALIDATED);
                }
                if requests != 0 {
                    let n = v.cancelled.fetch_add(1, Relaxed) + 1;
                    if n.is_power_of_two() {
                        op.event(
                            "vcpu{a}: entry cancelled, requests {b:x} pending",
                            w as u64,
                            requests,
                        );
                    }
                }
                resched.yield_now();
                continue;
            }
            v.cancelled.store(0, Relaxed);
            match mapping {
                Some((pfn, _)) => op.event("vcpu{a}: enters guest mode, guest uses pfn {b}", w as u64, pfn),
                None => op.event("vcpu{a}: enters guest mode, cache not valid", w as u64, 0),
            }
            self.guest(op, w, c, mapping);
            v.leave_guest_mode();
            entries += 1;
        }
        v.in_run.store(false, Relaxed);
    }

    /// The vCPU's guest-mode cache, activated in memslot 0 if need be (and now and
    /// then moved), checked and refreshed like any reader's; its (pfn, uhva) if valid.
    fn guest_cache(&self, op: &mut Op, c: &Gpc) -> Option<(Pfn, u64)> {
        if !c.active.load(Acquire) || op.rng().chance(0.05) {
            let l = self.params.layout;
            let gpa = op.rng().below(l.slot_pages) * PAGE_SIZE + op.rng().below(PAGE_SIZE / 64) * 64;
            let _ = self.activate(op, c, gpa, LEN);
        }
        let mut h = c.read_lock();
        self.check_read_locked(op, c);
        let mut refreshes = 0;
        while !self.check(c, LEN) {
            op.note(c.read_unlock(h));
            if refreshes == 4 || !c.active.load(Acquire) || self.refresh(op, c, LEN).is_err() {
                return None;
            }
            refreshes += 1;
            h = c.read_lock();
            self.check_read_locked(op, c);
        }
        let mapping = (c.pfn.load(Acquire), c.uhva.load(Acquire));
        op.note(c.read_unlock(h));
        Some(mapping)
    }

    /// Guest mode: accesses through the pfn, until done or kicked. G1 at each.
    fn guest(&self, op: &mut Op, w: usize, c: &Gpc, mapping: Option<(Pfn, u64)>) {
        let v = &self.vcpus[w];
        for _ in 0..GUEST_ACCESSES {
            if v.mode.load(SeqCst) == EXITING_GUEST_MODE {
                break;
            }
            crate::window!("vcpu.guest_access");
            let Some((pfn, uhva)) = mapping else { continue };
            let live = self.mmu.arena.state(pfn).is_some_and(|s| s.allocated);
            let pte = self.mmu.peek_pte(uhva);
            if !live || pte != Some(pfn) {
                op.flag(self.cache_violation(
                    c,
                    "G1",
                    format!(
                        "vCPU {w} in guest mode reaches pfn {pfn} ({}) through gpc{}, but the host maps {uhva:#x} to {}",
                        if live { "live" } else { "FREED" },
                        c.id,
                        pte.map_or("nothing".to_string(), |p| format!("pfn {p}"))
                    ),
                ));
            }
        }
    }

    /// `kvm_make_vcpus_request_mask(kvm, req, vcpu_bitmap)` at the end of the gpc walk,
    /// for the vCPUs of the guest-mode caches it invalidated.
    pub(super) fn evict_vcpus(&self, op: &mut Op, vcpus: &[usize]) {
        for &w in vcpus {
            let v = &self.vcpus[w];
            if self.proto.evict_sets_request {
                // kvm_make_request(KVM_REQ_GPC_INVALIDATE, vcpu): a bit nobody clears.
                v.requests.fetch_or(KVM_REQ_GPC_INVALIDATE, SeqCst);
                op.event("vcpu{a}: kvm_make_request(KVM_REQ_GPC_INVALIDATE)", w as u64, 0);
            }
            // kvm_request_needs_ipi(): kvm_vcpu_exiting_guest_mode() != OUTSIDE_GUEST_MODE
            // with KVM_REQUEST_WAIT, after the barrier that orders the walk's
            // `valid = false` before it.
            crate::sync::atomic::fence();
            let exits = v.exits.load(SeqCst);
            let mode = match v
                .mode
                .compare_exchange(IN_GUEST_MODE, EXITING_GUEST_MODE, SeqCst, SeqCst)
            {
                Ok(m) | Err(m) => m,
            };
            if mode != OUTSIDE_GUEST_MODE {
                if mode == IN_GUEST_MODE {
                    op.cover(cov::EVICTED_VCPU_IN_GUEST);
                }
                // The IPI is acknowledged once the vCPU has left guest mode.
                let mut b = Backoff::new("evict.wait_for_guest_exit");
                while v.exits.load(SeqCst) == exits {
                    b.spin();
                }
            }
        }
    }

    /// The vCPUs inside KVM_RUN or with requests pending, for reports.
    pub(super) fn describe_vcpus(&self) -> String {
        let mut s = String::new();
        for (w, v) in self.vcpus.iter().enumerate() {
            let (in_run, requests) = (v.in_run.load(Relaxed), v.requests.peek());
            if !in_run && requests == 0 {
                continue;
            }
            let _ = writeln!(
                s,
                "vCPU {w}: {} mode {} requests {requests:#x}{}, {} guest entries cancelled since its last entry",
                if in_run { "inside KVM_RUN," } else { "outside KVM_RUN," },
                match v.mode.peek() {
                    IN_GUEST_MODE => "IN_GUEST_MODE",
                    EXITING_GUEST_MODE => "EXITING_GUEST_MODE",
                    _ => "OUTSIDE_GUEST_MODE",
                },
                if requests & KVM_REQ_GPC_INVALIDATE != 0 {
                    " (KVM_REQ_GPC_INVALIDATE pending, no handler consumes it)"
                } else {
                    ""
                },
                v.cancelled.load(Relaxed)
            );
        }
        s
    }
}
