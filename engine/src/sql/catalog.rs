//! Tables, views and functions of a job, as DataFusion's SQL planner sees them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, TableReference, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateDefaults;
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion::logical_expr::{
    AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use datafusion::sql::sqlparser::ast::{self, ExactNumberInfo};
use std::borrow::Cow;

use super::options::Options;
use super::parser::{TableDecl, WatermarkDecl};
use crate::error::{Result, SluiceError};

/// A table declared with `CREATE TABLE`, its options resolved for the mode.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: String,
    /// Every column as queries see it, computed ones included, in the
    /// declared order.
    pub schema: SchemaRef,
    /// The columns a source reads: `schema` without the computed ones.
    pub physical: SchemaRef,
    /// Computed columns (`name AS expr`): their index in `schema` and their
    /// expression over `physical`, qualified by the table's name.
    pub computed: Vec<(usize, Expr)>,
    /// The rowtime column and its watermark expression, planned against `schema`.
    pub watermark: Option<Watermark>,
    /// The options of the mode the job runs in.
    pub options: Options,
    /// The options as written, for both modes: their names are checked in
    /// both, their values used in one.
    pub written_options: Vec<super::options::WrittenOption>,
    /// Where the declaration starts, as `file:line`.
    pub declared_at: String,
    /// `PRIMARY KEY (...) NOT ENFORCED`: the columns, as indices into
    /// `schema`, that identify a row of an upsert table (none declared:
    /// empty).
    pub primary_key: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Watermark {
    pub column: String,
    pub expr: Expr,
    pub decl: WatermarkDecl,
}

impl TableDef {
    pub fn connector(&self) -> Option<&str> {
        self.options.peek("connector")
    }
}

/// Maps a declared column type to Arrow's, with Flink's names and meanings.
pub fn arrow_type(table: &str, column: &str, data_type: &ast::DataType) -> Result<DataType> {
    use ast::DataType as T;
    let timestamp_unit = |precision: Option<u64>| match precision.unwrap_or(6) {
        0 => TimeUnit::Second,
        1..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    };
    Ok(match data_type {
        T::TinyInt(_) => DataType::Int8,
        T::SmallInt(_) => DataType::Int16,
        T::Int(_) | T::Integer(_) => DataType::Int32,
        T::BigInt(_) | T::Int64 => DataType::Int64,
        T::Float(_) | T::Real => DataType::Float32,
        T::Double(_) | T::DoublePrecision | T::Float64 => DataType::Float64,
        T::Decimal(info) | T::Numeric(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => (10, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            if precision == 0 || precision > 38 || scale < 0 || scale as u64 > precision {
                return Err(SluiceError::plan(format!(
                    "table `{table}`: column `{column}` has DECIMAL({precision}, {scale}); precision must be 1 to 38 and scale 0 to the precision"
                )));
            }
            DataType::Decimal128(precision as u8, scale as i8)
        }
        T::String(_) | T::Varchar(_) | T::Char(_) | T::Text => DataType::Utf8,
        T::Boolean | T::Bool => DataType::Boolean,
        T::Date => DataType::Date32,
        T::Timestamp(precision, tz) => {
            let zone = match tz {
                ast::TimezoneInfo::WithTimeZone => Some("UTC".into()),
                _ => None,
            };
            DataType::Timestamp(timestamp_unit(*precision), zone)
        }
        T::Bytes(_) | T::Binary(_) | T::Varbinary(_) => DataType::Binary,
        T::Struct(fields, _) => DataType::Struct(
            fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let name = f
                        .field_name
                        .as_ref()
                        .map_or_else(|| format!("f{i}"), |n| n.value.clone());
                    let inner = arrow_type(table, &format!("{column}.{name}"), &f.field_type)?;
                    Ok(Field::new(name, inner, true))
                })
                .collect::<Result<Vec<_>>>()?
                .into(),
        ),
        T::Custom(name, args) if name.to_string().eq_ignore_ascii_case("TIMESTAMP_LTZ") => {
            let precision = args.first().and_then(|a| a.parse().ok());
            DataType::Timestamp(timestamp_unit(precision), Some("UTC".into()))
        }
        other => {
            return Err(SluiceError::plan(format!(
                "table `{table}`: column `{column}` has type {other}, which Sluice does not support; use BIGINT, INT, SMALLINT, TINYINT, DOUBLE, FLOAT, DECIMAL(p, s), STRING/VARCHAR, BOOLEAN, DATE, TIMESTAMP(p), TIMESTAMP_LTZ(p), BYTES or ROW<name type, ...>"
            )));
        }
    })
}

