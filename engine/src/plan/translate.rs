//! From DataFusion logical plans to Sluice's job graph.
//!
//! The walk is bottom-up over each `INSERT`'s plan. A window TVF does not
//! become an operator by itself: it yields a *pending window* (its input plus
//! the window kind), and what consumes it decides: an aggregate grouped by
//! `window_start, window_end` becomes a sliced window aggregation; anything
//! else materializes the window columns with a `WindowAssign` operator.
//! Projections and filters between the TVF and the aggregate are applied to
//! the TVF's input, as long as they do not compute on window columns.
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

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DFSchemaRef};
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use super::{Edge, JobGraph, Node, NodeId, NodeKind, Partitioning, SinkNode, SourceNode};
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
    };
    // Every INSERT reading a table shares one source that reads the union of
    // the columns they need.
    let mut needed: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for insert in &job.inserts {
        collect_scans(&insert.query, &mut needed);
    }
    let mut tables: Vec<_> = needed.into_iter().collect();
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, columns) in tables {
        let table = job
            .tables
            .get(&name)
            .ok_or_else(|| SluiceError::plan(format!("table `{name}` is not declared")))?;
        t.add_source(table, columns)?;
    }
    for insert in &job.inserts {
        t.location = insert.location.clone();
        let planned = t.plan(&insert.query)?;
        let stream = t.materialize(planned)?;
        t.add_sink(&insert.sink, stream, insert.overwrite)?;
    }
    Ok(t.graph)
}

/// Columns of each table that some scan needs.
fn collect_scans(plan: &LogicalPlan, needed: &mut HashMap<String, BTreeSet<usize>>) {
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
            collect_scans(&tvf.input, needed);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
}

/// Rows with a known layout: the output of `node`, described by `schema`.
#[derive(Debug, Clone)]
struct Stream {
    node: NodeId,
    schema: DFSchemaRef,
}

/// A window TVF not yet turned into an operator.
#[derive(Debug, Clone)]
struct PendingWindow {
    input: Stream,
    kind: WindowKind,
    time_index: usize,
    /// Where each column of `schema` comes from.
    layout: Vec<Col>,
    schema: DFSchemaRef,
    /// `PARTITION BY` keys of a session window, over `input`.
    partition_keys: Vec<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Input(usize),
    Window(WindowColumn),
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

    fn add_source(&mut self, table: &Arc<TableDef>, mut columns: BTreeSet<usize>) -> Result<()> {
        let schema = &table.schema;
        crate::changelog::check_no_reserved_column(&table.name, schema)?;
        let source = self.registry.create_source(table, &self.context)?;
        let changes = source.changes();
        if changes == SourceChanges::Upsert {
            if table.primary_key.is_empty() {
                return Err(SluiceError::plan(format!(
                    "{}: table `{}` is read as upserts, which needs a PRIMARY KEY (...) NOT ENFORCED",
                    table.declared_at, table.name
                )));
            }
            // Upserts are normalised by their key.
            columns.extend(table.primary_key.iter().copied());
        }
        // The rowtime column and whatever the watermark reads are always read.
        if let Some(wm) = &table.watermark {
            for c in wm
                .expr
                .column_refs()
                .into_iter()
                .chain([&Column::from_name(&wm.column)])
            {
                if let Ok(i) = schema.index_of(&c.name) {
                    columns.insert(i);
                }
            }
        }
        let projection: Vec<usize> = columns.into_iter().collect();
        let projected = Arc::new(
            schema
                .project(&projection)
                .map_err(|e| SluiceError::plan(format!("table `{}`: {e}", table.name)))?,
        );
        let watermark = match &table.watermark {
            Some(wm) => {
                let df_schema =
                    DFSchema::try_from_qualified_schema(table.name.as_str(), &projected)
                        .map_err(|e| SluiceError::plan(e.to_string()))?;
                Some(
                    create_physical_expr(
                        &wm.expr,
                        &df_schema,
                        &self.props,
                        &PhysicalPlanningContext::default(),
                    )
                    .map_err(|e| {
                        SluiceError::plan(format!(
                            "{}: WATERMARK FOR `{}`: {}",
                            table.declared_at,
                            wm.column,
                            crate::sql::df_message(&e)
                        ))
                    })?,
                )
            }
            None => None,
        };
        let (read, read_schema, mut compute) = self.source_columns(table, &projection)?;
        let schema = match changes {
            SourceChanges::InsertOnly => projected,
            // The row kinds pass through the computed columns. A
            // tombstone's columns outside the key are null.
            SourceChanges::Retract | SourceChanges::Unordered | SourceChanges::Upsert => {
                let projected = match changes {
                    SourceChanges::Upsert => Arc::new(Schema::new(
                        projection
                            .iter()
                            .zip(projected.fields())
                            .map(|(c, f)| {
                                let in_key = table.primary_key.contains(c);
                                f.as_ref().clone().with_nullable(f.is_nullable() || !in_key)
                            })
                            .collect::<Vec<_>>(),
                    )),
                    _ => projected,
                };
                if let Some(exprs) = &mut compute {
                    exprs.push(Arc::new(
                        datafusion::physical_expr::expressions::Column::new(
                            crate::changelog::ROW_KIND,
                            read.len(),
                        ),
                    ));
                }
                crate::changelog::with_row_kind(&projected)
            }
        };
        let id = self.add_node(
            NodeKind::Source(SourceNode {
                table: Arc::clone(table),
                source,
                projection: read,
                read_schema,
                compute,
                watermark,
            }),
            self.parallelism,
            schema,
        );
        let id = self.normalize_changes(table, id, changes, &projection)?;
        self.sources.insert(table.name.clone(), (id, projection));
        Ok(())
    }

