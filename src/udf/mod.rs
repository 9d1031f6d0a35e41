//! The UDF framework: the [`Udf`] trait (LiberTEM's model) and the one adapter that turns any
//! `Udf` into a DataFusion aggregate function.
//!
//! ## Lifecycle
//! A *partition* is one accumulator's lifetime: one DataFusion partition's stream of frame stacks.
//! 1. `preprocess` runs when the accumulator starts, before the first frame, with the partition's
//!    (initialised) buffers.
//! 2. `process_tile` / `process_frame` / `process_partition` (as [`Udf::method`] says) run for every
//!    batch; nav views are the rows of the frames at hand.
//! 3. `postprocess` runs once when the partition's state is taken (or the accumulator is evaluated
//!    directly, with one partition), with the nav rows of every frame the partition saw.
//! 4. The final step scatters the nav buffers of every partition into the full nav grid (each frame is
//!    seen by exactly one partition) and calls `merge` for the sig and single buffers.
//! 5. `get_results` computes result-only buffers from the merged ones.
//!
//! Processing happens in `f64`; each buffer's declared dtype is the dtype of the result
//! (LiberTEM 0.16's result dtypes: see the built-ins' docs).

mod adapter;
pub mod aux;
mod buffers;
pub mod builtin;
mod map;
pub mod masks;
pub mod named_args;
mod results;
mod rewrite;
pub(crate) mod simd;

#[cfg(feature = "ballista")]
pub(crate) use adapter::Metadata;
pub use adapter::{UdfAggregate, aggregate};
pub use buffers::{BufferDecl, Buffers, Kind, Views};
pub use map::{Map, map};
pub use results::{ResultBuffer, Results};
pub use rewrite::{LITERAL_KEY, LiteralParamPlanner, NavIndexRewrite};

use crate::dataset::{DType, Pixel};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use ndarray::{ArrayView3, ArrayViewD, IxDyn};

/// Which processing method a UDF implements (Rust cannot tell which default method was overridden).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Method {
    /// `process_tile`: stacks of frames (the default).
    #[default]
    Tile,
    /// `process_frame`: one frame at a time.
    Frame,
    /// `process_partition`: the partition's frames, batch by batch as they stream in.
    Partition,
}

/// The arguments of a UDF call after the tile, in the order of [`Udf::params`]: their Arrow fields
/// (with metadata, e.g. the mask stack of `masks(...)`) and, where they are literals and known, their
/// values (values are unknown when only the result type is planned).
#[derive(Clone, Debug, Default)]
pub struct Args {
    /// Parameter names.
    pub names: Vec<String>,
    /// Fields of the arguments.
    pub fields: Vec<arrow::datatypes::FieldRef>,
    /// Literal values of the arguments (`None` for an argument that is not a literal).
    pub values: Vec<Option<datafusion::common::ScalarValue>>,
    /// Whether values are known: false while only the result type is planned.
    pub known: bool,
}

impl Args {
    /// Whether no parameters were given.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
    /// The value of parameter `name`: `Ok(None)` if it was not given, is NULL, or values are not known
    /// yet; an error naming the parameter if it was given but is not a constant.
    pub fn constant(&self, udf: &str, name: &str) -> Result<Option<&datafusion::common::ScalarValue>> {
        let Some(i) = self.names.iter().position(|n| n == name) else { return Ok(None) };
        match self.values.get(i).and_then(|v| v.as_ref()) {
            Some(v) if v.is_null() => Ok(None),
            Some(v) => Ok(Some(v)),
            None if self.known => Err(Error::udf(udf, format!("parameter {name} must be a constant"))),
            None => Ok(None),
        }
    }
    /// A numeric parameter as f64 (`None` if not given); errors name the parameter.
    pub fn number(&self, udf: &str, name: &str) -> Result<Option<f64>> {
        let Some(v) = self.constant(udf, name)? else { return Ok(None) };
        match v.cast_to(&arrow::datatypes::DataType::Float64) {
            Ok(datafusion::common::ScalarValue::Float64(Some(x))) if !x.is_nan() => Ok(Some(x)),
            _ => Err(Error::udf(udf, format!("parameter {name} must be a number, got {v}"))),
        }
    }
    /// A whole-number parameter (`None` if not given).
    pub fn integer(&self, udf: &str, name: &str) -> Result<Option<i64>> {
        match self.number(udf, name)? {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => Ok(Some(x as i64)),
            Some(x) => Err(Error::udf(udf, format!("parameter {name} must be a whole number, got {x}"))),
            None => Ok(None),
        }
    }
    /// A boolean parameter (`None` if not given).
    pub fn boolean(&self, udf: &str, name: &str) -> Result<Option<bool>> {
        match self.constant(udf, name)? {
            Some(datafusion::common::ScalarValue::Boolean(b)) => Ok(*b),
            Some(v) => Err(Error::udf(udf, format!("parameter {name} must be true or false, got {v}"))),
            None => Ok(None),
        }
    }
    /// The field and (if known) value of parameter `name`, if it was given.
    pub fn get(&self, name: &str) -> Option<(&arrow::datatypes::FieldRef, Option<&datafusion::common::ScalarValue>)> {
        let i = self.names.iter().position(|n| n == name)?;
        Some((&self.fields[i], self.values.get(i).and_then(|v| v.as_ref())))
    }
}

