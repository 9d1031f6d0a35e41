//! Direct reads of chunked HDF5 datasets whose chunks hold whole frames (DECTRIS files, h5py files
//! chunked per frame or per run of frames): the chunk index is read once when the file is opened;
//! a read `pread`s each chunk once, runs its filters and copies its frames to the output, so an
//! unfiltered chunk costs one copy and a compressed one a decode. Other chunk shapes go through
//! `hdf5-reader`'s hyperslab reads.
//!
//! Supported: every HDF5 chunk index (v1 B-tree, single chunk, implicit, fixed array, extensible
//! array, v2 B-tree); chunks of `1 × … × 1 × c × height × width` (`c` frames along the last scan
//! dimension); chunks never written read as zeros (only when the fill value is zero).

use crate::dataset::io::decode_pixels;
use crate::dataset::{ByteOrder, DType};
use crate::error::{Error, Result};
use hdf5_reader::chunk_index::ChunkEntry;
use hdf5_reader::messages::filter_pipeline::FilterDescription;
use hdf5_reader::messages::layout::{ChunkIndexing, DataLayout};
use hdf5_reader::{FilterRegistry, Hdf5File};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Where one chunk lies and how it was filtered.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    address: u64,
    size: u64,
    filter_mask: u32,
}

/// The chunks of one dataset, by (row of the leading scan dimensions, chunk along the last).
pub(crate) struct FrameChunks {
    path: String,
    file: File,
    /// Frames per chunk along the last scan dimension, and that dimension's length.
    per_chunk: usize,
    last: usize,
    chunks_per_row: usize,
    chunks: Vec<Option<Chunk>>,
    filters: Vec<FilterDescription>,
    registry: Arc<FilterRegistry>,
    stored: DType,
    order: ByteOrder,
    decoded: DType,
    /// Pixels per frame.
    frame_len: usize,
}

/// A chunk read and decoded last, kept for the next frames of the same chunk.
#[derive(Default)]
pub(crate) struct Scratch {
    raw: Vec<u8>,
    decoded: Option<(usize, Vec<u8>)>,
}

