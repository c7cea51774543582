//! Peak memory while loading a model, each way libdlr can get the parameters:
//! `load_rss DIR [ROUNDS] [BALLAST_MB]` (libdlr found as `Model::load` finds it, e.g.
//! `DLR_LIBRARY_PATH`).
//!
//! With `BALLAST_MB`, the model is first copied into a temporary directory with an extra
//! float32 parameter of that size appended to its params file (a name the graph does not use;
//! libdlr still reads it through). That stands in for a large model such as the ModelStore
//! ResNet-50 (98 MB of parameters) on a machine that has only small ones.
//!
//! Every load happens in a fresh child process (this program run with `--child WAY DIR`), so
//! that the kernel's per-process high-water mark (`VmHWM`) covers that one load; the ways
//! alternate over the rounds. A child also samples its anonymous memory (`RssAnon`) every
//! millisecond during the load: `VmHWM` counts mapped file pages too, while the anonymous peak
//! is the memory the load really takes from the machine. Figures are in MB (10^6 bytes).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dlr_sys::{DlrLibrary, LibrarySearch, Model, ModelOptions, ParamsLoading};

const WAYS: [(&str, ParamsLoading); 2] = [
    ("read-by-dlr", ParamsLoading::ReadByDlr),
    ("mapped", ParamsLoading::Mapped),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, way, dir] if flag == "--child" => child(way, Path::new(dir)),
        [dir] => parent(dir, 3),
        [dir, rounds] => parent(dir, rounds.parse()?),
        [dir, rounds, ballast_mb] => {
            let copy = with_ballast(Path::new(dir), ballast_mb.parse()?)?;
            let result = parent(&copy.to_string_lossy(), rounds.parse()?);
            std::fs::remove_dir_all(&copy)?;
            result
        }
        _ => Err("usage: load_rss DIR [ROUNDS] [BALLAST_MB]".into()),
    }
}

/// One child's figures: (VmHWM before, VmHWM after, peak RssAnon, RssAnon after, load ms).
type Figures = [f64; 5];

fn parent(dir: &str, rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    let params: u64 = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "params"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    println!(
        "{dir}: parameters {:.1} MB; {rounds} rounds, one fresh process per load",
        params as f64 / 1e6
    );
    let mut results: Vec<(&str, Vec<Figures>)> = WAYS.iter().map(|w| (w.0, Vec::new())).collect();
    for _ in 0..rounds {
        for (way, figures) in &mut results {
            let out = Command::new(std::env::current_exe()?)
                .args(["--child", way, dir])
                .output()?;
            if !out.status.success() {
                return Err(format!(
                    "{way} child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            let text = String::from_utf8(out.stdout)?;
            let values: Vec<f64> = text
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            figures.push(values.try_into().map_err(|_| "child printed no figures")?);
        }
    }
    println!(
        "{:<12} {:>13} {:>13} {:>13} {:>13} {:>13} {:>8}",
        "way", "VmHWM before", "VmHWM after", "load rise", "peak anon", "anon after", "load ms"
    );
    let mut rises = Vec::new();
    for (way, figures) in &results {
        let median = |i: usize| {
            let mut v: Vec<f64> = figures.iter().map(|f| f[i]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let rise = median(1) - median(0);
        rises.push((median(1), rise, median(2)));
        println!(
            "{way:<12} {:>10.1} MB {:>10.1} MB {:>10.1} MB {:>10.1} MB {:>10.1} MB {:>8.0}",
            median(0),
            median(1),
            rise,
            median(2),
            median(3),
            median(4)
        );
    }
    let (base, mapped) = (rises[0], rises[1]);
    println!(
        "mapped ÷ read-by-dlr: VmHWM x{:.2}, load rise x{:.2}, peak anon x{:.2}",
        mapped.0 / base.0,
        mapped.1 / base.1,
        mapped.2 / base.2
    );
    Ok(())
}

fn child(way: &str, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let loading = WAYS.iter().find(|w| w.0 == way).ok_or("unknown way")?.1;
    // The library is opened before the first figure, so that only the model load is measured.
    let library = DlrLibrary::discover(&LibrarySearch {
        explicit: None,
        model_dir: Some(dir.to_path_buf()),
    })?;
    let options = ModelOptions {
        threads: Some(1),
        ..Default::default()
    };
    let before = status_mb("VmHWM:");
    let done = Arc::new(AtomicBool::new(false));
    let peak_anon = Arc::new(AtomicU64::new(0));
    let started: Arc<OnceLock<()>> = Arc::new(OnceLock::new());
    let sampler = {
        let (done, peak_anon, started) = (done.clone(), peak_anon.clone(), started.clone());
        std::thread::spawn(move || {
            let _ = started.set(());
            while !done.load(Ordering::Acquire) {
                let kb = (status_mb("RssAnon:") * 1e3) as u64;
                peak_anon.fetch_max(kb, Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    started.wait();
    let start = Instant::now();
    let model = Model::load_with_params(library, dir, &options, loading)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    done.store(true, Ordering::Release);
    sampler.join().map_err(|_| "sampler panicked")?;
    let after = status_mb("VmHWM:");
    let anon_after = status_mb("RssAnon:");
    let peak = (peak_anon.load(Ordering::Acquire) as f64 / 1e3).max(anon_after);
    println!("{before} {after} {peak} {anon_after} {load_ms}");
    drop(model);
    Ok(())
}

/// Copies the model directory `dir` into a temporary one whose params file gains a zeroed
/// float32 parameter named `ballast` of `mb` MB.
fn with_ballast(dir: &Path, mb: usize) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let copy = std::env::temp_dir().join(format!("load-rss-ballast-{}", std::process::id()));
    std::fs::create_dir_all(&copy)?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let target = copy.join(entry.file_name());
        if path.extension().is_some_and(|e| e == "params") {
            std::fs::write(target, append_param(&std::fs::read(&path)?, mb * 250_000)?)?;
        } else if path.is_file() {
            std::fs::copy(&path, target)?;
        }
    }
    Ok(copy)
}

/// The TVM params file `params` (see `test-models`' writer) with one more float32 array of
/// `elements` zeros, named `ballast`.
fn append_param(params: &[u8], elements: usize) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let u64_at = |at: usize| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(u64::from_le_bytes(
            params
                .get(at..at + 8)
                .ok_or("short params file")?
                .try_into()?,
        ))
    };
    let count = u64_at(16)?;
    let mut at = 24;
    for _ in 0..count {
        at += 8 + usize::try_from(u64_at(at)?)?;
    }
    let name = b"ballast";
    let mut out = Vec::with_capacity(params.len() + elements * 4 + 128);
    out.extend_from_slice(&params[..16]);
    out.extend_from_slice(&(count + 1).to_le_bytes());
    out.extend_from_slice(&params[24..at]);
    out.extend_from_slice(&(name.len() as u64).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&(u64_at(at)? + 1).to_le_bytes());
    out.extend_from_slice(&params[at + 8..]);
    out.extend_from_slice(&0xDD5E_40F0_96B4_A13Fu64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    for word in [1i32, 0, 1] {
        // device type CPU, device id 0, one dimension
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&[2, 32, 1, 0]); // float, 32 bits, one lane
    out.extend_from_slice(&(elements as i64).to_le_bytes());
    out.extend_from_slice(&(elements as i64 * 4).to_le_bytes());
    out.resize(out.len() + elements * 4, 0);
    Ok(out)
}

/// A `kB` line of `/proc/self/status`, in MB.
fn status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb * 1024.0 / 1e6)
}
