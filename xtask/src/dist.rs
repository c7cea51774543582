//! `cargo xtask dist`: release binaries for every device architecture, laid out the way the
//! Greengrass Development Kit (gdk) and `greengrass-cli` expect.
//!
//! ```text
//! cargo xtask dist                      # all components -> <workspace>/greengrass-build/
//! cargo xtask dist --gdk NAME           # gdk's custom build, run inside recipes/NAME/
//! cargo xtask dist --list               # print what would be built and where; build nothing
//! ```
//!
//! Options: `--component NAME` (repeatable; default: all), `--out DIR` (default:
//! `<workspace>/greengrass-build`), `--target TRIPLE` (repeatable; default: all of
//! [`TARGETS`]; a subset is for quick local checks — the recipes then name artifacts that are
//! missing), `--no-build` (lay out binaries already built), `--gdk NAME` (= `--component NAME
//! --out ./greengrass-build`, recipe written as `recipe.yaml`, the name gdk's publish reads).
//!
//! Output, per component: `<out>/recipes/<name>-<version>.yaml` (or `recipe.yaml` with `--gdk`)
//! and `<out>/artifacts/<name>/<version>/<file>` for every artifact in [`COMPONENTS`]. The
//! recipe is copied unchanged: its artifact URIs are gdk's placeholders
//! (`s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/<file>`), which `gdk component publish`
//! rewrites and which a local `greengrass-cli` deployment resolves by file name.
//!
//! Cross compilation: the aarch64 build links with Debian's `gcc-aarch64-linux-gnu`, the armv7
//! build with `gcc-arm-linux-gnueabihf`. The linker
//! and the C compiler the `cc` crate uses (the service's build script compiles a C kernel for
//! the target) are passed as environment variables by this task only, not by a committed
//! `.cargo/config.toml`, so that machines without the cross toolchain build everything else as
//! usual. Variables already set by the caller win. Before building, this task installs the rustup
//! target and the Debian cross compiler when missing (`setup::install_cross_toolchain`).
//!
//! Binaries use the `dist` profile of the workspace `Cargo.toml` (optimised, no LTO, stripped).
//! `CARGO_TARGET_DIR` is honoured.
//!
//! The end-to-end crate's deployment tests check the recipes against [`COMPONENTS`] (through
//! the `xtask` library) without building.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A device architecture the components ship for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Rust target triple.
    pub triple: &'static str,
    /// Greengrass `Platform.architecture` of the manifest that runs this build.
    pub greengrass_arch: &'static str,
    /// Suffix of artifact file names, also the ModelStore's folder name part (`DLR-resnet50-<arch>-cpu-…`).
    pub arch: &'static str,
    /// ELF `e_machine` of the binaries (checked after the build).
    pub elf_machine: u16,
    /// Cross C compiler and linker, when the target is not the build machine's.
    pub cross_gcc: Option<&'static str>,
}

/// x86_64 (Greengrass `amd64`).
pub const X86_64: Target = Target {
    triple: "x86_64-unknown-linux-gnu",
    greengrass_arch: "amd64",
    arch: "x86_64",
    elf_machine: 0x3e,
    cross_gcc: None,
};

/// 64-bit ARM (Greengrass `aarch64`), cross-compiled.
pub const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    greengrass_arch: "aarch64",
    arch: "aarch64",
    elf_machine: 0xb7,
    cross_gcc: Some("aarch64-linux-gnu-gcc"),
};

/// 32-bit ARM (Greengrass `arm`; armv7l, e.g. Raspberry Pi OS 32-bit), cross-compiled with
/// Debian's `gcc-arm-linux-gnueabihf`.
pub const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    greengrass_arch: "arm",
    arch: "armv7l",
    elf_machine: 0x28,
    cross_gcc: Some("arm-linux-gnueabihf-gcc"),
};

/// Every architecture built: those of AWS's component and its ModelStore.
pub const TARGETS: &[Target] = &[X86_64, AARCH64, ARMV7];

/// The Cargo profile of the shipped binaries (workspace `Cargo.toml`).
pub const PROFILE: &str = "dist";

/// One artifact file of a component: a binary of a workspace package built for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifact {
    /// Cargo package.
    pub package: &'static str,
    /// Binary target of that package.
    pub binary: &'static str,
    /// Architecture.
    pub target: Target,
}

impl Artifact {
    /// File name in `artifacts/<name>/<version>/` and in the recipe's URI: `<binary>-<arch>`.
    pub fn file_name(&self) -> String {
        format!("{}-{}", self.binary, self.target.arch)
    }

    /// Where cargo leaves the binary.
    pub fn built_path(&self, root: &Path) -> PathBuf {
        target_dir(root)
            .join(self.target.triple)
            .join(PROFILE)
            .join(self.binary)
    }
}

