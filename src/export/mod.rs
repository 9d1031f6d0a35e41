//! Export of results. Parquet goes through DataFusion's `COPY ... TO`, which keeps the tensor
//! metadata (Arrow schema in the file); [`Context::sql`](crate::Context::sql) adds provenance.
//! [`write_results`] writes .npy files and PNG images; `nav_rows` turns results back into rows.

mod deferred;
mod files;
mod nav_rows;

pub use files::{FileFormats, WriteFilesFunction, viridis, write_npy, write_png, write_results};
pub use nav_rows::NavRowsFunction;

use crate::dataset::DatasetSpec;
use datafusion::sql::parser::CopyToStatement;
use datafusion::sql::sqlparser::ast::Value;
use std::collections::BTreeMap;

/// Key-value metadata keys written into exported Parquet files.
pub mod keys {
    /// Tessera's version.
    pub const VERSION: &str = "tessera.version";
    /// The SQL statement that made the file.
    pub const QUERY: &str = "tessera.query";
    /// JSON object: table name → dataset spec.
    pub const DATASETS: &str = "tessera.datasets";
}

/// Whether a COPY statement writes Parquet.
fn is_parquet(copy: &CopyToStatement) -> bool {
    match &copy.stored_as {
        Some(s) => s.eq_ignore_ascii_case("parquet"),
        None => copy.target.to_ascii_lowercase().ends_with(".parquet"),
    }
}

/// The COPY options that record provenance (empty for non-Parquet targets or when the user set
/// these keys already).
pub fn provenance_options(
    copy: &CopyToStatement,
    query: &str,
    datasets: &BTreeMap<&String, &DatasetSpec>,
) -> Vec<(String, Value)> {
    if !is_parquet(copy) {
        return Vec::new();
    }
    let datasets = serde_json::to_string(datasets).unwrap_or_default();
    [
        (keys::VERSION, env!("CARGO_PKG_VERSION").to_string()),
        (keys::QUERY, query.to_string()),
        (keys::DATASETS, datasets),
    ]
    .into_iter()
    .map(|(k, v)| (format!("format.metadata::{k}"), Value::SingleQuotedString(v)))
    .filter(|(k, _)| !copy.options.iter().any(|(o, _)| o == k))
    .collect()
}
