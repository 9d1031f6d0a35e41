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
        self.fill_buffer(len, true, fill)
    }

    /// Reads the frames of `runs` over files concatenated at `starts` and shifted by `sync_offset` (see
    /// [`for_each_span`]): `read(file, first frame in the file, count, destination)` fills each span;
    /// frames outside the files are zeroed here. Saves [`BufferPool::fill`]'s clearing pass, which
    /// costs as much as a copy of the data.
    pub(crate) fn read_spans(
        &self,
        runs: &[(usize, usize)],
        starts: &[usize],
        sync_offset: i64,
        frame_bytes: usize,
        mut read: impl FnMut(usize, usize, usize, &mut [u8]) -> Result<()>,
    ) -> Result<Buffer> {
        let n: usize = runs.iter().map(|r| r.1).sum();
        self.fill_buffer(n * frame_bytes, false, |out| {
            let mut written = 0; // frames filled (or zeroed) so far
            for_each_span(runs, starts, sync_offset, |fi, local, k, pos| {
                out[written * frame_bytes..pos * frame_bytes].fill(0);
                read(fi, local, k, &mut out[pos * frame_bytes..(pos + k) * frame_bytes])?;
                written = pos + k;
                Ok(())
            })?;
            out[written * frame_bytes..].fill(0);
            Ok(())
        })
    }

    /// A pooled buffer of `len` bytes, cleared to zero when `zeroed` (otherwise `fill` must write
    /// every byte: a reused buffer holds an earlier batch), filled and frozen.
    fn fill_buffer(&self, len: usize, zeroed: bool, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<Buffer> {
        let mut buf = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            match free.iter().position(|b| b.capacity() >= len) {
                Some(i) => free.swap_remove(i),
                None => MutableBuffer::with_capacity(len),
            }
        };
        if zeroed {
            buf.clear();
        }
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

/// One file of frames back to back after a byte offset.
#[derive(Debug)]
struct FrameFile {
    path: String,
    file: File,
    mmap: Option<Arc<MappedFile>>,
    offset: u64,
    frames: usize,
}

impl FrameFile {
    /// A file of `frames` frames at `offset`, memory-mapped when `map` (zero copy possible).
    fn new(path: &str, file: File, size: u64, offset: u64, frames: usize, map: bool) -> Result<Self> {
        let mmap = if map && size > 0 {
            // SAFETY: the caller checked the file's size; a file truncated by another process
            // while mapped would raise SIGBUS, which is why `io=pread` exists for files that may
            // change while they are read.
            Some(Arc::new(MappedFile::new(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)))
        } else {
            None
        };
        Ok(FrameFile { path: path.to_string(), file, mmap, offset, frames })
    }
}

/// A file's memory map, and the byte spans of it that zero-copy buffers are done with.
///
/// When Arrow drops a buffer of the map ([`MappedRange`]), its pages should leave the process's
/// resident set (they stay in the page cache), so that the RSS of a scan does not grow with the file
/// it maps (512 MiB file: 568 → 61 MiB peak). Each `MADV_DONTNEED` costs a TLB shootdown, an
/// interrupt of the other threads of the process, whatever its length: without a broadcast TLB
/// invalidation (AMD's INVLPGB), one inter-processor interrupt per call, and in a VM an exit on
/// both sides (18 µs in the call, more in the thread it interrupts). So finished spans are collected
/// (those less than a huge page apart joined) and released in few, long calls: a partition's span
/// on its own once it is [`SPAN_RELEASE_BYTES`] long, and all of them together once they add up to
/// [`RELEASE_BYTES`] (many partitions, each with a shorter span). Measured on an Intel VM, sums of a
/// 1 GiB float32 file in two partitions: a release of all spans every 16 MiB in all (two calls per
/// 16 MiB, 124 per query) cost 8-11 % against never releasing; 32 MiB spans (32 calls) recovered
/// 1.085-1.09x of it for 43 MiB more peak RSS (77 → 120 MiB, still independent of the file). A
/// region of interest's rows, spans further apart than a huge page, wait for [`RELEASE_BYTES`]:
/// 128 MiB there took the peak RSS of a quarter ROI scan to 150-190 MiB.
#[derive(Debug)]
struct MappedFile {
    map: Mmap,
    done: Mutex<Vec<std::ops::Range<usize>>>,
}

/// A finished span of a map this long is released on its own (see [`MappedFile`]).
const SPAN_RELEASE_BYTES: usize = 32 << 20;

/// How many finished bytes of a map wait, in shorter spans, before they are released together (see
/// [`MappedFile`]).
const RELEASE_BYTES: usize = 64 << 20;

/// The huge page size of x86-64 and arm64 (4 KiB pages): spans closer than this join, and are
/// released in whole huge pages.
const HUGE_PAGE: usize = 2 << 20;

impl MappedFile {
    fn new(map: Mmap) -> Self {
        MappedFile { map, done: Mutex::new(Vec::new()) }
    }

    /// Notes that no buffer reads `range` any more; releases the finished spans once they are large.
    fn finished(&self, range: std::ops::Range<usize>) {
        let spans = {
            let mut done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // the new span joins the spans it touches or nearly touches on either side
            let mut joined = range;
            done.retain(|s| {
                let touches = s.start <= joined.end + HUGE_PAGE && joined.start <= s.end + HUGE_PAGE;
                if touches {
                    joined = s.start.min(joined.start)..s.end.max(joined.end);
                }
                !touches
            });
            if joined.len() >= SPAN_RELEASE_BYTES {
                vec![joined]
            } else {
                done.push(joined);
                if done.iter().map(|s| s.len()).sum::<usize>() < RELEASE_BYTES {
                    return;
                }
                std::mem::take(&mut *done)
            }
        };
        for s in spans {
            // whole huge pages: the page cache maps a file read from storage 2 MiB at a time, and
            // releasing part of such a mapping splits it (a live buffer that reads pages just
            // outside the span faults them back in)
            let (start, end) = (s.start / HUGE_PAGE * HUGE_PAGE, s.end.div_ceil(HUGE_PAGE) * HUGE_PAGE);
            // SAFETY: a read-only shared mapping of a file: MADV_DONTNEED only unmaps the pages from
            // this process; a later read (by a buffer still viewing the same pages) faults the
            // file's unchanged contents back in, so no reference ever sees different bytes. Failure
            // only means the pages stay resident.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end.min(self.map.len()) - start,
                )
            };
        }
    }
}

