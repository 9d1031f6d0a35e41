//! The one generic adapter: any [`Udf`] becomes a DataFusion [`AggregateUDF`].
//!
//! Partial state (per DataFusion partition) is compact: the nav indices the partition saw, the nav
//! buffers' values for those frames only, and the sig/single buffers — never a full nav grid. The
//! final step scatters nav values into the full grid and merges the rest with [`Udf::merge`].

use super::buffers::{BufferDecl, Kind, Views};
use super::{Args, Meta, Method, STACK_BYTES, Tile, Udf};
use crate::dataset::{DType, Pixel};
use crate::tensor::{named_tensor_field, one_tensor, tile_geometry};
use crate::with_pixel_type;
use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, StructArray, UInt8Array};
use arrow::compute::{cast, filter, is_not_null};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, internal_err, plan_err};
use datafusion::logical_expr::expr::AggregateFunctionParams;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;
use std::sync::Arc;

/// Name of the nav mask field in every result struct that has nav buffers.
pub const VALID: &str = "valid";

/// A type-erased UDF, so that one non-generic aggregate type serves every UDF (and can be recognised
/// by downcasting).
trait ErasedUdf: Send + Sync + std::fmt::Debug {
    fn params(&self) -> &'static [&'static str];
    /// The configured buffers, and the meta with the input dtype the UDF asks for.
    fn buffers(&self, meta: &Meta, args: &Args) -> crate::Result<(Meta, super::Buffers)>;
    fn accumulator(
        &self,
        meta: Meta,
        args: &Args,
        decls: Vec<BufferDecl>,
        has_nav: bool,
    ) -> crate::Result<Box<dyn Accumulator>>;
    fn key(&self) -> String;
}

impl<U: Udf> ErasedUdf for U {
    fn params(&self) -> &'static [&'static str] {
        Udf::params(self)
    }
    fn buffers(&self, meta: &Meta, args: &Args) -> crate::Result<(Meta, super::Buffers)> {
        let udf = self.configure(meta, args)?;
        let mut meta = meta.clone();
        if let Some(dt) = udf.input_dtype(meta.input_dtype) {
            if !dt.is_pixel() {
                return Err(crate::Error::udf(udf.name(), format!("cannot take {dt} pixels")));
            }
            meta.input_dtype = dt;
        }
        let buffers = udf.buffers(&meta)?;
        Ok((meta, buffers))
    }
    fn accumulator(
        &self,
        meta: Meta,
        args: &Args,
        decls: Vec<BufferDecl>,
        has_nav: bool,
    ) -> crate::Result<Box<dyn Accumulator>> {
        let mut acc = UdfAccumulator::new(self.configure(&meta, args)?, meta, decls, has_nav);
        acc.param_names = args.names.clone();
        Ok(Box::new(acc))
    }
    fn key(&self) -> String {
        format!("{self:?}")
    }
}

/// A [`Udf`] as a DataFusion aggregate function, called as `name(tile, params...)`; the analyzer adds
/// the frames' `nav_index` as a hidden last argument (see [`NavIndexRewrite`](super::NavIndexRewrite)).
#[derive(Debug)]
pub struct UdfAggregate {
    name: String,
    signature: Signature,
    udf: Arc<dyn ErasedUdf>,
    doc: datafusion::logical_expr::Documentation,
    /// The metadata of the parameter fields (after the tile) of one call, as the SQL planner saw
    /// it: literal parameters and `masks(...)` describe themselves in field metadata, which a plan
    /// sent to another process (Ballista) does not keep; a call's aggregate carries it instead.
    planned: Option<Arc<Vec<Metadata>>>,
}

/// A field's metadata.
pub(crate) type Metadata = std::collections::HashMap<String, String>;

impl PartialEq for UdfAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.udf.key() == other.udf.key() && self.planned == other.planned
    }
}
impl Eq for UdfAggregate {}
impl std::hash::Hash for UdfAggregate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.udf.key().hash(state);
        if let Some(planned) = &self.planned {
            for md in planned.iter() {
                let mut entries: Vec<_> = md.iter().collect();
                entries.sort();
                entries.hash(state);
            }
        }
    }
}