/// Documentation of a UDF, shown by `SHOW FUNCTIONS` and `information_schema.routines`.
#[derive(Clone, Copy, Debug)]
pub struct UdfDoc {
    /// What it computes (LiberTEM's name, formula).
    pub description: &'static str,
    /// How it is called.
    pub syntax: &'static str,
    /// A SQL example.
    pub example: &'static str,
    /// Each argument after the tile: name and meaning.
    pub args: &'static [(&'static str, &'static str)],
}

/// What a UDF knows about the data it runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// The scan shape (full, not only the ROI).
    pub nav: Shape,
    /// The frame shape.
    pub sig: Shape,
    /// The native pixel type the kernels receive.
    pub input_dtype: DType,
    /// The dataset's table name.
    pub dataset: String,
    /// The dataset's calibration (empty where the file has none).
    pub calibration: crate::dataset::Calibration,
}

/// A stack of frames in the native pixel type, with their nav indices — whole frames, or, for a UDF
/// with a [`Udf::tile_shape`], one rectangle of them ([`Tile::slice`], [`Tile::view3`]).
#[derive(Debug)]
pub struct Tile<'a, T> {
    data: &'a [T],
    sig: &'a [usize],
    nav_index: &'a [i64],
    aux: &'a [(String, arrow::array::ArrayRef)],
    aux_offset: usize,
    slice: Option<SigSlice>,
}

/// A rectangle of the frame: rows `y0..y0 + h`, columns `x0..x0 + w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigSlice {
    /// First row.
    pub y0: usize,
    /// First column.
    pub x0: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
}

