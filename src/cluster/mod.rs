//! Scale out on Apache DataFusion Ballista: the same SQL, run by a Ballista scheduler and its
//! executors (cargo feature `ballista`, off by default).
//!
//! - [`run_scheduler`] and [`run_executor`] start the two kinds of server with Tessera registered
//!   (`tessera scheduler`, `tessera executor` on the command line).
//! - [`Context::remote`](crate::Context::remote) (`tessera sql --cluster df://host:50050`) is a client:
//!   tables are registered and queries planned as locally, then run on the cluster.
//! - Datasets travel as their specs, tile scans as their ROI and partitions, UDF calls by name with
//!   their parameters ([`LogicalCodec`], [`PhysicalCodec`]). Each partition of a scan is a Ballista
//!   task; partial UDF states (nav values only for the frames a task saw) are merged by Ballista's
//!   final aggregation, and results come back as the same tensors.
//! - **Data files are read where the tasks run**: the scheduler (which plans the scan) and every
//!   executor must see each file at the same absolute path, e.g. on a shared filesystem. A host that
//!   cannot open a file fails the query with an error that names the table, the host and the file.
//! - Only file-backed (and synthetic) datasets run remotely; `roi_mask` and `aux` read registries that
//!   live in the client process and are local-only.
//! - UDFs of your own run on a cluster whose scheduler and executors know them: a program of yours
//!   calls [`run_scheduler`] / [`run_executor`] with them in [`SchedulerOptions::udfs`] /
//!   [`ExecutorOptions::udfs`] (the `tessera` binary knows the built-ins).

mod codec;

pub use codec::{LogicalCodec, PhysicalCodec};

use crate::error::{Error, Result};
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::SessionState;
use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use std::net::SocketAddr;
use std::sync::Arc;

/// The codecs for the built-in UDFs plus `extra` aggregates (UDFs of your own, made with
/// [`aggregate`](crate::udf::aggregate)); client, scheduler and executors must use the same set.
pub fn codecs(extra: impl IntoIterator<Item = AggregateUDF>) -> (Arc<LogicalCodec>, Arc<PhysicalCodec>) {
    let aggregates = codec::Aggregates::new(crate::udf::builtin::all().into_iter().chain(extra));
    (Arc::new(LogicalCodec::new(aggregates.clone())), Arc::new(PhysicalCodec::new(aggregates)))
}

/// A client's session configuration: Tessera's defaults ([`default_config`](crate::default_config))
/// on Ballista's, with Tessera's codecs.
pub fn client_config() -> SessionConfig {
    let (logical, physical) = codecs([]);
    let mut config = SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_ballista_logical_extension_codec(logical)
        .with_ballista_physical_extension_codec(physical);
    config.options_mut().execution.parquet.skip_metadata = false;
    config
}

/// A DataFusion session state with Tessera registered, from a configuration (what the scheduler
/// plans with and the executors look functions up in).
fn tessera_state(config: SessionConfig, udfs: &[AggregateUDF]) -> Result<SessionState> {
    let mut ctx = SessionContext::new_with_config(config);
    crate::register(&mut ctx)?;
    for udf in udfs {
        ctx.register_udaf(udf.clone());
    }
    Ok(ctx.state())
}

/// How to run a scheduler ([`run_scheduler`]).
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on (`0.0.0.0` for every interface).
    pub bind_host: String,
    /// Port (0: any free port, reported to `ready`).
    pub port: u16,
    /// Seconds without a heartbeat after which an executor counts as lost and its tasks run elsewhere.
    pub executor_timeout_seconds: u64,
    /// UDFs of your own ([`aggregate`](crate::udf::aggregate)) besides the built-ins; the executors
    /// need the same ones.
    pub udfs: Vec<AggregateUDF>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions { bind_host: "127.0.0.1".into(), port: 50050, executor_timeout_seconds: 30, udfs: Vec::new() }
    }
}

/// Runs a Ballista scheduler with Tessera registered until the process ends; `ready` is called with
/// the address it listens on once it accepts connections.
pub async fn run_scheduler(options: &SchedulerOptions, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((options.bind_host.as_str(), options.port)).await.map_err(|e| {
        Error::Cluster(format!("scheduler: cannot listen on {}:{}: {e}", options.bind_host, options.port))
    })?;
    let addr = listener.local_addr().map_err(|e| Error::Cluster(format!("scheduler: {e}")))?;
    let (logical, physical) = codecs(options.udfs.clone());
    let mut config =
        SchedulerConfig { bind_host: options.bind_host.clone(), bind_port: addr.port(), ..Default::default() };
    config.external_host = if options.bind_host == "0.0.0.0" { hostname() } else { options.bind_host.clone() };
    config.scheduling_policy = TaskSchedulingPolicy::PushStaged;
    config.executor_timeout_seconds = options.executor_timeout_seconds.max(2);
    config.expire_dead_executor_interval_seconds = 1;
    config.no_executors_grace_period_seconds = options.executor_timeout_seconds.max(2);
    // the scheduler plans scans with partition identities, so that it can slice them into tasks
    let udfs = options.udfs.clone();
    config.override_session_builder = Some(Arc::new(move |config: SessionConfig| {
        tessera_state(config.with_extension(Arc::new(crate::scan::PartitionIds)), &udfs)
            .map_err(datafusion::error::DataFusionError::from)
    }));
    config.override_logical_codec = Some(logical);
    config.override_physical_codec = Some(physical);
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(ballista_error)?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config).await.map_err(ballista_error)?;
    ready(addr);
    start_grpc_service_with_listener(listener, scheduler).await.map_err(ballista_error)
}

