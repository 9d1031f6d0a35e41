//! Named UDF arguments with gaps: `udf_com(tile, r => 8)` leaves `cy` and `cx` out.
//!
//! DataFusion resolves named arguments to positions but requires every parameter before the last
//! one given; this pass fills the gaps of Tessera UDF calls with `NULL` (= the parameter's default)
//! before the statement is planned. [`Context::sql`](crate::Context::sql) applies it; plain
//! `SessionContext`s accept named arguments without gaps.

use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, visit_expressions_mut,
};
use std::ops::ControlFlow;

/// Rewrites the calls in `statement` of functions for which `params(name)` gives parameter names.
pub fn fill_gaps(statement: &mut Statement, params: &dyn Fn(&str) -> Option<Vec<String>>) {
    match statement {
        Statement::Statement(s) => visit(s.as_mut(), params),
        Statement::CopyTo(c) => {
            if let CopyToSource::Query(q) = &mut c.source {
                visit(q.as_mut(), params)
            }
        }
        Statement::Explain(e) => fill_gaps(e.statement.as_mut(), params),
        _ => {}
    }
}

fn visit<V: datafusion::sql::sqlparser::ast::VisitMut>(node: &mut V, params: &dyn Fn(&str) -> Option<Vec<String>>) {
    let _ = visit_expressions_mut(node, |expr: &mut Expr| {
        if let Expr::Function(f) = expr
            && let Some(name) = f.name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase())
            && let Some(names) = params(&name)
            && let FunctionArguments::List(list) = &mut f.args
        {
            fill(&mut list.args, &names);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Positional arguments, then every parameter up to the last named one, NULL where not given.
fn fill(args: &mut Vec<FunctionArg>, names: &[String]) {
    let positional = args.iter().take_while(|a| matches!(a, FunctionArg::Unnamed(_))).count();
    let mut named: Vec<(usize, FunctionArgExpr)> = Vec::new();
    for a in &args[positional..] {
        let FunctionArg::Named { name, arg, .. } = a else { return };
        // unknown or repeated names: leave the call to DataFusion, which reports them
        let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(&name.value)) else { return };
        if i < positional || named.iter().any(|(j, _)| *j == i) {
            return;
        }
        named.push((i, arg.clone()));
    }
    let Some(last) = named.iter().map(|(i, _)| *i).max() else { return };
    let mut out: Vec<FunctionArg> = args[..positional].to_vec();
    for i in positional..=last {
        let arg = match named.iter().find(|(j, _)| *j == i) {
            Some((_, a)) => a.clone(),
            None => FunctionArgExpr::Expr(Expr::Value(Value::Null.with_empty_span())),
        };
        out.push(FunctionArg::Unnamed(arg));
    }
    *args = out;
}
