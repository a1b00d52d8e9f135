//! The GGUF file format (versions 2 and 3), read from a memory map without trusting a single byte.
//!
//! Layout: `"GGUF"`, `u32` version, `u64` tensor count, `u64` metadata count, then the metadata
//! key/value pairs, then one info record per tensor (name, dims with the fastest-varying first, ggml
//! type, offset), then padding to `general.alignment` (32 by default) and the tensor data section.
//! All integers are little-endian.
//!
//! Every count, length, dimension and offset is checked against the bytes that remain before it is used:
//! a corrupt or hostile file gives an [`Error::Format`] naming the file and the key or tensor, never a
//! panic, an out-of-bounds read or an allocation larger than the file. [`parse`] works on any byte
//! slice (the fuzz target and the mutation test call it directly); [`GgufFile::open`] maps a file and
//! parses it. What the tensors and keys *mean* (config, HF names, tokenizer) lives in
//! [`crate::model::gguf_import`]; turning quantized blocks into floats lives in [`crate::model::quant`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::cpu::memory::Mapping;

use crate::error::{Error, Result};
use crate::model::quant::GgmlType;

/// Tensor rank limit of ggml.
const MAX_DIMS: u32 = 4;
/// Nesting limit for arrays of arrays (GGUF allows it; nobody uses more than one level).
const MAX_ARRAY_DEPTH: usize = 2;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (the row length). HF shape is the reverse.
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Byte offset of the data from the start of the file (already bounds-checked).
    pub start: usize,
    /// Byte length of the data.
    pub len: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// Shape in HF / row-major order (slowest first).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// The parsed header of a GGUF file: version, metadata and tensor infos.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    /// Start of the tensor data section.
    pub data_start: usize,
}

/// A memory-mapped GGUF file.
#[derive(Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub header: GgufHeader,
    map: Arc<Mapping>,
}

impl GgufFile {
    /// Maps and parses `path`, its tensors faulted in (on huge pages where possible).
    pub fn open(path: &Path) -> Result<GgufFile> {
        Self::open_with(path, Mapping::file)
    }

    /// Maps and parses `path` with none of it read ahead: for using the metadata only (the
    /// tokenizer), whose pages are then the only ones made resident.
    pub fn open_metadata(path: &Path) -> Result<GgufFile> {
        Self::open_with(path, Mapping::file_lazy)
    }

    fn open_with(path: &Path, map: fn(&File, &Path) -> Result<Mapping>) -> Result<GgufFile> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // Shared through an Arc by every weight that borrows it; every offset we keep is checked
        // against the mapping's length by `parse`.
        let map = map(&file, path)?;
        let header = parse(&map, path)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            header,
            map: Arc::new(map),
        })
    }

    /// Parses GGUF bytes held in memory (a copy is kept); `path` names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<GgufFile> {
        let map = Mapping::copy_of(bytes);
        let header = parse(&map, path)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            header,
            map: Arc::new(map),
        })
    }

    /// The shared mapping (tensor `start`/`len` index into it).
    pub fn map(&self) -> &Arc<Mapping> {
        &self.map
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        // `parse` checked start + len <= map.len() for every TensorInfo it produced; `get` keeps this
        // total even for a TensorInfo built by hand.
        self.map.get(t.start..t.start + t.len).unwrap_or(&[])
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.header.metadata.get(key)
    }

    /// A tensor info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensors.iter().find(|t| t.name == name)
    }
}

/// True when `path` starts with the GGUF magic.
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| &magic == b"GGUF")
        .unwrap_or(false)
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str, msg: impl std::fmt::Display) -> Error {
        Error::format(
            self.path,
            format!("GGUF {what}: {msg} (at byte {})", self.pos),
        )
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(
                what,
                format!(
                    "needs {n} bytes but only {} remain (truncated file?)",
                    self.remaining()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must fit the remaining bytes when each item needs at least `min_item` bytes.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let max = (self.remaining() / min_item.max(1)) as u64;
        if n > max {
            return Err(self.err(
                what,
                format!(
                    "count {n} is impossible: only {} bytes remain",
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(what, "string is not valid UTF-8"))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(key)?[0]),
            1 => MetaValue::I8(self.array::<1>(key)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => MetaValue::U32(self.u32(key)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.err(key, format!("bool byte {b} is neither 0 nor 1"))),
            },
            8 => MetaValue::Str(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(key, "arrays nested too deeply"));
                }
                let elem = self.u32(key)?;
                let min = min_value_size(elem)
                    .ok_or_else(|| self.err(key, format!("unknown array element type {elem}")))?;
                let n = self.count(key, min)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(elem, key, depth + 1)?);
                }
                MetaValue::Array(v)
            }
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            other => return Err(self.err(key, format!("unknown value type {other}"))),
        })
    }
}

/// The fewest bytes a value of GGUF type `ty` can occupy, or None for an unknown type.
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

