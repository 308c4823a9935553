//! From DataFusion logical plans to Sluice's job graph.
//!
//! Each logical node Sluice runs has a planning rule of its own, in a file of
//! its own ([`Rule`]): a rule first checks the node alone (so that a node
//! Sluice refuses is named before its inputs are planned), then builds the
//! node's operators from its planned inputs. The walk is bottom-up over each
//! `INSERT`'s plan; it hands each rule its inputs with their
//! [`Properties`] (changelog mode, upsert key, time attribute), as
//! DataFusion's physical plans carry per-child properties, and turns an
//! input into rows first when the rule needs rows ([`Rule::needs_rows`]).
//!
//! A window TVF does not become an operator by itself: it yields a *pending
//! window* (its input plus the window kind), and what consumes it decides:
//! an aggregate grouped by `window_start, window_end` becomes a sliced
//! window aggregation; anything else materializes the window columns with a
//! `WindowAssign` operator. Projections and filters between the TVF and the
//! aggregate are applied to the TVF's input, as long as they do not compute
//! on window columns.
//!
//! A join that equates both inputs' window bounds is a window join; the
//! bounds are followed back through the graph by each operator's
//! [`OperatorFactory::column_origin`]. Other joins are regular joins.
//!
//! Each node's changelog mode is inferred on the way, as Flink's planner
//! does ([`crate::changelog`]): a node whose rows can update carries the
//! row-kind column. A GROUP BY without a window in stream mode updates; a
//! join updates when an input does or when it is an outer join in stream
//! mode; a projection, filter or union passes updates on; a window over
//! updating rows, and an updating result into a sink that takes inserts
//! only, are refused, naming the node that updates.

mod aggregate;
mod cascade;
mod filter;
mod group_aggregate;
mod join;
mod projection;
mod properties;
mod scan;
mod sink;
mod source;
mod union;
mod window_join;
mod window_tvf;

use properties::Properties;
use window_tvf::{Col, PendingWindow};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DFSchemaRef};
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{self as logical, Expr, ExprSchemable, LogicalPlan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use super::{Edge, JobGraph, Node, NodeId, NodeKind, Partitioning, SinkNode, SourceNode};
use crate::changelog::ChangelogMode;
use crate::connector::{ConnectorContext, ConnectorRegistry, SourceChanges};
use crate::error::{Result, SluiceError};
use crate::ops::OperatorFactory;
use crate::ops::aggregate::{AggregateSpec, OutputColumn, key_schema};
use crate::ops::changelog_materialize::ChangelogMaterialize;
use crate::ops::group_aggregate::{Accumulation, GroupAggregate};
use crate::ops::session::SessionAggregate;
use crate::ops::stateless::{Filter, Project, Union};
use crate::ops::upsert_normalize::UpsertNormalize;
use crate::ops::window_aggregate::{Phase, WindowAggregate, state_schema};
use crate::ops::window_assign::WindowAssign;
use crate::sql::catalog::DeclaredTable;
use crate::sql::window_tvf::WindowTvf;
use crate::sql::{CompiledJob, TableDef};
use crate::time::{WindowColumn, WindowKind};

/// Builds the job graph of `job` at `parallelism`.
pub fn translate(
    job: &CompiledJob,
    registry: &ConnectorRegistry,
    parallelism: usize,
) -> Result<JobGraph> {
    let keeps_late_rows = job
        .settings
        .contains_key(crate::sql::settings::LATE_DATA_PATH);
    let mut graph = translate_keeping(job, registry, parallelism, keeps_late_rows)?;
    let carries = graph.nodes.iter().any(|n| {
        matches!(n.kind, NodeKind::Source(_)) && crate::ops::late_row::carried(&n.schema).is_some()
    });
    if carries {
        let base = translate_keeping(job, registry, parallelism, false)?;
        // Carrying adds or widens projections only (see
        // `JobGraph::operator_ids`), so the other nodes pair up in order.
        let others = |g: &JobGraph| -> Vec<String> {
            g.nodes
                .iter()
                .map(|n| n.name())
                .filter(|name| name != crate::ops::stateless::PROJECT)
                .collect()
        };
        if others(&graph) != others(&base) {
            return Err(SluiceError::plan(format!(
                "keeping late rows changed the job's operators ({:?} against {:?}); this is a bug in Sluice, run without 'sluice.late-data.path' meanwhile",
                others(&graph),
                others(&base)
            )));
        }
        graph.identity_graph = Some(Box::new(base));
    }
    Ok(graph)
}

/// [`translate`], with sources carrying rows for windows' late data when
/// `keeps_late_rows`.
fn translate_keeping(
    job: &CompiledJob,
    registry: &ConnectorRegistry,
    parallelism: usize,
    keeps_late_rows: bool,
) -> Result<JobGraph> {
    let parallelism = parallelism.max(1);
    for table in job.tables.values() {
        registry.check_options(table)?;
    }
    let mut t = Translator {
        graph: JobGraph {
            name: job.name.clone(),
            mode: job.mode,
            nodes: Vec::new(),
            edges: Vec::new(),
            identity_graph: None,
        },
        registry,
        context: ConnectorContext {
            mode: job.mode,
            parallelism,
            overwrite: false,
        },
        parallelism,
        sources: HashMap::new(),
        props: ExecutionProps::new(),
        location: String::new(),
        written: HashMap::new(),
        state_ttl: state_ttl(&job.settings)?,
        keeps_late_rows,
    };
    // Every INSERT reading a table shares one source that reads the union of
    // the columns they need.
    let mut needed: HashMap<String, BTreeSet<usize>> = HashMap::new();
    let mut windowed = BTreeSet::new();
    for insert in &job.inserts {
        collect_scans(&insert.query, &mut needed, &mut windowed);
    }
    let mut tables: Vec<_> = needed.into_iter().collect();
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, columns) in tables {
        let table = job
            .tables
            .get(&name)
            .ok_or_else(|| SluiceError::plan(format!("table `{name}` is not declared")))?;
        let carries_rows = t.keeps_late_rows && windowed.contains(&name);
        t.add_source(table, columns, carries_rows)?;
    }
    for insert in &job.inserts {
        t.location = insert.location.clone();
        let planned = t.plan(&insert.query, false)?;
        let stream = t.materialize(planned)?;
        let properties = t.properties(stream.node);
        t.add_sink(&insert.sink, stream, &properties, insert.overwrite)?;
    }
    Ok(t.graph)
}

