//! Finding a native shared library at run time: the one discovery walk that `dlr-sys`
//! (libdlr) and `onnx-backend` (ONNX Runtime) share.
//!
//! Both backends open their runtime from a path chosen at run time, never by linking, and look
//! in the same places in the same order ([`Search::places`]):
//!
//! 1. an explicit path from configuration (a file, or a directory holding the library);
//! 2. the model directory (a model may ship the runtime it was compiled or validated with);
//! 3. the library's environment variable (file or directory);
//! 4. the Python package's copy, for the active virtualenv, conda environment, the user's
//!    `~/.local`, `/usr/local` and `/usr` (`<prefix>/lib/python3.*/{site,dist}-packages/…`,
//!    and where a wheel's data files land, `<prefix>/…`);
//! 5. the system: the dynamic loader by bare file name, or the system library directories.
//!
//! [`walk`] takes the first place that holds a library; an explicit place that holds none is
//! an error naming it alone (a user who names a library means that one), and when nothing is
//! found the error lists every place looked at, in order ([`NotFound`]). What "holds a library"
//! means — a file that exists, a versioned name in a directory, a successful `dlopen` — and
//! how a place is named in messages stay with each backend ([`Rules`], the `find` closure).
//!
//! Safe code only: the parts of discovery that need `unsafe` (opening the library, asking the
//! loader which file it opened) stay in `dlr-sys`.

#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

/// Which discovery rule proposed a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Named by configuration.
    Explicit,
    /// The model directory.
    ModelDirectory,
    /// Named by the library's environment variable.
    Environment,
    /// A Python package's copy.
    PythonPackage,
    /// The system: the dynamic loader's bare name, or a system library directory.
    System,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Explicit => "explicit path",
            Self::ModelDirectory => "model directory",
            Self::Environment => "environment variable",
            Self::PythonPackage => "Python package",
            Self::System => "system",
        })
    }
}

/// Where to look, in addition to the fixed places.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// A library file or a directory holding one, given by configuration or the command line.
    pub explicit: Option<PathBuf>,
    /// The model directory, which may carry its own copy.
    pub model_dir: Option<PathBuf>,
}

impl Search {
    /// Every place discovery would look under `rules`, in order, whether or not it exists (so
    /// that a "not found" error can say exactly where it looked).
    pub fn places(&self, rules: &Rules) -> Vec<Place> {
        let mut out = Vec::new();
        let mut push = |path: PathBuf, source| out.push(Place { path, source });
        if let Some(explicit) = &self.explicit {
            push(explicit.clone(), Source::Explicit);
        }
        if let Some(dir) = &self.model_dir {
            push(dir.clone(), Source::ModelDirectory);
        }
        if let Some(from_env) = std::env::var_os(rules.env_var).filter(|v| !v.is_empty()) {
            push(from_env.into(), Source::Environment);
        }
        for path in python_package_places(rules) {
            push(path, Source::PythonPackage);
        }
        match rules.system {
            System::Loader(name) => push(PathBuf::from(name), Source::System),
            System::Directories => {
                for dir in system_library_dirs() {
                    push(dir, Source::System);
                }
            }
        }
        out
    }
}

/// One place discovery considers: a file, a directory, or (for [`System::Loader`]) a bare
/// file name for the dynamic loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file, directory or bare name.
    pub path: PathBuf,
    /// The rule that proposed it.
    pub source: Source,
}

/// Where the system's copy is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Ask the dynamic loader for this bare file name (it honours `LD_LIBRARY_PATH` and
    /// ldconfig). For bindings that can try a `dlopen` and fall through when it fails.
    Loader(&'static str),
    /// Look into `LD_LIBRARY_PATH`'s directories, then `/usr/local/lib`,
    /// `/usr/lib/<multiarch>`, `/usr/lib`, `/lib/<multiarch>`, `/lib`. For bindings whose
    /// loader cannot fail gracefully (`ort` panics), so absence must be seen on disk first.
    Directories,
}

/// What differs between libraries: the variable, the Python package layout, the system rule.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The environment variable naming a library file or a directory holding one.
    pub env_var: &'static str,
    /// Where the Python package keeps the library below `site-packages` / `dist-packages`
    /// (a file or a directory, e.g. `dlr/libdlr.so` or `onnxruntime/capi`).
    pub python_package_path: &'static str,
    /// Where the package's wheel puts the library as data files, below each prefix
    /// (`<prefix>/dlr/libdlr.so`), if it does.
    pub python_data_path: Option<&'static str>,
    /// The system rule.
    pub system: System,
}

/// The prefixes a Python package may be installed under, most specific first.
fn python_prefixes() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            prefixes.push(value.into());
        }
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        prefixes.push(Path::new(&home).join(".local"));
    }
    prefixes.push("/usr/local".into());
    prefixes.push("/usr".into());
    prefixes
}

