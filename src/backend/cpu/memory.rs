//! Memory the kernels stream: checkpoint files mapped read-only, and large owned buffers, both
//! placed where Linux can back them with transparent huge pages.
//!
//! Batch-1 decode reads every weight byte once per token, so it runs at the rate memory is read.
//! That rate depends on the page size: on the 2-core Xeon, the harness's 16-stream read loop ran at
//! 21-25 GB/s over 4 KiB pages and 29-31 GB/s over 2 MiB pages of the same size of buffer,
//! alternating (likely causes: the hardware prefetcher stops at every 4 KiB boundary, and every 4
//! KiB page costs a TLB miss, in a VM a two-level walk), and batch-1 decode of the 0.5B shape ran
//! at 18.7-20.9 tok/s with its weights in 4 KiB pages against 23.4-25.0 in 2 MiB ones. So on Linux
//! a [`Mapping`] reserves its address range at a huge-page boundary, asks for huge pages
//! (`MADV_HUGEPAGE`) and faults everything in at once (`MADV_POPULATE_READ`).
//!
//! For an anonymous buffer that is all it takes. A file mapping gets huge pages where the page
//! cache holds the file in huge folios, which filesystems with large folios (XFS, ext4 from Linux
//! 6.16) allocate when they read it for a mapping that asked for them. A file that is already cached
//! in small folios (just written or copied, or read by a tool that did not ask) stays in 4 KiB
//! pages, and so does a file of which the kernel dropped some cached parts (here, after test-suite
//! runs) and a mapping without that advice read them again. [`Mapping::file`] detects that
//! (`FilePmdMapped` in `/proc/self/smaps`) and then drops the file's cached pages and maps it
//! again, which costs one read of the file from storage and leaves it cached in huge folios for
//! every later load. Where none of the file was in huge pages, it first tries one huge page's
//! worth: a filesystem without large folios (or pages another process holds) then costs that one
//! huge page's read, and the mapping stays in 4 KiB pages. Dropping clean cached pages loses
//! nothing: the kernel reads them again from the file. [`Mapping::huge_fraction`] tells how much
//! of a mapping ended up in huge pages (`rstar bench` reports it). Elsewhere, and where huge pages
//! are off, mappings are plain `memmap2` maps and owned buffers plain vectors.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crate::error::{Error, Result};

/// A read-only file mapping or a zero-initialised anonymous buffer (see the module doc).
pub struct Mapping {
    /// The first byte (never null; dangling when `len == 0`).
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    owner: Owner,
}

/// Anonymous buffers take huge pages from this many huge pages up (smaller ones gain little and
/// would round up to a whole huge page).
#[cfg(target_os = "linux")]
const MIN_HUGE: usize = 2;

/// What keeps `ptr..ptr + len` alive. (The kernels reach every weight through [`Mapping`]'s
/// `Deref`, so that is a plain pointer and length, with no branch on this.)
enum Owner {
    /// An address range this mapping placed: `span` bytes (`len` rounded up to the page size),
    /// unmapped on drop; anonymous read-write memory when `writable`, else a read-only file.
    #[cfg(target_os = "linux")]
    Placed {
        span: usize,
        writable: bool,
    },
    /// Held for its drop, never read (as `Vec`'s).
    Mmap(#[allow(dead_code)] memmap2::Mmap),
    Vec(#[allow(dead_code)] Vec<u64>),
}

// SAFETY: the memory is plain bytes owned by this value (read-only for files; for anonymous
// buffers mutable only through `&mut self`), so sharing and sending it across threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapping({} bytes)", self.len)
    }
}

impl Deref for Mapping {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `owner` keeps `len` readable bytes at `ptr` alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

/// Hands the heap's free pages back to the kernel. glibc keeps freed blocks mapped (counted in
/// RSS); after a load that built large temporaries (a tokenizer made from GGUF metadata: tens of
/// MB on a 150k vocabulary) this takes them out of the process's resident memory.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers; it only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Mapping {
    /// Maps `file` (at `path`, for errors) read-only, on huge pages where possible.
    pub fn file(file: &File, path: &Path) -> Result<Mapping> {
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let len = usize::try_from(len)
            .map_err(|_| Error::format(path, "file larger than the address space"))?;
        #[cfg(target_os = "linux")]
        if len > 0 {
            if let Some(h) = linux::huge_page_size() {
                return linux::map_file(file, len, h).map_err(|e| Error::io(path, e));
            }
        }
        Self::file_lazy(file, path)
    }

