//! Window joins: a join that equates both inputs' window bounds.

use super::*;

impl Translator<'_> {
    /// A join whose `ON` equates both inputs' `window_start` and
    /// `window_end` of windows of one kind, as a window join: the rest of
    /// the equalities are its keys. `None` when it is not one.
    pub(super) fn window_join(
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
            carried: [
                self.carried_row(inputs[0].node),
                self.carried_row(inputs[1].node),
            ],
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
}
