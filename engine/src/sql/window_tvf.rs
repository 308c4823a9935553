//! Flink's window table-valued functions, planned as a DataFusion extension node.
//!
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))` becomes a
//! [`WindowTvf`] node over the plan of `t`: its rows are `t`'s plus
//! `window_start`, `window_end` and `window_time`. The node only *describes*
//! the windowing; Sluice's planner turns an aggregate over it into a sliced
//! window aggregation, so hopping windows never copy rows.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ScalarValue, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, LogicalPlanBuilder, UserDefinedLogicalNodeCore,
};
use datafusion::sql::sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, TableFactor,
};

use super::parser::{TABLE_ARG, object_name};
use crate::time::{Millis, WindowColumn, WindowKind};

/// A window TVF applied to its input plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowTvf {
    pub input: LogicalPlan,
    pub kind: WindowKind,
    /// The `DESCRIPTOR` column: the event time that assigns rows to windows.
    pub time_column: Column,
    /// `PARTITION BY` keys of a `SESSION` window.
    pub partition_keys: Vec<Expr>,
    schema: DFSchemaRef,
}

impl WindowTvf {
    pub fn try_new(
        input: LogicalPlan,
        kind: WindowKind,
        time_column: Column,
        partition_keys: Vec<Expr>,
    ) -> DfResult<Self> {
        let input_schema = input.schema();
        let Some(index) = input_schema.maybe_index_of_column(&time_column) else {
            return plan_err!(
                "DESCRIPTOR({}) names no column of the window's input (columns: {})",
                time_column.name,
                column_names(input_schema)
            );
        };
        if !matches!(
            input_schema.field(index).data_type(),
            DataType::Timestamp(..)
        ) {
            return plan_err!(
                "DESCRIPTOR({}) must name a TIMESTAMP column, but it is {}",
                time_column.name,
                input_schema.field(index).data_type()
            );
        }
        for column in WindowColumn::ALL {
            if input_schema
                .fields()
                .iter()
                .any(|f| f.name() == column.name())
            {
                return plan_err!(
                    "the window's input already has a column `{}`; rename it (e.g. `{} AS first_{}`) before windowing again",
                    column.name(),
                    column.name(),
                    column.name()
                );
            }
        }
        let mut fields: Vec<(Option<datafusion::common::TableReference>, Arc<Field>)> =
            input_schema
                .iter()
                .map(|(q, f)| (q.cloned(), Arc::clone(f)))
                .collect();
        for column in WindowColumn::ALL {
            fields.push((
                None,
                Arc::new(Field::new(
                    column.name(),
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                    false,
                )),
            ));
        }
        let schema = DFSchema::new_with_metadata(fields, input_schema.metadata().clone())?;
        let time_column = Column::from(input_schema.qualified_field(index));
        Ok(Self {
            input,
            kind,
            time_column,
            partition_keys,
            schema: Arc::new(schema),
        })
    }

    /// Position of the `DESCRIPTOR` column in the input.
    pub fn time_index(&self) -> usize {
        self.input
            .schema()
            .maybe_index_of_column(&self.time_column)
            .unwrap_or_default()
    }

    pub fn input_width(&self) -> usize {
        self.input.schema().fields().len()
    }
}

impl PartialOrd for WindowTvf {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self.kind, &self.time_column).partial_cmp(&(other.kind, &other.time_column))
    }
}

impl UserDefinedLogicalNodeCore for WindowTvf {
    fn name(&self) -> &str {
        "WindowTvf"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        std::iter::once(Expr::Column(self.time_column.clone()))
            .chain(self.partition_keys.iter().cloned())
            .collect()
    }

    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        WindowColumn::ALL
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WindowTvf: {} on {}",
            describe(&self.kind),
            self.time_column
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let mut exprs = exprs.into_iter();
        let Some(Expr::Column(time_column)) = exprs.next() else {
            return plan_err!("WindowTvf lost its time column");
        };
        let Some(input) = inputs.into_iter().next() else {
            return plan_err!("WindowTvf lost its input");
        };
        Self::try_new(input, self.kind, time_column, exprs.collect())
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let width = self.input_width();
        let mut needed: Vec<usize> = output_columns
            .iter()
            .copied()
            .filter(|i| *i < width)
            .collect();
        needed.push(self.time_index());
        for key in &self.partition_keys {
            for column in key.column_refs() {
                if let Some(i) = self.input.schema().maybe_index_of_column(column) {
                    needed.push(i);
                }
            }
        }
        needed.sort_unstable();
        needed.dedup();
        Some(vec![needed])
    }
}

/// Describes a window kind the way a job would write it.
pub fn describe(kind: &WindowKind) -> String {
    let d = |ms: Millis| crate::plan::explain::duration(ms);
    match *kind {
        WindowKind::Tumble { size } => format!("TUMBLE(size {})", d(size)),
        WindowKind::Hop { size, slide } => format!("HOP(slide {}, size {})", d(slide), d(size)),
        WindowKind::Cumulate { step, max_size } => {
            format!("CUMULATE(step {}, max {})", d(step), d(max_size))
        }
        WindowKind::Session { gap } => format!("SESSION(gap {})", d(gap)),
        WindowKind::Global => "GLOBAL".to_string(),
    }
}

fn column_names(schema: &DFSchema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Plans `TABLE(TUMBLE|HOP|CUMULATE|SESSION(...))` in `FROM`.
#[derive(Debug)]
pub struct WindowTvfPlanner;

impl RelationPlanner for WindowTvfPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        let TableFactor::TableFunction {
            expr: ast::Expr::Function(function),
            alias,
        } = &relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let name = object_name(&function.name).to_ascii_uppercase();
        if !matches!(name.as_str(), "TUMBLE" | "HOP" | "CUMULATE" | "SESSION") {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        }
        let args = TvfArgs::new(&name, &function.args)?;
        let (table, keys) = args.table()?;
        let source = context
            .context_provider()
            .get_table_source(context.object_name_to_table_reference(table.clone())?)?;
        let input =
            LogicalPlanBuilder::scan(context.object_name_to_table_reference(table)?, source, None)?
                .build()?;
        let time_column = args.descriptor(context)?;
        let mut interval = |position: usize, param: &str| -> DfResult<Millis> {
            let expr = args.get(position, param)?;
            interval_millis(
                &name,
                param,
                context.sql_to_expr(expr.clone(), &DFSchema::empty())?,
            )
        };
        let kind = match name.as_str() {
            "TUMBLE" => WindowKind::Tumble {
                size: interval(2, "SIZE")?,
            },
            "HOP" => WindowKind::Hop {
                slide: interval(2, "SLIDE")?,
                size: interval(3, "SIZE")?,
            },
            "CUMULATE" => WindowKind::Cumulate {
                step: interval(2, "STEP")?,
                max_size: interval(3, "SIZE")?,
            },
            _ => WindowKind::Session {
                gap: interval(2, "GAP")?,
            },
        };
        let extra = match name.as_str() {
            "TUMBLE" | "SESSION" => 3,
            _ => 4,
        };
        if args.positional.len() > extra || args.named.iter().any(|(n, _)| n == "OFFSET") {
            return plan_err!("{name}: window offsets are not supported yet");
        }
        if let Err(message) = kind.validate() {
            return plan_err!("{message}");
        }
        if !keys.is_empty() && name != "SESSION" {
            return plan_err!("PARTITION BY is only allowed in SESSION windows, not {name}");
        }
        let keys = keys
            .into_iter()
            .map(|k| context.sql_to_expr(k, input.schema()))
            .collect::<DfResult<Vec<_>>>()?;
        let node = WindowTvf::try_new(input, kind, time_column, keys)?;
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan,
            alias.clone(),
        ))))
    }
}

/// The arguments of a window TVF call, positional or named (`SIZE => ...`).
struct TvfArgs<'a> {
    function: &'a str,
    positional: Vec<&'a ast::Expr>,
    named: Vec<(String, &'a ast::Expr)>,
}

impl<'a> TvfArgs<'a> {
    fn new(function: &'a str, args: &'a FunctionArguments) -> DfResult<Self> {
        let FunctionArguments::List(list) = args else {
            return plan_err!("{function} needs arguments: (TABLE t, DESCRIPTOR(col), ...)");
        };
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for arg in &list.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => positional.push(e),
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => named.push((name.value.to_ascii_uppercase(), e)),
                other => return plan_err!("{function}: unexpected argument `{other}`"),
            }
        }
        Ok(Self {
            function,
            positional,
            named,
        })
    }

    fn get(&self, position: usize, param: &str) -> DfResult<&'a ast::Expr> {
        if let Some((_, e)) = self.named.iter().find(|(n, _)| n == param) {
            return Ok(e);
        }
        match self.positional.get(position) {
            Some(e) if self.named.is_empty() || position < self.positional.len() => Ok(e),
            _ => plan_err!(
                "{}: missing argument {param} (argument {})",
                self.function,
                position + 1
            ),
        }
    }

    /// The `TABLE t [PARTITION BY ...]` argument.
    fn table(&self) -> DfResult<(ObjectName, Vec<ast::Expr>)> {
        let expr = self.get(0, "DATA")?;
        if let ast::Expr::Function(f) = expr
            && object_name(&f.name) == TABLE_ARG
            && let FunctionArguments::List(list) = &f.args
        {
            let mut args = list.args.iter().filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            });
            if let Some(ast::Expr::CompoundIdentifier(parts)) = args.next() {
                return Ok((ObjectName::from(parts), args.collect()));
            }
        }
        plan_err!(
            "{}: the first argument must be `TABLE name`, found `{expr}`",
            self.function
        )
    }

    fn descriptor(&self, context: &mut dyn RelationPlannerContext) -> DfResult<Column> {
        let expr = self.get(1, "TIMECOL")?;
        if let ast::Expr::Function(f) = expr
            && object_name(&f.name).eq_ignore_ascii_case("DESCRIPTOR")
            && let FunctionArguments::List(list) = &f.args
            && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Identifier(id)))] =
                list.args.as_slice()
        {
            return Ok(Column::new_unqualified(context.normalize_ident(id.clone())));
        }
        plan_err!(
            "{}: the second argument must be `DESCRIPTOR(time_column)`, found `{expr}`",
            self.function
        )
    }
}

/// Milliseconds of a day-time interval literal.
fn interval_millis(function: &str, param: &str, expr: Expr) -> DfResult<Millis> {
    let value = match expr {
        Expr::Literal(value, _) => value,
        other => return plan_err!("{function} {param} must be an interval literal, found {other}"),
    };
    let ms = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds)
        }
        ScalarValue::DurationMillisecond(Some(v)) => v,
        ScalarValue::DurationSecond(Some(v)) => v * 1_000,
        other => {
            return plan_err!(
                "{function} {param} must be a day-time interval such as INTERVAL '10' SECOND, found {other}"
            );
        }
    };
    Ok(ms)
}