/// Builds the Arrow schema of a declared table's physical columns (those
/// that are not computed).
pub fn table_schema(decl: &TableDecl) -> Result<SchemaRef> {
    let mut fields = Vec::with_capacity(decl.columns.len());
    for (i, column) in decl.columns.iter().enumerate() {
        if decl.columns[..i].iter().any(|c| c.name == column.name) {
            return Err(SluiceError::plan(format!(
                "table `{}`: column `{}` is declared twice",
                decl.name, column.name
            )));
        }
        if column.computed.is_some() {
            continue;
        }
        let data_type = arrow_type(&decl.name, &column.name, &column.data_type)?;
        fields.push(Field::new(&column.name, data_type, column.nullable));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// What DataFusion's planner can look up: our tables and views, DataFusion's
/// functions plus Sluice's own.
#[derive(Debug)]
pub struct Catalog {
    tables: HashMap<String, Arc<TableDef>>,
    views: HashMap<String, LogicalPlan>,
    scalar_functions: HashMap<String, Arc<ScalarUDF>>,
    higher_order_functions: HashMap<String, Arc<HigherOrderUDF>>,
    aggregate_functions: HashMap<String, Arc<AggregateUDF>>,
    window_functions: HashMap<String, Arc<WindowUDF>>,
    /// The names of the job's own (Rust) functions.
    user_functions: Vec<String>,
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
    relation_planners: Vec<Arc<dyn RelationPlanner>>,
    config: ConfigOptions,
}

impl Catalog {
    pub fn new(extra_functions: &[Arc<ScalarUDF>], mode: super::Mode) -> Self {
        let mut config = ConfigOptions::default();
        // Flink keeps identifiers' case; so do we.
        config.sql_parser.enable_ident_normalization = false;
        config.sql_parser.collect_spans = true;
        let mut scalar_functions = HashMap::new();
        for f in SessionStateDefaults::default_scalar_functions()
            .into_iter()
            .chain(super::functions::flink_functions())
            .chain(super::wall_clock::wall_clock_functions(
                mode,
                config.execution.time_zone.as_deref(),
            ))
            .chain(extra_functions.iter().cloned())
        {
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                scalar_functions.insert(name.to_string(), Arc::clone(&f));
            }
        }
        let mut aggregate_functions = HashMap::new();
        for f in SessionStateDefaults::default_aggregate_functions()
            .into_iter()
            .filter(|f| f.name() != "avg")
            .chain(std::iter::once(super::flink_avg::FlinkAvg::udaf()))
        {
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                aggregate_functions.insert(name.to_string(), Arc::clone(&f));
            }
        }
        let mut window_functions = HashMap::new();
        for f in SessionStateDefaults::default_window_functions() {
            window_functions.insert(f.name().to_string(), f);
        }
        let mut higher_order_functions = HashMap::new();
        for f in SessionStateDefaults::default_higher_order_functions() {
            higher_order_functions.insert(f.name().to_string(), f);
        }
        Self {
            tables: HashMap::new(),
            views: HashMap::new(),
            scalar_functions,
            higher_order_functions,
            aggregate_functions,
            window_functions,
            user_functions: extra_functions
                .iter()
                .map(|f| f.name().to_string())
                .collect(),
            expr_planners: SessionStateDefaults::default_expr_planners(),
            relation_planners: vec![Arc::new(super::window_tvf::WindowTvfPlanner)],
            config,
        }
    }

    /// The names of the functions the job's libraries added.
    pub fn udf_names(&self) -> Vec<String> {
        self.user_functions.clone()
    }

    pub fn config(&self) -> &ConfigOptions {
        &self.config
    }

    pub fn add_table(&mut self, table: Arc<TableDef>) -> Result<()> {
        self.ensure_new_name(&table.name)?;
        self.tables.insert(table.name.clone(), table);
        Ok(())
    }

    pub fn add_view(&mut self, name: &str, plan: LogicalPlan) -> Result<()> {
        self.ensure_new_name(name)?;
        self.views.insert(name.to_string(), plan);
        Ok(())
    }

    fn ensure_new_name(&self, name: &str) -> Result<()> {
        if self.tables.contains_key(name) || self.views.contains_key(name) {
            return Err(SluiceError::plan(format!(
                "`{name}` is declared twice: table and view names must be unique"
            )));
        }
        Ok(())
    }

    pub fn table(&self, name: &str) -> Option<&Arc<TableDef>> {
        self.tables.get(name)
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableDef>> {
        self.tables.values()
    }
}

impl ContextProvider for Catalog {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        let key = name.table();
        if let Some(table) = self.tables.get(key) {
            return Ok(Arc::new(DeclaredTable(Arc::clone(table))));
        }
        if let Some(plan) = self.views.get(key) {
            return Ok(Arc::new(View(plan.clone())));
        }
        let mut known: Vec<&str> = self
            .tables
            .keys()
            .chain(self.views.keys())
            .map(String::as_str)
            .collect();
        known.sort_unstable();
        plan_err!(
            "table or view `{name}` is not declared (declared: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.expr_planners
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        &self.relation_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalar_functions.get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.higher_order_functions.get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregate_functions.get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.window_functions.get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.config
    }

    fn udf_names(&self) -> Vec<String> {
        self.scalar_functions.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.higher_order_functions.keys().cloned().collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregate_functions.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.window_functions.keys().cloned().collect()
    }
}

/// A declared table as a `TableSource`: its scan becomes a source or sink.
#[derive(Debug)]
pub struct DeclaredTable(pub Arc<TableDef>);

impl TableSource for DeclaredTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0.schema)
    }
}

/// A view: DataFusion's plan builder inlines its plan where it is scanned.
#[derive(Debug)]
struct View(LogicalPlan);

impl TableSource for View {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.0.schema().inner())
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.0))
    }
}

/// The schema of a declared table as DataFusion sees it, qualified by its name.
pub fn qualified_schema(table: &TableDef) -> Result<DFSchema> {
    DFSchema::try_from_qualified_schema(table.name.as_str(), &table.schema)
        .map_err(|e| SluiceError::plan(format!("table `{}`: {e}", table.name)))
}
