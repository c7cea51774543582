//! The memory this process may really use: the smallest of its cgroup's limit (v2 or v1, along
//! its own cgroup path) and the machine's `MemTotal`.
//!
//! Greengrass caps a component's memory with a cgroup (`runWith.systemResourceLimits.memory`;
//! nucleus lite runs components as systemd services, where `MemoryMax=` does the same), so the
//! machine's total says little about what the service may use. What is read:
//! * `/proc/self/cgroup`: the process's cgroup v2 path (the `0::/path` line) and its cgroup v1
//!   memory path (the line whose controllers include `memory`);
//! * `/proc/self/mountinfo`: where those hierarchies are mounted (`cgroup2`, and `cgroup` with
//!   the `memory` option), and which part of the hierarchy each mount shows (its root);
//! * along the path from the process's cgroup up to the mounted root, every `memory.max` (v2;
//!   `max` means none) or `memory.limit_in_bytes` (v1; the huge page-aligned `i64::MAX` means
//!   none): a parent's limit binds its children too, so the smallest counts;
//! * `/proc/meminfo`'s `MemTotal`.
//!
//! Nothing here fails: a file that is missing or unreadable means that source gives no limit,
//! and `MemTotal` (or, without it, no limit at all) remains. Every path is read under a root
//! directory, `/` in production and a fixture tree in the tests.

pub mod arenas;

use std::fmt;
use std::path::{Path, PathBuf};

/// v1 has no "max": no limit is the largest page-aligned `i64`. Anything from 2^62 on is taken
/// as none (no machine has 4 EiB).
const V1_NO_LIMIT_FROM: u64 = 1 << 62;

/// Where the limit came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    /// A cgroup v2 `memory.max` (the file read).
    CgroupV2(PathBuf),
    /// A cgroup v1 `memory.limit_in_bytes` (the file read).
    CgroupV1(PathBuf),
    /// `/proc/meminfo`'s `MemTotal`: no cgroup limit applies, or it is larger.
    MemTotal,
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CgroupV2(path) => write!(f, "cgroup v2 {}", path.display()),
            Self::CgroupV1(path) => write!(f, "cgroup v1 {}", path.display()),
            Self::MemTotal => f.write_str("MemTotal"),
        }
    }
}

/// The memory limit this process runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    /// Bytes.
    pub bytes: u64,
    /// Where it came from.
    pub source: LimitSource,
}

/// The limit of this process, read from the running system; `None` only when not even
/// `MemTotal` can be read.
pub fn detect() -> Option<MemoryLimit> {
    detect_under(Path::new("/"))
}

/// The limit as seen in a tree laid out like `/` (`proc/self/cgroup`, `proc/self/mountinfo`,
/// `proc/meminfo` and the cgroup mounts under `root`).
pub fn detect_under(root: &Path) -> Option<MemoryLimit> {
    let read = |path: &str| std::fs::read_to_string(root.join(path.trim_start_matches('/'))).ok();
    let memtotal = read("/proc/meminfo")
        .and_then(|text| memtotal(&text))
        .map(|bytes| MemoryLimit {
            bytes,
            source: LimitSource::MemTotal,
        });
    let mut candidates: Vec<MemoryLimit> = memtotal.into_iter().collect();
    for cgroup in own_cgroups_under(root) {
        candidates.extend(limit_along(root, &cgroup));
    }
    // The smallest wins; on a tie, the cgroup (it says why).
    candidates.into_iter().min_by_key(|limit| {
        (
            limit.bytes,
            matches!(limit.source, LimitSource::MemTotal) as u8,
        )
    })
}

/// A cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// cgroup v1, the `memory` controller's own hierarchy.
    V1,
    /// cgroup v2, the unified hierarchy.
    V2,
}

/// This process's own cgroup in a hierarchy that can hold a memory limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCgroup {
    /// Which hierarchy.
    pub version: Version,
    /// Where the hierarchy is mounted (the highest directory readable here).
    pub top: PathBuf,
    /// The process's own cgroup directory in it.
    pub dir: PathBuf,
}

/// This process's own cgroups — v2 first, then v1's memory hierarchy — from
/// `/proc/self/cgroup` and `/proc/self/mountinfo`; the ones not mounted here are left out.
pub fn own_cgroups() -> Vec<OwnCgroup> {
    own_cgroups_under(Path::new("/"))
}

