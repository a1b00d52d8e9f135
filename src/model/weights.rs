//! Weight storage: safetensors files memory-mapped and used in place.
//!
//! A [`WeightStore`] opens `model.safetensors` or the shards listed in `model.safetensors.index.json`,
//! validates every header (offsets inside the file, sizes matching dtype x shape) and hands out
//! [`Weight`]s that borrow the mapping: a bf16 checkpoint stays bf16 in memory and is read straight from
//! the page cache. Only a tensor whose bytes are not aligned for its dtype (possible with hand-written
//! files) is copied once into an aligned buffer.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::{Dtype as StDtype, SafeTensors};

use crate::backend::cpu::memory::Mapping;
use crate::backend::{DType, Weight};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Option<DType>,
    stored_dtype: StDtype,
    shape: Vec<usize>,
    start: usize,
    len: usize,
}

/// A tensor of the store: either a safetensors header entry (decoded on `get`) or a ready weight
/// (built by an importer such as the GGUF one).
#[derive(Debug, Clone)]
enum Slot {
    File(Entry),
    Ready(Weight),
}

/// All tensors of a checkpoint, by name.
#[derive(Debug)]
pub struct WeightStore {
    /// The files tensors come from (the first names the checkpoint in errors).
    files: Vec<(PathBuf, Option<Arc<Mapping>>)>,
    entries: HashMap<String, Slot>,
}

impl WeightStore {
    /// Opens the safetensors file(s) of a model directory: the shards named by
    /// `model.safetensors.index.json` if present, else `model.safetensors`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            return Self::open_index(&index);
        }
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Self::open_files(&[single]);
        }
        Err(Error::format(
            dir,
            "no model.safetensors or model.safetensors.index.json in this directory",
        ))
    }

    fn open_index(index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let map = parse_index(&text, index)?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let shards: BTreeMap<&str, ()> = map.values().map(|f| (f.as_str(), ())).collect();
        let paths: Vec<PathBuf> = shards.keys().map(|f| dir.join(f)).collect();
        let store = Self::open_files(&paths)?;
        for (tensor, file) in &map {
            match store.entries.get(tensor) {
                Some(Slot::File(e)) if store.files[e.file].0.file_name() == Some(file.as_ref()) => {
                }
                _ => {
                    return Err(Error::tensor(
                        dir.join(file),
                        tensor,
                        "listed in model.safetensors.index.json but not in that shard",
                    ))
                }
            }
        }
        Ok(store)
    }

    /// Opens and validates the given safetensors files.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (fi, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            // Lives as long as any Weight that borrows it (Arc); the header is validated below so
            // every offset we keep lies inside the mapping.
            let map = Arc::new(Mapping::file(&file, path)?);
            add_file(&mut entries, fi, &map, path)?;
            files.push((path.clone(), Some(map)));
        }
        Ok(WeightStore { files, entries })
    }

    /// Validates safetensors bytes held in memory (a copy is kept); `path` names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let map = Arc::new(Mapping::copy_of(bytes));
        let mut entries = HashMap::new();
        add_file(&mut entries, 0, &map, path)?;
        Ok(WeightStore {
            files: vec![(path.to_path_buf(), Some(map))],
            entries,
        })
    }

    /// Renames every tensor `prefix + name` to `name` (e.g. trl's `pretrained_model.` wrapper).
    pub fn strip_prefix(&mut self, prefix: &str) {
        let renamed: Vec<(String, String)> = self
            .entries
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(|s| (k.clone(), s.to_owned())))
            .collect();
        for (old, new) in renamed {
            if let Some(e) = self.entries.remove(&old) {
                self.entries.insert(new, e);
            }
        }
    }

    /// A store of ready tensors keyed by HF names (what the GGUF importer produces), all attributed to
    /// `source` in error messages. The decoder reads it exactly like a safetensors checkpoint.
    pub fn from_weights(source: &Path, weights: HashMap<String, Weight>) -> Self {
        WeightStore {
            files: vec![(source.to_path_buf(), None)],
            entries: weights
                .into_iter()
                .map(|(k, w)| (k, Slot::Ready(w)))
                .collect(),
        }
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The file that holds `name` (or the first file, for error messages about absent tensors).
    pub fn file_of(&self, name: &str) -> PathBuf {
        let idx = match self.entries.get(name) {
            Some(Slot::File(e)) => e.file,
            _ => 0,
        };
        self.files.get(idx).map(|f| f.0.clone()).unwrap_or_default()
    }

    /// A tensor by name, checking its shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Weight> {
        let w = self.get_any(name)?;
        if w.shape != shape {
            return Err(Error::tensor(
                self.file_of(name),
                name,
                format!("shape {:?}, expected {:?}", w.shape, shape),
            ));
        }
        Ok(w)
    }

    /// A tensor by name if present (shape checked).
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Weight>> {
        if self.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A tensor by name, any shape.
    pub fn get_any(&self, name: &str) -> Result<Weight> {
        let e = self.entries.get(name).ok_or_else(|| {
            Error::tensor(
                self.files
                    .first()
                    .map(|(p, map)| match map {
                        // A safetensors checkpoint is named by its directory, an import by its file.
                        Some(_) => p.parent().unwrap_or(Path::new(".")).to_path_buf(),
                        None => p.clone(),
                    })
                    .unwrap_or_default(),
                name,
                "missing from the checkpoint",
            )
        })?;
        let e = match e {
            Slot::Ready(w) => return Ok(w.clone()),
            Slot::File(e) => e,
        };
        let (path, map) = &self.files[e.file];
        let dtype = e.dtype.ok_or_else(|| {
            Error::tensor(
                path,
                name,
                format!(
                    "dtype {:?} is not supported (F32, F16, BF16)",
                    e.stored_dtype
                ),
            )
        })?;
        let map = map
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("tensor `{name}` has no mapping")))?;
        Ok(Weight::from_map(
            map,
            e.start,
            e.len,
            dtype,
            e.shape.clone(),
        ))
    }
}

