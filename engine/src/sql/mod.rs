//! Job files: parsing (Flink dialect) and planning with DataFusion.
//!
//! [`compile`] turns a [`JobFile`] into a [`CompiledJob`]: the declared tables
//! with their options resolved for the mode, and one optimized DataFusion
//! `LogicalPlan` per `INSERT INTO`. The [`crate::plan`] module then turns
//! those plans into one operator graph.

pub mod aggregate_types;
pub mod catalog;
pub mod flink_avg;
pub mod functions;
pub mod insert_types;
pub mod options;
pub mod parser;
pub mod settings;
pub mod unsupported;
pub mod variables;
pub mod wall_clock;
pub mod window_tvf;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, ScalarUDF, WriteOp};
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::optimizer::optimizer::{Optimizer, OptimizerContext, OptimizerRule};
use datafusion::sql::planner::{PlannerContext, SqlToRel};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Query, SelectItem, SetExpr, Statement};

pub use catalog::{Catalog, TableDef, Watermark};
pub use options::{Mode, Options, WrittenOption};
pub use parser::{JobFile, JobStatement, parse_job};

use crate::error::{Result, SluiceError};

/// A job planned for one mode.
#[derive(Debug)]
pub struct CompiledJob {
    /// From `SET 'pipeline.name'`, else the job file's stem.
    pub name: String,
    pub mode: Mode,
    pub tables: BTreeMap<String, Arc<TableDef>>,
    pub inserts: Vec<PlannedInsert>,
    /// `SET 'key' = 'value'` statements.
    pub settings: BTreeMap<String, String>,
}

/// One `INSERT INTO` statement, planned and optimized.
#[derive(Debug)]
pub struct PlannedInsert {
    pub sink: Arc<TableDef>,
    /// The query, its columns already cast to the sink's (only by the
    /// implicit casts [`insert_types`] allows).
    pub query: LogicalPlan,
    /// `file:line` of the statement.
    pub location: String,
    /// `INSERT OVERWRITE`: the job's output replaces what the sink held.
    pub overwrite: bool,
}