/// Wraps a [`Udf`] as an [`AggregateUDF`] to register in any `SessionContext`.
///
/// ```
/// let sum = tessera::udf::aggregate(tessera::udf::builtin::Sum::new());
/// assert_eq!(sum.name(), "udf_sum");
/// ```
pub fn aggregate<U: Udf>(udf: U) -> AggregateUDF {
    AggregateUDF::from(UdfAggregate::new(udf))
}

impl UdfAggregate {
    /// The aggregate for `udf`.
    pub fn new<U: Udf>(udf: U) -> Self {
        let mut signature = Signature::user_defined(Volatility::Immutable);
        let params = Udf::params(&udf);
        if !params.is_empty() {
            let names: Vec<&str> = std::iter::once("tile").chain(params.iter().copied()).collect();
            signature = signature.with_parameter_names(names).expect("parameter names of a user-defined signature");
        }
        let name = Udf::name(&udf).to_string();
        let doc = documentation(&name, udf.doc());
        UdfAggregate { name, signature, udf: Arc::new(udf), doc, planned: None }
    }

    /// This aggregate for one call whose parameter fields (after the tile) have this metadata.
    pub(crate) fn with_planned(&self, planned: Vec<Metadata>) -> Self {
        UdfAggregate {
            name: self.name.clone(),
            signature: self.signature.clone(),
            udf: self.udf.clone(),
            doc: self.doc.clone(),
            planned: Some(Arc::new(planned)),
        }
    }

    /// The parameter fields' metadata recorded at planning ([`UdfAggregate::with_planned`]).
    pub(crate) fn planned(&self) -> Option<&[Metadata]> {
        self.planned.as_deref().map(|v| v.as_slice())
    }

    /// Whether an aggregate function is a Tessera UDF.
    pub fn is_tessera(udf: &AggregateUDF) -> bool {
        let inner: &dyn std::any::Any = udf.inner().as_ref();
        inner.downcast_ref::<UdfAggregate>().is_some()
    }

