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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Names of the scan's metrics.
pub mod metric {
    /// Bytes of frame data the scan read (or mapped) from the dataset.
    pub const BYTES_READ: &str = "bytes_read";
    /// Frames the scan read.
    pub const FRAMES_READ: &str = "frames_read";
}

/// The physical scan of a dataset table.
///
/// In a plan for a Ballista cluster the scan has a child, `ids`: a tiny in-memory source whose
/// partition `j` holds one value, the index of the scan partition that output partition `j` reads.
/// Ballista hands each task a slice of a stage's partitions by restricting the stage's leaves, and
/// it knows how to restrict an in-memory source but not a scan of its own; through `ids` the
/// restricted scan still knows which of its partitions each task runs.
///
/// In one process, the partitions of an execution share their batches (see
/// [`TileScanExec::with_shared_work`]): each partition takes the next batch that no other has taken,
/// so that a partition whose frames read slower, or whose core the machine lends elsewhere, does not
/// keep the others waiting at the end.
#[derive(Debug, Clone)]
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
    /// Runs of selected frames of each partition (where the partitions share their batches, all
    /// of them together).
    pub(crate) parts: Vec<Vec<(usize, usize)>>,
    pub(crate) batch_frames: usize,
    pub(crate) limit: Option<usize>,
    pub(crate) properties: Arc<PlanProperties>,
    pub(crate) metrics: ExecutionPlanMetricsSet,
    pub(crate) pool: BufferPool,
    /// Which scan partition each output partition reads (cluster plans; see above).
    pub(crate) ids: Option<Arc<dyn ExecutionPlan>>,
    /// The executions whose partitions share their batches, where they do (see
    /// [`TileScanExec::with_shared_work`]).
    pub(crate) shared: Option<Arc<SharedWork>>,
}

/// A list of batches (each the runs of frames it reads) and the next one not yet taken. A partition
/// that reads its own batches has one of its own; partitions that share their work, one together.
#[derive(Debug)]
struct Batches {
    list: Vec<Vec<(usize, usize)>>,
    next: AtomicUsize,
}

impl Batches {
    fn new(list: Vec<Vec<(usize, usize)>>) -> Arc<Self> {
        Arc::new(Batches { list, next: AtomicUsize::new(0) })
    }
    /// Takes the next batch, if any is left.
    fn take(&self) -> Option<&[(usize, usize)]> {
        // `Relaxed`: the counter only hands out indices; the list is never written after creation
        self.list.get(self.next.fetch_add(1, Ordering::Relaxed)).map(Vec::as_slice)
    }
    /// Leaves no batch to take (a cancelled query).
    fn stop(&self) {
        self.next.store(self.list.len(), Ordering::Relaxed);
    }
}

/// The batches that the partitions of a scan's executions share, one list per execution.
///
/// An execution is known by its task context: DataFusion hands every partition of one execution the
/// same one. An execution's list is made when its first partition starts, and is forgotten once
/// every partition has started, or when the context is dropped. A partition that starts a second
/// time in the same context (the plan executed again) starts a new list. Two executions of one plan
/// at the same time, in one task context, would be taken for one (DataFusion's file scans, which
/// share their files the same way, assume the same).
#[derive(Debug)]
pub(crate) struct SharedWork {
    /// Frames per shared batch: the scan's, or fewer where that leaves fewer than
    /// [`SHARED_BATCHES_PER_PARTITION`] batches per partition.
    batch_frames: usize,
    /// Frames per batch of the list's last batches (see [`split_tail`]).
    tail_frames: usize,
    executions: Mutex<Vec<Execution>>,
}

/// Batches per partition that a shared list has at least, where the frames allow: enough that
/// every partition has work, and that the partitions finish close together.
const SHARED_BATCHES_PER_PARTITION: usize = 4;

/// The last batches of a shared list (one per partition) are cut into this many shorter ones.
const TAIL_SPLIT: usize = 4;

