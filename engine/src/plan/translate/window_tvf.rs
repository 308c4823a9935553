//! The rule of a window TVF, and the pending window it yields.

use super::*;

/// A window TVF not yet turned into an operator.
#[derive(Debug, Clone)]
pub(super) struct PendingWindow {
    pub(super) input: Stream,
    pub(super) kind: WindowKind,
    pub(super) time_index: usize,
    /// Where each column of `schema` comes from.
    pub(super) layout: Vec<Col>,
    pub(super) schema: DFSchemaRef,
    /// `PARTITION BY` keys of a session window, over `input`.
    pub(super) partition_keys: Vec<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Col {
    Input(usize),
    Window(WindowColumn),
}

impl Translator<'_> {
    /// A window TVF yields a pending window over its input, which must be
    /// rows that do not update and keep an event time.
    pub(super) fn window_tvf(
        &mut self,
        tvf: &WindowTvf,
        schema: &DFSchemaRef,
        input: Input,
    ) -> Result<Planned> {
        let rows = match input.planned {
            Planned::Stream(s) => s,
            Planned::Window(_) => {
                return Err(self.error(
                    "a window TVF directly over another window TVF: aggregate the first one before windowing again",
                ));
            }
        };
        if input.properties.changelog.updates() {
            return Err(self.error(format!(
                "a window TVF over rows that update (the results of {}): a window needs an insert-only input, as in Flink; window the rows before they are aggregated or joined",
                self.origin_of_updates(rows.node)
            )));
        }
        // As in Flink, a regular join keeps no time attribute: a joined row
        // is as old as either of its rows, so no watermark holds for it.
        if !input.properties.time_attribute {
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
            input: rows,
            kind: tvf.kind,
            layout,
            schema: Arc::clone(schema),
            partition_keys: tvf.partition_keys.clone(),
        }))
    }

    /// Rewrites `expr` over a pending window's columns into one over its input.
    pub(super) fn to_window_input(&self, expr: &Expr, window: &PendingWindow) -> Result<Expr> {
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

    /// Turns a pending window into rows: `WindowAssign`, then the layout.
    pub(super) fn materialize(&mut self, planned: Planned) -> Result<Stream> {
        self.assign_windows(planned, false)
    }

    /// [`Self::materialize`], keeping the rows the window's source read
    /// when its input carries them, last (a window join's late rows are
    /// written as them).
    pub(super) fn materialize_carrying(&mut self, planned: Planned) -> Result<Stream> {
        self.assign_windows(planned, true)
    }

    fn assign_windows(&mut self, planned: Planned, carrying: bool) -> Result<Stream> {
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
        // Rows carried for late data pass the assignment (nothing is late
        // there), and the layout after it when asked to.
        let carried = self.carried_row(input.node);
        let physical = self.physical_schema(input.schema.inner(), input.node);
        let width = physical.fields().len();
        let mut fields: Vec<_> = physical.fields().iter().cloned().collect();
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
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = window
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
        let schema = match carried.filter(|_| carrying) {
            Some(row) => {
                exprs.push(crate::ops::late_row::column(row));
                let mut fields: Vec<_> = window.schema.inner().fields().iter().cloned().collect();
                fields.push(Arc::new(physical.field(row).clone()));
                Arc::new(Schema::new(fields))
            }
            None => Arc::clone(window.schema.inner()),
        };
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
}