/// Fails unless the x86_64 adapter built by `dist` refuses `emulate`: the nucleus emulator is a
/// development tool and stays out of what devices run. (Run by `cargo xtask test` after `dist`.)
pub fn check_no_development_tools(root: &Path) -> crate::Result {
    let artifact = Artifact {
        package: "classify-ipc-adapter",
        binary: "classify-ipc-adapter",
        target: X86_64,
    };
    let path = artifact.built_path(root);
    let output = Command::new(&path)
        .args(["emulate", "--help"])
        .output()
        .map_err(|e| format!("{}: {e}; `cargo xtask dist` builds it", path.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("unrecognized subcommand 'emulate'") {
        return Err(format!(
            "the device build of classify-ipc-adapter carries the nucleus emulator (`emulate`); \
             dist must build it without the `emulator` feature ({}):\n{stderr}",
            output.status
        )
        .into());
    }
    eprintln!(
        "dist: {} has no `emulate` (development tools left out)",
        path.display()
    );
    Ok(())
}

/// A Greengrass component of this project.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// `ComponentName`, also the folder `recipes/<name>/` with `recipe.yaml` and `gdk-config.json`.
    pub name: &'static str,
    /// The Cargo package whose version is the component's version.
    pub version_package: &'static str,
    /// `(package, binary)` shipped once per target in [`TARGETS`].
    pub binaries: &'static [(&'static str, &'static str)],
}

impl Component {
    /// `recipes/<name>/`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join("recipes").join(self.name)
    }

    /// `recipes/<name>/recipe.yaml`.
    pub fn recipe_path(&self, root: &Path) -> PathBuf {
        self.dir(root).join("recipe.yaml")
    }

    /// Every artifact file of this component.
    pub fn artifacts(&self) -> Vec<Artifact> {
        TARGETS
            .iter()
            .flat_map(|&target| {
                self.binaries
                    .iter()
                    .map(move |&(package, binary)| Artifact {
                        package,
                        binary,
                        target,
                    })
            })
            .collect()
    }
}

/// The HTTP classification service.
pub const SERVICE: Component = Component {
    name: "com.example.ImageClassification.Service",
    version_package: "classify-service",
    binaries: &[("classify-service", "classify-service")],
};

/// The Greengrass IPC adapter.
pub const ADAPTER: Component = Component {
    name: "com.example.ImageClassification.IpcAdapter",
    version_package: "classify-ipc-adapter",
    binaries: &[("classify-ipc-adapter", "classify-ipc-adapter")],
};

/// The sample requester (the adapter binary's `request` subcommand, its own copy: running a
/// dependency's artifact would need `Execute: ALL` on it).
pub const REQUESTER: Component = Component {
    name: "com.example.ImageClassification.Requester",
    version_package: "classify-ipc-adapter",
    binaries: &[("classify-ipc-adapter", "classify-ipc-adapter")],
};

/// Scheduled classification to IoT Core, the drop-in for AWS's
/// `aws.greengrass.DLRImageClassification` (the adapter binary's `schedule` subcommand, its own
/// copy like the requester's).
pub const SCHEDULED: Component = Component {
    name: "com.example.ImageClassification.Scheduled",
    version_package: "classify-ipc-adapter",
    binaries: &[("classify-ipc-adapter", "classify-ipc-adapter")],
};

/// Every component, in dependency order.
pub const COMPONENTS: &[Component] = &[SERVICE, ADAPTER, REQUESTER, SCHEDULED];

/// The workspace root (this file's crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// The top-level `ComponentVersion` of a recipe, read without a YAML parser (xtask has none;
/// the deployment test checks this against a real parse).
pub fn recipe_version(recipe: &str) -> Option<String> {
    top_level_scalar(recipe, "ComponentVersion")
}

/// The top-level `ComponentName` of a recipe (see [`recipe_version`]).
pub fn recipe_name(recipe: &str) -> Option<String> {
    top_level_scalar(recipe, "ComponentName")
}

