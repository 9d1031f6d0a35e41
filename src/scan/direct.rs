//! Direct planning of the engine's commonest query: Tessera UDFs over one dataset table, with or
//! without a ROI (`SELECT udf_sum(tile), udf_com(tile, r => 8) AS c FROM scan WHERE nav_y < 64`).
//!
//! DataFusion's general planner runs about 35 logical rules over such a plan (twice: until a pass
//! changes nothing) and about 20 physical ones. Two logical rules change it (the ROI moves into the
//! scan, the scan keeps only the columns used) and one physical rule (the partitions' partial
//! results are merged before the final aggregate). Right after a scan, with the planner's code and
//! data evicted from the caches, those passes cost a large part of a query's fixed cost.
//!
//! [`plan`] analyzes the logical plan as DataFusion does (type coercion, Tessera's rewrites), runs
//! the two logical rules that matter, and builds the physical plan that the general planner would
//! build: `AggregateExec(Final) ← CoalescePartitionsExec ← AggregateExec(Partial) ← TileScanExec`
//! (one `AggregateExec(Single)` for one partition), under a projection where the query renames its
//! results. Any other plan is left to the general planner. The tests compare both planners' plans.

use super::TileTable;
use crate::udf::UdfAggregate;
use datafusion::common::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, TableScan};
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::push_down_filter::PushDownFilter;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use std::sync::{Arc, LazyLock};

/// The physical plan of `plan` (a query's logical plan, as the SQL planner makes it), where it is
/// Tessera UDFs over one dataset table; `None` for every other plan.
pub(crate) async fn plan(state: &SessionState, plan: &LogicalPlan) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if !candidate(plan) {
        return Ok(None);
    }
    let analyzed = state.analyzer().execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    static RULES: LazyLock<Optimizer> = LazyLock::new(|| {
        let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> =
            vec![Arc::new(PushDownFilter::new()), Arc::new(OptimizeProjections::new())];
        Optimizer::with_rules(rules)
    });
    let optimized = RULES.optimize(analyzed, state, |_, _| {})?;
    let Some((projection, aggregate, scan, table)) = shape(&optimized) else { return Ok(None) };

    // the provider sees its columns unqualified, whatever the query called the table
    let roi: Vec<Expr> = unnormalize_cols(scan.filters.iter().cloned());
    let input = datafusion::catalog::TableProvider::scan(table, state, scan.projection.as_ref(), &roi, None).await?;
    let (logical_schema, physical_schema) = (aggregate.input.schema(), input.schema());
    let aggregates = aggregate
        .aggr_expr
        .iter()
        .map(|e| {
            let planning = PhysicalPlanningContext::default();
            let lowered =
                LoweredAggregateBuilder::new(e, logical_schema, &physical_schema, state.execution_props(), &planning);
            Ok(lowered.build()?.aggregate)
        })
        .collect::<Result<Vec<_>>>()?;
    // the calls' FILTER clauses: none (see `shape`)
    let no_filters = vec![None; aggregates.len()];
    let single = input.properties().output_partitioning().partition_count() == 1;
    let mode = if single { AggregateMode::Single } else { AggregateMode::Partial };
    let groups = PhysicalGroupBy::default();
    let first = Arc::new(AggregateExec::try_new(
        mode,
        groups.clone(),
        aggregates,
        no_filters.clone(),
        input,
        physical_schema.clone(),
    )?);
    let mut out: Arc<dyn ExecutionPlan> = first.clone();
    if !single {
        let merged = Arc::new(CoalescePartitionsExec::new(out));
        out = Arc::new(AggregateExec::try_new(
            AggregateMode::Final,
            groups.as_final(),
            // the partial aggregate's expressions, as the general planner passes them on
            first.aggr_expr().to_vec(),
            no_filters,
            merged,
            physical_schema,
        )?);
    }
    if let Some(p) = projection {
        out = project(p, out)?;
    }
    Ok(Some(out))
}

/// Whether the unanalyzed plan may be one [`plan`] builds: `[Projection] → Aggregate without GROUP
/// BY → [Filter] → TableScan` of a [`TileTable`]. A cheap test, so that other queries pay nothing.
fn candidate(plan: &LogicalPlan) -> bool {
    let LogicalPlan::Aggregate(a) = under_projection(plan).1 else { return false };
    let node = match a.input.as_ref() {
        LogicalPlan::Filter(f) => f.input.as_ref(),
        other => other,
    };
    a.group_expr.is_empty() && matches!(node, LogicalPlan::TableScan(s) if tile_table(s).is_some())
}