/// Compiles a parsed job for `mode`. `functions` are user-defined scalar
/// functions to add to Flink's and DataFusion's.
pub fn compile(job: &JobFile, mode: Mode, functions: &[Arc<ScalarUDF>]) -> Result<CompiledJob> {
    let mut catalog = Catalog::new(functions, mode);
    let mut tables = BTreeMap::new();
    let mut inserts = Vec::new();
    let mut settings = BTreeMap::new();
    let job_text: Vec<String> = job
        .statements
        .iter()
        .filter_map(|s| match s {
            JobStatement::Insert(i) => Some(i.item.to_string()),
            JobStatement::CreateView(v) => Some(v.item.query.to_string()),
            _ => None,
        })
        .collect();
    for statement in &job.statements {
        match statement {
            JobStatement::CreateTable(t) => {
                let file = &t.file;
                let at = format!("{file}:{}", t.line);
                let table = Arc::new(declare_table(&t.item, mode, &catalog, &at)?);
                catalog
                    .add_table(Arc::clone(&table))
                    .map_err(|e| prefix(&at, e))?;
                tables.insert(table.name.clone(), table);
            }
            JobStatement::CreateView(v) => {
                let file = &v.file;
                let at = format!("{file}:{}", v.line);
                let plan = plan_query(&catalog, &v.item.query).map_err(|e| {
                    explained_planning_error(&catalog, &v.item.query, file, v.line, v.column, e)
                })?;
                catalog
                    .add_view(&v.item.name, plan)
                    .map_err(|e| prefix(&at, e))?;
            }
            JobStatement::Insert(i) => {
                let file = &i.file;
                let at = format!("{file}:{}", i.line);
                let planner = SqlToRel::new_with_options(&catalog, parser_options(&catalog));
                let mut statement = i.item.as_ref().clone();
                if let Statement::Insert(insert) = &mut statement {
                    if let Some(table) = catalog.table(&insert.table.to_string())
                        && let Some((c, _)) = table.computed.first()
                    {
                        return Err(SluiceError::plan(format!(
                            "{at}: table `{}` has a computed column (`{}`), so it can only be read, not written",
                            table.name,
                            table.schema.field(*c).name()
                        )));
                    }
                    if let Some(source) = insert.source.as_mut() {
                        name_nested_fields(source);
                    }
                }
                let source = match &statement {
                    Statement::Insert(insert) => insert.source.clone(),
                    _ => None,
                };
                let plan = planner
                    .sql_statement_to_plan(statement)
                    .map_err(|e| match &source {
                        Some(query) => {
                            explained_planning_error(&catalog, query, file, i.line, i.column, e)
                        }
                        None => planning_error(file, i.line, i.column, e),
                    })?;
                let LogicalPlan::Dml(dml) = plan else {
                    return Err(SluiceError::plan(format!("{at}: expected INSERT INTO")));
                };
                let overwrite = match dml.op {
                    WriteOp::Insert(InsertOp::Append) => false,
                    WriteOp::Insert(InsertOp::Overwrite) if mode == Mode::Stream => {
                        // Flink: "Streaming mode not support overwrite."
                        return Err(SluiceError::plan(format!(
                            "{at}: INSERT OVERWRITE is for batch mode: a stream job never ends, so there is no point at which its output could replace what `{}` holds (Flink refuses it in streaming mode too); write INSERT INTO, or run with --mode batch",
                            dml.table_name
                        )));
                    }
                    WriteOp::Insert(InsertOp::Overwrite) => true,
                    _ => {
                        return Err(SluiceError::plan(format!(
                            "{at}: a job writes with INSERT INTO or INSERT OVERWRITE"
                        )));
                    }
                };
                let sink = catalog
                    .table(dml.table_name.table())
                    .cloned()
                    .ok_or_else(|| {
                        SluiceError::plan(format!(
                            "{at}: `{}` is a view; INSERT INTO needs a table",
                            dml.table_name
                        ))
                    })?;
                insert_types::check_insert(&sink, &dml.input).map_err(|m| {
                    SluiceError::plan(format!("{file}:{}:{}: {m}", i.line, i.column))
                })?;
                let query = optimize(&catalog, Arc::unwrap_or_clone(dml.input))
                    .map_err(|e| planning_error(file, i.line, i.column, e))?;
                inserts.push(PlannedInsert {
                    sink,
                    query,
                    location: at,
                    overwrite,
                });
            }
            JobStatement::Set(s) => {
                settings::check(s, &job_text);
                settings.insert(s.item.0.clone(), s.item.1.clone());
            }
            JobStatement::CreateFunction(f) => declare_function(&catalog, f)?,
        }
    }
    let file = &job.source_name;
    if inserts.is_empty() {
        return Err(SluiceError::plan(format!(
            "{file}: the job has no INSERT INTO statement, so it would produce nothing"
        )));
    }
    let name = settings
        .get(settings::PIPELINE_NAME)
        .cloned()
        .unwrap_or_else(|| job_name_from_path(file));
    Ok(CompiledJob {
        name,
        mode,
        tables,
        inserts,
        settings,
    })
}

/// `CREATE FUNCTION name AS 'class'`: the job names a function it calls.
/// Sluice's functions are Rust, so the name must be one of them; the class
/// is not loaded, and a warning says so.
fn declare_function(catalog: &Catalog, f: &parser::Located<parser::FunctionDecl>) -> Result<()> {
    use datafusion::sql::planner::ContextProvider;
    let decl = &f.item;
    let at = format!("{}:{}:{}", f.file, f.line, f.column);
    if catalog.get_function_meta(&decl.name).is_none()
        && catalog
            .get_function_meta(&decl.name.to_ascii_lowercase())
            .is_none()
    {
        let mut known = catalog.udf_names();
        known.sort();
        return Err(SluiceError::plan(format!(
            "{at}: CREATE FUNCTION {} AS '{}': Sluice has no function `{}` and cannot load {} classes; its own functions are Rust ({}){}",
            decl.name,
            decl.class,
            decl.name,
            decl.language.as_deref().unwrap_or("JAVA"),
            if known.is_empty() {
                "none are registered".to_string()
            } else {
                known.join(", ")
            },
            crate::suggest::closest(&decl.name, known.iter().map(String::as_str))
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default()
        )));
    }
    tracing::warn!(
        "{at}: CREATE FUNCTION {} AS '{}': calls Sluice's own function `{}`; the class is not used",
        decl.name,
        decl.class,
        decl.name
    );
    Ok(())
}