    /// Maps `file` read-only with no advice: pages are read as they are touched (for reading a
    /// small part of a large file, such as a GGUF file's metadata, without making all of it
    /// resident).
    pub fn file_lazy(file: &File, path: &Path) -> Result<Mapping> {
        // SAFETY: the mapping is read-only; like every mmap-based loader we assume the file is not
        // truncated or rewritten while mapped (the callers validate every offset they keep).
        let m = unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io(path, e))?;
        Ok(Mapping {
            ptr: std::ptr::NonNull::new(m.as_ptr() as *mut u8)
                .unwrap_or(std::ptr::NonNull::dangling()),
            len: m.len(),
            owner: Owner::Mmap(m),
        })
    }

    /// `len` zero bytes of anonymous memory, 8-byte aligned (on huge pages where possible: from
    /// two huge pages up).
    pub fn zeroed(len: usize) -> Mapping {
        #[cfg(target_os = "linux")]
        if let Some(h) = linux::huge_page_size() {
            if len >= MIN_HUGE * h {
                if let Ok(m) = linux::map_anon(len, h) {
                    return m;
                }
            }
        }
        let mut v = vec![0u64; len.div_ceil(8)];
        Mapping {
            ptr: std::ptr::NonNull::new(v.as_mut_ptr() as *mut u8)
                .unwrap_or(std::ptr::NonNull::dangling()),
            len,
            owner: Owner::Vec(v),
        }
    }

    /// An anonymous, 8-byte aligned copy of `bytes` (a model held in memory rather than a file).
    pub fn copy_of(bytes: &[u8]) -> Mapping {
        let mut m = Mapping::zeroed(bytes.len());
        if let Some(dst) = m.bytes_mut() {
            dst.copy_from_slice(bytes);
        }
        m
    }

    /// The bytes of an anonymous buffer, writable; `None` for a file mapping.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        match self.owner {
            #[cfg(target_os = "linux")]
            Owner::Placed {
                writable: false, ..
            } => None,
            Owner::Mmap(_) => None,
            // SAFETY: anonymous memory, readable and writable for `len` bytes; `&mut self` makes
            // this the only reference.
            _ => Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }),
        }
    }

    /// The fraction of the bytes that lie in huge pages of the whole huge pages the mapping spans
    /// (`None` where the kernel does not say: not Linux, or no `/proc`).
    pub fn huge_fraction(&self) -> Option<f64> {
        match self.owner {
            #[cfg(target_os = "linux")]
            Owner::Placed { .. } => {
                let h = linux::huge_page_size()?;
                let whole = self.len / h * h;
                if whole == 0 {
                    return Some(0.0);
                }
                let at = self.ptr.as_ptr() as usize;
                Some(linux::huge_bytes(at, at + self.len)? as f64 / whole as f64)
            }
            _ if cfg!(target_os = "linux") => Some(0.0),
            _ => None,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Owner::Placed { span, .. } = self.owner {
            // SAFETY: `ptr..ptr + span` is a range this mapping placed and nothing borrows it any
            // more (`&self` borrows ended).
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), span) };
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) mod linux {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::ptr::NonNull;
    use std::sync::OnceLock;

    use super::{Mapping, Owner};

    /// A file mapping with less than this fraction of its whole huge pages in huge pages is read
    /// again (see [`map_file`]).
    const REPAIR_BELOW: f64 = 0.95;

    /// The PMD huge-page size, where transparent huge pages are on (`always` or `madvise`).
    pub fn huge_page_size() -> Option<usize> {
        static SIZE: OnceLock<Option<usize>> = OnceLock::new();
        *SIZE.get_or_init(|| {
            let base = "/sys/kernel/mm/transparent_hugepage";
            let enabled = std::fs::read_to_string(format!("{base}/enabled")).ok()?;
            if enabled.contains("[never]") {
                return None;
            }
            let size = std::fs::read_to_string(format!("{base}/hpage_pmd_size")).ok()?;
            size.trim()
                .parse::<usize>()
                .ok()
                .filter(|s| s.is_power_of_two())
        })
    }

    fn page_size() -> usize {
        // SAFETY: `sysconf` only reads a system constant.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(p).unwrap_or(4096).max(4096)
    }

    /// An inaccessible `span`-byte range of the address space starting at a multiple of `h`.
    fn reserve(span: usize, h: usize) -> io::Result<*mut u8> {
        let total = span + h;
        // SAFETY: a fresh anonymous PROT_NONE mapping: it touches no existing memory.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = r as usize;
        let aligned = start.next_multiple_of(h);
        // SAFETY: both trimmed pieces lie inside the reservation just made, which nothing else
        // uses; page-aligned because `start`, `h` and `span` are.
        unsafe {
            if aligned > start {
                libc::munmap(r, aligned - start);
            }
            let end = aligned + span;
            if start + total > end {
                libc::munmap(end as *mut libc::c_void, start + total - end);
            }
        }
        Ok(aligned as *mut u8)
    }

    /// Maps `len` bytes of `fd` from `off` at `at`, replacing what was mapped there (`fd < 0`: an
    /// anonymous read-write range), asks for huge pages and faults the range in.
    ///
    /// # Safety
    /// `at..at + len` (rounded up to pages) is a range the caller owns and nothing borrows.
    unsafe fn place(at: *mut u8, len: usize, fd: i32, off: usize) -> io::Result<()> {
        let (prot, flags) = if fd < 0 {
            (
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            )
        } else {
            (libc::PROT_READ, libc::MAP_SHARED)
        };
        let p = libc::mmap(
            at.cast(),
            len,
            prot,
            flags | libc::MAP_FIXED,
            fd,
            off as libc::off_t,
        );
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Advice only: a kernel without it (or without MADV_POPULATE_READ, before 5.14) maps as
        // usual and faults the pages in on first use.
        libc::madvise(at.cast(), len, libc::MADV_HUGEPAGE);
        libc::madvise(at.cast(), len, libc::MADV_POPULATE_READ);
        Ok(())
    }

    /// Turns `at..at + len` back into an inaccessible reservation (no hole another thread's mmap
    /// could land in) and drops the file's clean cached pages of `off..off + len` that no process
    /// maps.
    ///
    /// # Safety
    /// As [`place`].
    unsafe fn unplace(at: *mut u8, len: usize, fd: i32, off: usize) -> io::Result<()> {
        let p = libc::mmap(
            at.cast(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        libc::posix_fadvise(
            fd,
            off as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
        Ok(())
    }

    /// `len` bytes of `fd` from its start (`fd < 0`: anonymous memory) placed in a fresh range at
    /// a multiple of `h`, owned by the returned mapping.
    fn placed(len: usize, h: usize, fd: i32) -> io::Result<(Mapping, *mut u8)> {
        let span = len.next_multiple_of(page_size());
        let at = reserve(span, h)?;
        // Owned from here: dropping `m` releases the range.
        let m = Mapping {
            // SAFETY: `reserve` never returns null (a failed mmap is an error).
            ptr: unsafe { NonNull::new_unchecked(at) },
            len,
            owner: Owner::Placed {
                span,
                writable: fd < 0,
            },
        };
        // SAFETY: `at..at + span` was reserved above for `m` alone.
        unsafe { place(at, len, fd, 0)? };
        Ok((m, at))
    }

    pub fn map_file(file: &std::fs::File, len: usize, h: usize) -> io::Result<Mapping> {
        let fd = file.as_raw_fd();
        let (m, at) = placed(len, h, fd)?;
        let whole = len / h * h;
        let (start, end) = (at as usize, at as usize + len);
        let before = match huge_bytes(start, end) {
            Some(b) if whole >= 2 * h && (b as f64) < REPAIR_BELOW * whole as f64 => b,
            _ => return Ok(m),
        };
        // Some of the file is cached in small folios. Where none of it is in huge pages, first
        // find out whether this filesystem gives huge folios at all: one huge page (the last
        // whole one) read again from storage.
        if before == 0 {
            let probe = whole - h;
            // SAFETY: `probe..probe + h` lies inside `m`'s range; nothing borrows `m` yet.
            unsafe {
                unplace(at.add(probe), h, fd, probe)?;
                place(at.add(probe), h, fd, probe)?;
            }
            if huge_bytes(start, end).is_none_or(|b| b < h) {
                return Ok(m);
            }
        }
        // SAFETY: as above, for the whole range.
        unsafe {
            unplace(at, len, fd, 0)?;
            place(at, len, fd, 0)?;
        }
        Ok(m)
    }

    pub fn map_anon(len: usize, h: usize) -> io::Result<Mapping> {
        Ok(placed(len, h, -1)?.0)
    }

    /// `(start, end)` of a `/proc/self/smaps` range line, e.g.
    /// `7f74e5a00000-7f7520853000 r--s 00000000 fe:00 10018825   /path`.
    fn vma(line: &str) -> Option<(usize, usize)> {
        let mut f = line.split_whitespace();
        let (a, b) = f.next()?.split_once('-')?;
        if f.next()?.len() != 4 {
            return None;
        }
        Some((
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        ))
    }

    /// Bytes in huge pages (file or anonymous) of the mappings inside `start..end`.
    pub fn huge_bytes(start: usize, end: usize) -> Option<usize> {
        let s = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        let mut total = 0;
        for line in s.lines() {
            if let Some((a, b)) = vma(line) {
                inside = start <= a && b <= end.next_multiple_of(4096);
                continue;
            }
            if !inside {
                continue;
            }
            for key in ["AnonHugePages:", "FilePmdMapped:", "ShmemPmdMapped:"] {
                if let Some(kb) = line.strip_prefix(key) {
                    let kb = kb.trim().trim_end_matches("kB").trim();
                    total += kb.parse::<usize>().ok()? * 1024;
                }
            }
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_mapping_reads_the_file() {
        let dir = std::env::temp_dir().join(format!("rstar-mapping-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for len in [0usize, 1, 4095, 4097, (5 << 20) + 3] {
            let path = dir.join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let f = File::open(&path).unwrap();
            let mut m = Mapping::file(&f, &path).unwrap();
            assert_eq!(&m[..], &data[..], "{len} bytes");
            assert!(m.bytes_mut().is_none());
            if let Some(frac) = m.huge_fraction() {
                assert!((0.0..=1.0).contains(&frac));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zeroed_buffers_are_zero_and_writable() {
        for len in [0usize, 5, 3 << 20, (9 << 20) + 5] {
            let mut m = Mapping::zeroed(len);
            assert_eq!(m.len(), len);
            assert!(m.iter().all(|&b| b == 0));
            assert_eq!(m.as_ptr() as usize % 8, 0);
            let w = m.bytes_mut().unwrap();
            w.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
            assert!(m.iter().enumerate().all(|(i, &b)| b == i as u8));
        }
    }
}