    /// What follows a source of changes. In stream mode a retract
    /// changelog goes on as it is, and upserts are normalised by key into
    /// one ([`UpsertNormalize`]). In batch mode both become the final
    /// table, sent as inserts once the input ended: the last value of
    /// each key, or every row the changelog left standing
    /// ([`ChangelogMaterialize`]), so batch operators never see a
    /// retraction and the answer does not depend on the order in which
    /// files or partitions were read. A changelog in no order (files) is
    /// read as its table in stream mode too.
    fn normalize_changes(
        &mut self,
        table: &TableDef,
        source: NodeId,
        changes: SourceChanges,
        projection: &[usize],
    ) -> Result<NodeId> {
        let batch = self.context.mode == crate::sql::Mode::Batch;
        let schema = Arc::clone(&self.graph.node(source).schema);
        let data = crate::changelog::without_row_kind(&schema);
        let columns = |schema: &Schema, indices: &[usize]| -> Vec<Arc<dyn PhysicalExpr>> {
            indices
                .iter()
                .map(|&c| {
                    Arc::new(datafusion::physical_expr::expressions::Column::new(
                        schema.field(c).name(),
                        c,
                    )) as Arc<dyn PhysicalExpr>
                })
                .collect()
        };
        match changes {
            SourceChanges::InsertOnly => Ok(source),
            SourceChanges::Retract if !batch => Ok(source),
            SourceChanges::Retract | SourceChanges::Unordered => {
                let op = ChangelogMaterialize::new(&table.name, Arc::clone(&data));
                let all: Vec<usize> = (0..data.fields().len()).collect();
                let keys = columns(&data, &all);
                Ok(self.add_operator(
                    source,
                    Arc::new(op),
                    data,
                    Partitioning::Hash(keys),
                    self.parallelism,
                ))
            }
            SourceChanges::Upsert => {
                let key: Vec<usize> = table
                    .primary_key
                    .iter()
                    .map(|k| {
                        projection.iter().position(|c| c == k).ok_or_else(|| {
                            SluiceError::plan(format!(
                                "table `{}`: the source does not read its key column {k}",
                                table.name
                            ))
                        })
                    })
                    .collect::<Result<_>>()?;
                let keys = columns(&data, &key);
                let op = UpsertNormalize::new(Arc::clone(&data), key, batch, self.state_ttl);
                let output = match batch {
                    true => data,
                    false => schema,
                };
                Ok(self.add_operator(
                    source,
                    Arc::new(op),
                    output,
                    Partitioning::Hash(keys),
                    self.parallelism,
                ))
            }
        }
    }