fn job_name_from_path(path: &str) -> String {
    std::path::Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("job")
        .to_string()
}

fn parser_options(catalog: &Catalog) -> datafusion::sql::planner::ParserOptions {
    let o = &catalog.config().sql_parser;
    datafusion::sql::planner::ParserOptions {
        enable_ident_normalization: o.enable_ident_normalization,
        collect_spans: o.collect_spans,
        parse_float_as_decimal: o.parse_float_as_decimal,
        support_varchar_with_length: o.support_varchar_with_length,
        enable_options_value_normalization: false,
        map_string_types_to_utf8view: false,
        default_null_ordering: datafusion::sql::planner::NullOrdering::NullsMax,
    }
}

fn plan_query(catalog: &Catalog, query: &Query) -> datafusion::error::Result<LogicalPlan> {
    let planner = SqlToRel::new_with_options(catalog, parser_options(catalog));
    let mut query = query.clone();
    name_nested_fields(&mut query);
    planner.sql_statement_to_plan(Statement::Query(Box::new(query)))
}

/// Names a selected nested field after the field, as Flink does:
/// `SELECT bid.auction` yields a column `auction` (DataFusion would call it
/// `t.bid[auction]`).
fn name_nested_fields(query: &mut Query) {
    fn in_body(body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(parts)) = item
                        && let Some(last) = parts.last().filter(|_| parts.len() >= 2)
                    {
                        let alias = last.clone();
                        *item = SelectItem::ExprWithAlias {
                            expr: SqlExpr::CompoundIdentifier(parts.clone()),
                            alias,
                        };
                    }
                }
            }
            SetExpr::Query(query) => name_nested_fields(query),
            SetExpr::SetOperation { left, right, .. } => {
                in_body(left);
                in_body(right);
            }
            _ => {}
        }
    }
    in_body(&mut query.body);
}

/// Type coercion, then the optimizer rules whose rewrites keep streaming
/// semantics. Rules that turn `COUNT(DISTINCT)` into a two-level aggregation
/// or reorder joins are left out: a window aggregation must stay one node.
fn optimize(catalog: &Catalog, plan: LogicalPlan) -> datafusion::error::Result<LogicalPlan> {
    use datafusion::optimizer::{
        decorrelate_predicate_subquery::DecorrelatePredicateSubquery,
        eliminate_cross_join::EliminateCrossJoin, eliminate_filter::EliminateFilter,
        extract_equijoin_predicate::ExtractEquijoinPredicate,
        optimize_projections::OptimizeProjections, optimize_unions::OptimizeUnions,
        push_down_filter::PushDownFilter, replace_distinct_aggregate::ReplaceDistinctWithAggregate,
        simplify_expressions::SimplifyExpressions,
    };
    let plan = Analyzer::new().execute_and_check(plan, catalog.config(), |_, _| {})?;
    let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
        Arc::new(OptimizeUnions::new()),
        Arc::new(SimplifyExpressions::new()),
        Arc::new(ReplaceDistinctWithAggregate::new()),
        Arc::new(EliminateFilter::new()),
        // `IN` and `EXISTS` (and their negations) over a subquery become
        // semi and anti joins, which a window join runs.
        Arc::new(DecorrelatePredicateSubquery::new()),
        Arc::new(EliminateCrossJoin::new()),
        Arc::new(PushDownFilter::new()),
        // An implicit join (`FROM a, b WHERE a.k = b.k`) is a filter over a
        // cross join, which the filter pushdown makes a join's condition;
        // the equalities of a join's condition become its keys. Joins keep
        // the order written.
        Arc::new(ExtractEquijoinPredicate::new()),
        Arc::new(OptimizeProjections::new()),
    ];
    // No query start time: `NOW()` and its kin stay calls, read when the
    // job runs (see `wall_clock`), so the plan is the same on every run.
    // A rule that fails is passed over, as DataFusion does by default: a
    // constant it cannot fold (`CAST('abc' AS BIGINT)` in a branch that may
    // never run) is an error only if the job meets it, as in Flink.
    let context = OptimizerContext::new()
        .without_query_execution_start_time()
        .with_max_passes(3);
    Optimizer::with_rules(rules).optimize(plan, &context, |_, _| {})
}