/// How to run an executor ([`run_executor`]).
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// Address to listen on.
    pub bind_host: String,
    /// The host name other machines reach this executor at (default: `bind_host`, or this
    /// machine's name when binding every interface).
    pub external_host: Option<String>,
    /// Arrow Flight port: task results and shuffle data are fetched from here.
    pub port: u16,
    /// gRPC port the scheduler pushes tasks to.
    pub grpc_port: u16,
    /// Tasks run at once (default: the number of cores).
    pub concurrent_tasks: usize,
    /// Where shuffle files are written (default: a temporary directory).
    pub work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_seconds: u64,
    /// UDFs of your own besides the built-ins (the scheduler's [`SchedulerOptions::udfs`]).
    pub udfs: Vec<AggregateUDF>,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        ExecutorOptions {
            scheduler_host: "127.0.0.1".into(),
            scheduler_port: 50050,
            bind_host: "127.0.0.1".into(),
            external_host: None,
            port: 50051,
            grpc_port: 50052,
            concurrent_tasks: std::thread::available_parallelism().map_or(1, |n| n.get()),
            work_dir: None,
            heartbeat_seconds: 5,
            udfs: Vec::new(),
        }
    }
}

/// Runs a Ballista executor with Tessera registered until the process ends (or the scheduler
/// stops it).
pub async fn run_executor(options: &ExecutorOptions) -> Result<()> {
    let (logical, physical) = codecs(options.udfs.clone());
    let registry = BallistaFunctionRegistry::from(&tessera_state(SessionConfig::new(), &options.udfs)?);
    let external_host = options
        .external_host
        .clone()
        .unwrap_or_else(|| if options.bind_host == "0.0.0.0" { hostname() } else { options.bind_host.clone() });
    let config = ExecutorProcessConfig {
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        scheduler_connect_timeout_seconds: 10,
        bind_host: options.bind_host.clone(),
        external_host: Some(external_host),
        port: options.port,
        grpc_port: options.grpc_port,
        vcores: options.concurrent_tasks.max(1),
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: options.work_dir.clone(),
        executor_heartbeat_interval_seconds: options.heartbeat_seconds.max(1),
        print_thread_info: false,
        override_function_registry: Some(Arc::new(registry)),
        override_logical_codec: Some(logical),
        override_physical_codec: Some(physical),
        override_config_producer: Some(Arc::new(client_config)),
        ..Default::default()
    };
    start_executor_process(Arc::new(config)).await.map_err(ballista_error)
}

fn ballista_error(e: ballista_core::error::BallistaError) -> Error {
    Error::Cluster(e.to_string())
}

/// This machine's host name.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::{Buffers, Meta, Tile, Udf, Views, aggregate};
    use datafusion_proto::physical_plan::PhysicalExtensionCodec;

    /// A UDF of a user's own.
    #[derive(Clone, Debug)]
    struct Brightest;
    impl Udf for Brightest {
        fn name(&self) -> &str {
            "udf_brightest"
        }
        fn buffers(&self, _meta: &Meta) -> Result<Buffers> {
            Ok(Buffers::new().nav("max", crate::dataset::DType::F64))
        }
        fn process_tile<T: crate::dataset::Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> Result<()> {
            for (o, f) in out.nav("max").iter_mut().zip(tile.frames()) {
                *o = f.iter().map(|v| v.to_f64()).fold(f64::MIN, f64::max);
            }
            Ok(())
        }
    }

    #[test]
    fn a_users_udf_travels_by_name_with_its_parameters() {
        let md = [("k".to_string(), "v".to_string())].into_iter().collect();
        let udaf = AggregateUDF::from(crate::udf::UdfAggregate::new(Brightest).with_planned(vec![md]));
        let (_, physical) = codecs([aggregate(Brightest)]);
        let mut buf = Vec::new();
        physical.try_encode_udaf(&udaf, &mut buf).unwrap();
        let back = physical.try_decode_udaf("udf_brightest", &buf).unwrap();
        assert_eq!(back.as_ref(), &udaf, "the same call, parameters included");
        // a codec that does not know it says so
        let (_, builtins_only) = codecs([]);
        let err = builtins_only.try_decode_udaf("udf_brightest", &buf).unwrap_err().to_string();
        assert!(err.contains("udf_brightest") && err.contains("not registered"), "{err}");
    }
}
