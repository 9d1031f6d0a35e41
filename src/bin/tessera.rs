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
        /// Print the query's wall time (planning and execution, not process start) to stderr.
        #[arg(long)]
        timing: bool,
        /// The query.
        query: String,
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

fn context(partitions: Option<usize>) -> tessera::Result<Context> {
    let mut config = default_config();
    if let Some(p) = partitions {
        config = config.with_target_partitions(p.max(1));
    }
    let ctx = Context::with_config(config)?;
    ctx.register_spec("demo", DatasetSpec::parse(DEMO_SPEC)?)?;
    Ok(ctx)
}

async fn sql(
    tables: &[String],
    partitions: Option<usize>,
    out: Option<&Path>,
    timing: bool,
    query: &str,
    exec: &Handle,
) -> tessera::Result<()> {
    let ctx = context(partitions)?;
    for t in tables {
        ctx.register_table_arg(t)?;
    }
    let started = std::time::Instant::now();
    let batches = run_with_progress(&ctx, query, exec).await?;
    if timing {
        eprintln!("query_seconds {:.6}", started.elapsed().as_secs_f64());
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
async fn run_with_progress(ctx: &Context, query: &str, exec: &Handle) -> tessera::Result<Vec<RecordBatch>> {
    use std::io::{IsTerminal, Write};
    let running = ctx.start(query, Some(exec)).await?;
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
    let ctx = context(None)?;
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
    let ctx = context(None)?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Command::Sql { tables, partitions, out, timing, query } => {
            match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(exec) => {
                    let r = rt.block_on(sql(tables, *partitions, out.as_deref(), *timing, query, exec.handle()));
                    exec.shutdown_background();
                    r
                }
                Err(e) => Err(tessera::Error::io("tokio runtime", e)),
            }
        }
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
