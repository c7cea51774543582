//! The machine line every benchmark prints above its figures. A plain file included with
//! `#[path]` by each benchmark, which are separate crates.

/// The CPU model and the CPUs this process may use.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.into());
    format!("{model}, {} CPUs", dlr_sys::available_cpus())
}
