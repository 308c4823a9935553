//! Aggregate calls whose argument has a type the function does not take,
//! explained in the job's terms.
//!
//! DataFusion finds `SUM(s)` of a STRING `s` only while building the
//! aggregate's schema, and reports it as its own internal error ("please
//! file a bug report") naming neither the call nor the column. When planning
//! fails that way, [`explain`] looks at the query again: for each `SELECT`
//! it plans the `FROM` alone to learn the columns' types, and checks every
//! aggregate call over plain columns against the function's signature, so
//! the message says which call, which column and which type.

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::DFSchema;
use datafusion::logical_expr::planner::ContextProvider;
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Query, Select, SelectItem,
    SetExpr, TableFactor, visit_expressions,
};
use datafusion::sql::sqlparser::tokenizer::Location;

use super::catalog::Catalog;
use super::insert_types::sql_type_name;

/// Why planning `query` failed, when an aggregate call over plain columns
/// is given a type it does not take: where the call is (when known) and
/// what is wrong.
pub fn explain(catalog: &Catalog, query: &Query) -> Option<(Option<Location>, String)> {
    let mut found = None;
    each_select(&query.body, &mut |select| {
        if found.is_none() {
            found = explain_select(catalog, query, select);
        }
    });
    found
}

fn each_select(body: &SetExpr, f: &mut dyn FnMut(&Select)) {
    match body {
        SetExpr::Select(select) => {
            for table in &select.from {
                for factor in
                    std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation))
                {
                    if let TableFactor::Derived { subquery, .. } = factor {
                        each_select(&subquery.body, f);
                    }
                }
            }
            f(select);
        }
        SetExpr::Query(query) => each_select(&query.body, f),
        SetExpr::SetOperation { left, right, .. } => {
            each_select(left, f);
            each_select(right, f);
        }
        _ => {}
    }
}

fn explain_select(
    catalog: &Catalog,
    outer: &Query,
    select: &Select,
) -> Option<(Option<Location>, String)> {
    let input = from_schema(catalog, outer, select)?;
    let mut found = None;
    let mut check = |expr: &SqlExpr| {
        let SqlExpr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let written = function.name.to_string();
        let Some(udaf) = catalog.get_aggregate_meta(&written.to_ascii_lowercase()) else {
            return ControlFlow::Continue(());
        };
        let FunctionArguments::List(list) = &function.args else {
            return ControlFlow::Continue(());
        };
        let mut columns = Vec::new();
        for arg in &list.args {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) = arg else {
                return ControlFlow::Continue(());
            };
            let Some((name, field)) = column_field(&input, arg) else {
                return ControlFlow::Continue(());
            };
            columns.push((name, field));
        }
        if columns.is_empty() {
            return ControlFlow::Continue(());
        }
        let fields: Vec<FieldRef> = columns.iter().map(|(_, f)| FieldRef::clone(f)).collect();
        if fields_with_udf(&fields, udaf.as_ref()).is_ok() {
            return ControlFlow::Continue(());
        }
        let call = written.to_ascii_uppercase();
        let names: Vec<String> = columns.iter().map(|(n, _)| format!("`{n}`")).collect();
        let types: Vec<String> = columns
            .iter()
            .map(|(n, f)| format!("`{n}` is {}", sql_type_name(f.data_type())))
            .collect();
        let takes = match udaf.name() {
            "sum" | "avg" | "stddev" | "stddev_pop" | "var" | "var_pop" | "median" => {
                format!("{call} takes numbers")
            }
            _ => format!("{call} does not take that type"),
        };
        let position = function
            .name
            .0
            .first()
            .and_then(|p| p.as_ident())
            .map(|i| i.span.start)
            .filter(|s| s.line > 0);
        found = Some((
            position,
            format!(
                "{call}({}): {}; {takes}",
                names.join(", "),
                types.join(", ")
            ),
        ));
        ControlFlow::Break(())
    };
    for item in &select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        let _ = visit_expressions(expr, &mut check);
    }
    if let Some(having) = &select.having {
        let _ = visit_expressions(having, &mut check);
    }
    found
}

/// The schema of a `SELECT`'s `FROM` (and `WHERE`), planned alone (with the
/// outer query's `WITH`, which it may read).
fn from_schema(catalog: &Catalog, outer: &Query, select: &Select) -> Option<DFSchema> {
    let mut alone = select.clone();
    alone.projection = vec![SelectItem::Wildcard(Default::default())];
    alone.group_by = datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(vec![], vec![]);
    alone.having = None;
    alone.distinct = None;
    let query = Query {
        with: outer.with.clone(),
        body: Box::new(SetExpr::Select(Box::new(alone))),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    };
    let plan = super::plan_query(catalog, &query).ok()?;
    Some(plan.schema().as_ref().clone())
}

/// The field a plain column reference (`s` or `t.s`) names in `schema`.
fn column_field(schema: &DFSchema, expr: &SqlExpr) -> Option<(String, FieldRef)> {
    let (qualifier, name) = match expr {
        SqlExpr::Identifier(id) => (None, id.value.clone()),
        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
            (Some(parts[0].value.clone()), parts[1].value.clone())
        }
        SqlExpr::Nested(inner) => return column_field(schema, inner),
        _ => return None,
    };
    let field = match &qualifier {
        Some(q) => {
            schema
                .qualified_field_with_name(Some(&q.as_str().into()), &name)
                .ok()?
                .1
        }
        None => schema.field_with_unqualified_name(&name).ok()?,
    };
    Some((name, FieldRef::clone(field)))
}

#[cfg(test)]
mod tests {
    use crate::sql::{Mode, compile, parse_job};

    fn plan_error(query: &str) -> String {
        let job = format!(
            "CREATE TABLE t (k BIGINT, s STRING, b BOOLEAN) WITH ('connector' = 'blackhole');\n\
             CREATE TABLE o (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');\n{query}"
        );
        let job = parse_job("job.sql", &job, &|_| None).expect("parses");
        match compile(&job, Mode::Batch, &[]) {
            Ok(_) => panic!("planned: {query}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_aggregate_of_a_type_it_does_not_take_names_call_and_column() {
        assert_eq!(
            plan_error("INSERT INTO o SELECT k, SUM(s) FROM t GROUP BY k;"),
            "job.sql:3:25: SUM(`s`): `s` is STRING; SUM takes numbers"
        );
        assert_eq!(
            plan_error("INSERT INTO o SELECT k, CAST(AVG(t.s) AS BIGINT) FROM t GROUP BY k;"),
            "job.sql:3:30: AVG(`s`): `s` is STRING; AVG takes numbers"
        );
        // Inside a subquery.
        let message = plan_error(
            "INSERT INTO o SELECT k, n FROM (SELECT k, SUM(b) AS n FROM t GROUP BY k) AS x;",
        );
        assert!(
            message.ends_with("SUM(`b`): `b` is BOOLEAN; SUM takes numbers"),
            "{message}"
        );
    }
}
