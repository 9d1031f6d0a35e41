//! Detector masks: the `masks(...)` SQL function and the mask stacks it describes.
//!
//! One spec string per mask (pixel `(y, x)` has coordinates equal to its indices, `d² = (y-cy)² + (x-cx)²`):
//! - `ring(cy, cx, ri, ro)`: `d² <= ro²` and not `d² <= ri²` (LiberTEM's ring);
//! - `disk(cy, cx, r)`: `d² <= r²`;
//! - `point(y, x)`: the one pixel at (y, x);
//! - `rect(y0, x0, h, w)`: rows `y0..y0+h`, columns `x0..x0+w`;
//! - `polygon(y0 x0, y1 x1, ...)`: pixels whose coordinates lie inside the polygon (even-odd rule);
//! - `npy(path)`: a 2-D mask or a 3-D stack of masks from an .npy file, any numeric dtype.
//!
//! `masks(...)` is planned, not computed: its return field carries the specs and the number of masks
//! in its metadata, so that `udf_apply_masks` knows its result shape when the query is planned
//! (DataFusion 55's aggregate `return_field` sees argument fields, not values).

use crate::dataset::formats::npy::NpyHeader;
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Field metadata key: JSON array of the mask spec strings.
pub const MASKS_KEY: &str = "tessera.masks";
/// Field metadata key: the number of masks.
pub const N_MASKS_KEY: &str = "tessera.n_masks";

/// One mask spec.
#[derive(Clone, Debug, PartialEq)]
pub enum MaskSpec {
    /// `ring(cy, cx, ri, ro)`.
    Ring {
        /// Centre row.
        cy: f64,
        /// Centre column.
        cx: f64,
        /// Inner radius (excluded).
        ri: f64,
        /// Outer radius.
        ro: f64,
    },
    /// `disk(cy, cx, r)`.
    Disk {
        /// Centre row.
        cy: f64,
        /// Centre column.
        cx: f64,
        /// Radius.
        r: f64,
    },
    /// `point(y, x)`.
    Point {
        /// Row.
        y: f64,
        /// Column.
        x: f64,
    },
    /// `rect(y0, x0, h, w)`.
    Rect {
        /// First row.
        y0: f64,
        /// First column.
        x0: f64,
        /// Height.
        h: f64,
        /// Width.
        w: f64,
    },
    /// `polygon(y0 x0, y1 x1, ...)`.
    Polygon(Vec<(f64, f64)>),
    /// `npy(path)`.
    Npy(String),
}

