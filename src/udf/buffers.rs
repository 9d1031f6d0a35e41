//! Result buffers: what a UDF declares, and the views it writes through.

use crate::dataset::DType;
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

/// Where a buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One value (× extra_shape) per frame: the result has the nav shape.
    Nav,
    /// One value (× extra_shape) per detector pixel: the result has the sig shape.
    Sig,
    /// One value (× extra_shape) for the whole run.
    Single,
}

/// One declared buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferDecl {
    /// Name (LiberTEM's, e.g. `intensity`).
    pub name: String,
    /// nav / sig / single.
    pub kind: Kind,
    /// Extra axes after the nav or sig axes (a single buffer with no extra shape has shape `[1]`).
    pub extra_shape: Vec<usize>,
    /// The result's element type (processing always happens in f64).
    pub dtype: DType,
    /// Private: kept in the state but not returned.
    pub private: bool,
    /// Result only: not processed or merged, computed by `get_results` after the merge.
    pub result_only: bool,
    /// Initial value of every element (0 unless set).
    pub fill: f64,
}

impl BufferDecl {
    /// Elements per frame (nav), per pixel (sig) or in total (single).
    pub fn extra_size(&self) -> usize {
        self.extra_shape.iter().product()
    }
}

/// The buffers of a UDF, built with a small fluent API.
///
/// ```
/// use tessera::dataset::DType;
/// use tessera::udf::Buffers;
/// let b = Buffers::new().sig("intensity", DType::F32).nav_extra("radial", &[8], DType::F64).private();
/// assert_eq!(b.decls().len(), 2);
/// assert!(b.decls()[1].private);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buffers(Vec<BufferDecl>);

impl Buffers {
    /// No buffers yet.
    pub fn new() -> Self {
        Self::default()
    }
    fn push(mut self, name: &str, kind: Kind, extra: &[usize], dtype: DType) -> Self {
        self.0.push(BufferDecl {
            name: name.into(),
            kind,
            extra_shape: extra.to_vec(),
            dtype,
            private: false,
            result_only: false,
            fill: 0.0,
        });
        self
    }
    /// A nav buffer: one value per frame.
    pub fn nav(self, name: &str, dtype: DType) -> Self {
        self.push(name, Kind::Nav, &[], dtype)
    }
    /// A nav buffer with extra axes per frame.
    pub fn nav_extra(self, name: &str, extra: &[usize], dtype: DType) -> Self {
        self.push(name, Kind::Nav, extra, dtype)
    }
    /// A sig buffer: one value per detector pixel.
    pub fn sig(self, name: &str, dtype: DType) -> Self {
        self.push(name, Kind::Sig, &[], dtype)
    }
    /// A sig buffer with extra axes per pixel.
    pub fn sig_extra(self, name: &str, extra: &[usize], dtype: DType) -> Self {
        self.push(name, Kind::Sig, extra, dtype)
    }
    /// A single buffer of shape `extra` (`[1]` for one value).
    pub fn single(self, name: &str, extra: &[usize], dtype: DType) -> Self {
        let extra = if extra.is_empty() { &[1][..] } else { extra };
        self.push(name, Kind::Single, extra, dtype)
    }
    fn last(mut self, f: impl FnOnce(&mut BufferDecl)) -> Self {
        if let Some(d) = self.0.last_mut() {
            f(d);
        }
        self
    }
    /// Marks the last buffer private (kept in the state, not returned).
    pub fn private(self) -> Self {
        self.last(|d| d.private = true)
    }
    /// Marks the last buffer result-only (computed by `get_results`).
    pub fn result_only(self) -> Self {
        self.last(|d| d.result_only = true)
    }
    /// Sets the initial value of the last buffer's elements.
    pub fn fill(self, value: f64) -> Self {
        self.last(|d| d.fill = value)
    }
    /// The declarations.
    pub fn decls(&self) -> &[BufferDecl] {
        &self.0
    }
}

/// Mutable views of a UDF's buffers during one call: nav buffers are the rows of the frames at hand,
/// sig and single buffers the whole buffer.
pub struct Views<'a> {
    decls: &'a [BufferDecl],
    data: Vec<Option<&'a mut [f64]>>,
    rows: usize,
    sig: &'a [usize],
    valid: Option<&'a [bool]>,
    slice: Option<super::SigSlice>,
}

impl<'a> Views<'a> {
    pub(crate) fn new(
        decls: &'a [BufferDecl],
        data: Vec<Option<&'a mut [f64]>>,
        rows: usize,
        sig: &'a [usize],
    ) -> Self {
        Views { decls, data, rows, sig, valid: None, slice: None }
    }

    pub(crate) fn with_slice(mut self, slice: Option<super::SigSlice>) -> Self {
        self.slice = slice;
        self
    }

