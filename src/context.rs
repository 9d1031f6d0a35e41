//! [`Context`]: a DataFusion `SessionContext` with Tessera registered, plus a typed Rust API.

use crate::dataset::{self, Dataset, DatasetSpec};
use crate::error::{Error, Result};
use crate::export::provenance_options;
use crate::geometry::Roi;
use crate::scan::{MaskRegistry, RoiMaskFunction, TileTable};
use crate::udf::aux::AuxRegistry;
use crate::udf::{NavIndexRewrite, Results, Udf, aggregate, builtin};
use arrow::array::AsArray;
use datafusion::dataframe::DataFrame;
use datafusion::execution::{FunctionRegistry, SessionState, TaskContext};
use datafusion::logical_expr::{LogicalPlan, ScalarUDF, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Registers Tessera into an existing `SessionContext`: the built-in UDFs, `roi_mask`, and the
/// rewrite that passes `nav_index` to UDF calls. Returns the registry that `roi_mask` reads.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tessera::Result<()> {
/// use datafusion::prelude::SessionContext;
/// use tessera::dataset::{open, DatasetSpec};
/// let mut ctx = SessionContext::new();
/// tessera::register(&mut ctx)?;
/// let ds = open(&DatasetSpec::parse("synthetic,nav=4x4,sig=8x8,dtype=uint16")?)?;
/// ctx.register_table("scan", std::sync::Arc::new(tessera::scan::TileTable::new("scan", ds)))?;
/// let rows = ctx.sql("SELECT udf_sum_sig(tile) FROM scan").await?.collect().await?;
/// assert_eq!(rows[0].num_rows(), 1);
/// # Ok(()) }
/// ```
pub fn register(ctx: &mut SessionContext) -> Result<Registries> {
    for udaf in builtin::all() {
        ctx.register_udaf(Arc::new(udaf))?;
    }
    let masks = MaskRegistry::default();
    ctx.register_udf(Arc::new(ScalarUDF::from(RoiMaskFunction::new(masks.clone()))))?;
    ctx.register_udf(Arc::new(ScalarUDF::from(crate::udf::masks::MasksFunction::default())))?;
    let aux = AuxRegistry::default();
    ctx.register_udf(Arc::new(ScalarUDF::from(crate::udf::aux::AuxFunction::new(aux.clone()))))?;
    ctx.register_function_rewrite(Arc::new(NavIndexRewrite))?;
    ctx.register_expr_planner(Arc::new(crate::udf::LiteralParamPlanner))?;
    ctx.register_udtf("nav_rows", Arc::new(crate::export::NavRowsFunction));
    ctx.register_udtf("write_files", Arc::new(crate::export::WriteFilesFunction));
    Ok(Registries { masks, aux })
}

/// What [`register`] sets up that a program may fill: masks for `roi_mask`, arrays for `aux`.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// Nav masks for `roi_mask('name', nav_index)`.
    pub masks: MaskRegistry,
    /// Per-frame arrays for `aux('name', nav_index)`.
    pub aux: AuxRegistry,
}

/// The configuration Tessera uses by default: one partition per core, Parquet metadata kept.
pub fn default_config() -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(true);
    config.options_mut().execution.parquet.skip_metadata = false;
    config
}

/// Tessera's entry point: datasets as tables, SQL, and the typed Rust API.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tessera::Result<()> {
/// use tessera::{Context, dataset::DatasetSpec, udf::builtin::SumSig};
/// let ctx = Context::new()?;
/// ctx.register_spec("scan", DatasetSpec::parse("synthetic,nav=8x8,sig=16x16,dtype=uint16")?)?;
/// // SQL
/// let df = ctx.sql("SELECT udf_sum(tile) FROM scan WHERE nav_y BETWEEN 2 AND 5").await?;
/// assert_eq!(df.collect().await?[0].num_rows(), 1);
/// // Rust, no SQL
/// let res = ctx.run_udf("scan", SumSig, None).await?;
/// assert_eq!(res.buffer("intensity")?.shape(), &[8, 8]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Context {
    ctx: SessionContext,
    masks: MaskRegistry,
    aux: AuxRegistry,
    specs: Arc<RwLock<BTreeMap<String, DatasetSpec>>>,
    /// Set by the user; by default each table's own (see [`TileTable::batch_bytes`]).
    batch_bytes: Option<usize>,
    temp: Arc<AtomicUsize>,
    /// Whether queries run in this process (not on a cluster): only then are they planned directly
    /// (see [`Context::start`]).
    local: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("tables", &self.specs.read().map(|s| s.len()).unwrap_or(0)).finish()
    }
}