impl MaskSpec {
    /// Parses one spec string.
    ///
    /// ```
    /// use tessera::udf::masks::MaskSpec;
    /// assert_eq!(MaskSpec::parse("disk(15.5, 15.5, 4)").unwrap(), MaskSpec::Disk { cy: 15.5, cx: 15.5, r: 4.0 });
    /// assert!(MaskSpec::parse("ring(1, 2, 3)").unwrap_err().to_string().contains("ring"));
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        let bad = |msg: &str| Error::udf("masks", format!("'{text}': {msg}"));
        let open = t.find('(').ok_or_else(|| bad("expected kind(arguments), e.g. disk(16, 16, 8)"))?;
        if !t.ends_with(')') {
            return Err(bad("missing ')'"));
        }
        let kind = t[..open].trim().to_ascii_lowercase();
        let inner = &t[open + 1..t.len() - 1];
        if kind == "npy" {
            let path = inner.trim().trim_matches(['\'', '"']);
            if path.is_empty() {
                return Err(bad("npy needs a path"));
            }
            return Ok(MaskSpec::Npy(path.to_string()));
        }
        if kind == "polygon" {
            let mut pts = Vec::new();
            for p in inner.split(',') {
                let nums: Vec<&str> = p.split_whitespace().collect();
                let [y, x] = nums[..] else { return Err(bad("polygon vertices are 'y x' pairs separated by commas")) };
                let y: f64 = y.parse().map_err(|_| bad(&format!("'{y}' is not a number")))?;
                let x: f64 = x.parse().map_err(|_| bad(&format!("'{x}' is not a number")))?;
                pts.push((y, x));
            }
            if pts.len() < 3 {
                return Err(bad("a polygon needs at least 3 vertices"));
            }
            return Ok(MaskSpec::Polygon(pts));
        }
        let nums: Vec<f64> = inner
            .split(',')
            .map(|v| v.trim().parse::<f64>().map_err(|_| bad(&format!("'{}' is not a number", v.trim()))))
            .collect::<Result<_>>()?;
        let want = |n: usize, names: &str| {
            if nums.len() == n {
                Ok(())
            } else {
                Err(bad(&format!("{kind} takes {n} numbers ({names}), got {}", nums.len())))
            }
        };
        if nums.iter().any(|v| !v.is_finite()) {
            return Err(bad("numbers must be finite"));
        }
        match kind.as_str() {
            "ring" => {
                want(4, "cy, cx, ri, ro")?;
                let (ri, ro) = (nums[2], nums[3]);
                if ri < 0.0 || ro < 0.0 {
                    return Err(bad("radii must be >= 0"));
                }
                if ri >= ro {
                    return Err(bad("the inner radius must be smaller than the outer radius"));
                }
                Ok(MaskSpec::Ring { cy: nums[0], cx: nums[1], ri, ro })
            }
            "disk" => {
                want(3, "cy, cx, r")?;
                if nums[2] < 0.0 {
                    return Err(bad("the radius must be >= 0"));
                }
                Ok(MaskSpec::Disk { cy: nums[0], cx: nums[1], r: nums[2] })
            }
            "point" => {
                want(2, "y, x")?;
                Ok(MaskSpec::Point { y: nums[0], x: nums[1] })
            }
            "rect" => {
                want(4, "y0, x0, h, w")?;
                if nums[2] <= 0.0 || nums[3] <= 0.0 {
                    return Err(bad("height and width must be > 0"));
                }
                Ok(MaskSpec::Rect { y0: nums[0], x0: nums[1], h: nums[2], w: nums[3] })
            }
            other => Err(bad(&format!("unknown mask kind '{other}' (ring, disk, point, rect, polygon, npy)"))),
        }
    }

    /// Number of masks this spec adds (an .npy stack may add several; reads the file's header).
    pub fn count(&self) -> Result<usize> {
        match self {
            MaskSpec::Npy(path) => {
                let h = NpyHeader::read(path)?;
                match h.shape.len() {
                    2 => Ok(1),
                    3 => Ok(h.shape[0]),
                    _ => Err(Error::format(path, format!("a mask .npy must be 2-D or 3-D, not {:?}", h.shape))),
                }
            }
            _ => Ok(1),
        }
    }

    /// Rasterizes the spec on a frame of `sig` (2-D), appending its mask(s) to `out`.
    fn rasterize(&self, sig: &Shape, out: &mut Vec<f32>) -> Result<()> {
        let (sy, sx) = (sig.dims()[0], sig.dims()[1]);
        let mut push = |f: &dyn Fn(f64, f64) -> bool| {
            for y in 0..sy {
                for x in 0..sx {
                    out.push(if f(y as f64, x as f64) { 1.0 } else { 0.0 });
                }
            }
        };
        match self {
            MaskSpec::Ring { cy, cx, ri, ro } => push(&|y, x| {
                let d2 = (y - cy).powi(2) + (x - cx).powi(2);
                d2 <= ro * ro && d2 > ri * ri
            }),
            MaskSpec::Disk { cy, cx, r } => push(&|y, x| (y - cy).powi(2) + (x - cx).powi(2) <= r * r),
            MaskSpec::Point { y: py, x: px } => {
                let (py, px) = (py.round(), px.round());
                if py < 0.0 || px < 0.0 || py >= sy as f64 || px >= sx as f64 {
                    return Err(Error::udf("masks", format!("point({py}, {px}) lies outside the {sy}x{sx} frame")));
                }
                push(&|y, x| y == py && x == px)
            }
            MaskSpec::Rect { y0, x0, h, w } => push(&|y, x| y >= *y0 && y < y0 + h && x >= *x0 && x < x0 + w),
            MaskSpec::Polygon(pts) => push(&|y, x| inside(pts, y, x)),
            MaskSpec::Npy(path) => {
                let h = NpyHeader::read(path)?;
                let frame_shape = &h.shape[h.shape.len().saturating_sub(2)..];
                if frame_shape != sig.dims() {
                    return Err(Error::Shape(format!(
                        "masks: npy({path}) holds masks of shape {frame_shape:?}, the frames are {sy}x{sx}"
                    )));
                }
                let values = crate::dataset::formats::npy::read_npy_f64(path, &h)?;
                out.extend(values.iter().map(|&v| v as f32));
            }
        }
        Ok(())
    }
}

