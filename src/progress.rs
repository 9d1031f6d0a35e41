//! Running queries: progress, cancellation, and live partial results of a UDF.

use crate::error::{Error, Result};
use crate::scan::TileScanExec;
use crate::udf::{Results, Udf, UdfAggregate};
use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, collect};
use futures::{Stream, StreamExt};
use std::sync::Arc;

/// How far a query has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Frames read so far.
    pub frames_read: usize,
    /// Frames the query's scans select in all.
    pub frames_total: usize,
    /// Bytes read so far.
    pub bytes_read: usize,
}

impl Progress {
    /// Fraction done, 0 to 1 (1 for a query that reads nothing).
    pub fn fraction(&self) -> f64 {
        if self.frames_total == 0 { 1.0 } else { self.frames_read as f64 / self.frames_total as f64 }
    }
}

/// The progress of an executing (or executed) physical plan, from its scans' live metrics.
pub fn progress(plan: &Arc<dyn ExecutionPlan>) -> Progress {
    let m = crate::scan::scan_metrics(plan);
    let mut p = Progress { frames_read: m.frames_read, bytes_read: m.bytes_read, frames_total: 0 };
    total_frames(plan.as_ref(), &mut p.frames_total);
    p
}

fn total_frames(plan: &dyn ExecutionPlan, total: &mut usize) {
    if let Some(scan) = plan.downcast_ref::<TileScanExec>() {
        *total += scan.frames_selected();
    }
    for child in plan.children() {
        total_frames(child.as_ref(), total);
    }
}

/// A query running in the background. Dropping it (or [`RunningQuery::cancel`]) stops it: reading
/// stops at the next batch.
pub struct RunningQuery {
    plan: Arc<dyn ExecutionPlan>,
    handle: tokio::task::JoinHandle<datafusion::error::Result<Vec<RecordBatch>>>,
    cancel: Arc<CancelFlag>,
    /// Set (then waiters woken) when the result is ready.
    done: Arc<(std::sync::atomic::AtomicBool, tokio::sync::Notify)>,
}

/// Set to stop a query: every Tessera scan that sees it in its task's session config (as an
/// extension) ends at its next batch. Aborting the query's task alone is not enough while the
/// runtime's workers are busy with the query itself.
#[derive(Debug, Default)]
pub struct CancelFlag(pub std::sync::atomic::AtomicBool);

impl CancelFlag {
    /// Whether the query was cancelled.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl RunningQuery {
    /// Starts executing `plan` on the runtime of `runtime` (the current runtime if `None`).
    ///
    /// CPU-bound scans keep a runtime's workers busy, so timers and signals of the same runtime may
    /// wait until the query ends: a program that shows progress or reacts to Ctrl-C should execute
    /// on a separate runtime, as the CLI does.
    pub fn start(
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
        runtime: Option<&tokio::runtime::Handle>,
    ) -> Self {
        let cancel = Arc::new(CancelFlag::default());
        let config = task.session_config().clone().with_extension(cancel.clone());
        // the caller's context itself when it holds the only reference (no copy of its function
        // registries, a few % of a small query's time)
        let task = Arc::new(match Arc::try_unwrap(task) {
            Ok(task) => task.with_session_config(config),
            Err(task) => TaskContext::new(
                task.task_id(),
                task.session_id(),
                config,
                task.scalar_functions().clone(),
                task.higher_order_functions().clone(),
                task.aggregate_functions().clone(),
                task.window_functions().clone(),
                task.runtime_env(),
            ),
        });
        let done = Arc::new((std::sync::atomic::AtomicBool::new(false), tokio::sync::Notify::new()));
        let fut = {
            let (plan, done) = (plan.clone(), done.clone());
            async move {
                let r = collect(plan, task).await;
                done.0.store(true, std::sync::atomic::Ordering::Release);
                done.1.notify_waiters();
                r
            }
        };
        let handle = match runtime {
            Some(rt) => rt.spawn(fut),
            None => tokio::spawn(fut),
        };
        RunningQuery { plan, handle, cancel, done }
    }
    /// How far it is.
    pub fn progress(&self) -> Progress {
        progress(&self.plan)
    }
    /// Whether it has finished (or was cancelled).
    pub fn is_finished(&self) -> bool {
        self.done.0.load(std::sync::atomic::Ordering::Acquire) || self.handle.is_finished()
    }
    /// Returns when the query has finished (not when it was cancelled: use [`RunningQuery::finish`]).
    pub async fn finished(&self) {
        let notified = self.done.1.notified();
        tokio::pin!(notified);
        // registered before the check, so a result that arrives in between still wakes us
        notified.as_mut().enable();
        if !self.is_finished() {
            notified.await;
        }
    }
    /// Stops the query; its progress stays readable.
    pub fn cancel(&self) {
        self.cancel.0.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.abort();
    }
    /// Waits for the result.
    pub async fn finish(mut self) -> Result<Vec<RecordBatch>> {
        let handle = &mut self.handle;
        let cancelled = self.cancel.is_set();
        match handle.await {
            Ok(_) if cancelled => Err(Error::Cancelled),
            Ok(r) => Ok(r?),
            Err(e) if e.is_cancelled() => Err(Error::Cancelled),
            Err(e) => Err(Error::Unsupported(format!("the query failed: {e}"))),
        }
    }
    /// The physical plan.
    pub fn plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.plan
    }
}

impl Drop for RunningQuery {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Merged partial results of `udf` as the partitions of `plan` (a scan projected to `tile,
/// nav_index`) finish: after k of n partitions, the results of the frames those k read, with the
/// valid mask saying which.
pub(crate) fn live_results<U: Udf>(
    udf: U,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
) -> Result<impl Stream<Item = Result<Results>>> {
    let agg = UdfAggregate::new(udf);
    let schema = plan.schema();
    let fields = vec![Arc::new(schema.field(0).clone()), Arc::new(schema.field(1).clone())];
    let n = plan.output_partitioning().partition_count();
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    for i in 0..n {
        let mut acc = agg.standalone_accumulator(&fields)?;
        let stream = plan.execute(i, task.clone())?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let state = async {
                let mut stream = stream;
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    acc.update_batch(&[batch.column(0).clone(), batch.column(1).clone()])?;
                }
                acc.state()
            }
            .await;
            let _ = tx.send(state).await;
        });
    }
    drop(tx);
    let states = Vec::new();
    Ok(futures::stream::unfold((rx, states, agg, fields), |(mut rx, mut states, agg, fields)| async move {
        let state = rx.recv().await?;
        let result = (|| -> Result<Results> {
            states.push(state?);
            let mut fin = agg.standalone_accumulator(&fields)?;
            for s in &states {
                let arrays = s.iter().map(|v| v.to_array()).collect::<datafusion::error::Result<Vec<_>>>()?;
                fin.merge_batch(&arrays)?;
            }
            let value = fin.evaluate()?.to_array()?;
            let st = value.as_struct_opt().ok_or_else(|| Error::Unsupported("UDF result is not a struct".into()))?;
            debug_assert_eq!(st.len(), 1);
            Results::from_struct(st, 0)
        })();
        Some((result, (rx, states, agg, fields)))
    }))
}