    /// The physical columns to read for the table's columns `projection`,
    /// their schema, and (when some are computed) the expressions that make
    /// the projected columns from them.
    #[allow(clippy::type_complexity)]
    fn source_columns(
        &self,
        table: &TableDef,
        projection: &[usize],
    ) -> Result<(Vec<usize>, SchemaRef, Option<Vec<Arc<dyn PhysicalExpr>>>)> {
        let fail = |e: &dyn std::fmt::Display| {
            SluiceError::plan(format!(
                "{}: table `{}`: {e}",
                table.declared_at, table.name
            ))
        };
        if table.computed.is_empty() {
            let schema = table.physical.project(projection).map_err(|e| fail(&e))?;
            return Ok((projection.to_vec(), Arc::new(schema), None));
        }
        let computed = |i: usize| table.computed.iter().find(|(c, _)| *c == i).map(|c| &c.1);
        let mut read = BTreeSet::new();
        for &i in projection {
            let names: Vec<String> = match computed(i) {
                Some(expr) => expr
                    .column_refs()
                    .into_iter()
                    .map(|c| c.name.clone())
                    .collect(),
                None => vec![table.schema.field(i).name().clone()],
            };
            for name in names {
                read.insert(table.physical.index_of(&name).map_err(|e| fail(&e))?);
            }
        }
        let read: Vec<usize> = read.into_iter().collect();
        let read_schema = Arc::new(table.physical.project(&read).map_err(|e| fail(&e))?);
        let df_schema = DFSchema::try_from_qualified_schema(table.name.as_str(), &read_schema)
            .map_err(|e| fail(&e))?;
        let exprs = projection
            .iter()
            .map(|&i| {
                let expr = match computed(i) {
                    Some(expr) => expr.clone(),
                    None => Expr::Column(Column::new(
                        Some(table.name.as_str()),
                        table.schema.field(i).name(),
                    )),
                };
                create_physical_expr(
                    &expr,
                    &df_schema,
                    &self.props,
                    &PhysicalPlanningContext::default(),
                )
                .map_err(|e| fail(&crate::sql::df_message(&e)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((read, read_schema, Some(exprs)))
    }

    /// The name of an unbounded source that `node` reads, if any.
    fn add_sink(&mut self, table: &Arc<TableDef>, stream: Stream, overwrite: bool) -> Result<()> {
        let context = ConnectorContext {
            overwrite,
            ..self.context.clone()
        };
        let sink = self.registry.create_sink(table, &context)?;
        if let Some((first, first_overwrites)) = self.written.get(&table.name) {
            if overwrite || *first_overwrites || !sink.allows_several_inserts() {
                return Err(self.error(format!(
                    "table `{}` is written by an INSERT at {first} already; its output is committed as one (its completeness marker, or the files an INSERT OVERWRITE replaces), so write one INSERT of a UNION ALL",
                    table.name
                )));
            }
        } else {
            self.written
                .insert(table.name.clone(), (self.location.clone(), overwrite));
        }
        let from = stream.schema.inner();
        if from.fields().len() != table.schema.fields().len() {
            return Err(self.error(format!(
                "the query yields {} columns but table `{}` has {}",
                from.fields().len(),
                table.name,
                table.schema.fields().len()
            )));
        }
        crate::changelog::check_no_reserved_column(&table.name, &table.schema)?;
        if self.updates(stream.node) && !sink.accepts_changes() {
            return Err(self.error(format!(
                "table `{}` ({}) takes inserts only, but {} sends it updates and deletes: \
                 write them to a sink that takes a changelog ('upsert-kafka', 'print', 'blackhole', or a filesystem table in 'format' = 'debezium-json'), \
                 or compute final results (aggregate over a window TVF, or run in batch mode)",
                table.name,
                sink.describe(),
                self.origin_of_updates(stream.node)
            )));
        }
        // An upsert sink whose key is not the one its input updates by
        // takes its changes through a materializer.
        let mut input = stream.node;
        let mut materialized = false;
        if let Some(key) = sink.input_key()
            && self.updates(input)
            && !self
                .graph
                .upsert_key(input)
                .is_some_and(|upstream| upstream.iter().all(|k| key.contains(k)))
        {
            input = self.add_upsert_materializer(input, &key);
            materialized = true;
        }
        let parallelism = self.graph.node(input).parallelism;
        let schema = self.physical_schema(&table.schema, input);
        // An upsert sink's writers each take all changes of their keys
        // (the materializer's subtasks already hold them so).
        let partitioning = match sink.input_key() {
            Some(_) if materialized => Partitioning::Forward,
            Some(columns) => Partitioning::Hash(
                columns
                    .iter()
                    .map(|&c| {
                        Arc::new(datafusion::physical_expr::expressions::Column::new(
                            from.field(c).name(),
                            c,
                        )) as Arc<dyn PhysicalExpr>
                    })
                    .collect(),
            ),
            None => Partitioning::Forward,
        };
        let parallelism = match partitioning {
            Partitioning::Hash(_) => self.parallelism,
            _ => parallelism,
        };
        let id = self.add_node(
            NodeKind::Sink(SinkNode {
                table: Arc::clone(table),
                sink,
                overwrite,
            }),
            parallelism,
            schema,
        );
        self.connect(input, id, partitioning);
        Ok(())
    }

    /// An [`UpsertMaterialize`](crate::ops::upsert_materialize) after
    /// `input`, hash-partitioned by the sink's primary key `key`.
    fn add_upsert_materializer(&mut self, input: NodeId, key: &[usize]) -> NodeId {
        let schema = Arc::clone(&self.graph.node(input).schema);
        let data = crate::changelog::without_row_kind(&schema);
        let keys = key
            .iter()
            .map(|&c| {
                Arc::new(datafusion::physical_expr::expressions::Column::new(
                    data.field(c).name(),
                    c,
                )) as Arc<dyn PhysicalExpr>
            })
            .collect();
        let op = crate::ops::upsert_materialize::UpsertMaterialize {
            schema: data,
            key: key.to_vec(),
        };
        self.add_operator(
            input,
            Arc::new(op),
            schema,
            Partitioning::Hash(keys),
            self.parallelism,
        )
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

    fn plan(&mut self, plan: &LogicalPlan) -> Result<Planned> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let Some(table) =
                    (scan.source.as_ref() as &dyn std::any::Any).downcast_ref::<DeclaredTable>()
                else {
                    return Err(self.error(format!("cannot read `{}`", scan.table_name)));
                };
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Err(
                        self.error("filters and limits pushed into scans are not supported")
                    );
                }
                let (node, read) = self
                    .sources
                    .get(&table.0.name)
                    .cloned()
                    .ok_or_else(|| self.error(format!("no source for `{}`", table.0.name)))?;
                let wanted: Vec<usize> = scan
                    .projection
                    .clone()
                    .unwrap_or_else(|| (0..table.0.schema.fields().len()).collect());
                let stream = Stream {
                    node,
                    schema: Arc::clone(&scan.projected_schema),
                };
                if wanted == read {
                    return Ok(Planned::Stream(stream));
                }
                // Select this scan's columns from what the shared source reads.
                let source_schema = self.graph.node(node).schema.clone();
                let exprs: Vec<Arc<dyn PhysicalExpr>> = wanted
                    .iter()
                    .map(|c| {
                        // The source reads every column any scan of it wants.
                        let at = read.iter().position(|r| r == c).ok_or_else(|| {
                            self.error(format!(
                                "the source of `{}` does not read its column {c}",
                                table.0.name
                            ))
                        })?;
                        Ok(
                            Arc::new(datafusion::physical_expr::expressions::Column::new(
                                source_schema.field(at).name(),
                                at,
                            )) as Arc<dyn PhysicalExpr>,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut exprs = exprs;
                if self.updates(node) {
                    exprs.push(Arc::new(
                        datafusion::physical_expr::expressions::Column::new(
                            crate::changelog::ROW_KIND,
                            read.len(),
                        ),
                    ));
                }
                let schema = self.physical_schema(scan.projected_schema.inner(), node);
                let project = Project::new(exprs, Arc::clone(&schema));
                let id = self.add_operator(
                    node,
                    Arc::new(project),
                    schema,
                    Partitioning::Forward,
                    self.parallelism,
                );
                Ok(Planned::Stream(Stream {
                    node: id,
                    schema: Arc::clone(&scan.projected_schema),
                }))
            }
            LogicalPlan::Projection(p) if p.schema.fields().iter().any(|f| f.name() == crate::changelog::ROW_KIND) => {
                Err(self.error(format!(
                    "a column may not be named `{}`: that name is reserved for the row kinds of updating streams",
                    crate::changelog::ROW_KIND
                )))
            }
            LogicalPlan::Projection(p) => match self.plan(&p.input)? {
                Planned::Stream(input) => {
                    let exprs = p
                        .expr
                        .iter()
                        .map(|e| self.physical(e, &input.schema))
                        .collect::<Result<Vec<_>>>()?;
                    let identity = exprs.len() == input.schema.fields().len()
                        && exprs.iter().enumerate().all(|(i, e)| {
                            e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                                .is_some_and(|c| c.index() == i)
                        })
                        && p.schema
                            .fields()
                            .iter()
                            .zip(input.schema.fields())
                            .all(|(a, b)| a.name() == b.name());
                    if identity {
                        return Ok(Planned::Stream(Stream {
                            node: input.node,
                            schema: Arc::clone(&p.schema),
                        }));
                    }
                    // An updating stream's projection carries its row kinds.
                    let mut exprs = exprs;
                    let schema = self.physical_schema(p.schema.inner(), input.node);
                    if self.updates(input.node) {
                        exprs.push(Arc::new(
                            datafusion::physical_expr::expressions::Column::new(
                                crate::changelog::ROW_KIND,
                                input.schema.fields().len(),
                            ),
                        ));
                    }
                    let parallelism = self.graph.node(input.node).parallelism;
                    let id = self.add_operator(
                        input.node,
                        Arc::new(Project::new(exprs, Arc::clone(&schema))),
                        schema,
                        Partitioning::Forward,
                        parallelism,
                    );
                    Ok(Planned::Stream(Stream {
                        node: id,
                        schema: Arc::clone(&p.schema),
                    }))
                }
                Planned::Window(window) => self.project_window(window, &p.expr, &p.schema),
            },
            LogicalPlan::Filter(f) => match self.plan(&f.input)? {
                Planned::Stream(input) => {
                    let predicate = self.physical(&f.predicate, &input.schema)?;
                    let id = self.add_filter(&input, predicate);
                    Ok(Planned::Stream(Stream {
                        node: id,
                        schema: Arc::clone(f.input.schema()),
                    }))
                }
                Planned::Window(mut window) => {
                    let predicate = self.to_window_input(&f.predicate, &window)?;
                    let predicate = self.physical(&predicate, &window.input.schema)?;
                    window.input.node = self.add_filter(&window.input, predicate);
                    window.schema = Arc::clone(f.input.schema());
                    Ok(Planned::Window(window))
                }
            },
            LogicalPlan::SubqueryAlias(a) => Ok(match self.plan(&a.input)? {
                Planned::Stream(s) => Planned::Stream(Stream {
                    node: s.node,
                    schema: Arc::clone(&a.schema),
                }),
                Planned::Window(mut w) => {
                    w.schema = Arc::clone(&a.schema);
                    Planned::Window(w)
                }
            }),
            LogicalPlan::Extension(ext) => {
                let Some(tvf) = ext.node.as_any().downcast_ref::<WindowTvf>() else {
                    return Err(self.error(format!("unsupported plan node {}", ext.node.name())));
                };
                let input = match self.plan(&tvf.input)? {
                    Planned::Stream(s) => s,
                    Planned::Window(_) => {
                        return Err(self.error(
                            "a window TVF directly over another window TVF: aggregate the first one before windowing again",
                        ));
                    }
                };
                if self.updates(input.node) {
                    return Err(self.error(format!(
                        "a window TVF over rows that update (the results of {}): a window needs an insert-only input, as in Flink; window the rows before they are aggregated or joined",
                        self.origin_of_updates(input.node)
                    )));
                }
                // As in Flink, a regular join keeps no time attribute: a
                // joined row is as old as either of its rows, so no
                // watermark holds for it.
                if self.after_join(input.node) {
                    return Err(self.error(
                        "a window over the rows of a regular JOIN: they carry no event time a watermark holds (a joined row is as old as either of its rows), as in Flink; window each input before joining",
                    ));
                }
                let width = tvf.input_width();
                let layout = (0..width)
                    .map(Col::Input)
                    .chain(WindowColumn::ALL.into_iter().map(Col::Window))
                    .collect();
                Ok(Planned::Window(PendingWindow {
                    time_index: tvf.time_index(),
                    input,
                    kind: tvf.kind,
                    layout,
                    schema: Arc::clone(ext.node.schema()),
                    partition_keys: tvf.partition_keys.clone(),
                }))
            }
            LogicalPlan::Aggregate(agg) => {
                let planned = self.plan(&agg.input)?;
                self.aggregate(planned, &agg.group_expr, &agg.aggr_expr, &agg.schema)
            }
            LogicalPlan::Union(u) => {
                let mut inputs = Vec::new();
                for input in &u.inputs {
                    let planned = self.plan(input)?;
                    inputs.push(self.materialize(planned)?);
                }
                // When one input updates, the union does: the others' rows
                // are marked as inserts.
                let updates = inputs.iter().any(|i| self.updates(i.node));
                if updates {
                    for input in &mut inputs {
                        if !self.updates(input.node) {
                            input.node = self.mark_inserts(input);
                        }
                    }
                }
                let schema = match updates {
                    true => crate::changelog::with_row_kind(u.schema.inner()),
                    false => Arc::clone(u.schema.inner()),
                };
                let id = self.add_node(
                    NodeKind::Operator(Arc::new(Union)),
                    self.parallelism,
                    schema,
                );
                for input in inputs {
                    self.connect(input.node, id, Partitioning::Forward);
                }
                Ok(Planned::Stream(Stream {
                    node: id,
                    schema: Arc::clone(&u.schema),
                }))
            }
            LogicalPlan::Join(join) => self.join(join),
            other => Err(self.error(format!(
                "{} is not supported in Sluice jobs yet",
                describe_unsupported(other)
            ))),
        }
    }

    /// A regular join: its inputs hash-exchanged on their keys into one
    /// two-port operator (left port 0, right port 1).
    fn join(&mut self, join: &datafusion::logical_expr::Join) -> Result<Planned> {
        use crate::ops::join::JoinKind;
        use crate::ops::window_join::WindowJoinKind;
        use datafusion::logical_expr::JoinType;
        let window_kind = match join.join_type {
            JoinType::Inner => WindowJoinKind::Join(JoinKind::Inner),
            JoinType::Left => WindowJoinKind::Join(JoinKind::Left),
            JoinType::Right => WindowJoinKind::Join(JoinKind::Right),
            JoinType::Full => WindowJoinKind::Join(JoinKind::Full),
            JoinType::LeftSemi => WindowJoinKind::Semi(0),
            JoinType::RightSemi => WindowJoinKind::Semi(1),
            JoinType::LeftAnti => WindowJoinKind::Anti(0),
            JoinType::RightAnti => WindowJoinKind::Anti(1),
            // A subquery inside another condition (`x > 0 OR k IN (...)`).
            JoinType::LeftMark | JoinType::RightMark => {
                return Err(self.error(
                    "a subquery inside another condition (IN or EXISTS under OR or NOT) is not supported yet; write a JOIN",
                ));
            }
        };
        if join.null_aware {
            return Err(self.error(
                "NOT IN over a subquery whose column may be NULL is not supported: write NOT EXISTS, or declare the column NOT NULL",
            ));
        }
        if join.on.is_empty() && !matches!(window_kind, WindowJoinKind::Join(_)) {
            return Err(self.error(
                "an IN or EXISTS subquery needs an equality with the outer query (`WHERE outer.k = inner.k`): one on a condition alone would compare every row with every other",
            ));
        }
        if join.on.is_empty() {
            return Err(self.error(
                "a JOIN needs an equality between its two sides (`ON a.k = b.k`): a join on a condition alone would compare every row with every other",
            ));
        }
        let left = self.plan(&join.left)?;
        let left = self.materialize(left)?;
        let right = self.plan(&join.right)?;
        let right = self.materialize(right)?;
        let mut left_keys = Vec::with_capacity(join.on.len());
        let mut right_keys = Vec::with_capacity(join.on.len());
        for (l, r) in &join.on {
            let l = self.physical(l, &left.schema)?;
            let r = self.physical(r, &right.schema)?;
            let (lt, rt) = (
                l.data_type(left.schema.inner()),
                r.data_type(right.schema.inner()),
            );
            match (lt, rt) {
                (Ok(lt), Ok(rt)) if lt == rt => {}
                (Ok(lt), Ok(rt)) => {
                    return Err(self.error(format!(
                        "the JOIN keys `{}` and `{}` are {lt} and {rt}: cast one to the other's type",
                        crate::plan::sql_text::expr(l.as_ref()),
                        crate::plan::sql_text::expr(r.as_ref())
                    )));
                }
                (Err(e), _) | (_, Err(e)) => {
                    return Err(self.error(crate::sql::df_message(&e)));
                }
            }
            left_keys.push(l);
            right_keys.push(r);
        }
        // The condition reads both sides, whatever the join sends.
        let pairs = left
            .schema
            .join(&right.schema)
            .map_err(|e| self.error(crate::sql::df_message(&e)))?;
        let filter = join
            .filter
            .as_ref()
            .map(|f| self.physical(f, &pairs))
            .transpose()?;
        let input_updates = [self.updates(left.node), self.updates(right.node)];
        if input_updates == [false, false]
            && let Some(planned) = self.window_join(
                join,
                window_kind,
                [&left, &right],
                [&left_keys, &right_keys],
                &filter,
            )?
        {
            return Ok(planned);
        }
        let WindowJoinKind::Join(kind) = window_kind else {
            let (side, what) = match window_kind {
                WindowJoinKind::Semi(0) => ("LEFT", "SEMI"),
                WindowJoinKind::Semi(_) => ("RIGHT", "SEMI"),
                WindowJoinKind::Anti(0) => ("LEFT", "ANTI"),
                _ => ("RIGHT", "ANTI"),
            };
            return Err(self.error(format!(
                "a {side} {what} JOIN (from IN, EXISTS or their negations) is supported between windows only (a window join on both sides' window_start and window_end); write an INNER or OUTER JOIN"
            )));
        };
        // Batch mode pads an outer join's rows once the other input ended,
        // so that its result is final; stream mode pads them at once.
        let pad_at_end = self.context.mode == crate::sql::Mode::Batch;
        let updates = crate::ops::join::RegularJoin::updates(kind, input_updates, pad_at_end);
        let schema = Arc::clone(join.schema.inner());
        let op = crate::ops::join::RegularJoin {
            kind,
            left_keys: left_keys.clone(),
            right_keys: right_keys.clone(),
            filter,
            nulls_equal: join.null_equality == datafusion::common::NullEquality::NullEqualsNull,
            left_schema: Arc::clone(left.schema.inner()),
            right_schema: Arc::clone(right.schema.inner()),
            schema: Arc::clone(&schema),
            input_updates,
            pad_at_end,
            ttl: self.state_ttl.filter(|_| !pad_at_end),
        };
        let schema = match updates {
            true => crate::changelog::with_row_kind(&schema),
            false => schema,
        };
        let id = self.add_node(NodeKind::Operator(Arc::new(op)), self.parallelism, schema);
        self.connect(left.node, id, Partitioning::Hash(left_keys));
        self.connect(right.node, id, Partitioning::Hash(right_keys));
        Ok(Planned::Stream(Stream {
            node: id,
            schema: Arc::clone(&join.schema),
        }))
    }

    /// A join whose `ON` equates both inputs' `window_start` and
    /// `window_end` of windows of one kind, as a window join: the rest of
    /// the equalities are its keys. `None` when it is not one.
    fn window_join(
        &mut self,
        join: &datafusion::logical_expr::Join,
        kind: crate::ops::window_join::WindowJoinKind,
        inputs: [&Stream; 2],
        keys: [&[Arc<dyn PhysicalExpr>]; 2],
        filter: &Option<Arc<dyn PhysicalExpr>>,
    ) -> Result<Option<Planned>> {
        use datafusion::physical_expr::expressions::Column as PhysicalColumn;
        let bound = |side: usize, key: &Arc<dyn PhysicalExpr>| {
            key.downcast_ref::<PhysicalColumn>()
                .and_then(|c| self.window_bound(inputs[side].node, c.index()))
        };
        let (mut starts, mut ends) = (None, None);
        let mut rest: [Vec<Arc<dyn PhysicalExpr>>; 2] = [Vec::new(), Vec::new()];
        for (l, r) in keys[0].iter().zip(keys[1]) {
            match (bound(0, l), bound(1, r)) {
                (Some((WindowColumn::Start, a)), Some((WindowColumn::Start, b))) if a == b => {
                    starts = Some(a)
                }
                (Some((WindowColumn::End, a)), Some((WindowColumn::End, b))) if a == b => {
                    ends = Some((a, Arc::clone(l), Arc::clone(r)))
                }
                _ => {
                    rest[0].push(Arc::clone(l));
                    rest[1].push(Arc::clone(r));
                }
            }
        }
        let (Some(start_window), Some((window, left_end, right_end))) = (starts, ends) else {
            return Ok(None);
        };
        if start_window != window {
            return Ok(None);
        }
        if matches!(window, WindowKind::Session { .. } | WindowKind::Global) {
            return Err(self.error(
                "a window join of session windows is not supported (as in Flink): join TUMBLE, HOP or CUMULATE windows",
            ));
        }
        let end_index = |e: &Arc<dyn PhysicalExpr>| {
            e.downcast_ref::<PhysicalColumn>()
                .map(PhysicalColumn::index)
                .ok_or_else(|| self.error("a window's end is not a column"))
        };
        let ends_at = [end_index(&left_end)?, end_index(&right_end)?];
        let partitioning = [
            rest[0]
                .iter()
                .cloned()
                .chain([left_end])
                .collect::<Vec<_>>(),
            rest[1]
                .iter()
                .cloned()
                .chain([right_end])
                .collect::<Vec<_>>(),
        ];
        let schema = Arc::clone(join.schema.inner());
        let op = crate::ops::window_join::WindowJoin {
            kind,
            window,
            keys: rest,
            partitioning: partitioning.clone(),
            ends: ends_at,
            filter: filter.clone(),
            nulls_equal: join.null_equality == datafusion::common::NullEquality::NullEqualsNull,
            schemas: [
                Arc::clone(inputs[0].schema.inner()),
                Arc::clone(inputs[1].schema.inner()),
            ],
            schema: Arc::clone(&schema),
        };
        let id = self.add_node(NodeKind::Operator(Arc::new(op)), self.parallelism, schema);
        let [left, right] = partitioning;
        self.connect(inputs[0].node, id, Partitioning::Hash(left));
        self.connect(inputs[1].node, id, Partitioning::Hash(right));
        Ok(Some(Planned::Stream(Stream {
            node: id,
            schema: Arc::clone(&join.schema),
        })))
    }

    /// The window bound that column `column` of `node`'s rows is, followed
    /// back through the operators that pass it on unchanged.
    fn window_bound(
        &self,
        mut node: NodeId,
        mut column: usize,
    ) -> Option<(WindowColumn, WindowKind)> {
        loop {
            let NodeKind::Operator(op) = &self.graph.node(node).kind else {
                return None;
            };
            match op.column_origin(column) {
                crate::ops::ColumnOrigin::Window(bound, window) => return Some((bound, window)),
                crate::ops::ColumnOrigin::Input { port, column: at } => {
                    node = self.graph.inputs(node).find(|e| e.port == port)?.from;
                    column = at;
                }
                crate::ops::ColumnOrigin::Computed => return None,
            }
        }
    }

    /// Whether rows of `node` come through an operator that keeps no event
    /// time a watermark could hold (a regular join).
    fn after_join(&self, node: NodeId) -> bool {
        let mut stack = vec![node];
        let mut seen = BTreeSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let NodeKind::Operator(op) = &self.graph.node(id).kind
                && !op.keeps_event_time()
            {
                return true;
            }
            stack.extend(self.graph.inputs(id).map(|e| e.from));
        }
        false
    }

    /// Every column of `node`'s rows but the row kinds, as expressions.
    fn row_columns(&self, node: NodeId) -> Vec<Arc<dyn PhysicalExpr>> {
        let schema = &self.graph.node(node).schema;
        schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name() != crate::changelog::ROW_KIND)
            .map(|(i, f)| {
                Arc::new(datafusion::physical_expr::expressions::Column::new(
                    f.name(),
                    i,
                )) as Arc<dyn PhysicalExpr>
            })
            .collect()
    }

    /// Whether the rows of `node` can update (carry row kinds).
    fn updates(&self, node: NodeId) -> bool {
        self.graph.node(node).changelog().updates()
    }

    /// The schema a node computing `logical` rows from `input`'s has: with
    /// the row kinds when `input`'s rows update.
    fn physical_schema(&self, logical: &SchemaRef, input: NodeId) -> SchemaRef {
        match self.updates(input) {
            true => crate::changelog::with_row_kind(logical),
            false => Arc::clone(logical),
        }
    }

    /// The node whose rows start to update upstream of `node` (its updating
    /// inputs are followed to one whose own inputs do not update), as
    /// messages name it: `GroupAggregate(keys [...] aggs [...])`.
    fn origin_of_updates(&self, mut node: NodeId) -> String {
        while let Some(input) = self
            .graph
            .inputs(node)
            .map(|e| e.from)
            .find(|&i| self.updates(i))
        {
            node = input;
        }
        let n = self.graph.node(node);
        match &n.kind {
            NodeKind::Operator(op) => {
                // A long aggregate list is cut: the keys come first.
                const LONGEST: usize = 200;
                let details = op.describe();
                let details = match details.char_indices().nth(LONGEST) {
                    Some((at, _)) => format!("{}…", &details[..at]),
                    None => details,
                };
                format!("{}({details})", op.name())
            }
            _ => n.name(),
        }
    }

    /// An insert-only stream with a row-kind column of inserts added.
    fn mark_inserts(&mut self, input: &Stream) -> NodeId {
        use datafusion::physical_expr::expressions::{Column as ColumnExpr, Literal};
        let width = input.schema.fields().len();
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = input
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(ColumnExpr::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        exprs.push(Arc::new(Literal::new(
            datafusion::common::ScalarValue::Int8(Some(crate::changelog::RowKind::Insert.byte())),
        )));
        debug_assert_eq!(exprs.len(), width + 1);
        let schema = crate::changelog::with_row_kind(input.schema.inner());
        let parallelism = self.graph.node(input.node).parallelism;
        self.add_operator(
            input.node,
            Arc::new(Project::new(exprs, Arc::clone(&schema))),
            schema,
            Partitioning::Forward,
            parallelism,
        )
    }

    fn add_filter(&mut self, input: &Stream, predicate: Arc<dyn PhysicalExpr>) -> NodeId {
        let parallelism = self.graph.node(input.node).parallelism;
        let schema = self.physical_schema(input.schema.inner(), input.node);
        self.add_operator(
            input.node,
            Arc::new(Filter::new(predicate)),
            schema,
            Partitioning::Forward,
            parallelism,
        )
    }

    /// Rewrites `expr` over a pending window's columns into one over its input.
    fn to_window_input(&self, expr: &Expr, window: &PendingWindow) -> Result<Expr> {
        let input_schema = Arc::clone(&window.input.schema);
        let mut bad = None;
        let rewritten = expr
            .clone()
            .transform_up(|e| {
                let Expr::Column(c) = &e else {
                    return Ok(Transformed::no(e));
                };
                let Ok(i) = window.schema.index_of_column(c) else {
                    return Ok(Transformed::no(e));
                };
                match window.layout[i] {
                    Col::Input(j) => Ok(Transformed::yes(Expr::Column(Column::from(
                        input_schema.qualified_field(j),
                    )))),
                    Col::Window(w) => {
                        bad = Some(w);
                        Ok(Transformed::no(e))
                    }
                }
            })
            .map_err(|e| self.error(crate::sql::df_message(&e)))?
            .data;
        if let Some(w) = bad {
            return Err(self.error(format!(
                "`{expr}` computes on {} before the window is aggregated; Sluice supports window columns there only as plain GROUP BY keys",
                w.name()
            )));
        }
        Ok(rewritten)
    }

    fn project_window(
        &mut self,
        mut window: PendingWindow,
        exprs: &[Expr],
        schema: &DFSchemaRef,
    ) -> Result<Planned> {
        let mut layout = Vec::with_capacity(exprs.len());
        let mut computed: Vec<Expr> = Vec::new();
        let mut wanted_names = Vec::new();
        for (i, expr) in exprs.iter().enumerate() {
            if let Expr::Column(c) = unalias(expr)
                && let Ok(j) = window.schema.index_of_column(c)
            {
                layout.push(Some(window.layout[j]));
            } else {
                computed.push(self.to_window_input(expr, &window)?);
                wanted_names.push(schema.fields().get(i).map(|f| f.name().clone()));
                layout.push(None);
            }
        }
        if !computed.is_empty() {
            // Compute the new columns on the input, after its own.
            let input = &window.input;
            let width = input.schema.fields().len();
            let mut all: Vec<Expr> = (0..width)
                .map(|i| Expr::Column(Column::from(input.schema.qualified_field(i))))
                .collect();
            let mut taken: std::collections::HashSet<String> = input
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            for (k, e) in computed.iter().enumerate() {
                // The SELECT's own name (`bucket`), which plans and errors
                // show; numbered by position when the input has it already,
                // so projections over projections never name two alike.
                let name = match wanted_names.get(k).cloned().flatten() {
                    Some(name) if !taken.contains(&name) => name,
                    _ => format!("__sluice_computed_{}", width + k),
                };
                taken.insert(name.clone());
                all.push(e.clone().alias(name));
            }
            let fields = all
                .iter()
                .map(|e| {
                    e.to_field(&input.schema)
                        .map_err(|err| self.error(crate::sql::df_message(&err)))
                })
                .collect::<Result<Vec<_>>>()?;
            let new_schema = Arc::new(
                DFSchema::new_with_metadata(fields, Default::default())
                    .map_err(|e| self.error(crate::sql::df_message(&e)))?,
            );
            let physical = all
                .iter()
                .map(|e| self.physical(e, &input.schema))
                .collect::<Result<Vec<_>>>()?;
            let parallelism = self.graph.node(input.node).parallelism;
            let node = self.add_operator(
                input.node,
                Arc::new(Project::new(physical, Arc::clone(new_schema.inner()))),
                Arc::clone(new_schema.inner()),
                Partitioning::Forward,
                parallelism,
            );
            window.input = Stream {
                node,
                schema: new_schema,
            };
            let mut next = width;
            for slot in &mut layout {
                if slot.is_none() {
                    *slot = Some(Col::Input(next));
                    next += 1;
                }
            }
        }
        window.layout = layout.into_iter().flatten().collect();
        window.schema = Arc::clone(schema);
        Ok(Planned::Window(window))
    }

    /// Turns a pending window into rows: `WindowAssign`, then the layout.
    fn materialize(&mut self, planned: Planned) -> Result<Stream> {
        let window = match planned {
            Planned::Stream(s) => return Ok(s),
            Planned::Window(w) => w,
        };
        if matches!(window.kind, WindowKind::Session { .. }) {
            return Err(self.error(
                "a SESSION window must be aggregated: GROUP BY window_start, window_end (and keys)",
            ));
        }
        let input = &window.input;
        let width = input.schema.fields().len();
        let mut fields: Vec<_> = input.schema.inner().fields().iter().cloned().collect();
        for w in WindowColumn::ALL {
            fields.push(Arc::new(arrow::datatypes::Field::new(
                w.name(),
                arrow::datatypes::DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Millisecond,
                    None,
                ),
                false,
            )));
        }
        let assigned_schema = Arc::new(Schema::new(fields));
        let parallelism = self.graph.node(input.node).parallelism;
        let assign = self.add_operator(
            input.node,
            Arc::new(WindowAssign {
                kind: window.kind,
                time_index: window.time_index,
                schema: Arc::clone(&assigned_schema),
            }),
            Arc::clone(&assigned_schema),
            Partitioning::Forward,
            parallelism,
        );
        let exprs: Vec<Arc<dyn PhysicalExpr>> = window
            .layout
            .iter()
            .map(|c| {
                let i = match c {
                    Col::Input(i) => *i,
                    Col::Window(w) => {
                        width + WindowColumn::ALL.iter().position(|x| x == w).unwrap_or(0)
                    }
                };
                Arc::new(datafusion::physical_expr::expressions::Column::new(
                    assigned_schema.field(i).name(),
                    i,
                )) as Arc<dyn PhysicalExpr>
            })
            .collect();
        let schema = Arc::clone(window.schema.inner());
        let node = self.add_operator(
            assign,
            Arc::new(Project::new(exprs, Arc::clone(&schema))),
            schema,
            Partitioning::Forward,
            parallelism,
        );
        Ok(Stream {
            node,
            schema: window.schema,
        })
    }

    fn aggregate(
        &mut self,
        planned: Planned,
        group_expr: &[Expr],
        aggr_expr: &[Expr],
        schema: &DFSchemaRef,
    ) -> Result<Planned> {
        let (input, window) = match planned {
            Planned::Stream(s) => (s, None),
            Planned::Window(w) => (w.input.clone(), Some(w)),
        };
        let mut output = Vec::new();
        let mut keys = Vec::new();
        for expr in group_expr {
            let column = match (&window, unalias(expr)) {
                (Some(w), Expr::Column(c)) => w.schema.index_of_column(c).ok().map(|i| w.layout[i]),
                _ => None,
            };
            if let Some(Col::Window(w)) = column {
                output.push(OutputColumn::Window(w));
                continue;
            }
            let expr = match &window {
                Some(w) => self.to_window_input(expr, w)?,
                None => expr.clone(),
            };
            output.push(OutputColumn::Key(keys.len()));
            keys.push(expr);
        }
        if let Some(w) = &window
            && matches!(w.kind, WindowKind::Session { .. })
        {
            // Sessions are cut per PARTITION BY key; aggregating them by
            // other keys would mean something else than Flink means.
            let partition: Vec<String> = w
                .partition_keys
                .iter()
                .map(|k| unalias(k).to_string())
                .collect();
            let grouped: Vec<String> = keys.iter().map(|k| unalias(k).to_string()).collect();
            let same =
                partition.len() == grouped.len() && partition.iter().all(|p| grouped.contains(p));
            if !same {
                return Err(self.error(format!(
                    "a SESSION window must GROUP BY window_start, window_end and exactly its PARTITION BY keys ({}), not [{}]",
                    if partition.is_empty() { "none".to_string() } else { partition.join(", ") },
                    grouped.join(", ")
                )));
            }
        }
        let has = |c| output.contains(&OutputColumn::Window(c));
        if window.is_some() && !(has(WindowColumn::Start) && has(WindowColumn::End)) {
            return Err(
                self.error("a window aggregation must GROUP BY both window_start and window_end")
            );
        }
        // Grouped by an earlier window's bounds: a window aggregate again.
        let attached = match &window {
            None if !self.updates(input.node) => self.attached_window(&input, &keys),
            _ => None,
        };
        let input_schema = Arc::clone(&input.schema);
        let physical_keys = keys
            .iter()
            .map(|k| self.physical(k, &input_schema))
            .collect::<Result<Vec<_>>>()?;
        let mut aggregates = Vec::new();
        let mut filters = Vec::new();
        for (j, expr) in aggr_expr.iter().enumerate() {
            let expr = match &window {
                Some(w) => self.to_window_input(expr, w)?,
                None => expr.clone(),
            };
            let name = match &expr {
                Expr::Alias(a) => a.name.clone(),
                e => e.schema_name().to_string(),
            };
            let lowered = LoweredAggregateBuilder::new(
                &expr,
                &input_schema,
                input_schema.inner(),
                &self.props,
                &PhysicalPlanningContext::default(),
            )
            .with_name(name)
            .build()
            .map_err(|e| self.error(format!("{expr}: {}", crate::sql::df_message(&e))))?;
            let (aggregate, filter) = (lowered.aggregate, lowered.filter);
            // `WITHIN GROUP (ORDER BY x)` of ordered-set aggregates such as
            // percentiles only names the value; their accumulators order it
            // themselves. FIRST_VALUE and LAST_VALUE compare the ORDER BY
            // values row by row (DataFusion calls that a beneficial, not a
            // required, ordering), so they are right on unsorted input and
            // their states merge. Any other ORDER BY needs sorted input.
            let orders_itself = aggregate.fun().supports_within_group_clause()
                || aggregate.order_sensitivity() == AggregateOrderSensitivity::Beneficial;
            if !aggregate.order_bys().is_empty() && !orders_itself {
                return Err(self.error(format!(
                    "{expr}: ORDER BY inside an aggregate is not supported yet"
                )));
            }
            // DataFusion's accumulators count a repeated key once and its
            // state fields twice, which cannot be stored.
            let keys = aggregate.order_bys();
            if keys
                .iter()
                .enumerate()
                .any(|(i, k)| keys[..i].iter().any(|earlier| earlier.expr.eq(&k.expr)))
            {
                return Err(self.error(format!(
                    "{expr}: an ORDER BY key is repeated; name each key once"
                )));
            }
            aggregates.push(aggregate);
            filters.push(filter);
            output.push(OutputColumn::Aggregate(j));
        }
        let spec = Arc::new(AggregateSpec {
            key_schema: key_schema(&physical_keys, &key_names(&keys), input_schema.inner())?,
            keys: physical_keys.clone(),
            aggregates,
            filters,
            output,
            output_schema: Arc::clone(schema.inner()),
        });
        let (partitioning, parallelism) = if physical_keys.is_empty() {
            (Partitioning::Single, 1)
        } else {
            (Partitioning::Hash(physical_keys), self.parallelism)
        };
        let mut key_bounds = Vec::new();
        let mut input = input;
        let (kind, time_index) = match (&window, attached) {
            (Some(w), _) => (w.kind, Some(w.time_index)),
            (None, Some(attached)) => {
                let time_index;
                (input.node, time_index) = self.add_window_time(&input, attached.end_column)?;
                for (key, bound) in attached.keys {
                    let at = spec
                        .output
                        .iter()
                        .position(|o| *o == OutputColumn::Key(key))
                        .ok_or_else(|| self.error("a window bound is not among the keys"))?;
                    key_bounds.push((at, bound, attached.window));
                }
                (attached.granularity, Some(time_index))
            }
            (None, None) => match () {
                // A stream's groups never close: their results update.
                () if self.context.mode == crate::sql::Mode::Stream => {
                    return self.group_aggregate(input, spec, partitioning, parallelism, schema);
                }
                () if self.updates(input.node) => {
                    return Err(self.error(format!(
                        "an aggregate over rows that update (the results of {}) in batch mode",
                        self.origin_of_updates(input.node)
                    )));
                }
                () => (WindowKind::Global, None),
            },
        };
        let node = match (kind, time_index) {
            (WindowKind::Session { gap }, Some(time_index)) => self.add_operator(
                input.node,
                Arc::new(SessionAggregate {
                    gap,
                    time_index,
                    spec,
                }),
                Arc::clone(schema.inner()),
                partitioning,
                parallelism,
            ),
            _ => {
                // Two phases: partial states per slice and key before the
                // exchange, merged after it.
                let state_schema = state_schema(&spec)?;
                let local = self.add_operator(
                    input.node,
                    Arc::new(WindowAggregate {
                        kind,
                        key_bounds: Vec::new(),
                        time_index,
                        spec: Arc::clone(&spec),
                        phase: Phase::Local,
                    }),
                    Arc::clone(&state_schema),
                    Partitioning::Forward,
                    self.graph.node(input.node).parallelism,
                );
                let partitioning = match partitioning {
                    Partitioning::Hash(keys) => Partitioning::Hash(
                        (0..keys.len())
                            .map(|i| {
                                Arc::new(datafusion::physical_expr::expressions::Column::new(
                                    state_schema.field(i + 1).name(),
                                    i + 1,
                                )) as Arc<dyn PhysicalExpr>
                            })
                            .collect(),
                    ),
                    other => other,
                };
                self.add_operator(
                    local,
                    Arc::new(WindowAggregate {
                        kind,
                        key_bounds,
                        time_index: Some(0),
                        spec,
                        phase: Phase::Merge,
                    }),
                    Arc::clone(schema.inner()),
                    partitioning,
                    parallelism,
                )
            }
        };
        Ok(Planned::Stream(Stream {
            node,
            schema: Arc::clone(schema),
        }))
    }
}

/// An aggregate grouped by an earlier window's `window_start` and
/// `window_end` (a window aggregate's results, as Nexmark q5's `MaxBids`):
/// its groups are those windows, which close when the watermark passes
/// their end, so it is a window aggregate again, as Flink plans it (a
/// cascaded window aggregation). Its rows are windowed by a tumbling
/// window of the earlier windows' slice (which divides every end), over
/// `end - 1 ms`: each end falls in a window of its own, which fires when
/// the watermark passes that end. The bounds stay group keys, and stay bounds
/// for a window join after it.
struct AttachedWindow {
    /// The earlier windows.
    window: WindowKind,
    /// The tumbling window that fires them.
    granularity: WindowKind,
    /// The input column of their ends.
    end_column: usize,
    /// Which group keys are which bounds.
    keys: Vec<(usize, WindowColumn)>,
}

impl Translator<'_> {
    /// The earlier windows whose bounds `keys` (over `input`) group by, if
    /// they group by both.
    fn attached_window(&self, input: &Stream, keys: &[Expr]) -> Option<AttachedWindow> {
        let mut bounds = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            let Expr::Column(c) = unalias(key) else {
                continue;
            };
            let Ok(column) = input.schema.index_of_column(c) else {
                continue;
            };
            if let Some((bound, window)) = self.window_bound(input.node, column) {
                bounds.push((k, column, bound, window));
            }
        }
        let (_, end_column, _, window) = *bounds.iter().find(|b| b.2 == WindowColumn::End)?;
        let same: Vec<(usize, WindowColumn)> = bounds
            .iter()
            .filter(|b| b.3 == window)
            .map(|b| (b.0, b.2))
            .collect();
        if !same.iter().any(|b| b.1 == WindowColumn::Start) {
            return None;
        }
        // A slice divides every window end (a hop's is the gcd of its size
        // and slide): an end never shares a bucket that closes after it.
        let granularity = match window {
            WindowKind::Session { .. } | WindowKind::Global => return None,
            kind => kind.slice_len()?,
        };
        Some(AttachedWindow {
            window,
            granularity: WindowKind::Tumble { size: granularity },
            end_column,
            keys: same,
        })
    }