    /// Splits the arguments: the tile, the UDF's parameters, and whether the hidden nav_index (the
    /// last argument, an Int64 field named nav_index) is there.
    fn split<'a>(&self, fields: &'a [FieldRef]) -> Result<(&'a FieldRef, &'a [FieldRef], bool)> {
        let Some(first) = fields.first() else {
            return plan_err!("{} expects a tile column as its first argument", self.name);
        };
        let has_nav = fields.len() >= 2 && {
            let last = &fields[fields.len() - 1];
            last.name() == "nav_index" && last.data_type() == &DataType::Int64
        };
        let params = &fields[1..fields.len() - usize::from(has_nav)];
        let expected = self.udf.params();
        if params.len() > expected.len() {
            let names = if expected.is_empty() { "none".to_string() } else { expected.join(", ") };
            return plan_err!(
                "{} takes {} parameter(s) after the tile ({names}), got {}{}",
                self.name,
                expected.len(),
                params.len(),
                if expected.is_empty() && params.len() == 1 {
                    format!(
                        "; the second argument must be the frames' nav_index (Int64), got {}",
                        params[0].data_type()
                    )
                } else {
                    String::new()
                }
            );
        }
        Ok((first, params, has_nav))
    }

    /// Meta, configured buffers and whether nav_index is passed, from the argument fields (and the
    /// parameter values where known).
    /// `values`: the parameters' literal values (`None` for a parameter that is not a literal), or
    /// `None` where values are not known yet (when only the result type is planned).
    fn plan(
        &self,
        fields: &[FieldRef],
        values: Option<Vec<Option<ScalarValue>>>,
    ) -> Result<(Meta, Args, Vec<BufferDecl>, bool)> {
        let (first, params, has_nav) = self.split(fields)?;
        // metadata recorded at planning fills in what a deserialised plan lost
        let params: Vec<FieldRef> = match self.planned() {
            Some(planned) => params
                .iter()
                .zip(planned.iter().map(Some).chain(std::iter::repeat(None)))
                .map(|(f, md)| match md {
                    Some(md) if !md.is_empty() && f.metadata().is_empty() => {
                        Arc::new(f.as_ref().clone().with_metadata(md.clone()))
                    }
                    _ => f.clone(),
                })
                .collect(),
            None => params.to_vec(),
        };
        let params = params.as_slice();
        let Some((geometry, dataset)) = tile_geometry(first) else {
            return plan_err!(
                "{} expects a tile column (arrow.fixed_shape_tensor from a Tessera dataset table), got \
                 column '{}' of type {}",
                self.name,
                first.name(),
                first.data_type()
            );
        };
        let calibration = crate::tensor::tile_calibration(first);
        let meta = Meta { nav: geometry.nav, sig: geometry.sig, input_dtype: geometry.dtype, dataset, calibration };
        let known = values.is_some();
        // before values are known, literals marked by the SQL planner carry theirs in the field
        let mut values = values.unwrap_or_else(|| {
            params
                .iter()
                .map(|f| {
                    let text = f.metadata().get(super::rewrite::LITERAL_KEY)?;
                    ScalarValue::try_from_string(text.clone(), f.data_type()).ok()
                })
                .collect()
        });
        values.resize(params.len(), None);
        let names = self.udf.params()[..params.len()].iter().map(|s| s.to_string()).collect();
        let args = Args { names, fields: params.to_vec(), values, known };
        let (meta, buffers) = self.udf.buffers(&meta, &args).map_err(|e| DataFusionError::Plan(e.to_string()))?;
        let decls = buffers.decls().to_vec();
        for (i, d) in decls.iter().enumerate() {
            if d.name == VALID || decls[..i].iter().any(|o| o.name == d.name) {
                return plan_err!("{}: buffer name '{}' is reserved or declared twice", self.name, d.name);
            }
        }
        Ok((meta, args, decls, has_nav))
    }

    /// An accumulator outside a DataFusion plan, for arguments `[tile, nav_index]` (live results).
    pub(crate) fn standalone_accumulator(&self, fields: &[FieldRef]) -> Result<Box<dyn Accumulator>> {
        let (meta, args, decls, has_nav) = self.plan(fields, Some(Vec::new()))?;
        self.check_nav_index(has_nav, &decls)?;
        Ok(self.udf.accumulator(meta, &args, decls, has_nav)?)
    }

    /// Checks a call's parameters when the query is planned: they must be constants, and the UDF's
    /// `configure` must accept their values. Called by the analyzer rewrite.
    pub(crate) fn validate_call(
        udf: &AggregateUDF,
        args: &[Expr],
        schema: &datafusion::common::DFSchema,
    ) -> Result<()> {
        use datafusion::logical_expr::ExprSchemable;
        let inner: &dyn std::any::Any = udf.inner().as_ref();
        let Some(this) = inner.downcast_ref::<UdfAggregate>() else { return Ok(()) };
        let fields = args.iter().map(|a| Ok(a.to_field(schema)?.1)).collect::<Result<Vec<_>>>()?;
        let (_, params, _) = this.split(&fields)?;
        let values = args[1..1 + params.len()]
            .iter()
            .map(|a| if let Expr::Literal(v, _) = a { Some(v.clone()) } else { None })
            .collect();
        this.plan(&fields, Some(values)).map(|_| ())
    }

    /// Checks that nav-shaped results get the frames' nav_index (added by the analyzer, so this can
    /// only be checked once the plan is analyzed).
    fn check_nav_index(&self, has_nav: bool, decls: &[BufferDecl]) -> Result<()> {
        if !has_nav && decls.iter().any(|d| d.kind == Kind::Nav && !d.result_only) {
            return plan_err!(
                "{} has nav-shaped results and needs the frames' nav_index: call it on the tile column of a \
                 dataset table with nav_index in scope, or pass nav_index as the last argument",
                self.name
            );
        }
        Ok(())
    }

    /// The call without the hidden nav_index argument.
    fn visible(params: &AggregateFunctionParams) -> AggregateFunctionParams {
        let mut p = params.clone();
        if p.args.len() >= 2 && is_nav_index(&p.args[p.args.len() - 1]) {
            p.args.pop();
        }
        // literal parameters by their value alone (the planner's marker metadata is not part of the name)
        for arg in p.args.iter_mut() {
            if let Expr::Literal(v, Some(_)) = arg {
                *arg = Expr::Literal(v.clone(), None);
            }
        }
        p
    }
}