/// Parses a GGUF header from `buf` (the whole file) and checks every tensor's data range.
/// `path` only names the file in errors.
pub fn parse(buf: &[u8], path: &Path) -> Result<GgufHeader> {
    let mut c = Cursor { buf, pos: 0, path };
    let version = read_preamble(&mut c)?;
    // Minimum sizes: a tensor info is name(8) + n_dims(4) + type(4) + offset(8);
    // a key/value is key(8) + type(4) + 1 byte of value.
    let n_tensors = c.count("tensor count", 24)?;
    let n_kv = c.count("metadata count", 13)?;
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c.string(&format!("metadata key #{i}"))?;
        let ty = c.u32(&key)?;
        let v = c.value(ty, &key, 0)?;
        if metadata.insert(key.clone(), v).is_some() {
            return Err(c.err(&key, "duplicate metadata key"));
        }
    }
    let alignment = alignment(&metadata, path)?;
    let raws = (0..n_tensors)
        .map(|i| read_tensor_info(&mut c, i))
        .collect::<Result<Vec<_>>>()?;
    let data_start = c.pos.div_ceil(alignment) * alignment;
    let mut tensors = Vec::with_capacity(raws.len());
    let mut seen = std::collections::HashSet::new();
    for r in raws {
        if !seen.insert(r.name.clone()) {
            return Err(Error::tensor(path, &r.name, "GGUF: duplicate tensor name"));
        }
        tensors.push(place_tensor(r, data_start, alignment, buf.len(), path)?);
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        data_start,
    })
}

/// The magic and the version (2 or 3).
fn read_preamble(c: &mut Cursor) -> Result<u32> {
    let magic = c.array::<4>("magic")?;
    if &magic != b"GGUF" {
        return Err(Error::format(
            c.path,
            format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")"),
        ));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(Error::format(
            c.path,
            format!("GGUF version {version} is not supported (2 and 3 are)"),
        ));
    }
    Ok(version)
}

/// `general.alignment` (default 32): a power of two up to 1 MiB.
fn alignment(metadata: &BTreeMap<String, MetaValue>, path: &Path) -> Result<usize> {
    match metadata.get("general.alignment") {
        None => Ok(32),
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => Ok(a as usize),
            _ => Err(Error::format(
                path,
                format!("GGUF general.alignment {v:?} must be a power of two up to 1 MiB"),
            )),
        },
    }
}

/// A tensor info as stored: name, dims, type and data offset.
struct RawTensor {
    name: String,
    dims: Vec<usize>,
    ty: GgmlType,
    offset: u64,
}

/// Tensor info `#i`, its dims bounded by the file's size.
fn read_tensor_info(c: &mut Cursor, i: usize) -> Result<RawTensor> {
    let (path, file_len) = (c.path, c.buf.len());
    let name = c.string(&format!("tensor #{i} name"))?;
    let terr = |msg: String| Error::tensor(path, &name, format!("GGUF tensor info: {msg}"));
    let n_dims = c.u32(&name)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(terr(format!(
            "{n_dims} dimensions (1 to {MAX_DIMS} allowed)"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut numel: u64 = 1;
    for _ in 0..n_dims {
        let d = c.u64(&name)?;
        numel = numel
            .checked_mul(d)
            .filter(|&n| n <= file_len as u64 * 8)
            .ok_or_else(|| {
                terr(format!(
                    "dimension {d} makes the tensor larger than the file"
                ))
            })?;
        dims.push(d as usize);
    }
    let ty_id = c.u32(&name)?;
    let ty = GgmlType::from_id(ty_id)
        .ok_or_else(|| terr(format!("unknown or unsupported ggml type {ty_id}")))?;
    let offset = c.u64(&name)?;
    Ok(RawTensor {
        name,
        dims,
        ty,
        offset,
    })
}

/// The tensor's byte range in the file, checked: whole blocks per row, an aligned offset, data
/// inside the file.
fn place_tensor(
    r: RawTensor,
    data_start: usize,
    alignment: usize,
    file_len: usize,
    path: &Path,
) -> Result<TensorInfo> {
    let terr = |msg: String| Error::tensor(path, &r.name, format!("GGUF: {msg}"));
    let row = r.dims[0];
    if !row.is_multiple_of(r.ty.block_size()) {
        return Err(terr(format!(
            "row length {row} is not a multiple of the {} block size {}",
            r.ty.name(),
            r.ty.block_size()
        )));
    }
    let numel: usize = r.dims.iter().product();
    let len = numel / r.ty.block_size() * r.ty.type_size();
    if !r.offset.is_multiple_of(alignment as u64) {
        return Err(terr(format!(
            "data offset {} is not aligned to {alignment}",
            r.offset
        )));
    }
    let start = (data_start as u64)
        .checked_add(r.offset)
        .filter(|s| {
            s.checked_add(len as u64)
                .is_some_and(|e| e <= file_len as u64)
        })
        .ok_or_else(|| {
            terr(format!(
                "data [{} + {len} bytes] lies outside the file ({file_len} bytes; truncated?)",
                r.offset,
            ))
        })? as usize;
    Ok(TensorInfo {
        name: r.name,
        dims: r.dims,
        ty: r.ty,
        start,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(version.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }

    #[test]
    fn rejects_bad_magic_version_and_counts() {
        let p = Path::new("x.gguf");
        let e = parse(b"GGML\x03\0\0\0", p).unwrap_err().to_string();
        assert!(e.contains("not a GGUF file"), "{e}");
        let e = parse(&header(1, 0, 0), p).unwrap_err().to_string();
        assert!(e.contains("version 1"), "{e}");
        let e = parse(&header(3, u64::MAX, 0), p).unwrap_err().to_string();
        assert!(
            e.contains("tensor count") && e.contains("impossible"),
            "{e}"
        );
        let e = parse(&header(3, 0, 1 << 40), p).unwrap_err().to_string();
        assert!(e.contains("metadata count"), "{e}");
        assert_eq!(parse(&header(2, 0, 0), p).unwrap().tensors.len(), 0);
    }
}
