//! The service's memory budgets, derived from the memory limit the process runs under
//! ([`memory_limit::detect`]).
//!
//! [`derived_decode_budget`] turns the limit into the decode memory budget's default: what is
//! left under the limit once the model is loaded and warmed up (the process's resident set),
//! less [`headroom`] for everything else, between [`MIN_DERIVED_BUDGET`] and
//! [`MAX_DERIVED_BUDGET`].

/// The part of the limit kept free for everything but the loaded model and the decodes —
/// request bodies being read and queued, connections, preprocessing and output tensors, the
/// allocator's slack: 64 MiB plus an eighth of the limit.
pub fn headroom(limit: u64) -> u64 {
    (64 << 20) + limit / 8
}

/// The smallest derived decode budget, 16 MiB (about a 2.5-megapixel PNG at once); under a
/// limit that leaves less, the service warns that the limit is too small for the model.
pub const MIN_DERIVED_BUDGET: u64 = 16 << 20;

/// The largest derived decode budget, 256 MiB (the former fixed default: a 50-megapixel 8-bit
/// RGB PNG, or any JPEG within the limits): more would only let more huge images decode at once.
pub const MAX_DERIVED_BUDGET: u64 = 256 << 20;

/// The decode memory budget for a process with `resident` bytes in use under `limit`:
/// `limit − resident − headroom(limit)`, at least [`MIN_DERIVED_BUDGET`] and at most
/// [`MAX_DERIVED_BUDGET`].
pub fn derived_decode_budget(limit: u64, resident: u64) -> u64 {
    limit
        .saturating_sub(resident)
        .saturating_sub(headroom(limit))
        .clamp(MIN_DERIVED_BUDGET, MAX_DERIVED_BUDGET)
}

/// Memory for the request bodies, referenced files and input tensors held at once: half the
/// headroom, and never less than one largest body (`max_body_bytes`) and its input tensor
/// (`tensor_bytes`), so that a single request is never shed for it.
pub fn body_memory_budget(limit: u64, max_body_bytes: u64, tensor_bytes: u64) -> u64 {
    (headroom(limit) / 2).max(max_body_bytes + tensor_bytes)
}

/// Whether `budget` fits under `limit` beside `resident` bytes and the headroom.
pub fn fits(limit: u64, resident: u64, budget: u64) -> bool {
    resident
        .saturating_add(headroom(limit))
        .saturating_add(budget)
        <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_budget_is_what_the_limit_leaves_within_bounds() {
        // 256 MiB with a 100 MiB model: 256 − 100 − (64 + 32) = 60 MiB.
        assert_eq!(derived_decode_budget(256 * MIB, 100 * MIB), 60 * MIB);
        assert!(fits(256 * MIB, 100 * MIB, 60 * MIB));
        assert!(!fits(256 * MIB, 100 * MIB, 61 * MIB));
        // A big machine keeps the former default.
        assert_eq!(
            derived_decode_budget(24 << 30, 200 * MIB),
            MAX_DERIVED_BUDGET
        );
        // A limit the model nearly fills still gets the floor.
        assert_eq!(
            derived_decode_budget(128 * MIB, 120 * MIB),
            MIN_DERIVED_BUDGET
        );
        assert!(!fits(128 * MIB, 120 * MIB, MIN_DERIVED_BUDGET));
    }
}