/// Even-odd point-in-polygon test.
fn inside(pts: &[(f64, f64)], y: f64, x: f64) -> bool {
    let mut inside = false;
    let mut j = pts.len() - 1;
    for i in 0..pts.len() {
        let (yi, xi) = pts[i];
        let (yj, xj) = pts[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// A stack of masks over the frame, dense, plus a sparse form for masks with few non-zero pixels and
/// a run form for binary masks.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskStack {
    /// Number of masks.
    pub n: usize,
    /// Pixels per frame.
    pub sig_size: usize,
    /// `n × sig_size` weights, mask-major.
    pub dense: Vec<f32>,
    /// Per mask, its non-zero pixels and weights (filled when the stack is sparse enough).
    pub sparse: Option<Vec<Vec<(u32, f32)>>>,
    /// Per mask, its runs `(first pixel, length)` of consecutive pixels, when every weight is 0 or 1
    /// (rings, disks, rectangles, polygons): a mask then costs a contiguous sum per run.
    pub runs: Option<Vec<Vec<(u32, u32)>>>,
    /// The runs of all masks in frame order `(first pixel, length, mask)`: one sequential pass over
    /// the frame serves every mask.
    pub ordered_runs: Vec<(u32, u32, u32)>,
    /// Frame width (pixels per row); the whole frame where the stack was made without a shape.
    pub(crate) width: usize,
    /// Per binary mask, its vertical runs (a column, consecutive rows) as `(start, end)` indices into
    /// a [`column_prefix`] of a frame: a run sums to `prefix[end] - prefix[start]`. Set where that is
    /// the cheaper way for 16-bit frames: many short runs (narrow rings), not many more vertical than
    /// horizontal ones, and frames of at most 65 536 pixels (u32 sums cannot overflow).
    pub(crate) column_runs: Option<Vec<Vec<(u32, u32)>>>,
    /// [`MaskStack::ordered_runs`] cut into [`RunWindow`]s, for frames of at least 16 pixels and at
    /// most 65 536 masks (empty otherwise).
    pub(crate) windows: Vec<RunWindow>,
}

/// At most 16 pixels of one run of binary mask `m`: the pixels `p + k` for the set bits `k` of
/// `bits` (consecutive bits). The window `p .. p + 16` lies inside the frame: at the frame's end it
/// moves back and its bits move up. A mask's sum over a frame is then the same steps for every
/// window, with no loop whose trip count varies from run to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunWindow {
    /// The window's first pixel.
    pub p: u32,
    /// The mask.
    pub m: u16,
    /// Which of the window's 16 pixels belong to the run.
    pub bits: u16,
}

/// Cuts runs `(first pixel, length, mask)` into [`RunWindow`]s, in the same order.
fn run_windows(ordered_runs: &[(u32, u32, u32)], sig_size: usize) -> Vec<RunWindow> {
    if sig_size < 16 || ordered_runs.iter().any(|&(_, _, m)| m > u16::MAX as u32) {
        return Vec::new();
    }
    let last = (sig_size - 16) as u32;
    ordered_runs
        .iter()
        .flat_map(|&(p, l, m)| {
            (p..p + l).step_by(16).map(move |s| {
                let (len, start) = ((p + l - s).min(16), s.min(last));
                RunWindow { p: start, m: m as u16, bits: (((1u32 << len) - 1) << (s - start)) as u16 }
            })
        })
        .collect()
}

/// Running sums down the columns of a frame of 16-bit counts (`width` pixels per row):
/// `out[r·width + c]` = sum of rows `0..r` of column `c`, for `r` in `0..=rows`. One vector add per
/// row (no chain of dependent additions, unlike a running sum along the frame); exact in u32 for
/// frames of at most 65 536 pixels.
#[inline(always)]
pub(crate) fn column_prefix(frame: &[u16], width: usize, out: &mut Vec<u32>) {
    let width = width.max(1);
    if out.len() != frame.len() + width {
        out.clear();
        out.resize(frame.len() + width, 0); // row 0 stays 0
    }
    for (r, row) in frame.chunks_exact(width).enumerate() {
        let (above, below) = out.split_at_mut((r + 1) * width);
        for ((o, &a), &x) in below[..width].iter_mut().zip(&above[r * width..]).zip(row) {
            *o = a + x as u32;
        }
    }
}

impl MaskStack {
    /// Rasterizes `specs` on frames of `sig`. Uses the sparse form when at most a quarter of the
    /// weights are non-zero.
    pub fn build(specs: &[MaskSpec], sig: &Shape) -> Result<Self> {
        if sig.ndim() != 2 {
            return Err(Error::Shape(format!("masks need 2-D frames, not {sig}")));
        }
        let mut dense = Vec::new();
        for s in specs {
            s.rasterize(sig, &mut dense)?;
        }
        Ok(Self::from_dense_rows(dense, sig.size(), sig.dims()[1]))
    }

    /// [`MaskStack::build`], reusing a recent stack of the same specs and frame shape: planning and
    /// every partition of a query configure the same masks (and a SELECT may name them twice).
    /// Stacks of shape specs up to 64 MiB are kept, the four most recent; `npy(...)` masks are read
    /// anew each time, as their file may change.
    pub fn shared(specs: &[MaskSpec], sig: &Shape) -> Result<Arc<Self>> {
        static RECENT: Mutex<Vec<(String, Arc<MaskStack>)>> = Mutex::new(Vec::new());
        if specs.iter().any(|s| matches!(s, MaskSpec::Npy(_))) {
            return Ok(Arc::new(Self::build(specs, sig)?));
        }
        let key = format!("{sig:?}|{specs:?}");
        let recent = || RECENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, stack)) = recent().iter().find(|(k, _)| *k == key) {
            return Ok(stack.clone());
        }
        let stack = Arc::new(Self::build(specs, sig)?);
        if stack.dense.len() <= 16 << 20 {
            let mut recent = recent();
            recent.insert(0, (key, stack.clone()));
            recent.truncate(4);
        }
        Ok(stack)
    }

    /// A stack from dense weights (`n × sig_size`), e.g. masks computed in Rust.
    pub fn from_dense(dense: Vec<f32>, sig_size: usize) -> Self {
        Self::from_dense_rows(dense, sig_size, sig_size)
    }

    /// [`MaskStack::from_dense`] for frames of rows of `width` pixels.
    fn from_dense_rows(dense: Vec<f32>, sig_size: usize, width: usize) -> Self {
        let n = dense.len() / sig_size.max(1);
        let nonzero = dense.iter().filter(|v| **v != 0.0).count();
        let sparse = (nonzero * 4 <= dense.len()).then(|| {
            dense
                .chunks_exact(sig_size)
                .map(|m| m.iter().enumerate().filter(|(_, w)| **w != 0.0).map(|(p, w)| (p as u32, *w)).collect())
                .collect()
        });
        let binary = dense.iter().all(|&w| w == 0.0 || w == 1.0);
        let runs = binary.then(|| {
            dense
                .chunks_exact(sig_size.max(1))
                .map(|m| {
                    let mut runs: Vec<(u32, u32)> = Vec::new();
                    for (p, _) in m.iter().enumerate().filter(|(_, w)| **w == 1.0) {
                        match runs.last_mut() {
                            Some((s, l)) if *s + *l == p as u32 => *l += 1,
                            _ => runs.push((p as u32, 1)),
                        }
                    }
                    runs
                })
                .collect()
        });
        let mut ordered_runs: Vec<(u32, u32, u32)> = runs
            .iter()
            .flatten()
            .enumerate()
            .flat_map(|(m, r): (usize, &Vec<(u32, u32)>)| r.iter().map(move |&(p, l)| (p, l, m as u32)))
            .collect();
        ordered_runs.sort_unstable();
        let width = if width > 0 && sig_size.is_multiple_of(width) { width } else { sig_size.max(1) };
        let mut column_runs = Vec::new();
        if binary {
            for mask in dense.chunks_exact(sig_size.max(1)) {
                let mut runs = Vec::new();
                for c in 0..width {
                    // rows r0..r1 of column c set: prefix indices r0·width + c and r1·width + c
                    let mut start = None;
                    for r in 0..=sig_size / width {
                        let on = r < sig_size / width && mask[r * width + c] == 1.0;
                        match (on, start) {
                            (true, None) => start = Some(r),
                            (false, Some(r0)) => {
                                runs.push(((r0 * width + c) as u32, (r * width + c) as u32));
                                start = None;
                            }
                            _ => {}
                        }
                    }
                }
                runs.sort_unstable();
                column_runs.push(runs);
            }
        }
        let vertical: usize = column_runs.iter().map(Vec::len).sum();
        let column_runs =
            (binary && ordered_runs.len() * 16 > sig_size && vertical <= 2 * ordered_runs.len() && sig_size <= 65536)
                .then_some(column_runs);
        let windows = run_windows(&ordered_runs, sig_size);
        MaskStack { n, sig_size, dense, sparse, runs, ordered_runs, width, column_runs, windows }
    }
}