/// Plans a table's computed columns over its physical ones; returns the
/// table's whole schema, in declared order, and the computed expressions.
fn computed_columns(
    decl: &parser::TableDecl,
    physical: &arrow::datatypes::SchemaRef,
    catalog: &Catalog,
    at: &str,
) -> Result<(arrow::datatypes::SchemaRef, Vec<(usize, Expr)>)> {
    if decl.columns.iter().all(|c| c.computed.is_none()) {
        return Ok((Arc::clone(physical), Vec::new()));
    }
    let df_schema = DFSchema::try_from_qualified_schema(decl.name.as_str(), physical)
        .map_err(|e| SluiceError::plan(format!("{at}: table `{}`: {e}", decl.name)))?;
    let planner = SqlToRel::new_with_options(catalog, parser_options(catalog));
    let mut fields = Vec::with_capacity(decl.columns.len());
    let mut computed = Vec::new();
    for (i, column) in decl.columns.iter().enumerate() {
        match &column.computed {
            None => fields.push(
                physical
                    .field_with_name(&column.name)
                    .map_err(|e| SluiceError::plan(format!("{at}: table `{}`: {e}", decl.name)))?
                    .clone(),
            ),
            Some(sql) => {
                let expr = planner
                    .sql_to_expr(sql.clone(), &df_schema, &mut PlannerContext::new())
                    .and_then(|e| {
                        use datafusion::common::tree_node::TreeNode;
                        use datafusion::optimizer::analyzer::type_coercion::TypeCoercionRewriter;
                        let e = e.rewrite(&mut TypeCoercionRewriter::new(&df_schema))?.data;
                        let data_type = e.get_type(&df_schema)?;
                        Ok((e, data_type))
                    })
                    .map_err(|e| {
                        SluiceError::plan(format!(
                            "{at}: computed column `{}`: {}",
                            column.name,
                            df_message(&e)
                        ))
                    })?;
                fields.push(arrow::datatypes::Field::new(&column.name, expr.1, true));
                computed.push((i, expr.0));
            }
        }
    }
    Ok((Arc::new(arrow::datatypes::Schema::new(fields)), computed))
}

fn declare_table(
    decl: &parser::TableDecl,
    mode: Mode,
    catalog: &Catalog,
    at: &str,
) -> Result<TableDef> {
    let physical = catalog::table_schema(decl).map_err(|e| prefix(at, e))?;
    if !decl.partition_keys.is_empty() {
        return Err(SluiceError::plan(format!(
            "{at}: table `{}` is PARTITIONED BY ({}): partitioned tables are not supported yet; the filesystem connector writes unpartitioned part files",
            decl.name,
            decl.partition_keys.join(", ")
        )));
    }
    let options = Options::resolve(&decl.name, &decl.options, mode)?;
    let (schema, computed) = computed_columns(decl, &physical, catalog, at)?;
    let mut def = TableDef {
        name: decl.name.clone(),
        schema,
        physical,
        computed,
        watermark: None,
        options,
        written_options: decl.options.clone(),
        declared_at: at.to_string(),
        primary_key: Vec::new(),
    };
    for column in &decl.primary_key {
        let at_column = def.schema.index_of(column).map_err(|_| {
            SluiceError::plan(format!(
                "{at}: PRIMARY KEY ({}): table `{}` has no column `{column}`",
                decl.primary_key.join(", "),
                decl.name
            ))
        })?;
        def.primary_key.push(at_column);
    }
    if let Some(wm) = &decl.watermark {
        let Some(column) = def.schema.fields().iter().find(|f| f.name() == &wm.column) else {
            return Err(SluiceError::plan(format!(
                "{at}: WATERMARK FOR `{}`: table `{}` has no such column",
                wm.column, decl.name
            )));
        };
        if !matches!(
            column.data_type(),
            arrow::datatypes::DataType::Timestamp(..)
        ) {
            return Err(SluiceError::plan(format!(
                "{at}: WATERMARK FOR `{}`: the column must be a TIMESTAMP, not {}",
                wm.column,
                column.data_type()
            )));
        }
        let df_schema = catalog::qualified_schema(&def)?;
        let planner = SqlToRel::new_with_options(catalog, parser_options(catalog));
        let expr = planner
            .sql_to_expr(wm.expr.clone(), &df_schema, &mut PlannerContext::new())
            .map_err(|e| {
                SluiceError::plan(format!(
                    "{at}: WATERMARK FOR `{}`: {}",
                    wm.column,
                    df_message(&e)
                ))
            })?;
        check_watermark_type(&expr, &df_schema)
            .map_err(|m| SluiceError::plan(format!("{at}: WATERMARK FOR `{}`: {m}", wm.column)))?;
        def.watermark = Some(Watermark {
            column: wm.column.clone(),
            expr,
            decl: wm.clone(),
        });
    }
    Ok(def)
}

