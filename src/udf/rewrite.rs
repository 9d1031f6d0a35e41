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
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;

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
        if !UdfAggregate::is_tessera(func) {
            return Ok(Transformed::no(expr));
        }
        if params.args.last().is_some_and(is_nav_index) {
            UdfAggregate::validate_call(func, &params.args, schema)?;
            return Ok(Transformed::no(expr));
        }
        UdfAggregate::validate_call(func, &params.args, schema)?;
        let Some(Expr::Column(tile)) = params.args.first() else { return Ok(Transformed::no(expr)) };
        let Ok(field) = schema.field_from_column(tile) else { return Ok(Transformed::no(expr)) };
        if tile_geometry(field).is_none() {
            return Ok(Transformed::no(expr));
        }
        let candidate = Column::new(tile.relation.clone(), "nav_index");
        let nav = if schema.has_column(&candidate) {
            candidate
        } else {
            match schema.qualified_field_with_unqualified_name("nav_index") {
                Ok((q, f)) => Column::new(q.cloned(), f.name()),
                Err(_) => return Ok(Transformed::no(expr)),
            }
        };
        let mut params = params.clone();
        params.args.push(Expr::Column(nav));
        Ok(Transformed::yes(Expr::AggregateFunction(AggregateFunction { func: func.clone(), params })))
    }
}