/// The pieces of an optimized plan that [`plan`] builds: `[Projection of columns] → Aggregate of
/// Tessera UDF calls (no GROUP BY, DISTINCT, FILTER or ORDER BY) → TableScan` of a [`TileTable`]
/// whose filters were all pushed into it (no filter left above the scan) and without a limit.
fn shape(plan: &LogicalPlan) -> Option<(Option<Renames<'_>>, &Aggregate, &TableScan, &TileTable)> {
    let (projection, node) = under_projection(plan);
    let LogicalPlan::Aggregate(aggregate) = node else { return None };
    let LogicalPlan::TableScan(scan) = aggregate.input.as_ref() else { return None };
    let table = tile_table(scan)?;
    let plain_udf = |e: &Expr| {
        let call = if let Expr::Alias(a) = e { a.expr.as_ref() } else { e };
        match call {
            Expr::AggregateFunction(f) => {
                let p = &f.params;
                UdfAggregate::is_tessera(&f.func) && !p.distinct && p.filter.is_none() && p.order_by.is_empty()
            }
            _ => false,
        }
    };
    let renames = match projection {
        Some(p) => Some(Renames {
            projection: p,
            columns: p
                .expr
                .iter()
                .map(|e| match e {
                    Expr::Column(c) => Some((c, None)),
                    Expr::Alias(a) => match a.expr.as_ref() {
                        Expr::Column(c) => Some((c, Some(a.name.as_str()))),
                        _ => None,
                    },
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
        }),
        None => None,
    };
    let fits = aggregate.group_expr.is_empty()
        && !aggregate.aggr_expr.is_empty()
        && aggregate.aggr_expr.iter().all(plain_udf)
        && scan.fetch.is_none();
    fits.then_some((renames, aggregate, scan, table))
}

/// The plan's top projection, if it has one, and the node under it.
fn under_projection(plan: &LogicalPlan) -> (Option<&Projection>, &LogicalPlan) {
    match plan {
        LogicalPlan::Projection(p) => (Some(p), p.input.as_ref()),
        other => (None, other),
    }
}

/// A projection of the aggregate's result columns, each renamed (`AS name`) or not.
struct Renames<'a> {
    projection: &'a Projection,
    columns: Vec<(&'a datafusion::common::Column, Option<&'a str>)>,
}

/// The scan's table, where it is a dataset table.
fn tile_table(scan: &TableScan) -> Option<&TileTable> {
    let source = scan.source.as_ref().downcast_ref::<datafusion::datasource::DefaultTableSource>()?;
    source.table_provider.as_ref().downcast_ref::<TileTable>()
}

/// The renamed columns over `input`, as the general planner builds them: a column keeps its
/// physical name, an alias names its column.
fn project(r: Renames<'_>, input: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let exprs = r
        .columns
        .iter()
        .map(|&(column, alias)| {
            let index = r.projection.input.schema().index_of_column(column)?;
            let name = schema.field(index).name().clone();
            let alias = alias.map_or_else(|| name.clone(), str::to_string);
            Ok(ProjectionExpr { expr: Arc::new(Column::new(&name, index)), alias })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(ProjectionExec::try_new_with_schema_metadata(exprs, input, r.projection.schema.as_arrow())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Context;
    use datafusion::execution::FunctionRegistry;
    use datafusion::logical_expr::{col, lit};
    use datafusion::physical_plan::{collect, displayable};

    /// A context with the dataset `spec` as table `scan`.
    fn context(spec: &str) -> Context {
        let ctx = Context::new().unwrap();
        ctx.register_spec("scan", crate::dataset::DatasetSpec::parse(spec).unwrap()).unwrap();
        ctx
    }

    /// Both planners' plans of `query`: the direct one (`None` where it declines) and the general one.
    async fn plans(
        ctx: &Context,
        query: &str,
    ) -> (Option<Arc<dyn ExecutionPlan>>, Arc<dyn ExecutionPlan>, SessionState) {
        let (state, logical) = ctx.sql(query).await.unwrap().into_parts();
        let direct = plan(&state, &logical).await.unwrap();
        let general = state.create_physical_plan(&logical).await.unwrap();
        (direct, general, state)
    }

    /// Each node of a plan, depth first: its name, partitions and output schema; the scan also with
    /// what it reads. (The expressions as displayed may differ: DataFusion's planner simplifies
    /// `BETWEEN` and evaluates `masks(...)` into a literal; the schemas and the frames read may not.)
    fn nodes(plan: &Arc<dyn ExecutionPlan>) -> Vec<(String, arrow::datatypes::SchemaRef)> {
        let mut text =
            format!("{} partitions={}", plan.name(), plan.properties().output_partitioning().partition_count());
        if plan.children().is_empty() {
            let line = displayable(plan.as_ref()).one_line().to_string();
            text = match (line.find("roi=["), line.find("] (")) {
                (Some(a), Some(b)) => format!("{}{}", &line[..a], &line[b..]),
                _ => line,
            };
        }
        let mut out = vec![(text, plan.schema())];
        out.extend(plan.children().into_iter().flat_map(nodes));
        out
    }

    #[tokio::test]
    async fn the_same_plan_as_datafusions_planner() {
        let ctx = context("synthetic,nav=8x9,sig=8x8,dtype=uint16");
        let direct = [
            "SELECT udf_sum(tile) FROM scan",
            "SELECT udf_sum(tile) AS total, udf_sum_sig(tile) FROM scan WHERE nav_y BETWEEN 1 AND 5 AND nav_x < 6",
            "SELECT udf_apply_masks(tile, masks('disk(4, 4, 2)', 'ring(4, 4, 1, 3)')) AS m FROM scan \
             WHERE nav_index IN (1, 5, 9, 70)",
            "SELECT udf_com(tile, r => 3), udf_stddev(tile) FROM scan WHERE nav_y > 2 OR nav_x = 1",
            "SELECT udf_sum_sig(tile) FROM scan WHERE nav_y > 100",
        ];
        let general = [
            "SELECT count(*) FROM scan",
            "SELECT udf_sum(tile), count(*) FROM scan",
            "SELECT udf_sum(tile)['intensity'] FROM scan",
            "SELECT nav_y, udf_sum_sig(tile) FROM scan GROUP BY nav_y",
            "SELECT udf_sum(tile) FROM (SELECT * FROM scan LIMIT 5)",
            "SELECT udf_sum(tile) FROM scan WHERE random() < 2.0",
            "EXPLAIN SELECT udf_sum(tile) FROM scan",
        ];
        for partitions in [1, 3] {
            ctx.sql(&format!("SET datafusion.execution.target_partitions = {partitions}")).await.unwrap();
            // both plans must read the same frames into the same partitions, to compare results bit for bit
            ctx.sql("SET datafusion.execution.enable_file_stream_work_stealing = false").await.unwrap();
            for query in direct {
                let (d, g, state) = plans(&ctx, query).await;
                let d = d.unwrap_or_else(|| panic!("planned directly: {query}"));
                let (d_nodes, g_nodes) = (nodes(&d), nodes(&g));
                assert_eq!(d_nodes, g_nodes, "{query}, {partitions} partitions");
                assert_eq!(d.schema(), g.schema(), "{query}");
                let task = Arc::new(datafusion::execution::TaskContext::from(&state));
                let (a, b) = (collect(d, task.clone()).await.unwrap(), collect(g, task).await.unwrap());
                assert_eq!(a, b, "{query}");
            }
            for query in general {
                assert!(plans(&ctx, query).await.0.is_none(), "left to DataFusion: {query}");
            }
            // the typed API's plan (`Context::run_udf`): an aliased call, a ROI as a mask
            ctx.register_mask("corner", crate::geometry::Roi::from_bools((0..72).map(|i| i % 9 < 3)));
            let udf = crate::udf::aggregate(crate::udf::builtin::SumSig);
            let roi = ctx.session().udf("roi_mask").unwrap().call(vec![lit("corner"), col("nav_index")]);
            let df = ctx.session().table("scan").await.unwrap().filter(roi).unwrap();
            let df = df.aggregate(vec![], vec![udf.call(vec![col("tile"), col("nav_index")]).alias("result")]).unwrap();
            let (state, logical) = df.into_parts();
            let direct = plan(&state, &logical).await.unwrap().expect("planned directly");
            assert_eq!(nodes(&direct), nodes(&state.create_physical_plan(&logical).await.unwrap()));
        }
    }

    #[tokio::test]
    async fn errors_as_from_datafusions_planner() {
        let ctx = context("synthetic,nav=4x4,sig=8x8,dtype=uint16");
        for (query, error) in [
            ("SELECT udf_com(tile, r => nav_y) FROM scan", "udf_com: parameter r must be a constant"),
            ("SELECT udf_sum(tile) FROM scan WHERE nav_y < 'abc'", "Cannot cast string 'abc' to value of Int64 type"),
        ] {
            let (state, logical) = ctx.sql(query).await.unwrap().into_parts();
            let direct = plan(&state, &logical).await.map(|_| ()).unwrap_err().to_string();
            let general = state.create_physical_plan(&logical).await.map(|_| ()).unwrap_err().to_string();
            assert!(direct.contains(error) && general.contains(error), "{query}: {direct} / {general}");
        }
    }
}