impl FrameChunks {
    /// The chunk map of `ds` (in `file`, at `path`), or `None` when its chunks are not whole frames
    /// or it is not chunked.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        file: &Hdf5File,
        ds: &hdf5_reader::Dataset,
        path: &str,
        layout: DataLayout,
        filters: Vec<FilterDescription>,
        registry: Arc<FilterRegistry>,
        stored: DType,
        order: ByteOrder,
        decoded: DType,
    ) -> Result<Option<Self>> {
        let h5 = |e: hdf5_reader::error::Error| super::h5_error(path, e);
        let shape = ds.shape().to_vec();
        let ndim = shape.len();
        let DataLayout::Chunked { address, chunk_indexing, .. } = layout else { return Ok(None) };
        // the chunk shape as the dataset reads it (the layout message may add the element size)
        let Some(dims) = ds.chunks() else { return Ok(None) };
        let fill_is_zero = ds.fill_value().and_then(|f| f.value.as_ref()).is_none_or(|v| v.iter().all(|&b| b == 0));
        let whole_frames = dims.len() == ndim
            && dims[ndim - 2..].iter().zip(&shape[ndim - 2..]).all(|(&c, &s)| c as u64 == s)
            && dims[..ndim - 3].iter().all(|&c| c == 1);
        if !whole_frames || !fill_is_zero {
            return Ok(None);
        }
        let last = shape[ndim - 3] as usize;
        let per_chunk = dims[ndim - 3] as usize;
        let chunks_per_row = last.div_ceil(per_chunk);
        let rows: usize = shape[..ndim - 3].iter().map(|&d| d as usize).product();
        let sb = file.superblock();
        let (os, ls) = (sb.offset_size, sb.length_size);
        let storage = file.storage();
        let elem_size = stored.size();
        let entries: Vec<ChunkEntry> = if address == u64::MAX {
            Vec::new() // never written: all fill value
        } else {
            use hdf5_reader::chunk_index as ci;
            match &chunk_indexing {
                None => hdf5_reader::btree_v1::collect_btree_v1_leaves_storage(
                    storage,
                    address,
                    os,
                    ls,
                    Some(ndim as u32),
                    &dims,
                    None,
                )
                .map_err(h5)?
                .into_iter()
                .filter_map(|(key, address)| match key {
                    hdf5_reader::btree_v1::BTreeV1Key::RawData { chunk_size, filter_mask, offsets } => {
                        Some(ChunkEntry {
                            address,
                            size: chunk_size as u64,
                            filter_mask,
                            offsets: offsets[..ndim].to_vec(),
                        })
                    }
                    _ => None,
                })
                .collect(),
                Some(ChunkIndexing::SingleChunk { filtered_size, filters }) => {
                    vec![ci::single_chunk_entry(address, *filtered_size, *filters, ndim)]
                }
                Some(ChunkIndexing::BTreeV2) => {
                    ci::collect_v2_chunk_entries_storage(storage, address, os, ls, ndim as u32, &dims, None)
                        .map_err(h5)?
                }
                Some(ChunkIndexing::Implicit) => {
                    ci::collect_implicit_chunk_entries(address, &shape, &dims, elem_size, None, storage.len())
                        .map_err(h5)?
                }
                Some(ChunkIndexing::FixedArray { .. }) => {
                    hdf5_reader::fixed_array::collect_fixed_array_chunk_entries_storage(
                        storage, address, os, ls, &shape, &dims, None,
                    )
                    .map_err(h5)?
                }
                Some(ChunkIndexing::ExtensibleArray { .. }) => {
                    hdf5_reader::extensible_array::collect_extensible_array_chunk_entries_storage(
                        storage,
                        address,
                        os,
                        ls,
                        &shape,
                        ds.max_dims(),
                        &dims,
                        None,
                    )
                    .map_err(h5)?
                }
            }
        };
        let frame_len = (shape[ndim - 2] * shape[ndim - 1]) as usize;
        let chunk_bytes = (per_chunk * frame_len * elem_size) as u64;
        let mut chunks = vec![None; rows * chunks_per_row];
        let base = sb.base_address;
        for e in entries {
            // stale chunks (beyond a shrunk extent) are not part of the data
            if e.offsets.len() != ndim || e.offsets.iter().zip(&shape).any(|(&o, &s)| o >= s) {
                continue;
            }
            let row = e.offsets[..ndim - 3].iter().zip(&shape).fold(0usize, |r, (&o, &s)| r * s as usize + o as usize);
            let j = e.offsets[ndim - 3] as usize / per_chunk;
            let size = if e.size == 0 { chunk_bytes } else { e.size };
            chunks[row * chunks_per_row + j] =
                Some(Chunk { address: base + e.address, size, filter_mask: e.filter_mask });
        }
        let handle = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Some(FrameChunks {
            path: path.to_string(),
            file: handle,
            per_chunk,
            last,
            chunks_per_row,
            chunks,
            filters,
            registry,
            stored,
            order,
            decoded,
            frame_len,
        }))
    }

    /// Reads `count` frames from frame `first` (flat, in this dataset) into `dst` (decoded pixels).
    pub(crate) fn read(&self, first: usize, count: usize, dst: &mut [u8], scratch: &mut Scratch) -> Result<()> {
        let (in_frame, out_frame) = (self.frame_len * self.stored.size(), self.frame_len * self.decoded.size());
        let filtered = |c: &Chunk| self.filters.iter().enumerate().any(|(i, _)| c.filter_mask & (1 << i) == 0);
        let mut done = 0;
        while done < count {
            let f = first + done;
            let (row, x) = (f / self.last, f % self.last);
            let (j, within) = (x / self.per_chunk, x % self.per_chunk);
            let m = (self.per_chunk - within).min(self.last - x).min(count - done);
            let out = &mut dst[done * out_frame..(done + m) * out_frame];
            let key = row * self.chunks_per_row + j;
            match self.chunks.get(key).copied().flatten() {
                None => out.fill(0),
                Some(c) if !filtered(&c) => {
                    // unfiltered: read just the frames wanted
                    let at = c.address + (within * in_frame) as u64;
                    if c.size < ((within + m) * in_frame) as u64 {
                        return Err(Error::format(
                            &self.path,
                            format!("chunk at {} is {} bytes, too short", c.address, c.size),
                        ));
                    }
                    if self.stored == self.decoded && self.order == ByteOrder::NATIVE {
                        self.read_at(out, at)?;
                    } else {
                        scratch.raw.resize(m * in_frame, 0);
                        let mut raw = std::mem::take(&mut scratch.raw);
                        self.read_at(&mut raw, at)?;
                        decode_pixels(&raw, self.stored, self.order, out, self.decoded)?;
                        scratch.raw = raw;
                    }
                }
                Some(c) => {
                    if scratch.decoded.as_ref().is_none_or(|(k, _)| *k != key) {
                        scratch.raw.resize(c.size as usize, 0);
                        let mut raw = std::mem::take(&mut scratch.raw);
                        self.read_at(&mut raw, c.address)?;
                        let chunk = hdf5_reader::filters::apply_pipeline(
                            &raw,
                            &self.filters,
                            c.filter_mask,
                            self.stored.size(),
                            Some(&self.registry),
                        )
                        .map_err(|e| Error::format(&self.path, format!("HDF5 chunk at byte {}: {e}", c.address)))?;
                        scratch.raw = raw;
                        if chunk.len() < self.per_chunk * in_frame {
                            return Err(Error::format(
                                &self.path,
                                format!(
                                    "HDF5 chunk at byte {} decodes to {} bytes, expected {}",
                                    c.address,
                                    chunk.len(),
                                    self.per_chunk * in_frame
                                ),
                            ));
                        }
                        scratch.decoded = Some((key, chunk));
                    }
                    let (_, chunk) = scratch.decoded.as_ref().expect("decoded just above");
                    decode_pixels(
                        &chunk[within * in_frame..(within + m) * in_frame],
                        self.stored,
                        self.order,
                        out,
                        self.decoded,
                    )?;
                }
            }
            done += m;
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> Result<()> {
        self.file.read_exact_at(buf, at).map_err(|e| {
            Error::format(&self.path, format!("truncated? cannot read {} bytes at byte {at}: {e}", buf.len()))
        })
    }
}
