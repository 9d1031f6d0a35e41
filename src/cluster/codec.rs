//! The extension codecs that carry Tessera's plan pieces to a Ballista scheduler and its executors:
//! dataset tables (by spec), tile scans (spec, projection, ROI, partitions) and UDF aggregates (by
//! name, with the metadata of the call's parameters). Everything else is delegated to Ballista's
//! own codecs; a one-byte tag in front of the bytes says which codec wrote them.

use crate::dataset::{self, DatasetSpec};
use crate::geometry::Roi;
use crate::scan::{TileScanExec, TileTable};
use crate::udf::{Metadata, UdfAggregate};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference, internal_err};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes written by Tessera.
const TESSERA: u8 = b'T';
/// Bytes written by Ballista's codec.
const BALLISTA: u8 = b'B';

/// A dataset table: re-opened from its spec where the plan is decoded.
#[derive(Serialize, Deserialize)]
struct TableMsg {
    name: String,
    spec: DatasetSpec,
    batch_bytes: usize,
}

/// A tile scan as planned: the frames it reads, split into its partitions.
#[derive(Serialize, Deserialize)]
struct ScanMsg {
    table: String,
    spec: DatasetSpec,
    projection: Vec<usize>,
    roi_len: usize,
    roi_runs: Vec<(usize, usize)>,
    roi_text: Option<String>,
    parts: Vec<Vec<(usize, usize)>>,
    batch_frames: usize,
    limit: Option<usize>,
}

/// A UDF aggregate of one call: its name and its parameters' field metadata.
#[derive(Serialize, Deserialize)]
struct UdafMsg {
    planned: Vec<Metadata>,
}

fn to_json<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<()> {
    buf.push(TESSERA);
    serde_json::to_writer(buf, value).map_err(|e| DataFusionError::Internal(format!("tessera codec: {e}")))
}

fn from_json<'a, T: Deserialize<'a>>(what: &str, buf: &'a [u8]) -> Result<T> {
    serde_json::from_slice(buf).map_err(|e| DataFusionError::Internal(format!("tessera codec: bad {what}: {e}")))
}

/// Opens a dataset where a plan is decoded, naming this host when it cannot.
fn open_here(table: &str, spec: &DatasetSpec) -> Result<Arc<dyn dataset::Dataset>> {
    dataset::open(spec).map_err(|e| {
        DataFusionError::Execution(format!(
            "table '{table}': host '{}' cannot open the dataset ({e}); the scheduler and every executor must \
             see the data files at the same path (a shared filesystem)",
            super::hostname()
        ))
    })
}

/// The UDF aggregates a codec can rebuild by name.
#[derive(Debug, Clone)]
pub(crate) struct Aggregates(Arc<HashMap<String, Arc<AggregateUDF>>>);

impl Aggregates {
    pub(crate) fn new(udafs: impl IntoIterator<Item = AggregateUDF>) -> Self {
        Aggregates(Arc::new(udafs.into_iter().map(|u| (u.name().to_string(), Arc::new(u))).collect()))
    }

    fn encode(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        let inner: &dyn std::any::Any = node.inner().as_ref();
        match inner.downcast_ref::<UdfAggregate>().and_then(|a| a.planned()) {
            Some(planned) => to_json(&UdafMsg { planned: planned.to_vec() }, buf),
            // by name (the receiving side's registry)
            None => Ok(()),
        }
    }

    fn decode(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        let base = self.0.get(name).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "aggregate function '{name}' is not registered here (a UDF of your own must be registered in the \
                 scheduler and executors as well)"
            ))
        })?;
        let msg: UdafMsg = match buf.split_first() {
            Some((&TESSERA, rest)) => from_json("aggregate", rest)?,
            None => return Ok(base.clone()),
            Some(_) => return internal_err!("tessera codec: aggregate '{name}' has bytes of another codec"),
        };
        let inner: &dyn std::any::Any = base.inner().as_ref();
        match inner.downcast_ref::<UdfAggregate>() {
            Some(agg) => Ok(Arc::new(AggregateUDF::from(agg.with_planned(msg.planned)))),
            None => Ok(base.clone()),
        }
    }
}