/// Reads the `weight_map` (tensor -> shard file name) of a `model.safetensors.index.json` with
/// contents `text`; `index` names it in errors. Shard names must be plain file names.
pub fn parse_index(text: &str, index: &Path) -> Result<BTreeMap<String, String>> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::format(index, format!("invalid JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::config(index, "weight_map", "missing or not an object"))?;
    let mut out = BTreeMap::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::config(
                index,
                format!("weight_map.{tensor}"),
                "expected a file name",
            )
        })?;
        if file.is_empty()
            || file.contains('/')
            || file.contains('\\')
            || file == ".."
            || file == "."
        {
            return Err(Error::config(
                index,
                format!("weight_map.{tensor}"),
                format!("shard name `{file}` must be a plain file name"),
            ));
        }
        out.insert(tensor.clone(), file.to_owned());
    }
    Ok(out)
}

/// Validates the safetensors file `map` (number `fi`, at `path`) and records its tensors.
fn add_file(
    entries: &mut HashMap<String, Slot>,
    fi: usize,
    map: &Mapping,
    path: &Path,
) -> Result<()> {
    let st = SafeTensors::deserialize(&map[..])
        .map_err(|e| Error::format(path, format!("invalid safetensors file: {e}")))?;
    let base = map.as_ptr() as usize;
    for (name, view) in st.tensors() {
        let data = view.data();
        let start = data.as_ptr() as usize - base;
        let dtype = match view.dtype() {
            StDtype::F32 => Some(DType::F32),
            StDtype::F16 => Some(DType::F16),
            StDtype::BF16 => Some(DType::BF16),
            _ => None,
        };
        let entry = Entry {
            file: fi,
            dtype,
            stored_dtype: view.dtype(),
            shape: view.shape().to_vec(),
            start,
            len: data.len(),
        };
        if entries.insert(name.clone(), Slot::File(entry)).is_some() {
            return Err(Error::tensor(path, name, "appears in more than one shard"));
        }
    }
    Ok(())
}
