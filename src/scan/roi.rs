//! Turning nav-only WHERE predicates into a [`Roi`] bitmask, and the `roi_mask` SQL function.

use crate::error::Error;
use crate::geometry::{Roi, Shape, nav_column_names};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result, exec_err, plan_err};
use datafusion::logical_expr::utils::conjunction;
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

/// Evaluates the conjunction of `filters` over the whole nav grid. Frames where the predicate is
/// NULL are not selected (as SQL's WHERE does).
pub fn evaluate_roi(state: &dyn Session, nav: &Shape, filters: &[Expr]) -> Result<Roi> {
    let Some(predicate) = conjunction(filters.iter().cloned()) else {
        return Ok(Roi::all(nav.size()));
    };
    let schema = nav_schema(nav);
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let physical = state.create_physical_expr(predicate, &df_schema)?;
    let total = nav.size();
    let mut roi = Roi::none(total);
    // chunks small enough for the allocator to reuse its memory: a larger one is mapped afresh and
    // page-faulted in by every query
    const CHUNK: usize = 4096;
    let mut start = 0;
    while start < total {
        let len = CHUNK.min(total - start);
        let batch = RecordBatch::try_new(schema.clone(), nav_columns(nav, &[(start, len)]))?;
        let result = physical.evaluate(&batch)?.into_array(len)?;
        let Some(mask) = result.as_boolean_opt() else {
            return plan_err!("the WHERE predicate on nav columns is not boolean: {}", result.data_type());
        };
        // NULL is not selected: the values where valid
        let selected = match mask.nulls() {
            Some(nulls) => mask.values() & nulls.inner(),
            None => mask.values().clone(),
        };
        for i in selected.set_indices() {
            roi.set(start + i, true);
        }
        start += len;
    }
    Ok(roi)
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