/// Client → scheduler: dataset tables and UDF aggregates; the rest is Ballista's.
#[derive(Debug)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
    aggregates: Aggregates,
}

impl LogicalCodec {
    pub(crate) fn new(aggregates: Aggregates) -> Self {
        LogicalCodec { inner: BallistaLogicalExtensionCodec::default(), aggregates }
    }
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }
    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }
    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: arrow::datatypes::SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.split_first() {
            Some((&TESSERA, rest)) => {
                let msg: TableMsg = from_json("table", rest)?;
                let ds = open_here(&msg.name, &msg.spec)?;
                Ok(Arc::new(TileTable::new(&msg.name, ds).with_batch_bytes(msg.batch_bytes)))
            }
            Some((&BALLISTA, rest)) => self.inner.try_decode_table_provider(rest, table_ref, schema, ctx),
            _ => internal_err!("tessera codec: table '{table_ref}' has no codec tag"),
        }
    }
    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(t) = node.downcast_ref::<TileTable>() {
            let spec = t.dataset().spec().clone();
            if spec.format.as_deref() == Some("memory") {
                return internal_err!(
                    "table '{table_ref}' holds frames in this process's memory; a cluster reads datasets from files"
                );
            }
            return to_json(&TableMsg { name: t.name().to_string(), spec, batch_bytes: t.batch_bytes() }, buf);
        }
        buf.push(BALLISTA);
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }
    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }
    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.aggregates.decode(name, buf)
    }
    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.aggregates.encode(node, buf)
    }
}

/// Scheduler → executors: tile scans and UDF aggregates; the rest is Ballista's.
#[derive(Debug)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
    aggregates: Aggregates,
}

impl PhysicalCodec {
    pub(crate) fn new(aggregates: Aggregates) -> Self {
        PhysicalCodec { inner: BallistaPhysicalExtensionCodec::default(), aggregates }
    }
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&TESSERA, rest)) => {
                let msg: ScanMsg = from_json("scan", rest)?;
                let ds = open_here(&msg.table, &msg.spec)?;
                let table_schema = TileTable::new(&msg.table, ds.clone()).schema();
                if let Some(bad) = msg.projection.iter().find(|&&i| i >= table_schema.fields().len()) {
                    return internal_err!(
                        "table '{}': the planned scan projects column {bad}, which it lacks",
                        msg.table
                    );
                }
                if msg.roi_len != ds.geometry().nav.size() {
                    return internal_err!(
                        "table '{}': the planned scan covers {} frames, the dataset here has {}",
                        msg.table,
                        msg.roi_len,
                        ds.geometry().nav.size()
                    );
                }
                let mut roi = Roi::none(msg.roi_len);
                for (start, count) in msg.roi_runs {
                    for i in start..start + count {
                        roi.set(i, true);
                    }
                }
                let scan = TileScanExec::new(
                    msg.table,
                    ds,
                    table_schema,
                    msg.projection,
                    roi,
                    msg.roi_text,
                    msg.parts,
                    msg.batch_frames,
                    msg.limit,
                );
                // the partition identities, as the scheduler sliced them for this task
                Ok(Arc::new(match inputs {
                    [] => scan,
                    [ids] => scan.with_ids(ids.clone()),
                    _ => return internal_err!("tessera codec: a tile scan with {} inputs", inputs.len()),
                }))
            }
            Some((&BALLISTA, rest)) => self.inner.try_decode(rest, inputs, ctx, proto_converter),
            _ => internal_err!("tessera codec: a plan node without a codec tag"),
        }
    }
    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(scan) = node.downcast_ref::<TileScanExec>() {
            let msg = ScanMsg {
                table: scan.table.clone(),
                spec: scan.dataset.spec().clone(),
                projection: scan.projection.clone(),
                roi_len: scan.roi.len(),
                roi_runs: scan.roi.runs(),
                roi_text: scan.roi_text.clone(),
                parts: scan.parts.clone(),
                batch_frames: scan.batch_frames,
                limit: scan.limit,
            };
            return to_json(&msg, buf);
        }
        buf.push(BALLISTA);
        self.inner.try_encode(node, buf, proto_converter)
    }
    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.aggregates.decode(name, buf)
    }
    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.aggregates.encode(node, buf)
    }
}
