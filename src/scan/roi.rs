//! Turning nav-only WHERE predicates into a [`Roi`] bitmask, and the `roi_mask` SQL function.

use crate::error::Error;
use crate::geometry::{Roi, Shape, nav_column_names};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result, exec_err, plan_err};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Schema of the nav columns: `nav_index` and one column per nav axis, all Int64.
pub fn nav_schema(nav: &Shape) -> SchemaRef {
    let mut fields = vec![Field::new("nav_index", DataType::Int64, false)];
    fields.extend(nav_column_names(nav).into_iter().map(|n| Field::new(n, DataType::Int64, false)));
    Arc::new(Schema::new(fields))
}

/// The nav columns of the frames in `runs`, in order.
pub fn nav_columns(nav: &Shape, runs: &[(usize, usize)]) -> Vec<ArrayRef> {
    let (dims, strides) = (nav.dims(), nav.strides());
    let n: usize = runs.iter().map(|r| r.1).sum();
    let mut index = Vec::with_capacity(n);
    let mut coords: Vec<Vec<i64>> = dims.iter().map(|_| Vec::with_capacity(n)).collect();
    for &(start, count) in runs {
        index.extend((start as i64)..((start + count) as i64));
        // the run's first coordinates, then a counter with carries: no division per frame (the
        // divisions were a third of a small query's time, for the WHERE of a 128×128 scan)
        let mut at: Vec<usize> = strides.iter().zip(dims).map(|(&stride, &d)| start / stride % d).collect();
        for _ in 0..count {
            for (col, &a) in coords.iter_mut().zip(&at) {
                col.push(a as i64);
            }
            for (a, &d) in at.iter_mut().zip(dims).rev() {
                *a += 1;
                if *a < d {
                    break;
                }
                *a = 0;
            }
        }
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(index))];
    cols.extend(coords.into_iter().map(|c| Arc::new(Int64Array::from(c)) as ArrayRef));
    cols
}

/// Whether `expr` references only nav columns (and so is exact to push down).
pub fn is_nav_only(expr: &Expr, nav: &Shape) -> bool {
    let names = nav_column_names(nav);
    let refs = expr.column_refs();
    !refs.is_empty() && refs.iter().all(|c| c.name == "nav_index" || names.contains(&c.name)) && !expr.is_volatile()
}

/// Evaluates the conjunction of `filters` over the nav grid. Frames where the predicate is NULL are
/// not selected (as SQL's WHERE does).
///
/// Conjuncts on a single nav axis (`nav_y BETWEEN 10 AND 20`, `nav_x % 2 = 0`) are evaluated over that
/// axis's coordinates alone, and the frames they select are the product of the axes' selections:
/// for a 128×128 scan, 256 evaluations instead of 16 384 (this was a fifth of the planning time of
/// a ROI query). The other conjuncts (on `nav_index`, or on several axes) are evaluated on the frames
/// the first ones select.
pub fn evaluate_roi(state: &dyn Session, nav: &Shape, filters: &[Expr]) -> Result<Roi> {
    if filters.is_empty() {
        return Ok(Roi::all(nav.size()));
    }
    let names = nav_column_names(nav);
    let mut per_axis: Vec<Vec<Expr>> = vec![Vec::new(); names.len()];
    let mut rest = Vec::new();
    for c in filters.iter().flat_map(split_conjunction) {
        let refs = c.column_refs();
        match names.iter().position(|n| refs.iter().all(|r| &r.name == n)) {
            Some(axis) if !refs.is_empty() => per_axis[axis].push(c.clone()),
            _ => rest.push(c.clone()),
        }
    }
    let schema = nav_schema(nav);
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let mut axes: Vec<Option<Vec<bool>>> = vec![None; names.len()];
    for (axis, conjuncts) in per_axis.into_iter().enumerate() {
        let Some(predicate) = conjunction(conjuncts.iter().cloned()) else { continue };
        match select_on_axis(state, &schema, &df_schema, nav, axis, predicate) {
            Ok(selected) => axes[axis] = Some(selected),
            // e.g. a division by zero at a coordinate that the whole predicate's AND would have
            // skipped: the frame-by-frame evaluation below decides
            Err(_) => rest.extend(conjuncts),
        }
    }
    let mut roi = product(nav, &axes);
    if let Some(predicate) = conjunction(rest) {
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        let candidates = roi.runs();
        roi = Roi::none(nav.size());
        // chunks small enough for the allocator to reuse its memory: a larger one is mapped afresh
        // and page-faulted in by every query
        for chunk in super::exec::chunk_runs(&candidates, 4096) {
            let batch = RecordBatch::try_new(schema.clone(), nav_columns(nav, &chunk))?;
            let selected = selected_rows(&physical.evaluate(&batch)?.into_array(batch.num_rows())?)?;
            let frames = chunk.iter().flat_map(|&(start, count)| start..start + count);
            for (frame, sel) in frames.zip(selected.iter()) {
                if sel {
                    roi.set(frame, true);
                }
            }
        }
    }
    Ok(roi)
}

