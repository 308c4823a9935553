//! What the planner knows of a node's rows, which the rule of a node
//! consuming them may ask: whether they update, by which key, whether they
//! keep an event time, and which window bound a column is.

use super::*;

/// What a rule may ask of one input's rows.
#[derive(Debug, Clone)]
pub(super) struct Properties {
    /// Whether they update (carry row kinds).
    pub(super) changelog: ChangelogMode,
    /// The columns each change is keyed by, when known.
    pub(super) upsert_key: Option<Vec<usize>>,
    /// Whether they keep an event time a watermark holds: rows of a regular
    /// join do not.
    pub(super) time_attribute: bool,
}

impl Translator<'_> {
    /// The properties of `node`'s rows.
    pub(super) fn properties(&self, node: NodeId) -> Properties {
        Properties {
            changelog: self.graph.node(node).changelog(),
            upsert_key: self.graph.upsert_key(node),
            time_attribute: !self.after_join(node),
        }
    }

    /// The window bound that column `column` of `node`'s rows is, followed
    /// back through the operators that pass it on unchanged.
    pub(super) fn window_bound(
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
    pub(super) fn after_join(&self, node: NodeId) -> bool {
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
    pub(super) fn row_columns(&self, node: NodeId) -> Vec<Arc<dyn PhysicalExpr>> {
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
    pub(super) fn updates(&self, node: NodeId) -> bool {
        self.graph.node(node).changelog().updates()
    }

    /// The schema a node computing `logical` rows from `input`'s has: with
    /// the row kinds when `input`'s rows update, with the rows as read when
    /// they carry them.
    pub(super) fn physical_schema(&self, logical: &SchemaRef, input: NodeId) -> SchemaRef {
        if let Some(row) = self.carried_row(input) {
            let mut fields: Vec<_> = logical.fields().iter().cloned().collect();
            fields.push(Arc::new(self.graph.node(input).schema.field(row).clone()));
            return Arc::new(Schema::new(fields));
        }
        match self.updates(input) {
            true => crate::changelog::with_row_kind(logical),
            false => Arc::clone(logical),
        }
    }

    /// `stream` without the rows its source read, if it carries them.
    pub(super) fn without_carried_row(&mut self, stream: Stream) -> Stream {
        let Some(row) = self.carried_row(stream.node) else {
            return stream;
        };
        let schema = Arc::clone(&self.graph.node(stream.node).schema);
        let exprs = (0..row)
            .map(|i| {
                Arc::new(datafusion::physical_expr::expressions::Column::new(
                    schema.field(i).name(),
                    i,
                )) as Arc<dyn PhysicalExpr>
            })
            .collect();
        let without = Arc::clone(stream.schema.inner());
        let parallelism = self.graph.node(stream.node).parallelism;
        let node = self.add_operator(
            stream.node,
            Arc::new(Project::new(exprs, Arc::clone(&without))),
            without,
            Partitioning::Forward,
            parallelism,
        );
        Stream {
            node,
            schema: stream.schema,
        }
    }

    /// The column of `node`'s rows carrying the rows their source read, if
    /// they carry them ([`crate::ops::late_row`]).
    pub(super) fn carried_row(&self, node: NodeId) -> Option<usize> {
        crate::ops::late_row::carried(&self.graph.node(node).schema)
    }

    /// The node whose rows start to update upstream of `node` (its updating
    /// inputs are followed to one whose own inputs do not update), as
    /// messages name it: `GroupAggregate(keys [...] aggs [...])`.
    pub(super) fn origin_of_updates(&self, mut node: NodeId) -> String {
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
}