/// DataFusion documentation from a UDF's own.
fn documentation(name: &str, doc: Option<super::UdfDoc>) -> datafusion::logical_expr::Documentation {
    use datafusion::logical_expr::{DocSection, Documentation};
    const SECTION: DocSection = DocSection { include: true, label: "Tessera 4D-STEM functions", description: None };
    let Some(doc) = doc else {
        return Documentation::builder(
            SECTION,
            format!("User-defined 4D-STEM function {name}"),
            format!("{name}(tile)"),
        )
        .with_argument("tile", "the tile column of a Tessera dataset table")
        .build();
    };
    let mut b = Documentation::builder(SECTION, doc.description, doc.syntax)
        .with_sql_example(doc.example)
        .with_argument("tile", "the tile column of a Tessera dataset table");
    for (arg, text) in doc.args {
        b = b.with_argument(*arg, *text);
    }
    b.build()
}

/// Whether an argument is the hidden nav_index column.
pub(crate) fn is_nav_index(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == "nav_index")
}

/// Shape of a buffer's result tensor.
fn result_shape(meta: &Meta, d: &BufferDecl) -> Vec<usize> {
    let mut shape = match d.kind {
        Kind::Nav => meta.nav.dims().to_vec(),
        Kind::Sig => meta.sig.dims().to_vec(),
        Kind::Single => vec![],
    };
    shape.extend(&d.extra_shape);
    if shape.is_empty() {
        shape.push(1);
    }
    shape
}

/// Names and calibrated axes of a buffer's dimensions: the scan's (`nav_y`, `nav_x` or the file's
/// names) for nav buffers, the detector's (`sig_y`, `sig_x`) for sig buffers, then `extra_0`, ...
fn dim_names(meta: &Meta, kind: Kind, extra: usize) -> (Vec<String>, Vec<Option<crate::dataset::Axis>>) {
    let (dims, axes, prefix) = match kind {
        Kind::Nav => (meta.nav.ndim(), &meta.calibration.nav, "nav"),
        Kind::Sig => (meta.sig.ndim(), &meta.calibration.sig, "sig"),
        Kind::Single => (0, &meta.calibration.nav, ""),
    };
    let default = |i: usize| match (dims, i) {
        (2, 0) => format!("{prefix}_y"),
        (2, 1) => format!("{prefix}_x"),
        (1, 0) => prefix.to_string(),
        _ => format!("{prefix}_{i}"),
    };
    let mut names: Vec<String> = (0..dims)
        .map(|i| axes.get(i).filter(|a| !a.name.is_empty()).map_or_else(|| default(i), |a| a.name.clone()))
        .collect();
    let mut cal: Vec<Option<crate::dataset::Axis>> = (0..dims).map(|i| axes.get(i).cloned()).collect();
    names.extend((0..extra).map(|i| format!("extra_{i}")));
    cal.extend((0..extra).map(|_| None));
    if names.is_empty() {
        // a single value is stored as shape [1]
        names.push("value".into());
        cal.push(None);
    }
    (names, cal)
}

/// The fields of the result struct: one tensor per non-private buffer, plus `valid` when there are
/// nav buffers.
fn result_fields(meta: &Meta, decls: &[BufferDecl]) -> Fields {
    let mut fields: Vec<Field> = decls
        .iter()
        .filter(|d| !d.private)
        .map(|d| {
            let (names, axes) = dim_names(meta, d.kind, d.extra_shape.len());
            named_tensor_field(&d.name, &d.dtype.arrow(), &result_shape(meta, d), &names, &axes)
        })
        .collect();
    if decls.iter().any(|d| d.kind == Kind::Nav) {
        let (names, axes) = dim_names(meta, Kind::Nav, 0);
        fields.push(named_tensor_field(VALID, &DataType::UInt8, meta.nav.dims(), &names, &axes));
    }
    Fields::from(fields)
}

