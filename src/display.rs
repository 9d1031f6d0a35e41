//! Readable summaries of query results: tensors as shape, dtype and statistics, not walls of numbers.

use crate::tensor::tensor_shape;
use crate::udf::ResultBuffer;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::fmt::Write;

/// A name made safe for a file name: characters other than letters, digits, `-` and `_` become `_`.
pub fn sanitize(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    s.trim_matches('_').to_string()
}

/// Rows shown at most.
const MAX_ROWS: usize = 20;

/// Summary statistics of a tensor's values (NaN ignored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Number of values.
    pub count: usize,
    /// Number of NaN values.
    pub nan: usize,
    /// Smallest finite value.
    pub min: f64,
    /// Largest finite value.
    pub max: f64,
    /// Mean of the non-NaN values.
    pub mean: f64,
    /// Sum of the non-NaN values.
    pub sum: f64,
}

/// Statistics of a result buffer.
pub fn stats(buf: &ResultBuffer) -> Stats {
    let v = buf.to_f64();
    let mut s = Stats { count: v.len(), nan: 0, min: f64::INFINITY, max: f64::NEG_INFINITY, mean: f64::NAN, sum: 0.0 };
    for &x in v.iter() {
        if x.is_nan() {
            s.nan += 1;
            continue;
        }
        s.sum += x;
        s.min = s.min.min(x);
        s.max = s.max.max(x);
    }
    if s.count > s.nan {
        s.mean = s.sum / (s.count - s.nan) as f64;
    }
    s
}

fn fmt_num(x: f64) -> String {
    if x.is_nan() || x.is_infinite() {
        return "-".into();
    }
    if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) { format!("{x:.4e}") } else { format!("{x:.4}") }
}

/// One line for a tensor: `tensor<float32>[16, 16] min=.. max=.. mean=.. sum=..`.
fn tensor_line(field: &Field, column: &dyn Array, row: usize) -> String {
    match ResultBuffer::from_tensor(field, column, row) {
        Ok(buf) => {
            let s = stats(&buf);
            let mut line = format!(
                "tensor<{}>{:?} min={} max={} mean={} sum={}",
                buf.dtype(),
                buf.shape(),
                fmt_num(s.min),
                fmt_num(s.max),
                fmt_num(s.mean),
                fmt_num(s.sum)
            );
            if s.nan > 0 {
                let _ = write!(line, " NaN={}", s.nan);
            }
            line
        }
        Err(e) => format!("<{e}>"),
    }
}

fn is_simple(dt: &DataType) -> bool {
    !matches!(dt, DataType::Struct(_) | DataType::FixedSizeList(..) | DataType::List(_) | DataType::LargeList(_))
}

/// Formats result batches for a terminal.
pub fn summarize(batches: &[RecordBatch]) -> String {
    let Some(first) = batches.first() else { return "(no rows)\n".into() };
    let schema = first.schema();
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    if schema.fields().iter().all(|f| is_simple(f.data_type())) {
        let mut shown = Vec::new();
        let mut n = 0;
        for b in batches {
            if n >= MAX_ROWS * 5 {
                break;
            }
            let k = b.num_rows().min(MAX_ROWS * 5 - n);
            shown.push(b.slice(0, k));
            n += k;
        }
        let mut out = arrow::util::pretty::pretty_format_batches(&shown).map(|t| t.to_string()).unwrap_or_default();
        let _ = writeln!(out);
        if total > n {
            let _ = writeln!(out, "... {total} rows in all ({n} shown)");
        }
        return out;
    }
    let mut out = String::new();
    let opts = FormatOptions::default();
    let mut shown = 0;
    'outer: for b in batches {
        for row in 0..b.num_rows() {
            if shown == MAX_ROWS {
                break 'outer;
            }
            shown += 1;
            let _ = writeln!(out, "row {}:", shown - 1);
            for (field, column) in schema.fields().iter().zip(b.columns()) {
                if let Some(s) = column.as_struct_opt() {
                    let _ = writeln!(out, "  {}:", field.name());
                    for (f, c) in s.fields().iter().zip(s.columns()) {
                        let _ = writeln!(out, "    {:<12} {}", f.name(), tensor_line(f, c.as_ref(), row));
                    }
                } else if tensor_shape(field).is_some() {
                    let _ = writeln!(out, "  {:<14} {}", field.name(), tensor_line(field, column.as_ref(), row));
                } else {
                    let text = ArrayFormatter::try_new(column.as_ref(), &opts)
                        .map(|f| f.value(row).to_string())
                        .unwrap_or_else(|e| format!("<{e}>"));
                    let _ = writeln!(out, "  {:<14} {}", field.name(), text);
                }
            }
        }
    }
    if total > shown {
        let _ = writeln!(out, "... {total} rows in all ({shown} shown)");
    }
    out
}
