//! Reading frames from files: zero-copy memory maps, `pread` into pooled buffers, decoding.

use super::{ByteOrder, DType, Geometry};
use crate::error::{Error, Result};
use arrow::buffer::{Buffer, MutableBuffer};
use memmap2::Mmap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// A pool of reusable, 64-byte aligned read buffers.
///
/// A buffer handed out as an Arrow [`Buffer`] returns to the pool when the last reference to it is
/// dropped, so a scan streams through a handful of allocations instead of faulting in fresh pages
/// for every batch.
#[derive(Debug, Default, Clone)]
pub struct BufferPool {
    free: Arc<Mutex<Vec<MutableBuffer>>>,
}

/// Owner of a pooled allocation while Arrow uses it.
struct Pooled {
    buf: Option<MutableBuffer>,
    pool: std::sync::Weak<Mutex<Vec<MutableBuffer>>>,
}

// SAFETY-free: `Pooled` only moves the buffer back into the pool; Arrow requires the owner to be
// RefUnwindSafe, which holds because nothing here can be observed half-updated after a panic.
impl std::panic::RefUnwindSafe for Pooled {}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buf.take(), self.pool.upgrade())
            && let Ok(mut free) = pool.lock()
            && free.len() < 8
        {
            free.push(buf);
        }
    }
}

impl BufferPool {
    /// A new, empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fills a buffer of `len` bytes with `fill` and freezes it into an Arrow [`Buffer`] that returns
    /// to the pool when dropped.
    pub fn fill(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<Buffer> {
        let mut buf = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            match free.iter().position(|b| b.capacity() >= len) {
                Some(i) => free.swap_remove(i),
                None => MutableBuffer::with_capacity(len),
            }
        };
        buf.clear();
        buf.resize(len, 0);
        fill(buf.as_slice_mut())?;
        let ptr = NonNull::new(buf.as_mut_ptr()).expect("MutableBuffer pointer is never null");
        let owner = Arc::new(Pooled { buf: Some(buf), pool: Arc::downgrade(&self.free) });
        // SAFETY: `ptr` points to `len` initialised bytes owned by `owner`, which keeps the
        // allocation alive (and unmoved: MutableBuffer's heap data does not move with the struct)
        // until Arrow drops the last clone of the returned Buffer.
        Ok(unsafe { Buffer::from_custom_allocation(ptr, len, owner) })
    }
}

/// How to read frames from a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IoMode {
    /// mmap when aligned and native-endian, pread otherwise.
    Auto,
    /// Always pread.
    Pread,
    /// Require mmap (error if the layout does not allow zero copy).
    Mmap,
}

impl IoMode {
    pub(crate) fn parse(v: Option<&str>) -> Result<Self> {
        match v.unwrap_or("auto") {
            "auto" => Ok(IoMode::Auto),
            "pread" => Ok(IoMode::Pread),
            "mmap" => Ok(IoMode::Mmap),
            other => Err(Error::Spec(format!("io={other}: use auto, pread or mmap"))),
        }
    }
}

/// A file holding frames back to back at a byte offset (raw, npy): the shared reader of both formats.
#[derive(Debug)]
pub(crate) struct FrameFile {
    path: String,
    file: File,
    mmap: Option<Arc<Mmap>>,
    /// Byte offset of file frame 0.
    offset: u64,
    /// Element type as stored.
    stored: DType,
    order: ByteOrder,
    /// Elements per frame.
    frame_len: usize,
    /// Frames the file holds.
    file_frames: usize,
    /// Dataset frame i is file frame i + sync_offset (blank when outside the file).
    sync_offset: i64,
    /// Decoded pixel type.
    decoded: DType,
}