    /// A sig buffer cut to the current tile's rectangle (the whole frame without a tile shape):
    /// `(rows, columns, extra..)`, a strided view.
    pub fn sig_tile(&mut self, name: &str) -> ArrayViewMutD<'_, f64> {
        let slice = self.slice;
        let sig = self.sig.to_vec();
        let i = self.index(name, Kind::Sig);
        let mut shape = sig.clone();
        shape.extend(&self.decls[i].extra_shape);
        let data = self.data[i].as_deref_mut().unwrap_or_else(|| panic!("buffer '{name}' is not available"));
        let view = ArrayViewMutD::from_shape(IxDyn(&shape), data).expect("buffer length matches its shape");
        match slice {
            None => view,
            Some(s) => {
                let mut v = view;
                v.slice_axis_inplace(ndarray::Axis(0), (s.y0..s.y0 + s.h).into());
                v.slice_axis_inplace(ndarray::Axis(1), (s.x0..s.x0 + s.w).into());
                v
            }
        }
    }

    pub(crate) fn with_valid(mut self, valid: &'a [bool]) -> Self {
        self.valid = Some(valid);
        self
    }

    /// In `get_results`: which frames of the nav grid were processed (the ROI). `None` elsewhere.
    pub fn valid(&self) -> Option<&'a [bool]> {
        self.valid
    }

    fn index(&self, name: &str, kind: Kind) -> usize {
        let i = self
            .decls
            .iter()
            .position(|d| d.name == name)
            .unwrap_or_else(|| panic!("the UDF uses buffer '{name}' that it did not declare"));
        assert_eq!(self.decls[i].kind, kind, "buffer '{name}' is not of kind {kind:?}");
        i
    }

    fn slice(&mut self, name: &str, kind: Kind) -> &mut [f64] {
        let i = self.index(name, kind);
        self.data[i]
            .as_deref_mut()
            .unwrap_or_else(|| panic!("buffer '{name}' is not available at this point of the lifecycle"))
    }

    /// A nav buffer's values for the frames at hand: `frames × extra` elements, frame-major.
    pub fn nav(&mut self, name: &str) -> &mut [f64] {
        self.slice(name, Kind::Nav)
    }
    /// A sig buffer: `sig pixels × extra` elements, C order.
    pub fn sig(&mut self, name: &str) -> &mut [f64] {
        self.slice(name, Kind::Sig)
    }
    /// A single buffer: `extra` elements.
    pub fn single(&mut self, name: &str) -> &mut [f64] {
        self.slice(name, Kind::Single)
    }
    /// Several buffers at once, by name (any kind), e.g. to update a sum and a variance together:
    /// `let [sum, var] = views.many(["sum", "varsum"]);`. Panics if a name repeats.
    pub fn many<const N: usize>(&mut self, names: [&str; N]) -> [&mut [f64]; N] {
        let idx = names.map(|name| {
            self.decls.iter().position(|d| d.name == name).unwrap_or_else(|| panic!("unknown buffer '{name}'"))
        });
        let slots = self.data.get_disjoint_mut(idx).unwrap_or_else(|_| panic!("buffers {names:?} repeat a name"));
        let mut i = 0;
        slots.map(|slot| {
            let name = names[i];
            i += 1;
            slot.as_deref_mut()
                .unwrap_or_else(|| panic!("buffer '{name}' is not available at this point of the lifecycle"))
        })
    }
    /// Any buffer as an n-d view: `(frames, extra..)`, `(sig.., extra..)` or `(extra..)`.
    pub fn view_mut(&mut self, name: &str) -> ArrayViewMutD<'_, f64> {
        let i = self.decls.iter().position(|d| d.name == name).unwrap_or_else(|| panic!("unknown buffer '{name}'"));
        let shape = self.shape_of(i);
        let data = self.data[i].as_deref_mut().unwrap_or_else(|| panic!("buffer '{name}' is not available"));
        ArrayViewMutD::from_shape(IxDyn(&shape), data).expect("buffer length matches its shape")
    }
    /// Any buffer as a read-only n-d view.
    pub fn view(&self, name: &str) -> ArrayViewD<'_, f64> {
        let i = self.decls.iter().position(|d| d.name == name).unwrap_or_else(|| panic!("unknown buffer '{name}'"));
        let shape = self.shape_of(i);
        let data = self.data[i].as_deref().unwrap_or_else(|| panic!("buffer '{name}' is not available"));
        ArrayViewD::from_shape(IxDyn(&shape), data).expect("buffer length matches its shape")
    }
    fn shape_of(&self, i: usize) -> Vec<usize> {
        let d = &self.decls[i];
        let mut shape = match d.kind {
            Kind::Nav => vec![self.rows],
            Kind::Sig => self.sig.to_vec(),
            Kind::Single => vec![],
        };
        shape.extend(&d.extra_shape);
        shape
    }
    /// Number of frames the nav views cover.
    pub fn frames(&self) -> usize {
        self.rows
    }
    /// Whether a buffer of this name is present in these views.
    pub fn has(&self, name: &str) -> bool {
        self.decls.iter().position(|d| d.name == name).is_some_and(|i| self.data[i].is_some())
    }
    /// Names and kinds of the buffers present.
    pub fn names(&self) -> Vec<(&str, Kind)> {
        self.decls
            .iter()
            .zip(&self.data)
            .filter(|(_, d)| d.is_some())
            .map(|(decl, _)| (decl.name.as_str(), decl.kind))
            .collect()
    }
}