/// Which coordinates of nav axis `axis` satisfy `predicate`, an expression of that axis's column alone
/// (the other columns of the batch it is evaluated on are zeros).
fn select_on_axis(
    state: &dyn Session,
    schema: &SchemaRef,
    df_schema: &DFSchema,
    nav: &Shape,
    axis: usize,
    predicate: Expr,
) -> Result<Vec<bool>> {
    let d = nav.dims()[axis];
    let columns = (0..schema.fields().len())
        .map(|c| {
            let values: Vec<i64> = if c == axis + 1 { (0..d as i64).collect() } else { vec![0; d] };
            Arc::new(Int64Array::from(values)) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let physical = state.create_physical_expr(predicate, df_schema)?;
    Ok(selected_rows(&physical.evaluate(&batch)?.into_array(d)?)?.iter().collect())
}

/// The rows a WHERE predicate's result selects: true and not NULL.
fn selected_rows(result: &ArrayRef) -> Result<arrow::buffer::BooleanBuffer> {
    let Some(mask) = result.as_boolean_opt() else {
        return plan_err!("the WHERE predicate on nav columns is not boolean: {}", result.data_type());
    };
    Ok(match mask.nulls() {
        Some(nulls) => mask.values() & nulls.inner(),
        None => mask.values().clone(),
    })
}

/// The frames whose coordinate on every axis is selected (`None`: the whole axis).
fn product(nav: &Shape, axes: &[Option<Vec<bool>>]) -> Roi {
    if axes.iter().all(Option::is_none) || nav.size() == 0 {
        return Roi::all(nav.size());
    }
    let selection = |a: &Option<Vec<bool>>, d: usize| match a {
        Some(bools) => Roi::from_bools(bools.iter().copied()),
        None => Roi::all(d),
    };
    let (last, leading) = axes.split_last().expect("a nav grid has at least one axis");
    // runs of the last axis, placed at every selected combination of the leading axes
    let runs = selection(last, nav.dims()[leading.len()]).runs();
    let leading: Vec<Vec<usize>> = leading
        .iter()
        .zip(nav.dims())
        .map(|(a, &d)| selection(a, d).runs().iter().flat_map(|&(s, l)| s..s + l).collect())
        .collect();
    let mut roi = Roi::none(nav.size());
    if leading.iter().any(Vec::is_empty) {
        return roi;
    }
    let strides = nav.strides();
    let mut at = vec![0usize; leading.len()];
    loop {
        let base: usize = at.iter().zip(&leading).zip(&strides).map(|((&k, sel), &s)| sel[k] * s).sum();
        for &(s, l) in &runs {
            roi.select_run(base + s, l);
        }
        // next combination of the leading axes (an odometer)
        let mut axis = leading.len();
        loop {
            if axis == 0 {
                return roi;
            }
            axis -= 1;
            at[axis] += 1;
            if at[axis] < leading[axis].len() {
                break;
            }
            at[axis] = 0;
        }
    }
}

/// Masks registered by name for `roi_mask('name', nav_index)`.
#[derive(Debug, Default, Clone)]
pub struct MaskRegistry {
    masks: Arc<RwLock<HashMap<String, Arc<Roi>>>>,
}

impl MaskRegistry {
    /// Registers (or replaces) a mask.
    pub fn insert(&self, name: &str, mask: Roi) {
        self.masks.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), Arc::new(mask));
    }
    /// A registered mask.
    pub fn get(&self, name: &str) -> Option<Arc<Roi>> {
        self.masks.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }
}

/// `roi_mask('name', nav_index)`: true where the registered boolean mask `name` is set.
///
/// Stable (not Immutable), so that DataFusion does not constant-fold it before the scan sees it.
/// A mask must have one entry per frame of the scan it is used on.
///
/// ```sql
/// SELECT udf_sum(tile) FROM scan WHERE roi_mask('bright', nav_index)
/// ```
#[derive(Debug)]
pub struct RoiMaskFunction {
    signature: Signature,
    masks: MaskRegistry,
}

impl PartialEq for RoiMaskFunction {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.masks.masks, &other.masks.masks)
    }
}
impl Eq for RoiMaskFunction {}
impl std::hash::Hash for RoiMaskFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "roi_mask".hash(state)
    }
}

impl RoiMaskFunction {
    /// The function over `masks`.
    pub fn new(masks: MaskRegistry) -> Self {
        RoiMaskFunction {
            signature: Signature::exact(vec![DataType::Utf8, DataType::Int64], Volatility::Stable),
            masks,
        }
    }
}

