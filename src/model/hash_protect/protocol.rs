//! Which protocol steps a variant has: the variant table of the spec as booleans.
//!
//! `build` maps the variant name to a [`Protocol`] once; the protocol code reads these
//! steps and nothing else. No check reads them.

/// How the hypervisor implements H_PROTECT (or whether there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hypervisor {
    /// PowerVM: the entry is removed and re-inserted; a miss in between reaches the
    /// guest kernel (inferred in 87e65ad7bd3a's message; phyp is closed).
    Phyp,
    /// KVM HV: `kvmppc_h_protect` makes the entry ABSENT under HVLOCK; with VPM=1 the
    /// miss traps to `kvmppc_hpte_hv_fault`, which waits for the lock and retries.
    Kvm,
    /// No LPAR: `native_hpte_updateboltedpp` rewrites pp in place, and
    /// `hash__change_memory_range` takes its `else` branch (no stop_machine).
    BareMetal,
}

impl Hypervisor {
    pub(super) fn parse(s: &str) -> Self {
        match s {
            "kvm" => Hypervisor::Kvm,
            "bare-metal" => Hypervisor::BareMetal,
            _ => Hypervisor::Phyp,
        }
    }
}

/// Who becomes the master inside `change_memory_range_fn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MasterPick {
    /// 2b2095f3a6b4: `atomic_xchg(&parms->master_cpu, 1) == 1` ⇒ secondary; the first
    /// CPU to arrive is the master.
    FirstArrival,
    /// 87e65ad7bd3a: `parms->master_cpu = smp_processor_id()` at setup.
    CallerCpu,
}

/// Where `chmem_parms` lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParmsAt {
    /// `static struct change_memory_parms chmem_parms` ("it has to be in the RMO").
    Static,
    /// On the caller's stack, above the RMO.
    Stack,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Protocol {
    /// LPAR path uses stop_machine (false: before 87e65ad7bd3a).
    pub stop_machine: bool,
    pub master: MasterPick,
    /// `early-dec`: the secondary decrements before switching to real mode.
    pub dec_before_real: bool,
    /// The master's `while (atomic_read(&parms->cpu_counter) > 1)`.
    pub master_waits: bool,
    /// `cpus_read_lock()` around the counter setup and stop_machine.
    pub cpus_read_lock: bool,
    pub parms: ParmsAt,
    /// multi_cpu_stop's DISABLE_IRQ action (`local_irq_disable` + `hard_irq_disable`).
    pub stop_disables_irqs: bool,
    /// chmem_secondary_loop's `local_irq_save` + `hard_irq_disable`.
    pub secondary_irqsave: bool,
    /// Mutant: `set_state` stores the state before resetting `thread_ack`.
    pub state_before_ack_reset: bool,
    /// Mutant: the secondary leaves its spin at `counter <= 1` instead of `== 0`.
    pub secondary_leaves_at_one: bool,
    /// Mutant: the master signals (`atomic_dec`) before changing the range.
    pub master_signals_first: bool,
    /// Mutant: `atomic_set(&cpu_counter, num_online_cpus() - 1)`.
    pub counter_short: bool,
    /// Mutant: the range walk stops one step short (`idx + step < end`).
    pub range_stops_short: bool,
    /// Mutant: the secondary never switches back to virtual mode.
    pub secondary_stays_real: bool,
    /// Mutant: the secondary never decrements the counter (the master waits forever).
    pub secondary_skips_dec: bool,
}

const FIXED: Protocol = Protocol {
    stop_machine: true,
    master: MasterPick::FirstArrival,
    dec_before_real: false,
    master_waits: true,
    cpus_read_lock: true,
    parms: ParmsAt::Static,
    stop_disables_irqs: true,
    secondary_irqsave: true,
    state_before_ack_reset: false,
    secondary_leaves_at_one: false,
    master_signals_first: false,
    counter_short: false,
    range_stops_short: false,
    secondary_stays_real: false,
    secondary_skips_dec: false,
};

impl Protocol {
    /// The steps of variant `name`, and whether it exists without an LPAR (bare metal
    /// has no stop_machine, so variants that only change the LPAR path are n/a there).
    pub(super) fn of(name: &str) -> Option<(Protocol, bool)> {
        let p = FIXED;
        Some(match name {
            "fixed" => (p, true),
            "fixed-87e65ad" => (
                Protocol {
                    master: MasterPick::CallerCpu,
                    ..p
                },
                true,
            ),
            "buggy" => (
                Protocol {
                    stop_machine: false,
                    ..p
                },
                true,
            ),
            "early-dec" => (
                Protocol {
                    dec_before_real: true,
                    ..p
                },
                false,
            ),
            "master-no-wait" => (
                Protocol {
                    master_waits: false,
                    ..p
                },
                false,
            ),
            "no-cpus-read-lock" => (
                Protocol {
                    cpus_read_lock: false,
                    ..p
                },
                false,
            ),
            "parms-on-stack" => (
                Protocol {
                    parms: ParmsAt::Stack,
                    ..p
                },
                false,
            ),
            "no-irq-disable" => (
                Protocol {
                    stop_disables_irqs: false,
                    secondary_irqsave: false,
                    ..p
                },
                false,
            ),
            "no-secondary-irqsave" => (
                Protocol {
                    secondary_irqsave: false,
                    ..p
                },
                false,
            ),
            "m-state-before-ack-reset" => (
                Protocol {
                    state_before_ack_reset: true,
                    ..p
                },
                false,
            ),
            "m-secondary-leaves-at-one" => (
                Protocol {
                    secondary_leaves_at_one: true,
                    ..p
                },
                false,
            ),
            "m-master-signals-first" => (
                Protocol {
                    master_signals_first: true,
                    ..p
                },
                false,
            ),
            "m-counter-short" => (
                Protocol {
                    counter_short: true,
                    ..p
                },
                false,
            ),
            "m-range-stops-short" => (
                Protocol {
                    range_stops_short: true,
                    ..p
                },
                true,
            ),
            "m-secondary-stays-real" => (
                Protocol {
                    secondary_stays_real: true,
                    ..p
                },
                false,
            ),
            "m-secondary-skips-dec" => (
                Protocol {
                    secondary_skips_dec: true,
                    ..p
                },
                false,
            ),
            _ => return None,
        })
    }
}