impl AggregateUDFImpl for UdfAggregate {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        Some(&self.doc)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let max = 2 + self.udf.params().len();
        if arg_types.is_empty() || arg_types.len() > max {
            return plan_err!(
                "{} takes a tile column and up to {} parameter(s) ({}), got {} argument(s)",
                self.name,
                self.udf.params().len(),
                self.udf.params().join(", "),
                arg_types.len()
            );
        }
        Ok(arg_types.to_vec())
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        internal_err!("{}: the result type depends on the tile field's metadata; use return_field", self.name)
    }
    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        let (meta, _, decls, _) = self.plan(arg_fields, None)?;
        Ok(Arc::new(Field::new(&self.name, DataType::Struct(result_fields(&meta, &decls)), true)))
    }
    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        datafusion::logical_expr::udaf_default_schema_name(self, &Self::visible(params))
    }
    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        datafusion::logical_expr::udaf_default_display_name(self, &Self::visible(params))
    }
    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        datafusion::logical_expr::udaf_default_human_display(self, &Self::visible(params))
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return plan_err!("{}: DISTINCT is not supported (every frame counts once by construction)", self.name);
        }
        if !args.order_bys.is_empty() {
            return plan_err!("{}: ORDER BY inside the call is not supported", self.name);
        }
        let values =
            args.exprs.iter().skip(1).map(|e| e.downcast_ref::<Literal>().map(|l| l.value().clone())).collect();
        let (meta, udf_args, decls, has_nav) = self.plan(args.expr_fields, Some(values))?;
        self.check_nav_index(has_nav, &decls)?;
        Ok(self.udf.accumulator(meta, &udf_args, decls, has_nav)?)
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let (_, _, decls, _) = self.plan(args.input_fields, None)?;
        let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
        let mut fields =
            vec![Arc::new(Field::new(format_state_name(args.name, "nav_index"), list(DataType::Int64), true))];
        for d in decls.iter().filter(|d| !d.result_only) {
            fields.push(Arc::new(Field::new(format_state_name(args.name, &d.name), list(DataType::Float64), true)));
        }
        Ok(fields)
    }
}

/// One partition's buffers: nav values only for the frames it saw.
#[derive(Debug, Default)]
struct PartitionBuffers {
    nav_index: Vec<i64>,
    bufs: Vec<Vec<f64>>,
}

/// The merged result: full nav grid.
#[derive(Debug)]
struct Merged {
    bufs: Vec<Vec<f64>>,
    valid: Vec<bool>,
}

#[derive(Debug)]
struct UdfAccumulator<U: Udf> {
    udf: U,
    meta: Meta,
    decls: Vec<BufferDecl>,
    sig: Vec<usize>,
    /// Whether the last argument is the frames' nav_index.
    has_nav: bool,
    /// Names of the parameters between the tile and nav_index (aux data by name).
    param_names: Vec<String>,
    part: PartitionBuffers,
    started: bool,
    finished: bool,
    merged: Option<Merged>,
}

/// Views of `bufs`: nav buffers cut to `rows`, sig/single whole, result-only absent unless `full`.
fn make_views<'a>(
    decls: &'a [BufferDecl],
    bufs: &'a mut [Vec<f64>],
    rows: std::ops::Range<usize>,
    sig: &'a [usize],
    with_nav: bool,
    with_result_only: bool,
) -> Views<'a> {
    let n = rows.len();
    let data = decls
        .iter()
        .zip(bufs.iter_mut())
        .map(|(d, b)| {
            if d.result_only && !with_result_only {
                return None;
            }
            match d.kind {
                Kind::Nav if !with_nav => None,
                Kind::Nav => {
                    let e = d.extra_size();
                    Some(&mut b[rows.start * e..rows.end * e])
                }
                _ => Some(&mut b[..]),
            }
        })
        .collect();
    Views::new(decls, data, n, sig)
}

fn buffer_len(meta: &Meta, d: &BufferDecl) -> usize {
    match d.kind {
        Kind::Nav => meta.nav.size() * d.extra_size(),
        Kind::Sig => meta.sig.size() * d.extra_size(),
        Kind::Single => d.extra_size(),
    }
}

impl<U: Udf> UdfAccumulator<U> {
    fn new(udf: U, meta: Meta, decls: Vec<BufferDecl>, has_nav: bool) -> Self {
        let sig = meta.sig.dims().to_vec();
        UdfAccumulator {
            udf,
            meta,
            decls,
            sig,
            has_nav,
            param_names: Vec::new(),
            part: PartitionBuffers::default(),
            started: false,
            finished: false,
            merged: None,
        }
    }