fn own_cgroups_under(root: &Path) -> Vec<OwnCgroup> {
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap_or_default();
    let (cgroups, mounts) = (read("proc/self/cgroup"), read("proc/self/mountinfo"));
    [Version::V2, Version::V1]
        .into_iter()
        .filter_map(|version| {
            let path = cgroup_path(&cgroups, version)?;
            let (mount_root, mount_point) = mount(&mounts, version)?;
            // The path below what the mount shows (in a container the mount often shows the
            // process's own cgroup as `/`); a cgroup outside the mounted part cannot be read.
            let below = Path::new(&path).strip_prefix(&mount_root).ok()?;
            let top = root.join(mount_point.trim_start_matches('/'));
            Some(OwnCgroup {
                version,
                dir: top.join(below),
                top,
            })
        })
        .collect()
}

impl Version {
    /// The file that holds a cgroup's memory limit.
    pub fn limit_file(self) -> &'static str {
        match self {
            Self::V2 => "memory.max",
            Self::V1 => "memory.limit_in_bytes",
        }
    }

    /// The limit a file holds, `None` for "no limit" or unreadable text.
    fn parse(self, text: &str) -> Option<u64> {
        let text = text.trim();
        match self {
            Self::V2 if text == "max" => None,
            Self::V2 => text.parse().ok(),
            Self::V1 => text.parse().ok().filter(|&b| b < V1_NO_LIMIT_FROM),
        }
    }

    fn source(self, file: PathBuf) -> LimitSource {
        match self {
            Self::V2 => LimitSource::CgroupV2(file),
            Self::V1 => LimitSource::CgroupV1(file),
        }
    }
}

/// `MemTotal` in bytes from `/proc/meminfo` (given in kB there).
fn memtotal(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The process's cgroup path for `version` from `/proc/self/cgroup` (`id:controllers:path`).
fn cgroup_path(cgroups: &str, version: Version) -> Option<String> {
    cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        wanted.then(|| path.to_owned())
    })
}

/// `(root within the hierarchy, mount point)` of the hierarchy for `version`, from
/// `/proc/self/mountinfo`: `id parent major:minor root mount-point options [tags] - fstype
/// source super-options`.
fn mount(mountinfo: &str, version: Version) -> Option<(String, String)> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split_whitespace().collect();
        let mut after = after.split_whitespace();
        let (fstype, _source, super_options) = (after.next()?, after.next()?, after.next()?);
        let wanted = match version {
            Version::V2 => fstype == "cgroup2",
            Version::V1 => fstype == "cgroup" && super_options.split(',').any(|o| o == "memory"),
        };
        (wanted && fields.len() >= 5).then(|| (unescape(fields[3]), unescape(fields[4])))
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The smallest limit from the process's cgroup up to the mounted root of its hierarchy.
fn limit_along(root: &Path, cgroup: &OwnCgroup) -> Option<MemoryLimit> {
    let (version, top) = (cgroup.version, &cgroup.top);
    let mut dir = cgroup.dir.clone();
    let mut smallest: Option<MemoryLimit> = None;
    loop {
        let file = dir.join(version.limit_file());
        let bytes = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| version.parse(&text));
        if let Some(bytes) = bytes
            && smallest.as_ref().is_none_or(|s| bytes < s.bytes)
        {
            let shown = Path::new("/").join(file.strip_prefix(root).unwrap_or(&file));
            smallest = Some(MemoryLimit {
                bytes,
                source: version.source(shown),
            });
        }
        if dir == *top || !dir.pop() || !dir.starts_with(top) {
            break;
        }
    }
    smallest
}

