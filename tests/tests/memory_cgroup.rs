//! The service under a real memory limit, as Greengrass sets one (`systemResourceLimits.memory`,
//! enforced by a cgroup): the built executable, serving the real EfficientNet-Lite0 through the
//! real libdlr, runs inside a fresh memory cgroup of its own with default settings, and is
//! overloaded with large PNGs (too big for any budget under the limit, and big enough that a few
//! at once would exceed it) and a real JPEG photo. It must not be killed for memory: every
//! request gets an HTTP status, the cgroup records no OOM kill, and a photo is classified
//! afterwards.
//!
//! The service runs as a user would start it by hand: without `MALLOC_ARENA_MAX` in its
//! environment, it bounds glibc's malloc arenas itself (`memory_limit::arenas`).
//! The test finds the memory controller with the service's own lookup (cgroup v1 `memory`, or
//! v2 with the `memory` controller), makes a child of its own cgroup there, and fails with a
//! plain reason where none is writable. It needs to run as root, as CI and this project's machines do.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dlr_test_models::paths;
use image::{Rgb, RgbImage};
use memory_limit::{OwnCgroup, Version};

/// The limit a small device's deployment might give the component.
const LIMIT_BYTES: u64 = 256 << 20;
/// Concurrent clients and requests each.
const CLIENTS: usize = 8;
const ROUNDS: usize = 5;

/// This process's own cgroup in the hierarchy that has the memory controller, as the service
/// finds it (`memory_limit::own_cgroups`): v1's `memory` hierarchy, or v2 where its
/// `cgroup.controllers` lists `memory`.
fn controller() -> OwnCgroup {
    memory_limit::own_cgroups()
        .into_iter()
        .find(|cgroup| {
            cgroup.version == Version::V1
                || std::fs::read_to_string(cgroup.dir.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no cgroup memory controller found (neither a cgroup v1 `memory` hierarchy nor \
                 cgroup v2 with the memory controller for this process): this test runs the \
                 service under a real memory limit and needs one, writable (root)"
            )
        })
}

/// A child cgroup with a memory limit, removed when dropped.
struct LimitedCgroup {
    dir: PathBuf,
    version: Version,
}

impl LimitedCgroup {
    fn create(limit: u64) -> Self {
        let controller = controller();
        let dir = controller
            .dir
            .join(format!("classify-memory-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the cgroup {}: {e}; this test needs a writable memory \
                 controller (run as root)",
                dir.display()
            )
        });
        let file = controller.version.limit_file();
        let swap = (controller.version == Version::V2).then_some("memory.swap.max");
        std::fs::write(dir.join(file), limit.to_string())
            .unwrap_or_else(|e| panic!("cannot set {}: {e}", dir.join(file).display()));
        if let Some(swap) = swap {
            // Without swap the limit is the limit (ignored where swap accounting is off).
            let _ = std::fs::write(dir.join(swap), "0");
        }
        Self {
            dir,
            version: controller.version,
        }
    }

    /// How many processes of the cgroup the kernel killed for memory.
    fn oom_kills(&self) -> u64 {
        let file = if self.version == Version::V2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .map_or(0, |n| n.trim().parse().unwrap())
    }
}

