//! `TileScanExec`: streams the selected frames of a dataset as frame-stack record batches.

use super::roi::nav_columns;
use crate::dataset::{BufferPool, Dataset};
use crate::geometry::Roi;
use arrow::array::{ArrayData, RecordBatchOptions};
use arrow::array::{ArrayRef, FixedSizeListArray, make_array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use std::sync::Arc;

/// Names of the scan's metrics.
pub mod metric {
    /// Bytes of frame data the scan read (or mapped) from the dataset.
    pub const BYTES_READ: &str = "bytes_read";
    /// Frames the scan read.
    pub const FRAMES_READ: &str = "frames_read";
}

/// The physical scan of a dataset table.
#[derive(Debug)]
pub struct TileScanExec {
    pub(crate) table: String,
    pub(crate) dataset: Arc<dyn Dataset>,
    /// Full table schema.
    pub(crate) table_schema: SchemaRef,
    /// Projected column indices into the table schema.
    pub(crate) projection: Vec<usize>,
    pub(crate) roi: Arc<Roi>,
    /// Text of the pushed-down predicate (for EXPLAIN).
    pub(crate) roi_text: Option<String>,
    /// Runs of selected frames of each partition.
    pub(crate) parts: Vec<Vec<(usize, usize)>>,
    pub(crate) batch_frames: usize,
    pub(crate) limit: Option<usize>,
    pub(crate) properties: Arc<PlanProperties>,
    pub(crate) metrics: ExecutionPlanMetricsSet,
    pub(crate) pool: BufferPool,
}

impl TileScanExec {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        table: String,
        dataset: Arc<dyn Dataset>,
        table_schema: SchemaRef,
        projection: Vec<usize>,
        roi: Roi,
        roi_text: Option<String>,
        partitions: usize,
        batch_frames: usize,
        limit: Option<usize>,
    ) -> Self {
        let schema = Arc::new(table_schema.project(&projection).expect("projection indices are valid"));
        let parts = roi.split_aligned(partitions, dataset.frame_alignment());
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(parts.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
        .with_scheduling_type(SchedulingType::Cooperative);
        TileScanExec {
            table,
            dataset,
            table_schema,
            projection,
            roi: Arc::new(roi),
            roi_text,
            parts,
            batch_frames: batch_frames.max(1),
            limit,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
            pool: BufferPool::new(),
        }
    }

    /// Frames this scan reads in all (its ROI, capped by a limit).
    pub fn frames_selected(&self) -> usize {
        let n: usize = self
            .parts
            .iter()
            .map(|p| p.iter().map(|r| r.1).sum::<usize>())
            .map(|n| self.limit.map_or(n, |l| n.min(l)))
            .sum();
        n
    }

    /// The ROI the scan reads.
    pub fn roi(&self) -> &Roi {
        &self.roi
    }
}

impl DisplayAs for TileScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let g = self.dataset.geometry();
        let cols: Vec<&str> = self.projection.iter().map(|&i| self.table_schema.field(i).name().as_str()).collect();
        write!(f, "TileScanExec: table={}, nav={}, sig={}, dtype={}, roi=", self.table, g.nav, g.sig, g.dtype)?;
        match &self.roi_text {
            Some(t) => write!(f, "[{t}]")?,
            None => write!(f, "all")?,
        }
        write!(
            f,
            " ({} of {} frames), partitions={}, batch_frames={}, projection=[{}]",
            self.roi.count(),
            self.roi.len(),
            self.parts.len(),
            self.batch_frames,
            cols.join(", ")
        )?;
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TileScanExec {
    fn name(&self) -> &str {
        "TileScanExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let rows = match partition {
            Some(p) => self.parts.get(p).map(|r| r.iter().map(|x| x.1).sum()).unwrap_or(0),
            None => self.roi.count(),
        };
        let rows = self.limit.map_or(rows, |l| rows.min(l));
        Ok(Arc::new(Statistics::new_unknown(&self.schema()).with_num_rows(Precision::Exact(rows))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let mut runs = self.parts.get(partition).cloned().unwrap_or_default();
        if let Some(limit) = self.limit {
            truncate_runs(&mut runs, limit);
        }
        let tile_col = self.projection.iter().position(|&i| self.table_schema.field(i).name() == "tile");
        let reader = BatchReader {
            dataset: self.dataset.clone(),
            schema: schema.clone(),
            projection: self.projection.clone(),
            tile_col,
            batches: chunk_runs(&runs, self.batch_frames),
            next: 0,
            pool: self.pool.clone(),
            cancel: context.session_config().get_extension::<crate::progress::CancelFlag>(),
            bytes_read: MetricBuilder::new(&self.metrics).counter(metric::BYTES_READ, partition),
            frames_read: MetricBuilder::new(&self.metrics).counter(metric::FRAMES_READ, partition),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, Yielding { reader, yield_next: false })))
    }
}

