//! The same SQL on a Ballista cluster (feature `ballista`): each test starts a scheduler and two
//! executors as processes of the `tessera` binary on loopback, and compares with the local engine.

use crate::common;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use arrow::record_batch::RecordBatch;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessera::Context;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// A scheduler and its executors, killed when dropped.
struct Cluster {
    scheduler: Child,
    executors: Vec<Child>,
    work_dirs: Vec<tempfile::TempDir>,
    url: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.executors.iter_mut().chain(std::iter::once(&mut self.scheduler)) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on `port`.
fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what} did not start listening on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// A scheduler that gives an executor up after `executor_timeout` s, and `n` executors with
    /// heartbeats every second and two task slots each.
    fn start(n: usize, executor_timeout: u64) -> Cluster {
        let mut scheduler = Command::new(BIN)
            .args(["scheduler", "--port", "0", "--executor-timeout", &executor_timeout.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the scheduler");
        let mut line = String::new();
        BufReader::new(scheduler.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(line.starts_with("tessera scheduler listening on"), "scheduler said: {line}");
        let mut cluster =
            Cluster { scheduler, executors: Vec::new(), work_dirs: Vec::new(), url: format!("df://{addr}") };
        for i in 0..n {
            let dir = common::tempdir();
            let (port, grpc) = (free_port(), free_port());
            let child = Command::new(BIN)
                .args(["executor", "--scheduler", &addr, "--concurrent-tasks", "2", "--heartbeat", "1"])
                .args(["--port", &port.to_string(), "--grpc-port", &grpc.to_string()])
                .args(["--work-dir", dir.path().to_str().unwrap()])
                .spawn()
                .expect("start an executor");
            cluster.executors.push(child);
            cluster.work_dirs.push(dir);
            // the Flight port opens once the executor has registered with the scheduler
            wait_for_port(port, &format!("executor {i}"));
        }
        cluster
    }

    async fn client(&self, partitions: usize) -> Context {
        let ctx = Context::remote(&self.url).await.unwrap();
        ctx.sql(&format!("SET datafusion.execution.target_partitions = {partitions}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        ctx
    }
}

async fn run(ctx: &Context, query: &str) -> tessera::Result<Vec<RecordBatch>> {
    ctx.sql(query).await?.collect().await.map_err(Into::into)
}

/// Every number in an array (struct fields and tensor values flattened, NULL as NaN).
fn numbers(a: &dyn Array) -> Vec<f64> {
    match a.data_type() {
        DataType::Struct(_) => a.as_struct().columns().iter().flat_map(|c| numbers(c.as_ref())).collect(),
        DataType::FixedSizeList(..) => numbers(a.as_fixed_size_list().values().as_ref()),
        DataType::List(_) => numbers(a.as_list::<i32>().values().as_ref()),
        DataType::Boolean => a.as_boolean().iter().map(|v| v.map_or(f64::NAN, f64::from)).collect(),
        _ => {
            let f = arrow::compute::cast(a, &DataType::Float64).unwrap();
            f.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(f64::NAN)).collect()
        }
    }
}

/// The remote result equals the local one: same schema (tensor metadata included) and the same
/// values — bit for bit, or within `tolerance` (relative) where the merge order of partial results
/// changes rounding.
fn assert_same(query: &str, local: &[RecordBatch], remote: &[RecordBatch], tolerance: f64) {
    let rows = |b: &[RecordBatch]| b.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(rows(local), rows(remote), "{query}: rows");
    let (l, r) = (&local[0], remote.iter().find(|b| b.num_rows() > 0).unwrap());
    assert_eq!(l.schema().fields(), r.schema().fields(), "{query}: result fields (with their metadata)");
    for (i, (a, b)) in l.columns().iter().zip(r.columns()).enumerate() {
        if tolerance == 0.0 {
            if a.as_ref() != b.as_ref() {
                let (x, y) = (numbers(a.as_ref()), numbers(b.as_ref()));
                let first = x.iter().zip(&y).position(|(p, q)| p.to_bits() != q.to_bits());
                panic!(
                    "{query}: column {i} differs: types {} / {}, {} / {} numbers, first difference at {first:?}: {:?}",
                    a.data_type(),
                    b.data_type(),
                    x.len(),
                    y.len(),
                    first.map(|k| (x[k], y[k]))
                );
            }
        } else {
            let err = common::rel_err(query, &numbers(b.as_ref()), &numbers(a.as_ref()));
            assert!(err <= tolerance, "{query}: column {i} differs by {err:e}");
        }
    }
}

/// A 12×20 scan of 24×24 uint16 frames with structure (a moving disk), as an .npy file.
fn scan_file(dir: &Path) -> PathBuf {
    let (ny, nx, s) = (12usize, 20usize, 24usize);
    let mut data = Vec::with_capacity(ny * nx * s * s);
    for iy in 0..ny {
        for ix in 0..nx {
            let (cy, cx) = (10.0 + iy as f64 * 0.3, 12.0 - ix as f64 * 0.2);
            for y in 0..s {
                for x in 0..s {
                    let r2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2);
                    let v = if r2 < 25.0 { 900 } else { 10 } + (iy * 31 + ix * 7 + y * 3 + x) % 17;
                    data.push(v as u16);
                }
            }
        }
    }
    let path = dir.join("scan.npy");
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    tessera::dataset::formats::npy::write_npy(&path, tessera::dataset::DType::U16, &[ny, nx, s, s], &bytes).unwrap();
    path
}

const QUERIES: [(&str, f64); 5] = [
    ("udf_sum(tile)", 0.0),
    ("udf_sum_sig(tile)", 0.0),
    ("udf_stddev(tile)", 1e-12),
    ("udf_apply_masks(tile, masks('ring(12, 12, 3, 9)', 'disk(6, 6, 4)', 'rect(2, 14, 6, 8)'))", 0.0),
    ("udf_com(tile, cy => 12, cx => 11.5, r => 7)", 0.0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_the_local_engine() {
    let dir = common::tempdir();
    let file = scan_file(dir.path());
    let cluster = Cluster::start(2, 10);
    let remote = cluster.client(4).await;
    let local = common::ctx(4);
    // the cluster's tasks read fixed partitions: so must the local engine, for the same float sums
    // bit for bit (its partitions would otherwise share their batches)
    local.sql("SET datafusion.execution.enable_file_stream_work_stealing = false").await.unwrap();
    for ctx in [&remote, &local] {
        ctx.register_table_arg(&format!("scan={}", file.display())).unwrap();
        ctx.register_table_arg("syn=synthetic,nav=16x8,sig=16x16,dtype=float32").unwrap();
    }
    for roi in ["", " WHERE nav_y BETWEEN 3 AND 9 AND nav_x >= 5", " WHERE nav_x % 3 = 1"] {
        for (call, tolerance) in QUERIES {
            for table in ["scan", "syn"] {
                let query = format!("SELECT {call} FROM {table}{roi}");
                let want = run(&local, &query).await.unwrap();
                let got = run(&remote, &query).await.unwrap_or_else(|e| panic!("{query} on the cluster: {e}"));
                assert_same(&query, &want, &got, tolerance);
            }
        }
    }
    // several UDFs in one SELECT, with a ROI
    let query =
        format!("SELECT {} FROM scan WHERE nav_y < 6", QUERIES.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "));
    let (want, got) = (run(&local, &query).await.unwrap(), run(&remote, &query).await.unwrap());
    assert_same(&query, &want, &got, 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_executors_cannot_open_fails_clearly() {
    let dir = common::tempdir();
    let file = scan_file(dir.path());
    let cluster = Cluster::start(1, 10);
    let remote = cluster.client(2).await;
    remote.register_table_arg(&format!("scan={}", file.display())).unwrap();
    // the client could open it when it was registered; now nobody can
    std::fs::remove_file(&file).unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(60), run(&remote, "SELECT udf_sum(tile) FROM scan"))
        .await
        .expect("the query must fail, not hang")
        .expect_err("the file is gone");
    let msg = err.to_string();
    assert!(msg.contains("scan.npy") && msg.contains("cannot open"), "unclear error: {msg}");
    println!("missing file: failed in {:.1} s: {msg}", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_executor_mid_query_completes_or_fails_fast() {
    // a scan long enough to kill an executor while its tasks run
    let spec = "syn=synthetic,nav=256x256,sig=48x48,dtype=uint16";
    let cluster = Cluster::start(2, 3);
    let remote = cluster.client(16).await;
    let local = common::ctx(16);
    remote.register_table_arg(spec).unwrap();
    local.register_table_arg(spec).unwrap();
    let query = "SELECT udf_sum(tile), udf_sum_sig(tile) FROM syn";
    let want = run(&local, query).await.unwrap();
    let mut cluster = cluster;
    let victim = cluster.executors.remove(0);
    let query_task = tokio::spawn(async move {
        let started = Instant::now();
        let r = run(&remote, query).await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut victim = victim;
    victim.kill().unwrap();
    victim.wait().unwrap();
    let (result, took) = tokio::time::timeout(Duration::from_secs(90), query_task)
        .await
        .expect("the query neither completed nor failed within 90 s after an executor was killed")
        .unwrap();
    match result {
        Ok(got) => {
            println!("executor killed: the query completed on the other in {:.1} s", took.as_secs_f64());
            assert_same(query, &want, &got, 0.0);
        }
        Err(e) => {
            println!("executor killed: the query failed in {:.1} s: {e}", took.as_secs_f64());
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Bytes of the files under `dir`, per stage folder (`<job>/<stage>/...`).
fn stage_bytes(dir: &Path, stages: &mut std::collections::BTreeMap<String, u64>) {
    fn walk(d: &Path, stage: Option<&str>, stages: &mut std::collections::BTreeMap<String, u64>, depth: usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                let stage = if depth == 1 { Some(name.as_str()) } else { stage };
                walk(&p, stage, stages, depth + 1);
            } else if let Some(s) = stage {
                *stages.entry(s.to_string()).or_default() += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    walk(dir, None, stages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_states_of_a_large_nav_grid_stay_compact() {
    // 1024×1024 frames of 4×4 pixels: a nav-shaped result is 8 MiB; 16 tasks shipping full-grid
    // buffers would shuffle 16 × 8 MiB
    let spec = "syn=synthetic,nav=1024x1024,sig=4x4,dtype=uint16";
    let cluster = Cluster::start(2, 10);
    let remote = cluster.client(16).await;
    remote.register_table_arg(spec).unwrap();
    let got = run(&remote, "SELECT udf_sum_sig(tile) FROM syn").await.unwrap();
    let local = common::ctx(4);
    local.register_table_arg(spec).unwrap();
    let want = run(&local, "SELECT udf_sum_sig(tile) FROM syn").await.unwrap();
    assert_same("udf_sum_sig on 1024x1024", &want, &got, 0.0);
    let mut stages = std::collections::BTreeMap::new();
    for d in &cluster.work_dirs {
        stage_bytes(d.path(), &mut stages);
    }
    let frames = 1024 * 1024u64;
    println!("shuffle and result bytes per stage for udf_sum_sig over {frames} frames in 16 tasks: {stages:?}");
    // the partial states: per frame its nav_index (8 B) and its value (8 B), plus IPC framing
    let partial = *stages.values().max().unwrap();
    assert!(partial < frames * 16 * 3 / 2, "partial states take {partial} B for {frames} frames: not compact");
}