#[derive(Debug)]
struct Execution {
    task: Weak<TaskContext>,
    batches: Arc<Batches>,
    started: Vec<bool>,
}

impl SharedWork {
    /// The batches partition `partition` of `partitions` takes from in the execution of `task`;
    /// `list` makes an execution's batches.
    fn batches(
        &self,
        task: &Arc<TaskContext>,
        partition: usize,
        partitions: usize,
        list: impl FnOnce() -> Vec<Vec<(usize, usize)>>,
    ) -> Arc<Batches> {
        let mut executions = self.executions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        executions.retain(|e| e.task.strong_count() > 0);
        let found =
            executions.iter().position(|e| std::ptr::eq(e.task.as_ptr(), Arc::as_ptr(task)) && !e.started[partition]);
        let i = match found {
            Some(i) => i,
            None => {
                let batches = Batches::new(list());
                let started = vec![false; partitions];
                executions.push(Execution { task: Arc::downgrade(task), batches, started });
                executions.len() - 1
            }
        };
        let e = &mut executions[i];
        e.started[partition] = true;
        let batches = e.batches.clone();
        if e.started.iter().all(|&s| s) {
            executions.swap_remove(i);
        }
        batches
    }
}

/// Name of the column of the partition-identity child.
const PARTITION: &str = "partition";

