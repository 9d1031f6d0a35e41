//! Table functions whose rows come from running an inner query (`nav_rows`, `write_files`).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_datafusion_err, plan_err};
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::{ExecutionPlan, collect};
use std::sync::Arc;

/// Makes the table's rows from the inner query's result.
pub(crate) trait RowsFromResults: std::fmt::Debug + Send + Sync {
    fn rows(&self, batches: &[RecordBatch]) -> Result<RecordBatch>;
}

/// A table that runs its inner query when the outer query is planned (in `scan`).
#[derive(Debug)]
pub(crate) struct DeferredTable<R> {
    plan: LogicalPlan,
    schema: SchemaRef,
    rows: R,
}

impl<R: RowsFromResults> DeferredTable<R> {
    pub(crate) fn new(plan: LogicalPlan, schema: SchemaRef, rows: R) -> Self {
        DeferredTable { plan, schema, rows }
    }
}

/// Plans the table function's first argument, a query string; returns the plan and the other
/// arguments.
pub(crate) fn plan_query_arg<'a>(name: &str, args: &'a TableFunctionArgs) -> Result<(LogicalPlan, &'a [Expr])> {
    let query = match args.exprs().first() {
        Some(Expr::Literal(
            ScalarValue::Utf8(Some(q)) | ScalarValue::Utf8View(Some(q)) | ScalarValue::LargeUtf8(Some(q)),
            _,
        )) => q.clone(),
        _ => {
            return plan_err!(
                "{name} takes a query string as its first argument, e.g. {name}('SELECT udf_sum(tile) FROM scan')"
            );
        }
    };
    let state = args
        .session()
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| plan_datafusion_err!("{name} needs a DataFusion SessionState"))?;
    // Planning only resolves tables from the catalog, which is ready at once: no I/O to wait for.
    let plan = futures::executor::block_on(state.create_logical_plan(&query))?;
    Ok((plan, &args.exprs()[1..]))
}

#[async_trait]
impl<R: RowsFromResults + 'static> TableProvider for DeferredTable<R> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let physical = state.create_physical_plan(&self.plan).await?;
        let batches = collect(physical, state.task_ctx()).await?;
        let out = self.rows.rows(&batches)?;
        MemTable::try_new(self.schema.clone(), vec![vec![out]])?.scan(state, projection, filters, limit).await
    }
}