    fn start(&mut self) -> Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        self.part.bufs = self
            .decls
            .iter()
            .map(|d| match d.kind {
                _ if d.result_only => Vec::new(),
                Kind::Nav => Vec::new(),
                _ => vec![d.fill; buffer_len(&self.meta, d)],
            })
            .collect();
        self.udf.task_data(&self.meta)?;
        let mut views = make_views(&self.decls, &mut self.part.bufs, 0..0, &self.sig, true, false);
        self.udf.preprocess(&self.meta, &mut views)?;
        Ok(())
    }

    fn finish_partition(&mut self) -> Result<()> {
        self.start()?;
        if !self.finished {
            self.finished = true;
            let rows = self.part.nav_index.len();
            let mut views = make_views(&self.decls, &mut self.part.bufs, 0..rows, &self.sig, true, false);
            self.udf.postprocess(&self.meta, &mut views)?;
        }
        Ok(())
    }

    /// Runs the UDF over a batch of tiles, `depth` frames per call (see [`Udf::tile_depth`]).
    fn process<T: Pixel>(&mut self, tiles: &dyn Array, aux: &[(String, ArrayRef)], r0: usize) -> Result<()> {
        let tiles = tiles.as_fixed_size_list();
        let Some(values) = tiles.values().as_primitive_opt::<T::Arrow>() else {
            return exec_err!("{}: tile values are {}, expected {}", self.udf.name(), tiles.value_type(), T::DTYPE);
        };
        let data: &[T] = values.values();
        let n = tiles.len();
        let s = self.meta.sig.size();
        let method = self.udf.method();
        let depth = match method {
            Method::Frame => 1,
            Method::Tile => self.udf.tile_depth().unwrap_or(STACK_BYTES / (s * size_of::<T>()).max(1)).max(1),
            Method::Partition => n,
        };
        let UdfAccumulator { udf, decls, part, sig, meta, .. } = self;
        let idx = &part.nav_index[r0..r0 + n];
        let slices = sig_slices(sig, if method == Method::Tile { udf.tile_shape(meta) } else { None });
        let mut start = 0;
        while start < n {
            let k = depth.min(n - start);
            for &slice in &slices {
                let tile = Tile::new(&data[start * s..(start + k) * s], sig, &idx[start..start + k])
                    .with_aux(aux, start)
                    .with_slice(slice);
                let rows = r0 + start..r0 + start + k;
                let mut views = make_views(decls, &mut part.bufs, rows, sig, true, false).with_slice(slice);
                match method {
                    Method::Tile => udf.process_tile(&tile, &mut views)?,
                    Method::Frame => udf.process_frame(&tile, &mut views)?,
                    Method::Partition => udf.process_partition(&tile, &mut views)?,
                }
            }
            start += k;
        }
        Ok(())
    }

    fn merged(&mut self) -> &mut Merged {
        let (meta, decls) = (&self.meta, &self.decls);
        self.merged.get_or_insert_with(|| Merged {
            bufs: decls.iter().map(|d| vec![d.fill; buffer_len(meta, d)]).collect(),
            valid: vec![false; meta.nav.size()],
        })
    }

    /// Merges one partition (`idx` and one slice per non-result-only buffer, in declaration order).
    fn merge_one(&mut self, idx: &[i64], srcs: Vec<&[f64]>) -> Result<()> {
        let nav_size = self.meta.nav.size();
        self.merged();
        let UdfAccumulator { udf, decls, sig, merged, .. } = self;
        let merged = merged.as_mut().expect("initialised above");
        let mut src_bufs: Vec<Vec<f64>> = Vec::with_capacity(decls.len());
        let mut it = srcs.into_iter();
        for (i, d) in decls.iter().enumerate() {
            if d.result_only {
                src_bufs.push(Vec::new());
                continue;
            }
            let src = it.next().expect("one state column per buffer");
            match d.kind {
                Kind::Nav => {
                    let e = d.extra_size();
                    if src.len() != idx.len() * e {
                        return exec_err!("{}: partial state of '{}' has the wrong length", udf.name(), d.name);
                    }
                    for (k, &nav) in idx.iter().enumerate() {
                        if nav < 0 || nav as usize >= nav_size {
                            return exec_err!("{}: nav_index {nav} outside the scan of {nav_size} frames", udf.name());
                        }
                        let nav = nav as usize;
                        merged.bufs[i][nav * e..(nav + 1) * e].copy_from_slice(&src[k * e..(k + 1) * e]);
                    }
                    src_bufs.push(Vec::new());
                }
                _ => src_bufs.push(src.to_vec()),
            }
        }
        for &nav in idx.iter().filter(|&&i| i >= 0 && (i as usize) < nav_size) {
            merged.valid[nav as usize] = true;
        }
        let mut dest = make_views(decls, &mut merged.bufs, 0..0, sig, false, false);
        let mut src = make_views(decls, &mut src_bufs, 0..0, sig, false, false);
        udf.merge(&mut dest, &mut src)?;
        Ok(())
    }

    fn result(&mut self) -> Result<ScalarValue> {
        self.merged();
        let nav_size = self.meta.nav.size();
        let UdfAccumulator { udf, meta, decls, merged, .. } = self;
        let merged = merged.as_mut().expect("initialised");
        {
            let mut views =
                make_views(decls, &mut merged.bufs, 0..nav_size, meta.sig.dims(), true, true).with_valid(&merged.valid);
            udf.get_results(meta, &mut views)?;
        }
        let fields = result_fields(meta, decls);
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (d, buf) in decls.iter().zip(&merged.bufs) {
            if d.private {
                continue;
            }
            let mut values = buf.clone();
            if d.kind == Kind::Nav {
                let blank = if d.dtype.is_float() { f64::NAN } else { 0.0 };
                let e = d.extra_size();
                for (nav, ok) in merged.valid.iter().enumerate() {
                    if !ok {
                        values[nav * e..(nav + 1) * e].fill(blank);
                    }
                }
            }
            let values = to_dtype(values, d.dtype)?;
            columns.push(Arc::new(one_tensor(values, &result_shape(meta, d))));
        }
        if decls.iter().any(|d| d.kind == Kind::Nav) {
            let valid = UInt8Array::from_iter_values(merged.valid.iter().map(|&v| v as u8));
            columns.push(Arc::new(one_tensor(Arc::new(valid), meta.nav.dims())));
        }
        let s = StructArray::try_new(fields, columns, None)?;
        Ok(ScalarValue::Struct(Arc::new(s)))
    }
}