impl TileScanExec {
    /// The scan of `roi`'s frames split into `parts` (runs of frames for each partition).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        table: String,
        dataset: Arc<dyn Dataset>,
        table_schema: SchemaRef,
        projection: Vec<usize>,
        roi: Roi,
        roi_text: Option<String>,
        parts: Vec<Vec<(usize, usize)>>,
        batch_frames: usize,
        limit: Option<usize>,
    ) -> Self {
        let schema = Arc::new(table_schema.project(&projection).expect("projection indices are valid"));
        TileScanExec {
            table,
            dataset,
            table_schema,
            projection,
            roi: Arc::new(roi),
            roi_text,
            batch_frames: batch_frames.max(1),
            limit,
            properties: Self::properties_for(schema, parts.len()),
            parts,
            metrics: ExecutionPlanMetricsSet::new(),
            pool: BufferPool::new(),
            ids: None,
            shared: None,
        }
    }

    /// The scan whose partitions, in one execution, share their batches: each partition takes the
    /// next batch that none has taken (DataFusion's file scans do the same with files, see
    /// `datafusion.execution.enable_file_stream_work_stealing`). Every partition must then be
    /// executed in this process: a scan for a cluster, whose tasks each run some of the partitions,
    /// must not share. Results are the same, except for the last bits of float sums over frames,
    /// which then depend on which partition added which frames (as they depend on the order in which
    /// partitions finish, with more than two).
    ///
    /// A scan with a limit, or with a single partition, reads its partitions' own batches. Batches
    /// are made smaller where there are fewer than [`SHARED_BATCHES_PER_PARTITION`] per partition;
    /// they hold whole multiples of `align` frames (a file's read unit) where the scan's batches do.
    pub(crate) fn with_shared_work(mut self, align: usize) -> Self {
        let n = self.parts.len();
        if n > 1 && self.limit.is_none() && self.ids.is_none() {
            let frames: usize = self.parts.iter().flatten().map(|r| r.1).sum();
            let mut batch_frames = self.batch_frames.min(frames.div_ceil(n * SHARED_BATCHES_PER_PARTITION).max(1));
            let align = align.max(1);
            let mut tail_frames = (batch_frames / TAIL_SPLIT).max(1);
            if self.batch_frames.is_multiple_of(align) {
                batch_frames = batch_frames.div_ceil(align) * align;
                tail_frames = tail_frames.div_ceil(align) * align;
            }
            self.shared = Some(Arc::new(SharedWork { batch_frames, tail_frames, executions: Mutex::default() }));
        }
        self
    }

    fn properties_for(schema: SchemaRef, partitions: usize) -> Arc<PlanProperties> {
        Arc::new(
            PlanProperties::new(
                EquivalenceProperties::new(schema),
                Partitioning::UnknownPartitioning(partitions),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )
            .with_scheduling_type(SchedulingType::Cooperative),
        )
    }

    /// The scan for a cluster plan: with its partition-identity child (see [`TileScanExec`]).
    pub(crate) fn with_partition_ids(mut self) -> Result<Self> {
        self.shared = None;
        use arrow::array::Int64Array;
        use arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new(PARTITION, DataType::Int64, false)]));
        let partitions = (0..self.parts.len())
            .map(|g| Ok(vec![RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![g as i64]))])?]))
            .collect::<Result<Vec<_>>>()?;
        let ids = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(&partitions, schema, None)?;
        self.ids = Some(ids);
        Ok(self)
    }

    /// This scan reading the partitions that `ids` names (decoded from a cluster plan).
    pub(crate) fn with_ids(mut self, ids: Arc<dyn ExecutionPlan>) -> Self {
        self.shared = None;
        self.properties = Self::properties_for(
            ExecutionPlan::schema(&self),
            ids.properties().output_partitioning().partition_count(),
        );
        self.ids = Some(ids);
        self
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
            " ({} of {} frames), partitions={}, batch_frames={}{}, projection=[{}]",
            self.roi.count(),
            self.roi.len(),
            self.parts.len(),
            self.shared.as_ref().map_or(self.batch_frames, |s| s.batch_frames),
            if self.shared.is_some() { " shared" } else { "" },
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
        self.ids.iter().collect()
    }
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // the identity child must keep its partitions as they are
        vec![false; self.children().len()]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.into_iter().next(), &self.ids) {
            (Some(ids), Some(_)) => Ok(Arc::new(self.as_ref().clone().with_ids(ids))),
            _ => Ok(self),
        }
    }
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let rows = match partition {
            // which frames a partition reads is decided as it runs
            Some(_) if self.ids.is_some() || self.shared.is_some() => {
                return Ok(Arc::new(Statistics::new_unknown(&self.schema())));
            }
            Some(p) => self.parts.get(p).map(|r| r.iter().map(|x| x.1).sum()).unwrap_or(0),
            None => self.roi.count(),
        };
        let rows = self.limit.map_or(rows, |l| rows.min(l));
        Ok(Arc::new(Statistics::new_unknown(&self.schema()).with_num_rows(Precision::Exact(rows))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let Some(ids) = &self.ids else { return self.stream(partition, partition, context) };
        // a cluster plan: which scan partition this is comes from the identity child
        let ids = ids.execute(partition, context.clone())?;
        let this = self.clone();
        let stream = futures::stream::once(async move {
            use arrow::array::AsArray;
            use futures::TryStreamExt;
            let batches: Vec<RecordBatch> = ids.try_collect().await?;
            let values: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec())
                .collect();
            match values.as_slice() {
                [g] if (*g as usize) < this.parts.len() => this.stream(*g as usize, partition, context),
                _ => datafusion::common::internal_err!(
                    "TileScanExec: output partition {partition} has partition ids {values:?}, expected one of 0..{}",
                    this.parts.len()
                ),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), futures::TryStreamExt::try_flatten(stream))))
    }
}

impl TileScanExec {
    /// The frames of scan partition `part`, as output partition `partition` (its metrics).
    fn stream(&self, part: usize, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let batches = match &self.shared {
            Some(shared) => shared.batches(&context, part, self.parts.len(), || {
                let list = chunk_runs(&join_runs(self.parts.iter().flatten().copied()), shared.batch_frames);
                split_tail(list, self.parts.len(), shared.tail_frames)
            }),
            None => {
                let mut runs = self.parts.get(part).cloned().unwrap_or_default();
                if let Some(limit) = self.limit {
                    truncate_runs(&mut runs, limit);
                }
                Batches::new(chunk_runs(&runs, self.batch_frames))
            }
        };
        let tile_col = self.projection.iter().position(|&i| self.table_schema.field(i).name() == "tile");
        let reader = BatchReader {
            dataset: self.dataset.clone(),
            schema: schema.clone(),
            projection: self.projection.clone(),
            tile_col,
            batches,
            pool: self.pool.clone(),
            cancel: context.session_config().get_extension::<crate::progress::CancelFlag>(),
            bytes_read: MetricBuilder::new(&self.metrics).counter(metric::BYTES_READ, partition),
            frames_read: MetricBuilder::new(&self.metrics).counter(metric::FRAMES_READ, partition),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, Yielding { reader, yield_next: false })))
    }
}