impl FrameFile {
    /// Opens `path`, checking that the file holds whole frames. With `exact`, the data after
    /// `offset` must be exactly `nav × sig` elements (when `sync_offset` is 0).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        path: &str,
        offset: u64,
        stored: DType,
        order: ByteOrder,
        geometry: &Geometry,
        sync_offset: i64,
        io: IoMode,
    ) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let frame_len = geometry.sig.size();
        let frame_bytes = (frame_len * stored.size()) as u64;
        let need = offset + frame_bytes * geometry.n_frames() as u64;
        if size < offset {
            return Err(Error::format(path, format!("file has {size} bytes, less than the offset {offset}")));
        }
        let data = size - offset;
        if sync_offset == 0 && size != need {
            return Err(Error::format(
                path,
                format!(
                    "size does not match the shape: expected {need} bytes (nav {} × sig {} × {} B{}), \
                     the file has {size} bytes{}",
                    geometry.nav,
                    geometry.sig,
                    stored.size(),
                    if offset > 0 { format!(" + offset {offset}") } else { String::new() },
                    if size < need { " (truncated?)" } else { "" }
                ),
            ));
        }
        if !data.is_multiple_of(frame_bytes) {
            return Err(Error::format(
                path,
                format!(
                    "{data} bytes after the offset are not a whole number of {frame_bytes}-byte frames \
                     (sig {} × {} B)",
                    geometry.sig,
                    stored.size()
                ),
            ));
        }
        let file_frames = (data / frame_bytes) as usize;
        let decoded = geometry.dtype;
        let zero_copy_ok = order == ByteOrder::NATIVE
            && stored == decoded
            && offset.is_multiple_of(stored.size() as u64)
            && sync_offset == 0;
        let mmap = match io {
            IoMode::Pread => None,
            IoMode::Auto | IoMode::Mmap if zero_copy_ok && size > 0 => {
                // SAFETY: the file's size was checked above; a file truncated by another process
                // while mapped would raise SIGBUS, which is why `io=pread` exists for files that
                // may change while they are read.
                let m = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
                Some(Arc::new(m))
            }
            IoMode::Mmap => {
                return Err(Error::Spec(format!(
                    "{path}: io=mmap needs native byte order, no dtype conversion, an offset aligned to \
                     the pixel size and no sync_offset"
                )));
            }
            IoMode::Auto => None,
        };
        Ok(FrameFile {
            path: path.to_string(),
            file,
            mmap,
            offset,
            stored,
            order,
            frame_len,
            file_frames,
            sync_offset,
            decoded,
        })
    }

    /// Frames stored in the file.
    pub(crate) fn file_frames(&self) -> usize {
        self.file_frames
    }

    /// Whether reads are zero-copy from a memory map.
    pub(crate) fn is_mapped(&self) -> bool {
        self.mmap.is_some()
    }

    /// Reads the frames of `runs` (dataset frame indices), decoded.
    pub(crate) fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let frame_bytes = self.frame_len * self.stored.size();
        if let (Some(m), [(start, count)]) = (&self.mmap, runs) {
            let begin = self.offset as usize + start * frame_bytes;
            let len = count * frame_bytes;
            let bytes = &m[begin..begin + len];
            let ptr = NonNull::new(bytes.as_ptr() as *mut u8).expect("mapped memory is never null");
            // SAFETY: the range lies inside the mapping (checked against the file size at open);
            // the Arc<Mmap> owner keeps the mapping alive as long as the Buffer exists. The pointer
            // is aligned to the pixel size because the mapping is page aligned and the offset and
            // frame size are multiples of the pixel size (checked at open).
            return Ok(unsafe { Buffer::from_custom_allocation(ptr, len, m.clone()) });
        }
        let n: usize = runs.iter().map(|r| r.1).sum();
        let out_bytes = n * self.frame_len * self.decoded.size();
        pool.fill(out_bytes, |out| {
            let mut scratch = Vec::new();
            let mut pos = 0usize; // frames written
            for &(start, count) in runs {
                // split the run into the part inside the file and blank frames outside it
                let mut i = 0;
                while i < count {
                    let file_frame = (start + i) as i64 + self.sync_offset;
                    if file_frame < 0 || file_frame >= self.file_frames as i64 {
                        // blank frame (sync_offset): zeros are already there
                        i += 1;
                        pos += 1;
                        continue;
                    }
                    let avail = (self.file_frames as i64 - file_frame) as usize;
                    let k = avail.min(count - i);
                    let dst = &mut out
                        [pos * self.frame_len * self.decoded.size()..(pos + k) * self.frame_len * self.decoded.size()];
                    self.read_decoded(file_frame as usize, k, dst, &mut scratch)?;
                    i += k;
                    pos += k;
                }
            }
            Ok(())
        })
    }

    /// Reads `count` file frames from `first` into `dst`, decoding byte order and dtype.
    fn read_decoded(&self, first: usize, count: usize, dst: &mut [u8], scratch: &mut Vec<u8>) -> Result<()> {
        let frame_bytes = self.frame_len * self.stored.size();
        let pos = self.offset + (first * frame_bytes) as u64;
        let len = count * frame_bytes;
        let same = self.stored == self.decoded;
        let raw: &mut [u8] = if same {
            dst
        } else {
            scratch.resize(len, 0);
            &mut scratch[..]
        };
        match &self.mmap {
            Some(m) => raw.copy_from_slice(&m[pos as usize..pos as usize + len]),
            None => self.file.read_exact_at(raw, pos).map_err(|e| {
                Error::io(&self.path, std::io::Error::new(e.kind(), format!("reading {len} bytes at {pos}: {e}")))
            })?,
        }
        if self.order != ByteOrder::NATIVE {
            swap_in_place(raw, self.stored.size());
        }
        if !same {
            widen(&scratch[..len], self.stored, dst, self.decoded)?;
        }
        Ok(())
    }
}

/// Reverses the bytes of each `width`-byte element.
fn swap_in_place(bytes: &mut [u8], width: usize) {
    if width > 1 {
        for chunk in bytes.chunks_exact_mut(width) {
            chunk.reverse();
        }
    }
}

/// The pixel type Tessera decodes a stored type to: pixel types stay as they are, int8 widens to
/// int16, 64-bit integers to float64.
pub(crate) fn decoded_dtype(stored: DType) -> DType {
    match stored {
        DType::I8 => DType::I16,
        DType::U64 | DType::I64 => DType::F64,
        other => other,
    }
}

/// Converts native-order `src` of `from` into `dst` of `to` (only the widenings of [`decoded_dtype`]).
fn widen(src: &[u8], from: DType, dst: &mut [u8], to: DType) -> Result<()> {
    match (from, to) {
        (DType::I8, DType::I16) => {
            for (s, d) in src.iter().zip(dst.chunks_exact_mut(2)) {
                d.copy_from_slice(&(*s as i8 as i16).to_ne_bytes());
            }
        }
        (DType::U64, DType::F64) => {
            for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
                let v = u64::from_ne_bytes(s.try_into().expect("8 bytes")) as f64;
                d.copy_from_slice(&v.to_ne_bytes());
            }
        }
        (DType::I64, DType::F64) => {
            for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
                let v = i64::from_ne_bytes(s.try_into().expect("8 bytes")) as f64;
                d.copy_from_slice(&v.to_ne_bytes());
            }
        }
        _ => return Err(Error::Unsupported(format!("decoding {from} to {to}"))),
    }
    Ok(())
}