/// A one-row list scalar holding `values` (moved, not copied).
fn one_list(values: ArrayRef) -> ScalarValue {
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    let offsets = arrow::buffer::OffsetBuffer::from_lengths([values.len()]);
    ScalarValue::List(Arc::new(ListArray::new(field, offsets, values, None)))
}

/// The rectangles that cover a 2-D frame in tiles of `shape` (row-major), or `[None]` for whole frames.
fn sig_slices(sig: &[usize], shape: Option<[usize; 2]>) -> Vec<Option<super::SigSlice>> {
    let (Some([th, tw]), [sy, sx]) = (shape, sig) else { return vec![None] };
    let (th, tw) = (th.clamp(1, *sy), tw.clamp(1, *sx));
    let mut out = Vec::new();
    for y0 in (0..*sy).step_by(th) {
        for x0 in (0..*sx).step_by(tw) {
            out.push(Some(super::SigSlice { y0, x0, h: th.min(sy - y0), w: tw.min(sx - x0) }));
        }
    }
    out
}

/// Converts f64 values to a result dtype (rounding for floats, saturating for integers).
fn to_dtype(values: Vec<f64>, dtype: DType) -> Result<ArrayRef> {
    let arr: ArrayRef = Arc::new(Float64Array::from(values));
    Ok(if dtype == DType::F64 { arr } else { cast(&arr, &dtype.arrow())? })
}