impl ScalarUDFImpl for RoiMaskFunction {
    fn name(&self) -> &str {
        "roi_mask"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let names = args.args[0].clone().into_array(n)?;
        let idx = args.args[1].clone().into_array(n)?;
        let names = names.as_string::<i32>();
        let idx = idx.as_primitive::<arrow::datatypes::Int64Type>();
        let mut out = BooleanBuilder::with_capacity(n);
        let mut cache: Option<(String, Arc<Roi>)> = None;
        for i in 0..n {
            if names.is_null(i) || idx.is_null(i) {
                out.append_null();
                continue;
            }
            let name = names.value(i);
            if cache.as_ref().map(|c| c.0.as_str()) != Some(name) {
                let Some(mask) = self.masks.get(name) else {
                    return Err(Error::Spec(format!("roi_mask: no mask named '{name}' is registered")).into());
                };
                cache = Some((name.to_string(), mask));
            }
            let mask = &cache.as_ref().expect("set above").1;
            let k = idx.value(i);
            if k < 0 || k as usize >= mask.len() {
                return exec_err!(
                    "roi_mask('{name}'): nav_index {k} is outside the mask's {} entries; the mask must \
                     have one entry per frame of the scan",
                    mask.len()
                );
            }
            out.append_value(mask.get(k as usize));
        }
        let out: BooleanArray = out.finish();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ROI of `sql` (a WHERE clause) on `nav`, from `evaluate_roi` and frame by frame from the
    /// same predicate evaluated over the whole grid.
    fn both_ways(nav: &Shape, sql: &str) -> (Result<Roi>, Result<Roi>) {
        let state = datafusion::prelude::SessionContext::new().state();
        let schema = nav_schema(nav);
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).unwrap();
        let expr = state.create_logical_expr(sql, &df_schema).unwrap();
        let fast = evaluate_roi(&state, nav, std::slice::from_ref(&expr));
        let slow = (|| {
            let batch = RecordBatch::try_new(schema.clone(), nav_columns(nav, &[(0, nav.size())]))?;
            let physical = state.create_physical_expr(expr.clone(), &df_schema)?;
            let selected = selected_rows(&physical.evaluate(&batch)?.into_array(nav.size())?)?;
            Ok(Roi::from_bools(selected.iter()))
        })();
        (fast, slow)
    }

    #[test]
    fn roi_per_axis_matches_the_predicate_frame_by_frame() {
        let grid = Shape::new(vec![37, 70]);
        let cube = Shape::new(vec![4, 5, 66]);
        let cases = [
            (&grid, "nav_y BETWEEN 10 AND 20"),
            (&grid, "nav_y >= 9 AND nav_y < 30 AND nav_x >= 3 AND nav_x < 67"),
            (&grid, "nav_x % 3 = 0 AND nav_y % 2 = 1"),
            (&grid, "nav_y = 5 AND nav_x = 69"),
            (&grid, "nav_y < 0"),
            (&grid, "nav_y < 20 AND nav_x < nav_y"),
            (&grid, "nav_y < 20 AND nav_index % 7 = 0"),
            (&grid, "nav_y > 3 AND (nav_x < 5 OR nav_y > 30)"),
            (&grid, "nav_y > 3 AND CASE WHEN nav_x > 10 THEN NULL ELSE true END"),
            (&grid, "nav_y < 4 OR nav_x > 60"),
            (&grid, "nav_x IN (1, 2, 64) AND true"),
            (&cube, "nav_0 = 2 AND nav_2 >= 60"),
            (&cube, "nav_1 IN (0, 4) AND nav_2 % 11 = 0 AND nav_0 <> 1"),
            (&cube, "nav_0 + nav_1 = 3 AND nav_2 < 2"),
        ];
        for (nav, sql) in cases {
            let (fast, slow) = both_ways(nav, sql);
            let (fast, slow) = (fast.unwrap(), slow.unwrap());
            assert_eq!(fast, slow, "{sql}");
            assert_eq!(fast.count(), fast.runs().iter().map(|r| r.1).sum::<usize>(), "{sql}");
        }
    }

    #[test]
    fn roi_per_axis_errors_only_where_the_predicate_does() {
        let nav = Shape::new(vec![8, 9]);
        // an error at a coordinate on one axis: whole-grid evaluation decides
        let (fast, slow) = both_ways(&nav, "nav_y > 2 AND 10 / (nav_x - 4) > 0");
        assert_eq!(fast.is_err(), slow.is_err());
        if let (Ok(f), Ok(s)) = (fast, slow) {
            assert_eq!(f, s);
        }
    }

    #[test]
    fn nav_columns_count_the_coordinates_of_each_run() {
        let nav = Shape::new(vec![3, 4, 5]);
        let runs = [(7, 20), (55, 5), (0, 1), (59, 1)];
        let cols = nav_columns(&nav, &runs);
        let frames: Vec<i64> = runs.iter().flat_map(|&(s, c)| (s as i64)..(s + c) as i64).collect();
        assert_eq!(cols[0].as_primitive::<arrow::datatypes::Int64Type>().values().to_vec(), frames);
        for (axis, (&stride, &d)) in nav.strides().iter().zip(nav.dims()).enumerate() {
            let want: Vec<i64> = frames.iter().map(|i| i / stride as i64 % d as i64).collect();
            assert_eq!(cols[axis + 1].as_primitive::<arrow::datatypes::Int64Type>().values().to_vec(), want);
        }
    }
}