impl<'a, T: Pixel> Tile<'a, T> {
    pub(crate) fn new(data: &'a [T], sig: &'a [usize], nav_index: &'a [i64]) -> Self {
        Tile { data, sig, nav_index, aux: &[], aux_offset: 0, slice: None }
    }
    pub(crate) fn with_slice(mut self, slice: Option<SigSlice>) -> Self {
        self.slice = slice;
        self
    }
    /// The part of the frame this tile covers (`None`: whole frames). With a slice, [`Tile::data`],
    /// [`Tile::frames`] and [`Tile::view`] still show whole frames; [`Tile::view3`] shows the tile.
    pub fn slice(&self) -> Option<SigSlice> {
        self.slice
    }
    pub(crate) fn with_aux(mut self, aux: &'a [(String, arrow::array::ArrayRef)], offset: usize) -> Self {
        self.aux = aux;
        self.aux_offset = offset;
        self
    }
    /// Aux data: the values of parameter `name` for these frames — a per-frame column passed to the
    /// UDF (`udf_x(tile, weight => some_column)`), one entry per frame.
    pub fn aux(&self, name: &str) -> Option<arrow::array::ArrayRef> {
        let (_, a) = self.aux.iter().find(|(n, _)| n == name)?;
        Some(a.slice(self.aux_offset, self.n_frames()))
    }
    /// Aux data as f64 values (`None` if the parameter was not given).
    pub fn aux_f64(&self, name: &str) -> Result<Option<Vec<f64>>> {
        use arrow::array::{Array, AsArray};
        let Some(a) = self.aux(name) else { return Ok(None) };
        // several values per frame arrive as a fixed-size list: its values, frame-major
        let a = match a.as_fixed_size_list_opt() {
            Some(list) => list.values().clone(),
            None => a,
        };
        let f = arrow::compute::cast(&a, &arrow::datatypes::DataType::Float64)?;
        let f = f.as_primitive::<arrow::datatypes::Float64Type>();
        if f.null_count() > 0 {
            return Err(Error::udf("aux", format!("aux data '{name}' has NULL values")));
        }
        Ok(Some(f.values().to_vec()))
    }
    /// The pixels, `frames × sig` elements, C order.
    pub fn data(&self) -> &'a [T] {
        self.data
    }
    /// Number of frames.
    pub fn n_frames(&self) -> usize {
        self.nav_index.len()
    }
    /// Pixels per frame.
    pub fn sig_size(&self) -> usize {
        self.sig.iter().product()
    }
    /// Flat nav indices of the frames.
    pub fn nav_index(&self) -> &'a [i64] {
        self.nav_index
    }
    /// The frames one by one.
    pub fn frames(&self) -> impl Iterator<Item = &'a [T]> + 'a {
        self.data.chunks_exact(self.sig.iter().product::<usize>().max(1))
    }
    /// The stack as an n-d view `(frames, sig..)`.
    pub fn view(&self) -> ArrayViewD<'a, T> {
        let mut shape = vec![self.n_frames()];
        shape.extend_from_slice(self.sig);
        ArrayViewD::from_shape(IxDyn(&shape), self.data).expect("tile length matches its shape")
    }
    /// The tile as `(frames, rows, columns)`: whole 2-D frames, or the tile's rectangle of them (a
    /// strided view, no copy).
    pub fn view3(&self) -> ArrayView3<'a, T> {
        let (sy, sx) = (self.sig[0], self.sig[1..].iter().product());
        let full = ArrayView3::from_shape((self.n_frames(), sy, sx), self.data).expect("tile length matches its shape");
        match self.slice {
            None => full,
            Some(s) => full.slice_move(ndarray::s![.., s.y0..s.y0 + s.h, s.x0..s.x0 + s.w]),
        }
    }
    /// Adds every frame into `out` (sig-sized), accumulating in f64.
    pub fn sum_frames_into(&self, out: &mut [f64]) {
        // 8- and 16-bit counts add up exactly in u32 lanes (vectorised widening adds)
        if self.n_frames() <= 65536 && matches!(T::DTYPE, DType::U8 | DType::U16) {
            let mut acc = vec![0u32; out.len()];
            if self.add_small_frames_into(&mut acc) {
                for (o, a) in out.iter_mut().zip(acc) {
                    *o += a as f64;
                }
                return;
            }
        }
        let frames: Vec<&[T]> = self.frames().collect();
        sum_blocks_f64(&frames, out)
    }
    /// Adds 8- or 16-bit frames into per-pixel u32 sums (`acc`, sig-sized); returns false, adding
    /// nothing, for other pixel types. The caller keeps `acc` from overflowing (at most 65 536
    /// frames of 16-bit counts in all).
    pub(crate) fn add_small_frames_into(&self, acc: &mut [u32]) -> bool {
        let frames: Vec<&[T]> = self.frames().collect();
        if let Some(f16) = frames.iter().map(|f| same_type::<T, u16>(f)).collect::<Option<Vec<&[u16]>>>() {
            add_frames_u32(&f16, acc);
            return true;
        }
        if let Some(f8) = frames.iter().map(|f| same_type::<T, u8>(f)).collect::<Option<Vec<&[u8]>>>() {
            add_frames_u32(&f8, acc);
            return true;
        }
        false
    }
    /// Writes the sum of each frame into `out` (one value per frame).
    pub fn sum_each_frame_into(&self, out: &mut [f64]) {
        sum_each_frame(self.data, self.sig_size(), out)
    }
}

simd::multiversion! {
    /// Adds the frames into `out` block by block of [`F64_BLOCK`] pixels, eight frames per pass
    /// over the block, so that the block's sums stay in L1 while the stack's frames pass: memory
    /// traffic is the frames alone, not a frame-sized accumulator per frame.
    ///
    /// float32 frames are added eight at a time in f32, pairwise (three roundings, each of the size
    /// of the input's own precision), and the sums of eight in f64: an eighth of the conversions,
    /// and adds in vectors of 16 lanes instead of 8, which bounded this loop (A/B, sum of the 1 GiB
    /// float32 file: 1.18-1.48x).
    fn sum_blocks_f64<T: Pixel>(frames: &[&[T]], out: &mut [f64]) {
        for (b, out) in out.chunks_mut(F64_BLOCK).enumerate() {
            let px = b * F64_BLOCK..b * F64_BLOCK + out.len();
            match same_type_frames::<T, f32>(frames) {
                Some(f32s) => add_by_eights(f32s, px, out, |x| x, |s| s as f64),
                None => add_by_eights(frames, px, out, |x| x.to_f64(), |s| s),
            }
        }
    }
}

/// Pixels per block of [`sum_blocks_f64`]: 8 KiB of f64 sums. (Blocks of 512 to 4096 pixels measured
/// alike; a separate block accumulator added to `out` at the end, slower. Chunks of 16 384 pixels
/// in frame order, as the u32 sums use, measured as fast in A/B runs, but at half the speed in two
/// full comparison runs: not understood, not kept.)
const F64_BLOCK: usize = 1024;