/// Parses the specs a `masks(...)` field carries.
pub fn specs_from_field(field: &Field) -> Result<Vec<MaskSpec>> {
    let json = field.metadata().get(MASKS_KEY).ok_or_else(|| {
        Error::Spec(format!("'{}' is not a masks(...) argument: write masks('disk(16, 16, 8)', ...)", field.name()))
    })?;
    let texts: Vec<String> = serde_json::from_str(json).map_err(|e| Error::Spec(format!("masks metadata: {e}")))?;
    texts.iter().map(|t| MaskSpec::parse(t)).collect()
}

/// `masks('spec', ...)`: describes a mask stack for `udf_apply_masks`.
///
/// ```sql
/// SELECT udf_apply_masks(tile, masks('ring(15.5, 15.5, 6, 14)', 'disk(15.5, 15.5, 4)')) FROM scan
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MasksFunction {
    signature: Signature,
}

impl Default for MasksFunction {
    fn default() -> Self {
        // Stable: an npy(...) mask's file may change between queries. (DataFusion 55's simplifier
        // still evaluates Stable calls when a query is planned; the literal it leaves keeps the
        // field metadata that describes the masks, and Tessera's direct planning keeps the call.)
        MasksFunction { signature: Signature::variadic(vec![DataType::Utf8], Volatility::Stable) }
    }
}