fn top_level_scalar(recipe: &str, key: &str) -> Option<String> {
    recipe.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.trim_start().strip_prefix(':')?;
        let value = value.split(" #").next().unwrap_or("").trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// File names of the artifact URIs in a recipe (`URI:` / `Uri:` keys), without a YAML parser.
pub fn recipe_artifact_files(recipe: &str) -> Vec<String> {
    recipe
        .lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            let (key, value) = line.split_once(':')?;
            if !key.trim().eq_ignore_ascii_case("uri") {
                return None;
            }
            let value = value.split(" #").next()?.trim().trim_matches(['"', '\'']);
            value.rsplit('/').next().map(str::to_owned)
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The folder of a workspace package that ships binaries.
pub fn package_dir(root: &Path, package: &str) -> crate::Result<PathBuf> {
    let dir = match package {
        "classify-service" => "service",
        "classify-ipc-adapter" => "ipc-adapter",
        other => return Err(format!("dist: no folder known for package {other}").into()),
    };
    Ok(root.join(dir))
}

/// The `version` of a package's `Cargo.toml` `[package]` table, read without a TOML parser.
pub fn package_version(root: &Path, package: &str) -> crate::Result<String> {
    let manifest = package_dir(root, package)?.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("version")
            && let Some(value) = value.trim_start().strip_prefix('=')
        {
            return Ok(value.trim().trim_matches('"').to_owned());
        }
    }
    Err(format!("{}: no [package] version", manifest.display()).into())
}

/// What `dist` writes for one component.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The component.
    pub component: Component,
    /// Its version, from its recipe.
    pub version: String,
    /// `<out>/recipes/<file>`.
    pub recipe_out: PathBuf,
    /// Its artifacts for the selected targets.
    pub artifacts: Vec<PlannedArtifact>,
}

/// One binary `dist` copies into the layout.
#[derive(Debug, Clone)]
pub struct PlannedArtifact {
    /// What it is.
    pub artifact: Artifact,
    /// Where cargo builds it.
    pub from: PathBuf,
    /// `<out>/artifacts/<name>/<version>/<file>`.
    pub to: PathBuf,
}

/// The files `dist` produces for `components` under `out`, with their sources.
pub fn plan(
    root: &Path,
    out: &Path,
    components: &[Component],
    targets: &[Target],
    gdk_recipe_name: bool,
) -> crate::Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for component in components {
        let recipe_path = component.recipe_path(root);
        let recipe = std::fs::read_to_string(&recipe_path)
            .map_err(|e| format!("{}: {e}", recipe_path.display()))?;
        if recipe_name(&recipe).as_deref() != Some(component.name) {
            return Err(format!(
                "{}: ComponentName is not {}",
                recipe_path.display(),
                component.name
            )
            .into());
        }
        let version = recipe_version(&recipe)
            .ok_or_else(|| format!("{}: no ComponentVersion", recipe_path.display()))?;
        let package_version = package_version(root, component.version_package)?;
        if version != package_version {
            return Err(format!(
                "{}: ComponentVersion {version} differs from {} {package_version}",
                recipe_path.display(),
                component.version_package
            )
            .into());
        }
        let artifacts = component.artifacts();
        let declared: Vec<String> = artifacts.iter().map(Artifact::file_name).collect();
        for file in recipe_artifact_files(&recipe) {
            if !declared.contains(&file) {
                return Err(format!(
                    "{}: artifact {file} is not built by `cargo xtask dist` (it builds {declared:?})",
                    recipe_path.display()
                )
                .into());
            }
        }
        let artifact_dir = out.join("artifacts").join(component.name).join(&version);
        let recipe_file = if gdk_recipe_name {
            "recipe.yaml".to_owned()
        } else {
            format!("{}-{version}.yaml", component.name)
        };
        planned.push(Planned {
            component: *component,
            recipe_out: out.join("recipes").join(recipe_file),
            artifacts: artifacts
                .iter()
                .filter(|a| targets.contains(&a.target))
                .map(|a| PlannedArtifact {
                    artifact: *a,
                    from: a.built_path(root),
                    to: artifact_dir.join(a.file_name()),
                })
                .collect(),
            version,
        });
    }
    Ok(planned)
}

#[derive(Debug)]
struct Options {
    components: Vec<Component>,
    targets: Vec<Target>,
    out: PathBuf,
    build: bool,
    list: bool,
    gdk: bool,
}

fn component_named(name: &str) -> crate::Result<Component> {
    COMPONENTS
        .iter()
        .find(|c| c.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<_> = COMPONENTS.iter().map(|c| c.name).collect();
            format!("dist: unknown component {name}; known: {names:?}").into()
        })
}

fn parse_args(args: &[String], root: &Path) -> crate::Result<Options> {
    let cwd = std::env::current_dir()?;
    let mut options = Options {
        components: Vec::new(),
        targets: Vec::new(),
        out: root.join("greengrass-build"),
        build: true,
        list: false,
        gdk: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("dist: {arg} needs {what}"))
        };
        match arg.as_str() {
            "--component" => options.components.push(component_named(&value("a name")?)?),
            "--target" => {
                let triple = value("a target triple")?;
                let target = TARGETS
                    .iter()
                    .find(|t| t.triple == triple)
                    .ok_or_else(|| format!("dist: unsupported target {triple}"))?;
                options.targets.push(*target);
            }
            "--out" => options.out = cwd.join(value("a directory")?),
            "--gdk" => {
                options.components = vec![component_named(&value("a component name")?)?];
                options.out = cwd.join("greengrass-build");
                options.gdk = true;
            }
            "--no-build" => options.build = false,
            "--list" => options.list = true,
            other => return Err(format!("dist: unknown argument {other}").into()),
        }
    }
    if options.components.is_empty() {
        options.components = COMPONENTS.to_vec();
    }
    if options.targets.is_empty() {
        options.targets = TARGETS.to_vec();
    }
    Ok(options)
}

