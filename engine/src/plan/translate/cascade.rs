//! Cascaded window aggregation.

use super::*;

/// An aggregate grouped by an earlier window's `window_start` and
/// `window_end` (a window aggregate's results, as Nexmark q5's `MaxBids`):
/// its groups are those windows, which close when the watermark passes
/// their end, so it is a window aggregate again, as Flink plans it (a
/// cascaded window aggregation). Its rows are windowed by a tumbling
/// window of the earlier windows' slice (which divides every end), over
/// `end - 1 ms`: each end falls in a window of its own, which fires when
/// the watermark passes that end. The bounds stay group keys, and stay bounds
/// for a window join after it.
pub(super) struct AttachedWindow {
    /// The earlier windows.
    pub(super) window: WindowKind,
    /// The tumbling window that fires them.
    pub(super) granularity: WindowKind,
    /// The input column of their ends.
    pub(super) end_column: usize,
    /// Which group keys are which bounds.
    pub(super) keys: Vec<(usize, WindowColumn)>,
}

impl Translator<'_> {
    /// The earlier windows whose bounds `keys` (over `input`) group by, if
    /// they group by both.
    pub(super) fn attached_window(&self, input: &Stream, keys: &[Expr]) -> Option<AttachedWindow> {
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
    pub(super) fn add_window_time(
        &mut self,
        input: &Stream,
        end: usize,
    ) -> Result<(NodeId, usize)> {
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
}
