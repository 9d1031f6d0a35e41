//! Adds the frames' `nav_index` as the hidden second argument of Tessera UDF calls.
//!
//! Users write `udf_sum_sig(tile)`; nav-shaped results need to know which frame each row is, so the
//! analyzer turns the call into `udf_sum_sig(tile, nav_index)` — the `nav_index` column of the same
//! table as the last argument, after any parameters. The displayed name leaves it out.

use super::UdfAggregate;
use super::adapter::is_nav_index;
use crate::tensor::tile_geometry;
use datafusion::common::ExprSchema;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, Result};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{AggregateUDF, Expr, ExprSchemable};
use std::sync::Arc;

/// Field metadata key under which a UDF call's literal parameter carries its value (as text), so that
/// the aggregate's `return_field` — which sees argument fields, not values — can use it.
pub const LITERAL_KEY: &str = "tessera.literal";

/// SQL planning hook: marks the literal parameters of Tessera UDF calls with their value in the
/// literal's field metadata ([`LITERAL_KEY`]). Parameters that shape the result (the number of radial
/// bins) are then known when the result type is planned, and bad values fail at planning.
#[derive(Debug, Default)]
pub struct LiteralParamPlanner;

impl datafusion::logical_expr::planner::ExprPlanner for LiteralParamPlanner {
    fn plan_aggregate(
        &self,
        mut expr: datafusion::logical_expr::planner::RawAggregateExpr,
    ) -> Result<datafusion::logical_expr::planner::PlannerResult<datafusion::logical_expr::planner::RawAggregateExpr>>
    {
        use datafusion::logical_expr::planner::PlannerResult;
        if UdfAggregate::is_tessera(&expr.func) {
            for arg in expr.args.iter_mut().skip(1) {
                if let Expr::Literal(v, None) = arg
                    && !v.is_null()
                {
                    let md = std::collections::BTreeMap::from([(LITERAL_KEY.to_string(), v.to_string())]);
                    *arg = Expr::Literal(v.clone(), Some(md.into()));
                }
            }
        }
        Ok(PlannerResult::Original(expr))
    }
}

/// The analyzer rewrite that adds `nav_index` to Tessera UDF calls.
#[derive(Debug, Default)]
pub struct NavIndexRewrite;

impl FunctionRewrite for NavIndexRewrite {
    fn name(&self) -> &str {
        "tessera_nav_index"
    }
    fn rewrite(&self, expr: Expr, schema: &DFSchema, _config: &ConfigOptions) -> Result<Transformed<Expr>> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = &expr else {
            return Ok(Transformed::no(expr));
        };
        let inner: &dyn std::any::Any = func.inner().as_ref();
        let Some(agg) = inner.downcast_ref::<UdfAggregate>() else {
            return Ok(Transformed::no(expr));
        };
        UdfAggregate::validate_call(func, &params.args, schema)?;
        let has_nav = params.args.last().is_some_and(is_nav_index);
        let tile_nav = match params.args.first() {
            Some(Expr::Column(tile)) if !has_nav => nav_index_beside(tile, schema),
            _ => None,
        };
        if agg.planned().is_some() && tile_nav.is_none() {
            return Ok(Transformed::no(expr));
        }
        let mut params = params.clone();
        // the call's parameter metadata travels with its aggregate (see UdfAggregate::with_planned)
        let func = match agg.planned() {
            Some(_) => func.clone(),
            None => {
                let planned = params.args[1..params.args.len() - usize::from(has_nav)]
                    .iter()
                    .map(|a| a.to_field(schema).map(|(_, f)| f.metadata().clone()))
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(AggregateUDF::from(agg.with_planned(planned)))
            }
        };
        if let Some(nav) = tile_nav {
            params.args.push(Expr::Column(nav));
        }
        Ok(Transformed::yes(Expr::AggregateFunction(AggregateFunction { func, params })))
    }
}

/// The `nav_index` column of the table a tile column comes from, if the tile is a Tessera tile.
fn nav_index_beside(tile: &Column, schema: &DFSchema) -> Option<Column> {
    let field = schema.field_from_column(tile).ok()?;
    tile_geometry(field)?;
    let candidate = Column::new(tile.relation.clone(), "nav_index");
    if schema.has_column(&candidate) {
        return Some(candidate);
    }
    let (q, f) = schema.qualified_field_with_unqualified_name("nav_index").ok()?;
    Some(Column::new(q.cloned(), f.name()))
}