/// This process's resident set size (`VmRSS` of `/proc/self/status`), in bytes.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A fixture tree: `files` are `(path, text)` under a fresh root.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        root
    }

    const MEMINFO: &str = "MemTotal:        1024000 kB\nMemFree:          512000 kB\n";
    const V2_MOUNT: &str =
        "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const V1_MOUNTS: &str = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";

    #[test]
    fn v2_limit_of_the_process_s_own_cgroup() {
        let root = tree(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/system.slice/gg.service\n"),
            ("/proc/self/mountinfo", V2_MOUNT),
            ("/sys/fs/cgroup/memory.max", "max\n"),
            ("/sys/fs/cgroup/system.slice/memory.max", "max\n"),
            (
                "/sys/fs/cgroup/system.slice/gg.service/memory.max",
                "268435456\n",
            ),
        ]);
        let limit = detect_under(root.path()).unwrap();
        assert_eq!(limit.bytes, 256 * MIB);
        assert_eq!(
            limit.source,
            LimitSource::CgroupV2("/sys/fs/cgroup/system.slice/gg.service/memory.max".into())
        );
    }

    #[test]
    fn a_parent_s_smaller_limit_binds_the_child() {
        let root = tree(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/parent/child\n"),
            ("/proc/self/mountinfo", V2_MOUNT),
            ("/sys/fs/cgroup/parent/memory.max", "134217728\n"),
            ("/sys/fs/cgroup/parent/child/memory.max", "max\n"),
        ]);
        let limit = detect_under(root.path()).unwrap();
        assert_eq!(limit.bytes, 128 * MIB);
        assert_eq!(
            limit.source,
            LimitSource::CgroupV2("/sys/fs/cgroup/parent/memory.max".into())
        );
    }

    #[test]
    fn v2_max_everywhere_leaves_memtotal() {
        let root = tree(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/a\n"),
            ("/proc/self/mountinfo", V2_MOUNT),
            ("/sys/fs/cgroup/a/memory.max", "max\n"),
        ]);
        assert_eq!(
            detect_under(root.path()),
            Some(MemoryLimit {
                bytes: 1_024_000 * 1024,
                source: LimitSource::MemTotal
            })
        );
    }

    #[test]
    fn v1_memory_controller_with_a_nested_path() {
        let root = tree(&[
            ("/proc/meminfo", MEMINFO),
            (
                "/proc/self/cgroup",
                "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n",
            ),
            ("/proc/self/mountinfo", V1_MOUNTS),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "536870912\n",
            ),
        ]);
        let limit = detect_under(root.path()).unwrap();
        assert_eq!(limit.bytes, 512 * MIB);
        assert_eq!(
            limit.source,
            LimitSource::CgroupV1(
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes".into()
            )
        );
    }

    #[test]
    fn v1_no_limit_value_and_a_larger_limit_leave_memtotal() {
        let unlimited = tree(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "4:memory:/\n"),
            ("/proc/self/mountinfo", V1_MOUNTS),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        assert_eq!(
            detect_under(unlimited.path()).unwrap().source,
            LimitSource::MemTotal
        );
        let larger = tree(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "4:memory:/big\n"),
            ("/proc/self/mountinfo", V1_MOUNTS),
            (
                "/sys/fs/cgroup/memory/big/memory.limit_in_bytes",
                "68719476736\n",
            ),
        ]);
        assert_eq!(
            detect_under(larger.path()).unwrap().source,
            LimitSource::MemTotal
        );
    }

    #[test]
    fn a_container_s_mount_shows_its_own_cgroup_as_the_root() {
        // Inside a container the cgroup namespace shows `/` and the mount's root is `/`; a
        // mount whose root is the process's cgroup itself reads the files at the mount point.
        let root = tree(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/docker/abc\n"),
            (
                "/proc/self/mountinfo",
                "30 23 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
            ),
            ("/sys/fs/cgroup/memory.max", "100663296\n"),
        ]);
        assert_eq!(detect_under(root.path()).unwrap().bytes, 96 * MIB);
    }

    #[test]
    fn no_cgroup_and_no_meminfo() {
        let only_meminfo = tree(&[("/proc/meminfo", MEMINFO)]);
        assert_eq!(
            detect_under(only_meminfo.path()).unwrap().source,
            LimitSource::MemTotal
        );
        let nothing = tree(&[]);
        assert_eq!(detect_under(nothing.path()), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b/c\134d"), r"/a b/c\d");
        assert_eq!(unescape(r"/plain"), "/plain");
    }

    #[test]
    fn this_machine_has_a_limit() {
        let limit = detect().expect("/proc/meminfo is readable on Linux");
        assert!(limit.bytes > 0);
        assert!(resident_bytes().unwrap() > 0);
    }
}
