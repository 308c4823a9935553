//! The rule of a `UNION ALL`: one N-port operator over its inputs' rows.

use super::*;

impl Translator<'_> {
    /// When one input updates, the union does: the others' rows are marked
    /// as inserts.
    pub(super) fn union(&mut self, u: &logical::Union, inputs: Vec<Input>) -> Result<Planned> {
        let updates = inputs.iter().any(|i| i.properties.changelog.updates());
        let mut streams = Vec::with_capacity(inputs.len());
        for input in inputs {
            let mut stream = self.materialize(input.planned)?;
            if updates && !input.properties.changelog.updates() {
                stream.node = self.mark_inserts(&stream);
            }
            streams.push(stream);
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
        for stream in streams {
            self.connect(stream.node, id, Partitioning::Forward);
        }
        Ok(Planned::Stream(Stream {
            node: id,
            schema: Arc::clone(&u.schema),
        }))
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
}
