//! Creating a model handle: how libdlr gets the model's parameters.
//!
//! `CreateDLRModel` is given the directory and reads the `.params` file itself: DLR 1.6 streams
//! the whole file into memory (through a string stream, then a string) before the graph
//! runtime copies every tensor into its own arrays, so peak memory while loading is a multiple
//! of the parameters. `CreateDLRModelFromModelElem` accepts the parameters as bytes instead;
//! [`ParamsLoading::Mapped`] maps the file read-only and passes the mapping, so the only
//! anonymous copy is the runtime's own arrays. The mapping's pages are clean file cache: the
//! kernel can drop them under pressure, and they leave the process when the mapping is dropped
//! right after the handle exists. Measured figures: `BENCHMARKS.md`, "Peak RSS while loading
//! the model".
//!
//! The other parts (graph, kernels, metadata) are passed as paths: the kernel library must be
//! a file because it is `dlopen`ed, and the graph and metadata are small. The mapped way is
//! used only where it is unambiguous — a TVM graph model with exactly one file of each kind
//! and a libdlr that exports the entry point; anything else (a Relay VM model, several
//! candidate files whose choice is libdlr's, a params file that cannot be mapped) is left to
//! `CreateDLRModel`.

use std::ffi::{CString, c_void};
use std::path::Path;

use crate::error::Error;
use crate::ffi::{DEVICE_CPU, DlrModelElem, DlrModelElemType, DlrModelHandle};
use crate::library::DlrLibrary;
use crate::model::{ModelParts, c_path};

/// How libdlr gets a model's parameters when a handle is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamsLoading {
    /// Map the `.params` file read-only and hand libdlr the mapping
    /// (`CreateDLRModelFromModelElem`), so that libdlr makes no copy of the file of its own.
    /// Falls back to [`Self::ReadByDlr`] where that is not possible (see the module docs).
    #[default]
    Mapped,
    /// Let libdlr read the directory itself (`CreateDLRModel`), as DLR's own APIs do.
    ReadByDlr,
}

/// Creates a handle for the model whose files are `parts`, the way `loading` asks for.
///
/// The caller holds the library's lifecycle lock and owns the returned handle.
pub(crate) fn create_handle(
    library: &DlrLibrary,
    model_dir: &Path,
    parts: &ModelParts,
    loading: ParamsLoading,
) -> Result<DlrModelHandle, Error> {
    let mut handle: DlrModelHandle = std::ptr::null_mut();
    let from_elems = library.api().create_model_from_model_elem;
    let mapped = match (loading, from_elems, single_graph_model(parts)) {
        (ParamsLoading::Mapped, Some(create), Some(files)) => {
            map_params(files.params).map(|params| (create, files, params))
        }
        _ => None,
    };
    let (status, call) = match mapped {
        Some((create, files, params)) => {
            let graph = c_path(files.graph)?;
            let kernels = c_path(files.kernels)?;
            let meta = files.meta.map(c_path).transpose()?;
            // libdlr reads the parameters front to back once: let the kernel read ahead and
            // drop pages behind. Only a hint, so its failure changes nothing.
            let _ = params.advise(memmap2::Advice::Sequential);
            let path_elem = |elem_type, path: &CString| DlrModelElem {
                elem_type,
                path: path.as_ptr(),
                data: std::ptr::null(),
                data_size: 0,
            };
            let mut elems = vec![
                path_elem(DlrModelElemType::TvmGraph, &graph),
                path_elem(DlrModelElemType::TvmLib, &kernels),
                DlrModelElem {
                    elem_type: DlrModelElemType::TvmParams,
                    path: std::ptr::null(),
                    data: params.as_ptr().cast::<c_void>(),
                    data_size: params.len(),
                },
            ];
            if let Some(meta) = &meta {
                elems.push(path_elem(DlrModelElemType::NeoMetadata, meta));
            }
            // SAFETY: `handle` is a valid out-pointer; `elems` holds `elems.len()` elements
            // whose paths are NUL-terminated and whose data pointer and size describe the
            // mapping, all alive until the call returns.
            let status = unsafe { create(&mut handle, elems.as_ptr(), elems.len(), DEVICE_CPU, 0) };
            (status, "CreateDLRModelFromModelElem")
        }
        None => {
            let dir = c_path(model_dir)?;
            // SAFETY: `handle` is a valid out-pointer; `dir` is NUL-terminated and outlives
            // the call.
            let status =
                unsafe { (library.api().create_model)(&mut handle, dir.as_ptr(), DEVICE_CPU, 0) };
            (status, "CreateDLRModel")
        }
    };
    if status != 0 || handle.is_null() {
        return Err(library.last_error(call));
    }
    Ok(handle)
}

/// Maps the params file read-only, or `None` when it cannot be: then libdlr reads the file
/// itself, and reports whatever is really wrong with it (a file system that cannot map, say,
/// is not an error).
fn map_params(path: &Path) -> Option<memmap2::Mmap> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: the mapping is read-only and private, and is dropped as soon as libdlr returns
    // from creating the handle; libdlr only reads it during that call (the graph runtime
    // copies every tensor out). A model file truncated or rewritten by another process while
    // it is being loaded is outside what any loader can defend against; model directories are
    // deployed artifacts, replaced by moving in a new directory.
    unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) }.ok()
}

/// The files of a TVM graph model when the directory names each part unambiguously.
struct GraphModelFiles<'a> {
    graph: &'a Path,
    kernels: &'a Path,
    params: &'a Path,
    meta: Option<&'a Path>,
}

fn single_graph_model(parts: &ModelParts) -> Option<GraphModelFiles<'_>> {
    fn one(files: &[std::path::PathBuf]) -> Option<&Path> {
        match files {
            [file] => Some(file.as_path()),
            _ => None,
        }
    }
    if !parts.relay_vm.is_empty() || parts.metas.len() > 1 {
        return None;
    }
    Some(GraphModelFiles {
        graph: one(&parts.graphs)?,
        kernels: one(&parts.kernels)?,
        params: one(&parts.params)?,
        meta: parts.metas.first().map(|p| p.as_path()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parts(names: &[&str]) -> ModelParts {
        let of = |ext: &str| -> Vec<PathBuf> {
            names
                .iter()
                .filter(|n| n.ends_with(ext))
                .map(PathBuf::from)
                .collect()
        };
        ModelParts {
            kernels: of(".so"),
            relay_vm: of(".ro"),
            params: of(".params"),
            graphs: of(".json"),
            metas: of(".meta"),
        }
    }

    #[test]
    fn a_plain_graph_model_is_loaded_mapped() {
        let p = parts(&["m.so", "m.params", "m.json", "m.meta"]);
        let files = single_graph_model(&p).unwrap();
        assert_eq!(files.params, Path::new("m.params"));
        assert_eq!(files.meta, Some(Path::new("m.meta")));
        assert!(single_graph_model(&parts(&["m.so", "m.params", "m.json"])).is_some());
    }

    #[test]
    fn ambiguous_or_relay_vm_directories_are_left_to_libdlr() {
        for names in [
            &["a.so", "b.so", "m.params", "m.json"][..],
            &["m.so", "m.params", "a.json", "b.json"],
            &["m.so", "a.params", "b.params", "m.json"],
            &["m.so", "m.params", "m.json", "a.meta", "b.meta"],
            &["m.so", "m.ro", "m.params", "m.json"],
        ] {
            assert!(single_graph_model(&parts(names)).is_none(), "{names:?}");
        }
    }
}