fn python_package_places(rules: &Rules) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for prefix in python_prefixes() {
        if let Some(data) = rules.python_data_path {
            out.push(prefix.join(data));
        }
        let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        for python in pythons {
            for packages in ["site-packages", "dist-packages"] {
                out.push(python.join(packages).join(rules.python_package_path));
            }
        }
    }
    out
}

fn system_library_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    out.push("/usr/local/lib".into());
    out.push(Path::new("/usr/lib").join(&multiarch));
    out.push("/usr/lib".into());
    out.push(Path::new("/lib").join(&multiarch));
    out.push("/lib".into());
    out
}

/// No place held the library. Lists the places looked at, in order: only the explicit one
/// when configuration named one, otherwise all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    /// Every place looked at, in order.
    pub searched: Vec<PathBuf>,
}

/// Walks `places` in order and returns what `find` makes of the first place that holds a
/// library, with that place. `find` returns `None` for a place without one; an explicit place
/// without one ends the walk (see the module docs).
pub fn walk<T>(
    places: Vec<Place>,
    mut find: impl FnMut(&Place) -> Option<T>,
) -> Result<(T, Place), NotFound> {
    for place in &places {
        match find(place) {
            Some(found) => return Ok((found, place.clone())),
            None if place.source == Source::Explicit => {
                return Err(NotFound {
                    searched: vec![place.path.clone()],
                });
            }
            None => {}
        }
    }
    Err(NotFound {
        searched: places.into_iter().map(|p| p.path).collect(),
    })
}

/// Paths as an error message lists them: `a, b, c`.
#[derive(Debug, Clone, Copy)]
pub struct PathList<'a>(pub &'a [PathBuf]);

impl fmt::Display for PathList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, path) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", path.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOADER: Rules = Rules {
        env_var: "NATIVE_LIB_DISCOVERY_TEST_UNSET",
        python_package_path: "pkg/libx.so",
        python_data_path: Some("pkg/libx.so"),
        system: System::Loader("libx.so"),
    };

    #[test]
    fn places_follow_the_documented_order() {
        let search = Search {
            explicit: Some("/opt/x".into()),
            model_dir: Some("/models/m".into()),
        };
        let places = search.places(&LOADER);
        assert_eq!(places[0].path, Path::new("/opt/x"));
        assert_eq!(places[0].source, Source::Explicit);
        assert_eq!(places[1].path, Path::new("/models/m"));
        assert_eq!(places[1].source, Source::ModelDirectory);
        let python: Vec<_> = places
            .iter()
            .filter(|p| p.source == Source::PythonPackage)
            .collect();
        assert!(
            python
                .iter()
                .any(|p| p.path == Path::new("/usr/local/pkg/libx.so"))
        );
        assert!(
            python
                .iter()
                .any(|p| p.path == Path::new("/usr/pkg/libx.so"))
        );
        let last = places.last().unwrap();
        assert_eq!(
            (last.path.as_path(), last.source),
            (Path::new("libx.so"), Source::System)
        );
    }

    #[test]
    fn system_directories_come_last_and_include_the_usual_ones() {
        let rules = Rules {
            system: System::Directories,
            python_data_path: None,
            ..LOADER
        };
        let places = Search::default().places(&rules);
        let first_system = places
            .iter()
            .position(|p| p.source == Source::System)
            .unwrap();
        assert!(
            places[first_system..]
                .iter()
                .all(|p| p.source == Source::System)
        );
        assert!(places.iter().any(|p| p.path == Path::new("/usr/lib")));
        assert!(
            !places
                .iter()
                .any(|p| p.path == Path::new("/usr/pkg/libx.so"))
        );
    }

    fn place(path: &str, source: Source) -> Place {
        Place {
            path: path.into(),
            source,
        }
    }

    #[test]
    fn the_first_place_holding_a_library_wins() {
        let places = vec![
            place("/a", Source::ModelDirectory),
            place("/b", Source::PythonPackage),
            place("/c", Source::System),
        ];
        let (found, at) = walk(places, |p| (p.path != Path::new("/a")).then_some(7)).unwrap();
        assert_eq!((found, at.path.as_path()), (7, Path::new("/b")));
    }

    #[test]
    fn an_explicit_place_without_a_library_is_not_fallen_through() {
        let places = vec![
            place("/named", Source::Explicit),
            place("/b", Source::PythonPackage),
        ];
        let err = walk(places, |p| (p.source != Source::Explicit).then_some(())).unwrap_err();
        assert_eq!(err.searched, vec![PathBuf::from("/named")]);
    }

    #[test]
    fn not_found_lists_every_place_in_order() {
        let places = vec![
            place("/a", Source::ModelDirectory),
            place("b", Source::System),
        ];
        let err = walk(places, |_| None::<()>).unwrap_err();
        assert_eq!(PathList(&err.searched).to_string(), "/a, b");
    }
}
