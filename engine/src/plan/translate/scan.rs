//! The rule of a table scan: the table's shared source, with this scan's
//! columns selected from what the source reads.

use super::*;

impl Translator<'_> {
    /// A scan's rows carry the rows its source read when `carry_rows` asks
    /// for them and the source carries them; else they never do.
    pub(super) fn scan(&mut self, scan: &logical::TableScan, carry_rows: bool) -> Result<Planned> {
        let Some(table) =
            (scan.source.as_ref() as &dyn std::any::Any).downcast_ref::<DeclaredTable>()
        else {
            return Err(self.error(format!("cannot read `{}`", scan.table_name)));
        };
        if !scan.filters.is_empty() || scan.fetch.is_some() {
            return Err(self.error("filters and limits pushed into scans are not supported"));
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
        let carried = self.carried_row(node);
        let kept = carried.filter(|_| carry_rows);
        if wanted == read && carried == kept {
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
        if let Some(row) = kept {
            exprs.push(crate::ops::late_row::column(row));
        }
        let schema = match (carried, kept) {
            (Some(_), None) => Arc::clone(scan.projected_schema.inner()),
            _ => self.physical_schema(scan.projected_schema.inner(), node),
        };
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
}