/// A range of a memory map lent to Arrow as a zero-copy buffer; dropping it tells the map
/// ([`MappedFile::finished`]).
struct MappedRange {
    file: Arc<MappedFile>,
    begin: usize,
    len: usize,
}

impl Drop for MappedRange {
    fn drop(&mut self) {
        self.file.finished(self.begin..self.begin + self.len);
    }
}

/// Frames stored back to back in one file or a series of files (raw, npy), each after the same byte
/// offset: the shared reader of those formats. Dataset frame `i` is frame `i + sync_offset` of the
/// concatenated files; frames outside them read as blank (zeros).
#[derive(Debug)]
pub(crate) struct FrameFiles {
    files: Vec<FrameFile>,
    /// First frame of each file in the concatenation, and the total at the end.
    starts: Vec<usize>,
    stored: DType,
    order: ByteOrder,
    decoded: DType,
    /// Elements per frame.
    frame_len: usize,
    sync_offset: i64,
}

impl FrameFiles {
    /// Opens the files, checking that each holds whole frames after `offset` and, without
    /// `sync_offset`, that together they hold exactly the frames of `geometry`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        paths: &[String],
        offset: u64,
        stored: DType,
        order: ByteOrder,
        geometry: &Geometry,
        sync_offset: i64,
        io: IoMode,
    ) -> Result<Self> {
        let frame_len = geometry.sig.size();
        let frame_bytes = (frame_len * stored.size()) as u64;
        let decoded = geometry.dtype;
        let map = use_map(io, order, stored, decoded, offset, sync_offset, paths.first().map_or("", |p| p.as_str()))?;
        let mut files = Vec::with_capacity(paths.len());
        let mut starts = vec![0];
        for path in paths {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
            let need = offset + frame_bytes * geometry.n_frames() as u64;
            if paths.len() == 1 && sync_offset == 0 && size != need {
                return Err(Error::format(
                    path,
                    format!(
                        "size does not match the shape: expected {need} bytes (nav {} × sig {} × {} B{}), the \
                         file has {size} bytes{}",
                        geometry.nav,
                        geometry.sig,
                        stored.size(),
                        if offset > 0 { format!(" + offset {offset}") } else { String::new() },
                        if size < need { " (truncated?)" } else { "" }
                    ),
                ));
            }
            if size < offset || !(size - offset).is_multiple_of(frame_bytes) {
                return Err(Error::format(
                    path,
                    format!(
                        "{size} bytes are not the offset {offset} plus a whole number of {frame_bytes}-byte frames \
                         (sig {} × {} B): truncated or wrong shape?",
                        geometry.sig,
                        stored.size()
                    ),
                ));
            }
            let frames = ((size - offset) / frame_bytes) as usize;
            starts.push(starts.last().expect("starts has one entry per file plus one") + frames);
            files.push(FrameFile::new(path, file, size, offset, frames, map)?);
        }
        let total = *starts.last().expect("starts is never empty");
        if sync_offset == 0 && total != geometry.n_frames() {
            return Err(Error::Shape(format!(
                "{} files ({} ...) hold {total} frames of sig {}, but nav {} needs {}",
                paths.len(),
                paths.first().map_or("", |p| p.as_str()),
                geometry.sig,
                geometry.nav,
                geometry.n_frames()
            )));
        }
        Ok(FrameFiles { files, starts, stored, order, decoded, frame_len, sync_offset })
    }

    /// Frames stored in the files.
    pub(crate) fn file_frames(&self) -> usize {
        *self.starts.last().expect("starts is never empty")
    }

    /// Number of files.
    pub(crate) fn n_files(&self) -> usize {
        self.files.len()
    }

    /// Whether reads are zero-copy from memory maps.
    pub(crate) fn is_mapped(&self) -> bool {
        self.files.iter().all(|f| f.mmap.is_some())
    }

    /// Whether a run of frames within one file is read without a copy ([`Dataset::maps_frames`]):
    /// mapped, and not shifted by a `sync_offset`.
    ///
    /// [`Dataset::maps_frames`]: crate::dataset::Dataset::maps_frames
    pub(crate) fn maps_frames(&self) -> bool {
        self.sync_offset == 0 && self.is_mapped()
    }

    /// The file holding concatenated frame `g`, and `g`'s index in it.
    fn locate(&self, g: usize) -> (usize, usize) {
        let i = self.starts.partition_point(|&s| s <= g) - 1;
        (i, g - self.starts[i])
    }

    /// Reads the frames of `runs` (dataset frame indices), decoded.
    pub(crate) fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let frame_bytes = self.frame_len * self.stored.size();
        if let [(start, count)] = runs
            && self.sync_offset == 0
        {
            let (fi, local) = self.locate(*start);
            let f = &self.files[fi];
            if let Some(m) = &f.mmap
                && local + count <= f.frames
            {
                let begin = f.offset as usize + local * frame_bytes;
                let len = count * frame_bytes;
                let bytes = &m.map[begin..begin + len];
                let ptr = NonNull::new(bytes.as_ptr() as *mut u8).expect("mapped memory is never null");
                let owner = Arc::new(MappedRange { file: m.clone(), begin, len });
                // SAFETY: the range lies inside the mapping (checked against the file size at open);
                // the owner (holding the Arc<Mmap>) keeps the mapping alive as long as the Buffer
                // exists. The pointer is aligned to the pixel size because the mapping is page
                // aligned and the offset and frame size are multiples of the pixel size (checked at
                // open).
                return Ok(unsafe { Buffer::from_custom_allocation(ptr, len, owner) });
            }
        }
        let out_frame = self.frame_len * self.decoded.size();
        let mut scratch = Vec::new();
        pool.read_spans(runs, &self.starts, self.sync_offset, out_frame, |fi, local, k, dst| {
            self.read_decoded(&self.files[fi], local, k, dst, &mut scratch)
        })
    }

    /// Opens a file that must hold exactly the frames of `file_geometry`; with a `sync_offset`, the
    /// frames are then shifted onto `geometry` (read with pread).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_whole(
        path: &str,
        offset: u64,
        stored: DType,
        order: ByteOrder,
        file_geometry: &Geometry,
        geometry: &Geometry,
        sync_offset: i64,
        io: IoMode,
    ) -> Result<Self> {
        let paths = [path.to_string()];
        let whole = FrameFiles::open(&paths, offset, stored, order, file_geometry, 0, io)?;
        if sync_offset == 0 {
            return Ok(whole);
        }
        FrameFiles::open(&paths, offset, stored, order, geometry, sync_offset, IoMode::Pread)
    }

    /// `frames` frames stored back to back at `offset` in a file that holds other data too (an HDF5
    /// file's contiguous dataset): the file must be at least that long.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_region(
        path: &str,
        offset: u64,
        frames: usize,
        stored: DType,
        order: ByteOrder,
        geometry: &Geometry,
        sync_offset: i64,
        io: IoMode,
    ) -> Result<Self> {
        let frame_len = geometry.sig.size();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let end = offset + (frames * frame_len * stored.size()) as u64;
        if size < end {
            return Err(Error::format(
                path,
                format!("truncated: the frames end at byte {end}, the file has {size} bytes"),
            ));
        }
        let map = use_map(io, order, stored, geometry.dtype, offset, sync_offset, path)?;
        let f = FrameFile::new(path, file, size, offset, frames, map)?;
        Ok(FrameFiles {
            files: vec![f],
            starts: vec![0, frames],
            stored,
            order,
            decoded: geometry.dtype,
            frame_len,
            sync_offset,
        })
    }

    /// Reads `count` frames of `f` from `first` into `dst`, decoding byte order and dtype.
    fn read_decoded(
        &self,
        f: &FrameFile,
        first: usize,
        count: usize,
        dst: &mut [u8],
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        let frame_bytes = self.frame_len * self.stored.size();
        let pos = f.offset + (first * frame_bytes) as u64;
        let len = count * frame_bytes;
        let same = self.stored == self.decoded;
        let raw: &mut [u8] = if same {
            dst
        } else {
            scratch.resize(len, 0);
            &mut scratch[..]
        };
        match &f.mmap {
            Some(m) => {
                let range = pos as usize..pos as usize + len;
                raw.copy_from_slice(&m.map[range.clone()]);
                // copied: the mapped pages are done with, as a zero-copy buffer's when dropped (else a
                // scan that copies, e.g. of an ROI's short runs, keeps every page it read resident)
                m.finished(range);
            }
            None => f.file.read_exact_at(raw, pos).map_err(|e| {
                Error::io(&f.path, std::io::Error::new(e.kind(), format!("reading {len} bytes at {pos}: {e}")))
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

/// Walks the frames of `runs` (dataset frame indices) over files concatenated at `starts` (first frame
/// of each file, then the total) and shifted by `sync_offset`: calls `read(file, first frame in the
/// file, count, output position)` for each span that lies in one file. Frames outside the files are
/// skipped ([`BufferPool::read_spans`] zeroes them).
fn for_each_span(
    runs: &[(usize, usize)],
    starts: &[usize],
    sync_offset: i64,
    mut read: impl FnMut(usize, usize, usize, usize) -> Result<()>,
) -> Result<()> {
    let total = *starts.last().expect("starts is never empty") as i64;
    let mut pos = 0usize;
    for &(start, count) in runs {
        let mut i = 0;
        while i < count {
            let g = (start + i) as i64 + sync_offset;
            if g < 0 || g >= total {
                i += 1;
                pos += 1;
                continue;
            }
            let fi = starts.partition_point(|&s| s as i64 <= g) - 1;
            let local = g as usize - starts[fi];
            let k = (starts[fi + 1] - starts[fi] - local).min(count - i);
            read(fi, local, k, pos)?;
            i += k;
            pos += k;
        }
    }
    Ok(())
}

/// Expands a path that may be a glob into the sorted list of files it names.
pub(crate) fn expand_paths(path: &str) -> Result<Vec<String>> {
    if !path.contains(['*', '?', '[']) {
        return Ok(vec![path.to_string()]);
    }
    let entries = glob::glob(path).map_err(|e| Error::Spec(format!("bad glob '{path}': {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let p = entry.map_err(|e| Error::io(path, e.into()))?;
        if p.is_file() {
            paths.push(p.to_string_lossy().into_owned());
        }
    }
    if paths.is_empty() {
        return Err(Error::Spec(format!("no files match '{path}'")));
    }
    paths.sort();
    Ok(paths)
}

/// Views bytes as pixels. Pool buffers are 64-byte aligned, so for them the check cannot fail.
pub(crate) fn pixels_mut<T: super::Pixel>(bytes: &mut [u8]) -> &mut [T] {
    let size = std::mem::size_of::<T>();
    assert!((bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) && bytes.len().is_multiple_of(size));
    // SAFETY: alignment and length were checked just above; every bit pattern is a valid pixel
    // value (integers and floats), and the returned slice borrows `bytes` mutably.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut T, bytes.len() / size) }
}

/// Whether to hand frames at `offset` out straight from a memory map: possible with native byte
/// order, no conversion, aligned pixels and no frame shift; chosen unless `io=pread`; `io=mmap` where
/// it is impossible is an error naming `path`.
fn use_map(
    io: IoMode,
    order: ByteOrder,
    stored: DType,
    decoded: DType,
    offset: u64,
    sync_offset: i64,
    path: &str,
) -> Result<bool> {
    let possible = order == ByteOrder::NATIVE
        && stored == decoded
        && offset.is_multiple_of(stored.size() as u64)
        && sync_offset == 0;
    if io == IoMode::Mmap && !possible {
        return Err(Error::Spec(format!(
            "{path}: io=mmap needs native byte order, no dtype conversion, an offset aligned to the pixel size \
             and no sync_offset"
        )));
    }
    Ok(possible && io != IoMode::Pread)
}

/// Decodes stored pixels (`stored`, in byte order `order`) into native `decoded` pixels.
pub(crate) fn decode_pixels(src: &[u8], stored: DType, order: ByteOrder, dst: &mut [u8], decoded: DType) -> Result<()> {
    if stored == decoded {
        dst.copy_from_slice(src);
        if order != ByteOrder::NATIVE {
            swap_in_place(dst, stored.size());
        }
        return Ok(());
    }
    let mut native = src.to_vec();
    if order != ByteOrder::NATIVE {
        swap_in_place(&mut native, stored.size());
    }
    widen(&native, stored, dst, decoded)
}

/// Views pixels as bytes.
pub(crate) fn as_bytes<T: super::Pixel>(pixels: &[T]) -> &[u8] {
    // SAFETY: pixels are plain integers and floats without padding; the byte view covers exactly
    // the same memory and borrows `pixels` immutably.
    unsafe { std::slice::from_raw_parts(pixels.as_ptr() as *const u8, std::mem::size_of_val(pixels)) }
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
pub(crate) fn widen(src: &[u8], from: DType, dst: &mut [u8], to: DType) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_spans_merge_and_are_released_in_bulk() {
        const MIB: usize = 1 << 20;
        // a sparse file: reads as zeros, writes nothing
        let tmp = tempfile::tempfile().expect("temp file");
        tmp.set_len(256 * MIB as u64).expect("set_len");
        // SAFETY: a private temporary file that nothing else changes
        let file = MappedFile::new(unsafe { Mmap::map(&tmp) }.expect("map"));
        let pending = |f: &MappedFile| f.done.lock().expect("lock").clone();
        // a span finished between two others joins both
        file.finished(2 * MIB..3 * MIB);
        file.finished(0..MIB);
        file.finished(MIB..2 * MIB);
        assert_eq!(pending(&file), vec![0..3 * MIB]);
        // two partitions finishing 1 MiB batches in turn, from 3 MiB and from 20 MiB
        for k in 3..8 {
            file.finished(k * MIB..(k + 1) * MIB);
            file.finished(17 * MIB + k * MIB..17 * MIB + (k + 1) * MIB);
        }
        assert_eq!(pending(&file), vec![0..8 * MIB, 20 * MIB..25 * MIB]);
        // spans less than a huge page apart join (a region of interest's rows)
        file.finished(26 * MIB..27 * MIB);
        assert_eq!(pending(&file), vec![0..8 * MIB, 20 * MIB..27 * MIB]);
        // a span that reaches SPAN_RELEASE_BYTES is released on its own
        file.finished(27 * MIB..20 * MIB + SPAN_RELEASE_BYTES);
        assert_eq!(pending(&file), vec![0..8 * MIB]);
        // many partitions' shorter spans are released together once they add up to RELEASE_BYTES
        let span = SPAN_RELEASE_BYTES - 4 * MIB;
        let count = (RELEASE_BYTES - 8 * MIB).div_ceil(span);
        let starts: Vec<usize> = (0..count).map(|k| 60 * MIB + k * (span + 4 * MIB)).collect();
        for (n, &start) in starts.iter().enumerate() {
            file.finished(start..start + span);
            let total = 8 * MIB + (n + 1) * span;
            assert_eq!(pending(&file).is_empty(), total >= RELEASE_BYTES, "after {} spans", n + 1);
        }
        assert!(pending(&file).is_empty());
        // the released pages still read the file
        assert!(file.map[..64 * MIB].iter().all(|&b| b == 0));
    }
}