/// `cargo xtask dist [--component NAME]… [--target TRIPLE]… [--out DIR] [--gdk NAME] [--no-build] [--list]`.
pub fn run(args: &[String]) -> crate::Result {
    let root = workspace_root();
    let options = parse_args(args, &root)?;
    let planned = plan(
        &root,
        &options.out,
        &options.components,
        &options.targets,
        options.gdk,
    )?;
    if options.list {
        for p in &planned {
            println!("{} {}", p.component.name, p.version);
            println!("  {}", p.recipe_out.display());
            for PlannedArtifact { from, to, .. } in &p.artifacts {
                println!("  {} <- {}", to.display(), from.display());
            }
        }
        return Ok(());
    }
    if options.build {
        build(&root, &planned, &options.targets)?;
    }
    lay_out(&root, &planned)
}

fn build(root: &Path, planned: &[Planned], targets: &[Target]) -> crate::Result {
    if targets.iter().any(|t| t.cross_gcc.is_some()) {
        crate::setup::install_cross_toolchain()?;
    }
    let mut packages: Vec<&str> = planned
        .iter()
        .flat_map(|p| p.component.binaries.iter().map(|&(package, _)| package))
        .collect();
    packages.sort_unstable();
    packages.dedup();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Without default features: the device binaries leave out development tools (the
    // adapter's `emulate`, the nucleus emulator). `check_no_development_tools` verifies it.
    cargo.args([
        "build",
        "--profile",
        PROFILE,
        "--bins",
        "--no-default-features",
    ]);
    for package in packages {
        cargo.args(["--package", package]);
    }
    // One cargo invocation for every target: build scripts and proc macros compile once.
    for target in targets {
        cargo.args(["--target", target.triple]);
        if let Some(gcc) = target.cross_gcc {
            let triple_env = target.triple.replace('-', "_");
            let linker_var = format!("CARGO_TARGET_{}_LINKER", triple_env.to_uppercase());
            for var in [linker_var, format!("CC_{triple_env}")] {
                if std::env::var_os(&var).is_none() {
                    cargo.env(var, gcc);
                }
            }
        }
    }
    cargo.current_dir(root);
    eprintln!("+ {cargo:?}");
    let started = std::time::Instant::now();
    let status = cargo.status()?;
    if !status.success() {
        return Err(format!("cargo build for dist failed: {status}").into());
    }
    eprintln!(
        "dist: built {} target(s) in {:.0} s",
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// ELF `e_machine` of a file, if it is a little-endian ELF file (32- or 64-bit: the field is
/// at the same offset in both).
fn elf_machine(path: &Path) -> crate::Result<u16> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)?.read_exact(&mut header)?;
    if &header[..4] != b"\x7fELF" || !matches!(header[4], 1 | 2) || header[5] != 1 {
        return Err(format!("{}: not a little-endian ELF file", path.display()).into());
    }
    Ok(u16::from_le_bytes([header[18], header[19]]))
}

fn lay_out(root: &Path, planned: &[Planned]) -> crate::Result {
    for p in planned {
        let recipe_dir = p.recipe_out.parent().expect("recipe path has a parent");
        std::fs::create_dir_all(recipe_dir)?;
        std::fs::copy(p.component.recipe_path(root), &p.recipe_out)?;
        let component_dir = p
            .recipe_out
            .parent()
            .and_then(Path::parent)
            .expect("out dir")
            .join("artifacts")
            .join(p.component.name);
        // Stale versions of this component would be deployed or uploaded too.
        if component_dir.exists() {
            std::fs::remove_dir_all(&component_dir)?;
        }
        for PlannedArtifact { artifact, from, to } in &p.artifacts {
            let machine =
                elf_machine(from).map_err(|e| format!("{e} (run without --no-build?)"))?;
            if machine != artifact.target.elf_machine {
                return Err(format!(
                    "{}: ELF machine {machine:#x}, expected {:#x} for {}",
                    from.display(),
                    artifact.target.elf_machine,
                    artifact.target.triple
                )
                .into());
            }
            std::fs::create_dir_all(to.parent().expect("artifact path has a parent"))?;
            std::fs::copy(from, to)?;
            set_executable(to)?;
        }
        eprintln!(
            "dist: {} {} -> {}",
            p.component.name,
            p.version,
            p.recipe_out.display()
        );
    }
    Ok(())
}

fn set_executable(path: &Path) -> crate::Result {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