impl<U: Udf> Accumulator for UdfAccumulator<U> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.start()?;
        if self.finished {
            return internal_err!("{}: update after the partition ended", self.udf.name());
        }
        let Some(tiles) = values.first() else { return Ok(()) };
        let mut tiles = tiles.clone();
        let mut idx = if self.has_nav { values.last().cloned() } else { None };
        let params = &values[1..values.len() - usize::from(self.has_nav)];
        let mut aux: Vec<(String, ArrayRef)> = self.param_names.iter().cloned().zip(params.iter().cloned()).collect();
        if tiles.null_count() > 0 {
            let keep = is_not_null(&tiles)?;
            tiles = filter(&tiles, &keep)?;
            idx = idx.map(|i| filter(&i, &keep)).transpose()?;
            for (_, a) in aux.iter_mut() {
                *a = filter(a, &keep)?;
            }
        }
        let want = self.meta.input_dtype.arrow();
        if let Some(list) = tiles.as_fixed_size_list_opt()
            && list.value_type() != want
        {
            // the UDF asked for another pixel type: convert once per batch
            let values = cast(list.values(), &want)?;
            let item = Arc::new(Field::new("item", want, true));
            tiles = Arc::new(arrow::array::FixedSizeListArray::try_new(item, list.value_length(), values, None)?);
        }
        let n = tiles.len();
        if n == 0 {
            return Ok(());
        }
        let r0 = self.part.nav_index.len();
        match &idx {
            Some(i) => {
                let i = i.as_primitive::<Int64Type>();
                if i.null_count() > 0 {
                    return exec_err!("{}: nav_index is NULL", self.udf.name());
                }
                self.part.nav_index.extend_from_slice(i.values());
            }
            None => self.part.nav_index.extend(std::iter::repeat_n(-1, n)),
        }
        for (d, b) in self.decls.iter().zip(self.part.bufs.iter_mut()) {
            if d.kind == Kind::Nav && !d.result_only {
                b.resize((r0 + n) * d.extra_size(), d.fill);
            }
        }
        let dtype = self.meta.input_dtype;
        with_pixel_type!(dtype, T => self.process::<T>(tiles.as_ref(), &aux, r0),
            _ => exec_err!("{}: unsupported pixel type {dtype}", self.udf.name()))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.finish_partition()?;
        let mut out = vec![one_list(Arc::new(Int64Array::from(std::mem::take(&mut self.part.nav_index))))];
        for (d, b) in self.decls.iter().zip(self.part.bufs.iter_mut()) {
            if !d.result_only {
                out.push(one_list(Arc::new(Float64Array::from(std::mem::take(b)))));
            }
        }
        Ok(out)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists: Vec<&ListArray> = states.iter().map(|s| s.as_list::<i32>()).collect();
        let Some(first) = lists.first() else { return Ok(()) };
        for row in 0..first.len() {
            if first.is_null(row) {
                continue;
            }
            let idx = first.value(row);
            let idx = idx.as_primitive::<Int64Type>();
            let cols: Vec<ArrayRef> = lists[1..].iter().map(|l| l.value(row)).collect();
            let srcs: Vec<&[f64]> = cols.iter().map(|c| c.as_primitive::<Float64Type>().values().as_ref()).collect();
            self.merge_one(idx.values(), srcs)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.started && !self.finished {
            self.finish_partition()?;
            let idx = std::mem::take(&mut self.part.nav_index);
            let bufs = std::mem::take(&mut self.part.bufs);
            let srcs: Vec<&[f64]> =
                self.decls.iter().zip(&bufs).filter(|(d, _)| !d.result_only).map(|(_, b)| b.as_slice()).collect();
            if idx.iter().any(|&i| i < 0) && self.decls.iter().any(|d| d.kind == Kind::Nav) {
                return exec_err!("{}: frames arrived without nav_index", self.udf.name());
            }
            let idx: Vec<i64> = idx.into_iter().filter(|&i| i >= 0).collect();
            self.merge_one(&idx, srcs)?;
        }
        self.result()
    }

    fn size(&self) -> usize {
        let part: usize = self.part.bufs.iter().map(|b| b.capacity() * 8).sum();
        let merged: usize = self.merged.as_ref().map_or(0, |m| m.bufs.iter().map(|b| b.capacity() * 8).sum());
        std::mem::size_of_val(self) + part + merged + self.part.nav_index.capacity() * 8
    }
}