    /// `input`'s rows with one more column, `end - 1 ms` of the window end
    /// at `end`: the time a cascaded window aggregate windows them by.
    /// Gives the node and that column's index.
    fn add_window_time(&mut self, input: &Stream, end: usize) -> Result<(NodeId, usize)> {
        use datafusion::physical_expr::expressions::{
            BinaryExpr, Column as PhysicalColumn, Literal,
        };
        let schema = Arc::clone(&self.graph.node(input.node).schema);
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(PhysicalColumn::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let end_column = Arc::new(PhysicalColumn::new(schema.field(end).name(), end));
        let end_column = datafusion::physical_expr::expressions::cast(
            end_column,
            schema.as_ref(),
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
        )
        .map_err(|e| self.error(crate::sql::df_message(&e)))?;
        exprs.push(Arc::new(BinaryExpr::new(
            end_column,
            datafusion::logical_expr::Operator::Minus,
            Arc::new(Literal::new(
                datafusion::common::ScalarValue::DurationMillisecond(Some(1)),
            )),
        )));
        let mut fields: Vec<Arc<arrow::datatypes::Field>> =
            schema.fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            "__window_time",
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            true,
        )));
        let time = fields.len() - 1;
        let with_time = Arc::new(Schema::new(fields));
        let parallelism = self.graph.node(input.node).parallelism;
        let node = self.add_operator(
            input.node,
            Arc::new(Project::new(exprs, Arc::clone(&with_time))),
            with_time,
            Partitioning::Forward,
            parallelism,
        );
        Ok((node, time))
    }

    /// A non-windowed aggregation over a stream: one [`GroupAggregate`]
    /// after a hash exchange on its keys, sending updates.
    fn group_aggregate(
        &mut self,
        input: Stream,
        spec: Arc<AggregateSpec>,
        partitioning: Partitioning,
        parallelism: usize,
        schema: &DFSchemaRef,
    ) -> Result<Planned> {
        let input_updates = self.updates(input.node);
        let accumulations = spec
            .aggregates
            .iter()
            .map(|a| Accumulation::of(a, input.schema.inner(), input_updates))
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(|e| {
                self.error(format!(
                    "{e}; the input updates because of {}",
                    self.origin_of_updates(input.node)
                ))
            })?;
        let node = self.add_operator(
            input.node,
            Arc::new(GroupAggregate {
                spec,
                accumulations,
                input_updates,
                ttl: self.state_ttl,
            }),
            crate::changelog::with_row_kind(schema.inner()),
            partitioning,
            parallelism,
        );
        Ok(Planned::Stream(Stream {
            node,
            schema: Arc::clone(schema),
        }))
    }
}

/// Names for key columns: the column's own name, else the expression's, made unique.
fn key_names(keys: &[Expr]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(keys.len());
    for key in keys {
        let base = match unalias(key) {
            Expr::Column(c) => c.name.clone(),
            other => other.schema_name().to_string(),
        };
        let mut name = base.clone();
        let mut n = 1;
        while names.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        names.push(name);
    }
    names
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