impl Context {
    /// A context with the default configuration.
    pub fn new() -> Result<Self> {
        Self::with_config(default_config())
    }

    /// A context with a DataFusion configuration (e.g. `target_partitions`).
    pub fn with_config(config: SessionConfig) -> Result<Self> {
        Self::from_session(SessionContext::new_with_config(config))
    }

    /// A client of a Ballista cluster (`df://host:port`, the scheduler; see [`crate::cluster`]):
    /// tables are registered and SQL is planned here as in a local context, and queries run on the
    /// cluster's executors, which read the datasets from the same paths (a shared filesystem).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> tessera::Result<()> {
    /// let ctx = tessera::Context::remote("df://scheduler-host:50050").await?;
    /// ctx.register_table_arg("scan=/shared/data/scan.mib")?;
    /// let batches = ctx.sql("SELECT udf_sum_sig(tile) FROM scan").await?.collect().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "ballista")]
    pub async fn remote(url: &str) -> Result<Self> {
        use ballista::prelude::SessionContextExt;
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(crate::cluster::client_config())
            .with_default_features()
            .build();
        // the Ballista client replaces the session's function lists: Tessera registers after it
        let mut ctx = Self::from_session(SessionContext::remote_with_state(url, state).await?)?;
        ctx.local = false;
        Ok(ctx)
    }

    fn from_session(mut ctx: SessionContext) -> Result<Self> {
        let Registries { masks, aux } = register(&mut ctx)?;
        Ok(Context {
            ctx,
            masks,
            aux,
            specs: Default::default(),
            batch_bytes: None,
            temp: Default::default(),
            local: true,
        })
    }