/// `runs` with each run that continues the one before joined to it.
fn join_runs(runs: impl Iterator<Item = (usize, usize)>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (s, c) in runs {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == s => last.1 += c,
            _ => out.push((s, c)),
        }
    }
    out
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

/// Groups runs into batches of at most `batch_frames` frames each. A run of at least an eighth of a
/// batch has batches of its own: a batch of one run is read without a copy from a memory-mapped
/// file, one of several runs is copied (a ROI of 100-frame runs in 64-frame batches copied every
/// other batch). Shorter runs share batches, so that a sparse ROI does not make tiny ones.
pub(super) fn chunk_runs(runs: &[(usize, usize)], batch_frames: usize) -> Vec<Vec<(usize, usize)>> {
    let long = (batch_frames / 8).max(1);
    let mut batches = Vec::new();
    let mut cur: Vec<(usize, usize)> = Vec::new();
    let mut n = 0;
    let mut flush = |cur: &mut Vec<(usize, usize)>, n: &mut usize| {
        if !cur.is_empty() {
            batches.push(std::mem::take(cur));
            *n = 0;
        }
    };
    for &(mut s, mut c) in runs {
        let own = c >= long;
        if own {
            flush(&mut cur, &mut n);
        }
        while c > 0 {
            let k = c.min(batch_frames - n);
            cur.push((s, k));
            n += k;
            s += k;
            c -= k;
            if n == batch_frames {
                flush(&mut cur, &mut n);
            }
        }
        if own {
            flush(&mut cur, &mut n);
        }
    }
    flush(&mut cur, &mut n);
    batches
}

