//! The rule of a projection, over rows or over a pending window.

use super::*;

/// Refuses a projection naming a column with a reserved name (the row
/// kinds', or late data's carried rows).
pub(super) fn check(p: &logical::Projection) -> std::result::Result<(), String> {
    match p
        .schema
        .fields()
        .iter()
        .find_map(|f| crate::changelog::reserved(f.name()))
    {
        Some(why) => Err(format!("a column may not be named {why}")),
        None => Ok(()),
    }
}

impl Translator<'_> {
    /// A projection of rows is one `Project` (none when it selects every
    /// column as it is), carrying the row kinds of an updating input; one
    /// of a pending window moves what it computes to the window's input.
    pub(super) fn projection(&mut self, p: &logical::Projection, input: Input) -> Result<Planned> {
        let updates = input.properties.changelog.updates();
        let input = match input.planned {
            Planned::Stream(input) => input,
            Planned::Window(window) => return self.project_window(window, &p.expr, &p.schema),
        };
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
        if updates {
            exprs.push(Arc::new(
                datafusion::physical_expr::expressions::Column::new(
                    crate::changelog::ROW_KIND,
                    input.schema.fields().len(),
                ),
            ));
        }
        if let Some(row) = self.carried_row(input.node) {
            exprs.push(crate::ops::late_row::column(row));
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
            let mut physical = all
                .iter()
                .map(|e| self.physical(e, &input.schema))
                .collect::<Result<Vec<_>>>()?;
            if let Some(row) = self.carried_row(input.node) {
                physical.push(crate::ops::late_row::column(row));
            }
            let schema = self.physical_schema(new_schema.inner(), input.node);
            let parallelism = self.graph.node(input.node).parallelism;
            let node = self.add_operator(
                input.node,
                Arc::new(Project::new(physical, Arc::clone(&schema))),
                schema,
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
}
