//! The rule of an aggregate.

use super::*;

impl Translator<'_> {
    /// An aggregate over a pending window is a window aggregation (a
    /// session one for SESSION); one grouped by an earlier window's bounds
    /// is a cascaded window aggregation ([`AttachedWindow`]); any other is
    /// an updating [`GroupAggregate`] in stream mode and one global window
    /// in batch mode.
    pub(super) fn aggregate(&mut self, agg: &logical::Aggregate, input: Input) -> Result<Planned> {
        let (group_expr, aggr_expr, schema) = (&agg.group_expr, &agg.aggr_expr, &agg.schema);
        let updates = input.properties.changelog.updates();
        let (input, window) = match input.planned {
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
            None if !updates => self.attached_window(&input, &keys),
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
                () if updates => {
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
                        late_row: self.carried_row(input.node),
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
                        late_row: None,
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
