//! The dataset as a DataFusion table: [`TileTable`] (a `TableProvider`) and [`TileScanExec`].
//!
//! Schema: `nav_index Int64`, one `Int64` column per nav axis (`nav_y, nav_x` for a 2-D scan,
//! `nav_0..` otherwise), `tile` — the frame as an `arrow.fixed_shape_tensor` of the sig shape in the
//! native dtype, with the geometry in its field metadata. Every predicate that references only nav
//! columns is an exact filter pushdown: it becomes a [`Roi`](crate::geometry::Roi) and only the
//! selected frames are read.
//!
//! Queries of Tessera UDFs over one such table (`SELECT udf_sum(tile) FROM scan WHERE nav_y < 8`)
//! are planned directly by [`Context`](crate::Context) into the plan that DataFusion's planner makes
//! of them, without its general rule passes, which cost a large part of a short query's time;
//! every other query, and every query through a plain `SessionContext`, goes through DataFusion's
//! planner.

pub(crate) mod direct;
mod exec;
mod roi;

pub use exec::{TileScanExec, metric};
pub use roi::{MaskRegistry, RoiMaskFunction, evaluate_roi, nav_columns as nav_columns_of, nav_schema};

use crate::dataset::Dataset;
use crate::tensor::tile_field;
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// A session configuration extension: scans planned with it get a partition-identity child, so that
/// a Ballista scheduler can give each task a slice of their partitions (see [`TileScanExec`]).
#[derive(Debug, Default)]
pub struct PartitionIds;

/// Default size of one frame-stack batch that the dataset copies (decodes, or reads with `pread`):
/// the UDFs read it right after it was written, while it is still in the L2 cache.
pub const DEFAULT_BATCH_BYTES: usize = 2 << 20;

/// Default size of one batch of frames that the dataset maps in place
/// ([`Dataset::maps_frames`](crate::dataset::Dataset::maps_frames)): there is no copy to keep in
/// cache, so the batch is long enough that the engine's own work per batch is a small part of it.
/// That work (the batch's arrays, the stream's hand-over, the aggregate's bookkeeping) took ~15 µs
/// per batch on an Intel VM, its data evicted from cache by the frames before it: a tenth of a 2 MiB
/// batch's sum. The UDFs still get the frames in cache-sized stacks (see
/// [`Udf::tile_depth`](crate::udf::Udf::tile_depth)). Against 2 MiB batches, on a mapped 1 GiB
/// float32 file: `udf_sum` 1.03-1.11x, `udf_sum_sig` 1.03x, six UDFs in one query 1.0-1.08x (on
/// 16-bit frames 0.91-0.99x: the batch no longer waits in L2 for the next UDF); copied batches of
/// 8 MiB measured 0.86-0.91x.
pub const MAPPED_BATCH_BYTES: usize = 8 << 20;

/// A dataset registered as a table.
#[derive(Debug)]
pub struct TileTable {
    name: String,
    dataset: Arc<dyn Dataset>,
    schema: SchemaRef,
    /// Set by the user; by default [`DEFAULT_BATCH_BYTES`] or [`MAPPED_BATCH_BYTES`].
    batch_bytes: Option<usize>,
}

impl TileTable {
    /// A table over `dataset` named `name` (the name is recorded in the tile metadata).
    pub fn new(name: &str, dataset: Arc<dyn Dataset>) -> Self {
        let g = dataset.geometry();
        let nav = nav_schema(&g.nav);
        let mut fields: Vec<_> = nav.fields().iter().cloned().collect();
        let calibration = dataset.calibration().fit(g.nav.ndim(), g.sig.ndim());
        fields.push(Arc::new(tile_field(g, name, &calibration)));
        TileTable { name: name.to_string(), schema: Arc::new(Schema::new(fields)), dataset, batch_bytes: None }
    }
    /// Sets the target size of one batch (frame stack) in bytes (by default [`MAPPED_BATCH_BYTES`]
    /// where the dataset maps its frames, [`DEFAULT_BATCH_BYTES`] where it copies them).
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = Some(bytes.max(1));
        self
    }
    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }
    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The target size of one batch (frame stack) in bytes.
    pub fn batch_bytes(&self) -> usize {
        match self.batch_bytes {
            Some(b) => b,
            None if self.dataset.maps_frames() => MAPPED_BATCH_BYTES,
            None => DEFAULT_BATCH_BYTES,
        }
    }
}

#[async_trait]
impl TableProvider for TileTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let nav = &self.dataset.geometry().nav;
        Ok(filters
            .iter()
            .map(|f| {
                if roi::is_nav_only(f, nav) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let g = self.dataset.geometry();
        let roi = evaluate_roi(state, &g.nav, filters)?;
        let roi_text = match filters {
            [] => None,
            [one] => Some(one.to_string()),
            many => Some(many.iter().map(|f| format!("({f})")).collect::<Vec<_>>().join(" AND ")),
        };
        let projection = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let partitions = state.config().target_partitions().max(1);
        let mut batch_frames = (self.batch_bytes() / g.frame_bytes().max(1)).max(1);
        // whole read units (HDF5 chunks) per batch, where a unit fits in a batch
        let align = self.dataset.frame_alignment().max(1);
        if align <= batch_frames {
            batch_frames = batch_frames / align * align;
        }
        let parts = roi.split_aligned(partitions, align);
        let scan = TileScanExec::new(
            self.name.clone(),
            self.dataset.clone(),
            self.schema.clone(),
            projection,
            roi,
            roi_text,
            parts,
            batch_frames,
            limit,
        );
        if state.config().get_extension::<PartitionIds>().is_some() {
            return Ok(Arc::new(scan.with_partition_ids()?));
        }
        if state.config().options().execution.enable_file_stream_work_stealing {
            return Ok(Arc::new(scan.with_shared_work(align)));
        }
        Ok(Arc::new(scan))
    }
}

/// Sums the scan metrics (`bytes_read`, `frames_read`) of every [`TileScanExec`] in a plan.
pub fn scan_metrics(plan: &Arc<dyn ExecutionPlan>) -> ScanMetrics {
    let mut m = ScanMetrics::default();
    collect_metrics(plan, &mut m);
    m
}

fn collect_metrics(plan: &Arc<dyn ExecutionPlan>, m: &mut ScanMetrics) {
    if plan.name() == "TileScanExec"
        && let Some(set) = plan.metrics()
    {
        m.bytes_read += set.sum_by_name(metric::BYTES_READ).map_or(0, |v| v.as_usize());
        m.frames_read += set.sum_by_name(metric::FRAMES_READ).map_or(0, |v| v.as_usize());
        m.scans += 1;
    }
    for child in plan.children() {
        collect_metrics(child, m);
    }
}

/// What the scans of an executed plan read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanMetrics {
    /// Bytes of frame data read.
    pub bytes_read: usize,
    /// Frames read.
    pub frames_read: usize,
    /// Number of scans in the plan.
    pub scans: usize,
}