/// Adds `term(pixel, param(frame index))` of pixels `px` of every frame into `acc` (one entry per
/// pixel), four frames per pass over `acc`: a quarter of its loads and stores, which otherwise cost as
/// much as the frames' own reads in blocked per-pixel kernels. `param` (e.g. the frame's minimum) is
/// evaluated once per frame, outside the pixel loop.
#[inline(always)]
pub(crate) fn add_by_fours<T: Copy, P: Copy, A: Copy + std::ops::Add<Output = A> + std::ops::AddAssign>(
    frames: &[&[T]],
    px: std::ops::Range<usize>,
    acc: &mut [A],
    param: impl Fn(usize) -> P,
    term: impl Fn(T, P) -> A,
) {
    let quads = frames.len() / 4 * 4;
    for k in (0..quads).step_by(4) {
        let (a, b) = (&frames[k][px.clone()], &frames[k + 1][px.clone()]);
        let (c, d) = (&frames[k + 2][px.clone()], &frames[k + 3][px.clone()]);
        let (pa, pb, pc, pd) = (param(k), param(k + 1), param(k + 2), param(k + 3));
        for (i, o) in acc.iter_mut().enumerate() {
            *o += (term(a[i], pa) + term(b[i], pb)) + (term(c[i], pc) + term(d[i], pd));
        }
    }
    for (k, frame) in frames.iter().enumerate().skip(quads) {
        let p = param(k);
        for (o, &x) in acc.iter_mut().zip(&frame[px.clone()]) {
            *o += term(x, p);
        }
    }
}

/// [`add_by_fours`] with eight frames per pass over `acc` and no per-frame parameter: half the
/// loads and stores of `acc` again, for the u32 sums of 8/16-bit frames, whose loop they bound (A/B,
/// sum of the large u16 file: 1.12-1.16x). The eight terms are summed in `S`, which `widen` turns
/// into the accumulator's type (f32 sums of float32 frames into f64 ones).
#[inline(always)]
pub(crate) fn add_by_eights<
    T: Copy,
    S: Copy + std::ops::Add<Output = S>,
    A: Copy + std::ops::Add<Output = A> + std::ops::AddAssign,
>(
    frames: &[&[T]],
    px: std::ops::Range<usize>,
    acc: &mut [A],
    term: impl Fn(T) -> S,
    widen: impl Fn(S) -> A,
) {
    let whole = frames.len() / 8 * 8;
    for k in (0..whole).step_by(8) {
        let f: [&[T]; 8] = std::array::from_fn(|j| &frames[k + j][px.clone()]);
        for (i, o) in acc.iter_mut().enumerate() {
            let v: [S; 8] = std::array::from_fn(|j| term(f[j][i]));
            *o += widen(pairwise8(v));
        }
    }
    add_by_fours(&frames[whole..], px, acc, |_| (), |x, ()| widen(term(x)));
}

/// `v`'s sum in pairs, then pairs of pairs: three roundings for each term, where a running sum would
/// have up to seven (the eight-term sums of [`add_by_eights`] and [`sum_f32_by_eights`]).
#[inline(always)]
fn pairwise8<S: Copy + std::ops::Add<Output = S>>(v: [S; 8]) -> S {
    ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
}

/// Pixels per chunk of per-pixel u32 sums of 8/16-bit frames: 128 KiB of sums (256 KiB for two) stay
/// in L2 while the frames of a batch stream through in their own order, which the hardware prefetcher
/// follows. (A block of a few hundred pixels of every frame in turn, with L1-resident sums, reads the
/// batch as many short streams, and waits on memory.)
pub(crate) const U32_CHUNK: usize = 32768;

/// 8- and 16-bit unsigned pixels: they widen to u32 without loss.
pub(crate) trait SmallUint: Pixel + Into<u32> {}
impl SmallUint for u8 {}
impl SmallUint for u16 {}

simd::multiversion! {
    /// Adds the frames of 8- or 16-bit pixels into the per-pixel u32 sums `acc`, chunk by chunk of
    /// [`U32_CHUNK`] pixels (the caller bounds the frames added, so that u32 cannot overflow).
    fn add_frames_u32<T: SmallUint>(frames: &[&[T]], acc: &mut [u32]) {
        for (b, acc) in acc.chunks_mut(U32_CHUNK).enumerate() {
            let px = b * U32_CHUNK..b * U32_CHUNK + acc.len();
            add_by_eights(frames, px, acc, |x| x.into(), |s| s);
        }
    }
}

/// `xs` as a slice of `U` when `T` is `U` (the same pixel type): lets generic kernels take a typed
/// fast path.
#[inline(always)]
pub fn same_type<T: Pixel, U: Pixel>(xs: &[T]) -> Option<&[U]> {
    // SAFETY: Pixel is implemented for ten primitive types with distinct DTYPEs, so equal DTYPEs
    // mean T and U are the same type: same size, alignment and valid bit patterns.
    (T::DTYPE == U::DTYPE).then(|| unsafe { std::slice::from_raw_parts(xs.as_ptr() as *const U, xs.len()) })
}