/// Columns of each table that some scan needs, and the tables a window
/// reads rows of as they were read (through projections and filters only):
/// those whose rows a late-data output keeps whole.
fn collect_scans(
    plan: &LogicalPlan,
    needed: &mut HashMap<String, BTreeSet<usize>>,
    windowed: &mut BTreeSet<String>,
) {
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(table) =
                (scan.source.as_ref() as &dyn std::any::Any).downcast_ref::<DeclaredTable>()
        {
            let entry = needed.entry(table.0.name.clone()).or_default();
            match &scan.projection {
                Some(p) => entry.extend(p.iter().copied()),
                None => entry.extend(0..table.0.schema.fields().len()),
            }
        }
        if let LogicalPlan::Extension(ext) = node
            && let Some(tvf) = ext.node.as_any().downcast_ref::<WindowTvf>()
        {
            collect_scans(&tvf.input, needed, windowed);
        }
        // A window sets rows aside where it is aggregated or joined (a
        // session window writes its late rows as its columns).
        let consumed: Vec<&LogicalPlan> = match node {
            LogicalPlan::Aggregate(agg) => vec![&agg.input],
            LogicalPlan::Join(join) => vec![&join.left, &join.right],
            _ => Vec::new(),
        };
        for input in consumed {
            if let LogicalPlan::Extension(ext) = through_rows(input)
                && let Some(tvf) = ext.node.as_any().downcast_ref::<WindowTvf>()
                && !matches!(tvf.kind, WindowKind::Session { .. })
                && let LogicalPlan::TableScan(scan) = through_rows(&tvf.input)
                && let Some(table) =
                    (scan.source.as_ref() as &dyn std::any::Any).downcast_ref::<DeclaredTable>()
            {
                windowed.insert(table.0.name.clone());
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
}

/// The first node below `plan` that is not a projection, filter or alias:
/// what the rows of `plan` are, row for row.
fn through_rows(mut plan: &LogicalPlan) -> &LogicalPlan {
    loop {
        plan = match plan {
            LogicalPlan::Projection(p) => &p.input,
            LogicalPlan::Filter(f) => &f.input,
            LogicalPlan::SubqueryAlias(a) => &a.input,
            other => return other,
        };
    }
}

/// Rows with a known layout: the output of `node`, described by `schema`.
#[derive(Debug, Clone)]
struct Stream {
    node: NodeId,
    schema: DFSchemaRef,
}

enum Planned {
    Stream(Stream),
    Window(PendingWindow),
}

struct Translator<'a> {
    graph: JobGraph,
    registry: &'a ConnectorRegistry,
    context: ConnectorContext,
    parallelism: usize,
    /// Source node and its columns (table indices) per table.
    sources: HashMap<String, (NodeId, Vec<usize>)>,
    props: ExecutionProps,
    /// `file:line` of the INSERT being translated, for messages.
    location: String,
    /// The tables INSERTs write, with the first one's `file:line` and
    /// whether it overwrites.
    written: HashMap<String, (String, bool)>,
    /// `'table.exec.state.ttl'`: how long updating operators keep state no
    /// row touches.
    state_ttl: Option<crate::time::Millis>,
    /// `'sluice.late-data.path'` is set: windows' late rows are kept as
    /// their sources read them.
    keeps_late_rows: bool,
}

/// The key of Flink's state time-to-live setting.
pub const STATE_TTL: &str = "table.exec.state.ttl";

/// `'table.exec.state.ttl'` of the job's settings: none, or `0`, keeps
/// state forever, as in Flink.
fn state_ttl(
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<Option<crate::time::Millis>> {
    let Some(text) = settings.get(STATE_TTL) else {
        return Ok(None);
    };
    let ttl = crate::sql::options::parse_duration(text).ok_or_else(|| {
        SluiceError::plan(format!(
            "SET '{STATE_TTL}' = '{text}': not a duration (e.g. '1 h', '30 min', '3600000 ms')"
        ))
    })?;
    let ms = ttl.as_millis().min(i64::MAX as u128) as i64;
    Ok((ms > 0).then_some(ms))
}

/// The planning rule of each logical node Sluice runs.
enum Rule<'p> {
    Scan(&'p logical::TableScan),
    Projection(&'p logical::Projection),
    Filter(&'p logical::Filter),
    Alias(&'p logical::SubqueryAlias),
    WindowTvf(&'p WindowTvf, &'p DFSchemaRef),
    Aggregate(&'p logical::Aggregate),
    Union(&'p logical::Union),
    Join(&'p logical::Join),
}

impl<'p> Rule<'p> {
    /// The rule of `plan`, or why Sluice cannot run that node whatever its
    /// inputs are.
    fn of(plan: &'p LogicalPlan) -> std::result::Result<Self, String> {
        Ok(match plan {
            LogicalPlan::TableScan(scan) => Rule::Scan(scan),
            LogicalPlan::Projection(p) => {
                projection::check(p)?;
                Rule::Projection(p)
            }
            LogicalPlan::Filter(f) => Rule::Filter(f),
            LogicalPlan::SubqueryAlias(a) => Rule::Alias(a),
            LogicalPlan::Extension(ext) => match ext.node.as_any().downcast_ref::<WindowTvf>() {
                Some(tvf) => Rule::WindowTvf(tvf, ext.node.schema()),
                None => return Err(format!("unsupported plan node {}", ext.node.name())),
            },
            LogicalPlan::Aggregate(agg) => Rule::Aggregate(agg),
            LogicalPlan::Union(u) => Rule::Union(u),
            LogicalPlan::Join(j) => {
                join::check(j)?;
                Rule::Join(j)
            }
            other => {
                return Err(format!(
                    "{} is not supported in Sluice jobs yet",
                    describe_unsupported(other)
                ));
            }
        })
    }

    /// The logical inputs, in port order.
    fn inputs(&self) -> Vec<&'p LogicalPlan> {
        match self {
            Rule::Scan(_) => Vec::new(),
            Rule::Projection(p) => vec![p.input.as_ref()],
            Rule::Filter(f) => vec![f.input.as_ref()],
            Rule::Alias(a) => vec![a.input.as_ref()],
            Rule::WindowTvf(tvf, _) => vec![&tvf.input],
            Rule::Aggregate(agg) => vec![agg.input.as_ref()],
            Rule::Union(u) => u.inputs.iter().map(AsRef::as_ref).collect(),
            Rule::Join(j) => vec![j.left.as_ref(), j.right.as_ref()],
        }
    }

    /// Whether the rule's inputs are to carry the rows their sources read
    /// ([`crate::ops::late_row`]), when this node's are (`carried`) or when
    /// a window's late rows are kept whole.
    fn inputs_carry_rows(&self, carried: bool, keeps_late_rows: bool) -> bool {
        match self {
            Rule::Projection(_) | Rule::Filter(_) | Rule::Alias(_) => carried,
            Rule::WindowTvf(..) => keeps_late_rows,
            _ => false,
        }
    }

    /// Whether the rule takes its inputs as rows: a pending window is then
    /// materialized as soon as it is planned, before the next input is.
    fn needs_rows(&self) -> bool {
        matches!(self, Rule::Union(_) | Rule::Join(_))
    }
}

/// One planned input of a node, with its properties (those of the rows a
/// pending window reads).
struct Input {
    planned: Planned,
    properties: Properties,
}

/// The one input of a single-input rule.
fn one(inputs: Vec<Input>) -> Result<Input> {
    let n = inputs.len();
    let mut inputs = inputs.into_iter();
    match (inputs.next(), inputs.next()) {
        (Some(input), None) => Ok(input),
        _ => Err(SluiceError::plan(format!(
            "a node with one input was planned with {n}"
        ))),
    }
}

impl Planned {
    /// The node whose rows this is, or which a pending window reads.
    fn rows_node(&self) -> NodeId {
        match self {
            Planned::Stream(s) => s.node,
            Planned::Window(w) => w.input.node,
        }
    }
}

impl Translator<'_> {
    fn error(&self, message: impl std::fmt::Display) -> SluiceError {
        SluiceError::plan(format!("{}: {message}", self.location))
    }

    fn add_node(&mut self, kind: NodeKind, parallelism: usize, schema: SchemaRef) -> NodeId {
        let id = self.graph.nodes.len();
        self.graph.nodes.push(Node {
            id,
            kind,
            parallelism,
            schema,
        });
        id
    }

    fn connect(&mut self, from: NodeId, to: NodeId, partitioning: Partitioning) {
        let partitioning = match partitioning {
            Partitioning::Forward
                if self.graph.node(from).parallelism != self.graph.node(to).parallelism =>
            {
                if self.graph.node(to).parallelism == 1 {
                    Partitioning::Single
                } else if self.updates(from) {
                    // A row and its retraction must take one path, in
                    // order: by the hash of the whole row, not round-robin.
                    Partitioning::Hash(self.row_columns(from))
                } else {
                    Partitioning::Rebalance
                }
            }
            p => p,
        };
        let port = self.graph.inputs(to).count();
        self.graph.edges.push(Edge {
            from,
            to,
            partitioning,
            port,
        });
    }

    /// Adds `op` after `input`, chained (forward) unless told otherwise.
    fn add_operator(
        &mut self,
        input: NodeId,
        op: Arc<dyn OperatorFactory>,
        schema: SchemaRef,
        partitioning: Partitioning,
        parallelism: usize,
    ) -> NodeId {
        let id = self.add_node(NodeKind::Operator(op), parallelism, schema);
        self.connect(input, id, partitioning);
        id
    }

    fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        let subquery = expr
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::InSubquery(_) | Expr::Exists(_) | Expr::ScalarSubquery(_)
                ))
            })
            .unwrap_or(false);
        if subquery {
            return Err(self.error(format!(
                "{expr}: a subquery in an expression (IN, EXISTS, or a scalar subquery) is not supported yet; write a JOIN"
            )));
        }
        create_physical_expr(
            expr,
            schema,
            &self.props,
            &PhysicalPlanningContext::default(),
        )
        .map_err(|e| self.error(format!("{expr}: {}", crate::sql::df_message(&e))))
    }

    /// Plans `plan` bottom-up: its rule checks it, its inputs are planned,
    /// and the rule builds it from them. Its rows carry the rows their
    /// sources read when `carry_rows` and a source does.
    fn plan(&mut self, plan: &LogicalPlan, carry_rows: bool) -> Result<Planned> {
        let rule = Rule::of(plan).map_err(|message| self.error(message))?;
        let carry_inputs = rule.inputs_carry_rows(carry_rows, self.keeps_late_rows);
        let mut inputs = Vec::new();
        for input in rule.inputs() {
            let mut planned = self.plan(input, carry_inputs)?;
            if rule.needs_rows() {
                planned = Planned::Stream(match rule {
                    Rule::Join(_) => self.materialize_carrying(planned)?,
                    _ => self.materialize(planned)?,
                });
            }
            let properties = self.properties(planned.rows_node());
            inputs.push(Input {
                planned,
                properties,
            });
        }
        match rule {
            Rule::Scan(scan) => self.scan(scan, carry_rows),
            Rule::Projection(p) => self.projection(p, one(inputs)?),
            Rule::Filter(f) => self.filter(f, one(inputs)?),
            Rule::Alias(a) => Ok(match one(inputs)?.planned {
                Planned::Stream(s) => Planned::Stream(Stream {
                    node: s.node,
                    schema: Arc::clone(&a.schema),
                }),
                Planned::Window(mut w) => {
                    w.schema = Arc::clone(&a.schema);
                    Planned::Window(w)
                }
            }),
            Rule::WindowTvf(tvf, schema) => self.window_tvf(tvf, schema, one(inputs)?),
            Rule::Aggregate(agg) => self.aggregate(agg, one(inputs)?),
            Rule::Union(u) => self.union(u, inputs),
            Rule::Join(j) => {
                let [left, right]: [Input; 2] = inputs
                    .try_into()
                    .map_err(|_| self.error("a JOIN without two inputs"))?;
                self.join(j, [left, right])
            }
        }
    }
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

fn describe_unsupported(plan: &LogicalPlan) -> String {
    match plan {
        LogicalPlan::Sort(_) => "ORDER BY".to_string(),
        LogicalPlan::Limit(_) => "LIMIT".to_string(),
        LogicalPlan::Window(_) => "OVER (window functions)".to_string(),
        LogicalPlan::Values(_) => "VALUES".to_string(),
        LogicalPlan::Subquery(_) => "a subquery".to_string(),
        other => format!("`{}`", other.display()),
    }
}