impl Drop for LimitedCgroup {
    fn drop(&mut self) {
        // The service has been killed by now; an empty cgroup can be removed.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A variable the service recipe's x86_64 manifest sets for the process.
fn service_binary() -> PathBuf {
    e2e_tests::workspace_binary("classify-service")
}

/// A smooth picture as a PNG: a small body (fast compression, each row a steady ramp) that
/// decodes to `w × h × 3` bytes and more.
fn large_png(w: u32, h: u32) -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let image = RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
    });
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
        .write_image(image.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// Pixels that do not compress: the PNG body is about as large as the decoded image.
fn noise_png(w: u32, h: u32) -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let pixels: Vec<u8> = (0..w as usize * h as usize * 3)
        .map(|_| {
            // xorshift64: deterministic noise without a dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// `CLIENTS` clients sending `ROUNDS` requests each, `pick(client, round)` choosing the body;
/// the count of each status, or the first request that got no answer.
async fn burst(
    client: &reqwest::Client,
    base: &str,
    content_type: &'static str,
    bodies: &[Vec<u8>],
    pick: impl Fn(usize, usize) -> usize,
) -> Result<std::collections::BTreeMap<u16, usize>, String> {
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        let url = format!("{base}/classify");
        let chosen: Vec<Vec<u8>> = (0..ROUNDS).map(|r| bodies[pick(c, r)].clone()).collect();
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for body in chosen {
                let answer = client
                    .post(&url)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await;
                statuses.push(
                    answer
                        .map(|a| a.status().as_u16())
                        .map_err(|e| e.to_string()),
                );
            }
            statuses
        }));
    }
    let mut answered = std::collections::BTreeMap::new();
    for handle in clients {
        for status in handle.await.unwrap() {
            *answered.entry(status?).or_default() += 1;
        }
    }
    Ok(answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_256_mib_limit_an_overload_of_large_images_is_answered_and_not_killed() {
    let cgroup = LimitedCgroup::create(LIMIT_BYTES);
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("service.log");
    let images = work.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The shell moves itself into the cgroup, then becomes the service (no unsafe pre_exec).
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("echo $$ > \"$1/cgroup.procs\" && shift && exec \"$@\"")
        .arg("sh")
        .arg(&cgroup.dir)
        .arg(service_binary())
        .arg("--model-dir")
        .arg(paths::model_dir("efficientnet-lite0"))
        .arg("--dlr-library")
        .arg(paths::libdlr_path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--allowed-dir")
        .arg(&images)
        // Nothing in the environment bounds the arenas: the service does.
        .env_remove("MALLOC_ARENA_MAX")
        .env_remove("GLIBC_TUNABLES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    // Ready: /readyz answers 200 once the workers have warmed up (bounded, so a broken start
    // fails instead of hanging).
    let mut ready = false;
    for _ in 0..600 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the service exited at start ({status}):\n{}", log_text());
        }
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the service never became ready:\n{}", log_text());
    // It saw the cgroup's limit and sized its budget from it.
    let startup = log_text();
    assert!(
        startup.contains("memory after warm-up")
            && startup.contains(&cgroup.dir.display().to_string())
            && startup.contains("decode_memory_budget=\"derived\""),
        "{startup}"
    );
    // And it bounded glibc's malloc arenas without being told to.
    assert!(
        startup.contains("allocator: at most 2 malloc arenas (mallopt)"),
        "{startup}"
    );

    // So does /v1/model.
    let model: serde_json::Value = client
        .get(format!("{base}/v1/model"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let memory = &model["memory"];
    assert_eq!(memory["limit_bytes"], LIMIT_BYTES, "{memory}");
    assert!(
        memory["limit_source"]
            .as_str()
            .unwrap()
            .contains(&cgroup.dir.display().to_string()),
        "{memory}"
    );
    let budget = memory["decode_memory_budget_bytes"].as_u64().unwrap();
    assert!(
        (16 << 20..LIMIT_BYTES / 2).contains(&budget),
        "a budget well inside the limit: {memory}"
    );

    // 49 MP: about 147 MB decoded, more than any budget under this limit can hold (413 from
    // its header alone); with a budget that admits it (the former fixed 256 MiB), decoding it
    // beside the others gets the service killed.
    let huge = large_png(7000, 7000);
    // 12 MP: about 36 MB decoded, so several at once exceed what is left under the limit.
    let large = large_png(4000, 3000);
    let photo = std::fs::read(paths::photo("rocket.jpg")).unwrap();
    // 15 MB of noise: a body near the 16 MiB limit, so eight at once would hold 120 MB before
    // any decode.
    let noisy = noise_png(2200, 2200);
    assert!(noisy.len() > 14_000_000, "{}", noisy.len());
    let bodies = [huge, large.clone(), photo.clone(), noisy, large];

    // A mixed load, then every client sending the near-limit body at once (bodies are held in
    // memory from reading until the answer: without a bound on them, eight of these got the
    // service killed here).
    let octets = "application/octet-stream";
    let mixed = burst(&client, &base, octets, &bodies, |c, r| {
        (c + r) % bodies.len()
    })
    .await;
    let heavy_bodies = burst(&client, &base, octets, &bodies, |_, _| 3).await;
    // The same file by reference: read into memory before its decode, like a body.
    let heavy_file = images.join("noisy.png");
    std::fs::write(&heavy_file, &bodies[3]).unwrap();
    let reference = [serde_json::json!({ "path": heavy_file })
        .to_string()
        .into_bytes()];
    let heavy_files = burst(&client, &base, "application/json", &reference, |_, _| 0).await;
    for answered in [&mixed, &heavy_bodies, &heavy_files] {
        let answered = answered.as_ref().unwrap_or_else(|e| {
            panic!(
                "a request got no answer ({e}); OOM kills: {}\n{}",
                cgroup.oom_kills(),
                log_text()
            )
        });
        assert_eq!(
            answered.values().sum::<usize>(),
            CLIENTS * ROUNDS,
            "{answered:?}"
        );
        assert!(
            answered.keys().all(|s| [200, 413, 503].contains(s)),
            "only answers, refusals for size and for load: {answered:?}"
        );
        assert!(answered.contains_key(&200), "{answered:?}");
    }
    let (mixed, heavy_bodies, heavy_files) =
        (mixed.unwrap(), heavy_bodies.unwrap(), heavy_files.unwrap());
    assert!(mixed.contains_key(&413), "{mixed:?}");
    assert_eq!(
        cgroup.oom_kills(),
        0,
        "{mixed:?} {heavy_bodies:?} {heavy_files:?}\n{}",
        log_text()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the service is still running"
    );

    // Still answering afterwards.
    let answer: serde_json::Value = client
        .post(format!("{base}/classify"))
        .header("content-type", "image/jpeg")
        .body(photo)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["label"].is_string(), "{answer}");
    eprintln!(
        "answers under the {} MiB limit: mixed {mixed:?}, near-limit bodies {heavy_bodies:?}, \
         the same by file reference {heavy_files:?}",
        LIMIT_BYTES >> 20
    );
    child.kill().await.unwrap();
}
