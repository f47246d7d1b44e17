//! Which protocol steps a variant has. Checks never read these flags (V4's
//! reference takes the rule set, the hcall's documented contract, as its input).

/// The hcall's contract: which return code each input gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rules {
    /// Mainline `do_h_register_vpa`: length read unlocked, checks and pending fields
    /// under the target's `vpa_update_lock`, the pending view of "registered".
    Mainline,
    /// Before the seed fix: no lock, the applied view, live pointers written by the caller.
    PreFix,
}

/// How `kvmppc_update_vpa` decides that the gpa it pinned is still the one asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recheck {
    /// Mainline: relock, then `gpa == next_gpa`, else unpin and retry.
    Locked,
    /// `apply-no-recheck`: install what was pinned.
    None,
    /// Mutant: compare before relocking.
    Unlocked,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Protocol {
    pub rules: Rules,
    /// R writes DTL entries (after the seed; `buggy-dtl` models it on the pre-fix hcall).
    pub dtl_writer: bool,
    pub recheck: Recheck,
    /// Before 55b665b0263a: `init_vpa()` even when the new VPA is NULL.
    pub uncond_init_vpa: bool,
    /// Before e4335f53198f: the DTL writer sets `dtl.dirty` (VB4: mainline does not).
    pub dtl_dirty: bool,
    /// Mutant switches, each one slip in the fixed path (all `true`/mainline in `fixed`).
    pub unpin_old: bool,
    pub reset_dtl_ptr: bool,
    /// The DTL wrap test is `dt == pinned_end` (mutant: tested one entry late).
    pub wrap_on_end: bool,
    /// T applies before it marks itself runnable (mutant: after).
    pub apply_before_runnable: bool,
    /// The hcall writes the pending fields under the target's lock.
    pub register_locked: bool,
    /// `vpa_is_registered()` uses the pending view (mutant: the applied pointer only).
    pub pending_view: bool,
    /// The old area is unpinned with its `dirty` flag (mutant: always clean).
    pub unpin_with_dirty: bool,
    /// The hcall mix registers X, Y, X on one target in a burst (`aba-xyx`).
    pub aba_bursts: bool,
}

impl Protocol {
    const MAINLINE: Protocol = Protocol {
        rules: Rules::Mainline,
        dtl_writer: true,
        recheck: Recheck::Locked,
        uncond_init_vpa: false,
        dtl_dirty: true,
        unpin_old: true,
        reset_dtl_ptr: true,
        wrap_on_end: true,
        apply_before_runnable: true,
        register_locked: true,
        pending_view: true,
        unpin_with_dirty: true,
        aba_bursts: false,
    };

    pub fn of(variant: &str) -> Result<Protocol, String> {
        let m = Protocol::MAINLINE;
        Ok(match variant {
            "fixed" => m,
            "buggy" => Protocol {
                rules: Rules::PreFix,
                dtl_writer: false,
                ..m
            },
            "buggy-dtl" => Protocol {
                rules: Rules::PreFix,
                ..m
            },
            "uncond-init-vpa" => Protocol {
                uncond_init_vpa: true,
                ..m
            },
            "apply-no-recheck" => Protocol {
                recheck: Recheck::None,
                ..m
            },
            "aba-xyx" => Protocol {
                aba_bursts: true,
                ..m
            },
            "vb4-dtl-dirty" => Protocol {
                dtl_dirty: false,
                ..m
            },
            "m-recheck-unlocked" => Protocol {
                recheck: Recheck::Unlocked,
                ..m
            },
            "m-keep-old-pin" => Protocol {
                unpin_old: false,
                ..m
            },
            "m-dtl-ptr-kept" => Protocol {
                reset_dtl_ptr: false,
                ..m
            },
            "m-wrap-past-end" => Protocol {
                wrap_on_end: false,
                ..m
            },
            "m-runnable-before-apply" => Protocol {
                apply_before_runnable: false,
                ..m
            },
            "m-register-unlocked" => Protocol {
                register_locked: false,
                ..m
            },
            "m-applied-view" => Protocol {
                pending_view: false,
                ..m
            },
            "m-unpin-clean" => Protocol {
                unpin_with_dirty: false,
                ..m
            },
            other => return Err(format!("vpa has no variant {other}")),
        })
    }
}