    /// Sets the size of the frame stacks the scans produce (by default 8 MiB where a dataset's frames
    /// are mapped in place, 2 MiB where they are copied: see [`TileTable::batch_bytes`]).
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = Some(bytes);
        self
    }

    /// The underlying DataFusion session.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Opens a dataset from its spec (relative paths become absolute) and registers it as `name`.
    pub fn register_spec(&self, name: &str, mut spec: DatasetSpec) -> Result<Arc<dyn Dataset>> {
        spec.absolutize()?;
        let ds = dataset::open(&spec)?;
        self.register_dataset(name, ds.clone())?;
        Ok(ds)
    }

    /// Opens a file as LiberTEM's `ctx.load` does and registers it as a table named after the file
    /// (`/data/scan_01.mib` → `scan_01`; `_2`, `_3`... when that name is taken); returns the name.
    /// `format` is `"auto"` (detect from the magic bytes and the extension) or a format name;
    /// `path` may carry options as in a spec (`/data/x.mib,nav=64x64`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let ctx = tessera::Context::new().unwrap();
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("scan.npy");
    /// tessera::dataset::formats::npy::write_npy(&path, tessera::dataset::DType::U8, &[2, 3, 4, 4], &[1u8; 96]).unwrap();
    /// let name = ctx.load("auto", path.to_str().unwrap()).unwrap();
    /// assert_eq!(name, "scan");
    /// let r = ctx.run_udf(&name, tessera::udf::builtin::SumSig, None).await.unwrap();
    /// assert_eq!(r.buffers["intensity"].to_f64().sum(), 96.0);
    /// # }
    /// ```
    pub fn load(&self, format: &str, path: &str) -> Result<String> {
        let mut spec = DatasetSpec::parse(path)?;
        if format != "auto" {
            spec.format = Some(format.to_ascii_lowercase());
        }
        let file = spec.path.clone().ok_or_else(|| Error::Spec(format!("'{path}': no file")))?;
        let stem = std::path::Path::new(&file).file_stem().and_then(|s| s.to_str()).unwrap_or("scan");
        let mut base: String =
            stem.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
            base = format!("scan_{base}");
        }
        let taken = |n: &str| self.ctx.table_exist(n).unwrap_or(false);
        let name = (1..)
            .map(|i| if i == 1 { base.clone() } else { format!("{base}_{i}") })
            .find(|n| !taken(n))
            .expect("a free name");
        self.register_spec(&name, spec)?;
        Ok(name)
    }

    /// Registers `NAME=SPEC` (the CLI's `--table` syntax).
    pub fn register_table_arg(&self, arg: &str) -> Result<Arc<dyn Dataset>> {
        let (name, spec) = arg
            .split_once('=')
            .ok_or_else(|| Error::Spec(format!("'{arg}': expected NAME=SPEC, e.g. scan=/data/x.npy")))?;
        if name.is_empty() {
            return Err(Error::Spec(format!("'{arg}': the table name is empty")));
        }
        self.register_spec(name, DatasetSpec::parse(spec)?)
    }

    /// Registers an opened dataset as table `name` (replacing a table of that name).
    pub fn register_dataset(&self, name: &str, ds: Arc<dyn Dataset>) -> Result<()> {
        let spec = ds.spec().clone();
        let table = TileTable::new(name, ds);
        let table = match self.batch_bytes {
            Some(bytes) => table.with_batch_bytes(bytes),
            None => table,
        };
        self.ctx.deregister_table(name)?;
        self.ctx.register_table(name, Arc::new(table))?;
        self.specs.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), spec);
        Ok(())
    }

    /// Registers a boolean nav mask for `roi_mask('name', nav_index)`.
    pub fn register_mask(&self, name: &str, mask: Roi) {
        self.masks.insert(name, mask);
    }

    /// Registers per-frame values for `aux('name', nav_index)`: `values` holds `per_frame` values for
    /// each frame of the scan, in nav order (e.g. shifts: 2 per frame).
    pub fn register_aux(&self, name: &str, values: Vec<f64>, per_frame: usize) {
        self.aux.insert(name, values, per_frame);
    }

    /// Registers a mask from an .npy file of bool or integer values (non-zero = selected).
    pub fn register_mask_npy(&self, name: &str, path: &str) -> Result<()> {
        let h = dataset::formats::npy::NpyHeader::read(path)?;
        if h.dtype.size() != 1 {
            return Err(Error::format(path, format!("a mask .npy must hold bool or uint8 values, not {}", h.dtype)));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let n: usize = h.shape.iter().product();
        let data = bytes
            .get(h.data_offset as usize..h.data_offset as usize + n)
            .ok_or_else(|| Error::format(path, format!("truncated: expected {n} mask values")))?;
        self.register_mask(name, Roi::from_bools(data.iter().map(|&b| b != 0)));
        Ok(())
    }

    /// The specs of the registered datasets.
    pub fn specs(&self) -> BTreeMap<String, DatasetSpec> {
        self.specs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs SQL. A `COPY ... TO '*.parquet'` records provenance (the query, the datasets' specs,
    /// Tessera's version) in the Parquet file's key-value metadata.
    pub async fn sql(&self, query: &str) -> Result<DataFrame> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let mut statement = state.sql_to_statement(query, &dialect)?;
        let functions = state.aggregate_functions();
        crate::udf::named_args::fill_gaps(&mut statement, &|name| {
            let f = functions.get(name)?;
            crate::udf::UdfAggregate::is_tessera(f).then(|| f.signature().parameter_names.clone()).flatten()
        });
        if let Statement::CopyTo(copy) = &mut statement {
            let tables: Vec<String> = state
                .resolve_table_references(&Statement::CopyTo(copy.clone()))?
                .iter()
                .map(|t| t.table().to_string())
                .collect();
            let specs = self.specs();
            let used: BTreeMap<&String, &DatasetSpec> = specs.iter().filter(|(k, _)| tables.contains(k)).collect();
            copy.options.extend(provenance_options(copy, query, &used));
        }
        match state.statement_to_plan(statement).await? {
            // DDL and statements change the session: DataFusion carries them out
            plan @ (LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)) => Ok(self.ctx.execute_logical_plan(plan).await?),
            // a query runs on the state cloned above (what `execute_logical_plan` would clone again:
            // every function registry, a few % of a small query's time)
            plan => Ok(DataFrame::new(state, plan)),
        }
    }

    /// Starts a query in the background: poll its [`progress`](crate::progress::RunningQuery::progress),
    /// [`cancel`](crate::progress::RunningQuery::cancel) it, or wait for it.
    /// `runtime`: where to execute (see [`RunningQuery::start`](crate::progress::RunningQuery::start)).
    ///
    /// Tessera UDFs over one dataset table (with or without a ROI) are planned directly, without
    /// DataFusion's general rule passes, into the plan that those passes would make (see
    /// [`crate::scan`]); other queries go through DataFusion's planner. So is [`Context::run_udf`].
    pub async fn start(
        &self,
        query: &str,
        runtime: Option<&tokio::runtime::Handle>,
    ) -> Result<crate::progress::RunningQuery> {
        let (state, logical) = self.sql(query).await?.into_parts();
        let task = Arc::new(TaskContext::from(&state));
        let plan = self.physical_plan(&state, &logical).await?;
        Ok(crate::progress::RunningQuery::start(plan, task, runtime))
    }

    /// The physical plan of `logical`: Tessera UDFs over one dataset table planned directly (see
    /// [`crate::scan`]) where the query runs in this process, any other plan by DataFusion.
    async fn physical_plan(&self, state: &SessionState, logical: &LogicalPlan) -> Result<Arc<dyn ExecutionPlan>> {
        if self.local
            && let Some(plan) = crate::scan::direct::plan(state, logical).await?
        {
            return Ok(plan);
        }
        Ok(state.create_physical_plan(logical).await?)
    }

    /// Runs `udf` over `table` (optionally restricted to `roi`) and yields merged partial results as
    /// the DataFusion partitions finish — the last item is the complete result.
    pub async fn run_udf_live<U: Udf>(
        &self,
        table: &str,
        udf: U,
        roi: Option<&Roi>,
    ) -> Result<impl futures::Stream<Item = Result<Results>> + use<U>> {
        let df = self.roi_frame(table, roi).await?.select(vec![col("tile"), col("nav_index")])?;
        // results come as partitions finish, so each partition reads its own share of the frames
        // (sharing batches, a partition could finish having read none, or all)
        let (mut state, plan) = df.into_parts();
        state.config_mut().options_mut().execution.enable_file_stream_work_stealing = false;
        let df = DataFrame::new(state, plan);
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        crate::progress::live_results(udf, plan, task)
    }

    /// The table restricted to a ROI given as a bitmask (through a temporary registered mask).
    async fn roi_frame(&self, table: &str, roi: Option<&Roi>) -> Result<DataFrame> {
        let mut df = self.ctx.table(table).await?;
        if let Some(roi) = roi {
            let mask_name = format!("__run_udf_{}", self.temp.fetch_add(1, Ordering::Relaxed));
            self.masks.insert(&mask_name, roi.clone());
            let f = self.ctx.udf("roi_mask")?;
            df = df.filter(f.call(vec![lit(mask_name), col("nav_index")]))?;
        }
        Ok(df)
    }

    /// Picks frames (LiberTEM's PickUDF): the frames of `roi` (or every frame) in nav order, in the
    /// native dtype, as an array `(frames, sig...)`. Reads only those frames.
    pub async fn pick(&self, table: &str, roi: Option<&Roi>) -> Result<crate::udf::ResultBuffer> {
        let df = self
            .roi_frame(table, roi)
            .await?
            .sort(vec![col("nav_index").sort(true, false)])?
            .select(vec![col("tile")])?;
        let batches = df.collect().await?;
        let field = batches.first().map(|b| b.schema().field(0).clone());
        let Some(field) = field else { return Err(Error::Shape("pick: no frames".into())) };
        let sig = crate::tensor::tensor_shape(&field).unwrap_or_default();
        let tiles: Vec<&dyn arrow::array::Array> = batches.iter().map(|b| b.column(0).as_ref()).collect();
        let all = arrow::compute::concat(&tiles)?;
        let n = all.len();
        let mut shape = vec![n];
        shape.extend(&sig);
        let values = all.as_fixed_size_list().values().clone();
        let stack = crate::tensor::one_tensor(values, &shape);
        let stack_field = crate::tensor::tensor_field("frames", &stack.value_type(), &shape, false);
        crate::udf::ResultBuffer::from_tensor(&stack_field, &stack, 0)
    }

    /// Runs `udf` over table `table` (optionally restricted to `roi`) and returns its results as
    /// typed arrays — no SQL needed.
    pub async fn run_udf<U: Udf>(&self, table: &str, udf: U, roi: Option<&Roi>) -> Result<Results> {
        let udaf = aggregate(udf);
        let df = self.roi_frame(table, roi).await?;
        let df = df.aggregate(vec![], vec![udaf.call(vec![col("tile"), col("nav_index")]).alias("result")])?;
        let (state, logical) = df.into_parts();
        let plan = self.physical_plan(&state, &logical).await?;
        let batches = datafusion::physical_plan::collect(plan, Arc::new(TaskContext::from(&state))).await?;
        let batch =
            batches.iter().find(|b| b.num_rows() > 0).ok_or_else(|| Error::Shape("the UDF returned no row".into()))?;
        Results::from_struct(batch.column(0).as_struct(), 0)
    }
}
