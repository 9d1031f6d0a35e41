//! The `tessera` command line: SQL over detector files, file info, and the demo.

use arrow::record_batch::RecordBatch;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tessera::dataset::{DatasetSpec, open};
use tessera::display::summarize;
use tessera::export::{FileFormats, write_results};
use tessera::{Context, default_config};
use tokio::runtime::Handle;

/// The spec of the always-registered synthetic table `demo`.
const DEMO_SPEC: &str = "synthetic,nav=32x32,sig=64x64,dtype=uint16";

#[derive(Parser)]
#[command(name = "tessera", version, about = "4D-STEM processing on Apache Arrow and DataFusion")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a SQL query. A synthetic table `demo` is always there.
    Sql {
        /// Register a dataset: NAME=PATH[,key=value]... (`tessera keys` lists the keys). May be
        /// repeated.
        #[arg(long = "table", short = 't', value_name = "NAME=SPEC")]
        tables: Vec<String>,
        /// DataFusion partitions (default: one per core).
        #[arg(long)]
        partitions: Option<usize>,
        /// Also write every result buffer into this folder: .npy files, and PNG images of 2-D buffers.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the query's wall time (planning and execution, not process start) to stderr, and
        /// the time it took to plan.
        #[arg(long)]
        timing: bool,
        /// Run the query this many times in the same process (with --timing: a time per run; the
        /// first run also pays for loading the program's code, the later ones show a warm process).
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: usize,
        /// Run on a Ballista cluster: its scheduler, df://HOST:PORT (see `tessera scheduler`).
        #[cfg(feature = "ballista")]
        #[arg(long, value_name = "URL")]
        cluster: Option<String>,
        /// The query.
        query: String,
    },
    /// Run a Ballista scheduler with Tessera's functions (a cluster's coordinator).
    #[cfg(feature = "ballista")]
    Scheduler {
        /// Address to listen on (0.0.0.0: every interface).
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Port (0: any free port; the chosen one is printed).
        #[arg(long, default_value_t = 50050)]
        port: u16,
        /// Seconds without a heartbeat after which an executor is lost and its tasks run elsewhere.
        #[arg(long, default_value_t = 30)]
        executor_timeout: u64,
    },
    /// Run a Ballista executor with Tessera's functions (a cluster's worker).
    #[cfg(feature = "ballista")]
    Executor {
        /// The scheduler: HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// Address to listen on (0.0.0.0: every interface).
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// The name other machines reach this one at (default: --bind, or the host name).
        #[arg(long)]
        external_host: Option<String>,
        /// Arrow Flight port (results and shuffle data are fetched from it).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port the scheduler sends tasks to.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks at once (default: one per core).
        #[arg(long)]
        concurrent_tasks: Option<usize>,
        /// Folder for shuffle files (default: a temporary folder).
        #[arg(long)]
        work_dir: Option<String>,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = 5)]
        heartbeat: u64,
    },
    /// Print what a file holds.
    Info {
        /// PATH[,key=value]... as in --table.
        spec: String,
    },
    /// List Tessera's SQL functions with their parameters and an example.
    Functions,
    /// List the keys a dataset spec takes, with the formats they apply to.
    Keys,
    /// Run the main job on the built-in synthetic dataset and write its results as Parquet.
    Demo {
        /// Folder for the results.
        #[arg(long, default_value = "tessera-demo-out")]
        out: PathBuf,
    },
}

fn local_context(partitions: Option<usize>) -> tessera::Result<Context> {
    let mut config = default_config();
    if let Some(p) = partitions {
        config = config.with_target_partitions(p.max(1));
    }
    let ctx = Context::with_config(config)?;
    ctx.register_spec("demo", DatasetSpec::parse(DEMO_SPEC)?)?;
    Ok(ctx)
}

/// A local context, or a client of the cluster at `cluster`.
async fn context(partitions: Option<usize>, cluster: Option<&str>) -> tessera::Result<Context> {
    match cluster {
        #[cfg(feature = "ballista")]
        Some(url) => {
            let ctx = Context::remote(url).await?;
            if let Some(p) = partitions {
                ctx.sql(&format!("SET datafusion.execution.target_partitions = {}", p.max(1))).await?.collect().await?;
            }
            ctx.register_spec("demo", DatasetSpec::parse(DEMO_SPEC)?)?;
            Ok(ctx)
        }
        _ => local_context(partitions),
    }
}

/// What `tessera sql` was asked.
struct SqlArgs<'a> {
    tables: &'a [String],
    partitions: Option<usize>,
    out: Option<&'a Path>,
    timing: bool,
    repeat: usize,
    cluster: Option<&'a str>,
    query: &'a str,
}