/// Keeps the first `limit` frames of `runs`.
fn truncate_runs(runs: &mut Vec<(usize, usize)>, mut limit: usize) {
    let mut out = Vec::new();
    for &(s, c) in runs.iter() {
        if limit == 0 {
            break;
        }
        let k = c.min(limit);
        out.push((s, k));
        limit -= k;
    }
    *runs = out;
}

/// Groups runs into batches of at most `batch_frames` frames each.
fn chunk_runs(runs: &[(usize, usize)], batch_frames: usize) -> Vec<Vec<(usize, usize)>> {
    let mut batches = Vec::new();
    let mut cur: Vec<(usize, usize)> = Vec::new();
    let mut n = 0;
    for &(mut s, mut c) in runs {
        while c > 0 {
            let k = c.min(batch_frames - n);
            cur.push((s, k));
            n += k;
            s += k;
            c -= k;
            if n == batch_frames {
                batches.push(std::mem::take(&mut cur));
                n = 0;
            }
        }
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// The scan's stream: reads one batch per poll and yields to the runtime between batches, so that a
/// cancelled query (its task aborted) stops reading at the next batch instead of at the end of the
/// partition. Reads are synchronous: from the page cache or a memory map they take microseconds per
/// batch, and the partition already runs on a task of its own.
struct Yielding {
    reader: BatchReader,
    yield_next: bool,
}

impl futures::Stream for Yielding {
    type Item = Result<RecordBatch>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.yield_next = true;
        std::task::Poll::Ready(self.reader.next())
    }
}

/// Reads one batch per `next()`.
struct BatchReader {
    dataset: Arc<dyn Dataset>,
    schema: SchemaRef,
    projection: Vec<usize>,
    tile_col: Option<usize>,
    batches: Vec<Vec<(usize, usize)>>,
    next: usize,
    pool: BufferPool,
    cancel: Option<Arc<crate::progress::CancelFlag>>,
    bytes_read: Count,
    frames_read: Count,
}

impl BatchReader {
    fn read(&self, runs: &[(usize, usize)]) -> Result<RecordBatch> {
        let g = self.dataset.geometry();
        let n: usize = runs.iter().map(|r| r.1).sum();
        let nav = nav_columns(&g.nav, runs);
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.projection.len());
        for (pos, &i) in self.projection.iter().enumerate() {
            if Some(pos) == self.tile_col {
                let buffer = self.dataset.read(runs, &self.pool)?;
                self.bytes_read.add(buffer.len());
                self.frames_read.add(n);
                let DataType::FixedSizeList(item, size) = self.schema.field(pos).data_type().clone() else {
                    unreachable!("the tile column is a FixedSizeList")
                };
                let values = ArrayData::builder(g.dtype.arrow()).len(n * g.sig.size()).add_buffer(buffer).build()?;
                let tiles = FixedSizeListArray::try_new(item, size, make_array(values), None)?;
                cols.push(Arc::new(tiles));
            } else {
                cols.push(nav[i].clone());
            }
        }
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }
}

impl Iterator for BatchReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.cancel.as_ref().is_some_and(|c| c.is_set()) {
            self.next = self.batches.len();
            return Some(Err(crate::Error::Cancelled.into()));
        }
        let runs = self.batches.get(self.next)?;
        self.next += 1;
        Some(self.read(runs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking() {
        let b = chunk_runs(&[(0, 5), (10, 3)], 4);
        assert_eq!(b, vec![vec![(0, 4)], vec![(4, 1), (10, 3)]]);
        let mut r = vec![(0, 5), (10, 3)];
        truncate_runs(&mut r, 6);
        assert_eq!(r, vec![(0, 5), (10, 1)]);
    }
}
