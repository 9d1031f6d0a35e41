//! Results to files: every buffer as `.npy`, 2-D buffers also as PNG images.
//!
//! PNGs use the perceptually uniform *viridis* colormap, scaled from the 0.5th to the 99.5th
//! percentile of the finite values (so that a few hot pixels do not wash the image out); NaN (frames
//! outside the ROI) is drawn transparent.

use crate::dataset::formats::npy;
use crate::display::sanitize;
use crate::error::{Error, Result};
use crate::udf::{ResultBuffer, Results};
use arrow::array::AsArray;
use arrow::record_batch::RecordBatch;
use std::path::{Path, PathBuf};

/// Which files to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileFormats {
    /// One .npy per buffer.
    pub npy: bool,
    /// One .png per 2-D buffer.
    pub png: bool,
}

/// Writes a buffer as .npy (its own dtype, little-endian, C order).
pub fn write_npy(buf: &ResultBuffer, path: &Path) -> Result<()> {
    let bytes = buf.to_le_bytes();
    npy::write_npy(path, buf.dtype(), buf.shape(), &bytes)
}

/// Viridis at 9 evenly spaced stops (matplotlib's values), interpolated linearly.
const VIRIDIS: [[f64; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// The viridis colour of `t` in [0, 1].
pub fn viridis(t: f64) -> [u8; 3] {
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let mut out = [0u8; 3];
    for (k, o) in out.iter_mut().enumerate() {
        *o = (VIRIDIS[i][k] * (1.0 - f) + VIRIDIS[i + 1][k] * f).round() as u8;
    }
    out
}

/// The `q`-quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Writes a 2-D buffer as a PNG image; returns false (and writes nothing) for other shapes.
pub fn write_png(buf: &ResultBuffer, path: &Path) -> Result<bool> {
    let &[h, w] = buf.shape() else { return Ok(false) };
    let values = buf.to_f64();
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_by(f64::total_cmp);
    let (lo, hi) = if finite.is_empty() { (0.0, 1.0) } else { (quantile(&finite, 0.005), quantile(&finite, 0.995)) };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut rgba = Vec::with_capacity(h * w * 4);
    for &v in values.iter() {
        if v.is_finite() {
            let [r, g, b] = viridis((v - lo) / span);
            rgba.extend_from_slice(&[r, g, b, 255]);
        } else {
            rgba.extend_from_slice(&[0, 0, 0, 0]);
        }
    }
    let file = std::fs::File::create(path).map_err(|e| Error::io(path.display(), e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| Error::io(path.display(), std::io::Error::other(e.to_string()));
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(&rgba).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(true)
}

/// Writes every UDF result (struct column) of the first row of `batches` into `dir` as
/// `<column>.<buffer>.npy` / `.png`; returns the files written.
pub fn write_results(batches: &[RecordBatch], dir: &Path, formats: FileFormats) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let mut written = Vec::new();
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else { return Ok(written) };
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let Some(st) = column.as_struct_opt() else { continue };
        let results = Results::from_struct(st, 0)?;
        let mut buffers: Vec<(&String, ResultBuffer)> = results.buffers.iter().map(|(k, v)| (k, v.clone())).collect();
        let valid_name = "valid".to_string();
        if let Some(valid) = &results.valid {
            buffers.push((&valid_name, ResultBuffer::U8(valid.mapv(u8::from))));
        }
        for (name, buf) in buffers {
            let stem = format!("{}.{}", sanitize(field.name()), sanitize(name));
            if formats.npy {
                let p = dir.join(format!("{stem}.npy"));
                write_npy(&buf, &p)?;
                written.push(p);
            }
            if formats.png && name != &valid_name {
                let p = dir.join(format!("{stem}.png"));
                if write_png(&buf, &p)? {
                    written.push(p);
                }
            }
        }
    }
    Ok(written)
}

/// `write_files('<query>', '<folder>' [, 'npy,png'])`: runs the query and writes its UDF results as
/// files (see [`write_results`]); one row per file written, column `path`.
///
/// ```sql
/// SELECT * FROM write_files('SELECT udf_sum(tile) AS s FROM scan', '/tmp/results', 'png')
/// ```
#[derive(Debug, Default)]
pub struct WriteFilesFunction;

#[derive(Debug)]
struct WriteFiles {
    dir: PathBuf,
    formats: FileFormats,
    schema: arrow::datatypes::SchemaRef,
}

impl datafusion::catalog::TableFunctionImpl for WriteFilesFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> datafusion::common::Result<std::sync::Arc<dyn datafusion::catalog::TableProvider>> {
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::Expr;
        let (plan, rest) = super::deferred::plan_query_arg("write_files", &args)?;
        let text = |e: Option<&Expr>| match e {
            Some(Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _)) => Some(s.clone()),
            _ => None,
        };
        let Some(dir) = text(rest.first()) else {
            return datafusion::common::plan_err!(
                "write_files needs a folder: write_files('<query>', '/path/to/folder')"
            );
        };
        let formats = match rest.get(1) {
            None => FileFormats { npy: true, png: true },
            Some(e) => {
                let Some(list) = text(Some(e)) else {
                    return datafusion::common::plan_err!("write_files: the formats are a string such as 'npy,png'");
                };
                let mut f = FileFormats { npy: false, png: false };
                for part in list.split(',').map(str::trim) {
                    match part {
                        "npy" => f.npy = true,
                        "png" => f.png = true,
                        other => {
                            return datafusion::common::plan_err!("write_files: unknown format '{other}' (npy, png)");
                        }
                    }
                }
                f
            }
        };
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "path",
            arrow::datatypes::DataType::Utf8,
            false,
        )]));
        let rows = WriteFiles { dir: PathBuf::from(dir), formats, schema: schema.clone() };
        Ok(std::sync::Arc::new(super::deferred::DeferredTable::new(plan, schema, rows)))
    }
}

impl super::deferred::RowsFromResults for WriteFiles {
    fn rows(&self, batches: &[RecordBatch]) -> datafusion::common::Result<RecordBatch> {
        let files = write_results(batches, &self.dir, self.formats)?;
        let paths = arrow::array::StringArray::from_iter_values(files.iter().map(|p| p.display().to_string()));
        Ok(RecordBatch::try_new(self.schema.clone(), vec![std::sync::Arc::new(paths)])?)
    }
}
