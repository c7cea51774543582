//! glibc's malloc arenas, bounded from inside the process.
//!
//! glibc gives threads that contend for the allocator arenas of their own, up to eight per core.
//! Memory freed into one arena is reused only by the threads that allocate from it, and an
//! arena's heap is given back to the system only from its top: after a burst of large decodes
//! on many threads, memory the process no longer uses stays resident, counted against its
//! cgroup limit. Measured in `tests/tests/memory_cgroup.rs`: a burst of file-reference requests
//! got the service killed for memory in a 256 MiB cgroup with glibc's default, and held with at
//! most two arenas.
//!
//! `MALLOC_ARENA_MAX` (or the `glibc.malloc.arena_max` tunable in `GLIBC_TUNABLES`) sets that
//! bound when the process starts; [`bound`] sets it with `mallopt(M_ARENA_MAX)` when neither is
//! set, so the binary run by hand under a memory limit gets the bound its recipe and Docker
//! image would give it. It must run before the process starts threads: glibc fixes the number
//! of arenas it allows the first time a thread needs one of its own.

use std::fmt;

/// The arenas [`bound`] allows when the environment sets no bound: two, one for the main
/// thread's arena and one shared by every other thread.
pub const DEFAULT_MAX_ARENAS: u32 = 2;

/// What [`bound`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArenaBound {
    /// Set to this many arenas with `mallopt`.
    Set(u32),
    /// Left to the environment variable that sets it (`MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`),
    /// which glibc read at start-up.
    FromEnvironment(&'static str),
    /// `mallopt` refused the value.
    Refused(u32),
    /// Not built for glibc (another C library has no such arenas, or no such option).
    NotGlibc,
}

impl fmt::Display for ArenaBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Set(max) => write!(f, "at most {max} malloc arenas (mallopt)"),
            Self::FromEnvironment(name) => write!(f, "malloc arenas as {name} sets them"),
            Self::Refused(max) => write!(f, "mallopt refused at most {max} malloc arenas"),
            Self::NotGlibc => f.write_str("not glibc: no malloc arena bound"),
        }
    }
}

/// The environment variable that already bounds the arenas, if any: `MALLOC_ARENA_MAX`, or
/// `GLIBC_TUNABLES` naming `glibc.malloc.arena_max`.
pub fn set_by_environment(var: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
    if var("MALLOC_ARENA_MAX").is_some_and(|v| !v.is_empty()) {
        return Some("MALLOC_ARENA_MAX");
    }
    let tunables = var("GLIBC_TUNABLES")?;
    tunables
        .split(':')
        .any(|t| {
            t.split_once('=')
                .is_some_and(|(k, _)| k == "glibc.malloc.arena_max")
        })
        .then_some("GLIBC_TUNABLES")
}

/// Bounds glibc's malloc arenas to `max` unless the environment already does. Call it first
/// in `main`, before any thread is started.
pub fn bound(max: u32) -> ArenaBound {
    let var = |name: &str| std::env::var(name).ok();
    if let Some(name) = set_by_environment(var) {
        return ArenaBound::FromEnvironment(name);
    }
    set_max(max)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_max(max: u32) -> ArenaBound {
    let Ok(value) = libc::c_int::try_from(max) else {
        return ArenaBound::Refused(max);
    };
    // SAFETY: mallopt takes two integers, changes only the allocator's parameters under the
    // allocator's own lock, and may be called at any time; no pointer crosses the boundary.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, value) };
    if ok == 1 {
        ArenaBound::Set(max)
    } else {
        ArenaBound::Refused(max)
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_max(_max: u32) -> ArenaBound {
    ArenaBound::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_environment_s_bound_is_left_alone() {
        assert_eq!(
            set_by_environment(env(&[("MALLOC_ARENA_MAX", "4")])),
            Some("MALLOC_ARENA_MAX")
        );
        assert_eq!(
            set_by_environment(env(&[(
                "GLIBC_TUNABLES",
                "glibc.malloc.check=0:glibc.malloc.arena_max=1"
            )])),
            Some("GLIBC_TUNABLES")
        );
        assert_eq!(
            set_by_environment(env(&[("GLIBC_TUNABLES", "glibc.malloc.arena_test=2")])),
            None
        );
        assert_eq!(set_by_environment(env(&[("MALLOC_ARENA_MAX", "")])), None);
        assert_eq!(set_by_environment(env(&[])), None);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_bound() {
        assert_eq!(set_max(DEFAULT_MAX_ARENAS), ArenaBound::Set(2));
    }
}