fn check_watermark_type(expr: &Expr, schema: &DFSchema) -> Result<(), String> {
    use datafusion::logical_expr::ExprSchemable;
    match expr.get_type(schema) {
        Ok(arrow::datatypes::DataType::Timestamp(..)) => Ok(()),
        Ok(other) => Err(format!(
            "the watermark expression must be a TIMESTAMP, not {other}"
        )),
        Err(e) => Err(df_message(&e)),
    }
}

fn prefix(at: &str, e: SluiceError) -> SluiceError {
    match e {
        SluiceError::Plan(m) => SluiceError::Plan(format!("{at}: {m}")),
        SluiceError::Config(m) => SluiceError::Config(format!("{at}: {m}")),
        other => other,
    }
}

/// A planning error, located at the spot DataFusion points to when it does,
/// else at the statement.
fn planning_error(file: &str, line: u64, column: u64, e: DataFusionError) -> SluiceError {
    let (line, column) = located_at(&e).unwrap_or((line, column));
    SluiceError::Plan(format!("{file}:{line}:{column}: {}", df_message(&e)))
}

/// Where DataFusion's diagnostic points, when it does.
fn located_at(e: &DataFusionError) -> Option<(u64, u64)> {
    e.diagnostic()
        .and_then(|d| d.span)
        .filter(|s| s.start.line > 0)
        .map(|s| (s.start.line, s.start.column))
}

/// A planning error of `query`; DataFusion's internal errors, which name
/// neither the call nor the column, explained where Sluice can.
fn explained_planning_error(
    catalog: &Catalog,
    query: &Query,
    file: &str,
    line: u64,
    column: u64,
    e: DataFusionError,
) -> SluiceError {
    // DataFusion raises these as internal errors, some wrapped in a Plan
    // error whose text says so.
    let root = e.find_root();
    // Coercion failures of Sluice's own aggregates (`AVG`) too.
    let internal = matches!(root, DataFusionError::Internal(_))
        || root.to_string().contains("Internal error")
        || root.to_string().contains("coercion failed");
    if internal && let Some((at, message)) = aggregate_types::explain(catalog, query) {
        let (line, column) = at.map_or((line, column), |l| (l.line, l.column));
        return SluiceError::Plan(format!("{file}:{line}:{column}: {message}"));
    }
    if let Some(message) = unsupported::explain_invalid_function(&df_message(&e)) {
        let (line, column) = located_at(&e).unwrap_or((line, column));
        return SluiceError::Plan(format!("{file}:{line}:{column}: {message}"));
    }
    planning_error(file, line, column, e)
}

/// DataFusion's message without its "Error during planning:" preamble.
pub fn df_message(e: &DataFusionError) -> String {
    match e {
        DataFusionError::Diagnostic(_, inner) => df_message(inner),
        DataFusionError::Context(context, inner) => format!("{context}: {}", df_message(inner)),
        DataFusionError::Plan(m) | DataFusionError::NotImplemented(m) => m
            .split("\n\nbacktrace")
            .next()
            .unwrap_or(m)
            .trim()
            .to_string(),
        DataFusionError::SchemaError(..) => {
            let s = e.strip_backtrace();
            s.strip_prefix("Schema error: ").unwrap_or(&s).to_string()
        }
        other => other.strip_backtrace(),
    }
}
