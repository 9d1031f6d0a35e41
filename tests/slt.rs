//! Runs the SQL specification in `sql/*.slt` through sqllogictest.
//!
//! Tables: `demo` (synthetic 32x32 scan of 64x64 uint16 frames), `scan` (synthetic 16x16 of 16x16
//! float32), `line` (a 1-D scan of 10 frames), all with target_partitions = 4. Each file runs twice:
//! through DataFusion's `DataFrame::collect`, and as the CLI runs queries (`Context::start`, which
//! plans Tessera UDFs over one table directly). Set `TESSERA_SLT_COMPLETE=1` to rewrite the expected
//! results from the current output.

use arrow::array::Array;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType};
use tessera::dataset::DatasetSpec;

struct Db {
    ctx: tessera::Context,
    /// Run queries as the CLI does (`Context::start`, whose direct planning takes Tessera UDFs over
    /// one table), instead of through DataFusion's `DataFrame::collect`.
    as_cli: bool,
}

#[derive(Debug)]
struct SltError(String);
impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SltError {}

fn cell(column: &dyn Array, row: usize) -> String {
    if column.is_null(row) {
        return "NULL".into();
    }
    let opts = FormatOptions::default();
    let text = ArrayFormatter::try_new(column, &opts).map(|f| f.value(row).to_string()).unwrap_or_default();
    let text = text.trim_end();
    if text.is_empty() { "(empty)".into() } else { text.to_string() }
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SltError;
    type ColumnType = DefaultColumnType;
    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let batches = if self.as_cli {
            let running = self.ctx.start(sql, None).await.map_err(|e| SltError(e.to_string()))?;
            running.finish().await.map_err(|e| SltError(e.to_string()))?
        } else {
            let df = self.ctx.sql(sql).await.map_err(|e| SltError(e.to_string()))?;
            df.collect().await.map_err(|e| SltError(e.to_string()))?
        };
        let Some(first) = batches.first() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        let ncols = first.num_columns();
        let mut rows = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = (0..ncols).map(|c| cell(b.column(c).as_ref(), r)).collect();
                if cells.iter().any(|c| c.contains('\n')) {
                    // multi-line values (EXPLAIN plans): one output row per line
                    rows.extend(cells.join(" ").lines().map(|l| vec![l.trim_end().to_string()]));
                } else {
                    rows.push(cells);
                }
            }
        }
        Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; ncols], rows })
    }
    async fn shutdown(&mut self) {}
    fn engine_name(&self) -> &str {
        "tessera"
    }
}

async fn make(as_cli: bool) -> Result<Db, SltError> {
    let ctx = crate::common::ctx(4);
    for (name, spec) in [
        ("demo", "synthetic,nav=32x32,sig=64x64,dtype=uint16"),
        ("scan", "synthetic,nav=16x16,sig=16x16,dtype=float32"),
        ("line", "synthetic,nav=10,sig=8x8,dtype=uint8"),
    ] {
        ctx.register_spec(name, DatasetSpec::parse(spec).unwrap()).unwrap();
    }
    let mut mask = tessera::geometry::Roi::none(256);
    for i in [0, 17, 34, 255] {
        mask.set(i, true);
    }
    ctx.register_mask("corners", mask);
    Ok(Db { ctx, as_cli })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_specification() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "slt"));
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let complete = std::env::var("TESSERA_SLT_COMPLETE").is_ok_and(|v| v == "1");
    for file in files {
        if complete {
            let mut runner = sqllogictest::Runner::new(|| make(false));
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap();
            continue;
        }
        // the same specification through DataFusion's planner and through the CLI's path
        for as_cli in [false, true] {
            let mut runner = sqllogictest::Runner::new(move || make(as_cli));
            if let Err(e) = runner.run_file_async(&file).await {
                panic!("{} (as the CLI runs queries: {as_cli}): {e}", file.display());
            }
        }
    }
}
