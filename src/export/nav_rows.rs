//! `nav_rows('<query>')`: nav-shaped UDF results back to rows, one per frame.
//!
//! ```sql
//! -- threshold the bright-field image, then sum the frames where it is high
//! CREATE TABLE bf AS SELECT * FROM nav_rows('SELECT udf_sum_sig(tile) FROM scan');
//! SELECT udf_sum(tile) FROM scan WHERE nav_index IN (SELECT nav_index FROM bf WHERE intensity > 1000);
//! ```
//!
//! The query must return one row of UDF result structs. Every nav-shaped tensor field (shape starting
//! with the scan shape) becomes a column — named after the field, or `<column>_<field>` when the
//! query returns several structs — next to `nav_index` and the nav coordinates; a field with extra
//! axes (16 masks) becomes a list column, and `valid` a boolean. The inner query runs when the outer
//! query is planned.

use super::deferred::{DeferredTable, RowsFromResults};
use crate::geometry::{Shape, nav_column_names};
use crate::scan::nav_schema;
use crate::tensor::tensor_shape;
use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, RecordBatch, StructArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, plan_err};
use std::sync::Arc;

/// The `nav_rows` table function.
#[derive(Debug, Default)]
pub struct NavRowsFunction;

/// One output column: which struct column and field it comes from.
#[derive(Debug, Clone)]
struct Source {
    column: usize,
    field: usize,
    extra: usize,
    is_valid: bool,
}

/// Turns the inner query's result row into one row per frame.
#[derive(Debug)]
struct NavRows {
    nav: Shape,
    schema: SchemaRef,
    sources: Vec<Source>,
}

fn nav_prefix(shape: &[usize], nav: &Shape) -> bool {
    shape.len() >= nav.ndim() && shape[..nav.ndim()] == *nav.dims()
}

impl TableFunctionImpl for NavRowsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let (plan, rest) = super::deferred::plan_query_arg("nav_rows", &args)?;
        if !rest.is_empty() {
            return plan_err!(
                "nav_rows takes one argument: a query string, e.g. nav_rows('SELECT udf_sum_sig(tile) FROM scan')"
            );
        }
        let schema = plan.schema().as_arrow().clone();
        let mut nav: Option<Shape> = None;
        let mut out_fields: Vec<FieldRef> = Vec::new();
        let mut sources = Vec::new();
        let structs: Vec<(usize, &Field)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f.data_type(), DataType::Struct(_)))
            .map(|(i, f)| (i, f.as_ref()))
            .collect();
        for &(ci, sf) in &structs {
            let DataType::Struct(fields) = sf.data_type() else { unreachable!() };
            for (fi, f) in fields.iter().enumerate() {
                let Some(shape) = tensor_shape(f) else { continue };
                if f.name() == "valid" {
                    let n = nav.get_or_insert_with(|| Shape::new(shape.clone()));
                    if n.dims() == shape.as_slice() && !out_fields.iter().any(|o| o.name() == "valid") {
                        out_fields.push(Arc::new(Field::new("valid", DataType::Boolean, false)));
                        sources.push(Source { column: ci, field: fi, extra: 1, is_valid: true });
                    }
                }
            }
        }
        let Some(nav) = nav else {
            return plan_err!("nav_rows: the query returns no nav-shaped UDF result (a struct with a 'valid' field)");
        };
        for &(ci, sf) in &structs {
            let DataType::Struct(fields) = sf.data_type() else { unreachable!() };
            for (fi, f) in fields.iter().enumerate() {
                let Some(shape) = tensor_shape(f) else { continue };
                if f.name() == "valid" || !nav_prefix(&shape, &nav) {
                    continue;
                }
                let DataType::FixedSizeList(item, _) = f.data_type() else { continue };
                let extra: usize = shape[nav.ndim()..].iter().product();
                let name = if structs.len() == 1 { f.name().clone() } else { format!("{}_{}", sf.name(), f.name()) };
                let dt = if shape.len() == nav.ndim() {
                    item.data_type().clone()
                } else {
                    DataType::FixedSizeList(Arc::new(Field::new("item", item.data_type().clone(), true)), extra as i32)
                };
                out_fields.push(Arc::new(Field::new(name, dt, true)));
                sources.push(Source { column: ci, field: fi, extra, is_valid: false });
            }
        }
        let mut fields: Vec<FieldRef> = nav_schema(&nav).fields().iter().cloned().collect();
        debug_assert_eq!(fields.len(), 1 + nav_column_names(&nav).len());
        fields.extend(out_fields);
        let schema = Arc::new(Schema::new(fields));
        Ok(Arc::new(DeferredTable::new(plan, schema.clone(), NavRows { nav, schema, sources })))
    }
}

impl RowsFromResults for NavRows {
    fn rows(&self, batches: &[RecordBatch]) -> Result<RecordBatch> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows != 1 {
            return plan_err!("nav_rows: the query must return exactly one row of results, it returned {rows}");
        }
        let batch = batches.iter().find(|b| b.num_rows() == 1).expect("one row");
        let n = self.nav.size();
        let mut columns = crate::scan::nav_columns_of(&self.nav, &[(0, n)]);
        for src in &self.sources {
            let st: &StructArray = batch.column(src.column).as_struct();
            let tensor = st.column(src.field).as_fixed_size_list();
            let values = tensor.value(0);
            let col: ArrayRef = if src.is_valid {
                cast(&values, &DataType::Boolean)?
            } else if src.extra == 1 && self.schema.field(columns.len()).data_type() == values.data_type() {
                values
            } else {
                let item = Arc::new(Field::new("item", values.data_type().clone(), true));
                Arc::new(FixedSizeListArray::try_new(item, src.extra as i32, values, None)?)
            };
            columns.push(col);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