/// Cuts each of the last `k` batches of `list` that read one run into batches of at most `frames`
/// frames. Partitions that share a list take its last batches as they come free, so short last
/// batches let them finish close together, while the long batches before amortise the engine's
/// work per batch. (A quarter-ROI sum of a 1 GiB float32 file in 8 MiB batches, 16 per partition:
/// one partition otherwise idles for half a batch on average, ~0.3 ms of a ~16 ms query.) A batch of
/// several runs, a copy, stays whole.
fn split_tail(mut list: Vec<Vec<(usize, usize)>>, k: usize, frames: usize) -> Vec<Vec<(usize, usize)>> {
    let frames = frames.max(1);
    let tail = list.split_off(list.len().saturating_sub(k));
    for batch in tail {
        match batch[..] {
            [(start, count)] if count > frames => {
                list.extend((start..start + count).step_by(frames).map(|s| vec![(s, frames.min(start + count - s))]))
            }
            _ => list.push(batch),
        }
    }
    list
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
    batches: Arc<Batches>,
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
            self.batches.stop();
            return Some(Err(crate::Error::Cancelled.into()));
        }
        let runs = self.batches.take()?;
        Some(self.read(runs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking() {
        // runs of at least an eighth of a batch are not shared
        let b = chunk_runs(&[(0, 5), (10, 3)], 4);
        assert_eq!(b, vec![vec![(0, 4)], vec![(4, 1)], vec![(10, 3)]]);
        let b = chunk_runs(&[(0, 100), (128, 100), (300, 3), (310, 3), (400, 64)], 64);
        assert_eq!(
            b,
            vec![
                vec![(0, 64)],
                vec![(64, 36)],
                vec![(128, 64)],
                vec![(192, 36)],
                vec![(300, 3), (310, 3)],
                vec![(400, 64)]
            ]
        );
        // short runs fill batches
        let runs: Vec<(usize, usize)> = (0..40).map(|i| (i * 10, 3)).collect();
        let b = chunk_runs(&runs, 64);
        assert_eq!(b.iter().map(|b| b.iter().map(|r| r.1).sum::<usize>()).collect::<Vec<_>>(), vec![64, 56]);
        assert_eq!(b.concat().iter().map(|r| r.1).sum::<usize>(), 120);
        let mut r = vec![(0, 5), (10, 3)];
        truncate_runs(&mut r, 6);
        assert_eq!(r, vec![(0, 5), (10, 1)]);
        assert_eq!(join_runs([(0, 4), (4, 2), (8, 1), (9, 1)].into_iter()), vec![(0, 6), (8, 2)]);
    }

    #[test]
    fn the_last_batches_of_one_run_are_cut_shorter() {
        let list = vec![vec![(0, 8)], vec![(8, 8)], vec![(16, 8)], vec![(30, 1), (40, 1)], vec![(50, 7)]];
        let cut = split_tail(list.clone(), 3, 3);
        assert_eq!(
            cut,
            vec![
                vec![(0, 8)],
                vec![(8, 8)],
                vec![(16, 3)],
                vec![(19, 3)],
                vec![(22, 2)],
                vec![(30, 1), (40, 1)],
                vec![(50, 3)],
                vec![(53, 3)],
                vec![(56, 1)]
            ]
        );
        // the same frames in the same order
        assert_eq!(join_runs(cut.concat().into_iter()), join_runs(list.concat().into_iter()));
        assert_eq!(split_tail(list.clone(), 9, 8), list, "no batch longer than the pieces");
        assert_eq!(split_tail(Vec::new(), 2, 1), Vec::<Vec<(usize, usize)>>::new());
    }

    #[test]
    fn partitions_of_one_execution_share_one_list() {
        let work = SharedWork { batch_frames: 1, tail_frames: 1, executions: Mutex::default() };
        let list = || (0..5).map(|i| vec![(i, 1)]).collect::<Vec<_>>();
        let (a, b) = (Arc::new(TaskContext::default()), Arc::new(TaskContext::default()));
        // two executions, their partitions starting interleaved
        let a0 = work.batches(&a, 0, 2, list);
        let b1 = work.batches(&b, 1, 2, list);
        let a1 = work.batches(&a, 1, 2, list);
        let b0 = work.batches(&b, 0, 2, list);
        assert!(Arc::ptr_eq(&a0, &a1) && Arc::ptr_eq(&b0, &b1) && !Arc::ptr_eq(&a0, &b0));
        // every batch is taken once, by whichever partition asks first
        let taken: Vec<_> = [&a0, &a1, &a1, &a0, &a1, &a0, &a1].iter().filter_map(|q| q.take()).collect();
        assert_eq!(taken, (0..5).map(|i| vec![(i, 1)]).collect::<Vec<_>>());
        assert!(b0.take().is_some(), "the other execution still has all its batches");
        // both executions have started every partition: nothing is kept
        assert!(work.executions.lock().unwrap().is_empty());
        // the plan executed again in the same context starts a new list
        let again = work.batches(&a, 0, 2, list);
        assert!(!Arc::ptr_eq(&again, &a0));
        assert_eq!(again.take(), Some(&[(0, 1)][..]));
        // a partition started twice in one context: the second time belongs to a new execution
        let twice = work.batches(&a, 0, 2, list);
        assert!(!Arc::ptr_eq(&again, &twice));
        assert_eq!(work.executions.lock().unwrap().len(), 2);
        // a cancelled query leaves nothing to take
        twice.stop();
        assert!(twice.take().is_none());
        // an execution whose context is gone is forgotten
        drop((a, again, twice, a0, a1));
        let _ = work.batches(&b, 0, 2, list);
        assert_eq!(work.executions.lock().unwrap().len(), 1);
    }
}