async fn sql(args: SqlArgs<'_>, exec: &Handle) -> tessera::Result<()> {
    let SqlArgs { tables, partitions, out, timing, repeat, cluster, query } = args;
    let ctx = context(partitions, cluster).await?;
    for t in tables {
        ctx.register_table_arg(t)?;
    }
    let mut batches = Vec::new();
    for _ in 0..repeat.max(1) {
        let started = std::time::Instant::now();
        batches = run_with_progress(&ctx, query, exec, timing.then_some(started)).await?;
        if timing {
            eprintln!("query_seconds {:.6}", started.elapsed().as_secs_f64());
        }
    }
    print!("{}", summarize(&batches));
    if let Some(dir) = out {
        for f in write_results(&batches, dir, FileFormats { npy: true, png: true })? {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// Runs a query; on runs over a second draws a progress bar on stderr (when it is a terminal, or
/// with TESSERA_PROGRESS=always); Ctrl-C cancels the query.
/// The query runs on `exec`, a multi-threaded runtime of its own, so that this one (current-thread)
/// keeps drawing the progress bar and hears Ctrl-C while every core is busy.
/// `timed`: when the query was issued; the time to a physical plan is then printed (`plan_seconds`).
async fn run_with_progress(
    ctx: &Context,
    query: &str,
    exec: &Handle,
    timed: Option<std::time::Instant>,
) -> tessera::Result<Vec<RecordBatch>> {
    use std::io::{IsTerminal, Write};
    let running = ctx.start(query, Some(exec)).await?;
    if let Some(t) = timed {
        eprintln!("plan_seconds {:.6}", t.elapsed().as_secs_f64());
    }
    let started = std::time::Instant::now();
    let show = std::env::var("TESSERA_PROGRESS").is_ok_and(|v| v == "always") || std::io::stderr().is_terminal();
    let mut drawn = false;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    while !running.is_finished() {
        tokio::select! {
            _ = running.finished() => {}
            _ = tokio::signal::ctrl_c() => {
                running.cancel();
                let p = running.progress();
                eprintln!("\ncancelled after {} of {} frames", p.frames_read, p.frames_total);
                return Err(tessera::Error::Cancelled);
            }
            _ = tick.tick() => {
                if show && started.elapsed().as_secs_f64() > 1.0 && !running.is_finished() {
                    let p = running.progress();
                    let width = 30;
                    let done = (p.fraction() * width as f64).round() as usize;
                    let rate = p.bytes_read as f64 / started.elapsed().as_secs_f64() / 1e9;
                    eprint!(
                        "\r[{}{}] {:>3.0}% {}/{} frames {:.2} GB/s",
                        "#".repeat(done.min(width)),
                        ".".repeat(width - done.min(width)),
                        100.0 * p.fraction(),
                        p.frames_read,
                        p.frames_total,
                        rate
                    );
                    let _ = std::io::stderr().flush();
                    drawn = true;
                }
            }
        }
    }
    if drawn {
        let p = running.progress();
        eprintln!("\r{:<80}", format!("{} frames in {:.1} s", p.frames_read, started.elapsed().as_secs_f64()));
    }
    running.finish().await
}

fn functions() -> tessera::Result<()> {
    let ctx = local_context(None)?;
    let state = ctx.session().state();
    let mut names: Vec<&String> = state.aggregate_functions().keys().filter(|n| n.starts_with("udf_")).collect();
    names.sort();
    for name in names {
        let Some(doc) = state.aggregate_functions()[name].documentation() else { continue };
        println!("{name}\n  {}\n  syntax:  {}", doc.description, doc.syntax_example);
        for arg in doc.arguments.iter().flatten() {
            println!("  {:<14} {}", arg.0, arg.1);
        }
        if let Some(example) = &doc.sql_example {
            println!("  example: {example}");
        }
        println!();
    }
    println!(
        "masks('spec', ...)  mask stacks for udf_apply_masks: ring(cy, cx, ri, ro), disk(cy, cx, r), point(y, x),"
    );
    println!("                    rect(y0, x0, h, w), polygon(y0 x0, y1 x1, ...), npy(path)");
    println!("roi_mask('name', nav_index)  true where a registered nav mask is set (a ROI in WHERE)");
    Ok(())
}

fn info(spec: &str) -> tessera::Result<()> {
    let mut spec = DatasetSpec::parse(spec)?;
    spec.absolutize()?;
    let ds = open(&spec)?;
    let g = ds.geometry();
    let format = ds.spec().format.clone().unwrap_or_else(|| "detected".into());
    println!("file:     {}", spec.path.as_deref().unwrap_or("(generated)"));
    println!("format:   {format}");
    println!("nav:      {} ({} frames)", g.nav, g.n_frames());
    println!("sig:      {}", g.sig);
    println!("dtype:    {}", g.dtype);
    let bytes = g.n_frames() * g.frame_bytes();
    println!("size:     {} bytes ({:.1} MiB decoded)", bytes, bytes as f64 / (1 << 20) as f64);
    for (k, v) in ds.describe() {
        println!("{:<9} {v}", format!("{k}:"));
    }
    Ok(())
}

async fn demo(out: &std::path::Path) -> tessera::Result<()> {
    std::fs::create_dir_all(out).map_err(|e| tessera::Error::io(out.display(), e))?;
    let out = std::fs::canonicalize(out).map_err(|e| tessera::Error::io(out.display(), e))?;
    let ctx = local_context(None)?;
    println!("Tessera demo on the synthetic dataset `demo` ({DEMO_SPEC})\n");
    let jobs = [
        ("sum", "sum of all frames (LiberTEM SumUDF)", "SELECT udf_sum(tile) AS sum FROM demo"),
        (
            "sumsig",
            "sum over each frame: a bright-field image (SumSigUDF)",
            "SELECT udf_sum_sig(tile) AS sumsig FROM demo",
        ),
        (
            "roi_disk",
            "both, over a disk-shaped region of interest (radius 10 frames)",
            "SELECT udf_sum(tile) AS sum, udf_sum_sig(tile) AS sumsig FROM demo \
             WHERE (nav_y - 16) * (nav_y - 16) + (nav_x - 16) * (nav_x - 16) <= 100",
        ),
    ];
    for (name, what, query) in jobs {
        let file = out.join(format!("{name}.parquet"));
        println!("== {what}\n   {query}");
        let batches = ctx.sql(query).await?.collect().await?;
        print!("{}", summarize(&batches));
        ctx.sql(&format!("COPY ({query}) TO '{}'", file.display())).await?.collect().await?;
        println!("   -> {}", file.display());
        for png in write_results(&batches, &out.join(name), FileFormats { npy: false, png: true })? {
            println!("   -> {}", png.display());
        }
        println!();
    }
    println!("Results written to {}", out.display());
    println!("Read them in Python: pyarrow.parquet.read_table('{}/sum.parquet')", out.display());
    Ok(())
}

/// Runs a server (scheduler, executor) on a multi-threaded runtime until it ends.
#[cfg(feature = "ballista")]
fn server(run: impl std::future::Future<Output = tessera::Result<()>>) -> tessera::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| tessera::Error::io("tokio runtime", e))?;
    rt.block_on(run)
}

/// glibc malloc's settings for a process that runs queries back to back: buffers up to 32 MiB (a
/// query's result and scratch buffers, frame-sized and larger) come from the heap instead of a fresh
/// `mmap` each, and freed heap memory is kept instead of trimmed, so that the next query reuses pages
/// already faulted in instead of faulting and zeroing them again. Measured on the second query of a
/// process (a one-frame `udf_sum` of the large file): ~1.8 -> ~1.45 ms; A/B of the quarter-ROI sums:
/// 1.07-1.17x (their fixed cost is a large part of their time). The price: peak RSS up to ~15 MiB
/// higher in some runs (freed memory kept), a constant, not proportional to the data.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets glibc malloc's parameters; called first in main, before any thread
    // starts or anything is allocated in bulk. A refused setting (return value 0) leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Command::Sql {
            tables,
            partitions,
            out,
            timing,
            repeat,
            #[cfg(feature = "ballista")]
            cluster,
            query,
        } => {
            #[cfg(not(feature = "ballista"))]
            let cluster: &Option<String> = &None;
            let args = SqlArgs {
                tables,
                partitions: *partitions,
                out: out.as_deref(),
                timing: *timing,
                repeat: *repeat,
                cluster: cluster.as_deref(),
                query,
            };
            match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(exec) => {
                    let r = rt.block_on(sql(args, exec.handle()));
                    exec.shutdown_background();
                    r
                }
                Err(e) => Err(tessera::Error::io("tokio runtime", e)),
            }
        }
        #[cfg(feature = "ballista")]
        Command::Scheduler { bind, port, executor_timeout } => {
            let options = tessera::cluster::SchedulerOptions {
                bind_host: bind.clone(),
                port: *port,
                executor_timeout_seconds: *executor_timeout,
                udfs: Vec::new(),
            };
            server(tessera::cluster::run_scheduler(&options, |addr| {
                use std::io::Write;
                println!("tessera scheduler listening on {addr}");
                let _ = std::io::stdout().flush();
            }))
        }
        #[cfg(feature = "ballista")]
        Command::Executor {
            scheduler,
            bind,
            external_host,
            port,
            grpc_port,
            concurrent_tasks,
            work_dir,
            heartbeat,
        } => match scheduler.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
            Some((host, Ok(scheduler_port))) => {
                let defaults = tessera::cluster::ExecutorOptions::default();
                let options = tessera::cluster::ExecutorOptions {
                    scheduler_host: host.to_string(),
                    scheduler_port,
                    bind_host: bind.clone(),
                    external_host: external_host.clone(),
                    port: *port,
                    grpc_port: *grpc_port,
                    concurrent_tasks: concurrent_tasks.unwrap_or(defaults.concurrent_tasks),
                    work_dir: work_dir.clone(),
                    heartbeat_seconds: *heartbeat,
                    udfs: Vec::new(),
                };
                server(tessera::cluster::run_executor(&options))
            }
            _ => Err(tessera::Error::Spec(format!("--scheduler '{scheduler}': expected HOST:PORT"))),
        },
        Command::Info { spec } => info(spec),
        Command::Functions => functions(),
        Command::Keys => {
            for k in tessera::dataset::KEYS {
                println!("{:<12} {:<32} {}", k.name, k.formats, k.help);
            }
            Ok(())
        }
        Command::Demo { out } => rt.block_on(demo(out)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