/// [`same_type`] for a list of frames.
#[inline(always)]
pub(crate) fn same_type_frames<'a, 'b, T: Pixel, U: Pixel>(frames: &'b [&'a [T]]) -> Option<&'b [&'a [U]]> {
    // SAFETY: as in `same_type`, equal DTYPEs mean T and U are the same type, so `&[T]` and `&[U]`
    // are the same (fat pointer) type and the list can be viewed as either, with the same lifetimes.
    (T::DTYPE == U::DTYPE)
        .then(|| unsafe { std::slice::from_raw_parts(frames.as_ptr() as *const &'a [U], frames.len()) })
}

simd::multiversion! {
    /// Adds the sum of each frame (`sig_size` pixels, consecutive in `data`) to its entry of `out`.
    fn sum_each_frame<T: Pixel>(data: &[T], sig_size: usize, out: &mut [f64]) {
        for (o, frame) in out.iter_mut().zip(data.chunks_exact(sig_size.max(1))) {
            *o += sum_f64_inline(frame);
        }
    }
}

simd::multiversion! {
    /// Sum of a slice in f64 with 32 independent lanes (vectorizes; as accurate as a pairwise sum for
    /// frame-sized inputs). 8- and 16-bit integers add exactly in u32 lanes; float32 pixels eight
    /// at a time in f32 first (see [`sum_f32_by_eights`]).
    pub fn sum_f64<T: Pixel>(xs: &[T]) -> f64 {
        sum_f64_inline(xs)
    }
}

/// A lane of the kernels that sum pixels over runs (masks' and CoM's windows): u32 for 8/16-bit
/// counts where the kernel bounds the sums, f64 otherwise.
pub(crate) trait RunLane: Copy + Default + std::ops::Add<Output = Self> {
    /// The sum of the lanes, in lane order.
    fn total<const W: usize>(lanes: &[Self; W]) -> f64;
    /// `self` where `on`, else zero (a bitwise and with all ones or zeros: no compare per lane).
    fn keep(self, on: bool) -> Self;
}

impl RunLane for u32 {
    #[inline(always)]
    fn total<const W: usize>(lanes: &[u32; W]) -> f64 {
        lanes.iter().map(|&l| l as u64).sum::<u64>() as f64
    }
    #[inline(always)]
    fn keep(self, on: bool) -> u32 {
        self & (on as u32).wrapping_neg()
    }
}

impl RunLane for f64 {
    #[inline(always)]
    fn total<const W: usize>(lanes: &[f64; W]) -> f64 {
        lanes.iter().sum()
    }
    #[inline(always)]
    fn keep(self, on: bool) -> f64 {
        f64::from_bits(self.to_bits() & (on as u64).wrapping_neg())
    }
}

/// The tail of a run whose whole windows of `W` pixels end at `end`: the window that holds its
/// `tail` (< `W`) pixels, moved back to stay inside the frame (`frame.len() >= W`); which of its
/// lanes are the tail's pixels; and the lane of the tail's first pixel. The masked last step of the
/// kernels that sum pixels over runs (masks, CoM): no scalar remainder loop per run.
#[inline(always)]
pub(crate) fn tail_window<T, const W: usize>(frame: &[T], end: usize, tail: usize) -> (&[T; W], [bool; W], usize) {
    let start = end.min(frame.len() - W);
    let lo = end - start;
    let window = frame[start..start + W].try_into().expect("W pixels");
    // lanes lo..lo + tail, in one unsigned compare each
    let inside = std::array::from_fn(|k| (k as u32).wrapping_sub(lo as u32) < tail as u32);
    (window, inside, lo)
}

/// Asks the CPU to bring the cache lines of `xs` into cache ahead of their use (`prefetcht0`): for
/// kernels that read a frame in short pieces, a few pieces ahead, so that more of the frame's memory
/// reads are in flight at once. A hint only: no effect on results (and none where the pages are not
/// mapped yet).
#[inline(always)]
pub(crate) fn prefetch<T>(xs: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let (start, bytes) = (xs.as_ptr() as *const i8, std::mem::size_of_val(xs));
        // every 64 bytes from the start, and the last byte (whose line the steps may miss)
        for offset in (0..bytes).step_by(64).chain(bytes.checked_sub(1)) {
            // SAFETY: a prefetch never faults and has no architectural effect; the address is inside `xs`.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(start.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = xs;
}

/// [`prefetch_l2`] of the one line that holds `xs[i]` (nothing where `i` is outside `xs`): the
/// cheapest form, for inner loops that step through a frame a line at a time.
#[inline(always)]
pub(crate) fn prefetch_l2_at<T>(xs: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = xs.get(i) {
        // SAFETY: a prefetch never faults and has no architectural effect; the address is inside `xs`.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>((x as *const T).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (xs, i);
}

/// The frames of `data` (`sig_size` pixels each), each with the one after it (empty for the last):
/// for kernels that prefetch the next frame while they read this one (see [`prefetch_l2`]).
pub(crate) fn frames_with_next<T>(data: &[T], sig_size: usize) -> impl Iterator<Item = (&[T], &[T])> {
    let size = sig_size.max(1);
    data.chunks_exact(size)
        .enumerate()
        .map(move |(i, frame)| (frame, data.get((i + 1) * size..(i + 2) * size).unwrap_or(&[])))
}

/// Asks the CPU to bring the cache lines of `xs[start .. start + len]` into L2 (`prefetcht1`): for
/// data a kernel reads a while later, such as the same pixels of the next frame (a whole frame
/// ahead: the hardware prefetcher does not follow a frame read in short pieces that far). A hint
/// only: no effect on results, and none where the range is empty or not inside `xs`.
#[inline(always)]
pub(crate) fn prefetch_l2<T>(xs: &[T], start: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(range) = xs.get(start..start.saturating_add(len)) {
        // the lines from the one holding the range's first byte to the one holding its last (a
        // plain loop: this sits in kernels' inner loops, often for one line)
        let (mut line, end) = (range.as_ptr() as usize & !63, range.as_ptr_range().end as usize);
        while line < end {
            // SAFETY: a prefetch never faults and has no architectural effect; each line holds
            // bytes of `xs[start .. start + len]`.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(line as *const i8) };
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (xs, start, len);
}

/// [`sum_f64`] for kernels that are themselves compiled per SIMD level: inlined into them.
#[inline(always)]
pub(crate) fn sum_f64_inline<T: Pixel>(xs: &[T]) -> f64 {
    if let Some(v) = same_type::<T, u16>(xs) {
        return sum_int(v);
    }
    if let Some(v) = same_type::<T, u8>(xs) {
        return sum_int(v);
    }
    if let Some(v) = same_type::<T, f32>(xs) {
        return sum_f32_by_eights(v);
    }
    sum_lanes(xs)
}

/// Sum of float32 pixels: in groups of 128, the eight pixels `k, k + 16, ..., k + 112` added in f32,
/// pairwise, then those sums in 16 f64 lanes (lane `k`).
///
/// Each pixel takes part in three f32 roundings (unit 2^-24) of the magnitude of its group, as in
/// `udf_sum`'s eight-frame sums ([`sum_blocks_f64`]); everything else adds in f64. The frame's sum
/// converts an eighth of its pixels to f64, and adds in vectors of 16 f32 lanes instead of 8 f64:
/// that work sat beside the loads of a frame streamed from memory (A/B, `udf_sum_sig` of the 1 GiB
/// float32 file, Intel VM: 1.075-1.08x against converting every pixel).
#[inline(always)]
fn sum_f32_by_eights(xs: &[f32]) -> f64 {
    const W: usize = 16;
    let mut lanes = [0f64; W];
    let groups = xs.chunks_exact(8 * W);
    let rest = groups.remainder();
    for g in groups {
        let g: &[f32; 8 * W] = g.try_into().expect("8 W pixels");
        for k in 0..W {
            let v: [f32; 8] = std::array::from_fn(|j| g[j * W + k]);
            lanes[k] += pairwise8(v) as f64;
        }
    }
    let mut s: f64 = lanes.iter().sum();
    for &x in rest {
        s += x as f64;
    }
    s
}

/// Exact sum of small unsigned integers: u32 lanes over chunks of 65536 (no overflow), then u64.
#[inline(always)]
fn sum_int<T: SmallUint>(xs: &[T]) -> f64 {
    let mut total = 0u64;
    for chunk in xs.chunks(65536) {
        let mut lanes = [0u32; 16];
        let c = chunk.chunks_exact(16);
        let rest = c.remainder();
        for c in c {
            for k in 0..16 {
                lanes[k] += c[k].into();
            }
        }
        total += lanes.iter().map(|&l| l as u64).sum::<u64>() + rest.iter().map(|&x| x.into() as u64).sum::<u64>();
    }
    total as f64
}

#[inline(always)]
fn sum_lanes<T: Pixel>(xs: &[T]) -> f64 {
    // 32 lanes: four independent chains of vector adds (one chain waits on the add's latency)
    const L: usize = 32;
    let mut lanes = [0f64; L];
    let chunks = xs.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        let c: &[T; L] = c.try_into().expect("L pixels");
        for k in 0..L {
            lanes[k] += c[k].to_f64();
        }
    }
    let mut s: f64 = lanes.iter().sum();
    for &x in rest {
        s += x.to_f64();
    }
    s
}

/// Bytes of frames a UDF gets per `process_tile` call unless it says otherwise
/// ([`Udf::tile_depth`]): the stack fits the L2 cache while a kernel reads it more than once (a
/// frame's minimum, then its logs), and kernels that read several frames side by side keep the
/// same number of streams however long the scan's batches are.
pub const STACK_BYTES: usize = 2 << 20;

/// A user-defined function over the frames of a dataset, in LiberTEM's model.
///
/// Implement `name`, `buffers`, the `process_*` method that [`Udf::method`] names, and `merge` where
/// adding sig/single buffers is not the right merge. The generic methods receive the dataset's
/// native pixel type, so integer data is not converted to float before a kernel needs it.
///
/// ```
/// use tessera::dataset::{DType, Pixel};
/// use tessera::udf::{Buffers, Meta, Tile, Udf, Views};
///
/// /// The brightest pixel of each frame.
/// #[derive(Clone, Debug)]
/// struct MaxPerFrame;
///
/// impl Udf for MaxPerFrame {
///     fn name(&self) -> &str { "max_per_frame" }
///     fn buffers(&self, _meta: &Meta) -> tessera::Result<Buffers> {
///         Ok(Buffers::new().nav("max", DType::F64))
///     }
///     fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> tessera::Result<()> {
///         for (o, frame) in out.nav("max").iter_mut().zip(tile.frames()) {
///             *o = frame.iter().map(|v| v.to_f64()).fold(f64::MIN, f64::max);
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Udf: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The SQL name (`udf_sum`).
    fn name(&self) -> &str;
    /// Documentation for `SHOW FUNCTIONS`.
    fn doc(&self) -> Option<UdfDoc> {
        None
    }
    /// Names of the SQL parameters after the tile (`udf_com(tile, cy => 63.5)`); none by default.
    fn params(&self) -> &'static [&'static str] {
        &[]
    }
    /// A copy configured by the call's parameters; called when the query is planned (values may be
    /// unknown then) and when each accumulator starts. Errors name the parameter.
    fn configure(&self, _meta: &Meta, args: &Args) -> Result<Self> {
        if args.is_empty() {
            Ok(self.clone())
        } else {
            Err(Error::udf(self.name(), "takes no parameters besides the tile"))
        }
    }
    /// The buffers, given what the data looks like. Must not depend on the ROI.
    fn buffers(&self, meta: &Meta) -> Result<Buffers>;
    /// Which `process_*` method to call.
    fn method(&self) -> Method {
        Method::Tile
    }
    /// The pixel type the kernels want, given the dataset's: `None` (the default) keeps the native
    /// type, so integer data stays integer; otherwise tiles are converted once per batch.
    fn input_dtype(&self, _native: DType) -> Option<DType> {
        None
    }
    /// Preferred tile of the frame, `[rows, columns]` (`None`: whole frames). `process_tile` is then
    /// called once per rectangle of every stack ([`Tile::slice`], [`Tile::view3`],
    /// [`Views::sig_tile`]); edge tiles are smaller.
    fn tile_shape(&self, _meta: &Meta) -> Option<[usize; 2]> {
        None
    }
    /// At most this many frames per `process_tile` call (`None`: as many as fill [`STACK_BYTES`], at
    /// least one). The default keeps a stack in the L2 cache while a UDF reads it more than once,
    /// and the access pattern of every kernel the same whatever the scan's batches.
    fn tile_depth(&self) -> Option<usize> {
        None
    }
    /// Computes per-partition data (LiberTEM's task data) into `self` when a partition starts, before
    /// `preprocess`.
    fn task_data(&mut self, _meta: &Meta) -> Result<()> {
        Ok(())
    }
    /// Runs when a partition starts.
    fn preprocess(&mut self, _meta: &Meta, _out: &mut Views<'_>) -> Result<()> {
        Ok(())
    }
    /// Processes a stack of frames (`Method::Tile`).
    fn process_tile<T: Pixel>(&mut self, _tile: &Tile<'_, T>, _out: &mut Views<'_>) -> Result<()> {
        Err(Error::udf(self.name(), "method() is Tile but process_tile is not implemented"))
    }
    /// Processes one frame (`Method::Frame`); nav views have one row.
    fn process_frame<T: Pixel>(&mut self, _frame: &Tile<'_, T>, _out: &mut Views<'_>) -> Result<()> {
        Err(Error::udf(self.name(), "method() is Frame but process_frame is not implemented"))
    }
    /// Processes the partition's frames as they stream in (`Method::Partition`).
    fn process_partition<T: Pixel>(&mut self, _frames: &Tile<'_, T>, _out: &mut Views<'_>) -> Result<()> {
        Err(Error::udf(self.name(), "method() is Partition but process_partition is not implemented"))
    }
    /// Runs when a partition ends, with the nav rows of all frames it saw.
    fn postprocess(&mut self, _meta: &Meta, _out: &mut Views<'_>) -> Result<()> {
        Ok(())
    }
    /// Merges one partition's sig and single buffers (`src`) into the result (`dest`). Nav buffers
    /// are merged by the framework. The default adds every sig and single buffer.
    fn merge(&self, dest: &mut Views<'_>, src: &mut Views<'_>) -> Result<()> {
        for (name, kind) in src.names() {
            if kind != Kind::Nav {
                let mut d = dest.view_mut(name);
                d += &src.view(name);
            }
        }
        Ok(())
    }
    /// Computes result-only buffers from the merged buffers (full nav grid).
    fn get_results(&self, _meta: &Meta, _bufs: &mut Views<'_>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use simd::{same_at_every_level, test_values};

    /// The u32 path of [`Tile::sum_frames_into`].
    fn sum_blocks_u32(frames: &[&[u16]], out: &mut [f64]) {
        let mut acc = vec![0u32; out.len()];
        add_frames_u32(frames, &mut acc);
        for (o, a) in out.iter_mut().zip(acc) {
            *o += a as f64;
        }
    }

    #[test]
    fn sums_agree_at_every_level() {
        let v = test_values(20 * 1000 + 7, 60000);
        let u: Vec<u16> = v.iter().map(|&x| x as u16).collect();
        let f: Vec<f32> = v.iter().map(|&x| x as f32 * 0.37).collect();
        let fu: Vec<&[u16]> = u.chunks(1000).take(20).collect();
        let ff: Vec<&[f32]> = f.chunks(1000).take(20).collect();
        let sum_u = same_at_every_level(|| {
            let mut out = vec![0.0; 1000];
            sum_blocks_u32(&fu, &mut out);
            out
        });
        let sum_f = same_at_every_level(|| {
            let mut out = vec![0.0; 1000];
            sum_blocks_f64(&ff, &mut out);
            out
        });
        let mut f64_sum = vec![0.0; 1000];
        sum_blocks_f64(&fu, &mut f64_sum);
        assert_eq!(sum_u, f64_sum, "u32 lanes and f64 agree on u16 (both exact)");
        assert_eq!(same_at_every_level(|| sum_f64(&u)), u.iter().map(|&x| x as f64).sum::<f64>());
        // float32: groups of eight in f32 (three roundings of unit 2^-24), the rest in f64; a
        // length that leaves a remainder
        let f = &f[..f.len() - 5];
        let total_f = same_at_every_level(|| sum_f64(f));
        let (exact, magnitude) = f.iter().fold((0.0, 0.0), |(s, m), &x| (s + x as f64, m + (x as f64).abs()));
        assert!((total_f - exact).abs() <= 3.0 * 2f64.powi(-24) * magnitude, "{total_f} vs {exact}");
        // float32: each pixel's eight-frame sums in f32, at most three roundings (unit 2^-24) of
        // the magnitudes they add; the rest in f64
        for (i, &s) in sum_f.iter().enumerate() {
            let column = ff.iter().map(|frame| frame[i] as f64);
            let (exact, magnitude) = column.fold((0.0, 0.0), |(s, m), x| (s + x, m + x.abs()));
            assert!((s - exact).abs() <= 3.0 * 2f64.powi(-24) * magnitude, "pixel {i}: {s} vs {exact}");
        }
    }

    #[test]
    fn sums_over_several_chunks_and_frame_counts() {
        // frames of 40 000 pixels: three f64 chunks and two u32 chunks, the last ones partial;
        // 1 to 19 frames: eights, fours and single frames
        let v = test_values(19 * 40_000, 60000);
        let u: Vec<u16> = v.iter().map(|&x| x as u16).collect();
        let f: Vec<f32> = v.iter().map(|&x| x as f32 * 0.25).collect();
        for n in [1, 3, 8, 12, 19] {
            let fu: Vec<&[u16]> = u.chunks(40_000).take(n).collect();
            let ff: Vec<&[f32]> = f.chunks(40_000).take(n).collect();
            let want: Vec<f64> = (0..40_000).map(|i| fu.iter().map(|fr| fr[i] as f64).sum()).collect();
            let (mut got_u, mut got_f) = (vec![0.0; 40_000], vec![0.0; 40_000]);
            sum_blocks_u32(&fu, &mut got_u);
            sum_blocks_f64(&ff, &mut got_f);
            assert_eq!(got_u, want, "{n} frames");
            // the f32 values are quarters of integers: their f64 sums are exact in any order
            assert_eq!(got_f, want.iter().map(|w| w * 0.25).collect::<Vec<_>>(), "{n} frames");
        }
    }
}