impl ScalarUDFImpl for MasksFunction {
    fn name(&self) -> &str {
        "masks"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> datafusion::common::Result<FieldRef> {
        let mut texts = Vec::new();
        let mut n = 0;
        for (i, arg) in args.scalar_arguments.iter().enumerate() {
            let text = match arg {
                Some(ScalarValue::Utf8(Some(t)))
                | Some(ScalarValue::LargeUtf8(Some(t)))
                | Some(ScalarValue::Utf8View(Some(t))) => t,
                _ => {
                    return datafusion::common::plan_err!(
                        "masks: argument {} must be a literal spec string such as 'disk(16, 16, 8)'",
                        i + 1
                    );
                }
            };
            let spec = MaskSpec::parse(text).map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
            n += spec.count().map_err(|e| datafusion::error::DataFusionError::Plan(format!("masks: {e}")))?;
            texts.push(text.clone());
        }
        if texts.is_empty() {
            return datafusion::common::plan_err!("masks needs at least one spec string");
        }
        let md = HashMap::from([
            (MASKS_KEY.to_string(), serde_json::to_string(&texts).expect("json")),
            (N_MASKS_KEY.to_string(), n.to_string()),
        ]);
        Ok(Arc::new(Field::new("masks", DataType::Utf8, false).with_metadata(md)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let json = args.return_field.metadata().get(MASKS_KEY).cloned();
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(json)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rasterize_shapes() {
        let sig = Shape::new(vec![8, 8]);
        let s = MaskStack::build(
            &[
                MaskSpec::parse("ring(3.5, 3.5, 1, 3)").unwrap(),
                MaskSpec::parse("point(2, 5)").unwrap(),
                MaskSpec::parse("rect(1, 2, 3, 2)").unwrap(),
                MaskSpec::parse("polygon(0 0, 0 4, 4 0)").unwrap(),
            ],
            &sig,
        )
        .unwrap();
        assert_eq!(s.n, 4);
        let count = |m: usize| s.dense[m * 64..(m + 1) * 64].iter().filter(|v| **v != 0.0).count();
        assert_eq!(count(1), 1);
        assert_eq!(s.dense[64 + 2 * 8 + 5], 1.0);
        assert_eq!(count(2), 6);
        assert!(count(3) > 3 && count(3) < 16);
        assert!(MaskSpec::parse("disk(1, 2, -3)").unwrap_err().to_string().contains(">= 0"));
        assert!(MaskSpec::parse("blob(1)").unwrap_err().to_string().contains("unknown mask kind 'blob'"));
        assert!(MaskStack::build(&[MaskSpec::parse("point(9, 1)").unwrap()], &sig).is_err());
    }
}
